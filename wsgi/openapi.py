"""The OpenAPI 3.0 description of the HTTP interface, served as ``GET /openapi.json``.

Built from the code's own tables wherever one exists: the codes from ``codes.CODES``, the
date grammar from ``dates`` (its forms and ``schema_pattern``), the size and age limits
from ``config.SETTINGS``. A new code or date form is therefore documented the moment it is served.

Every response lists the ``X-FPlane-Code`` values it can carry, twice: as the enum of its
``X-FPlane-Code`` header (what validators and fuzzers check) and as the extension
``x-fplane-codes`` (what tests/test_openapi.py compares with ``codes.CODES``).
"""

import functools
import json
import re
from importlib import metadata

from wsgi import codes, config, dates, diff, svgmap

OPENAPI_VERSION = "3.0.3"

TEXT = "text/plain"
JSON = "application/json"
HTML = "text/html"
SVG = "image/svg+xml"
ATOM = "application/atom+xml"
FORM_URLENCODED = "application/x-www-form-urlencoded"
FORM_MULTIPART = "multipart/form-data"

# The status of a CORS preflight answer (OPTIONS on any path).
PREFLIGHT_STATUS = "204"

# What every operation can answer besides its own responses.
COMMON_FAILURES = (codes.INTERNAL_ERROR, codes.UNAVAILABLE)


@functools.cache
def openapi_json() -> bytes:
    """The document as served: built once per process (it depends on nothing at run time)."""
    return (json.dumps(openapi_document(), indent=1) + "\n").encode("utf-8")


def openapi_document() -> dict:
    paths, shared_errors = _shared_errors(_paths())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "fplaneserver",
            "version": _package_version(),
            "description": _description(),
        },
        "tags": [
            {"name": "fplane", "description": "the fplane file valid at an instant"},
            {"name": "updates", "description": "stations posting hardware status and measured positions"},
            {"name": "history", "description": "looking at the history: page, map, versions, diffs, feed"},
            {"name": "system", "description": "the service itself"},
            {"name": "cors", "description": "CORS preflight"},
        ],
        "paths": paths,
        "components": _components(shared_errors),
    }


def _package_version() -> str:
    try:
        return metadata.version("fplaneserver")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"


# -- the human part ------------------------------------------------------------------------

def _description() -> str:
    return "\n".join([
        "The history of the HET/VIRUS focal plane configuration: the fplane file valid at any",
        "instant, updates posted by stations, and views of the history.",
        "",
        "**Codes.** Every response carries `X-FPlane-Code`. Error bodies are text, "
        "`<code> <message>` on the first line and details after it, or JSON "
        "`{\"code\", \"message\", \"errors\"}` when JSON was asked for (`format=json` or "
        "`Accept: application/json`). Clients key on the code; codes never change meaning.",
        "",
        _codes_table(),
        "",
        "Code 100 is HTTP 200 on a GET and 202 Accepted on a POST (spooled, not yet committed).",
        "",
        f"**Dates** (`datestr`): {dates.ACCEPTED_FORMS}. A bare date YYYYMMDD means 00:00 "
        "site-local time (`[Site] timezone`) on that date, the middle of the night labelled "
        "YYYYMMDD; times without an offset are UTC. In a query string write `+` as `%2B`. "
        "Anything else is code 301. Instants the service writes are ISO 8601 UTC with `Z`.",
        "",
        "**Methods.** HEAD is answered wherever GET is. A method a path does not list is "
        "answered 405 (code 305) with `Allow`; a path not listed here is 404 (code 303). "
        "OPTIONS on any path answers a CORS preflight for GET from `[Server] cors_origins`.",
        "",
        f"**Limits.** Request bodies over `[Server] max_body` (default "
        f"{config.default('Server', 'max_body')} bytes) are refused with 413 (code 212); a hardware "
        f"status older than `[Update] max_age` (default {config.default('Update', 'max_age')} s) is "
        f"code 210, one more than `[Update] max_future` (default "
        f"{config.default('Update', 'max_future')} s) ahead is code 211.",
    ])


def _codes_table() -> str:
    lines = ["| code | message | HTTP |", "|---|---|---|"]
    lines += [f"| {c.code} | {c.message} | {_code_http(c.code)} |" for c in codes.CODES.values()]
    return "\n".join(lines)


def _code_http(code: int) -> str:
    return "200 GET, 202 POST" if code == codes.OK else str(codes.CODES[code].http_status)


# -- responses -----------------------------------------------------------------------------

def _code_header(coded: tuple[int, ...]) -> dict:
    return {
        "description": "the fplaneserver code of this answer: "
                       + "; ".join(f"{c} {codes.CODES[c].message}" for c in coded),
        "required": True,
        "schema": {"type": "integer", "enum": list(coded)},
    }


