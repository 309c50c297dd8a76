"""The fplane file: domain model, importer and renderer (wsgi/fplane.py).

Reads like domain.md and contract.md sections 4-5: sample files are built in
tests/fplane_samples.py from the grid formula, one per real-world variant.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fplane_samples import (
    COLUMNS_LINE,
    LRS2_ROWS,
    SPECIAL_ROWS,
    SPECIAL_SLOTS,
    StrictParseError,
    default_active,
    expected_order_key,
    full_commented_text,
    full_uncommented_text,
    grid_position,
    hand_edited_text,
    make_rows,
    measured_positions,
    pyhetdex_style_text,
    server_line,
    short_expected,
    short_text,
    strict_fplane_parse,
)
from wsgi.fplane import (
    ALWAYS_EMPTY_SLOTS,
    COLUMN_HEADER,
    GRID_SLOTS,
    LRS2_SLOTS,
    REFERENCE_ROW,
    REFERENCE_SLOT,
    VIRUS_SLOTS,
    ParsedFile,
    Row,
    canonical_order,
    is_grid_slot,
    nominal_position,
    parse_fplane,
    parse_static_rows,
    render_fplane,
    render_header,
    render_row,
    served_rows,
    with_positions,
)

FIXTURES = Path("/work/shared/fixtures/fplane")

# contract.md section 4: %03d\t%8.3f\t%8.3f\t%03d\t%03d\t%03d\t%5.3f\t%5.3f
ROW_RE = re.compile(
    r"(?P<slot>[0-9]{3})\t(?P<x> *-?[0-9]+\.[0-9]{3})\t(?P<y> *-?[0-9]+\.[0-9]{3})\t"
    r"[0-9]{3}\t[0-9]{3}\t[0-9]{3}\t(?P<rot> *-?[0-9]+\.[0-9]{3})\t(?P<sc> *-?[0-9]+\.[0-9]{3})")
REFERENCE_LINE = "000\t   0.000\t   0.000\t900\t900\t900\t0.000\t1.000"
N_ACTIVE_VIRUS = len(default_active())          # 59 of the 78 VIRUS seats
N_INACTIVE_VIRUS = len(VIRUS_SLOTS) - N_ACTIVE_VIRUS


def data_lines(text: str) -> list[str]:
    return [line for line in text.split("\n")[:-1] if not line.startswith("#")]


def assert_row_lines(text: str) -> None:
    """Every line is a comment with # in column 0 or a row of the contract's format."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\r" not in text
    for line in text.split("\n")[:-1]:
        assert line, "no blank lines"
        if line.startswith("#"):
            continue
        m = ROW_RE.fullmatch(line)
        assert m, line
        for field in ("x", "y"):
            assert len(m.group(field)) >= 8
        for field in ("rot", "sc"):
            assert len(m.group(field)) >= 5


def seat_list(pairs, limit=10) -> str:
    """The listing used in notes: '013 (line 7), ... and N more'."""
    pairs = list(pairs)
    text = ", ".join(f"{s:03d} (line {n})" for s, n in pairs[:limit])
    if len(pairs) > limit:
        text += f", and {len(pairs) - limit} more"
    return text


def replace_line(text: str, old: str, new: str | None) -> str:
    lines = text.split("\n")
    assert lines.count(old) == 1, old
    i = lines.index(old)
    if new is None:
        del lines[i]
    else:
        lines[i] = new
    return "\n".join(lines)


def row_of(rows, slot) -> Row:
    (row,) = [r for r in rows if r.ifuslot == slot]
    return row


# --------------------------------------------------------------------------
# The instrument

def test_grid_constants():
    assert len(GRID_SLOTS) == 84 and len(set(GRID_SLOTS)) == 84
    assert list(GRID_SLOTS) == sorted(GRID_SLOTS)
    assert GRID_SLOTS[:4] == (13, 14, 15, 16) and GRID_SLOTS[-4:] == (103, 104, 105, 106)
    assert 29 not in GRID_SLOTS and 90 not in GRID_SLOTS and 99 not in GRID_SLOTS
    assert len(VIRUS_SLOTS) == 78
    assert set(VIRUS_SLOTS) == set(GRID_SLOTS) - {54, 55, 56, 64, 65, 66}
    assert LRS2_SLOTS == (56, 66) and ALWAYS_EMPTY_SLOTS == (54, 55, 64, 65)
    assert REFERENCE_SLOT == 0
    assert REFERENCE_ROW == Row(0, 0.0, 0.0, 900, 900, 900, 0.0, 1.0, True)
    assert COLUMN_HEADER == "# IFUSLOT X_FP   Y_FP   SPECID SPECSLOT IFUID IFUROT  PLATESC"


@pytest.mark.parametrize("slot, xy", [
    (13, (-450.0, 150.0)), (21, (-350.0, 350.0)), (56, (-50.0, -150.0)),
    (66, (50.0, -150.0)), (106, (450.0, -150.0)), (30, (-250.0, 450.0))])
def test_nominal_position(slot, xy):
    assert nominal_position(slot) == xy
    assert nominal_position(slot) == grid_position(slot)


def test_is_grid_slot():
    assert all(is_grid_slot(s) for s in GRID_SLOTS)
    assert not any(is_grid_slot(s) for s in (0, 12, 17, 20, 29, 90, 99, 102, 107, 555, 600))


@pytest.mark.parametrize("kwargs, error", [
    ({"ifuslot": 1000}, ValueError), ({"ifuslot": -1}, ValueError),
    ({"specid": 1000}, ValueError), ({"ifuid": "013"}, TypeError),
    ({"specslot": 1.0}, TypeError), ({"ifuslot": True}, TypeError),
    ({"x": float("nan")}, ValueError), ({"y": float("inf")}, ValueError),
    ({"platesc": "1.0"}, TypeError)])
