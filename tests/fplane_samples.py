"""Sample fplane configurations and files for tests, built from the grid formula.

Tests never read the real files in the repository; they build their own here:

- ``make_rows(...)``: a configuration as the parser should return it (one Row
  per seat, full-file order).
- ``full_commented_text``, ``full_uncommented_text``, ``short_text``,
  ``hand_edited_text``, ``pyhetdex_style_text``: the same configuration written in
  each real-world variant of the file (domain.md "Real-world variants").  They
  format rows themselves (f-strings), not through wsgi.fplane, so they check the
  renderer instead of repeating it.
- ``strict_fplane_parse``: a parser as strict as the clients' pyhetdex FPlane,
  to prove that what the server writes is readable by them.
"""
from __future__ import annotations

import io
import json
from dataclasses import replace
import math
from typing import Iterable, Mapping

from wsgi.fplane import (
    GRID_SLOTS,
    LRS2_SLOTS,
    REFERENCE_ROW,
    VIRUS_SLOTS,
    Row,
)

COLUMNS_LINE = "# IFUSLOT X_FP   Y_FP   SPECID SPECSLOT IFUID IFUROT  PLATESC"
PYHETDEX_COLUMNS_LINE = "##IFUSLOT X_FP   Y_FP   SPECID SPECSLOT IFUID IFUROT PLATESC"
SVN_HEADER = ("# $Id$", "# $Revision$", "# $Author$", "# $Date$")


