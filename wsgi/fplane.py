"""The HET/VIRUS focal plane ("fplane") file: domain model, importer and renderer.

Pure functions, no I/O, no state besides constants.

The file has one row per seat of the IFU head mounting plate (IHMP)::

    # IFUSLOT X_FP   Y_FP   SPECID SPECSLOT IFUID IFUROT  PLATESC
    000	   0.000	   0.000	900	900	900	0.000	1.000
    #013	-450.000	 150.000	000	241	043	0.000	1.000
    021	-350.000	 350.000	315	218	073	0.000	1.000

What is written is shaped by the reference client parser (pyhetdex ``FPlane``),
which every reduction pipeline uses: it crashes on a blank line, on an indented
comment and on a row without exactly 8 fields, looks seats up by exact 3-digit
strings and does not skip the 000 / LRS2 / HPF rows by itself.  So a rendered
file has ``#`` only in column 0, no blank lines, exactly 8 TAB-separated fields,
zero-padded ids, and always the 000 row.

What is read is whatever people have used over the years (see domain.md,
"Real-world variants an importer meets"): the importer accepts those variants,
never raises, and reports every oddity it normalised as a note, so nothing is
changed silently.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from wsgi.plaintext import plural as _plural

__all__ = [
    "Row", "ParsedFile",
    "GRID_SLOTS", "LRS2_SLOTS", "ALWAYS_EMPTY_SLOTS", "VIRUS_SLOTS",
    "KNOWN_SPECIAL_SLOTS", "REFERENCE_SLOT", "REFERENCE_ROW", "COLUMN_HEADER",
    "ROW_FORMAT", "POSITION_TOLERANCE", "PLACEHOLDER_ID_MIN",
    "nominal_position", "is_grid_slot", "parse_fplane", "render_fplane",
    "render_row", "canonical_order", "with_positions",
    "render_header", "served_rows", "parse_static_rows", "empty_seat_row",
]


# --------------------------------------------------------------------------
# Constants of the instrument

COLUMN_HEADER = "# IFUSLOT X_FP   Y_FP   SPECID SPECSLOT IFUID IFUROT  PLATESC"
ROW_FORMAT = "%03d\t%8.3f\t%8.3f\t%03d\t%03d\t%03d\t%5.3f\t%5.3f"
_COLUMN_NAMES = ("IFUSLOT", "X_FP", "Y_FP", "SPECID", "SPECSLOT", "IFUID",
                 "IFUROT", "PLATESC")

GRID_SLOTS: tuple[int, ...] = (
    tuple(range(13, 17)) + tuple(range(21, 29)) + tuple(range(30, 90))
    + tuple(range(91, 99)) + tuple(range(103, 107)))
LRS2_SLOTS = (56, 66)
ALWAYS_EMPTY_SLOTS = (54, 55, 64, 65)
VIRUS_SLOTS: tuple[int, ...] = tuple(
    s for s in GRID_SLOTS if s not in LRS2_SLOTS and s not in ALWAYS_EMPTY_SLOTS)
# Non-grid rows the domain knows of (HRS / HPF fibre bundles, ids 901-913).
# Others are kept too (a site may add bundles) but the importer mentions them.
KNOWN_SPECIAL_SLOTS: tuple[int, ...] = (555,) + tuple(range(600, 605)) + tuple(range(610, 617))
REFERENCE_SLOT = 0

# Ids >= 900 are placeholders (reference row, LRS2, HPF/HRS): clients such as
# elixer drop them, and they repeat by design, so they are never "duplicates".
PLACEHOLDER_ID_MIN = 900
# Rendered with 3 decimals: anything closer to nominal than half the last digit
# is the nominal value written out.
POSITION_TOLERANCE = 0.0005

_GRID_SET = frozenset(GRID_SLOTS)
_VIRUS_SET = frozenset(VIRUS_SLOTS)
_KNOWN_SPECIAL_SET = frozenset(KNOWN_SPECIAL_SLOTS)
# Full-file order: 000, grid without LRS2, LRS2 B then R, then specials by seat.
_GRID_WITHOUT_LRS2 = tuple(s for s in GRID_SLOTS if s not in LRS2_SLOTS)
_FULL_GRID_ORDER = _GRID_WITHOUT_LRS2 + LRS2_SLOTS
_ORDER_RANK = {REFERENCE_SLOT: 0}
_ORDER_RANK.update((s, i + 1) for i, s in enumerate(_FULL_GRID_ORDER))
_SPECIAL_RANK_BASE = len(_ORDER_RANK)  # specials sort after, by seat number


@dataclass(frozen=True, slots=True)
class Row:
    """One seat of the file.  Ids are integers; rendering zero-pads them."""
    ifuslot: int      # IHMP seat, 0..999 (rendered %03d)
    x: float          # arcsec
    y: float
    specid: int       # 0 = no spectrograph
    specslot: int
    ifuid: int
    ifurot: float = 0.0
    platesc: float = 1.0
    active: bool = True   # False: commented out in the full file, absent from the short one

    def __post_init__(self):
        # Checked here, once, because "%03d" % 1000 or "%8.3f" % nan would be
        # rendered without complaint and break every client's exact lookups.
        for name in ("ifuslot", "specid", "specslot", "ifuid"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Row.{name} must be an int, not {value!r}")
            if not 0 <= value <= 999:
                raise ValueError(f"Row.{name} must be within 0..999, not {value!r}")
        for name in ("x", "y", "ifurot", "platesc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Row.{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"Row.{name} must be finite, not {value!r}")


REFERENCE_ROW = Row(0, 0.0, 0.0, 900, 900, 900, 0.0, 1.0, True)


@dataclass(frozen=True)
class ParsedFile:
    rows: tuple[Row, ...]     # canonical order, one per seat
    notes: tuple[str, ...]    # oddities found and how they were read; empty for a clean full file
    errors: tuple[str, ...]   # problems that make the file unusable; rows may then be partial
    # The seats the file itself lists (the rest of rows was filled in); not part of what
    # the file says, so not compared.
    listed: frozenset[int] = field(default=frozenset(), compare=False)


def nominal_position(ifuslot: int) -> tuple[float, float]:
    """Nominal centre of a seat, arcsec.  Only meaningful for grid seats."""
    col, row = divmod(ifuslot, 10)
    return (float(-550 + 100 * col), float(450 - 100 * row))


def is_grid_slot(ifuslot: int) -> bool:
    return ifuslot in _GRID_SET


def _order_key(row: Row) -> tuple[int, int]:
    rank = _ORDER_RANK.get(row.ifuslot)
    if rank is None:
        return (_SPECIAL_RANK_BASE, row.ifuslot)
    return (rank, 0)


def canonical_order(rows: Iterable[Row]) -> tuple[Row, ...]:
    """Rows in full-file order: 000, grid seats except LRS2, 056, 066, specials."""
    return tuple(sorted(rows, key=_order_key))


def with_positions(rows: Iterable[Row],
                   positions: Mapping[int, tuple[float, float]]) -> tuple[Row, ...]:
    """Rows with x/y replaced for the seats in ``positions``; order kept.

    Seats in ``positions`` that are not in ``rows`` are ignored: a measurement
    does not create a seat.
    """
    out = []
    for r in rows:
        pos = positions.get(r.ifuslot)
        if pos is None:
            out.append(r)
        else:
            x, y = pos
            out.append(Row(r.ifuslot, float(x), float(y), r.specid, r.specslot,
                           r.ifuid, r.ifurot, r.platesc, r.active))
    return tuple(out)


# --------------------------------------------------------------------------
# Rendering

_INACTIVE_FORMAT = "#" + ROW_FORMAT


def render_row(row: Row) -> str:
    """One line, no newline; ``#013\\t...`` (no space) when the row is inactive."""
    fmt = ROW_FORMAT if row.active else _INACTIVE_FORMAT
    return fmt % (row.ifuslot, row.x, row.y, row.specid, row.specslot,
                  row.ifuid, row.ifurot, row.platesc)


