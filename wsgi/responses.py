"""Coded responses: every answer is a WebOb ``Response`` made by ``respond``.

``respond`` is the one place that sets the code header (X-FPlane-Code), the content type,
the cache policy and the validators. Conditional GET (ETag / Last-Modified -> 304) and
HEAD are WebOb's (``conditional_response=True``), as in ``webob/static.py``.

Handlers raise CodedError for a refusal; the app turns it (and anything unexpected) into
a response in one place, with ``error_response``. A response holds no per-request state,
so a finished one can be kept and served again to identical requests (wsgi/reading.py).
"""

import json
from email.utils import formatdate

from webob import Response

from wsgi import codes

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
NO_STORE = "no-store"


class CodedError(Exception):
    """A refusal with its code, a one-line message and optional detail lines for the client."""

    def __init__(self, code: int, message: str = "", details=(), headers=()):
        super().__init__(message or codes.CODES[code].message)
        self.code = code
        self.message = message or codes.CODES[code].message
        self.details = tuple(details)
        self.headers = tuple(headers)


class CodedResponse(Response):
    """A WebOb response that knows the X-FPlane-Code it carries (for the counters and the
    request log)."""
    code: int


def respond(code: int, body, content_type: str | None, *, status: str | None = None,
            cache_control: str = NO_STORE, etag: str | None = None,
            last_modified: float | None = None, headers=()) -> CodedResponse:
    """The response for ``code``: ``body`` (str as UTF-8, or bytes) of ``content_type``.

    ``status`` defaults to the code's HTTP status (codes.py); ``cache_control`` to no-store;
    ``etag`` is the header's value (``W/"..."`` for a weak one) and ``last_modified`` Unix
    seconds: with either, a conditional GET or HEAD gets its 304. ``headers`` are added
    as given (X-FPlane-Version, Allow, ...)."""
    status = status or codes.http_status_line(code)
    headerlist = [("Content-Type", content_type)] if content_type else []
    headerlist += [("X-FPlane-Code", str(code)), ("Cache-Control", cache_control), *headers]
    if etag:
        headerlist.append(("ETag", etag))
    if last_modified is not None:
        headerlist.append(("Last-Modified", formatdate(last_modified, usegmt=True)))
    if status.startswith("204"):
        # A 204 carries no body and no Content-Length (RFC 9110 8.6).
        response = CodedResponse(status=status, headerlist=headerlist, app_iter=[],
                                 conditional_response=True)
    else:
        response = CodedResponse(body=body.encode("utf-8") if isinstance(body, str) else body,
                                 status=status, headerlist=headerlist, conditional_response=True)
    response.code = code
    return response


def wants_json(environ, query_format: str | None = None) -> bool:
    if query_format is not None:
        return query_format == "json"
    return "application/json" in environ.get("HTTP_ACCEPT", "")


def error_response(error: CodedError, as_json: bool) -> CodedResponse:
    """``<code> <message>`` and the detail lines (or the same as JSON), never cached."""
    if as_json:
        body = json.dumps(
            {"code": error.code, "message": error.message, "errors": list(error.details)},
            indent=1,
        ) + "\n"
    else:
        body = "\n".join((f"{error.code} {error.message}", *error.details)) + "\n"
    return respond(error.code, body, JSON if as_json else TEXT, headers=error.headers)
