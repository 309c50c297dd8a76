"""GET /openapi.json: the document is valid OpenAPI 3.0, documents every code with its
HTTP status, and the running app answers every documented operation as documented (status,
X-FPlane-Code, Content-Type, required headers), and nothing it does not document.

The app is the very partial examples/application.wsgi builds, on a store made and filled
by the real fplane-admin. Requests are made of the document's own examples, and then
generated from it by schemathesis (valid ones, and invalid ones where the document
constrains a parameter or body).
"""

import json
import re
from datetime import datetime, timezone
from functools import partial
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from tests.fplane_samples import make_rows, status_from_rows, swap_ifus
from tests.support import add_station, import_rows, init_store, test_app, update_form, write_config
from wsgi import codes, dates
from wsgi.app import application
from wsgi.openapi import PREFLIGHT_STATUS, openapi_document, openapi_json

DOCUMENT = openapi_document()
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ORIGIN = "https://example.org"


FIRST = make_rows()
SECOND = swap_ifus(FIRST, 21, 24)


def resolve(node: dict) -> dict:
    """Follow a local "$ref" ("#/components/...") to what it names."""
    while "$ref" in node:
        target = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations():
    """(path, method, path item, operation) for every documented operation."""
    return [(path, method, item, operation)
            for path, item in DOCUMENT["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS]


OPERATIONS = [pytest.param(path, method, item, op, id=f"{method.upper()} {path}")
              for path, method, item, op in operations()]


def parameters(item: dict, operation: dict) -> list[dict]:
    """The operation's parameters: the path item's, overridden by the operation's own."""
    merged = {}
    for parameter in (*item.get("parameters", ()), *operation.get("parameters", ())):
        parameter = resolve(parameter)
        merged[parameter["name"], parameter["in"]] = parameter
    return list(merged.values())


def documented_codes() -> set[tuple[str, int]]:
    """(HTTP status, X-FPlane-Code) pairs the document says can happen."""
    pairs = set()
    for _, _, _, operation in operations():
        for status, response in operation["responses"].items():
            pairs |= {(status, c) for c in resolve(response)["x-fplane-codes"]}
    unreferenced = {"MethodNotAllowed": "405", "UnknownResource": "404"}
    for name, status in unreferenced.items():
        pairs |= {(status, c) for c in DOCUMENT["components"]["responses"][name]["x-fplane-codes"]}
    return pairs


# -- the document itself -----------------------------------------------------------------

def test_document_is_valid_openapi_3():
    assert DOCUMENT["openapi"].startswith("3.0.")
    validate(DOCUMENT)


def test_served_bytes_are_the_document():
    assert json.loads(openapi_json()) == DOCUMENT
    assert openapi_json() is openapi_json()  # built once per process


def test_every_code_is_documented_with_its_http_status():
    pairs = documented_codes()
    expected = {(str(c.http_status), c.code) for c in codes.CODES.values()}
    assert expected - pairs == set()
    # 100 is also 202 on a POST (spooled), 304 on a conditional GET and the preflight's status.
    assert pairs - expected <= {("202", codes.OK), ("304", codes.OK), (PREFLIGHT_STATUS, codes.OK)}
    assert ("202", codes.OK) in pairs and ("202", codes.HELD) in pairs


def test_code_schema_lists_every_code_with_message_and_status():
    schema = DOCUMENT["components"]["schemas"]["Code"]
    assert schema["enum"] == list(codes.CODES)
    for c in codes.CODES.values():
        assert schema["x-fplane-codes"][str(c.code)] == {"message": c.message, "http_status": c.http_status}
        assert f"| {c.code} | {c.message} |" in schema["description"]
        assert f"| {c.code} | {c.message} |" in DOCUMENT["info"]["description"]


def test_code_header_enum_matches_the_codes_each_response_lists():
    for path, method, _, operation in operations():
        for status, response in operation["responses"].items():
            response = resolve(response)
            header = resolve(response["headers"]["X-FPlane-Code"])
            assert header["required"] is True
            assert header["schema"]["enum"] == response["x-fplane-codes"], (method, path, status)


def test_every_parameter_is_described_and_every_path_parameter_has_an_example():
    for path, method, item, operation in operations():
        for parameter in parameters(item, operation):
            assert parameter.get("description"), (method, path, parameter["name"])
            if parameter["in"] == "path":
                assert "example" in parameter, (method, path, parameter["name"])


def test_every_path_answers_cors_preflight_and_head_wherever_get():
    for path, item in DOCUMENT["paths"].items():
        assert "options" in item, path
        assert ("get" in item) == ("head" in item), path


# -- the date pattern agrees with dates.parse_datestr -------------------------------------

SITE_TZ = ZoneInfo("America/Chicago")
NOW = datetime(2018, 7, 7, 12, tzinfo=timezone.utc)
DATESTR = re.compile(DOCUMENT["components"]["schemas"]["Datestr"]["pattern"])


def server_reads(text: str) -> bool:
    try:
        dates.parse_datestr(text, SITE_TZ, NOW)
    except dates.DateError:
        return False
    return True


@pytest.mark.parametrize("text", [
    "", " ", "latest", "NOW", " 20180707\t", "Current", "20180707", "2018-07-07", "20180707v012",
    "20180707T02:27:24.5",
    "20180707T022724", "2018-07-07T05:00:00Z", "2018-07-07T05:00:00.123456+05:30",
    "20180707T05:00:00 05:00", "2018-07-07-05:00", "20200229", "20000229", "19000101", "99981231"])
def test_date_pattern_admits_what_the_server_reads(text):
    assert server_reads(text) and DATESTR.fullmatch(text)


@pytest.mark.parametrize("text", [
    "yesterday", "20190229", "19000229", "21000229", "20181301", "20180631", "18991231",
    "99991231", "2018-07-07 05:00", "20180707T24:00:00", "20180707T23:59:60", "20180707+24:00",
    "2018070", "20180707T05:00:00.1234567Z", "2018-07-07T05:00:00+0500"])
def test_date_pattern_refuses_what_the_server_refuses(text):
    assert not server_reads(text) and not DATESTR.fullmatch(text)


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.from_regex(DATESTR, fullmatch=True).filter(lambda text: len(text) <= dates.MAX_LENGTH))
def test_every_date_the_schema_admits_is_read(text):
    """Pattern and maxLength together: the Datestr schema."""
    assert DOCUMENT["components"]["schemas"]["Datestr"]["maxLength"] == dates.MAX_LENGTH
    assert server_reads(text), text


@st.composite
def near_dates(draw):
    """The forms' shapes with numbers in and out of range: where mistakes would hide."""
    def two(low, high):
        return f"{draw(st.integers(low, high)):02d}"

    sep = draw(st.sampled_from(["", "-"]))
    text = f"{draw(st.integers(1890, 9999))}{sep}{two(0, 13)}{sep}{two(0, 32)}"
    if draw(st.booleans()):
        tsep = draw(st.sampled_from([":", ""]))
        text += f"T{two(0, 25)}{tsep}{two(0, 61)}{tsep}{two(0, 61)}"
        text += draw(st.sampled_from(["", ".5", ".123456"]))
    offset = draw(st.sampled_from(["", "Z", "+", "-", " "]))
    if offset in "+- " and offset:
        offset += f"{two(0, 25)}:{two(0, 61)}"
    return text + offset


@settings(max_examples=1000, deadline=None)
@given(near_dates())
def test_the_pattern_and_the_server_agree_on_near_misses(text):
    assert server_reads(text) == bool(DATESTR.fullmatch(text)), text


# -- the running app against the document ------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("openapi"), Server={"cors_origins": ORIGIN})
    init_store(config)
    import_rows(config, FIRST, "20180601", "--comment", "first light")
    import_rows(config, SECOND, "20180801", "--comment", "IFU swap")
    password = add_station(config, "ops", "config;positions")
    return config, password


@pytest.fixture(scope="module")
def app(site):
    return test_app(site[0])


def build_request(path: str, method: str, item: dict, operation: dict, variant: str):
    """(url, headers, content type, body) for a request made of the document's examples.

    variant "bare": path parameters only; "examples": every parameter's example and a
    multipart body; "json": JSON asked for (format=json where the operation takes it,
    else the Accept header)."""
    query, headers = {}, {}
    url = path
    for parameter in parameters(item, operation):
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", quote(parameter["example"], safe=""))
        elif variant == "examples" and "example" in parameter:
            (query if parameter["in"] == "query" else headers)[parameter["name"]] = parameter["example"]
    if variant == "json":
        if any(p["name"] == "format" for p in parameters(item, operation)):
            query["format"] = "json"
        else:
            headers["Accept"] = "application/json"
    if query:
        url += "?" + urlencode(query)
    content_type, body = None, b""
    if "requestBody" in operation:
        content = operation["requestBody"]["content"]
        media = "multipart/form-data" if variant == "examples" else "application/x-www-form-urlencoded"
        schema = resolve(content[media]["schema"])
        form = {name: field["example"] for name, field in schema["properties"].items()}
        content_type, body = encode_form(media, form)
    return url, headers, content_type, body


def encode_form(media: str, form: dict) -> tuple[str, bytes]:
    if media == "multipart/form-data":
        boundary = "openapi-test-boundary"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                 for name, value in form.items()]
        return f"{media}; boundary={boundary}", ("".join(parts) + f"--{boundary}--\r\n").encode()
    return media, urlencode(form).encode()