def test_row_refuses_what_cannot_be_rendered(kwargs, error):
    fields = dict(ifuslot=13, x=-450.0, y=150.0, specid=1, specslot=2, ifuid=3)
    fields.update(kwargs)
    with pytest.raises(error):
        Row(**fields)


_ID_FIELDS = ("ifuslot", "specid", "specslot", "ifuid")
_NUMBER_FIELDS = ("x", "y", "ifurot", "platesc")
# Boundaries and wrong types: each is right for some fields and wrong for others.
_ODD_VALUES = st.one_of(
    st.sampled_from([-1, 0, 999, 1000, True, False, None, "013", "1.0", 2 ** 70, 5.0, -0.0,
                     1e308, float("nan"), float("inf"), float("-inf")]),
    st.integers(-3, 1003), st.floats(allow_nan=True, allow_infinity=True))


def _renderable(fields: dict) -> bool:
    """What a Row may hold, said plainly: ids are ints 0..999, the rest finite numbers,
    and a bool is neither."""
    def an_id(v):
        return type(v) is not bool and isinstance(v, int) and 0 <= v <= 999

    def a_number(v):
        return (type(v) is not bool and isinstance(v, (int, float)) and v == v
                and abs(v) != float("inf"))
    return (all(an_id(fields[k]) for k in _ID_FIELDS)
            and all(a_number(fields[k]) for k in _NUMBER_FIELDS))


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_ID_FIELDS + _NUMBER_FIELDS), _ODD_VALUES, max_size=2))
def test_row_accepts_exactly_the_renderable(odd):
    """Row's one-expression fast check lets nothing through that its full check refuses:
    a good row with one or two fields replaced by a boundary or a wrong type."""
    fields = dict(ifuslot=13, x=-450.0, y=150.0, specid=1, specslot=2, ifuid=3, ifurot=0.0,
                  platesc=1.0)
    fields.update(odd)
    try:
        Row(**fields)
    except (TypeError, ValueError):
        accepted = False
    else:
        accepted = True
    assert accepted == _renderable(fields), fields


def test_row_is_frozen_and_hashable():
    r = Row(13, -450.0, 150.0, 1, 2, 3)
    assert r.active and r.ifurot == 0.0 and r.platesc == 1.0
    with pytest.raises(AttributeError):
        r.x = 0.0
    assert len({r, Row(13, -450.0, 150.0, 1, 2, 3)}) == 1


def test_canonical_order():
    rows = list(make_rows())
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    ordered = canonical_order(shuffled)
    assert ordered == tuple(rows)
    slots = [r.ifuslot for r in ordered]
    assert slots[0] == 0
    assert slots[1:83] == [s for s in GRID_SLOTS if s not in (56, 66)]
    assert slots[83:85] == [56, 66]
    assert slots[85:] == sorted(SPECIAL_SLOTS)


def test_with_positions():
    rows = make_rows()
    moved = with_positions(rows, {13: (-449.9, 150.2), 600: (1.0, 2.0), 999: (5.0, 5.0)})
    assert [r.ifuslot for r in moved] == [r.ifuslot for r in rows]
    assert row_of(moved, 13) == Row(13, -449.9, 150.2, *default_active()[13])
    assert (row_of(moved, 600).x, row_of(moved, 600).y) == (1.0, 2.0)
    assert row_of(moved, 600).specid == 902
    assert all(a == b for a, b in zip(rows, moved) if a.ifuslot not in (13, 600))
    assert 999 not in {r.ifuslot for r in moved}, "a measurement does not create a seat"
    with pytest.raises(ValueError):
        with_positions(rows, {13: (float("nan"), 0.0)})


# --------------------------------------------------------------------------
# Rendering

def test_render_row():
    assert render_row(REFERENCE_ROW) == REFERENCE_LINE
    assert render_row(Row(13, -450.0, 150.0, 0, 241, 43, active=False)) == \
        "#013\t-450.000\t 150.000\t000\t241\t043\t0.000\t1.000"
    assert render_row(Row(21, -349.91, 350.21, 315, 218, 73)) == \
        "021\t-349.910\t 350.210\t315\t218\t073\t0.000\t1.000"
    assert render_row(Row(555, 0.7, -73.13, 901, 901, 901)) == \
        "555\t   0.700\t -73.130\t901\t901\t901\t0.000\t1.000"


def test_full_file_layout():
    rows = make_rows()
    text = render_fplane(rows, ["fplane at 2018-07-07T05:00:00Z", "version 3"], full=True)
    lines = text.split("\n")[:-1]
    assert lines[:3] == ["# fplane at 2018-07-07T05:00:00Z", "# version 3", COLUMN_HEADER]
    assert lines[3] == REFERENCE_LINE
    rows_lines = lines[3:]
    # 000 + 82 grid seats + 056/066 + the 13 site specials
    assert len(rows_lines) == 98
    assert rows_lines == [server_line(r) for r in sorted(rows, key=expected_order_key)]
    assert [line.lstrip("#")[:3] for line in rows_lines[1:83]] == \
        [f"{s:03d}" for s in GRID_SLOTS if s not in (56, 66)]
    assert rows_lines[83].startswith("056\t") and rows_lines[84].startswith("066\t")
    assert [line[:3] for line in rows_lines[85:]] == [f"{s:03d}" for s in SPECIAL_SLOTS]
    commented = [line for line in rows_lines if line.startswith("#")]
    assert len(commented) == N_INACTIVE_VIRUS + len(ALWAYS_EMPTY_SLOTS)
    assert all(re.match(r"#[0-9]{3}\t", line) for line in commented), "no space after #"
    assert "#016\t-450.000\t-150.000\t000\t204\t104\t0.000\t1.000" in commented, \
        "an installed bundle keeps SPECSLOT / IFUID"
    assert "#054\t -50.000\t  50.000\t000\t000\t000\t0.000\t1.000" in commented
    assert_row_lines(text)
    assert text == full_commented_text(rows, header=("# fplane at 2018-07-07T05:00:00Z",
                                                     "# version 3"))


