"""Coded responses: every answer carries X-FPlane-Code, and every failure is one of these.

Handlers raise CodedError; the app turns it (and anything unexpected) into a response in
one place. Successful GETs are built as Prepared responses: plain (status, headers, body)
tuples that a worker can keep and serve again without rebuilding anything, conditional
requests and HEAD included.
"""

import json
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

from wsgi import codes

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class CodedError(Exception):
    """A refusal with its code, a one-line message and optional detail lines for the client."""

    def __init__(self, code: int, message: str = "", details=(), headers=()):
        super().__init__(message or codes.CODES[code].message)
        self.code = code
        self.message = message or codes.CODES[code].message
        self.details = tuple(details)
        self.headers = tuple(headers)


def wants_json(environ, query_format: str | None = None) -> bool:
    if query_format is not None:
        return query_format == "json"
    return "application/json" in environ.get("HTTP_ACCEPT", "")


def error_response(error: CodedError, as_json: bool) -> "Prepared":
    if as_json:
        body = json.dumps(
            {"code": error.code, "message": error.message, "errors": list(error.details)},
            indent=1,
        ) + "\n"
        content_type = JSON
    else:
        body = "\n".join((f"{error.code} {error.message}", *error.details)) + "\n"
        content_type = TEXT
    headers = [
        ("Content-Type", content_type),
        ("X-FPlane-Code", str(error.code)),
        ("Cache-Control", "no-store"),
        *error.headers,
    ]
    return Prepared(codes.http_status_line(error.code), headers, body.encode("utf-8"), code=error.code)


@dataclass
class Prepared:
    """A finished response that can be served any number of times.

    ``etag`` and ``last_modified`` (Unix seconds) enable 304 answers to conditional GETs.
    """

    status: str
    headers: list
    body: bytes
    code: int = codes.OK
    etag: str | None = None
    last_modified: float | None = None
    not_modified_headers: list = field(init=False)

    def __post_init__(self):
        if not self.status.startswith("204"):  # a 204 must not carry Content-Length (RFC 9110 8.6)
            self.headers = [*self.headers, ("Content-Length", str(len(self.body)))]
        if self.etag:
            self.headers.append(("ETag", self.etag))
        if self.last_modified is not None:
            self.headers.append(("Last-Modified", http_date(self.last_modified)))
        # A 304 repeats the validators and caching headers (RFC 9110 15.4.5), no body.
        self.not_modified_headers = [
            (k, v) for k, v in self.headers
            if k in ("ETag", "Last-Modified", "Cache-Control", "Vary", "X-FPlane-Code",
                     "X-FPlane-Version", "X-FPlane-Valid-From", "X-FPlane-Valid-Until")
        ]

    def serve(self, environ, start_response) -> tuple[str, list]:
        """Answer 304 when the client's copy is current, the body unless HEAD.

        Returns (the status line sent, the WSGI body)."""
        if self.etag and ("HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ) \
                and self._not_modified(environ):
            start_response("304 Not Modified", self.not_modified_headers)
            return "304 Not Modified", [b""]
        start_response(self.status, self.headers)
        return self.status, [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [self.body]

    def _not_modified(self, environ) -> bool:
        # If-None-Match wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if if_none_match is not None:
            tags = {t.strip() for t in if_none_match.split(",")}
            # Weak comparison, as GET asks for: W/"x" matches "x".
            bare = self.etag.removeprefix("W/")
            return "*" in tags or self.etag in tags or bare in tags or f"W/{bare}" in tags
        if_modified_since = environ.get("HTTP_IF_MODIFIED_SINCE")
        if if_modified_since and self.last_modified is not None:
            try:
                since = parsedate_to_datetime(if_modified_since).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False  # an unreadable date is ignored, as RFC 9110 says
            return int(self.last_modified) <= since
        return False


def http_date(unix_seconds: float) -> str:
    return formatdate(unix_seconds, usegmt=True)