# A full file lists every grid seat; one missing from ``rows`` is an empty seat.
_EMPTY_SEAT_ROWS = {
    s: Row(s, *nominal_position(s), 0, 0, 0, 0.0, 1.0, False) for s in GRID_SLOTS}
_REFERENCE_TEXT = " ".join(render_row(REFERENCE_ROW).split())  # for notes


def empty_seat_row(seat: int) -> Row:
    """The row of an empty grid seat: nominal position, ids 000, inactive (one shared
    object per seat: rows are immutable)."""
    return _EMPTY_SEAT_ROWS[seat]


def _header_comment(text) -> str:
    # Any line break (including the ones str.splitlines knows besides CR/LF,
    # which some clients split on) would let header text start a data row.
    one_line = " ".join(str(text).splitlines())
    # "# 013 -450 150 ..." would be read back as a commented-out seat by the
    # importer, so such text is marked as a plain comment.
    if _commented_row_fields(one_line) is not None:
        return "# (comment) " + one_line
    return "# " + one_line


def _commented_row_fields(text: str):
    fields = text.strip().lstrip("#").split()
    if len(fields) == 8 and _ID_RE.match(fields[0]):
        if _parse_fields(fields)[2] is None:
            return fields
    return None


def asked_line(instant: str, datestr: str | None) -> str:
    """The first header line of a served file: the instant it answers (ISO 8601 UTC) and
    the date as it was asked for. A client that reuses a file for another instant of its
    validity writes this line for that instant (wsgi/client.py)."""
    return (f"fplane file of the HET/VIRUS focal plane at {instant}"
            + (f" (asked for: {datestr})" if datestr else ""))


