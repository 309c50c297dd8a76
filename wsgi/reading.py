"""GET /fplane[/<datestr>]: the fplane file valid at an instant, as text or JSON.

The GET path's one cache lives here: a worker keeps each finished /fplane response,
keyed by what the answer depends on besides the store (the path, the query, and the
Accept header that chooses text or JSON), and forgets them all when the store changes
(``cached``). A response is kept only when it does not depend on the clock (an explicit
date and known_at, not "now"). Everything else is computed from the store per request:
a miss costs a fraction of a millisecond, and pipelines repeat their requests.
"""

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from webob import Response

from wsgi import codes, dates, fplane
from wsgi.responses import JSON, TEXT, CodedError, respond, wants_json
from wsgi.store import NO_LIMIT, PositionSet, Store, StoreUnavailable, Version, WorkerStore

# Cache-Control lifetimes. A closed interval can still be corrected by a later import, so
# even those are revalidated daily; an answer pinned by known_at can never change.
MAX_AGE_PINNED = 365 * 86400
MAX_AGE_CLOSED = 86400
MAX_AGE_OPEN = 60

# Part of every ETag: bump it when the served text changes for the same version, so that
# clients do not keep an old rendering.
FORMAT_REVISION = 1

# Memory stays bounded whatever dates clients ask for.
RESPONSE_CACHE_SIZE = 1024


@dataclass(frozen=True)
class FplaneQuery:
    datestr: str | None  # as given in the path; None when the path names no date
    actual: bool
    full: bool
    known_at: str | None
    as_json: bool


def parse_query(datestr: str | None, params, environ) -> FplaneQuery:
    """Check the query parameters; unknown ones are ignored (clients add cache busters)."""
    fmt = single_param(params, "format", ("txt", "json"))
    return FplaneQuery(
        datestr=datestr,
        actual=single_param(params, "actual_pos", ("0", "1"), default="0") == "1",
        full=single_param(params, "full_fplane", ("0", "1"), default="1") == "1",
        known_at=single_param(params, "known_at", None),
        as_json=wants_json(environ, fmt),
    )


def json_asked(req) -> bool:
    """format=json, or else an Accept header asking for JSON (format=txt wins over it)."""
    return wants_json(req.environ, single_param(req.GET, "format", ("txt", "json")))


def single_param(params, name, allowed, default=None):
    values = set(params.getall(name))
    if len(values) > 1:
        raise CodedError(codes.BAD_PARAMETER, f"{name} is given more than once with different values")
    value = values.pop() if values else default
    if allowed is not None and value is not None and value not in allowed:
        raise CodedError(codes.BAD_PARAMETER, f"{name} must be {' or '.join(allowed)}, not {value[:20]!r}")
    return value


@dataclass(frozen=True)
class Answer:
    version: Version
    position_set: PositionSet | None
    body: str
    filename: str