def test_short_file_has_000_and_active_virus_seats_only():
    rows = make_rows()
    text = render_fplane(rows, ["short"], full=False)
    assert_row_lines(text)
    lines = text.split("\n")[:-1]
    assert lines[:2] == ["# short", COLUMN_HEADER]
    assert lines[2] == REFERENCE_LINE
    expected = [0] + [s for s in VIRUS_SLOTS if s in default_active()]
    assert [int(line[:3]) for line in lines[2:]] == expected
    assert not any(line.startswith("#") for line in lines[2:]), "no commented rows"
    assert text == short_text(rows, header=["# short"])


def test_000_row_is_always_written():
    rows = [r for r in make_rows() if r.ifuslot != 0]
    for full in (True, False):
        lines = render_fplane(rows, [], full).split("\n")
        assert lines[0] == COLUMN_HEADER and lines[1] == REFERENCE_LINE
    # a reference row that somehow is inactive is still written, uncommented
    odd = [Row(0, 0.0, 0.0, 900, 900, 900, active=False)] + rows
    assert render_fplane(odd, [], True).split("\n")[1] == REFERENCE_LINE
    # with no rows at all: 000, and the full file lists every grid seat as empty
    full = render_fplane([], [], True)
    assert len(data_lines(full)) == 1 and len(full.split("\n")) == 1 + 1 + 84 + 1
    assert render_fplane([], [], False) == COLUMN_HEADER + "\n" + REFERENCE_LINE + "\n"


def test_full_render_fills_missing_grid_seats_as_empty():
    rows = [r for r in make_rows() if r.ifuslot not in (13, 56)]
    text = render_fplane(rows, [], True)
    assert "#013\t-450.000\t 150.000\t000\t000\t000\t0.000\t1.000" in text.split("\n")
    assert "#056\t -50.000\t-150.000\t000\t000\t000\t0.000\t1.000" in text.split("\n")
    assert len(text.split("\n")) == 1 + 98 + 1


def test_zero_and_negative_zero_render_as_written():
    assert "\t   0.000\t" in render_fplane([Row(13, 0.0, 150.0, 1, 1, 1)], [], True)
    assert "\t  -0.000\t" in render_fplane([Row(13, -0.0, 150.0, 1, 1, 1)], [], True)


def test_render_refuses_a_seat_twice():
    rows = list(make_rows()) + [Row(13, 0.0, 0.0, 1, 1, 1)]
    with pytest.raises(ValueError, match="seat 013"):
        render_fplane(rows, [], True)


@pytest.mark.parametrize("full", [True, False])
def test_rendered_files_pass_the_strict_client_parser(full):
    rows = make_rows(positions=measured_positions(VIRUS_SLOTS))
    text = render_fplane(rows, ["a header", "another one"], full)
    seats = strict_fplane_parse(text)
    expected = {f"{r.ifuslot:03d}" for r in rows if r.active
                and (full or r.ifuslot == 0 or r.ifuslot in VIRUS_SLOTS)}
    assert set(seats) == expected
    r21 = row_of(rows, 21)
    assert seats["021"] == (r21.x, r21.y, r21.specid, r21.specslot, f"{r21.ifuid:03d}", 0.0, 1.0)
    assert seats["000"] == (0.0, 0.0, 900, 900, "900", 0.0, 1.0)


@pytest.mark.parametrize("bad", [
    "# h\n000\t0\t0\t900\t900\t900\t0\t1\n\n",                 # blank line
    "000\t0\t0\t900\t900\t900\t0\t1\n \n",                     # whitespace-only line
    " # indented comment\n",                                  # only column 0 is a comment
    "000\t0\t0\t900\t900\t900\t0\n",                           # 7 fields
    "000\t0\t0\t900\t900\t900\t0\t1\t1\n",                     # 9 fields
    "13\t-450\t150\t001\t001\t001\t0\t1\n",                    # 2-digit IFUSLOT
    "013\t-450\t150\t01\t001\t001\t0\t1\n",                    # 2-digit SPECID
    "013\t-450\t150\t001\t001\t001\t0\tnan\n",                 # not finite
    "013\t-450\t150\t001\t001\t001\t0\t1\n013\t0\t0\t002\t002\t002\t0\t1\n",  # seat twice
])
def test_strict_client_parser_fails_like_pyhetdex(bad):
    with pytest.raises(StrictParseError):
        strict_fplane_parse(bad)


@pytest.mark.parametrize("evil", [
    "x\n013\t-450.000\t 150.000\t001\t001\t001\t0.000\t1.000",
    "x\r013\t-450.000\t 150.000\t001\t001\t001\t0.000\t1.000",
    "x\r\n013\t-450.000\t 150.000\t001\t001\t001\t0.000\t1.000\n",
    "x\u2028013\t-450.000\t 150.000\t001\t001\t001\t0.000\t1.000",
    "x\x85\x0b\x0c\x1c013\t-450.000\t 150.000\t001\t001\t001\t0.000\t1.000",
    "\n\n",
])
def test_header_text_cannot_inject_a_line(evil):
    rows = make_rows()
    for full in (True, False):
        text = render_fplane(rows, ["safe", evil], full)
        lines = text.split("\n")
        assert lines[0] == "# safe" and lines[1].startswith("# ") and lines[2] == COLUMN_HEADER
        assert "\r" not in text and "\u2028" not in text and "\x85" not in text
        assert text.splitlines() == text.split("\n")[:-1], "no line break any client splits on"
        strict_fplane_parse(text)
        parsed = parse_fplane(text)
        assert parsed.errors == ()
        if full:
            assert parsed.rows == rows and parsed.notes == ()


