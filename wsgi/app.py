"""The WSGI application: ``application(environ, start_response, configfile)``.

Deployments bind the config file with ``functools.partial`` (examples/application.wsgi), so
the callable keeps the WSGI signature while each process reads config.ini once: the first
request for a config file builds its Service, later ones reuse it. The store connection is
opened lazily in each worker, after uWSGI has forked, because an SQLite connection must not
cross a fork.

A request goes: Service.__call__ -> the fplane response cache (wsgi/reading.py) or
_dispatch -> the route's handler (reading.py, posting.py, views.py, system.py) -> a WebOb
response made by responses.respond. Everything that can fail runs inside one ``try`` in
Service.__call__ and becomes a coded response there: a client never sees a stack trace or
a server path.
"""

import re
import sys
import time
from functools import partial
from urllib.parse import parse_qs

from webob import Request

from wsgi import codes, dates
from wsgi.config import ConfigError, load_config
from wsgi.cors import CorsPolicy
from wsgi.counters import RequestCounters
from wsgi.logs import RequestLog, make_logger, printable
from wsgi.openapi import openapi_json
from wsgi.posting import UpdateReceiver
from wsgi.reading import FplaneReader
from wsgi.responses import JSON, TEXT, CodedError, CodedResponse, error_response, respond, wants_json
from wsgi.script import ClientScript
from wsgi.store import StoreUnavailable, WorkerStore
from wsgi.snapshot import SnapshotService
from wsgi.system import SystemViews
from wsgi.views import HistoryViews

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


def close_services() -> None:
    """Close and forget every Service of this process (their store connections and log
    files), for a process that goes on after using them: the test suite builds hundreds."""
    while _SERVICES:
        _SERVICES.popitem()[1].close()


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
        )(environ, start_response)
    return service(environ, start_response)


class Route:
    """One resource: its path as the OpenAPI document writes it (``/fplane/{datestr}``),
    and the handler of each method. A handler takes the WebOb request and the path's
    parameters, and returns a response. A trailing slash is forgiven."""

    def __init__(self, path: str, methods: dict):
        self.path = path
        self.methods = methods
        self.pattern = re.compile(
            re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]*)", re.escape(path)).rstrip("/") + "/?")


def reading(handler) -> dict:
    """The methods of a route that only reads: HEAD is GET without the body (WebOb)."""
    return {"GET": handler, "HEAD": handler}


