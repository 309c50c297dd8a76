"""Cross-origin reading (CORS) for the origins named in ``[Server] cors_origins``.

Only reading is shared: a page from an allowed origin may GET and HEAD anything here and
read the X-FPlane-* headers. POST is never CORS-enabled: a browser page must not be able
to post a station's status, even with a password it has somehow got, so a preflight for
any other method is answered without the Access-Control-Allow-* headers and the browser
refuses the request itself.
"""

from webob import Response

from wsgi import codes
from wsgi.responses import respond

SHARED_METHODS = "GET, HEAD"
# Request headers a reading page may send beyond the CORS-safelisted ones: conditional
# GETs, so that a dashboard polling "latest" gets its 304s.
ALLOWED_HEADERS = frozenset({"accept", "if-none-match", "if-modified-since", "cache-control"})
EXPOSED_HEADERS = ("X-FPlane-Code, X-FPlane-Version, X-FPlane-Valid-From, X-FPlane-Valid-Until,"
                   " X-FPlane-Update, ETag, Last-Modified, Content-Disposition")
PREFLIGHT_MAX_AGE = 86400


class CorsPolicy:
    def __init__(self, origins: tuple[str, ...]):
        self._any = "*" in origins
        self._origins = frozenset(o.rstrip("/") for o in origins if o != "*")
        self.enabled = bool(origins)

    def allowed_origin(self, environ) -> str | None:
        """The value for Access-Control-Allow-Origin, or None when this origin is not allowed."""
        origin = environ.get("HTTP_ORIGIN")
        if not self.enabled or origin is None:
            return None
        if self._any:
            return "*"
        return origin if origin in self._origins else None

    def response_headers(self, environ) -> list[tuple[str, str]]:
        """Headers to add to a GET or HEAD answer (Vary even when refused: the answer differs by Origin)."""
        if not self.enabled or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return []
        origin = self.allowed_origin(environ)
        headers = [] if self._any else [("Vary", "Origin")]
        if origin is not None:
            headers += [("Access-Control-Allow-Origin", origin),
                        ("Access-Control-Expose-Headers", EXPOSED_HEADERS)]
        return headers

    def preflight(self, environ, methods) -> Response:
        """The answer to OPTIONS on a path: the path's ``methods``, and CORS approval for reading."""
        headers = [("Allow", ", ".join((*methods, "OPTIONS")))]
        if not self._any:
            headers.append(("Vary", "Origin"))
        origin = self.allowed_origin(environ)
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "")
        requested = {h.strip().lower() for h in
                     environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",") if h.strip()}
        if origin is not None and method in ("GET", "HEAD") and method in methods \
                and requested <= ALLOWED_HEADERS:
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Methods", SHARED_METHODS),
                ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE)),
            ]
            if requested:
                headers.append(("Access-Control-Allow-Headers", ", ".join(sorted(requested))))
        return respond(codes.OK, b"", None, status="204 No Content", headers=headers)