def test_header_text_that_looks_like_a_row_stays_a_comment():
    rows = make_rows()
    row_like = "013 -450.000 150.000 001 001 001 0.000 1.000"
    text = render_fplane(rows, [row_like, "#" + row_like], True)
    assert text.split("\n")[:2] == ["# (comment) " + row_like, "# (comment) #" + row_like]
    assert parse_fplane(text) == ParsedFile(rows, (), ())


def test_render_header_composes_with_a_cached_body():
    rows = make_rows()
    headers = ["instant 2018-07-07T05:00:00Z", "comment: a\nb"]
    for full in (True, False):
        assert render_header(headers) + render_fplane(rows, (), full) == \
            render_fplane(rows, headers, full)
    assert render_header([]) == ""
    assert render_header("one\ntwo") == "# one\n# two\n"


@pytest.mark.parametrize("full", [True, False])
def test_served_rows_are_the_rendered_rows(full):
    rows = [r for r in make_rows() if r.ifuslot not in (0, 13)]
    served = served_rows(rows, full)
    assert [render_row(r) for r in served] == render_fplane(rows, [], full).split("\n")[1:-1]
    assert served[0] == REFERENCE_ROW
    if full:
        assert row_of(served, 13) == Row(13, -450.0, 150.0, 0, 0, 0, active=False)
        assert len(served) == 98
    else:
        assert all(r.active for r in served)


# --------------------------------------------------------------------------
# Parsing the real-world variants

def test_parse_full_commented_is_clean():
    rows = make_rows()
    parsed = parse_fplane(full_commented_text(rows))
    assert parsed == ParsedFile(rows, (), ())


def test_parse_crlf_and_bom():
    rows = make_rows()
    parsed = parse_fplane(full_commented_text(rows, newline="\r\n", bom=True))
    assert parsed == ParsedFile(rows, (), ())
    parsed = parse_fplane(full_commented_text(rows, newline="\r"))
    assert parsed == ParsedFile(rows, (), ())
    parsed = parse_fplane(full_commented_text(rows, bom=True).encode("utf-8"))
    assert parsed == ParsedFile(rows, (), ())


def test_parse_full_uncommented():
    rows = make_rows()
    text = full_uncommented_text(rows)
    parsed = parse_fplane(text)
    assert parsed.errors == ()
    assert parsed.rows == rows
    line_of = {r.ifuslot: 6 + i for i, r in enumerate(rows)}
    empty = [(r.ifuslot, line_of[r.ifuslot]) for r in rows if not r.active]
    assert len(empty) == N_INACTIVE_VIRUS + 4
    assert parsed.notes == (
        f"{len(empty)} seats with SPECID 000 were not commented out; read as inactive: "
        f"{seat_list(empty)}",)
    assert parsed.notes[0].startswith("23 seats with SPECID 000 were not commented out; read "
                                      "as inactive: 016 (line 10), 024 (line 14),")


def test_parse_short_file_with_measured_positions():
    rows = make_rows(positions=measured_positions(VIRUS_SLOTS))
    parsed = parse_fplane(short_text(rows))
    assert parsed.errors == ()
    assert parsed.rows == short_expected(rows)
    active = [r for r in parsed.rows if r.active]
    assert [r.ifuslot for r in active] == [0] + [s for s in VIRUS_SLOTS if s in default_active()]
    # Only the seats the file lists count as measured (import --positions records these).
    listed = parse_fplane(short_text(rows), complete=False)
    assert [r.ifuslot for r in listed.rows] == [0] + [s for s in VIRUS_SLOTS if s in default_active()]
    assert not any("not listed" in note for note in listed.notes)
    missing = [s for s in GRID_SLOTS if s not in default_active()]
    assert row_of(parsed.rows, 16) == Row(16, -450.0, -150.0, 0, 0, 0, active=False)
    assert row_of(parsed.rows, 56) == Row(56, -50.0, -150.0, 0, 0, 0, active=False)
    assert not any(r.ifuslot in SPECIAL_SLOTS for r in parsed.rows)

    line_of = {0: 6}
    listed = [s for s in VIRUS_SLOTS if s in default_active()]
    line_of.update((s, 7 + i) for i, s in enumerate(listed))
    offsets = []
    for r in rows:
        if r.active and r.ifuslot in VIRUS_SLOTS:
            nx, ny = grid_position(r.ifuslot)
            if abs(r.x - nx) > 0.0005 or abs(r.y - ny) > 0.0005:
                offsets.append((((r.x - nx) ** 2 + (r.y - ny) ** 2) ** 0.5, r.ifuslot))
    dist, seat = max(offsets)
    listed = ", ".join(f"{s:03d}" for s in missing[:10]) + f", and {len(missing) - 10} more"
    assert parsed.notes == (
        f"{len(offsets)} grid seats have non-nominal positions, up to {dist:.3f} arcsec "
        f"(seat {seat:03d}, line {line_of[seat]}): these look like measured positions",
        f"{len(missing)} grid seats are not listed ({listed}); added as empty inactive seats "
        f"at nominal positions: this looks like a short file",
    )
    assert parsed.notes[1].startswith("25 grid seats are not listed (016, 024, 028,")


def test_parse_hand_edited():
    rows = make_rows()
    text = hand_edited_text(rows)
    assert "\t" not in text and "\n# 016 -450.0 -150.0 00 204 104 0.0 1.0\n" in text
    parsed = parse_fplane(text)
    assert parsed.errors == ()
    assert parsed.rows == rows
    n_active = sum(r.active for r in rows)
    n_inactive = len(rows) - n_active
    # line 1 the column comment, then the active rows, a comment, the inactive rows
    first_inactive_line = 1 + n_active + 1 + 1
    assert parsed.notes == (
        f"{n_inactive} rows write ids with fewer than 3 digits (SPECID; first: line "
        f"{first_inactive_line}, seat 016, SPECID '00'); read as integers ('00' is 000)",)