def _response(description: str, coded: tuple[int, ...], content: dict | None = None,
              headers: dict | None = None) -> dict:
    response = {
        "description": description,
        "headers": {"X-FPlane-Code": _code_header(coded), **(headers or {})},
        "x-fplane-codes": list(coded),
    }
    if content:
        response["content"] = content
    return response


ERROR_JSON = {"schema": {"$ref": "#/components/schemas/Error"}}


def _error_content(*extra_media: str) -> dict:
    content = {TEXT: {"schema": {"$ref": "#/components/schemas/ErrorText"}}, JSON: ERROR_JSON}
    for media in extra_media:
        content[media] = {"schema": {"type": "string"}}
    return content


def _error(coded: tuple[int, ...], why: str = "", *extra_media: str) -> dict:
    """The refusal with these codes (all of one HTTP status), body as text or JSON."""
    listed = "; ".join(f"{c} {codes.CODES[c].message}" for c in coded)
    return _response(f"{listed}{f' ({why})' if why else ''}", coded, _error_content(*extra_media),
                     {"Cache-Control": _header_ref("CacheControl")})


def _errors(*coded: int, extra_media: tuple[str, ...] = ()) -> dict:
    """Responses for these error codes (plus 400 and 401, which any request can meet),
    grouped by HTTP status. ``extra_media``: other media types the operation answers
    its own refusals with (not 400 and 401: those are always text or JSON)."""
    by_status: dict[str, list[int]] = {}
    for code in (*coded, *COMMON_FAILURES):
        by_status.setdefault(str(codes.CODES[code].http_status), []).append(code)
    return {status: _error(tuple(group), "", *(extra_media if set(group) & set(coded) else ()))
            for status, group in sorted(by_status.items())}


def _header_ref(name: str) -> dict:
    return {"$ref": f"#/components/headers/{name}"}


def _text_or_json(json_schema: str, text_description: str) -> dict:
    return {
        TEXT: {"schema": {"type": "string", "description": text_description}},
        JSON: {"schema": {"$ref": f"#/components/schemas/{json_schema}"}},
    }


# -- parameters ----------------------------------------------------------------------------

def _param_ref(name: str) -> dict:
    return {"$ref": f"#/components/parameters/{name}"}


def _date_param(name: str, where: str, example: str, meaning: str) -> dict:
    """A datestr parameter: required in the path; optional in the query, where empty means now."""
    in_query = where == "query"
    return {
        "name": name,
        "in": where,
        "required": not in_query,
        "description": f"{meaning}. Accepted forms: {dates.ACCEPTED_FORMS}"
                       + ("; empty: now" if in_query else ""),
        "schema": {"$ref": "#/components/schemas/Datestr"},
        "example": example,
    }


def _choice(name: str, values: tuple[str, ...], default: str, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "enum": list(values), "default": default},
        "example": values[-1],
    }


ACTUAL_POS = ("`0` nominal positions, `1` measured ones where a measured position set is "
              "valid at the instant (seats without a measurement keep nominal values)")
FULL_FPLANE = ("`1` the full file (inactive seats commented out), `0` the short file: the "
               "000 row and the active VIRUS IFUs only")
FORMAT = "`txt` or `json`; without it, `Accept: application/json` selects JSON"
LABELS = ("what the drawn seats are labelled with besides their seat (IFUSLOT): `all` the IFU "
          "(IFUID) and the spectrograph (SPECID), `ifu` the IFU, `spectrograph` the spectrograph")
def _parameters() -> dict:
    return {
        "datestr": _date_param("datestr", "path", "20180707", "the instant; `latest` means now"),
        "actual_pos": _choice("actual_pos", ("0", "1"), "0", ACTUAL_POS),
        "full_fplane": _choice("full_fplane", ("1", "0"), "1", FULL_FPLANE),
        "known_at": _date_param("known_at", "query", "latest",
                                "answer as the store knew it at this instant (default: now)"),
        "format": _choice("format", ("txt", "json"), "txt", FORMAT),
        "labels": _choice("labels", tuple(svgmap.LABELS), svgmap.DEFAULT_LABELS, LABELS),
    }


# -- operations ----------------------------------------------------------------------------

def _operation(operation_id: str, tag: str, summary: str, responses: dict,
               parameters: list | None = None, description: str = "", **extra) -> dict:
    operation = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = responses
    operation.update(extra)
    return operation


def _get_and_head(name: str, tag: str, summary: str, responses: dict,
                  parameters: list | None = None, description: str = "") -> dict:
    return {
        "get": _operation(f"get{name}", tag, summary, responses, parameters, description),
        # The GET's responses: a HEAD answer has the GET's status and headers (its
        # Content-Type names what the GET would send), and never a body.
        "head": _operation(f"head{name}", tag, f"{summary} (headers only)",
                           responses, parameters, description),
    }