class Service:
    def __init__(self, config):
        self.config = config
        self.log = make_logger(config, "web")
        self.request_log = RequestLog(config)
        self.store = store = WorkerStore(config.store_path)
        self.reader = FplaneReader(config, store)
        receiver = UpdateReceiver(config, self.log, store)
        views = HistoryViews(config, store)
        self.cors = CorsPolicy(config.cors_origins)
        openapi = respond(codes.OK, openapi_json(), JSON, cache_control="public, max-age=3600")
        index_text = respond(codes.OK, INDEX_TEXT.format(forms=dates.ACCEPTED_FORMS), TEXT)
        # The system API. Built here, in the uWSGI master (application.wsgi loads the
        # Service at import), so every worker forked from it shares the request counters.
        self.counters = RequestCounters()
        system = SystemViews(config, self.counters, store, receiver.stations, receiver.spool)
        post_fplane = partial(receiver.receive, kind="config")
        client_script = ClientScript()
        # Every resource the service answers; the OpenAPI document describes exactly these
        # (tests/test_openapi.py checks it).
        self.routes = (
            Route("/fplane", {**reading(self.reader.get_fplane), "POST": post_fplane}),
            Route("/fplane/{datestr}", {**reading(self.reader.get_fplane), "POST": post_fplane}),
            Route("/positions", {"POST": partial(receiver.receive, kind="positions")}),
            Route("/positions/{datestr}", {"POST": partial(receiver.receive, kind="positions")}),
            Route("/updates/{uid}", reading(receiver.update_status)),
            Route("/sys", reading(system.links)),
            Route("/sys/config", reading(system.config_view)),
            Route("/sys/stats", reading(system.stats)),
            Route("/health", reading(system.health)),
            Route("/map/{datestr}.svg", reading(views.map_svg)),
            Route("/history", reading(views.history)),
            Route("/diff/{datestr1}/{datestr2}", reading(views.diff)),
            Route("/ifu/{ifuid}", reading(views.ifu)),
            Route("/feed", reading(views.feed)),
            Route("/openapi.json", reading(lambda req: openapi)),
            Route("/snapshot", reading(SnapshotService(config, store).get)),   # wsgi/snapshot.py
            Route("/get_fplane.sh", reading(lambda req: client_script.answer(req.environ))),
            # The page for people; the plain-text summary of the API for a terminal.
            Route("/", reading(lambda req: index_text if req.GET.get("format") == "txt"
                               else views.front_page(req))),
        )

    def close(self) -> None:
        self.store.close()
        self.request_log.close()
        for handler in self.log.handlers:
            handler.close()

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        try:
            response = self.reader.cached(environ) or self._dispatch(environ)
        except CodedError as err:
            response = error_response(err, _error_wants_json(environ))
        except StoreUnavailable as err:
            self.log.error("store unavailable: %s", err.detail)
            response = error_response(CodedError(codes.UNAVAILABLE, str(err)), _error_wants_json(environ))
        except Exception:
            self.log.exception("internal error on %s %s", printable(str(environ.get("REQUEST_METHOD"))),
                               _path(environ))
            response = error_response(
                CodedError(codes.INTERNAL_ERROR, "internal error (details only in the log)"),
                _error_wants_json(environ),
            )
        extra_headers = self.cors.response_headers(environ) if self.cors.enabled else ()
        sent = []

        def start(status, headers, exc_info=None):
            sent.append(status)
            return start_response(status, [*headers, *extra_headers], exc_info)

        body = response(environ, start)
        self.counters.record(response.code, sent[0])  # for /sys/stats
        self.request_log.request(environ, response.code, sent[0], time.perf_counter() - started)
        return body

    def _dispatch(self, environ) -> CodedResponse:
        path = environ.get("PATH_INFO") or "/"
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            method = environ.get("REQUEST_METHOD")
            if method == "OPTIONS":
                return self.cors.preflight(environ, route.methods)
            handler = route.methods.get(method)
            if handler is None:
                allowed = ", ".join((*route.methods, "OPTIONS"))
                raise CodedError(codes.METHOD_NOT_ALLOWED, f"method not allowed here; allowed: {allowed}",
                                 headers=[("Allow", allowed)])
            return handler(_request(environ), **match.groupdict())
        raise CodedError(codes.NOT_FOUND, "unknown resource", ["see / for what this server answers"])


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
GET /updates/<uid>           what became of a posted update

GET /                        the focal plane page for people (/?format=txt: this text)
GET /map/<datestr>.svg       the drawing of the focal plane alone
GET /history                 the versions (from=D, to=D: those valid during [D, D))
GET /diff/<datestr1>/<datestr2>  what changed on the instrument between two instants
GET /ifu/<ifuid>             where an IFU bundle sat, and on which spectrograph, over time
GET /feed                    an Atom feed of committed changes
GET /openapi.json            the OpenAPI description of every endpoint
GET /snapshot                the history as one SQLite file, for get_fplane --snapshot
                             on nodes without network (If-None-Match: only when changed)
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


def _path(environ) -> str:
    """Path and query as the log shows them: a client's control characters escaped."""
    query = environ.get("QUERY_STRING")
    return printable(environ.get("PATH_INFO", "") + (f"?{query}" if query else ""))


def _error_wants_json(environ) -> bool:
    formats = parse_qs(environ.get("QUERY_STRING", "")).get("format")
    return wants_json(environ, formats[-1] if formats else None)
