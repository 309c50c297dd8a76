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
from wsgi.logs import RequestLog, make_logger
from wsgi.posting import UpdateReceiver
from wsgi.reading import FplaneReader, parse_query
from wsgi.responses import TEXT, CodedError, Prepared, error_response, wants_json
from wsgi.store import Store, StoreUnavailable

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
        self._data_version = None

    def get(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            self._store = Store.open_readonly(self._path)
            self._pid = os.getpid()
            self._data_version = None
        return self._store

    def changed(self) -> bool:
        """True when the store has changed since the last call (or on first use)."""
        version = self.get().data_version()
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
        self.index_page = Prepared(  # constant: built once, served as is
            codes.http_status_line(codes.OK),
            [("Content-Type", TEXT), ("X-FPlane-Code", str(codes.OK))],
            INDEX_TEXT.format(forms=dates.ACCEPTED_FORMS).encode("utf-8"))
        self.routes = (
            (re.compile(r"/fplane(?:/(?P<datestr>[^/]*))?/?"),
             {"GET": self.get_fplane, "HEAD": self.get_fplane, "POST": self.post_fplane}),
            (re.compile(r"/positions(?:/(?P<datestr>[^/]*))?/?"), {"POST": self.post_positions}),
            (re.compile(r"/updates/(?P<uid>[^/]*)"),
             {"GET": self.update_status, "HEAD": self.update_status}),
            (re.compile(r"/"), {"GET": self.index, "HEAD": self.index}),
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
        status, body = prepared.serve(environ, start_response)
        self.request_log.write(
            f"{environ.get('REMOTE_ADDR', '-')} {environ.get('REQUEST_METHOD')} {_path(environ)}"
            f" {prepared.code} {status[:3]} {(time.perf_counter() - started) * 1000:.2f}ms"
        )
        return body

    def _cached(self, environ) -> Prepared | None:
        """A response kept from an identical earlier request, if the store has not changed."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        if self.store.changed():
            self.reader.store_changed()
            return None
        return self.reader.cached_response(environ)

    def _dispatch(self, environ) -> Prepared:
        path = environ.get("PATH_INFO") or "/"
        for pattern, methods in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            handler = methods.get(environ.get("REQUEST_METHOD"))
            if handler is None:
                allowed = ", ".join(methods)
                raise CodedError(codes.METHOD_NOT_ALLOWED, f"method not allowed here; allowed: {allowed}",
                                 headers=[("Allow", allowed)])
            return handler(Request(environ), **match.groupdict())
        raise CodedError(codes.NOT_FOUND, "unknown resource", ["see / for what this server answers"])

    # -- handlers ------------------------------------------------------------------------

    def get_fplane(self, req: Request, datestr: str | None) -> Prepared:
        try:
            params = req.GET
        except UnicodeDecodeError:
            raise CodedError(codes.BAD_PARAMETER, "the query string is not valid UTF-8") from None
        query = parse_query(datestr or None, params, req.environ)
        return self.reader.get_fplane(self.store.get(), query, req.environ)

    def post_fplane(self, req: Request, datestr: str | None) -> Prepared:
        return self.receiver.receive(req.environ, self.store.get(), "config", datestr or None)

    def post_positions(self, req: Request, datestr: str | None) -> Prepared:
        return self.receiver.receive(req.environ, self.store.get(), "positions", datestr or None)

    def update_status(self, req: Request, uid: str) -> Prepared:
        return self.receiver.update_status(self.store.get(), uid, _error_wants_json(req.environ))

    def index(self, req: Request) -> Prepared:
        return self.index_page


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

<datestr>: {forms}
A bare date YYYYMMDD means 00:00 site-local time on that date (the middle of the night
labelled YYYYMMDD); times without an offset are UTC.
"""


def _path(environ) -> str:
    query = environ.get("QUERY_STRING")
    return environ.get("PATH_INFO", "") + (f"?{query}" if query else "")


def _error_wants_json(environ) -> bool:
    formats = parse_qs(environ.get("QUERY_STRING", "")).get("format")
    return wants_json(environ, formats[-1] if formats else None)
