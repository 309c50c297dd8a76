"""get_fplane: the fplane file valid at a date, from fplaneserver, its cache, or a snapshot.

    get_fplane [-o FILE] [-s] [-p] [--known-at D] [--url URL] [--timeout S] [DATE]
    get_fplane [...] --batch FILE|- [-o DIR] [--table FILE]
    get_fplane [...] --fits FILE... [-o DIR] [--table FILE]
    get_fplane [...] --snapshot SNAPSHOT [--batch ... | --fits ... | DATE]

    DATE          any date form the server accepts (20180707, 2018-07-07, 20180707v012,
                  2018-07-07T05:00:00Z, ...); empty: the configuration valid now
    -o FILE       where to write it; `-o -` writes to standard output.
                  Default: fplane<DATE>.txt in the current directory (without DATE,
                  fplane<today's night>.txt). With --batch / --fits: the directory for the
                  files (default: the current directory)
    -s            the short file: the 000 row and the active VIRUS IFUs only
    -p            measured (actual) IFU positions instead of nominal ones
    -k, --known-at D
                  the answer as the server knew it at D (reproduces an old reduction)
    -u, --url URL the server, e.g. https://fplane.example.org (default: $FPLANE_URL)
    --timeout S   seconds to wait for the server (default 30)
    --cacert FILE trust the certificate authorities in FILE (PEM) for https:// (a site CA);
                  certificates are always verified
    --cache-dir D where answers are kept (default $XDG_CACHE_HOME/fplane or ~/.cache/fplane)
    --no-cache    keep nothing on disk
    --cache-max N bytes the cache directory may hold (default 200 MB; K, M, G suffixes)
    --batch FILE  one date per line (- : standard input); blank lines and # lines skipped
    --fits FILE.. the instant of each exposure from its FITS primary header (gzip'd too)
    --table FILE  write the batch table there instead of standard output
    --snapshot F  answer from a store snapshot (GET /snapshot, fplane-admin snapshot): no
                  server is asked, and the answers are byte for byte the server's

What the original HETDEX get_fplane.sh did: it requests exactly
``<URL>/fplane/<DATE>?actual_pos=0|1&full_fplane=0|1`` (plus ``&known_at=D`` when asked).
Files are written atomically (temporary file in the same directory, fsync, rename): a
failed download never leaves a half-written file and never replaces a good one.

The cache (wsgi/client_cache.py): an answer holds for every instant of the validity
interval the server announced, so an instant inside a kept interval is answered with no
network while the answer is fresh, and revalidated (If-None-Match, a 304) after.

Batch (--batch, --fits): one file per distinct answer, named by version
(``fplane_v<version>.txt``; with -p also by where the answer starts:
``fplane_v<version>_<YYYYMMDDTHHMMSSZ>.txt``), and a table, tab-separated, one line per
input: input, instant, version, file, source (server, cache, cache (revalidated), or the
snapshot), or for an input that failed ``-`` and ``error: <why>``. A failed line does not
stop the others.

Exit status: 0 written; 1 the server refused (its code line, e.g. ``302 no configuration
known for ...``, on standard error), could not be reached, or (batch) any line failed;
2 bad usage. Standard library only.

The same from Python (``fplane_text``, ``fplane_answer``, ``FplaneClient``):

    from wsgi.client import fplane_answer
    answer = fplane_answer("2018-07-15T05:12:34", url="https://fplane.example.org")
    answer.text, answer.version, answer.valid_from, answer.valid_until, answer.source
"""

import argparse
import http.client
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wsgi import dates, fplane
from wsgi.client_cache import DEFAULT_MAX_BYTES, AnswerCache, Entry, default_cache_dir, server_key, variant_key
from wsgi.files import write_atomically

PROG = "get_fplane"
DEFAULT_TIMEOUT = 30.0
_MAX_AGE = re.compile(r"max-age=([0-9]+)")
# Two zones 26 hours apart: a datestr whose instant is the same in both does not depend on
# the site time zone (it has a time, or an offset), so it can be read before the server
# has said which zone it is in.
_PROBE_ZONES = (ZoneInfo("Etc/GMT+12"), ZoneInfo("Etc/GMT-14"))