def _preflight(path: str, path_parameters: list) -> dict:
    """OPTIONS on ``path``: answered the same whatever the path parameters say."""
    name = "".join(word.title() for word in re.findall(r"[A-Za-z0-9]+", path)) or "Page"
    any_value = [{"name": _resolved_parameter(p)["name"], "in": "path", "required": True,
                  "description": "any value: a preflight does not read it",
                  "schema": {"type": "string"}, "example": _resolved_parameter(p)["example"]}
                 for p in path_parameters]
    return _operation(
        f"preflight{name}", "cors", "CORS preflight",
        {PREFLIGHT_STATUS: _response(
            "CORS preflight answer, no body: reading (GET, HEAD) is allowed from the origins "
            "in `[Server] cors_origins`; for any other origin or method (POST is never shared "
            "cross-origin) the Access-Control-Allow-* headers are left out and the browser "
            "refuses the request",
            (codes.OK,), headers={
                "Allow": _header_ref("Allow"),
                "Cache-Control": _header_ref("CacheControl"),
                "Vary": _header_ref("Vary"),
                "Access-Control-Allow-Origin": _header_ref("AccessControlAllowOrigin"),
                "Access-Control-Allow-Methods": _header_ref("AccessControlAllowMethods"),
                "Access-Control-Allow-Headers": _header_ref("AccessControlAllowHeaders"),
                "Access-Control-Max-Age": _header_ref("AccessControlMaxAge"),
            })},
        [
            {"name": "Origin", "in": "header", "required": False,
             "description": "the origin of the page asking", "schema": {"type": "string"},
             "example": "https://example.org"},
            {"name": "Access-Control-Request-Method", "in": "header", "required": False,
             "description": "the method the page wants to use", "schema": {"type": "string"},
             "example": "GET"},
            {"name": "Access-Control-Request-Headers", "in": "header", "required": False,
             "description": "the request headers the page wants to send; allowed: Accept, "
                            "If-None-Match, If-Modified-Since, Cache-Control",
             "schema": {"type": "string"}, "example": "if-none-match"},
            *any_value,
        ],
    )


def _fplane_get_responses() -> dict:
    served = {name: _header_ref(ref) for name, ref in (
        ("X-FPlane-Version", "XFPlaneVersion"), ("X-FPlane-Valid-From", "XFPlaneValidFrom"),
        ("X-FPlane-Valid-Until", "XFPlaneValidUntil"), ("ETag", "ETag"),
        ("Last-Modified", "LastModified"), ("Cache-Control", "CacheControl"),
        ("Vary", "Vary"), ("Access-Control-Allow-Origin", "AccessControlAllowOrigin"),
        ("Access-Control-Expose-Headers", "AccessControlExposeHeaders"))}
    ok = _response(
        "the fplane file valid at the instant (text), or the same as JSON",
        (codes.OK,),
        _text_or_json("Fplane", "the fplane file: `#` comment header lines stating the instant, "
                                "version, validity and positions, the column header, then one "
                                "TAB-separated row per seat"),
        {**served, "Content-Disposition": _header_ref("ContentDisposition")},
    )
    not_modified = _response("the client's copy (If-None-Match / If-Modified-Since) is current",
                             (codes.OK,), headers=served)
    # 301 without a datestr too: known_at is a date.
    return {"200": ok, "304": not_modified,
            **_errors(codes.BAD_DATE, codes.BAD_PARAMETER, codes.NO_CONFIGURATION)}


def _fplane_paths() -> dict:
    params = [_param_ref(p) for p in ("actual_pos", "full_fplane", "known_at", "format")]
    description = ("Answers the configuration valid at that instant: the version with the "
                   "latest valid_from at or before it among the versions recorded at or "
                   "before `known_at`; of equal valid_from, the later recorded one wins. "
                   "Existing clients build exactly "
                   "`/fplane/<datestr>?actual_pos=0|1&full_fplane=0|1`.")
    return {
        "/fplane": {
            **_get_and_head("FplaneNow", "fplane", "the fplane file valid now",
                            _fplane_get_responses(), params, description),
            "post": _post("PostStatus", "config", dated=False),
        },
        "/fplane/{datestr}": {
            "parameters": [_param_ref("datestr")],
            **_get_and_head("Fplane", "fplane", "the fplane file valid at datestr",
                            _fplane_get_responses(), params, description),
            "post": _post("PostStatusAt", "config", dated=True),
        },
        "/positions": {
            "post": _post("PostPositions", "positions", dated=False),
        },
        "/positions/{datestr}": {
            "parameters": [_param_ref("datestr")],
            "post": _post("PostPositionsAt", "positions", dated=True),
        },
    }


