"""The WSGI application: ``application(environ, start_response, configfile)``.

Deployments bind the config file with ``functools.partial`` (examples/application.wsgi), so
the callable keeps the WSGI signature while each process reads config.ini once: the first
request for a config file builds its Service, later ones reuse it. The store connection is
opened lazily in each worker, after uWSGI has forked, because an SQLite connection must not
cross a fork.

Everything that can fail runs inside one ``try`` in Service.__call__ and becomes a coded
response there: a client never sees a stack trace or a server path.
"""

import os
import re
import sys
import time
from urllib.parse import parse_qs

from webob import Request

from wsgi import codes, dates
from wsgi.config import ConfigError, load_config
from wsgi.cors import CorsPolicy
from wsgi.logs import RequestLog, make_logger
from wsgi.openapi import openapi_json
from wsgi.posting import UpdateReceiver
from wsgi.reading import FplaneReader, json_asked, parse_query
from wsgi.responses import JSON, TEXT, CodedError, Prepared, error_response, wants_json
from wsgi.script import ClientScript
from wsgi.store import Store, StoreUnavailable
from wsgi.views import HistoryViews
from wsgi.walwatch import HEADER_BYTES, wal_index
from wsgi.counters import RequestCounters
from wsgi.system import SystemViews

# One Service per config file per process: the explicit home of the "read config once" state.
_SERVICES: dict[str, "Service"] = {}


def load_service(configfile) -> "Service":
    """The process's Service for ``configfile``, built on first use; raises ConfigError.

    examples/application.wsgi calls this at import, so a bad config.ini stops uWSGI at
    start-up (need-app) with one line, and the master's parsed config is inherited by
    every worker it forks."""
    service = _SERVICES.get(configfile)
    if service is None:
        service = _SERVICES[configfile] = Service(load_config(configfile))
    return service


def application(environ, start_response, configfile):
    service = _SERVICES.get(configfile)  # every request but a process's first
    if service is not None:
        return service(environ, start_response)
    try:
        service = load_service(configfile)
    except ConfigError as err:
        # examples/application.wsgi checks the config at start-up; reaching this means
        # the file changed into something unusable before this worker's first request.
        print(f"fplaneserver: {err}", file=sys.stderr, flush=True)
        return error_response(
            CodedError(codes.INTERNAL_ERROR, "internal error (details only in the log)"), False
        ).serve(environ, start_response)[1]
    return service(environ, start_response)