def render_header(header_lines: Iterable[str]) -> str:
    """The comment lines that open a file, each ``# text`` and newline-terminated.

    ``render_header(h) + render_fplane(rows, (), full) == render_fplane(rows, h, full)``,
    so a file kept for its validity interval can be given the first header line of
    another instant of that interval (wsgi/client.py restates what it kept).
    """
    if isinstance(header_lines, str):
        header_lines = header_lines.splitlines()
    return "".join(_header_comment(h) + "\n" for h in header_lines)


def render_fplane(rows: Iterable[Row], header_lines: Iterable[str], full: bool) -> str:
    """The file as served (contract.md section 4, domain.md "Full and short files"):
    header comments, the column header, then the rows ``served_rows`` picks, in its order.
    Raises ValueError when a seat appears twice in ``rows``.
    """
    lines = [render_header(header_lines) + COLUMN_HEADER]
    lines.extend(map(render_row, served_rows(rows, full)))
    lines.append("")  # exactly one trailing newline
    return "\n".join(lines)


def _by_slot(rows: Iterable[Row]) -> dict[int, Row]:
    by_slot: dict[int, Row] = {}
    for r in rows:
        if r.ifuslot in by_slot:
            raise ValueError(f"seat {r.ifuslot:03d} is given twice")
        by_slot[r.ifuslot] = r
    return by_slot


def served_rows(rows: Iterable[Row], full: bool) -> tuple[Row, ...]:
    """The rows a served file holds, in file order (the one place these rules live).

    Full: 000, the 82 non-LRS2 grid seats in seat order (inactive ones stay, to be
    commented out; a seat missing from ``rows`` is an empty one), 056, 066, then every
    other row by seat number.  Short: 000 and the active VIRUS seats.  The 000 row is
    always there and active (clients need it): REFERENCE_ROW when ``rows`` has none.
    Raises ValueError when a seat appears twice.
    """
    by_slot = _by_slot(rows)
    reference = by_slot.get(REFERENCE_SLOT, REFERENCE_ROW)
    out = [reference if reference.active else replace(reference, active=True)]
    if full:
        out.extend(by_slot.get(s) or _EMPTY_SEAT_ROWS[s] for s in _FULL_GRID_ORDER)
        out.extend(by_slot[s] for s in sorted(by_slot)
                   if s != REFERENCE_SLOT and s not in _GRID_SET)
    else:
        out.extend(by_slot[s] for s in VIRUS_SLOTS if s in by_slot and by_slot[s].active)
    return tuple(out)