def send(app, method: str, url: str, headers=None, content_type=None, body=b""):
    kwargs = {"method": method.upper(), "headers": headers or {}, "expect_errors": True}
    if content_type:
        kwargs.update(content_type=content_type, body=body)
    return app.request(url, **kwargs)


def assert_documented(operation: dict, response, label: str):
    """The response is one the operation documents: status, code, media type, headers;
    and not the internal error every operation documents but none may give."""
    status = str(response.status_int)
    assert response.status_int != 500, f"{label}: internal error"
    assert status in operation["responses"], (
        f"{label}: HTTP {status} (code {response.headers.get('X-FPlane-Code')}) is not documented; "
        f"documented: {sorted(operation['responses'])}; body: {response.body[:200]!r}")
    documented = resolve(operation["responses"][status])
    code = response.headers.get("X-FPlane-Code")
    assert code is not None and int(code) in documented["x-fplane-codes"], (
        f"{label}: HTTP {status} with code {code}, documented codes {documented['x-fplane-codes']}")
    content = documented.get("content")
    if content and status != "304":
        assert response.content_type in content, (
            f"{label}: HTTP {status} as {response.content_type}, documented {sorted(content)}")
    for name, header in documented.get("headers", {}).items():
        if resolve(header).get("required"):
            assert name in response.headers, f"{label}: HTTP {status} lacks header {name}"