def test_parse_hand_edited_with_a_spectrograph_on_two_seats():
    # A real hand-edited file had one SPECID on two seats: kept, and said.
    active = default_active()
    active[14] = (active[13][0], 150, 151)
    rows = make_rows(active=active)
    parsed = parse_fplane(hand_edited_text(rows))
    assert parsed.errors == ()
    assert parsed.rows == rows
    assert parsed.notes[1:] == (
        f"SPECID {active[13][0]:03d} is used by 2 active seats, kept as given: "
        f"013 (line 3), 014 (line 4)",)


def test_parse_pyhetdex_style():
    rows = make_rows()
    parsed = parse_fplane(pyhetdex_style_text(rows))
    assert parsed.errors == ()
    assert parsed.rows == make_rows(specials=(), lrs2=False)
    short_specids = [s for s in VIRUS_SLOTS if row_of(rows, s).specid < 100]
    empty = [(s, 2 + i) for i, s in enumerate(VIRUS_SLOTS) if not row_of(rows, s).active]
    assert parsed.notes == (
        f"{len(short_specids)} rows write ids with fewer than 3 digits (SPECID; first: line 2, "
        f"seat 013, SPECID '01'); read as integers ('00' is 000)",
        f"{len(empty)} seats with SPECID 000 were not commented out; read as inactive: "
        f"{seat_list(empty)}",
        "seat 000: no reference row; added the standard one "
        "'000 0.000 0.000 900 900 900 0.000 1.000'",
        "6 grid seats are not listed (054, 055, 056, 064, 065, 066); added as empty inactive "
        "seats at nominal positions: this looks like a short file",
    )


def test_double_hash_column_header_is_a_comment():
    rows = make_rows()
    text = full_commented_text(rows, header=["##IFUSLOT X_FP   Y_FP   SPECID SPECSLOT IFUID "
                                             "IFUROT PLATESC"])
    text = text.replace(COLUMNS_LINE + "\n", "")
    assert text.startswith("##IFUSLOT")
    assert parse_fplane(text) == ParsedFile(rows, (), ())


# --------------------------------------------------------------------------
# Notes on single oddities (exact texts)

@pytest.fixture
def clean():
    rows = make_rows()
    return rows, full_commented_text(rows)


def test_note_blank_lines(clean):
    rows, clean_text = clean
    text = clean_text.replace("# $Date$\n", "# $Date$\n\n").replace(
        "\n#016\t", "\n   \t\n#016\t")
    parsed = parse_fplane(text + "\n")
    assert parsed.errors == () and parsed.rows == rows
    assert parsed.notes == ("3 blank lines skipped (lines 5, 11, 106)",)
    assert parse_fplane("\n" + clean_text).notes == ("1 blank line skipped (line 1)",)


def test_note_commented_row_with_a_specid(clean):
    rows, text = clean
    text = replace_line(text, server_line(row_of(rows, 16)),
                        "#016\t-450.000\t-150.000\t412\t204\t104\t0.000\t1.000")
    parsed = parse_fplane(text)
    assert parsed.errors == ()
    assert row_of(parsed.rows, 16) == Row(16, -450.0, -150.0, 412, 204, 104, active=False)
    assert parsed.notes == ("line 10: seat 016 is commented out but has SPECID 412; kept as "
                            "given (inactive, SPECID kept)",)
    # and it stays commented, SPECID kept, when written again
    assert "#016\t-450.000\t-150.000\t412\t204\t104\t0.000\t1.000" in \
        render_fplane(parsed.rows, [], True)


def test_note_active_and_commented_copy_of_a_seat(clean):
    rows, text = clean
    text += "# 013 -450.0 150.0 000 241 043 0.0 1.0\n"
    parsed = parse_fplane(text)
    assert parsed.errors == () and parsed.rows == rows
    assert parsed.notes == ("seat 013 is listed on line 7 and commented out on line 104; "
                            "kept the uncommented row (line 7)",)


def test_note_two_commented_copies_of_a_seat(clean):
    rows, text = clean
    text += "#016\t0.000\t0.000\t000\t000\t000\t0.000\t1.000\n"
    parsed = parse_fplane(text)
    assert parsed.errors == () and parsed.rows == rows
    assert parsed.notes == ("seat 016 is commented out on lines 10, 104; kept the first "
                            "(line 10)",)


def test_note_same_specid_and_ifuid_on_two_active_seats(clean):
    rows, text = clean
    r13, r14 = row_of(rows, 13), row_of(rows, 14)
    text = replace_line(text, server_line(r14), server_line(
        Row(14, r14.x, r14.y, r13.specid, r14.specslot, r13.ifuid)))
    parsed = parse_fplane(text)
    assert parsed.errors == ()
    assert row_of(parsed.rows, 14) == Row(14, r14.x, r14.y, r13.specid, r14.specslot, r13.ifuid)
    assert parsed.notes == (
        f"SPECID {r13.specid:03d} is used by 2 active seats, kept as given: 013 (line 7), "
        f"014 (line 8)",
        f"IFUID {r13.ifuid:03d} is used by 2 active seats, kept as given: 013 (line 7), "
        f"014 (line 8)",
    )


def test_no_note_for_shared_ids_on_inactive_seats_or_placeholders():
    # The 000 / LRS2 / special rows repeat ids >= 900 by design; an inactive
    # seat's SPECID 000 is no spectrograph.
    rows = make_rows(specials=SPECIAL_ROWS + (Row(617, 1.0, 1.0, 901, 901, 901),))
    parsed = parse_fplane(full_commented_text(rows))
    assert parsed.notes == ("line 104: seat 617 is neither a grid seat nor a known special row "
                            "(555, 600-604, 610-616); kept as a site-defined special row",)
    assert parsed.rows == rows


def test_note_missing_reference_row(clean):
    rows, text = clean
    parsed = parse_fplane(replace_line(text, REFERENCE_LINE, None))
    assert parsed == ParsedFile(rows, ("seat 000: no reference row; added the standard one "
                                       "'000 0.000 0.000 900 900 900 0.000 1.000'",), ())