# --------------------------------------------------------------------------
# Parsing (the importer)

# ASCII only: str.isdigit() and float() accept other scripts' digits, "1_000",
# "nan" and "infinity", none of which belongs in a file clients read.
_ID_RE = re.compile(r"[0-9]{1,3}\Z")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_NON_FINITE_RE = re.compile(r"[+-]?(?:nan|inf|infinity)\Z", re.IGNORECASE)
_ID_COLUMNS = (0, 3, 4, 5)
_FLOAT_COLUMNS = (1, 2, 6, 7)

# A hostile or broken file must not make an import answer megabytes of text.
_MAX_MESSAGES = 100
_MAX_LISTED = 10


def _parse_fields(fields):
    """8 fields -> (values, short_ids, None) or (None, None, problem)."""
    if len(fields) != 8:
        return None, None, f"has {len(fields)} fields, expected 8 ({' '.join(_COLUMN_NAMES)})"
    values = [None] * 8
    short_ids = []
    for i in _ID_COLUMNS:
        tok = fields[i]
        if not _ID_RE.match(tok):
            return None, None, f"{_COLUMN_NAMES[i]} {_quote(tok)} is not an id of 1 to 3 digits"
        if len(tok) < 3:
            short_ids.append((_COLUMN_NAMES[i], tok))
        values[i] = int(tok)
    for i in _FLOAT_COLUMNS:
        tok = fields[i]
        if _NON_FINITE_RE.match(tok):
            return None, None, f"{_COLUMN_NAMES[i]} {_quote(tok)} is not a finite number"
        if not _FLOAT_RE.match(tok):
            return None, None, f"{_COLUMN_NAMES[i]} {_quote(tok)} is not a number"
        value = float(tok)
        if not math.isfinite(value):
            return None, None, f"{_COLUMN_NAMES[i]} {_quote(tok)} is not a finite number"
        values[i] = value
    return values, short_ids, None


def _quote(text: str, limit: int = 40) -> str:
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