@pytest.mark.parametrize("variant", ["bare", "examples", "json"])
@pytest.mark.parametrize("path, method, item, operation", OPERATIONS)
def test_example_requests_are_answered_as_documented(app, path, method, item, operation, variant):
    url, headers, content_type, body = build_request(path, method, item, operation, variant)
    response = send(app, method, url, headers, content_type, body)
    assert_documented(operation, response, f"{method.upper()} {url} ({variant})")


# The example requests that are meant to fail on this store, and how.
EXAMPLES_REFUSED = {
    ("/updates/{uid}", "get"): 404,     # no update with the example id was ever posted
    ("/updates/{uid}", "head"): 404,
    ("/health", "get"): 503,           # no writer runs here, so it has no fresh heartbeat
    ("/health", "head"): 503,
}


@pytest.mark.parametrize("path, method, item, operation",
                         [p for p in OPERATIONS if p.values[1] in ("get", "head", "options")])
def test_example_reads_succeed_on_a_store_that_has_them(app, path, method, item, operation):
    url, headers, _, _ = build_request(path, method, item, operation, "examples")
    response = send(app, method, url, headers)
    expected = EXAMPLES_REFUSED.get((path, method))
    if expected is None:
        assert 200 <= response.status_int < 300, (
            f"{method.upper()} {url}: HTTP {response.status_int} {response.body[:200]!r}")
    else:
        assert response.status_int == expected


def post_paths():
    return [(path, item["post"]) for path, item in DOCUMENT["paths"].items() if "post" in item]


def real_data(path: str, commit: bool) -> dict:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if path.startswith("/positions"):
        return {"positions": [{"ifuslot": "021", "x": -349.8, "y": 350.2}], "commit": commit}
    return {"config": status_from_rows(swap_ifus(SECOND, 31, 32), now), "commit": commit}


def concrete(path: str, item: dict) -> str:
    for parameter in item.get("parameters", ()):
        parameter = resolve(parameter)
        path = path.replace("{" + parameter["name"] + "}", quote(parameter["example"], safe=""))
    return path


@pytest.mark.parametrize("path, operation", post_paths(), ids=[p for p, _ in post_paths()])
def test_real_posts_and_their_updates_are_answered_as_documented(app, site, path, operation):
    item = DOCUMENT["paths"][path]
    url = concrete(path, item)
    form = update_form("ops", site[1], real_data(path, commit=False))
    for media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        response = send(app, "post", url, {}, *encode_form(media, form))
        assert_documented(operation, response, f"dry run POST {url} as {media}")
        assert response.headers["X-FPlane-Code"] == str(codes.DRY_RUN)

    response = send(app, "post", url, {}, *encode_form(
        "application/x-www-form-urlencoded", update_form("ops", site[1], real_data(path, commit=True))))
    assert_documented(operation, response, f"POST {url}")
    assert response.status_int == 202
    update = DOCUMENT["paths"]["/updates/{uid}"]
    for method in ("get", "head"):
        for query in ("", "?format=json"):
            status = send(app, method, f"/updates/{response.headers['X-FPlane-Update']}{query}")
            assert_documented(update[method], status, f"{method.upper()} /updates/<id>{query}")
            assert status.status_int == 200


def test_conditional_get_is_answered_as_documented(app):
    operation = DOCUMENT["paths"]["/fplane/{datestr}"]["get"]
    first = send(app, "get", "/fplane/20180707?actual_pos=0&full_fplane=1")
    again = send(app, "get", "/fplane/20180707?actual_pos=0&full_fplane=1",
                 {"If-None-Match": first.headers["ETag"]})
    assert again.status_int == 304
    assert_documented(operation, again, "conditional GET")


