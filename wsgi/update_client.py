"""update_fplane: post a hardware status (or measured IFU positions) to fplaneserver.

    update_fplane --station ID (--password-file F | $FPLANE_PASSWORD) [--dry-run]
                  [--valid-from D] [--url URL] [--positions] [--timeout S]
                  [--retries N] [--cacert FILE] [STATUS.json | -]

    STATUS.json   the hardware status, ``{"timestamp": ..., "spectrographs": [...]}``;
                  ``-`` or nothing: read it from standard input. With --positions: the
                  measured positions, ``{"positions": [...]}`` or just the list
    --station ID  the posting station, as in the server's station list
    --password-file F
                  its password: the first line of F (warns if F is readable by group or
                  others). Default: $FPLANE_PASSWORD. Never on the command line, where
                  any user could read it in the process list.
    -n, --dry-run the server checks everything and shows the resulting fplane file
                  (written to standard output), but stores nothing
    --valid-from D
                  when the new configuration starts, any date form the server accepts
                  (default: the status timestamp)
    -u, --url URL the server, e.g. https://fplane.example.org (default: $FPLANE_URL)
    -p, --positions
                  post measured IFU positions (POST /positions) instead of a status
    --timeout S   seconds to wait for each answer (default 30)
    --retries N   attempts after the first when the server cannot be reached or answers
                  with a server-side failure (default 5)
    --cacert FILE the CA certificate(s), PEM, that an https:// server's certificate must
                  chain to (a site CA), instead of the system's trusted CAs. Certificates
                  and host names are always verified; one that does not verify is final
                  (never retried): the password is not sent to a server that cannot prove
                  who it is.

It posts the station form of the contract to ``<URL>/fplane[/<D>]`` (or
``<URL>/positions[/<D>]``): station_id, password, data = ``{"config": <status>,
"commit": true}`` (``false`` with --dry-run) and checksum = SHA-256 of data's UTF-8
bytes. On acceptance the server's code line goes to standard output, e.g. ``100 OK``,
followed by ``update <id>`` when the server names the update
(``GET <URL>/updates/<id>`` tells whether the writer has committed it).

Network errors, timeouts, server-side failures (codes 400 and 401, HTTP 5xx) and
answers that do not come from fplaneserver (a proxy's error page) are retried with
exponential backoff (1, 2, 4, ... s, at most 60 s, slightly randomised), each retry
logged on standard error. Refusals (codes 2xx and 3xx: wrong password, invalid
status, status too old, ...) are final and never retried, and so is a redirect, which
is not followed (urllib would turn the POST into a GET): give the URL it names. Retrying is safe even when
an answer was lost after the server had accepted the update: the data are the same
bytes on every attempt, and the same station + checksum posted twice is committed
once (the server answers with the same update id).

Exit status: 0 accepted (codes 100-103: accepted, dry run OK, no change, held for
review); 1 refused (the code line and its details on standard error) or the server
could not be reached after all attempts; 2 bad usage (no URL, no password, a status
file that cannot be read or is not JSON). Nothing is posted on exit status 2.
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from typing import NamedTuple

from wsgi import codes
from wsgi.client import DEFAULT_TIMEOUT, _is_http_url, _reason, _seconds

PROG = "update_fplane"
DEFAULT_RETRIES = 5
ACCEPTED = (codes.OK, codes.DRY_RUN, codes.NO_CHANGE, codes.HELD)
# Waits between attempts: 1, 2, 4, ... seconds, never more than this.
MAX_DELAY = 60.0
# Module-level so tests can replace it and not really wait.
sleep = time.sleep


class Usage(Exception):
    """Bad usage (exit status 2); str() is the one line for standard error."""


class Failed(Exception):
    """No usable answer from fplaneserver (exit status 1); str() is the line for standard error."""


class Transient(Exception):
    """This attempt failed in a way that another attempt may not; str() says how."""


class Answer(NamedTuple):
    """A response that came from fplaneserver: its X-FPlane-Code, headers and body."""

    code: int
    headers: Message
    body: bytes


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error argparse has already explained
        return done.code if isinstance(done.code, int) else 2
    try:
        # The status last: a usage error is reported before anything waits on standard input.
        base = server_url(args.url)
        station = args.station.strip()
        if not station:
            raise Usage(f"{PROG}: --station must not be empty")
        password = read_password(args.password_file)
        context = tls_context(args.cacert)
        payload = read_payload(args.status, positions=args.positions)
    except Usage as err:
        print(err, file=sys.stderr)
        return 2
    data = encode_data(payload, positions=args.positions, commit=not args.dry_run)
    url = update_url(base, positions=args.positions, valid_from=args.valid_from)
    try:
        answer = post(url, form_body(station, password, data), timeout=args.timeout,
                      retries=args.retries, context=context)
    except Failed as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return report(answer)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Post a HET/VIRUS hardware status (or measured IFU positions) "
                               "to fplaneserver.")
    parser.add_argument("status", nargs="?", default="-", metavar="STATUS.json",
                        help="the hardware status JSON file; - or nothing: standard input")
    parser.add_argument("--station", required=True, metavar="ID", help="the posting station")
    parser.add_argument("--password-file", metavar="F",
                        help="file whose first line is the password (default: $FPLANE_PASSWORD)")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="check only: show the resulting fplane file, store nothing")
    parser.add_argument("--valid-from", metavar="D",
                        help="when the new configuration starts (default: the status timestamp)")
    parser.add_argument("-u", "--url", metavar="URL", help="the server (default: $FPLANE_URL)")
    parser.add_argument("-p", "--positions", action="store_true",
                        help="post measured IFU positions instead of a hardware status")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--retries", type=_count, default=DEFAULT_RETRIES, metavar="N",
                        help=f"attempts after the first on network or server failures "
                             f"(default {DEFAULT_RETRIES})")
    parser.add_argument("--cacert", metavar="FILE",
                        help="CA certificate(s) (PEM) an https:// server must chain to, "
                             "instead of the system's (always verified)")
    return parser


def tls_context(cacert: str | None) -> ssl.SSLContext:
    """Certificate and host name checks always on; against ``cacert`` when given."""
    try:
        return ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as err:
        raise Usage(f"{PROG}: --cacert {cacert}: not a readable PEM certificate file "
                    f"({_reason(err)})") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
    return value


def server_url(given: str | None) -> str:
    """The server's base URL from --url, else $FPLANE_URL; raises Usage if missing or not http(s)."""
    base = (given if given is not None else os.environ.get("FPLANE_URL", "")).strip()
    if not base:
        raise Usage(f"{PROG}: no server URL: give --url URL or set FPLANE_URL")
    if not _is_http_url(base):
        raise Usage(f"{PROG}: {base!r} is not an http:// or https:// URL")
    return base


