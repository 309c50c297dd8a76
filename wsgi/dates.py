"""Date strings (contract section 3) and the instants they stand for.

Every instant leaves this module as an aware datetime in UTC; the site time zone only
matters for the date-only forms (local midnight) and for night labels.

Supported range: the year written in a date string must be 1900-9998.  The lower bound
keeps us clear of local mean time offsets with seconds that zoneinfo gives for the
nineteenth century; the upper bound leaves a day of headroom so that a parsed instant
can always be converted to any zone, labelled with its night and stepped by a day
without hitting datetime's year-9999 ceiling (OverflowError) somewhere downstream.
"""

import re
import zoneinfo
from datetime import datetime, timedelta, timezone, tzinfo

__all__ = [
    "ACCEPTED_FORMS",
    "DateError",
    "format_instant",
    "format_micros",
    "from_micros",
    "means_now",
    "night_label",
    "parse_datestr",
    "to_micros",
]

ACCEPTED_FORMS = (
    "latest|now|current|(empty), YYYYMMDD, YYYY-MM-DD, YYYYMMDDvNNN, "
    "YYYYMMDDTHH:MM:SS[.f], YYYYMMDDTHHMMSS[.f], YYYY-MM-DDTHH:MM:SS[.f], "
    "each optionally followed by Z or +HH:MM/-HH:MM"
)

MIN_YEAR = 1900
MAX_YEAR = 9998

# Checked before any regex work so that a hostile query string costs nothing.
MAX_LENGTH = 64

NOW_WORDS = frozenset({"", "latest", "current", "now"})

# Only ASCII whitespace: str.strip() would also eat the \x1c-\x1f control characters,
# which must be rejected.
SURROUNDING_WHITESPACE = " \t\r\n\f\v"

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
NIGHT_TURNOVER_HOUR = 12

# [0-9] rather than \d: \d matches every Unicode digit, and int() would accept them too.
_DATE_BASIC = r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})"
_DATE_EXTENDED = r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
_TIME_EXTENDED = r"T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_TIME_BASIC = r"T(?P<hour>[0-9]{2})(?P<minute>[0-9]{2})(?P<second>[0-9]{2})"
_FRACTION = r"(?:\.(?P<fraction>[0-9]{1,6}))?"
# A '+' in a URL query string is decoded to a space (application/x-www-form-urlencoded),
# so clients that do not escape it as %2B send "...T05:00:00 05:00".  Exactly one space,
# and only directly before HH:MM, is read as '+'; nothing else about spaces is lenient.
_OFFSET = r"(?:(?P<utc>Z)|(?P<sign>[+ -])(?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))?"
# After a bare date the space is not accepted: "2018-07-07 05:00" reads like a local time,
# and taking it for midnight at UTC+5 would silently mislead.
_DATE_OFFSET = _OFFSET.replace("[+ -]", "[+-]")
_SHOT = r"(?:v[0-9]{3})?"

_FORMS = tuple(
    re.compile(pattern, re.ASCII)
    for pattern in (
        _DATE_BASIC + _SHOT + _DATE_OFFSET,
        _DATE_EXTENDED + _DATE_OFFSET,
        _DATE_BASIC + _TIME_EXTENDED + _FRACTION + _OFFSET,
        _DATE_BASIC + _TIME_BASIC + _FRACTION + _OFFSET,
        _DATE_EXTENDED + _TIME_EXTENDED + _FRACTION + _OFFSET,
    )
)


class DateError(ValueError):
    """A date string that is none of the accepted forms.

    str(err) is a complete, user-facing message that quotes the bad input (ascii-escaped
    repr, truncated to 40 characters), says why when there is more to say than "unknown
    form", and lists the accepted forms.
    """

    def __init__(self, text, reason=None):
        self.text = text
        self.reason = reason
        message = f"invalid date {_quote(text)}"
        if reason:
            message += f" ({reason})"
        super().__init__(f"{message}; accepted forms: {ACCEPTED_FORMS}")


def _quote(text):
    # ascii() rather than repr(): the message may end up in an HTTP header, which must
    # stay Latin-1, and escapes make invisible characters visible to the user.
    if isinstance(text, str) and len(text) > 40:
        return ascii(text[:40]) + "..."
    return ascii(text)


def _require_aware(value, name):
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")