class Failed(Exception):
    """No answer; str() is the one line for standard error. ``code``: the server's (or the
    snapshot's) code, e.g. 302, or None when nothing usable arrived."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


FplaneError = Failed   # the name the Python API documents


@dataclass(frozen=True)
class FplaneAnswer:
    """One answer: the file, what it is, and where it came from."""
    text: str
    version: int
    valid_from: str            # where the answer's validity starts, ISO 8601 UTC
    valid_until: str | None    # where it ends; None: open (no later version known)
    instant: str               # the instant the date asked for means, ISO 8601 UTC
    source: str                # "server", "cache", "cache (revalidated)" or "snapshot ..."
    valid_from_micros: int
    valid_until_micros: int | None

    def holds(self, t: int) -> bool:
        return self.valid_from_micros <= t and (self.valid_until_micros is None
                                                or t < self.valid_until_micros)


class FplaneClient:
    """Answers from a server (through the cache) or from a snapshot; keeps what it learns
    (the cache's index, the server's time zone, the open snapshot) between calls."""

    def __init__(self, url: str | None = None, *, cache_dir=None, cache: bool = True,
                 cache_max: int = DEFAULT_MAX_BYTES, snapshot=None,
                 timeout: float = DEFAULT_TIMEOUT, cafile=None):
        self.snapshot = None
        if snapshot is not None:
            from wsgi.snapshot import SnapshotError, SnapshotSource   # sqlite3 only when asked
            try:
                self.snapshot = SnapshotSource(snapshot)
            except SnapshotError as err:
                raise Failed(f"{PROG}: {err}") from None
            self.url = None
        else:
            self.url = (url if url is not None else os.environ.get("FPLANE_URL", "")).strip().rstrip("/")
            if not _is_http_url(self.url):
                raise Failed(f"{PROG}: no server URL: give --url URL or set FPLANE_URL" if not self.url
                             else f"{PROG}: {self.url!r} is not an http:// or https:// URL")
        self.cache_dir = (None if not cache or self.snapshot is not None
                          else Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self.cache_max = cache_max
        self.timeout = timeout
        try:
            self._ssl = ssl.create_default_context(cafile=str(cafile)) if cafile else None
        except (OSError, ssl.SSLError) as err:
            raise Failed(f"{PROG}: cannot use {cafile} as certificate authorities: "
                         f"{getattr(err, 'strerror', None) or err}") from None
        self._caches: dict[str, AnswerCache] = {}
        self._site_tz = self.snapshot.site_timezone if self.snapshot else self._remembered_timezone()

    def source_name(self) -> str:
        return self.snapshot.describe() if self.snapshot else self.url

    # -- the instant a date means -----------------------------------------------------------

    def instant(self, when: str, now: datetime) -> int | None:
        """Microseconds of the instant ``when`` means; None when that depends on the site
        time zone and the server has not said it yet, or when this client cannot read the
        date (the server or the snapshot, the authority on dates, then answers it)."""
        try:
            if self._site_tz is not None:
                return dates.to_micros(dates.parse_datestr(when, self._site_tz, now))
            a, b = (dates.parse_datestr(when, zone, now) for zone in _PROBE_ZONES)
        except dates.DateError:
            return None
        return dates.to_micros(a) if a == b else None

    # -- answers ----------------------------------------------------------------------------

    def answer(self, when: str = "", *, actual: bool = False, full: bool = True,
               known_at: str | None = None) -> FplaneAnswer:
        now = datetime.now(timezone.utc)
        if self.snapshot is not None:
            return self._from_snapshot(when, actual, full, known_at, now)
        return self._from_server(when, actual, full, known_at, now)

    def _from_snapshot(self, when, actual, full, known_at, now) -> FplaneAnswer:
        from wsgi.reading import FplaneQuery
        from wsgi.responses import CodedError
        query = FplaneQuery(datestr=when or None, actual=actual, full=full, known_at=known_at,
                            as_json=False)
        try:
            answer = self.snapshot.answer(query, now)
        except CodedError as err:
            raise Failed(f"{err.code} {err.message}", err.code) from None
        t = self.instant(when, now)
        return _answer(answer.body, answer.version.id, answer.validity.valid_from,
                       answer.validity.valid_until, t, self.snapshot.describe())

    def _from_server(self, when, actual, full, known_at, now) -> FplaneAnswer:
        t = self.instant(when, now)
        cache = self._cache(actual, full, known_at)
        entry = None if t is None else cache.find(t)
        clock = time.time()
        if entry is not None and entry.fresh(clock):
            return _from_entry(entry, t, "cache", when)
        url = fplane_url(self.url, when, actual=actual, full=full, known_at=known_at)
        status, body, headers = download(url, self.timeout, etag=entry and entry.etag,
                                         context=self._ssl)
        self._learn_timezone(headers)
        if t is None:
            t = self.instant(when, now)
        if status == 304 and entry is not None:
            entry = cache.revalidated(entry, clock, _max_age(headers))
            return _from_entry(entry, t, "cache (revalidated)", when)
        entry = Entry(self.url, cache.variant, int(headers.get("X-FPlane-Version", "0")),
                      _micros(headers.get("X-FPlane-Valid-From")),
                      _micros(headers.get("X-FPlane-Valid-Until")),
                      headers.get("ETag") or "", clock, _max_age(headers), body)
        if entry.etag:
            cache.store(entry)
        return _from_entry(entry, t, "server", when)

    def _cache(self, actual, full, known_at) -> AnswerCache:
        variant = variant_key(full=full, actual=actual, known_at=known_at)
        cache = self._caches.get(variant)
        if cache is None:
            cache = self._caches[variant] = AnswerCache(self.cache_dir, self.url, variant, self.cache_max)
            cache.load()
        return cache

    # -- the server's time zone, kept beside its answers ------------------------------------

    def _timezone_file(self) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / server_key(self.url) / "timezone"

    def _remembered_timezone(self) -> ZoneInfo | None:
        path = self._timezone_file()
        try:
            return None if path is None else ZoneInfo(path.read_text().strip())
        except (OSError, ValueError, ZoneInfoNotFoundError):
            return None

    def _learn_timezone(self, headers) -> None:
        name = headers.get("X-FPlane-Timezone")
        if not name or (self._site_tz is not None and self._site_tz.key == name):
            return
        try:
            self._site_tz = ZoneInfo(name)
        except (ValueError, ZoneInfoNotFoundError):
            return
        path = self._timezone_file()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, name.encode())
            except OSError:
                pass   # only a later run's first request is lost

    def night_label(self, now: datetime) -> str | None:
        """Tonight's YYYYMMDD at the site, as the server names a file asked for without a date."""
        return None if self._site_tz is None else dates.night_label(now, self._site_tz)


