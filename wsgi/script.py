"""GET /get_fplane.sh: the curl-only client (examples/get_fplane.sh), handed out with this
server's URL as its default, so that

    curl -O https://fplane.example.org/get_fplane.sh && sh get_fplane.sh 20180715

works with no setup, as the original script with its built-in server did.

The URL comes from the request (scheme, Host, SCRIPT_NAME): behind a proxy or the nginx
front it is the URL the client used. It is written into shell code, so it is built only
from a host name or IP address, a port and a path of plain characters, each checked here;
anything else (a Host header with quotes, blanks, `$` or `;`) is refused, never written.
"""

import re
from pathlib import Path

from wsgi import codes
from wsgi.responses import CodedError, CodedResponse, respond

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "get_fplane.sh"
# The script's one line that names the server it came from (empty in the repository's copy).
PLACEHOLDER = "served_from=''"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def base_url(environ) -> str:
    """This server's URL as the client reached it; CodedError when it is not a plain one."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    prefix = environ.get("SCRIPT_NAME", "").rstrip("/")
    if scheme not in _DEFAULT_PORTS or not _HOST.fullmatch(host) or not _PATH.fullmatch(prefix):
        raise CodedError(codes.BAD_PARAMETER, "cannot write this server's URL into the script: "
                         "ask for it by the server's host name or address")
    return f"{scheme}://{host.removesuffix(_DEFAULT_PORTS[scheme])}{prefix}"


class ClientScript:
    """The script's text, read once; served with the URL filled in."""

    def __init__(self, path: Path = SCRIPT):
        try:
            text = path.read_text()
        except OSError:
            text = None  # installed without examples/: the resource does not exist here
        if text is not None and text.count(PLACEHOLDER) != 1:
            raise ValueError(f"{path}: expected the line {PLACEHOLDER!r} exactly once")
        self._text = text

    def answer(self, environ) -> CodedResponse:
        if self._text is None:
            raise CodedError(codes.NOT_FOUND, "unknown resource", ["get_fplane.sh is not installed here"])
        served = self._text.replace(PLACEHOLDER, f"served_from='{base_url(environ)}'")
        # no-store (respond's default): the text depends on the Host the client used
        return respond(codes.OK, served, "text/x-shellscript; charset=utf-8",
                       headers=[("Content-Disposition", 'attachment; filename="get_fplane.sh"')])