class FplaneReader:
    """Answers fplane GETs for one worker from its read-only store connection."""

    def __init__(self, config, store: WorkerStore | None = None):
        self._site_tz = config.timezone
        self._store = store
        self._responses = _BoundedCache(RESPONSE_CACHE_SIZE)

    # -- the cache -------------------------------------------------------------------------

    @staticmethod
    def response_key(environ):
        # Everything the answer depends on besides the store, taken raw: the same header
        # always means the same choice, and nothing has to be worked out to look it up.
        return (environ.get("PATH_INFO"), environ.get("QUERY_STRING"), environ.get("HTTP_ACCEPT"))

    def cached(self, environ) -> Response | None:
        """The response kept for an identical earlier GET or HEAD, while the store has not
        changed since; None otherwise (and every kept response is forgotten when it has)."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        try:
            if self._store.changed():
                self._responses.clear()
                return None
        except StoreUnavailable:
            return None  # the handler answers: 503 where the store is needed
        return self._responses.get(self.response_key(environ))

    # -- answering -------------------------------------------------------------------------

    def answer(self, store: Store, query: FplaneQuery, now: datetime) -> "Answer":
        """The file (or JSON) for ``query``: what GET serves and fplane-admin export writes."""
        instant = parse_instant(query.datestr or "", self._site_tz, now)
        known_at = None if query.known_at is None else parse_instant(query.known_at, self._site_tz, now)
        t = dates.to_micros(instant)
        k = NO_LIMIT if known_at is None else dates.to_micros(known_at)

        with store.snapshot():
            version = store.version_at(t, k)
            if version is None:
                raise CodedError(codes.NO_CONFIGURATION, no_configuration_message(store, instant, k))
            position_set = store.position_set_at(t, k) if query.actual else None
            rows = store.configuration_rows(version.configuration_id)
            if position_set is not None:
                rows = fplane.with_positions(rows, store.positions(position_set.id))
        if query.as_json:
            body = _json_body(query, instant, version, position_set, rows)
        else:
            body = fplane.render_fplane(rows, _header_lines(query, instant, version, position_set),
                                        query.full)
        # The datestr as parsed, without the blanks parse_datestr forgives: a CR/LF sent
        # as %0D%0A must never reach a response header.
        filename_date = (query.datestr or "").strip(dates.SURROUNDING_WHITESPACE) \
            or dates.night_label(now, self._site_tz)
        return Answer(version, position_set, body,
                      f"fplane{filename_date}.{'json' if query.as_json else 'txt'}")

    def get_fplane(self, req, datestr: str | None = None) -> Response:
        """GET /fplane[/<datestr>]."""
        query = parse_query(datestr or None, req.GET, req.environ)
        answer = self.answer(self._store.get(), query, datetime.now(timezone.utc))
        version, position_set = answer.version, answer.position_set
        response = respond(
            codes.OK, answer.body, JSON if query.as_json else TEXT,
            cache_control=f"public, max-age={_max_age(query, version, position_set)}",
            etag=_etag(query, version, position_set),
            last_modified=max(version.recorded_at, position_set.recorded_at if position_set else 0) / 1e6,
            headers=[
                ("X-FPlane-Version", str(version.id)),
                ("X-FPlane-Valid-From", dates.format_micros(version.valid_from)),
                ("X-FPlane-Valid-Until", until_text(version.valid_until)),
                ("Vary", "Accept"),
                ("Content-Disposition", f'attachment; filename="{answer.filename}"'),
            ])
        if _clock_independent(query):
            self._responses.put(self.response_key(req.environ), response)
        return response


def _json_body(query, instant, version, position_set, rows) -> str:
    document = {
        "code": codes.OK,
        "instant": dates.format_instant(instant),
        "version": version.id,
        "valid_from": dates.format_micros(version.valid_from),
        "valid_until": None if version.valid_until is None
        else dates.format_micros(version.valid_until),
        "recorded_at": dates.format_micros(version.recorded_at),
        "station": version.station,
        "comment": version.comment,
        "positions": _positions_json(position_set),
        "full_fplane": query.full,
        "rows": [_row_json(r) for r in fplane.served_rows(rows, query.full)],
    }
    return json.dumps(document, indent=1) + "\n"


def parse_instant(text: str, site_tz, now: datetime) -> datetime:
    """A datestr from a request as an instant; a bad one is code 301 with the accepted forms."""
    try:
        return dates.parse_datestr(text, site_tz, now)
    except dates.DateError as err:
        raise CodedError(codes.BAD_DATE, str(err)) from None


def _etag(query: FplaneQuery, version: Version, position_set: PositionSet | None) -> str:
    """A weak validator naming what is served rather than hashing the bytes: answers for
    "latest" asked a minute apart differ only in the instant their header states, and a
    pipeline polling latest must still get its 304 while the version stays the same."""
    identity = (FORMAT_REVISION, version.id, position_set and position_set.id, query.full,
                query.actual, query.as_json, query.datestr, query.known_at)
    return 'W/"' + hashlib.sha256(repr(identity).encode()).hexdigest()[:32] + '"'


def _clock_independent(query: FplaneQuery) -> bool:
    # "now" moves, and so does today's night label in the default file name.
    return query.datestr is not None and not dates.means_now(query.datestr) and (
        query.known_at is None or not dates.means_now(query.known_at)
    )


def _max_age(query: FplaneQuery, version: Version, position_set: PositionSet | None) -> int:
    if query.known_at is not None and not dates.means_now(query.known_at):
        return MAX_AGE_PINNED
    still_open = version.valid_until is None or (position_set is not None and position_set.valid_until is None)
    return MAX_AGE_OPEN if still_open else MAX_AGE_CLOSED


def until_text(micros: int | None) -> str:
    """A valid_until as served: the instant, or "open" when no later version exists."""
    return "open" if micros is None else dates.format_micros(micros)


def _header_lines(query, instant, version, position_set) -> list[str]:
    lines = [
        f"fplane file of the HET/VIRUS focal plane at {dates.format_instant(instant)}"
        + (f" (asked for: {query.datestr})" if query.datestr else ""),
        f"version {version.id}: valid_from {dates.format_micros(version.valid_from)},"
        f" valid_until {until_text(version.valid_until)}",
        f"recorded_at {dates.format_micros(version.recorded_at)} by {version.station}"
        + (f" ({version.source})" if version.source else ""),
    ]
    if version.comment:
        lines.append(f"comment: {version.comment}")
    if query.known_at is not None:
        lines.append(f"as known at {query.known_at}")
    if not query.actual:
        lines.append("positions: nominal")
    elif position_set is None:
        lines.append("positions: measured asked for, but no measured position set is valid then: nominal")
    else:
        lines.append(
            f"positions: measured (position set {position_set.id}, valid_from"
            f" {dates.format_micros(position_set.valid_from)}); seats not measured are nominal"
        )
    lines.append("full file (inactive seats commented out)" if query.full else "short file (active VIRUS IFUs only)")
    return lines


def _positions_json(position_set: PositionSet | None):
    if position_set is None:
        return "nominal"
    return {
        "kind": "measured",
        "position_set": position_set.id,
        "valid_from": dates.format_micros(position_set.valid_from),
        "recorded_at": dates.format_micros(position_set.recorded_at),
    }


def _row_json(row: fplane.Row) -> dict:
    return {
        "ifuslot": f"{row.ifuslot:03d}",
        "x": round(row.x, 3),
        "y": round(row.y, 3),
        "specid": f"{row.specid:03d}",
        "specslot": f"{row.specslot:03d}",
        "ifuid": f"{row.ifuid:03d}",
        "ifurot": row.ifurot,
        "platesc": row.platesc,
        "active": row.active,
    }


def no_configuration_message(store: Store, instant: datetime, known_at: int = NO_LIMIT) -> str:
    earliest = store.earliest_valid_from(known_at)
    asked = dates.format_instant(instant)
    if earliest is None:
        return f"no configuration known for {asked}: the store holds no versions yet"
    return (f"no configuration known for {asked}: the history starts at "
            f"{dates.format_micros(earliest)}")


class _BoundedCache(OrderedDict):
    """A dict that forgets its oldest entries beyond ``size`` (memory stays bounded whatever
    dates clients ask for). Filled with ``put``; ``get`` is the dict's own, called on every
    cached GET."""

    def __init__(self, size: int):
        super().__init__()
        self._size = size

    def put(self, key, value) -> None:
        self[key] = value
        if len(self) > self._size:
            self.popitem(last=False)