def parse_datestr(text: str, site_tz: zoneinfo.ZoneInfo, now: datetime) -> datetime:
    """Return the instant `text` stands for, as an aware datetime in UTC.

    `now` is an aware datetime supplied by the caller (the answer to the "now" words), so
    that this stays a pure function.  Bad input raises DateError and nothing else.

    Date-only forms without an offset mean 00:00 local time in `site_tz` on that date.
    Where a zone has no such midnight (clocks jump from 00:00 to 01:00) or two of them
    (clocks fall back across midnight), fold=0 is used: for a gap that is the instant of
    the jump, i.e. the first instant of that local day; for a repeat, the first midnight.
    """
    _require_aware(now, "now")
    if not isinstance(text, str):
        raise DateError(text, "not a string")
    if len(text) > MAX_LENGTH:
        raise DateError(text, f"longer than {MAX_LENGTH} characters")

    stripped = text.strip(SURROUNDING_WHITESPACE)
    if means_now(stripped):
        return now.astimezone(UTC)

    for form in _FORMS:
        match = form.fullmatch(stripped)
        if match:
            return _instant_from_match(text, match.groupdict(), site_tz)
    raise DateError(text)


def means_now(text: str) -> bool:
    """True for the words that stand for the moment of asking (their answer moves with the clock)."""
    stripped = text.strip(SURROUNDING_WHITESPACE)
    # isascii() first: lower() maps some non-ASCII letters onto ASCII ones.
    return stripped.isascii() and stripped.lower() in NOW_WORDS


def _instant_from_match(text, fields, site_tz):
    year = int(fields["year"])
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise DateError(text, f"year must be {MIN_YEAR}-{MAX_YEAR}")

    offset = _offset_from_fields(text, fields)
    has_time = fields.get("hour") is not None
    if has_time:
        fraction = fields["fraction"] or ""
        time_fields = dict(
            hour=int(fields["hour"]),
            minute=int(fields["minute"]),
            second=int(fields["second"]),
            microsecond=int(fraction.ljust(6, "0")) if fraction else 0,
        )
        zone = UTC if offset is None else offset
    else:
        time_fields = {}
        zone = site_tz if offset is None else offset

    try:
        local = datetime(year, int(fields["month"]), int(fields["day"]), tzinfo=zone, fold=0,
                         **time_fields)
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        # datetime's own wording ("day is out of range for month") is clear enough to show.
        raise DateError(text, str(err)) from None


def _offset_from_fields(text, fields):
    if fields["utc"]:
        return UTC
    if fields["sign"] is None:
        return None
    hours, minutes = int(fields["offset_hour"]), int(fields["offset_minute"])
    if hours > 23 or minutes > 59:
        raise DateError(text, "offset must be -23:59 to +23:59")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if fields["sign"] == "-" else delta)


def format_instant(instant: datetime) -> str:
    """ISO 8601 UTC with Z: '2018-07-07T05:00:00Z'.

    Fractional seconds only when non-zero, trailing zeros stripped
    ('2018-07-07T02:27:24.5Z').  Rejects naive datetimes (ValueError).
    """
    _require_aware(instant, "instant")
    utc = instant.astimezone(UTC)
    # Built by hand: strftime('%Y') does not zero-pad years below 1000 on glibc.
    text = (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
            f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def night_label(instant: datetime, site_tz: tzinfo) -> str:
    """'YYYYMMDD' label of the observing night containing `instant`.

    The night labelled D runs from local noon of D-1 to local noon of D, so its midnight
    is 00:00 local on D: parse_datestr('D') is that midnight, and
    night_label(parse_datestr('D')) == 'D' always.  Rejects naive datetimes (ValueError).

    "Always" needs every calendar day to exist locally: in a zone that skipped a whole
    day (Pacific/Apia, 2011-12-30) no instant carries that day's label.
    """
    _require_aware(instant, "instant")
    local = instant.astimezone(site_tz)
    night = local.date()
    if local.hour >= NIGHT_TURNOVER_HOUR:
        night += timedelta(days=1)
    return f"{night.year:04d}{night.month:02d}{night.day:02d}"


def to_micros(instant: datetime) -> int:
    """Integer microseconds since the Unix epoch (UTC); the store keeps instants this way.

    Exact: timedelta floor division, no float timestamp on the way.
    """
    _require_aware(instant, "instant")
    return (instant - EPOCH) // ONE_MICROSECOND


def format_micros(micros: int) -> str:
    """format_instant of a stored instant (integer microseconds since the epoch)."""
    return format_instant(from_micros(micros))


def format_unix(seconds: float) -> str:
    """format_instant of a Unix time (time.time()), to the millisecond."""
    return format_instant(datetime.fromtimestamp(round(seconds, 3), UTC))


def from_micros(micros: int) -> datetime:
    """Aware UTC datetime for `micros` microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=micros)