def read_password(password_file: str | None) -> str:
    """The first line of password_file, else $FPLANE_PASSWORD; raises Usage if there is none.

    Like ssh with a private key, a file that group or others may read is used, with a
    warning: refusing would stop the nightly update over a permission slip.
    """
    if password_file is None:
        password = os.environ.get("FPLANE_PASSWORD", "")
        if not password:
            raise Usage(f"{PROG}: no password: give --password-file F or set FPLANE_PASSWORD")
        return password
    try:
        with open(password_file, encoding="utf-8") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            password = stream.readline().rstrip()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "not UTF-8 text"
        raise Usage(f"{PROG}: cannot read password file {password_file}: {reason}") from None
    if not password:
        raise Usage(f"{PROG}: password file {password_file} has an empty first line")
    if mode & 0o077:
        print(f"{PROG}: warning: password file {password_file} is accessible by group or others "
              f"(mode {mode & 0o777:04o}); chmod 600 it", file=sys.stderr)
    return password


def read_payload(source: str, *, positions: bool):
    """The hardware status object (or, with positions, the list of positions) from the file
    source, ``-`` meaning standard input; raises Usage if it is not JSON of that shape."""
    name = "standard input" if source == "-" else source
    try:
        if source == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as stream:
                raw = stream.read()
    except OSError as err:
        raise Usage(f"{PROG}: cannot read {name}: {err.strerror or err}") from None
    try:
        # From bytes, so json detects UTF-8/16/32 itself; bad UTF-8 is a ValueError too.
        payload = json.loads(raw)
    except ValueError as err:
        raise Usage(f"{PROG}: {name} is not valid JSON: {err}; nothing posted") from None
    if positions:
        if isinstance(payload, dict):
            payload = payload.get("positions")
        if not isinstance(payload, list):
            raise Usage(f"{PROG}: {name} holds neither {{\"positions\": [...]}} nor a list; "
                        "nothing posted")
    elif not isinstance(payload, dict):
        raise Usage(f"{PROG}: {name} does not hold a hardware status (a JSON object); nothing posted")
    return payload


def encode_data(payload, *, positions: bool, commit: bool) -> bytes:
    """The form's data field as UTF-8 bytes: the exact bytes the checksum is made of."""
    data = {"positions" if positions else "config": payload, "commit": commit}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def update_url(base: str, *, positions: bool, valid_from: str | None = None) -> str:
    """``<base>/fplane[/<valid_from>]`` (``/positions`` with positions).

    valid_from is one path segment: ``/``, ``?`` and ``#`` are quoted, and so is the
    ``+`` of an offset, which would otherwise arrive as a space; ``:`` is left readable.
    """
    url = f"{base.rstrip('/')}/{'positions' if positions else 'fplane'}"
    if valid_from:
        url += "/" + urllib.parse.quote(valid_from, safe=":")
    return url