def test_note_commented_or_unusual_reference_row(clean):
    rows, text = clean
    parsed = parse_fplane(replace_line(text, REFERENCE_LINE, "#" + REFERENCE_LINE))
    assert parsed == ParsedFile(rows, ("line 6: the reference row 000 is commented out; read "
                                       "as active (every served file carries it)",), ())
    parsed = parse_fplane(replace_line(text, REFERENCE_LINE, "000 0.5 0 900 900 900 0 1"))
    assert row_of(parsed.rows, 0) == Row(0, 0.5, 0.0, 900, 900, 900)
    assert parsed.notes == ("line 6: the reference row 000 differs from the usual "
                            "'000 0.000 0.000 900 900 900 0.000 1.000'; kept as given",)


def test_note_one_grid_seat_off_nominal(clean):
    rows, text = clean
    text = replace_line(text, server_line(row_of(rows, 21)),
                        "021\t-349.000\t 350.000\t053\t105\t005\t0.000\t1.000")
    parsed = parse_fplane(text)
    assert row_of(parsed.rows, 21).x == -349.0
    assert parsed.notes == ("1 grid seat has non-nominal positions, up to 1.000 arcsec (seat 021, "
                            "line 11): these look like measured positions",)
    # half the last written digit is still nominal
    text = replace_line(text, "021\t-349.000\t 350.000\t053\t105\t005\t0.000\t1.000",
                        "021\t-350.0004\t 350.000\t053\t105\t005\t0.000\t1.000")
    assert parse_fplane(text).notes == ()


def test_note_odd_ifurot_or_platesc(clean):
    rows, text = clean
    text = replace_line(text, server_line(row_of(rows, 21)),
                        "021\t-350.000\t 350.000\t053\t105\t005\t1.500\t1.000")
    parsed = parse_fplane(text)
    assert row_of(parsed.rows, 21).ifurot == 1.5
    assert parsed.notes == ("1 row has IFUROT other than 0 or PLATESC other than 1, kept as "
                            "given (real files always have 0.000 and 1.000): 021 (line 11)",)


def test_note_comment_that_looks_like_a_broken_row(clean):
    rows, text = clean
    text += "# 013 -450.0 150.0 00 241 043 0.0\n# 12 IFUs were swapped today\n"
    parsed = parse_fplane(text)
    assert parsed.rows == rows and parsed.errors == ()
    assert parsed.notes == (
        "line 104: a comment that looks like a commented-out row but has 7 fields, expected 8 "
        "(IFUSLOT X_FP Y_FP SPECID SPECSLOT IFUID IFUROT PLATESC); ignored as a comment",)


def test_note_no_active_ifu():
    rows = make_rows(active={})
    parsed = parse_fplane(full_commented_text(rows))
    assert parsed.rows == rows
    assert parsed.notes == ("no active VIRUS IFU in the file",)


def test_uncommented_special_and_lrs2_rows():
    # LRS2 seats are grid seats: SPECID 000 there means inactive, like any grid seat.
    rows = make_rows(lrs2=False)
    text = full_uncommented_text(rows)
    parsed = parse_fplane(text)
    assert parsed.rows == rows
    assert row_of(parsed.rows, 56) == Row(56, -50.0, -150.0, 0, 0, 0, active=False)
    # a commented-out special row stays, inactive, and is written back commented
    rows = make_rows(specials=SPECIAL_ROWS[:1] + (Row(600, 1.0, 2.0, 902, 902, 902,
                                                      active=False),))
    parsed = parse_fplane(full_commented_text(rows))
    assert parsed.rows == rows
    assert parsed.notes == ("line 92: seat 600 is commented out but has SPECID 902; kept as "
                            "given (inactive, SPECID kept)",)
    assert render_fplane(parsed.rows, [], True).split("\n")[-2] == \
        "#600\t   1.000\t   2.000\t902\t902\t902\t0.000\t1.000"


# --------------------------------------------------------------------------
# Errors

def _with_line(clean_text, line, after="#016\t"):
    """The clean file with ``line`` put in place of seat 016's row (line 10)."""
    lines = clean_text.split("\n")
    (i,) = [k for k, l in enumerate(lines) if l.startswith(after)]
    lines[i] = line
    return "\n".join(lines)


@pytest.mark.parametrize("line, message", [
    ("016\t-450.000\t-150.000\t000\t204\t104\t0.000",
     "line 10 (seat '016'): row has 7 fields, expected 8"),
    ("016\t-450.000\t-150.000\t000\t204\t104\t0.000\t1.000\t1.000",
     "line 10 (seat '016'): row has 9 fields, expected 8"),
    ("016 -450.0 -150.0 000 204 104 0.0 1.0 # retired",
     "line 10 (seat '016'): row has 10 fields, expected 8"),
    ("16a\t-450.000\t-150.000\t000\t204\t104\t0.000\t1.000",
     "line 10 (seat '16a'): row IFUSLOT '16a' is not an id of 1 to 3 digits"),
    ("016.0\t-450.000\t-150.000\t000\t204\t104\t0.000\t1.000",
     "row IFUSLOT '016.0' is not an id"),
    ("-16\t-450.000\t-150.000\t000\t204\t104\t0.000\t1.000", "row IFUSLOT '-16' is not an id"),
    ("0016\t-450.000\t-150.000\t000\t204\t104\t0.000\t1.000", "row IFUSLOT '0016' is not an id"),
    ("016\t-450.000\t-150.000\t0x1\t204\t104\t0.000\t1.000", "row SPECID '0x1' is not an id"),
    ("016\t-450.000\t-150.000\t000\t2 4\t104\t0.000\t1.000", "row has 9 fields"),
    ("016\t-450.000\t-150.000\t000\t204\t\u0661\u0660\t0.000\t1.000", "row IFUID"),
    ("016\tnan\t-150.000\t000\t204\t104\t0.000\t1.000", "row X_FP 'nan' is not a finite number"),
    ("016\t-450.000\t-Infinity\t000\t204\t104\t0.000\t1.000",
     "row Y_FP '-Infinity' is not a finite number"),
    ("016\t-450.000\t-150.000\t000\t204\t104\t1e999\t1.000",
     "row IFUROT '1e999' is not a finite number"),
    ("016\t-450.000\t-150.000\t000\t204\t104\t0.000\t1_000", "row PLATESC '1_000' is not a number"),
    ("016\t-450,000\t-150.000\t000\t204\t104\t0.000\t1.000", "row X_FP '-450,000' is not a number"),
    ("IFUSLOT X_FP Y_FP SPECID SPECSLOT IFUID IFUROT PLATESC",
     "line 10 (seat 'IFUSLOT'): row IFUSLOT 'IFUSLOT' is not an id"),
])
def test_error_on_bad_row(clean, line, message):
    _, text = clean
    parsed = parse_fplane(_with_line(text, line))
    assert len(parsed.errors) == 1
    assert message in parsed.errors[0]
    assert parsed.errors[0].startswith("line 10 ")