def _answer(body: str | bytes, version: int, valid_from: int, valid_until: int | None,
            t: int | None, source: str) -> FplaneAnswer:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return FplaneAnswer(text, version, dates.format_micros(valid_from),
                        None if valid_until is None else dates.format_micros(valid_until),
                        "" if t is None else dates.format_micros(t), source, valid_from, valid_until)


def _from_entry(entry: Entry, t: int | None, source: str, when: str) -> FplaneAnswer:
    body = entry.body if t is None else _restated(entry.body, t, when)
    return _answer(body, entry.version, entry.valid_from, entry.valid_until, t, source)


def _restated(body: bytes | str, t: int, when: str) -> str:
    """A kept file as the server serves it for ``when``: its first line names the instant
    it answers (fplane.asked_line); every other line holds for any instant of its interval."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    rest = text.split("\n", 1)[1]
    return fplane.render_header([fplane.asked_line(dates.format_micros(t), when or None)]) + rest


def _micros(text: str | None) -> int | None:
    if text is None or text == "open":
        return None
    return dates.to_micros(dates.parse_datestr(text, timezone.utc, datetime.now(timezone.utc)))


def _max_age(headers) -> int:
    found = _MAX_AGE.search(headers.get("Cache-Control") or "")
    return int(found.group(1)) if found else 0


# -- the Python API ---------------------------------------------------------------------------

_CLIENTS: dict[tuple, FplaneClient] = {}


def fplane_answer(when: str = "", *, actual: bool = False, full: bool = True,
                  known_at: str | None = None, url: str | None = None, cache_dir=None,
                  cache: bool = True, snapshot=None, timeout: float = DEFAULT_TIMEOUT,
                  cafile=None) -> FplaneAnswer:
    """The fplane file valid at ``when`` (any date form the server accepts; "" is now), with
    its version, validity and source. From ``snapshot`` (a file) when given, else from the
    server at ``url`` (default $FPLANE_URL) through the cache in ``cache_dir`` (default
    $XDG_CACHE_HOME/fplane; ``cache=False``: none). Raises FplaneError (``.code`` 301 bad
    date, 302 no configuration then, None: no server or snapshot to answer)."""
    key = (url, str(cache_dir), cache, str(snapshot), timeout, str(cafile),
           _file_identity(snapshot), os.environ.get("FPLANE_URL"), os.environ.get("XDG_CACHE_HOME"))
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = FplaneClient(url, cache_dir=cache_dir, cache=cache,
                                              snapshot=snapshot, timeout=timeout, cafile=cafile)
    return client.answer(when, actual=actual, full=full, known_at=known_at)


def fplane_text(when: str = "", **options) -> str:
    """fplane_answer(...).text: the fplane file as the server serves it."""
    return fplane_answer(when, **options).text


def _file_identity(path):
    # A snapshot refreshed in place (curl -z ... && mv) is a new file: open it anew.
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# -- the command line ---------------------------------------------------------------------------

def get_fplane_main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error argparse has already explained
        return done.code if isinstance(done.code, int) else 2
    if args.snapshot is None:
        base = args.url if args.url is not None else os.environ.get("FPLANE_URL", "")
        if not base.strip():
            print(f"{PROG}: no server URL: give --url URL or set FPLANE_URL", file=sys.stderr)
            return 2
        if not _is_http_url(base.strip()):
            print(f"{PROG}: {base!r} is not an http:// or https:// URL", file=sys.stderr)
            return 2
    if (args.batch is not None or args.fits) and args.date:
        print(f"{PROG}: give DATE, or --batch / --fits, not both", file=sys.stderr)
        return 2
    try:
        client = FplaneClient(args.url, cache_dir=args.cache_dir, cache=not args.no_cache,
                              cache_max=args.cache_max, snapshot=args.snapshot,
                              timeout=args.timeout, cafile=args.cacert)
        if args.batch is not None or args.fits:
            from wsgi.batch import run_batch
            return run_batch(client, args)
        return _single(client, args)
    except Failed as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _single(client: FplaneClient, args) -> int:
    answer = client.answer(args.date, actual=args.actual, full=not args.short, known_at=args.known_at)
    body = answer.text.encode("utf-8")
    if args.output == "-":
        _write_stdout(body)
        where = "standard output"
    else:
        target = Path(args.output or default_filename(args.date, client.night_label(datetime.now(timezone.utc))))
        write_file(target, body)
        where = str(target)
    print(f"wrote {where} (version {answer.version}, valid_from {answer.valid_from}, "
          f"valid_until {answer.valid_until or 'open'})"
          + ("" if answer.source == "server" else f" from {answer.source}"), file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Download the HET/VIRUS fplane file valid at DATE from fplaneserver.")
    parser.add_argument("date", nargs="?", default="", metavar="DATE",
                        help="any date form the server accepts; empty: now")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="output file, - for standard output (default: fplane<DATE>.txt); "
                             "with --batch / --fits the directory for the files")
    parser.add_argument("-s", "--short", action="store_true",
                        help="short file: the 000 row and the active VIRUS IFUs only")
    parser.add_argument("-p", "--actual", action="store_true",
                        help="measured (actual) IFU positions instead of nominal ones")
    parser.add_argument("-k", "--known-at", metavar="D", help="the answer as the server knew it at D")
    parser.add_argument("-u", "--url", metavar="URL", help="the server (default: $FPLANE_URL)")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--cacert", metavar="FILE",
                        help="certificate authorities to trust for https:// (PEM file)")
    parser.add_argument("--cache-dir", metavar="D",
                        help="where answers are kept (default $XDG_CACHE_HOME/fplane or ~/.cache/fplane)")
    parser.add_argument("--no-cache", action="store_true", help="keep no answers on disk")
    parser.add_argument("--cache-max", type=_size, default=DEFAULT_MAX_BYTES, metavar="N",
                        help="bytes the cache may hold (K, M, G suffixes; default 200M)")
    parser.add_argument("--batch", metavar="FILE", help="one date per line (- : standard input)")
    parser.add_argument("--fits", nargs="+", metavar="FILE", help="FITS files: their DATE-OBS")
    parser.add_argument("--table", metavar="FILE", help="the batch table (default: standard output)")
    parser.add_argument("--snapshot", metavar="FILE", help="answer from this store snapshot, no server")
    return parser


def _size(text: str) -> int:
    factor = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    try:
        value = int(text[:-1] if factor > 1 else text) * factor
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r}")
    return value


def _is_http_url(text: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def fplane_url(base: str, date: str, *, actual: bool, full: bool, known_at: str | None = None) -> str:
    """The request the original client made: ``<base>/fplane/<date>?actual_pos=..&full_fplane=..``.

    The date is quoted as one path segment (``safe=''``): a ``/``, ``?`` or ``#`` in it
    cannot reach another resource or add parameters. known_at is quoted the same way, so
    the ``+`` of an offset reaches the server as ``+``, not as a space.
    """
    url = (f"{base.rstrip('/')}/fplane/{urllib.parse.quote(date, safe='')}"
           f"?actual_pos={int(actual)}&full_fplane={int(full)}")
    if known_at is not None:
        url += f"&known_at={urllib.parse.quote(known_at, safe='')}"
    return url


def download(url: str, timeout: float, etag: str | None = None, context=None):
    """(status, body bytes, response headers) of a successful answer, or of a 304 when
    ``etag`` (sent as If-None-Match) is still current; raises Failed otherwise."""
    request_headers = {"User-Agent": f"{PROG} (fplaneserver)"}
    if etag:
        request_headers["If-None-Match"] = etag
    request = urllib.request.Request(url, headers=request_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read()
            headers = response.headers
            status = response.status
    except urllib.error.HTTPError as err:
        if err.code == 304 and etag and err.headers.get("X-FPlane-Code"):
            err.close()
            return 304, b"", err.headers
        raise _refusal(url, err) from None
    except urllib.error.URLError as err:
        raise Failed(f"{PROG}: cannot get {url}: {_reason(err.reason)}") from None
    except (OSError, http.client.HTTPException) as err:
        # Timeouts and resets while reading, a truncated body (IncompleteRead), a reply
        # that is not HTTP: nothing usable arrived.
        raise Failed(f"{PROG}: cannot get {url}: {_reason(err)}") from None
    if headers.get("X-FPlane-Code") is None:
        # A proxy's or another web server's page must not be written as an fplane file.
        raise Failed(f"{PROG}: {url} did not answer like an fplane server "
                     "(no X-FPlane-Code header); nothing written")
    return status, body, headers


def _refusal(url: str, err: urllib.error.HTTPError) -> Failed:
    """The server's code line (``302 no configuration known for ...``), else the HTTP status."""
    try:
        body = err.read()
    except (OSError, http.client.HTTPException):
        body = b""
    finally:
        err.close()
    first_line = body.decode("utf-8", "replace").partition("\n")[0].strip()
    code = err.headers.get("X-FPlane-Code")
    if code and first_line:
        return Failed(first_line, int(code) if code.isdigit() else None)
    return Failed(f"{PROG}: {url}: HTTP {err.code} {err.reason}")


