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
    "schema_pattern",
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

# -- the grammar, written once ----------------------------------------------------------------
# parse_datestr reads these forms, and the OpenAPI document's Datestr pattern is the same
# forms (schema_pattern): a client or fuzzer that validates against the document sends only
# dates the server reads. Values are in range by the grammar itself (months, the days of
# each month, leap days, hours, offsets, the years MIN_YEAR-MAX_YEAR), in syntax that
# Python and ECMA-262 read alike. [0-9] rather than \d: \d matches every Unicode digit.


def _either(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


_YEAR = _either("19[0-9]{2}", "[2-8][0-9]{3}", "9[0-8][0-9]{2}", "99[0-8][0-9]", "999[0-8]")
# Within 1900-9998: divisible by 4, and centuries only when divisible by 400.
_LEAP_YEAR = _either("(?:19|[2-9][0-9])(?:0[48]|[2468][048]|[13579][26])",
                     "(?:[2468][048]|[3579][26])00")
_HOUR = "(?:[01][0-9]|2[0-3])"
_MINUTE = "[0-5][0-9]"


def _date(sep: str) -> str:
    """A calendar date, YYYYMMDD or YYYY-MM-DD: read positionally (_instant_from_match)."""
    month_day = _either(f"(?:0[13578]|1[02]){sep}(?:0[1-9]|[12][0-9]|3[01])",
                        f"(?:0[469]|11){sep}(?:0[1-9]|[12][0-9]|30)",
                        f"02{sep}(?:0[1-9]|1[0-9]|2[0-8])")
    return "(?P<date>" + _either(f"{_YEAR}{sep}{month_day}", f"{_LEAP_YEAR}{sep}02{sep}29") + ")"


def _time(sep: str) -> str:
    return (f"T(?P<hour>{_HOUR}){sep}(?P<minute>{_MINUTE}){sep}(?P<second>{_MINUTE})"
            r"(?:\.(?P<fraction>[0-9]{1,6}))?")


def _offset(signs: str) -> str:
    return f"(?:(?P<utc>Z)|(?P<sign>[{signs}])(?P<offset_hour>{_HOUR}):(?P<offset_minute>{_MINUTE}))?"


# A '+' in a URL query string is decoded to a space (application/x-www-form-urlencoded), so
# clients that do not escape it as %2B send "...T05:00:00 05:00". Exactly one space, and only
# directly before HH:MM after a time, is read as '+'. After a bare date the space is not
# accepted: "2018-07-07 05:00" reads like a local time, and taking it for midnight at UTC+5
# would silently mislead.
_FORM_PATTERNS = (
    _date("") + "(?:v[0-9]{3})?" + _offset("+-"),      # YYYYMMDD, a shot id YYYYMMDDvNNN
    _date("-") + _offset("+-"),                        # YYYY-MM-DD
    _date("") + _time(":") + _offset("+ -"),           # YYYYMMDDTHH:MM:SS[.f]
    _date("") + _time("") + _offset("+ -"),            # YYYYMMDDTHHMMSS[.f]
    _date("-") + _time(":") + _offset("+ -"),          # YYYY-MM-DDTHH:MM:SS[.f]
)
_FORMS = tuple(re.compile(pattern, re.ASCII) for pattern in _FORM_PATTERNS)


def schema_pattern() -> str:
    """The accepted date strings as one anchored regular expression (the OpenAPI Datestr
    pattern): the now words in any case, or a form, with the blanks parse_datestr forgives
    around it. maxLength (MAX_LENGTH) goes beside it."""
    now_words = ("".join(f"[{c.upper()}{c}]" for c in word) for word in sorted(NOW_WORDS) if word)
    forms = (re.sub(r"\(\?P<\w+>", "(?:", pattern) for pattern in _FORM_PATTERNS)
    blanks = "[" + "".join(f"\\x{ord(c):02x}" for c in SURROUNDING_WHITESPACE) + "]*"
    return f"^{blanks}{_either(*now_words, *forms)}?{blanks}$"


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
    # The grammar has put every number in range; only a zone's own limits remain.
    digits = fields["date"].replace("-", "")
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    offset = _offset_from_fields(fields)
    if fields.get("hour") is not None:
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
        return datetime(year, month, day, tzinfo=zone, fold=0, **time_fields).astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise DateError(text, str(err)) from None


def _offset_from_fields(fields):
    if fields["utc"]:
        return UTC
    if fields["sign"] is None:
        return None
    delta = timedelta(hours=int(fields["offset_hour"]), minutes=int(fields["offset_minute"]))
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