def _post(name: str, role: str, dated: bool) -> dict:
    what = "hardware status" if role == "config" else "set of measured IFU positions"
    starts = ("`datestr` (or `valid_from` in data)" if dated
              else "`valid_from` in data, else " + ("the status's `timestamp`" if role == "config"
                                                     else "the time of the post"))
    answer_headers = {"X-FPlane-Update": _header_ref("XFPlaneUpdate"),
                      "Cache-Control": _header_ref("CacheControl")}
    result = {TEXT: {"schema": {"$ref": "#/components/schemas/PostAnswer"}}}
    bad_request = [codes.CHECKSUM_MISMATCH, codes.MISSING_FIELD, codes.BAD_JSON]
    if dated:
        bad_request.append(codes.BAD_DATE)
    responses = {
        "200": _response("dry run (101) or no change (102): nothing spooled; the code line, "
                         "then the resulting full fplane file", (codes.DRY_RUN, codes.NO_CHANGE),
                         result, {"Cache-Control": _header_ref("CacheControl")}),
        "202": _response("accepted and durably spooled (100), or spooled to be held for review "
                         "(103); the update id is in `X-FPlane-Update` and on the code line, "
                         "then the resulting full fplane file", (codes.OK, codes.HELD),
                         result, answer_headers),
        **_errors(*bad_request, codes.WRONG_PASSWORD, codes.NOT_ALLOWED, codes.UNKNOWN_STATION,
                  codes.INVALID_DATA, codes.TOO_OLD, codes.TOO_FAR_IN_FUTURE,
                  codes.BODY_TOO_LARGE),
    }
    form = {"schema": {"$ref": f"#/components/schemas/{'Status' if role == 'config' else 'Positions'}Form"}}
    return _operation(
        name, "updates", f"post a {what} (station with the `{role}` role)", responses, None,
        f"The new {'configuration' if role == 'config' else 'position set'} is valid from "
        f"{starts}. Checks, in this order, each with its code: fields present (202), station "
        "known (206), password (203), station allowed (204), checksum (201), JSON decodes "
        "(208), structure and consistency (209, every problem listed), timestamp age (210, "
        "211). Posting the same station + checksum again returns the same update id.",
        requestBody={"required": True, "content": {FORM_URLENCODED: form, FORM_MULTIPART: form}},
    )


def _updates_paths() -> dict:
    responses = {
        "200": _response("where the update is: queued, committed (with version or position "
                         "set), unchanged, held, rejected, or failed (with the reason)",
                         (codes.OK,),
                         _text_or_json("UpdateStatus", "`100 OK`, then `key: value` lines"),
                         {"X-FPlane-Update": _header_ref("XFPlaneUpdate"),
                          "Cache-Control": _header_ref("CacheControl")}),
        **_errors(codes.NOT_FOUND, codes.BAD_PARAMETER),
    }
    return {"/updates/{uid}": {
        "parameters": [{"name": "uid", "in": "path", "required": True,
                        "description": "the update id (20 hex digits) a post answered with 100 or 103",
                        "schema": {"type": "string", "pattern": "^[^/]+$"},
                        "example": "8443b7066d6d60f1d5b4"}],
        **_get_and_head("Update", "updates", "what became of a posted update", responses,
                        [_param_ref("format")]),
    }}


def _not_modified() -> dict:
    return _response("the client's copy (If-None-Match / If-Modified-Since) is current",
                     (codes.OK,), headers={"ETag": _header_ref("ETag"),
                                           "Cache-Control": _header_ref("CacheControl")})


def _view(what: str, content: dict, *refusals: int, extra_media: tuple[str, ...] = ()) -> dict:
    """The responses of a history view: its answer (with an ETag, so also 304) or a refusal."""
    ok = _response(what, (codes.OK,), content, {
        "ETag": _header_ref("ETag"), "Cache-Control": _header_ref("CacheControl"),
        "Vary": _header_ref("Vary"), "Access-Control-Allow-Origin": _header_ref("AccessControlAllowOrigin")})
    return {"200": ok, "304": _not_modified(), **_errors(*refusals, extra_media=extra_media)}


