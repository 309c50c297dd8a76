"""The instant of an exposure from its FITS file: a small reader of the primary header.

A FITS primary header is a run of 2880-byte blocks of 80-character ASCII cards, ending with
the card ``END`` (FITS standard 4.0, section 4). Only that header is read, never the data,
so a 100 MB exposure costs one or two blocks. gzip'd files (``.fits.gz``, found by their
magic bytes, not their name) are read through the gzip module. Standard library only: the
client must run where nothing else is installed (no astropy).

The instant: ``DATE-OBS`` when it has a time (``2018-07-15T05:12:34.5``), else ``DATE-OBS``
plus ``UT`` or ``TIME-OBS`` (``2018-07-15`` + ``05:12:34.500``, as VIRUS headers carry it),
read as UTC as FITS says. It is returned as a datestr the server accepts.
"""

import gzip
import re

BLOCK = 2880
CARD = 80
# A header longer than this is not one a telescope wrote: stop instead of reading a whole
# file of garbage looking for END.
MAX_BLOCKS = 200
_GZIP_MAGIC = b"\x1f\x8b"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(r"(?P<hms>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<fraction>[0-9]+))?")
_LONG_FRACTION = re.compile(r"(\.[0-9]{6})[0-9]+")
TIME_KEYWORDS = ("UT", "TIME-OBS")


class FitsError(ValueError):
    """The file is not a readable FITS file, or its header names no instant; str() says why."""


def read_primary_header(path) -> dict[str, str]:
    """Keyword -> value of the primary header's cards (strings unquoted, the first card of
    a keyword wins); raises FitsError."""
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if magic == _GZIP_MAGIC else raw
            return _parse_blocks(stream)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise FitsError(f"cannot read it: {getattr(err, 'strerror', None) or err}") from None


def _parse_blocks(stream) -> dict[str, str]:
    cards: dict[str, str] = {}
    for number in range(MAX_BLOCKS):
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            raise FitsError("not a FITS file: the header ends before its END card"
                            if number else "not a FITS file: shorter than one header block")
        for offset in range(0, BLOCK, CARD):
            card = block[offset:offset + CARD].decode("ascii", "replace")
            keyword = card[:8].rstrip()
            if number == 0 and offset == 0 and keyword != "SIMPLE":
                raise FitsError("not a FITS file: it does not start with SIMPLE")
            if keyword == "END":
                return cards
            if card[8:10] == "= " and keyword not in cards:
                cards[keyword] = _card_value(card[10:])
    raise FitsError(f"no END card in the first {MAX_BLOCKS} header blocks")


def _card_value(text: str) -> str:
    text = text.lstrip()
    if text.startswith("'"):
        # A string: '' inside stands for one quote; trailing blanks are not significant.
        value, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1:i + 2] == "'":
                    value.append("'")
                    i += 2
                    continue
                break
            value.append(text[i])
            i += 1
        return "".join(value).rstrip()
    return text.partition("/")[0].strip()


def exposure_datestr(cards: dict[str, str]) -> str:
    """The instant of the exposure as a datestr (``2018-07-15T05:12:34.5``); raises FitsError."""
    date_obs = cards.get("DATE-OBS", "").strip()
    if not date_obs:
        raise FitsError("no DATE-OBS in the primary header")
    if "T" in date_obs:
        return _trimmed(date_obs)
    if not _DATE.fullmatch(date_obs):
        raise FitsError(f"DATE-OBS {date_obs!r} is not YYYY-MM-DD[Thh:mm:ss[.s]]")
    for keyword in TIME_KEYWORDS:
        time_text = cards.get(keyword, "").strip()
        if time_text:
            if not _TIME.fullmatch(time_text):
                raise FitsError(f"{keyword} {time_text!r} is not hh:mm:ss[.s]")
            return _trimmed(f"{date_obs}T{time_text}")
    raise FitsError(f"DATE-OBS {date_obs!r} has no time, and there is no UT or TIME-OBS card")


def _trimmed(datestr: str) -> str:
    # The server takes at most six fraction digits (microseconds); more say nothing more.
    return _LONG_FRACTION.sub(r"\1", datestr)


def exposure_instant_of(path) -> str:
    """read_primary_header + exposure_datestr: the datestr of a FITS file; raises FitsError."""
    return exposure_datestr(read_primary_header(path))