def form_body(station: str, password: str, data: bytes) -> bytes:
    """The application/x-www-form-urlencoded request body."""
    return urllib.parse.urlencode({
        "station_id": station,
        "password": password,
        "checksum": hashlib.sha256(data).hexdigest(),
        "data": data,  # bytes: quoted exactly as they were checksummed
    }).encode("ascii")


def post(url: str, body: bytes, *, timeout: float = DEFAULT_TIMEOUT,
         retries: int = DEFAULT_RETRIES, context: ssl.SSLContext | None = None) -> Answer:
    """The server's answer to the form post, retried on transient failures.

    Returns any answer with a code below 400, refusals included: those are final. Raises
    Failed when every one of 1 + retries attempts failed, or when the URL redirects.
    """
    attempts = 1 + retries
    for attempt in range(1, attempts + 1):
        try:
            answer = post_once(url, body, timeout, context)
            if answer.code < codes.INTERNAL_ERROR:
                return answer
            problem = _code_line(answer)
        except Transient as err:
            problem = str(err)
        if attempt < attempts:
            delay = backoff_delay(attempt)
            print(f"{PROG}: attempt {attempt} of {attempts} failed ({problem}); "
                  f"retrying in {delay:.1f} s", file=sys.stderr, flush=True)
            sleep(delay)
    raise Failed(f"{PROG}: attempt {attempts} of {attempts} failed ({problem}); giving up")


def backoff_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number attempt (1, 2, 4, ... at most MAX_DELAY).

    Shortened by up to a fifth at random, so clients that failed together do not all
    come back at the same instant; the waits still grow from one attempt to the next.
    """
    return min(MAX_DELAY, 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.0)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302/303 of a POST with a GET, and GET /fplane answers
    # code 100 with the current file: a lost update that looks accepted.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def post_once(url: str, body: bytes, timeout: float, context: ssl.SSLContext | None = None) -> Answer:
    """One attempt: the answer of fplaneserver, whatever its code.

    Raises Transient for failures that another attempt may not meet (no connection,
    timeout, an answer without X-FPlane-Code) and Failed for a redirect, which no
    retry will change.
    """
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "User-Agent": f"{PROG} (fplaneserver)",
        "Content-Type": "application/x-www-form-urlencoded",
        # The refusal details as text lines, not JSON.
        "Accept": "text/plain",
    })
    try:
        opener = urllib.request.build_opener(
            _NoRedirect, urllib.request.HTTPSHandler(context=context or tls_context(None)))
        with opener.open(request, timeout=timeout) as response:
            status, headers, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, headers, content = err.code, err.headers, _read_error_body(err)
    except urllib.error.URLError as err:
        if isinstance(err.reason, ssl.SSLCertVerificationError):
            # Another attempt meets the same certificate; the password was not sent.
            raise Failed(f"{PROG}: {url}: the server's certificate is not trusted "
                         f"({err.reason.verify_message}); give the site's CA certificate with "
                         "--cacert FILE") from None
        raise Transient(f"cannot reach {url}: {_reason(err.reason)}") from None
    except (OSError, http.client.HTTPException) as err:
        # Timeouts and resets while reading, a truncated body, a reply that is not HTTP.
        raise Transient(f"no complete answer from {url}: {_reason(err)}") from None
    code = _fplane_code(headers)
    if code is not None:
        return Answer(code, headers, content)
    if 300 <= status < 400:
        raise Failed(f"{PROG}: {url} redirects to {headers.get('Location', '?')}; "
                     "give the final URL with --url (a redirected POST loses its form)")
    # A proxy's error page (502 while the service restarts) or another web server.
    raise Transient(f"HTTP {status} from {url} without X-FPlane-Code, not an fplane server answer")


def _read_error_body(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read()
    except (OSError, http.client.HTTPException):
        return b""  # the code header alone still says what happened
    finally:
        err.close()


def _fplane_code(headers: Message) -> int | None:
    try:
        return int(headers.get("X-FPlane-Code", ""))
    except ValueError:
        return None


def _code_line(answer: Answer) -> str:
    """The body's first line, ``<code> <message>``; the bare code if the body is empty."""
    first = answer.body.decode("utf-8", "replace").partition("\n")[0].strip()
    return first or str(answer.code)


def report(answer: Answer) -> int:
    """Print the answer as the contract says and return the exit status (0 accepted, 1 refused)."""
    if answer.code not in ACCEPTED:
        details = answer.body.decode("utf-8", "replace").partition("\n")[2].rstrip()
        print(_code_line(answer), file=sys.stderr)
        if details:
            print(details, file=sys.stderr)
        return 1
    print(_code_line(answer))
    update_id = answer.headers.get("X-FPlane-Update")
    if update_id:
        print(f"update {update_id}")
    if answer.code == codes.DRY_RUN:
        # What the configuration would be: the rest of the body is the resulting file.
        sys.stdout.write(answer.body.decode("utf-8", "replace").partition("\n")[2])
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