def _history_paths() -> dict:
    view = [_param_ref("actual_pos"), _param_ref("full_fplane"), _param_ref("labels")]
    fmt = _param_ref("format")
    compare = _date_param("compare", "query", "20180601", "an instant to compare the shown one "
                          "with: the seats that changed since are ringed on the drawing")
    page_params = [
        _date_param("date", "query", "20180707", "the instant shown (empty: now)"),
        compare,
        *view,
    ]
    # A bad date or an instant without a configuration still gets the page (with the
    # message and the timeline to pick from); a bad actual_pos / full_fplane is refused.
    page = _view("the page: a drawing of the focal plane at the instant, a date field, the "
                 "versions as a timeline, the changes since `compare` when given",
                 {HTML: {"schema": {"type": "string"}}},
                 codes.BAD_DATE, codes.BAD_PARAMETER, codes.NO_CONFIGURATION, extra_media=(HTML,))
    svg = _view("the drawing alone: every seat at its position, coloured by state; with "
                "`actual_pos=1` each measured seat is marked and its offset from nominal drawn "
                "as an arrow, magnified as the key says",
                {SVG: {"schema": {"type": "string"}}},
                codes.BAD_DATE, codes.BAD_PARAMETER, codes.NO_CONFIGURATION)
    history = _view("the versions in valid_from order (superseded corrections included)",
                    _text_or_json("History", "a table, one version a line"),
                    codes.BAD_DATE, codes.BAD_PARAMETER)
    diff = _view("what changed on the instrument between the two instants, in its own terms",
                 _text_or_json("Diff", "`#` lines naming both versions and a summary, then one "
                                       "change a line, e.g. `IFU 073 moved from seat 021 to "
                                       "seat 024 (spectrograph 315)`"),
                 codes.BAD_DATE, codes.BAD_PARAMETER, codes.NO_CONFIGURATION)
    ifu = _view("where that IFU bundle sat, and on which spectrograph, over time",
                _text_or_json("IfuHistory", "one stay a line"),
                codes.BAD_PARAMETER, codes.NOT_FOUND)
    feed = _view("an Atom 1.0 feed of committed changes, newest first",
                 {ATOM: {"schema": {"type": "string"}}})
    return {
        "/": {**_get_and_head("Page", "history", "the focal plane page", page, page_params)},
        "/map/{datestr}.svg": {
            "parameters": [_param_ref("datestr")],
            **_get_and_head("Map", "history", "the focal plane drawing at datestr", svg,
                            [*view, compare])},
        "/history": {
            **_get_and_head("History", "history", "the versions", history, [
                _date_param("from", "query", "20180601", "only versions valid from this instant on"),
                _date_param("to", "query", "20181231", "only versions valid from at most this instant"),
                fmt])},
        "/diff/{datestr1}/{datestr2}": {
            "parameters": [_date_param("datestr1", "path", "20180707", "the earlier instant"),
                           _date_param("datestr2", "path", "20180815", "the later instant")],
            **_get_and_head("Diff", "history", "what changed between two instants", diff,
                            [_param_ref("actual_pos"), fmt])},
        "/ifu/{ifuid}": {
            "parameters": [{"name": "ifuid", "in": "path", "required": True,
                            "description": "the IFU id (IFUID), 1 to 3 digits (`073`); anything "
                                           "else, or an IFU in no version, is 404 (code 303)",
                            "schema": {"type": "string", "pattern": "^[^/]+$"}, "example": "073"}],
            **_get_and_head("Ifu", "history", "the history of one IFU bundle", ifu, [fmt])},
        "/feed": {**_get_and_head("Feed", "history", "the Atom feed of committed changes", feed)},
    }


def _system_paths() -> dict:
    fmt = [_param_ref("format")]

    def described(schema: str, what: str, text: str) -> dict:
        return {"200": _response(what, (codes.OK,), _text_or_json(schema, text),
                                 {"Cache-Control": _header_ref("CacheControl")}),
                **_errors(codes.BAD_PARAMETER)}

    health = described("Health", "healthy: the store is readable, the writer's heartbeat is "
                                 "fresh, the spool is usable", "`100 healthy`, then one "
                                                               "`check: state` line each")
    health["503"] = _response(
        "not healthy (code 401): the first line (or `message`, `errors`) says why, then each "
        "check's state", (codes.UNAVAILABLE,),
        {TEXT: {"schema": {"$ref": "#/components/schemas/ErrorText"}},
         JSON: {"schema": {"$ref": "#/components/schemas/Health"}}},
        {"Cache-Control": _header_ref("CacheControl")})
    openapi = {"200": _response("this document", (codes.OK,), {JSON: {"schema": {"type": "object"}}}),
               **_errors()}
    return {
        "/sys": {**_get_and_head("Sys", "system", "links to the system pages",
                                 described("SysLinks", "the system pages",
                                           "one link a line"), fmt)},
        "/sys/config": {**_get_and_head("SysConfig", "system", "the effective configuration",
                                        described("SysConfig", "config.ini as the service uses "
                                                               "it, secrets left out", "ini text"),
                                        fmt)},
        "/sys/stats": {**_get_and_head("SysStats", "system", "running statistics",
                                       described("SysStats", "uptime, requests and responses by "
                                                             "code, resource usage, store size "
                                                             "and newest version, spool backlog, "
                                                             "writer heartbeat",
                                                 "`key: value` lines"), fmt)},
        "/health": {**_get_and_head("Health", "system", "whether the service is healthy", health, fmt)},
        "/openapi.json": {**_get_and_head("OpenApi", "system", "this OpenAPI document", openapi)},
    }


def _paths() -> dict:
    paths = {**_fplane_paths(), **_updates_paths(), **_history_paths(), **_system_paths()}
    return {path: {**item, "options": _preflight(path, item.get("parameters", []))}
            for path, item in paths.items()}


def _resolved_parameter(parameter: dict) -> dict:
    """A parameter, or the shared one its "$ref" names."""
    if "$ref" in parameter:
        return _parameters()[parameter["$ref"].rsplit("/", 1)[1]]
    return parameter