def test_error_on_two_active_rows_for_a_seat(clean):
    rows, text = clean
    text += "013\t-450.000\t 150.000\t777\t777\t777\t0.000\t1.000\n"
    parsed = parse_fplane(text)
    assert parsed.errors == ("seat 013 has 2 uncommented rows (lines 7, 104); a seat holds "
                             "one IFU",)


@pytest.mark.parametrize("text", [
    "", "\n", "\n\n\n", "\ufeff", "# $Id$\n" + COLUMNS_LINE + "\n", "#\n##\n# 12 of them\n"])
def test_error_on_no_data_rows(text):
    parsed = parse_fplane(text)
    assert parsed.rows == ()
    assert parsed.errors == ("no data rows: the file is empty or holds only comments",)


def test_error_on_undecodable_bytes():
    parsed = parse_fplane(b"013\t\xff\n")
    assert parsed.rows == () and parsed.errors[0].startswith("the file is not UTF-8 text")


def test_errors_keep_partial_rows_but_do_not_complete_them(clean):
    rows, text = clean
    text = replace_line(text, REFERENCE_LINE, None) + "bad line\n"
    parsed = parse_fplane(text)
    assert len(parsed.errors) == 1
    assert parsed.rows == tuple(r for r in rows if r.ifuslot != 0)


def test_many_errors_are_capped():
    parsed = parse_fplane("x\n" * 5000)
    assert len(parsed.errors) == 101
    assert parsed.errors[-1] == "... and 4900 more not shown"


# --------------------------------------------------------------------------
# Round trips and robustness

CONFIG_STATES = st.sampled_from(["active", "active", "installed", "empty", "retired"])
milli = st.integers(min_value=-2500, max_value=2500)


@st.composite
def configurations(draw):
    """Random configurations as the store may hold them; returns (rows, clean)."""
    n = len(VIRUS_SLOTS)
    states = draw(st.lists(CONFIG_STATES, min_size=n, max_size=n))
    specids = draw(st.lists(st.integers(1, 899), min_size=n, max_size=n, unique=True))
    ifuids = draw(st.lists(st.integers(1, 899), min_size=n, max_size=n, unique=True))
    specslots = draw(st.lists(st.integers(0, 999), min_size=n, max_size=n))
    measured = draw(st.dictionaries(st.sampled_from(GRID_SLOTS), st.tuples(milli, milli),
                                    max_size=20))
    rows = [REFERENCE_ROW]
    for i, s in enumerate(VIRUS_SLOTS):
        nx, ny = nominal_position(s)
        dx, dy = measured.get(s, (0, 0))
        # integer thousandths divided once: exactly the double "%8.3f" reads back as
        x, y = (nx * 1000 + dx) / 1000, (ny * 1000 + dy) / 1000
        state = states[i]
        if state == "active":
            rows.append(Row(s, x, y, specids[i], specslots[i], ifuids[i]))
        elif state == "installed":
            rows.append(Row(s, x, y, 0, specslots[i], ifuids[i], active=False))
        elif state == "retired":   # commented out with its SPECID kept (a note)
            rows.append(Row(s, x, y, specids[i], specslots[i], ifuids[i], active=False))
        else:
            rows.append(Row(s, x, y, 0, 0, 0, active=False))
    for s in ALWAYS_EMPTY_SLOTS:
        rows.append(Row(s, *nominal_position(s), 0, 0, 0, active=False))
    lrs2 = draw(st.booleans())
    for r in LRS2_ROWS:
        rows.append(r if lrs2 else Row(r.ifuslot, r.x, r.y, 0, 0, 0, active=False))
    specials = draw(st.lists(st.sampled_from(SPECIAL_ROWS + (
        Row(700, -1.234, 5.678, 950, 950, 950),
        Row(12, 3.0, 4.0, 951, 951, 951, ifurot=0.5),
        Row(601, 1.0, 1.0, 903, 903, 903, active=False))), unique_by=lambda r: r.ifuslot))
    rows.extend(specials)
    random.Random(draw(st.integers(0, 1000))).shuffle(rows)
    clean = (not measured and "retired" not in states
             and all(r.ifuslot in SPECIAL_SLOTS and r.active for r in specials))
    return tuple(rows), clean


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations(), st.lists(st.text(max_size=30), max_size=4))
def test_round_trip_full(config, headers):
    rows, clean = config
    text = render_fplane(rows, headers, full=True)
    assert_row_lines(text)
    strict_fplane_parse(text)
    parsed = parse_fplane(text)
    assert parsed.errors == ()
    assert parsed.rows == canonical_order(rows)
    if clean:
        assert parsed.notes == ()
    assert render_fplane(parsed.rows, headers, full=True) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_round_trip_short(config):
    rows, _ = config
    text = render_fplane(rows, ["short"], full=False)
    assert_row_lines(text)
    seats = strict_fplane_parse(text)
    assert set(seats) == {"000"} | {f"{r.ifuslot:03d}" for r in rows
                                    if r.active and r.ifuslot in VIRUS_SLOTS}
    parsed = parse_fplane(text)
    assert parsed.errors == ()
    assert parsed.rows == short_expected(rows)
    assert render_fplane(parsed.rows, ["short"], full=False) == text


