"""get_fplane: download the fplane file valid at a date from fplaneserver.

    get_fplane [-o FILE] [-s] [-p] [--known-at D] [--url URL] [--timeout S] [DATE]

    DATE          any date form the server accepts (20180707, 2018-07-07, 20180707v012,
                  2018-07-07T05:00:00Z, ...); empty: the configuration valid now
    -o FILE       where to write it; `-o -` writes to standard output.
                  Default: fplane<DATE>.txt in the current directory (without DATE, the
                  name the server suggests, fplane<today's night>.txt)
    -s            the short file: the 000 row and the active VIRUS IFUs only
    -p            measured (actual) IFU positions instead of nominal ones
    -k, --known-at D
                  the answer as the server knew it at D (reproduces an old reduction)
    -u, --url URL the server, e.g. https://fplane.example.org (default: $FPLANE_URL)
    --timeout S   seconds to wait for the server (default 30)

What the original HETDEX get_fplane.sh did: it requests exactly
``<URL>/fplane/<DATE>?actual_pos=0|1&full_fplane=0|1`` (plus ``&known_at=D`` when asked).
The file is written atomically (temporary file in the same directory, fsync, rename): a
failed download never leaves a half-written file and never replaces a good one.

Exit status: 0 written; 1 the server refused (its code line, e.g. ``302 no configuration
known for ...``, on standard error) or could not be reached; 2 bad usage (no URL).
Standard library only, so the file can also be copied and run on its own.
"""

import argparse
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from wsgi.files import write_atomically

PROG = "get_fplane"
DEFAULT_TIMEOUT = 30.0
# A name the server suggests is used only if it looks like one of its own: never a path,
# never a dot file, never anything a shell or a later glob would trip over.
_SUGGESTED_NAME = re.compile(r"fplane[A-Za-z0-9_.:+-]*\.txt")


class Failed(Exception):
    """The download failed; str() is the one line for standard error."""


def get_fplane_main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error argparse has already explained
        return done.code if isinstance(done.code, int) else 2
    base = args.url if args.url is not None else os.environ.get("FPLANE_URL", "")
    if not base.strip():
        print(f"{PROG}: no server URL: give --url URL or set FPLANE_URL", file=sys.stderr)
        return 2
    if not _is_http_url(base.strip()):
        print(f"{PROG}: {base!r} is not an http:// or https:// URL", file=sys.stderr)
        return 2
    url = fplane_url(base.strip(), args.date, actual=args.actual, full=not args.short,
                     known_at=args.known_at)
    try:
        body, headers = download(url, args.timeout)
        if args.output == "-":
            _write_stdout(body)
            where = "standard output"
        else:
            target = Path(args.output or default_filename(args.date, headers))
            _write_file(target, body)
            where = str(target)
    except Failed as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"wrote {where} (version {headers.get('X-FPlane-Version', '?')}, "
          f"valid_from {headers.get('X-FPlane-Valid-From', '?')}, "
          f"valid_until {headers.get('X-FPlane-Valid-Until', '?')})", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Download the HET/VIRUS fplane file valid at DATE from fplaneserver.")
    parser.add_argument("date", nargs="?", default="", metavar="DATE",
                        help="any date form the server accepts; empty: now")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="output file, - for standard output (default: fplane<DATE>.txt)")
    parser.add_argument("-s", "--short", action="store_true",
                        help="short file: the 000 row and the active VIRUS IFUs only")
    parser.add_argument("-p", "--actual", action="store_true",
                        help="measured (actual) IFU positions instead of nominal ones")
    parser.add_argument("-k", "--known-at", metavar="D", help="the answer as the server knew it at D")
    parser.add_argument("-u", "--url", metavar="URL", help="the server (default: $FPLANE_URL)")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT:g})")
    return parser


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


def download(url: str, timeout: float):
    """(body bytes, response headers) of a successful answer; raises Failed otherwise."""
    request = urllib.request.Request(url, headers={"User-Agent": f"{PROG} (fplaneserver)"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            headers = response.headers
    except urllib.error.HTTPError as err:
        raise Failed(_refusal(url, err)) from None
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
    return body, headers


def _refusal(url: str, err: urllib.error.HTTPError) -> str:
    """The server's code line (``302 no configuration known for ...``), else the HTTP status."""
    try:
        body = err.read()
    except (OSError, http.client.HTTPException):
        body = b""
    finally:
        err.close()
    first_line = body.decode("utf-8", "replace").partition("\n")[0].strip()
    if err.headers.get("X-FPlane-Code") and first_line:
        return first_line
    return f"{PROG}: {url}: HTTP {err.code} {err.reason}"


def _reason(reason) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def default_filename(date: str, headers) -> str:
    """``fplane<DATE>.txt``; without DATE the server's suggestion (today's night label)."""
    if date:
        return f"fplane{date}.txt".replace("/", "_")
    suggested = headers.get_filename()
    if suggested and _SUGGESTED_NAME.fullmatch(suggested):
        return suggested
    return "fplane.txt"


def _write_file(target: Path, data: bytes) -> None:
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