# -- components ----------------------------------------------------------------------------

def _instant(description: str) -> dict:
    return {"type": "string", "format": "date-time", "description": description,
            "example": "2018-07-07T05:00:00Z"}


def _three_digits(description: str) -> dict:
    return {"type": "string", "pattern": "^[0-9]{3}$", "description": description, "example": "073"}


def _loose(description: str, properties: dict) -> dict:
    """A JSON answer whose shape may still gain fields: the listed ones, others allowed."""
    return {"type": "object", "description": description, "properties": properties,
            "additionalProperties": True}


def _schemas() -> dict:
    code = {"type": "integer", "enum": [codes.OK], "description": "always 100 in a successful answer"}
    version_fields = {
        "valid_from": _instant("when the configuration became true on the instrument"),
        "valid_until": {**_instant("the next version's valid_from; null: no later version"),
                        "nullable": True},
        "recorded_at": _instant("when the store learned it"),
        "station": {"type": "string", "description": "who recorded it"},
        "comment": {"type": "string"},
    }
    # An empty or all-blank field is missing (code 202).
    filled = {"type": "string", "minLength": 1, "pattern": "[^ \\t\\n\\r\\f\\v]"}
    form_fields = {
        "station_id": {**filled, "description": "the posting station, as in the station list",
                       "example": "tcs"},
        "password": {**filled, "format": "password", "description": "its password",
                     "example": "correct horse battery staple"},
        "checksum": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                     "description": "SHA-256 hex digest of the exact `data` value (UTF-8 bytes)",
                     "example": "0" * 64},
    }
    return {
        "Datestr": {"type": "string", "pattern": dates.schema_pattern(), "maxLength": dates.MAX_LENGTH,
                    "description": f"an instant: {dates.ACCEPTED_FORMS}; empty: now",
                    "example": "20180707"},
        "Code": {
            "type": "integer",
            "enum": list(codes.CODES),
            "description": "X-FPlane-Code: what the answer means\n\n" + _codes_table(),
            "x-fplane-codes": {str(c.code): {"message": c.message, "http_status": c.http_status}
                               for c in codes.CODES.values()},
        },
        "Error": {
            "type": "object",
            "required": ["code", "message", "errors"],
            "properties": {
                "code": {"$ref": "#/components/schemas/Code"},
                "message": {"type": "string", "description": "one line"},
                "errors": {"type": "array", "items": {"type": "string"},
                           "description": "details, e.g. every problem found in posted data"},
            },
        },
        "ErrorText": {"type": "string", "description": "`<code> <message>` on the first line, "
                                                       "details on the lines after it",
                      "example": "302 no configuration known for 2010-01-01T06:00:00Z\n"},
        "PostAnswer": {"type": "string",
                       "description": "`<code> <message>` on the first line (with the update id "
                                      "for 100 and 103), then the resulting full fplane file"},
        "FplaneRow": {
            "type": "object",
            "required": ["ifuslot", "x", "y", "specid", "specslot", "ifuid", "ifurot",
                         "platesc", "active"],
            "properties": {
                "ifuslot": _three_digits("IFUSLOT, the seat"),
                "x": {"type": "number", "description": "X_FP, arcsec"},
                "y": {"type": "number", "description": "Y_FP, arcsec"},
                "specid": _three_digits("SPECID, the spectrograph (000: none)"),
                "specslot": _three_digits("SPECSLOT"),
                "ifuid": _three_digits("IFUID, the bundle (000: none)"),
                "ifurot": {"type": "number"},
                "platesc": {"type": "number"},
                "active": {"type": "boolean", "description": "false: commented out in the full file"},
            },
        },
        "MeasuredPositions": {
            "type": "object",
            "required": ["kind", "position_set", "valid_from", "recorded_at"],
            "properties": {
                "kind": {"type": "string", "enum": ["measured"]},
                "position_set": {"type": "integer"},
                "valid_from": _instant("when the measured positions became valid"),
                "recorded_at": _instant("when the store learned them"),
            },
        },
        "Fplane": {
            "type": "object",
            "required": ["code", "instant", "version", *version_fields, "positions",
                         "full_fplane", "rows"],
            "properties": {
                "code": code,
                "instant": _instant("the instant asked for"),
                "version": {"type": "integer", "description": "the version id"},
                **version_fields,
                "positions": {
                    "description": "`nominal`, or the measured position set used",
                    "oneOf": [{"type": "string", "enum": ["nominal"]},
                              {"$ref": "#/components/schemas/MeasuredPositions"}],
                },
                "full_fplane": {"type": "boolean"},
                "rows": {"type": "array", "items": {"$ref": "#/components/schemas/FplaneRow"}},
            },
        },
        "StatusForm": {
            "type": "object",
            "required": ["station_id", "password", "checksum", "data"],
            "properties": {**form_fields, "data": {
                **filled,
                "description": 'JSON text: `{"config": <hardware status>, "commit": true|false}`, '
                               'optionally with `"valid_from"`; the hardware status is '
                               '`{"timestamp": ..., "spectrographs": [{"specid", "specslot", '
                               '"ifuslot", "ifuid"}, ...]}`',
                "example": '{"config": {"timestamp": "2018-07-15T17:02:11Z", "spectrographs": '
                           '[{"specid": "315", "specslot": "218", "ifuslot": "021", '
                           '"ifuid": "073"}]}, "commit": false}'}},
        },
        "PositionsForm": {
            "type": "object",
            "required": ["station_id", "password", "checksum", "data"],
            "properties": {**form_fields, "data": {
                **filled,
                "description": 'JSON text: `{"positions": [{"ifuslot", "x", "y"}, ...], '
                               '"commit": true|false}`, optionally with `"valid_from"`',
                "example": '{"positions": [{"ifuslot": "021", "x": -349.8, "y": 350.2}], '
                           '"commit": false}'}},
        },
        "UpdateStatus": {
            "type": "object",
            "required": ["code", "update_id", "state"],
            "properties": {
                "code": code,
                "update_id": {"type": "string", "pattern": "^[0-9a-f]{20}$"},
                "state": {"type": "string", "enum": ["queued", "committed", "unchanged", "held",
                                                     "rejected", "failed"]},
                "kind": {"type": "string", "enum": ["config", "positions"]},
                "station": {"type": "string"},
                "received_at": _instant("when the post was received"),
                "valid_from": _instant("when the update starts to be valid"),
                "decided_at": _instant("when the writer (or an operator) decided on it"),
                "version": {"type": "integer", "description": "the version it committed"},
                "position_set": {"type": "integer", "description": "the position set it committed"},
                "reason": {"type": "string", "description": "why it is held, rejected or failed"},
            },
        },
        "HistoryVersion": _loose("one version", {
            "version": {"type": "integer", "description": "the version id"},
            **version_fields,
            "active_ifus": {"type": "integer", "description": "active VIRUS IFUs"},
            "superseded_by": {"type": "integer", "nullable": True,
                              "description": "the later-recorded version with the same "
                                             "valid_from that corrects this one; null: none"},
        }),
        "History": _loose("the versions in valid_from order", {
            "code": code,
            "versions": {"type": "array", "items": {"$ref": "#/components/schemas/HistoryVersion"}},
        }),
        "DiffEnd": _loose("an instant compared and the version valid then", {
            "instant": _instant("the instant asked for"),
            "version": {"type": "integer", "description": "the version id"},
            **version_fields,
            "active_ifus": {"type": "integer"},
        }),
        "Change": _loose("one change, in instrument terms; details (ifuid, from_seat, to_seat, "
                         "old_specid, new_specid, dx, dy, distance, ...) by kind", {
            "kind": {"type": "string", "enum": list(diff.KINDS)},
            "seat": {**_three_digits("the IFUSLOT concerned (for moved: the new seat)"),
                     "nullable": True},
            "text": {"type": "string", "description": "one line, e.g. `IFU 073 moved from seat "
                                                      "021 to seat 024 (spectrograph 315)`"},
        }),
        "Diff": _loose("the changes between two instants", {
            "code": code,
            "from": {"$ref": "#/components/schemas/DiffEnd"},
            "to": {"$ref": "#/components/schemas/DiffEnd"},
            "positions": {"type": "string", "enum": ["nominal", "measured"]},
            "summary": {"type": "string", "description": 'e.g. "2 IFUs moved" or "no change"'},
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}},
        }),
        "IfuHistory": _loose("where one IFU bundle sat over time", {
            "code": code,
            "ifuid": _three_digits("the IFU"),
            "stays": {"type": "array", "items": _loose(
                "one stretch in which its placement did not change", {
                    "valid_from": version_fields["valid_from"],
                    "valid_until": version_fields["valid_until"],
                    "ifuslot": _three_digits("the seat"),
                    "specid": _three_digits("the spectrograph (000: none)"),
                    "specslot": _three_digits("SPECSLOT"),
                    "active": {"type": "boolean"},
                    "since_version": {"type": "integer", "description": "the version that "
                                                                        "placed it so"},
                })},
        }),
        "SysLinks": _loose("links to the system pages", {
            "code": code,
            "links": {"type": "array", "items": _loose("one link", {
                "href": {"type": "string"}, "title": {"type": "string"}})},
        }),
        "SysConfig": _loose("the effective configuration, secrets left out",
                            {"code": code, "config_file": {"type": "string"},
                             "store_file": {"type": "string"}}),
        "SysStats": _loose("running statistics", {
            "code": code,
            "pid": {"type": "integer"},
            "started_at": _instant("when the service started (under uWSGI: when the master loaded the app)"),
            "uptime_s": {"type": "number"},
            "requests": _loose("requests answered, by code and by HTTP status", {
                "scope": {"type": "string"}, "note": {"type": "string"},
                "total": {"type": "integer"},
                "by_code": _loose("code -> count", {}),
                "by_status": _loose("HTTP status -> count", {})}),
            "resources": _loose("CPU and memory of this worker and the others", {}),
            "store": _loose("the store's files, size and newest version", {}),
            "spool": _loose("updates waiting and failed", {
                "backlog": {"type": "integer"}, "failed": {"type": "integer"}}),
            "writer": _loose("the writer's heartbeat", {}),
        }),
        "Health": _loose("the health checks", {
            "code": {"type": "integer", "enum": [codes.OK, codes.UNAVAILABLE]},
            "message": {"type": "string", "description": "`healthy`, or `not healthy: ` and why"},
            "errors": {"type": "array", "items": {"type": "string"}},
            "checks": _loose("check name (store, writer, spool) -> its state in words", {}),
        }),
    }