def _reason(reason) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({reason.verify_message}); --cacert FILE names a CA to trust"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def default_filename(date: str, night: str | None) -> str:
    """``fplane<DATE>.txt``; without DATE tonight's label, as the server names it."""
    if date:
        return f"fplane{date}.txt".replace("/", "_")
    return f"fplane{night}.txt" if night else "fplane.txt"


def write_file(target: Path, data: bytes) -> None:
    try:
        # 0o666: the umask decides, as for any file the user creates.
        write_atomically(target, data, mode=0o666)
    except OSError as err:
        raise Failed(f"{PROG}: cannot write {target}: {err.strerror or err}") from None



def _write_stdout(data: bytes) -> None:
    try:
        stream = getattr(sys.stdout, "buffer", None)
        if stream is None:
            sys.stdout.write(data.decode("utf-8", "replace"))
        else:
            sys.stdout.flush()
            stream.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        # `get_fplane -o - | head`: the reader left. Point the descriptor at /dev/null so
        # the interpreter's final flush does not print a second complaint.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise Failed(f"{PROG}: standard output was closed before the whole file was written") from None
    except OSError as err:
        raise Failed(f"{PROG}: cannot write to standard output: {err.strerror or err}") from None


if __name__ == "__main__":
    sys.exit(get_fplane_main())