class WorkerStore:
    """This worker's read-only store connection, opened on first use and after a fork."""

    def __init__(self, path):
        self._path = path
        self._store = None
        self._pid = None
        self._wal_index = None
        self._wal_header = None
        self._data_version = None

    def get(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            self._store = Store.open_readonly(self._path)
            self._pid = os.getpid()
            self._wal_index = wal_index(self._path)
            self._wal_header = self._data_version = None
        return self._store

    def changed(self) -> bool:
        """True when the store has changed since the last call (or on first use).

        Unchanged wal-index header bytes mean no commit, without asking SQLite (wsgi/walwatch.py);
        any other answer is SQLite's data_version. The header is read before data_version,
        so a commit between the two is seen again, never missed, at the next call.

        The header is compared before get(): that answer touches no connection, so it holds
        in a forked child too, and the cached GET makes no system call (get() asks getpid)."""
        index = self._wal_index
        if index is not None and index[:HEADER_BYTES] == self._wal_header:
            return False
        store = self.get()   # after a fork: reopened, header and data_version forgotten
        if self._wal_index is not None:
            self._wal_header = self._wal_index[:HEADER_BYTES]
        version = store.data_version()
        changed, self._data_version = version != self._data_version, version
        return changed


class Service:
    def __init__(self, config):
        self.config = config
        self.log = make_logger(config, "web")
        self.request_log = RequestLog(config)
        self.store = WorkerStore(config.store_path)
        self.reader = FplaneReader(config)
        self.receiver = UpdateReceiver(config, self.log)
        self.views = HistoryViews(config)
        self.cors = CorsPolicy(config.cors_origins)
        self.openapi = Prepared(codes.http_status_line(codes.OK),
                                [("Content-Type", JSON), ("X-FPlane-Code", str(codes.OK)),
                                 ("Cache-Control", "public, max-age=3600")], openapi_json())
        # The system API. Built here, in the uWSGI master (application.wsgi loads the
        # Service at import), so every worker forked from it shares the request counters.
        self.counters = RequestCounters()
        self.system = SystemViews(config, self.counters, self.store, self.receiver.stations,
                                  self.receiver.spool)
        self.client_script = ClientScript()
        self.index_page = Prepared(  # constant: built once, served as is
            codes.http_status_line(codes.OK),
            [("Content-Type", TEXT), ("X-FPlane-Code", str(codes.OK))],
            INDEX_TEXT.format(forms=dates.ACCEPTED_FORMS).encode("utf-8"))
        self.routes = (
            (re.compile(r"/fplane(?:/(?P<datestr>[^/]*))?/?"),
             {"GET": self.get_fplane, "HEAD": self.get_fplane, "POST": self.post_fplane}),
            (re.compile(r"/positions(?:/(?P<datestr>[^/]*))?/?"), {"POST": self.post_positions}),
            (re.compile(r"/updates/(?P<uid>[^/]*)"), get(self.update_status)),
            # the system API (wsgi/system.py)
            (re.compile(r"/sys/?"), get(self.system.links)),
            (re.compile(r"/sys/config"), get(self.system.config_view)),
            (re.compile(r"/sys/stats"), get(self.system.stats)),
            (re.compile(r"/health"), get(self.system.health)),
            # looking at the history (wsgi/views.py)
            (re.compile(r"/map/(?P<datestr>[^/]*)\.svg"), get(self.map_svg)),
            (re.compile(r"/history/?"), get(self.history)),
            (re.compile(r"/diff/(?P<datestr1>[^/]*)/(?P<datestr2>[^/]*)"), get(self.diff)),
            (re.compile(r"/ifu/(?P<ifuid>[^/]*)"), get(self.ifu)),
            (re.compile(r"/feed/?"), get(self.feed)),
            (re.compile(r"/openapi\.json"), get(lambda req: self.openapi)),
            (re.compile(r"/get_fplane\.sh"), get(lambda req: self.client_script.answer(req.environ))),
            (re.compile(r"/"), get(self.index)),
        )

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        try:
            prepared = self._cached(environ) or self._dispatch(environ)
        except CodedError as err:
            prepared = error_response(err, _error_wants_json(environ))
        except StoreUnavailable as err:
            self.log.error("store unavailable: %s", err.detail)
            prepared = error_response(CodedError(codes.UNAVAILABLE, str(err)), _error_wants_json(environ))
        except Exception:
            self.log.exception("internal error on %s %s", environ.get("REQUEST_METHOD"), _path(environ))
            prepared = error_response(
                CodedError(codes.INTERNAL_ERROR, "internal error (details only in the log)"),
                _error_wants_json(environ),
            )
        if self.cors.enabled:
            extra_headers = self.cors.response_headers(environ)
            if extra_headers:
                start_response = _adding_headers(start_response, extra_headers)
        status, body = prepared.serve(environ, start_response)
        self.counters.record(prepared.code, status)  # for /sys/stats
        self.request_log.request(environ, prepared.code, status, time.perf_counter() - started)
        return body

    def _cached(self, environ) -> Prepared | None:
        """A response kept from an identical earlier request, if the store has not changed."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        try:
            changed = self.store.changed()
        except StoreUnavailable:
            # Nothing cached can be served; the handler answers: 503 where the store is
            # needed, while /health and /sys/* describe the missing store.
            return None
        if changed:
            self.reader.store_changed()
            return None
        return self.reader.cached_response(environ)

    def _dispatch(self, environ) -> Prepared:
        path = environ.get("PATH_INFO") or "/"
        for pattern, methods in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            method = environ.get("REQUEST_METHOD")
            if method == "OPTIONS":
                return self.cors.preflight(environ, methods)
            handler = methods.get(method)
            if handler is None:
                allowed = ", ".join((*methods, "OPTIONS"))
                raise CodedError(codes.METHOD_NOT_ALLOWED, f"method not allowed here; allowed: {allowed}",
                                 headers=[("Allow", allowed)])
            return handler(_request(environ), **match.groupdict())
        raise CodedError(codes.NOT_FOUND, "unknown resource", ["see / for what this server answers"])

    # -- handlers ------------------------------------------------------------------------

    def get_fplane(self, req: Request, datestr: str | None) -> Prepared:
        query = parse_query(datestr or None, req.GET, req.environ)
        return self.reader.get_fplane(self.store.get(), query, req.environ)

    def post_fplane(self, req: Request, datestr: str | None) -> Prepared:
        return self.receiver.receive(req.environ, self.store.get(), "config", datestr or None)

    def post_positions(self, req: Request, datestr: str | None) -> Prepared:
        return self.receiver.receive(req.environ, self.store.get(), "positions", datestr or None)

    def update_status(self, req: Request, uid: str) -> Prepared:
        return self.receiver.update_status(self.store.get(), uid, json_asked(req))

    def index(self, req: Request) -> Prepared:
        # The page for people; the plain-text summary of the API for a terminal.
        if req.GET.get("format") == "txt":
            return self.index_page
        return self.views.front_page(self.store.get(), req)

    def map_svg(self, req: Request, datestr: str) -> Prepared:
        return self.views.map_svg(self.store.get(), req, datestr)

    def history(self, req: Request) -> Prepared:
        return self.views.history(self.store.get(), req)

    def diff(self, req: Request, datestr1: str, datestr2: str) -> Prepared:
        return self.views.diff(self.store.get(), req, datestr1, datestr2)

    def ifu(self, req: Request, ifuid: str) -> Prepared:
        return self.views.ifu(self.store.get(), req, ifuid)

    def feed(self, req: Request) -> Prepared:
        return self.views.feed(self.store.get(), req)


INDEX_TEXT = """\
100 fplaneserver: the history of the HET/VIRUS focal plane configuration

GET /fplane/<datestr>?actual_pos=0|1&full_fplane=0|1[&known_at=<datestr>][&format=txt|json]
    the fplane file valid at <datestr>
    actual_pos=1   measured IFU positions instead of nominal ones
    full_fplane=0  the short file: the 000 row and the active VIRUS IFUs only
    known_at=D     the answer as the store knew it at D
    format=json    JSON instead of the text file (or send Accept: application/json)

POST /fplane[/<datestr>]     a station's hardware status (form: station_id, password,
                             checksum, data); answers with a code and an update id