def _headers() -> dict:
    def header(description: str, schema: dict) -> dict:
        return {"description": description, "schema": schema}

    return {
        "XFPlaneVersion": header("the version id served", {"type": "integer"}),
        "XFPlaneValidFrom": header("the version's valid_from, ISO 8601 UTC with Z",
                                   {"type": "string"}),
        "XFPlaneValidUntil": header("the version's valid_until, or `open` when no later version "
                                    "exists", {"type": "string"}),
        "XFPlaneUpdate": header("the update id (20 hex digits)",
                                {"type": "string", "pattern": "^[0-9a-f]{20}$"}),
        "ETag": header("a weak validator of what is served; send it as If-None-Match",
                       {"type": "string"}),
        "LastModified": header("when the store learned what is served", {"type": "string"}),
        "CacheControl": header("a day for a closed interval, a minute for an open one, a year "
                               "when pinned by known_at; `no-store` for errors and posts",
                               {"type": "string"}),
        "Vary": header("what the answer depends on: Accept, and Origin when CORS is enabled",
                       {"type": "string"}),
        "ContentDisposition": header('`attachment; filename="fplane<datestr>.txt"` (today\'s '
                                     'night label when no datestr)', {"type": "string"}),
        "AccessControlAllowOrigin": header("the origin, when it is in `[Server] cors_origins`",
                                           {"type": "string"}),
        "AccessControlExposeHeaders": header("the headers a cross-origin page may read "
                                             "(X-FPlane-*, ETag, Last-Modified, ...)",
                                             {"type": "string"}),
        "AccessControlAllowMethods": header("the methods allowed cross-origin", {"type": "string"}),
        "AccessControlAllowHeaders": header("the request headers allowed cross-origin",
                                            {"type": "string"}),
        "AccessControlMaxAge": header("how long a preflight answer may be cached, seconds",
                                      {"type": "string"}),
        "Allow": header("the methods this path answers", {"type": "string"}),
    }