def _seat_list(items) -> str:
    """'013 (line 7), 014 (line 8), ... and 3 more' from (seat, line) pairs."""
    items = list(items)
    shown = ", ".join(f"{s:03d} (line {n})" for s, n in items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", and {len(items) - _MAX_LISTED} more"
    return shown


def _lines_of(seat_entries) -> str:
    return ", ".join(str(e[0]) for e in seat_entries)


def _capped(messages: list[str]) -> tuple[str, ...]:
    if len(messages) <= _MAX_MESSAGES:
        return tuple(messages)
    return tuple(messages[:_MAX_MESSAGES]) + (
        f"... and {len(messages) - _MAX_MESSAGES} more not shown",)


def parse_fplane(text: str, complete: bool = True) -> ParsedFile:
    """Read any real-world variant of the file; never raises.

    Notes say what was odd and how it was read; errors say why the file
    cannot be used.  See the module docstring and domain.md.  With
    ``complete=False`` the rows are only those the file lists (a measured
    position set): no 000 row or empty grid seats are added.
    """
    try:
        return _parse(text, complete=complete)[0]
    except Exception as exc:  # pragma: no cover - a bug must not crash an import
        return ParsedFile((), (), (f"internal error while parsing: {exc!r}",))


def parse_static_rows(text: str) -> tuple[tuple[Row, ...], tuple[str, ...]]:
    """Read the site's special rows file ([Site] static_rows) -> (rows, problems).

    Same format as an fplane file, holding only the rows a hardware status does
    not carry: 000, LRS2 (056, 066) and non-grid seats.  A VIRUS or always-empty
    grid seat in it is a problem (those come from the status), as is anything
    parse_fplane calls an error.  The 000 row is added when missing.  Never raises.
    """
    try:
        parsed, line_of = _parse(text, complete=False)
    except Exception as exc:  # pragma: no cover - a bug must not stop start-up obscurely
        return (REFERENCE_ROW,), (f"internal error while parsing: {exc!r}",)
    problems = list(parsed.errors)
    rows = []
    grid_seats = []
    for r in parsed.rows:
        s = r.ifuslot
        if s == REFERENCE_SLOT or s in LRS2_SLOTS or s not in _GRID_SET:
            rows.append(r)
        else:
            grid_seats.append((s, line_of[s]))
    if grid_seats:
        problems.insert(0, f"{_plural(len(grid_seats), 'VIRUS grid seat')} listed, but the static "
                           f"rows file holds only 000, 056, 066 and non-grid seats (grid seats "
                           f"come from the hardware status): {_seat_list(grid_seats)}")
    if not any(r.ifuslot == REFERENCE_SLOT for r in rows):
        rows.append(REFERENCE_ROW)
    return canonical_order(rows), _capped(problems)


def _split_lines(text: str) -> list[str]:
    # Universal newlines, as Python's open() gives pyhetdex: \n, \r\n and \r.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it is no blank line
    return lines


def _parse(text, complete: bool) -> tuple[ParsedFile, dict[int, int]]:
    """-> (the parsed file, seat -> line number of the row kept).

    ``complete``: add the 000 row and the unlisted grid seats (a whole file);
    off for the static rows file, which lists special rows only.
    """
    text, problem = _as_text(text)
    if problem is not None:
        return ParsedFile((), (), (problem,)), {}
    notes: list[str] = []
    errors: list[str] = []
    entries = _scan_lines(text, notes, errors)
    if not entries:
        if not errors:
            errors.append("no data rows: the file is empty or holds only comments")
        return ParsedFile((), _capped(notes), _capped(errors)), {}
    chosen = _choose_rows(entries, notes, errors)
    _note_odd_rows(chosen, notes)
    rows = [r for _, r in chosen.values()]
    if complete and not errors:
        # Completing the file is only meaningful when it could be read.
        _complete(rows, chosen, notes)
    line_of = {seat: lineno for seat, (lineno, _) in chosen.items()}
    return (ParsedFile(canonical_order(rows), _capped(notes), _capped(errors), frozenset(line_of)),
            line_of)


def _as_text(text) -> tuple[str | None, str | None]:
    """The input as text without a BOM -> (text, None), or (None, the error)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if not isinstance(text, str):
        return None, f"expected text, got {type(text).__name__}"
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


# A row as read: (line number, the 8 values, whether it was commented out).
_Entry = tuple[int, list, bool]


def _scan_lines(text: str, notes: list[str], errors: list[str]) -> dict[int, list[_Entry]]:
    """Every row of the file -> seat -> its rows, seats in the order first seen.

    Comment lines are skipped; a line that is neither a comment nor a row is an
    error; blank lines and short ids are noted once for the whole file.
    """
    blank_lines: list[int] = []
    short_id_rows: list[tuple[int, int, str, str]] = []   # line, seat, column, token
    entries: dict[int, list[_Entry]] = {}

    for lineno, line in enumerate(_split_lines(text), 1):
        stripped = line.strip()
        if not stripped:
            blank_lines.append(lineno)
            continue
        commented = stripped.startswith("#")
        fields = (stripped.lstrip("#") if commented else stripped).split()
        if commented and not (fields and _ID_RE.match(fields[0])):
            continue  # a header or comment line: "# $Id$", "##IFUSLOT ...", "#"
        values, short_ids, problem = _parse_fields(fields)
        if problem is not None:
            if commented:
                # "# 13 IFUs retired" is a comment; only text close to a row is
                # worth mentioning.
                if len(fields) >= 6:
                    notes.append(f"line {lineno}: a comment that looks like a commented-out "
                                 f"row but {problem}; ignored as a comment")
                continue
            seat = f" (seat {_quote(fields[0])})" if fields else ""
            errors.append(f"line {lineno}{seat}: row {problem}: {_quote(stripped, 80)}")
            continue
        seat = values[0]
        if short_ids:
            column, tok = short_ids[0]  # one example per row is enough
            short_id_rows.append((lineno, seat, column, tok))
        if commented and values[3] != 0 and seat != REFERENCE_SLOT:
            notes.append(f"line {lineno}: seat {seat:03d} is commented out but has SPECID "
                         f"{values[3]:03d}; kept as given (inactive, SPECID kept)")
        entries.setdefault(seat, []).append((lineno, values, commented))

    if blank_lines:
        where = ", ".join(str(n) for n in blank_lines[:_MAX_LISTED])
        if len(blank_lines) > _MAX_LISTED:
            where += f", and {len(blank_lines) - _MAX_LISTED} more"
        notes.append(f"{_plural(len(blank_lines), 'blank line')} skipped "
                     f"(line{'s' if len(blank_lines) > 1 else ''} {where})")
    if short_id_rows:
        lineno, seat, column, tok = short_id_rows[0]
        columns = sorted({c for _, _, c, _ in short_id_rows}, key=_COLUMN_NAMES.index)
        notes.append(f"{_plural(len(short_id_rows), 'row')} write ids with fewer than 3 digits "
                     f"({', '.join(columns)}; first: line {lineno}, seat {seat:03d}, "
                     f"{column} {tok!r}); read as integers ('00' is 000)")
    return entries


def _choose_rows(entries: dict[int, list[_Entry]], notes: list[str],
                 errors: list[str]) -> dict[int, tuple[int, Row]]:
    """One row per seat -> seat -> (line, Row), in the order of ``entries``."""
    chosen: dict[int, tuple[int, Row]] = {}
    uncommented_empty: list[tuple[int, int]] = []
    for seat, seat_entries in entries.items():
        lineno, values, active = _pick_entry(seat, seat_entries, notes, errors)
        if seat == REFERENCE_SLOT and not active:
            active = True
            notes.append(f"line {lineno}: the reference row 000 is commented out; read as "
                         f"active (every served file carries it)")
        elif active and values[3] == 0 and seat in _GRID_SET:
            # The "full_uncommented" variant marks an inactive seat by SPECID 000 alone.
            active = False
            uncommented_empty.append((seat, lineno))
        chosen[seat] = (lineno, Row(*values, active))

    if uncommented_empty:
        notes.append(f"{len(uncommented_empty)} seat{'s' if len(uncommented_empty) > 1 else ''} "
                     f"with SPECID 000 {'were' if len(uncommented_empty) > 1 else 'was'} not "
                     f"commented out; read as inactive: {_seat_list(uncommented_empty)}")
    return chosen


def _pick_entry(seat: int, seat_entries: list[_Entry], notes: list[str],
                errors: list[str]) -> tuple[int, list, bool]:
    """The row a seat listed more than once keeps -> (line, values, active as written)."""
    uncommented = [e for e in seat_entries if not e[2]]
    commented = [e for e in seat_entries if e[2]]
    if len(uncommented) > 1:
        errors.append(f"seat {seat:03d} has {len(uncommented)} uncommented rows "
                      f"(lines {_lines_of(uncommented)}); a seat holds one IFU")
        lineno, values, _ = uncommented[0]
        return lineno, values, True
    if uncommented:
        lineno, values, _ = uncommented[0]
        if commented:
            notes.append(f"seat {seat:03d} is listed on line {lineno} and commented out on "
                         f"line{'s' if len(commented) > 1 else ''} {_lines_of(commented)}; "
                         f"kept the uncommented row (line {lineno})")
        return lineno, values, True
    lineno, values, _ = commented[0]
    if len(commented) > 1:
        notes.append(f"seat {seat:03d} is commented out on lines {_lines_of(commented)}; "
                     f"kept the first (line {lineno})")
    return lineno, values, False


def _note_odd_rows(chosen, notes):
    """Notes on what the chosen rows hold that real files rarely do; all is kept as given,
    but nothing passes unsaid."""
    _note_reference_row(chosen, notes)
    _note_unknown_specials(chosen, notes)
    _note_shared_ids(chosen, notes)
    _note_positions(chosen, notes)
    _note_optics(chosen, notes)


def _note_reference_row(chosen, notes):
    ref = chosen.get(REFERENCE_SLOT)
    if ref is not None and ref[1] != REFERENCE_ROW:
        notes.append(f"line {ref[0]}: the reference row 000 differs from the usual "
                     f"'{_REFERENCE_TEXT}'; kept as given")


def _note_unknown_specials(chosen, notes):
    for seat in sorted(chosen):
        if seat != REFERENCE_SLOT and seat not in _GRID_SET and seat not in _KNOWN_SPECIAL_SET:
            notes.append(f"line {chosen[seat][0]}: seat {seat:03d} is neither a grid seat nor "
                         f"a known special row (555, 600-604, 610-616); kept as a site-defined "
                         f"special row")


def _note_shared_ids(chosen, notes):
    # Historical files do show one spectrograph on two seats; that is kept
    # (it is what was in use) but must not pass unnoticed.
    for attr, name in (("specid", "SPECID"), ("ifuid", "IFUID")):
        users: dict[int, list[tuple[int, int]]] = {}
        for seat in sorted(chosen):
            lineno, r = chosen[seat]
            value = getattr(r, attr)
            if r.active and 0 < value < PLACEHOLDER_ID_MIN:
                users.setdefault(value, []).append((seat, lineno))
        for value in sorted(users):
            seats = users[value]
            if len(seats) > 1:
                notes.append(f"{name} {value:03d} is used by {len(seats)} active seats, kept "
                             f"as given: {_seat_list(seats)}")


def _note_positions(chosen, notes):
    off = []
    for seat in sorted(chosen):
        if seat in _GRID_SET:
            lineno, r = chosen[seat]
            nx, ny = nominal_position(seat)
            dx, dy = r.x - nx, r.y - ny
            if abs(dx) > POSITION_TOLERANCE or abs(dy) > POSITION_TOLERANCE:
                off.append((math.hypot(dx, dy), seat, lineno))
    if off:
        dist, seat, lineno = max(off)
        notes.append(f"{_plural(len(off), 'grid seat')} {'has' if len(off) == 1 else 'have'} "
                     f"non-nominal positions, up to {dist:.3f} arcsec (seat {seat:03d}, line "
                     f"{lineno}): these look like measured positions")


def _note_optics(chosen, notes):
    odd_optics = [(s, n) for s, (n, r) in sorted(chosen.items())
                  if r.ifurot != 0.0 or r.platesc != 1.0]
    if odd_optics:
        verb = "has" if len(odd_optics) == 1 else "have"
        notes.append(f"{_plural(len(odd_optics), 'row')} {verb} IFUROT other than 0 or "
                     f"PLATESC other than 1, kept as given (real files always have 0.000 "
                     f"and 1.000): {_seat_list(odd_optics)}")


def _complete(rows: list[Row], chosen, notes):
    """Add to ``rows`` what a whole file has but this one does not list: the 000 row
    and the grid seats (as empty ones)."""
    if REFERENCE_SLOT not in chosen:
        rows.append(REFERENCE_ROW)
        notes.append(f"seat 000: no reference row; added the standard one "
                     f"'{_REFERENCE_TEXT}'")
    missing = [s for s in GRID_SLOTS if s not in chosen]
    if missing:
        rows.extend(_EMPTY_SEAT_ROWS[s] for s in missing)
        listed = ", ".join(f"{s:03d}" for s in missing[:_MAX_LISTED])
        if len(missing) > _MAX_LISTED:
            listed += f", and {len(missing) - _MAX_LISTED} more"
        verb = "is" if len(missing) == 1 else "are"
        notes.append(f"{_plural(len(missing), 'grid seat')} {verb} not listed ({listed}); "
                     f"added as empty inactive seats at nominal positions: this looks "
                     f"like a short file")
    if not any(r.active and r.ifuslot in _VIRUS_SET for r in rows):
        notes.append("no active VIRUS IFU in the file")
