"""The update side: from a posted hardware status to the new full configuration.

Pure functions, no I/O and no clock: callers pass ``now``, the site time zone,
the previous version's rows and the site's static rows.

The telescope control system (TCS) posts ``data`` = ``{"config": <hardware
status>, "commit": true|false}`` (contract.md section 5)::

    {"timestamp": "2018-07-15T17:02:11Z",
     "spectrographs": [
       {"specid": "315", "specslot": "218", "ifuslot": "021", "ifuid": "073"},
       {"specid": "000", "specslot": "241", "ifuslot": "013", "ifuid": "043"}]}

The steps, in the contract's order of checks::

    data = decode_update(text)                        # 208 / 209
    status = parse_status(data["config"], site_tz)    # 209, every problem listed
    check_timestamp(status.timestamp, now, max_age, max_future)   # 210 / 211
    rows = build_configuration(status, previous_rows, static_rows)
    hold_reason(previous_rows, rows)                  # 103: held for review
    new_hardware(previous_rows, rows)                 # for the notification

A status describes the 78 VIRUS seats only (the other six grid seats, LRS2 and the
always-empty centre, may be listed with ids 000, as the full file lists them; they
change nothing).  The 000 reference row, LRS2 (056,
066) and the non-grid fibre bundles (555, 600-616, ...) are carried over from
the previous version, or taken from ``[Site] static_rows`` when there is none.
Grid seats are written at their nominal positions: measured positions live in
position sets (``POST /positions``, ``positions_from_update``).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Iterable, Mapping, NamedTuple

from wsgi import codes, dates
from wsgi.fplane import (
    ALWAYS_EMPTY_SLOTS,
    GRID_SLOTS,
    LRS2_SLOTS,
    REFERENCE_ROW,
    REFERENCE_SLOT,
    VIRUS_SLOTS,
    Row,
    canonical_order,
    empty_seat_row,
    nominal_position,
)

__all__ = [
    "UpdateError", "SeatEntry", "HardwareStatus",
    "decode_update", "parse_status", "build_configuration", "carried_over_rows", "at_nominal",
    "check_timestamp",
    "deactivated_fraction", "hold_reason", "new_hardware",
    "positions_from_update", "PositionsUpdate", "merged_positions",
    "MAX_POSITION_OFFSET", "SUSPICIOUS_FRACTION", "MAX_PROBLEMS",
]

# A status that would switch off this fraction of the active IFUs (or more) at
# once is held for review (contract: "half or more").
SUSPICIOUS_FRACTION = 0.5
# Measured centres are a few tenths of an arcsec off nominal, at most about 2.4"
# in real files (domain.md); 10" away is a wrong seat or wrong units.
MAX_POSITION_OFFSET = 10.0
# Every problem is listed, but a hostile payload (a million bad entries fits in
# [Server] max_body) must not turn into a multi-megabyte answer.
MAX_PROBLEMS = 1000

_GRID_SET = frozenset(GRID_SLOTS)
_VIRUS_SET = frozenset(VIRUS_SLOTS)
# Every id string there is, 1-3 ASCII digits ("7", "07", "007"; str.isdigit() would
# accept other scripts' digits too), read once: a status has some 300 of them.
_ID_TEXTS = {f"{n:0{width}d}": n for width in (1, 2, 3) for n in range(10 ** width)}
_ID_KEYS = ("ifuslot", "specid", "specslot", "ifuid")
_EXAMPLE_TIMESTAMP = "2018-07-15T17:02:11Z"


# --------------------------------------------------------------------------
# Results and errors

class UpdateError(Exception):
    """A refused update: ``code`` (wsgi.codes), a one-line ``message`` and, for
    209, ``problems``: every problem found, each a short line naming its place."""

    def __init__(self, code: int, message: str, problems: Iterable[str] = ()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = _capped(problems)

    def __str__(self) -> str:
        return self.message


def _invalid(what: str, problems: list[str]) -> UpdateError:
    n = len(problems)
    return UpdateError(codes.INVALID_DATA,
                       f"{what}: {n} problem{'' if n == 1 else 's'}", problems)


def _capped(problems: Iterable[str]) -> tuple[str, ...]:
    problems = tuple(problems)
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return problems[:MAX_PROBLEMS] + (f"... and {len(problems) - MAX_PROBLEMS} more problems",)


class SeatEntry(NamedTuple):
    """One listed seat of a hardware status; ids as integers (000 -> 0). A named tuple, not
    a frozen dataclass: a status makes some 70 and a tuple is made at a third of the cost."""
    ifuslot: int
    specid: int      # 0: a bundle without a spectrograph (inactive seat)
    specslot: int
    ifuid: int


@dataclass(frozen=True)
class HardwareStatus:
    timestamp: datetime                 # aware, UTC
    entries: tuple[SeatEntry, ...]      # in the order given
    raw: Mapping[str, Any] = field(compare=False, repr=False)  # as posted, unknown keys too


# --------------------------------------------------------------------------
# Showing posted values in messages

def _show(value: Any) -> str:
    """A short, ASCII, JSON-ish rendering of a posted value for a problem line."""
    if isinstance(value, str):
        # ascii(): messages may reach HTTP headers (Latin-1) and must show
        # invisible characters.
        return ascii(value[:40]) + ("..." if len(value) > 40 else "")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of an int above 4300 digits raises ValueError in Python 3.11.
        return str(value) if abs(value) < 10 ** 30 else "a very large number"
    if isinstance(value, float):
        return repr(value)
    return _kind(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


# --------------------------------------------------------------------------
# Decoding the posted ``data``

# A string (possibly unterminated: json.loads reports that), or one structural
# character.  Strings are skipped whole so brackets inside them do not count.
_STRUCTURE_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|[\[{]|[\]}]|,', re.S)
_LONGEST_INT = 30   # digits; ids are 3, and int() of 4300+ digits raises in 3.11


def _size_problem(text: str, max_depth: int, max_items: int) -> str | None:
    """Nesting depth and item count, found without parsing (and without recursion):
    json.loads recurses once per level, so 10,000 ``[`` would blow the stack.
    Why ``text`` is too big, or None."""
    depth = 0
    items = 0
    for match in _STRUCTURE_RE.finditer(text):
        c = match.group()[0]
        if c in "[{":
            depth += 1
            items += 1
            if depth > max_depth:
                return (f"data nests deeper than {max_depth} levels of arrays and objects "
                        f"(an update needs at most 4)")
        elif c in "]}":
            depth = max(depth - 1, 0)
        elif c == ",":
            items += 1
        else:
            continue
        if items > max_items:
            return (f"data has more than {max_items} items (array elements and object "
                    f"members); a hardware status has a few hundred")
    return None


def decode_update(data_text: str, *, payload: str = "config", max_depth: int = 16,
                  max_items: int = 10_000) -> dict:
    """The posted ``data`` field -> the decoded JSON object.

    ``payload`` names the key that must be there: ``config`` (the hardware
    status, ``POST /fplane``) or ``positions`` (``POST /positions``); its content
    is checked by ``parse_status`` / ``positions_from_update``.  ``commit`` must
    be true or false; ``valid_from``, when present and not null, a string.
    Top-level keys are case-insensitive like the status's; the known ones come
    back lower-case, others as posted.

    Raises UpdateError 208 (not JSON) or 209 (too deep / too many items, NaN or
    Infinity, duplicate keys, not an object, missing or ill-typed fields; all
    problems listed).
    """
    data_text = _posted_text(data_text)                 # 208: not UTF-8 text
    # Before json.loads, which recurses once per level of nesting:
    too_big = _size_problem(data_text, max_depth, max_items)
    if too_big:
        raise UpdateError(codes.INVALID_DATA, too_big, (too_big,))
    data, problems = _decode_json(data_text)            # 208: not JSON
    if not isinstance(data, dict):
        raise _invalid("data is invalid", [
            f'data must be a JSON object {{"{payload}": ..., "commit": true|false}}, '
            f'not {_kind(data)}', *problems])
    data, key_problems = _lower_known_keys(data, ("commit", "valid_from", payload))
    problems += key_problems + _field_problems(data, payload)
    if problems:
        raise _invalid("data is invalid", problems)
    return data


def _posted_text(data: bytes | str) -> str:
    """The posted ``data`` as text: bytes are decoded as UTF-8, and a leading BOM (some
    editors write one; harmless) is dropped.  208 when it is not UTF-8 text."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UpdateError(codes.BAD_JSON, f"data is not valid UTF-8 ({exc.reason} at "
                                              f"byte {exc.start})") from None
    if not isinstance(data, str):
        raise UpdateError(codes.BAD_JSON, f"data must be JSON text, not {type(data).__name__}")
    return data[1:] if data.startswith("\ufeff") else data


def _decode_json(text: str) -> tuple[Any, list[str]]:
    """(the value ``text`` holds, the problems found in it), or 208 when it is not JSON.

    The problems are what json.loads would let through but an update must not hold
    (_StrictHooks); they are collected rather than raised so that the 209 lists them all."""
    hooks = _StrictHooks()
    try:
        data = json.loads(text, object_pairs_hook=hooks.object_pairs,
                          parse_constant=hooks.constant, parse_float=hooks.number,
                          parse_int=hooks.integer)
    except json.JSONDecodeError as exc:
        raise UpdateError(codes.BAD_JSON, f"data is not valid JSON: {exc.msg} at line "
                                          f"{exc.lineno} column {exc.colno}") from None
    except RecursionError:  # pragma: no cover - _size_problem bounds the depth first
        raise _invalid("data is invalid", ["data nests too deeply"]) from None
    return data, hooks.problems


class _StrictHooks:
    """json.loads hooks that note, in ``problems``, what Python's json accepts and an
    update must not hold: a key given twice (the last would silently win), NaN and
    Infinity (not JSON), numbers beyond float range, integers of more than _LONGEST_INT
    digits."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def object_pairs(self, pairs):
        obj = dict(pairs)
        if len(obj) < len(pairs):   # a key given twice (rare: look for it only then)
            seen = set()
            for key, _ in pairs:
                if key in seen:
                    self.problems.append(f"key {_show(key)} appears twice in one object")
                seen.add(key)
        return obj

    def constant(self, name):
        self.problems.append(f"{name} is not a number JSON allows")
        return None

    def number(self, text):
        value = float(text)
        if not math.isfinite(value):
            self.problems.append(f"number {_show(text)} is out of range")
            return None
        return value

    def integer(self, text):
        if len(text.lstrip("-")) > _LONGEST_INT:
            self.problems.append(f"integer of {len(text.lstrip('-'))} digits is out of range")
            return None
        return int(text)


def _field_problems(data: dict, payload: str) -> list[str]:
    """What is wrong with the top-level fields of ``data`` (known keys lower-cased):
    ``payload`` missing, ``commit`` missing or not a boolean, ``valid_from`` neither a
    string nor null."""
    problems = []
    what = "the hardware status" if payload == "config" else f"the {payload}"
    if payload not in data:
        problems.append(f"{payload} is missing ({what})")
    if "commit" not in data:
        problems.append("commit is missing (true to store, false for a dry run)")
    elif not isinstance(data["commit"], bool):
        problems.append(f"commit must be true or false, not {_show(data['commit'])}")
    valid_from = data.get("valid_from")
    if valid_from is not None and not isinstance(valid_from, str):
        problems.append(f"valid_from must be a date string such as {_EXAMPLE_TIMESTAMP!r}, "
                        f"not {_show(valid_from)}")
    return problems


def _lower_known_keys(obj: dict, known: Iterable[str], where: str = ""
                      ) -> tuple[dict, list[str]]:
    """Keys matching ``known`` case-insensitively are renamed to their lower-case
    form; two spellings of one key are a problem."""
    known = set(known)
    out: dict = {}
    spelled: dict[str, str] = {}
    problems = []
    for key, value in obj.items():
        lower = key.lower() if isinstance(key, str) and key.isascii() else None
        if lower in known:
            if lower in spelled:
                problems.append(f"{where}keys {_show(spelled[lower])} and {_show(key)} "
                                f"are both given")
                continue
            spelled[lower] = key
            out[lower] = value
        elif key not in out:
            out[key] = value
    return out, problems


# --------------------------------------------------------------------------
# The hardware status

def _parse_id(value: Any) -> int | None:
    """An id: an int 0..999 or a string of 1-3 ASCII digits; None otherwise."""
    if isinstance(value, bool):
        return None   # True is an int to Python, not an id to anyone
    if isinstance(value, int):
        return value if 0 <= value <= 999 else None
    if isinstance(value, str):
        return _ID_TEXTS.get(value)
    return None


_HARDWARE_IDS = (("ifuid", "IFU"), ("specid", "spectrograph"), ("specslot", "spectrograph slot"))


def _holds_nothing(ids: dict[str, int]) -> bool:
    """True when an entry lists no hardware: every id it gives (of those readable) is 000."""
    return not any(ids.get(key) for key, _ in _HARDWARE_IDS)


def _seat_problem(seat: int, ids: dict[str, int]) -> str:
    """Why ``seat``, no VIRUS seat, cannot be listed with ``ids`` in a status."""
    if seat in LRS2_SLOTS or seat in ALWAYS_EMPTY_SLOTS:
        hardware = " and ".join(f"{name} {ids[key]:03d}" for key, name in _HARDWARE_IDS
                                if ids.get(key))
        if seat in LRS2_SLOTS:
            name = "LRS2-B" if seat == LRS2_SLOTS[0] else "LRS2-R"
            why = (f"it holds {name}, which is not part of a hardware status (carried over "
                   f"from the previous version)")
        else:
            why = "the central seats 054, 055, 064, 065 are always empty"
        return (f"seat {seat:03d} cannot hold {hardware}: {why}; list it with ids 000 "
                f"(empty) or leave it out")
    if seat == REFERENCE_SLOT:
        return ("unknown seat 000: the reference row is not part of a hardware status "
                "(carried over from the previous version)")
    if seat in _GRID_SET:  # pragma: no cover - every grid seat is one of the above
        return f"unknown seat {seat:03d}"
    return (f"unknown seat {seat:03d}: not a VIRUS seat of the IFU grid (special rows are "
            f"carried over from the previous version)")


def parse_status(status: Any, site_tz: tzinfo) -> HardwareStatus:
    """Check a hardware status (the posted ``config``) and read it.

    Every problem is collected, then one UpdateError 209 lists them all: not an
    object, ``timestamp`` missing or not a date, ``spectrographs`` missing or not
    a list, an entry without one of ifuslot / specid / specslot / ifuid, a
    malformed id (an int 0..999 or a string of 1-3 ASCII digits; booleans are
    not ids), a seat that is not a VIRUS seat (LRS2 and the central seats may be listed
    with ids 000: they hold nothing a status describes), the same seat, the same IFU or
    the same active spectrograph listed twice.  Keys are case-insensitive; unknown
    keys are ignored (they stay in ``raw``).  ``site_tz`` only matters for a
    timestamp that is a bare date (local midnight).
    """
    if not isinstance(status, dict):
        raise _invalid("the hardware status is invalid",
                       [f"config (the hardware status) must be an object, not {_kind(status)}"])
    problems: list[str] = []
    fields, key_problems = _lower_known_keys(status, ("timestamp", "spectrographs"))
    problems.extend(key_problems)

    timestamp = _parse_timestamp(fields, site_tz, problems)

    entries: list[SeatEntry] = []
    spectrographs = fields.get("spectrographs")
    if "spectrographs" not in fields:
        problems.append("spectrographs is missing (the list of seats with their specid, "
                        "specslot, ifuslot and ifuid)")
    elif not isinstance(spectrographs, list):
        problems.append(f"spectrographs must be a list, not {_kind(spectrographs)}")
    else:
        entries = _parse_entries(spectrographs, problems)

    if problems:
        raise _invalid("the hardware status is invalid", problems)
    return HardwareStatus(timestamp, tuple(entries), status)


def _parse_timestamp(fields: dict, site_tz: tzinfo, problems: list[str]) -> datetime | None:
    if "timestamp" not in fields:
        problems.append(f"timestamp is missing (when the status was taken, e.g. "
                        f"{_EXAMPLE_TIMESTAMP!r})")
        return None
    value = fields["timestamp"]
    if not isinstance(value, str):
        problems.append(f"timestamp must be a string such as {_EXAMPLE_TIMESTAMP!r}, "
                        f"not {_show(value)}")
        return None
    if dates.means_now(value):
        problems.append(f"timestamp {_show(value)} is not an instant: give the time the "
                        f"status was taken, e.g. {_EXAMPLE_TIMESTAMP!r}")
        return None
    try:
        # `now` only answers the "now" words, excluded above.
        return dates.parse_datestr(value, site_tz, dates.EPOCH)
    except dates.DateError as exc:
        problems.append(f"timestamp: {exc}")
        return None


def _parse_entries(spectrographs: list, problems: list[str]) -> list[SeatEntry]:
    entries: list[SeatEntry] = []
    seen_seat: dict[int, int] = {}               # seat -> index
    seen_ifu: dict[int, tuple[int, int]] = {}    # ifuid -> (index, seat)
    seen_spec: dict[int, tuple[int, int]] = {}   # active specid -> (index, seat)
    for index, where, fields, seat in _seat_objects(spectrographs, "spectrographs", _ID_KEYS,
                                                   problems):

        ids: dict[str, int] = {}
        for key in _ID_KEYS:
            if key not in fields:
                problems.append(f"{where}: {key} is missing")
                continue
            value = _parse_id(fields[key])
            if value is None:
                problems.append(f"{where}: {key} {_show(fields[key])} is not an id of 1-3 "
                                f"digits")
            else:
                ids[key] = value

        if seat is not None:
            # A grid seat that holds no VIRUS IFU (LRS2, the always-empty centre) may be
            # listed empty, as the full file lists it; only hardware on it is wrong.
            listed_empty = seat in _GRID_SET and _holds_nothing(ids)
            if seat not in _VIRUS_SET and not listed_empty:
                problems.append(f"{where}: {_seat_problem(seat, ids)}")
                continue
            if seat in seen_seat:
                problems.append(f"{where}: seat {seat:03d} is listed twice (also "
                                f"spectrographs[{seen_seat[seat]}])")
                continue
            seen_seat[seat] = index
            if seat not in _VIRUS_SET:
                continue   # nothing there: LRS2 is carried over, the centre stays empty
        # 000 is no bundle / no spectrograph (an inactive seat): it may repeat.
        _check_unique(ids.get("ifuid"), "IFU", seen_ifu, index, seat, where, problems)
        _check_unique(ids.get("specid"), "active spectrograph", seen_spec, index, seat, where,
                      problems)
        if len(ids) == len(_ID_KEYS):
            entries.append(SeatEntry(ids["ifuslot"], ids["specid"], ids["specslot"],
                                     ids["ifuid"]))
    return entries


def _seat_objects(items: list, name: str, keys: tuple[str, ...], problems: list[str]):
    """Each object of a list of seat entries, as (index, label, fields, seat or None).

    The label (``spectrographs[3] (seat 021)``) starts every problem about that entry;
    ``fields`` has the known keys case-folded; an entry that is not an object is reported
    and skipped."""
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            listed = ", ".join(keys[:-1]) + f" and {keys[-1]}"
            problems.append(f"{where}: must be an object with {listed}, not {_kind(item)}")
            continue
        fields, key_problems = _lower_known_keys(item, keys)
        seat = _parse_id(fields.get("ifuslot"))
        if seat is not None:
            where += f" (seat {seat:03d})"
        problems.extend(f"{where}: {p}" for p in key_problems)
        yield index, where, fields, seat


def _check_unique(the_id: int | None, what: str, seen: dict, index: int, seat: int | None,
                  where: str, problems: list[str]) -> None:
    """Note ``the_id`` (an IFUID or SPECID, not 000) as listed at ``index``, or report it
    listed twice."""
    if not the_id:
        return
    if the_id in seen:
        other, other_seat = seen[the_id]
        problems.append(f"{where}: {what} {the_id:03d} is listed twice (also "
                        f"spectrographs[{other}], {_seat_text(other_seat)})")
    elif seat is not None:
        seen[the_id] = (index, seat)


def _seat_text(seat: int) -> str:
    return f"seat {seat:03d}"


# --------------------------------------------------------------------------
# The new configuration

def at_nominal(row: Row) -> Row:
    """``row`` at its seat's nominal position (grid seats)."""
    x, y = nominal_position(row.ifuslot)
    if (row.x, row.y) == (x, y):
        return row
    return Row(row.ifuslot, x, y, row.specid, row.specslot, row.ifuid, row.ifurot,
               row.platesc, row.active)


def carried_over_rows(previous_rows: Iterable[Row] | None,
                      static_rows: Iterable[Row]) -> dict[int, Row]:
    """The rows a hardware status does not describe, by seat, as a new configuration
    gets them: 000, LRS2 (056, 066) and every non-grid row, carried over from
    ``previous_rows``, or taken from ``static_rows`` when there is no previous version
    (None or empty).  LRS2 keeps its ids and state but, like every grid seat, sits at
    its nominal position (measured positions live in position sets); an LRS2 seat the
    source lacks is left out.  The 000 row falls back to the static one, then to
    fplane.REFERENCE_ROW.  (fplane-admin import gives a file without special rows the
    same ones.)
    """
    static_rows = tuple(static_rows)
    source = tuple(previous_rows or ()) or static_rows
    by_seat = {r.ifuslot: r for r in source}
    rows = {s: at_nominal(by_seat[s]) for s in LRS2_SLOTS if s in by_seat}
    rows.update((s, r) for s, r in by_seat.items() if s != REFERENCE_SLOT and s not in _GRID_SET)
    rows[REFERENCE_SLOT] = (by_seat.get(REFERENCE_SLOT)
                            or next((r for r in static_rows if r.ifuslot == REFERENCE_SLOT), None)
                            or REFERENCE_ROW)
    return rows


def build_configuration(status: HardwareStatus, previous_rows: Iterable[Row] | None,
                        static_rows: Iterable[Row]) -> tuple[Row, ...]:
    """The new full configuration, in canonical order (fplane.canonical_order).

    - The 78 VIRUS seats: listed ones from the status (active iff SPECID is not
      000), unlisted ones empty (000 000 000) and inactive; with the always-empty
      central seats, at nominal positions.
    - 000, LRS2 and the non-grid rows: carried_over_rows; an LRS2 seat without a
      row there is empty.
    """
    rows: dict[int, Row] = {s: empty_seat_row(s) for s in GRID_SLOTS}
    rows.update(carried_over_rows(previous_rows, static_rows))
    for e in status.entries:
        # parse_status guarantees VIRUS seats listed once.
        rows[e.ifuslot] = Row(e.ifuslot, *nominal_position(e.ifuslot), e.specid, e.specslot,
                              e.ifuid, 0.0, 1.0, e.specid != 0)
    return canonical_order(rows.values())


# --------------------------------------------------------------------------
# Judging the change

def _active_ifus(rows: Iterable[Row]) -> set[tuple[str, int]]:
    """Active VIRUS IFUs, by IFUID (an IFU moved to another seat is still active);
    an active row without an IFUID counts by its seat."""
    return {("ifu", r.ifuid) if r.ifuid else ("seat", r.ifuslot)
            for r in rows if r.active and r.ifuslot in _VIRUS_SET}


def deactivated_fraction(previous_rows: Iterable[Row] | None, new_rows: Iterable[Row]) -> float:
    """Fraction of the previously active VIRUS IFUs that are not active in
    ``new_rows`` (wherever they sit); 0.0 when none was active."""
    before = _active_ifus(previous_rows or ())
    if not before:
        return 0.0
    after = _active_ifus(new_rows)
    return len(before - after) / len(before)


def hold_reason(previous_rows: Iterable[Row] | None, new_rows: Iterable[Row]) -> str:
    """Why the update must wait for review, in words; "" when it need not. The rule: an
    update that would switch off half or more of the active IFUs at once is held
    (contract: code 103)."""
    fraction = deactivated_fraction(previous_rows, new_rows)
    if fraction < SUSPICIOUS_FRACTION:
        return ""
    return (f"it would switch off {fraction:.0%} of the active IFUs at once "
            f"({SUSPICIOUS_FRACTION:.0%} or more is held for review)")


def new_hardware(previous_rows: Iterable[Row] | None, new_rows: Iterable[Row]) -> list[str]:
    """Spectrographs and IFUs on a VIRUS seat of ``new_rows`` (active or just
    installed) whose id appears nowhere in ``previous_rows``, in seat order, e.g.
    ``spectrograph 025 appears (seat 093)``.  Empty without previous rows (the
    first configuration is not news)."""
    previous_rows = tuple(previous_rows or ())
    if not previous_rows:
        return []
    known_specs = {r.specid for r in previous_rows}
    known_ifus = {r.ifuid for r in previous_rows}
    out: list[str] = []
    for r in sorted(new_rows, key=lambda r: r.ifuslot):
        if r.ifuslot not in _VIRUS_SET:
            continue
        if r.specid and r.specid not in known_specs:
            out.append(f"spectrograph {r.specid:03d} appears (seat {r.ifuslot:03d})")
            known_specs.add(r.specid)
        if r.ifuid and r.ifuid not in known_ifus:
            out.append(f"IFU {r.ifuid:03d} appears (seat {r.ifuslot:03d})")
            known_ifus.add(r.ifuid)
    return out


# --------------------------------------------------------------------------
# The time stamp

def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _duration(seconds: float) -> str:
    """'7 h 2 min', '45 s', '1 d 3 h': whole seconds, zero parts left out."""
    total = math.ceil(seconds)   # up: just beyond a limit never reads as the limit
    if total == 0:
        return "0 s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            parts.append(f"{n} {unit}")
    return " ".join(parts)


def _limit_text(name: str, seconds: float) -> str:
    shown = f"{seconds:g}" if seconds != int(seconds) else f"{int(seconds)}"
    return f"[Update] {name} = {shown} s ({_duration(seconds)})"


def check_timestamp(timestamp: datetime, now: datetime, max_age: int | float | timedelta,
                    max_future: int | float | timedelta) -> None:
    """Refuse a status taken more than ``max_age`` before ``now`` (210) or stamped
    more than ``max_future`` after it (211); limits in seconds (config.ini) or
    timedeltas.  Exactly at a limit is accepted."""
    age = (now - timestamp).total_seconds()
    max_age_s, max_future_s = _seconds(max_age), _seconds(max_future)
    stamp = dates.format_instant(timestamp)
    if age > max_age_s:
        raise UpdateError(codes.TOO_OLD,
                          f"hardware status is {_duration(age)} old (timestamp {stamp}, now "
                          f"{dates.format_instant(now)}); the limit is "
                          f"{_limit_text('max_age', max_age_s)}")
    if -age > max_future_s:
        raise UpdateError(codes.TOO_FAR_IN_FUTURE,
                          f"hardware status time stamp is {_duration(-age)} in the future "
                          f"(timestamp {stamp}, now {dates.format_instant(now)}); the limit is "
                          f"{_limit_text('max_future', max_future_s)}; is a clock wrong?")


# --------------------------------------------------------------------------
# Measured positions (POST /positions)

def _parse_coordinate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:   # an int beyond float range
        return None
    return value if math.isfinite(value) else None


class PositionsUpdate(NamedTuple):
    """What a ``POST /positions`` (or ``fplane-admin import``) says about the position set."""
    measured: dict[int, tuple[float, float]]    # seat -> (x, y), arcsec
    reset: frozenset[int] = frozenset()         # seats back to nominal
    complete: bool = False                      # the whole set: seats not measured are nominal


def merged_positions(last: Mapping[int, tuple[float, float]],
                     update: PositionsUpdate) -> dict[int, tuple[float, float]]:
    """The position set after ``update``, given the ``last`` one (seat -> (x, y); empty
    when there is none).  Measurements are taken a few seats at a time, so the seats
    the update measures take their new values and every other seat keeps its last
    measurement, unless the update resets it or says it is the whole set."""
    kept = {} if update.complete else {
        seat: xy for seat, xy in last.items() if seat not in update.reset}
    return {**kept, **update.measured}


def positions_from_update(data: Mapping[str, Any]) -> PositionsUpdate:
    """``{"positions": [{"ifuslot": "021", "x": -349.8, "y": 350.2}, ...],
    "reset": ["022", ...], "complete": false}`` (the decoded data of ``POST /positions``)
    -> PositionsUpdate.

    Any grid seat may be measured; x and y are finite numbers within
    MAX_POSITION_OFFSET arcsec of the seat's nominal centre.  ``reset`` (optional)
    lists grid seats whose last measurement no longer holds (they go back to nominal);
    ``complete`` (optional, default false) says the post is the whole set.  Keys are
    case-insensitive.  Every problem (malformed entry, unknown seat, a seat listed
    twice or both measured and reset, nothing to do) goes into one UpdateError 209.
    """
    if not isinstance(data, Mapping):
        raise _invalid("the positions are invalid",
                       [f"data must be an object with positions, not {_kind(data)}"])
    problems: list[str] = []
    fields, key_problems = _lower_known_keys(dict(data), ("positions", "reset", "complete"))
    problems.extend(key_problems)
    positions = fields.get("positions")
    out: dict[int, tuple[float, float]] = {}
    reset = _reset_seats(fields.get("reset", []), problems)
    complete = fields.get("complete", False)
    if not isinstance(complete, bool):
        problems.append(f"complete must be true or false, not {_show(complete)}")
        complete = False
    if "positions" not in fields:
        problems.append('positions is missing (a list of {"ifuslot", "x", "y"})')
    elif not isinstance(positions, list):
        problems.append(f"positions must be a list, not {_kind(positions)}")
    elif not positions and not (reset or complete):
        problems.append("positions is empty: nothing to store (reset lists seats to take back "
                        "to nominal, complete: true makes the post the whole set)")
    else:
        seen: dict[int, int] = {}
        for index, where, item, seat in _seat_objects(positions, "positions",
                                                      ("ifuslot", "x", "y"), problems):
            ok = True
            if "ifuslot" not in item:
                problems.append(f"{where}: ifuslot is missing")
                ok = False
            elif seat is None:
                problems.append(f"{where}: ifuslot {_show(item['ifuslot'])} is not an id of "
                                f"1-3 digits")
                ok = False
            elif seat not in _GRID_SET:
                problems.append(f"{where}: unknown seat {seat:03d}: not a seat of the IFU grid")
                ok = False
            elif seat in seen:
                problems.append(f"{where}: seat {seat:03d} is listed twice (also "
                                f"positions[{seen[seat]}])")
                ok = False
            else:
                seen[seat] = index
            xy = []
            for key in ("x", "y"):
                if key not in item:
                    problems.append(f"{where}: {key} is missing")
                    ok = False
                    continue
                value = _parse_coordinate(item[key])
                if value is None:
                    problems.append(f"{where}: {key} {_show(item[key])} is not a finite number "
                                    f"(arcsec)")
                    ok = False
                xy.append(value)
            if not ok:
                continue
            x, y = xy
            nx, ny = nominal_position(seat)
            off = math.hypot(x - nx, y - ny)
            if off > MAX_POSITION_OFFSET:
                problems.append(f"{where}: ({x:g}, {y:g}) is {off:.1f} arcsec from the seat's "
                                f"nominal centre ({nx:g}, {ny:g}); at most "
                                f"{MAX_POSITION_OFFSET:g} is plausible")
                continue
            out[seat] = (x, y)
    both = sorted(reset & out.keys())
    if both:
        problems.append(f"reset lists {', '.join(f'{s:03d}' for s in both)}, also measured in "
                        f"positions: measure a seat or reset it, not both")
    if problems:
        raise _invalid("the positions are invalid", problems)
    return PositionsUpdate(out, reset, complete)


def _reset_seats(value: Any, problems: list[str]) -> frozenset[int]:
    if not isinstance(value, list):
        problems.append(f'reset must be a list of seats such as ["021", "022"], not {_kind(value)}')
        return frozenset()
    seats = set()
    for index, item in enumerate(value):
        seat = _parse_id(item)
        if seat is None:
            problems.append(f"reset[{index}]: {_show(item)} is not an id of 1-3 digits")
        elif seat not in _GRID_SET:
            problems.append(f"reset[{index}]: unknown seat {seat:03d}: not a seat of the IFU grid")
        else:
            seats.add(seat)
    return frozenset(seats)