def grid_position(slot: int) -> tuple[float, float]:
    """The nominal seat centre, written out here independently of wsgi.fplane."""
    return (-550.0 + 100 * (slot // 10), 450.0 - 100 * (slot % 10))


# The 13 site special rows (HRS / HPF bundles) with placeholder ids 901-913.
# Positions are made up (1 decimal, so the hand-edited variant writes them exactly).
SPECIAL_SLOTS = (555, 600, 601, 602, 603, 604, 610, 611, 612, 613, 614, 615, 616)
SPECIAL_ROWS: tuple[Row, ...] = tuple(
    Row(slot, -20.5 - 3 * i, 12.5 - 2 * i, 901 + i, 901 + i, 901 + i)
    for i, slot in enumerate(SPECIAL_SLOTS))
LRS2_ROWS: tuple[Row, ...] = (
    Row(56, *grid_position(56), 998, 998, 998),
    Row(66, *grid_position(66), 999, 999, 999),
)


def default_active() -> dict[int, tuple[int, int, int]]:
    """seat -> (specid, specslot, ifuid) for 3 of every 4 VIRUS seats.

    SPECIDs mix 1-2 digit values (like the early units 008, 025) and 3xx ones;
    all ids are unique.
    """
    active = {}
    for i, slot in enumerate(VIRUS_SLOTS):
        if i % 4 == 3:
            continue
        specid = 1 + (13 * i) % 97 if i % 2 == 0 else 300 + i
        active[slot] = (specid, 101 + i, 1 + i)
    return active


def default_installed() -> dict[int, tuple[int, int]]:
    """seat -> (specslot, ifuid): a bundle installed but no spectrograph."""
    return {slot: (201 + i, 101 + i)
            for i, slot in enumerate(VIRUS_SLOTS) if i % 8 == 3}


def expected_order_key(row: Row):
    """Full-file order, spelled out from domain.md independently of the module."""
    s = row.ifuslot
    if s == 0:
        return (0, 0)
    if s in GRID_SLOTS and s not in LRS2_SLOTS:
        return (1, s)
    if s in LRS2_SLOTS:
        return (2, LRS2_SLOTS.index(s))
    return (3, s)


def make_rows(active: Mapping[int, tuple[int, int, int]] | None = None,
              installed: Mapping[int, tuple[int, int]] | None = None,
              specials: Iterable[Row] = SPECIAL_ROWS,
              lrs2: bool = True,
              positions: Mapping[int, tuple[float, float]] | None = None,
              reference: bool = True) -> tuple[Row, ...]:
    """A whole configuration: 000, the 84 grid seats, LRS2, specials.

    Grid seats not in ``active`` / ``installed`` are empty and inactive. ``positions``
    overrides x/y of grid seats (measured positions).
    """
    active = default_active() if active is None else active
    installed = default_installed() if installed is None else installed
    positions = positions or {}
    rows = [REFERENCE_ROW] if reference else []
    for s in GRID_SLOTS:
        x, y = positions.get(s, grid_position(s))
        if lrs2 and s in LRS2_SLOTS:
            r = LRS2_ROWS[LRS2_SLOTS.index(s)]
            rows.append(Row(s, x, y, r.specid, r.specslot, r.ifuid))
        elif s in active:
            rows.append(Row(s, x, y, *active[s]))
        elif s in installed:
            rows.append(Row(s, x, y, 0, *installed[s], active=False))
        else:
            rows.append(Row(s, x, y, 0, 0, 0, active=False))
    rows.extend(specials)
    return tuple(sorted(rows, key=expected_order_key))


def swap_ifus(rows, a, b):
    """The IFU bundles of seats a and b exchange places."""
    ifuid = {r.ifuslot: r.ifuid for r in rows}
    return tuple(replace(r, ifuid=ifuid[{a: b, b: a}[r.ifuslot]]) if r.ifuslot in (a, b) else r
                 for r in rows)


def measured_positions(slots: Iterable[int]) -> dict[int, tuple[float, float]]:
    """Small made-up astrometric offsets (up to about 0.45") for some seats."""
    out = {}
    for k, s in enumerate(slots):
        if k % 3 == 1:
            continue  # a seat without a measurement keeps its nominal position
        x, y = grid_position(s)
        dx, dy = ((k * 37) % 91 - 45) / 100, ((k * 53) % 83 - 41) / 100
        out[s] = (round(x + dx, 3), round(y + dy, 3))
    return out


# --------------------------------------------------------------------------
# Writers, one per real-world variant

def server_line(r: Row, commented: bool | None = None) -> str:
    commented = (not r.active) if commented is None else commented
    return (f"{'#' if commented else ''}{r.ifuslot:03d}\t{r.x:8.3f}\t{r.y:8.3f}\t"
            f"{r.specid:03d}\t{r.specslot:03d}\t{r.ifuid:03d}\t{r.ifurot:5.3f}\t{r.platesc:5.3f}")


def _join(lines: Iterable[str], newline: str = "\n", bom: bool = False) -> str:
    return ("\ufeff" if bom else "") + "".join(line + newline for line in lines)


def full_commented_text(rows: Iterable[Row], newline: str = "\n", bom: bool = False,
                        header: Iterable[str] = SVN_HEADER) -> str:
    """As the original server wrote it (fixture full_commented.txt)."""
    rows = sorted(rows, key=expected_order_key)
    return _join([*header, COLUMNS_LINE, *(server_line(r) for r in rows)], newline, bom)


def full_uncommented_text(rows: Iterable[Row]) -> str:
    """Inactive seats not commented out, only SPECID 000 (fixture full_uncommented.txt)."""
    rows = sorted(rows, key=expected_order_key)
    for r in rows:
        assert r.active or r.specid == 0, "an inactive row written uncommented needs SPECID 0"
    return _join([*SVN_HEADER, COLUMNS_LINE, *(server_line(r, commented=False) for r in rows)])


def short_text(rows: Iterable[Row], header: Iterable[str] = SVN_HEADER) -> str:
    """000 and the active VIRUS seats only (fixture short_actual_positions.txt)."""
    rows = sorted(rows, key=expected_order_key)
    keep = [r for r in rows if r.ifuslot == 0 or (r.active and r.ifuslot in VIRUS_SLOTS)]
    return _join([*header, COLUMNS_LINE, *(server_line(r) for r in keep)])


def short_expected(rows: Iterable[Row]) -> tuple[Row, ...]:
    """What parsing short_text(rows) must give: the rest of the grid empty and
    inactive at nominal positions, no LRS2 and no specials."""
    rows = tuple(rows)
    active = {r.ifuslot: (r.specid, r.specslot, r.ifuid)
              for r in rows if r.active and r.ifuslot in VIRUS_SLOTS}
    positions = {r.ifuslot: (r.x, r.y) for r in rows if r.ifuslot in active}
    return make_rows(active=active, installed={}, specials=(), lrs2=False, positions=positions)


def hand_edited_text(rows: Iterable[Row]) -> str:
    """Space separated, 1-decimal floats, `00` SPECID, `# 013` comments collected
    at the end: how people edited the file by hand."""
    rows = sorted(rows, key=expected_order_key)

    def line(r: Row) -> str:
        specid = "00" if r.specid == 0 else f"{r.specid:03d}"
        return (f"{r.ifuslot:03d} {r.x:.1f} {r.y:.1f} {specid} {r.specslot:03d} "
                f"{r.ifuid:03d} {r.ifurot:.1f} {r.platesc:.1f}")

    active = [line(r) for r in rows if r.active]
    inactive = ["# " + line(r) for r in rows if not r.active]
    return _join(["# IFUSLOT X_FP Y_FP SPECID SPECSLOT IFUID IFUROT PLATESC",
                  *active, "# no spectrograph on these:", *inactive])


def pyhetdex_style_text(rows: Iterable[Row]) -> str:
    """Like pyhetdex's test data (fixture parser_testdata.txt): `##IFUSLOT`, no
    000 row, only the 78 VIRUS seats, uncommented, 2-digit SPECIDs, 1 decimal."""
    by_slot = {r.ifuslot: r for r in rows}
    lines = [PYHETDEX_COLUMNS_LINE]
    for s in VIRUS_SLOTS:
        r = by_slot[s]
        lines.append(f"{s:03d}\t{r.x:.1f}\t{r.y:.1f}\t{r.specid:02d}\t{r.specslot:03d}\t"
                     f"{r.ifuid:03d}\t{r.ifurot:.1f}\t{r.platesc:.1f}")
    return _join(lines)


# --------------------------------------------------------------------------
# The clients' view

class StrictParseError(ValueError):
    pass


def strict_fplane_parse(text: str) -> dict[str, tuple]:
    """Parse like pyhetdex's FPlane, and fail wherever it would crash or mislead.

    Lines are read with universal newlines (as ``open()`` gives them to
    pyhetdex).  A line starting with ``#`` in column 0 is skipped; any other line
    must ``split()`` into exactly 8 fields (a blank line is a failure: pyhetdex
    crashes on it with IndexError), with IFUSLOT, SPECID, SPECSLOT and IFUID as
    3-digit strings (pyhetdex looks seats and IFUs up by exact strings) and
    finite floats elsewhere.  Stricter than pyhetdex: a seat listed twice fails
    (pyhetdex would silently keep the last).

    Returns IFUSLOT string -> (x, y, specid, specslot, ifuid, ifurot, platesc),
    with specid / specslot as int and ifuid as a string, as pyhetdex stores them.
    """
    seats: dict[str, tuple] = {}
    for lineno, line in enumerate(io.StringIO(text, newline=None), 1):
        if line.startswith("#"):
            continue
        params = line.strip("\n").strip().split()
        if not params:
            raise StrictParseError(f"line {lineno}: blank line (pyhetdex: IndexError)")
        if len(params) != 8:
            raise StrictParseError(f"line {lineno}: {len(params)} fields, expected 8: {line!r}")
        ifuslot, x, y, specid, specslot, ifuid, ifurot, platesc = params
        for name, value in (("IFUSLOT", ifuslot), ("SPECID", specid),
                            ("SPECSLOT", specslot), ("IFUID", ifuid)):
            if len(value) != 3 or not all(c in "0123456789" for c in value):
                raise StrictParseError(f"line {lineno}: {name} {value!r} is not a 3-digit string")
        floats = []
        for name, value in (("X_FP", x), ("Y_FP", y), ("IFUROT", ifurot), ("PLATESC", platesc)):
            try:
                f = float(value)
            except ValueError:
                raise StrictParseError(f"line {lineno}: {name} {value!r} is not a float") from None
            if not math.isfinite(f):
                raise StrictParseError(f"line {lineno}: {name} {value!r} is not finite")
            floats.append(f)
        if ifuslot in seats:
            raise StrictParseError(f"line {lineno}: seat {ifuslot} listed twice")
        seats[ifuslot] = (floats[0], floats[1], int(specid), int(specslot), ifuid,
                          floats[2], floats[3])
    return seats


# --------------------------------------------------------------------------
# Hardware statuses as the TCS posts them (contract section 5)

def entry(seat: int, specid: int, specslot: int, ifuid: int) -> dict:
    """One spectrographs[] entry, zero-padded strings as in the contract's example."""
    return {"specid": f"{specid:03d}", "specslot": f"{specslot:03d}",
            "ifuslot": f"{seat:03d}", "ifuid": f"{ifuid:03d}"}


def status_from_rows(rows: Iterable[Row], timestamp: str) -> dict:
    """The hardware status describing ``rows``: every VIRUS seat with a
    spectrograph or a bundle is listed, empty seats are not."""
    return {"timestamp": timestamp,
            "spectrographs": [entry(r.ifuslot, r.specid, r.specslot, r.ifuid)
                              for r in rows if r.ifuslot in VIRUS_SLOTS
                              and (r.specid or r.specslot or r.ifuid)]}


def numbered_update_data(n: int, timestamp: str) -> str:
    """The data field of the n-th of many distinct updates: {"config": <status>, "commit":
    true}, make_rows()'s configuration with the SPECSLOT of two seats set from n: n % 1000
    on the first listed seat, 900 + n // 1000 on the second (make_rows' specslots are all
    below 300, so every n differs from the imported version and from every other n).
    Nothing is switched off (never held), no id repeats (no 209)."""
    status = status_from_rows(make_rows(), timestamp)
    entries = status["spectrographs"]
    entries[0]["specslot"] = f"{n % 1000:03d}"
    entries[1]["specslot"] = f"{900 + n // 1000:03d}"
    return json.dumps({"config": status, "commit": True})
