"""Return codes of fplaneserver: the one table that maps a code to its message and HTTP status.

Every response carries its code in the ``X-FPlane-Code`` header, and error bodies start
with ``<code> <message>``. Clients (the TCS, ``update_fplane``, ``get_fplane``) key on
the code, so codes and their meanings never change; messages may be improved.

====  ===================================================  ====
code  meaning                                              HTTP
====  ===================================================  ====
100   OK (served / accepted and spooled)                   200 GET, 202 POST
101   dry run OK, nothing stored                           200
102   no change, nothing new committed                     200
103   accepted but held for review (suspicious)            202
201   checksum mismatch                                    400
202   missing or empty form field                          400
203   wrong password                                       403
204   station not allowed to do this                       403
206   station unknown                                      403
208   data is not valid UTF-8 JSON                         400
209   data is invalid (all problems listed)                422
210   hardware status too old                              422
211   hardware status time stamp too far in the future     422
212   request body too large                               413
213   too many failed password attempts: wait              429 (with Retry-After)
301   bad date string                                      400
302   no configuration known for that instant              404
303   unknown update id or resource                        404
305   method not allowed                                   405
306   bad query parameter                                  400
400   internal error (details only in the log)             500
401   store or spool unavailable                           503
====  ===================================================  ====
"""

from http import HTTPStatus
from typing import NamedTuple


class Code(NamedTuple):
    code: int
    message: str
    http_status: int


OK = 100
DRY_RUN = 101
NO_CHANGE = 102
HELD = 103
CHECKSUM_MISMATCH = 201
MISSING_FIELD = 202
WRONG_PASSWORD = 203
NOT_ALLOWED = 204
UNKNOWN_STATION = 206
BAD_JSON = 208
INVALID_DATA = 209
TOO_OLD = 210
TOO_FAR_IN_FUTURE = 211
BODY_TOO_LARGE = 212
TOO_MANY_FAILURES = 213
BAD_DATE = 301
NO_CONFIGURATION = 302
NOT_FOUND = 303
METHOD_NOT_ALLOWED = 305
BAD_PARAMETER = 306
INTERNAL_ERROR = 400
UNAVAILABLE = 401

CODES = {
    c.code: c
    for c in (
        Code(OK, "OK", 200),
        Code(DRY_RUN, "dry run OK, nothing stored", 200),
        Code(NO_CHANGE, "no change, nothing new committed", 200),
        Code(HELD, "accepted but held for review", 202),
        Code(CHECKSUM_MISMATCH, "checksum mismatch", 400),
        Code(MISSING_FIELD, "missing or empty form field", 400),
        Code(WRONG_PASSWORD, "wrong password", 403),
        Code(NOT_ALLOWED, "station not allowed to do this", 403),
        Code(UNKNOWN_STATION, "station unknown", 403),
        Code(BAD_JSON, "data is not valid UTF-8 JSON", 400),
        Code(INVALID_DATA, "data is invalid", 422),
        Code(TOO_OLD, "hardware status too old", 422),
        Code(TOO_FAR_IN_FUTURE, "hardware status time stamp too far in the future", 422),
        Code(BODY_TOO_LARGE, "request body too large", 413),
        Code(TOO_MANY_FAILURES, "too many failed password attempts: wait", 429),
        Code(BAD_DATE, "bad date string", 400),
        Code(NO_CONFIGURATION, "no configuration known for that instant", 404),
        Code(NOT_FOUND, "unknown update id or resource", 404),
        Code(METHOD_NOT_ALLOWED, "method not allowed", 405),
        Code(BAD_PARAMETER, "bad query parameter", 400),
        Code(INTERNAL_ERROR, "internal error", 500),
        Code(UNAVAILABLE, "store or spool unavailable", 503),
    )
}


def http_status_line(code: int) -> str:
    """The WSGI status line for ``code``, e.g. '404 Not Found'."""
    status = CODES[code].http_status
    return f"{status} {HTTPStatus(status).phrase}"


def post_status_line(code: int) -> str:
    """The status line of a POST's answer: 100 is 202 Accepted there (spooled, not yet
    committed), every other code as in the table."""
    return "202 Accepted" if code == OK else http_status_line(code)