POST /positions[/<datestr>]  measured IFU positions, the same way
GET /updates/<id>            what became of a posted update
GET /get_fplane.sh           a curl-only client with this server as its default:
                             curl -O <this server>/get_fplane.sh && sh get_fplane.sh 20180715

GET /sys                     links to the three below (each: format=txt|json)
GET /sys/config              the effective configuration (secrets left out)
GET /sys/stats               uptime, requests and responses by code, resource usage,
                             store size and newest version, spool backlog, writer heartbeat
GET /health                  200 when the store is readable and the writer's heartbeat is
                             fresh, 503 with the reason otherwise

<datestr>: {forms}
A bare date YYYYMMDD means 00:00 site-local time on that date (the middle of the night
labelled YYYYMMDD); times without an offset are UTC.
"""


def _request(environ) -> Request:
    """The WebOb request, its query string decoded here, once for every handler: WebOb
    raises UnicodeDecodeError on the first req.GET of a query that is not UTF-8."""
    req = Request(environ)
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        try:
            req.GET
        except UnicodeDecodeError:
            raise CodedError(codes.BAD_PARAMETER, "the query string is not valid UTF-8") from None
    return req


def get(handler) -> dict:
    """The methods of a route that only reads: HEAD is GET without the body (Prepared.serve)."""
    return {"GET": handler, "HEAD": handler}


def _adding_headers(start_response, extra_headers):
    """start_response with ``extra_headers`` appended: per-request headers (CORS) on a
    Prepared response that is shared between requests and must not change."""
    def start(status, headers, exc_info=None):
        return start_response(status, [*headers, *extra_headers], exc_info)
    return start


def _path(environ) -> str:
    query = environ.get("QUERY_STRING")
    return environ.get("PATH_INFO", "") + (f"?{query}" if query else "")


def _error_wants_json(environ) -> bool:
    formats = parse_qs(environ.get("QUERY_STRING", "")).get("format")
    return wants_json(environ, formats[-1] if formats else None)