def test_no_configuration_and_bad_dates_are_answered_as_documented(app):
    operation = DOCUMENT["paths"]["/fplane/{datestr}"]["get"]
    for url, status in (("/fplane/20100101", 404), ("/fplane/yesterday", 400),
                        ("/fplane/20180707?actual_pos=2", 400), ("/fplane/20180707?format=xml", 400),
                        ("/fplane/20180707?known_at=soon&format=json", 400)):
        response = send(app, "get", url)
        assert response.status_int == status
        assert_documented(operation, response, url)


def test_blanks_around_a_date_are_ignored_and_kept_out_of_headers(app):
    """The Datestr pattern admits blanks around a date, as dates.parse_datestr does; the
    file name in Content-Disposition must not carry them (a CR or LF there would split
    the response)."""
    operation = DOCUMENT["paths"]["/fplane/{datestr}"]["get"]
    for datestr in ("%2020180707%20", "%0D%0A20180707", "20180707%09"):
        response = send(app, "get", f"/fplane/{datestr}")
        assert_documented(operation, response, f"GET /fplane/{datestr}")
        assert response.status_int == 200
        assert not any(c in value for _, value in response.headerlist for c in "\r\n")


UNDOCUMENTED_PATHS = ("/nope", "/fplane/20180707/extra", "/positions/20180707/extra",
                      "/updates/8443b7066d6d60f1d5b4/extra", "/map/20180707.png", "/diff/20180707",
                      "/index.html", "/openapi.yaml", "/sys/nope", "/feed/extra", "/ifu/073/extra")


@pytest.mark.parametrize("path", UNDOCUMENTED_PATHS)
def test_undocumented_paths_are_unknown_resources(app, path):
    response = send(app, "get", path)
    assert (response.status_int, response.headers["X-FPlane-Code"]) == (404, str(codes.NOT_FOUND))
    assert response.content_type in DOCUMENT["components"]["responses"]["UnknownResource"]["content"]


@pytest.mark.parametrize("path", list(DOCUMENT["paths"]))
def test_undocumented_methods_are_refused_with_the_documented_allow(app, path):
    item = DOCUMENT["paths"][path]
    url = concrete(path, item)
    documented = {m.upper() for m in item if m in HTTP_METHODS} - {"OPTIONS"}
    for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - documented:
        response = send(app, method, url)
        refused = (response.status_int, response.headers["X-FPlane-Code"])
        assert refused == (405, str(codes.METHOD_NOT_ALLOWED)), f"{method} {url}"
        allowed = {m.strip() for m in response.headers["Allow"].split(",")} - {"OPTIONS"}
        assert allowed == documented, f"{method} {url}"


def test_the_app_serves_this_document(app):
    response = app.get("/openapi.json")
    assert response.headers["X-FPlane-Code"] == str(codes.OK)
    assert response.content_type == "application/json"
    assert response.json == DOCUMENT


# -- fuzzing: schemathesis generates requests from the document ---------------------------

FUZZ_EXAMPLES = 15


def fuzzed_operations():
    """(path, method, whether invalid requests can be made from its parameters or body)."""
    cases = []
    for path, method, item, operation in operations():
        constrained = "requestBody" in operation or any(
            "enum" in schema or "pattern" in schema
            for schema in (resolve(p["schema"]) for p in parameters(item, operation)))
        cases.append(pytest.param(path, method, constrained, id=f"{method.upper()} {path}"))
    return cases


def no_internal_error(ctx, response, case):
    # Not schemathesis's not_a_server_error: /health documents its 503.
    assert response.status_code != 500, f"internal error: {response.text[:200]}"


@pytest.mark.parametrize("path, method, constrained", fuzzed_operations())
def test_fuzzed_requests_get_only_documented_answers(site, path, method, constrained):
    """Valid requests and (where the document constrains something) invalid ones: no
    internal error, and status, code, media type, headers and JSON as documented."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi import checks

    schema = schemathesis.openapi.from_dict(json.loads(openapi_json()))
    operation = schema[path][method.upper()]
    app = partial(application, configfile=str(site[0]))
    common = [no_internal_error, checks.status_code_conformance, checks.content_type_conformance,
              checks.response_headers_conformance, checks.response_schema_conformance]
    modes = {GenerationMode.POSITIVE: [*common, checks.positive_data_acceptance]}
    if constrained:
        modes[GenerationMode.NEGATIVE] = [*common, checks.negative_data_rejection]
    for mode, mode_checks in modes.items():
        @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            case.validate_response(case.call(app=app), checks=mode_checks)

        fuzz()