def _shared_errors(paths: dict) -> tuple[dict, dict]:
    """The paths with each error response replaced by a reference to one shared component
    (named by its status and codes, e.g. Error404Codes302), and those components: most
    operations share their refusals, and the document stays readable."""
    shared: dict[str, dict] = {}

    def hoisted(status: str, response: dict) -> dict:
        if response.get("content", {}).get(JSON) != ERROR_JSON:
            return response  # not a plain refusal (an answer, or /health's 503)
        name = f"Error{status}Codes" + "_".join(map(str, response["x-fplane-codes"]))
        if HTML in response["content"]:
            name += "OrPage"  # the page answers some refusals with itself and a message
        assert shared.setdefault(name, response) == response, f"two responses named {name}"
        return {"$ref": f"#/components/responses/{name}"}

    def operation_with_refs(operation):
        if not isinstance(operation, dict) or "responses" not in operation:
            return operation  # a path item's parameters
        responses = {status: hoisted(status, r) for status, r in operation["responses"].items()}
        return {**operation, "responses": responses}

    new_paths = {path: {key: operation_with_refs(op) for key, op in item.items()}
                 for path, item in paths.items()}
    return new_paths, dict(sorted(shared.items()))


def _components(shared_errors: dict) -> dict:
    return {
        "schemas": _schemas(),
        "parameters": _parameters(),
        "headers": _headers(),
        "responses": {
            "MethodNotAllowed": {
                **_error((codes.METHOD_NOT_ALLOWED,), "any method a path does not list"),
                "headers": {"X-FPlane-Code": _code_header((codes.METHOD_NOT_ALLOWED,)),
                            "Allow": {**_headers()["Allow"], "required": True},
                            "Cache-Control": _header_ref("CacheControl")},
            },
            "UnknownResource": _error((codes.NOT_FOUND,), "any path not listed"),
            **shared_errors,
        },
    }
