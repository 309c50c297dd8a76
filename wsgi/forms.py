"""Reading a posted form: the body within a size limit, the fields as raw bytes.

The fields stay bytes because the checksum is over the exact bytes of ``data`` (contract
section 5) and a ``data`` that is not UTF-8 must be answered 208 after the checksum
check, not fail earlier in a decoder. Both encodings stations use are read with the
standard library (urllib.parse and the email package's MIME parser), nothing from the
body is executed, and a malformed body is a coded answer, never an exception.
"""

from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import unquote_to_bytes

from wsgi import codes
from wsgi.responses import CodedError

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_CHUNK = 65536
MAX_PARTS = 32


def read_body(environ, max_body: int) -> bytes:
    """The request body, or CodedError 212 beyond ``max_body`` bytes.

    A chunked body (no Content-Length) is read when the server can give it: one that
    marks wsgi.input as ending with the body (``wsgi.input_terminated``), or uWSGI
    through its chunked-input API (examples/uwsgi.ini turns on http-chunked-input so that
    its HTTP router passes such bodies on). Any other server hands the app an empty
    stream for it, which would read as a post without fields: 207 (HTTP 411) instead,
    saying to send a Content-Length."""
    too_large = CodedError(codes.BODY_TOO_LARGE,
                           f"request body too large: the limit is {max_body} bytes ([Server] max_body)")
    length_text = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length_text.strip():
        try:
            length = int(length_text)
        except ValueError:
            raise CodedError(codes.MISSING_FIELD, "the Content-Length header is not a number") from None
        if length > max_body:
            raise too_large   # refused before reading a byte of it
        return _read_exactly(stream, length)
    if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return b""   # no length and not chunked: HTTP says there is no body
    chunks = _chunk_reader(environ)
    if chunks is None:
        raise CodedError(codes.LENGTH_REQUIRED,
                         "length required: this server cannot read a chunked request body "
                         "(Transfer-Encoding: chunked); send the post with a Content-Length")
    # Read one byte past the limit to know whether it was crossed.
    parts, size = [], 0
    try:
        for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size > max_body:
                raise too_large
    except OSError as err:   # uWSGI: the client stopped sending, or sent a broken chunk
        raise CodedError(codes.MISSING_FIELD, f"the chunked request body could not be read "
                                              f"to its end ({err}); send it again") from None
    return b"".join(parts)


def _chunk_reader(environ):
    """The pieces of a chunked body as the server gives them, or None if it cannot."""
    if environ.get("wsgi.input_terminated"):
        stream = environ["wsgi.input"]
        return iter(lambda: stream.read(_CHUNK), b"")
    if "uwsgi.version" in environ:
        import uwsgi   # exists only inside a uWSGI worker
        return iter(uwsgi.chunked_read, b"")
    return None


def _read_exactly(stream, length: int) -> bytes:
    parts, remaining = [], length
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def parse_form(content_type: str, body: bytes) -> dict[str, list[bytes]]:
    """Field name -> its values (bytes), for the two form encodings; CodedError 202 for
    any other content type or a multipart body without a boundary."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == URLENCODED:
        return _collect(_urlencoded_fields(body))
    if media_type == MULTIPART:
        return _collect(_multipart_fields(content_type, body))
    shown = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
    raise CodedError(codes.MISSING_FIELD,
                     f"missing or empty form field: the post has {shown}; send the fields as "
                     f"{URLENCODED} or {MULTIPART}")


def _urlencoded_fields(body: bytes):
    """(name, value) pairs of an urlencoded body, '+' and %-escapes decoded to the exact
    bytes sent. (urllib.parse.parse_qsl cannot do this: given bytes, it decodes the
    escapes as text and encodes the result back as ASCII, raising for any non-ASCII
    value.) Empty fields are skipped, a field without '=' has an empty value, like
    parse_qsl(keep_blank_values=True)."""
    for field in body.split(b"&"):
        if field:
            name, _, value = field.partition(b"=")
            yield unquote_plus_bytes(name), unquote_plus_bytes(value)


def unquote_plus_bytes(text: bytes) -> bytes:
    """``text`` with '+' and %XX escapes decoded to the exact bytes sent."""
    return unquote_to_bytes(text.replace(b"+", b" "))


def _multipart_fields(content_type: str, body: bytes):
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    parser = BytesParser(policy=HTTP)
    boundary = parser.parsebytes(header).get_boundary()
    # The MIME parser spends real CPU per part; a form has four. Counted before parsing,
    # so a megabyte of empty parts costs a byte search, not seconds of parsing.
    if boundary and body.count(b"--" + boundary.encode("latin-1", "replace")) > MAX_PARTS + 1:
        raise CodedError(codes.MISSING_FIELD,
                         f"missing or empty form field: the multipart body has more than "
                         f"{MAX_PARTS} parts; a post has four fields")
    message = parser.parsebytes(header + body)
    if not message.is_multipart():
        raise CodedError(codes.MISSING_FIELD,
                         "missing or empty form field: the multipart body cannot be read "
                         "(no boundary, or the boundary does not match)")
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is not None:
            yield name.encode("utf-8", "replace"), part.get_payload(decode=True) or b""


def _collect(pairs) -> dict[str, list[bytes]]:
    fields: dict[str, list[bytes]] = {}
    for name, value in pairs:
        fields.setdefault(name.decode("utf-8", "replace"), []).append(value)
    return fields