FRAGMENTS = st.sampled_from([
    "013", "000", "13", "\t", " ", "#", "# ", "\n", "\r\n", "\r", "-450.000", "0.0", "1.0",
    "nan", "inf", "1e999", "00", "999", "1000", "\ufeff", "\x00", "\u2028", "é", "-", ".",
    "IFUSLOT", "056", "600", "0x1", "1_0"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(FRAGMENTS, max_size=60).map("".join)))
def test_parse_never_raises(text):
    parsed = parse_fplane(text)
    assert isinstance(parsed, ParsedFile)
    assert not any("internal error" in e for e in parsed.errors)
    assert parsed.rows or parsed.errors
    if not parsed.errors:
        # anything it accepts, it can write for the clients
        rendered = render_fplane(parsed.rows, [], True)
        strict_fplane_parse(rendered)
        assert parse_fplane(rendered).rows == parsed.rows


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_raises_on_bytes(data):
    assert isinstance(parse_fplane(data), ParsedFile)


# --------------------------------------------------------------------------
# The site's static rows file ([Site] static_rows)

def test_static_rows():
    specials = [REFERENCE_ROW, *LRS2_ROWS, *SPECIAL_ROWS]
    text = "# site rows\n" + "".join(server_line(r) + "\n" for r in specials)
    assert parse_static_rows(text) == (canonical_order(specials), ())
    # 000 added when missing
    text = "".join(server_line(r) + "\n" for r in SPECIAL_ROWS)
    assert parse_static_rows(text) == (canonical_order([REFERENCE_ROW, *SPECIAL_ROWS]), ())


def test_static_rows_problems():
    rows, problems = parse_static_rows(full_commented_text(make_rows()))
    assert problems[0].startswith("82 VIRUS grid seats listed, but the static rows file holds "
                                  "only 000, 056, 066 and non-grid seats (grid seats come from "
                                  "the hardware status): 013 (line 7), 014 (line 8)")
    assert {r.ifuslot for r in rows} == {0, 56, 66, *SPECIAL_SLOTS}
    assert parse_static_rows("")[1] == ("no data rows: the file is empty or holds only comments",)
    assert parse_static_rows("600 1 2 902 902 902 0\n")[1][0].startswith("line 1 (seat '600')")


# --------------------------------------------------------------------------
# The real files (read in place; never copied into the project)

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="no fixture directory")


@needs_fixtures
@pytest.mark.parametrize("name, n_active, notes", [
    ("full_commented.txt", 59, []),
    ("full_uncommented.txt", 66, [r"32 seats with SPECID 000 were not commented out; read as "
                                  r"inactive: 013 \(line 7\), .*, and 22 more"]),
    ("short_actual_positions.txt", 46, [
        r"20 grid seats have non-nominal positions, up to 0\.475 arcsec \(seat 034, line 17\): "
        r"these look like measured positions",
        r"39 grid seats are not listed \(014, 015, 016, .*\); added as empty inactive seats at "
        r"nominal positions: this looks like a short file"]),
    ("parser_testdata.txt", 17, [
        r"78 rows write ids with fewer than 3 digits \(SPECID; first: line 2, seat 013, SPECID "
        r"'00'\); read as integers \('00' is 000\)",
        r"62 seats with SPECID 000 were not commented out; read as inactive: 013 \(line 2\), .*",
        r"seat 000: no reference row; added the standard one '000 0\.000 0\.000 900 900 900 "
        r"0\.000 1\.000'",
        r"6 grid seats are not listed \(054, 055, 056, 064, 065, 066\); added as empty inactive "
        r"seats at nominal positions: this looks like a short file"]),
])
def test_real_files_parse(name, n_active, notes):
    text = (FIXTURES / name).read_text(encoding="utf-8")
    parsed = parse_fplane(text)
    assert parsed.errors == ()
    assert len(parsed.notes) == len(notes)
    for note, pattern in zip(parsed.notes, notes):
        assert re.fullmatch(pattern, note), note
    assert sum(r.active for r in parsed.rows) == n_active   # 000 included
    assert [r.ifuslot for r in parsed.rows] == \
        [r.ifuslot for r in canonical_order(parsed.rows)]
    assert {r.ifuslot for r in parsed.rows} >= {0, *GRID_SLOTS}
    for full in (True, False):
        rendered = render_fplane(parsed.rows, [f"from {name}"], full)
        assert_row_lines(rendered)
        strict_fplane_parse(rendered)


@needs_fixtures
def test_real_server_file_re_renders_byte_identically():
    text = (FIXTURES / "full_commented.txt").read_text(encoding="utf-8")
    parsed = parse_fplane(text)
    assert parsed.errors == () and parsed.notes == ()
    assert len(parsed.rows) == 98
    header = [line[2:] for line in text.split("\n") if line.startswith("# ")
              and line != COLUMN_HEADER]
    assert render_fplane(parsed.rows, header, full=True) == text
    rendered = render_fplane(parsed.rows, [], full=True)
    assert rendered.split("\n")[1:] == [l for l in text.split("\n") if not l.startswith("# ")]


@needs_fixtures
def test_real_short_file_re_renders_its_rows():
    text = (FIXTURES / "short_actual_positions.txt").read_text(encoding="utf-8")
    parsed = parse_fplane(text)
    rendered = render_fplane(parsed.rows, [], full=False)
    assert rendered.split("\n")[1:] == [l for l in text.split("\n") if not l.startswith("# ")]
