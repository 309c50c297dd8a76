"""What changed on the instrument between two configurations (wsgi/diff.py).

Reads like contract.md section 9 ("IFU 073 moved from seat 021 to 024; seat 046 lost
its spectrograph; spectrograph 008 replaced by 025"): configurations are built with
tests/fplane_samples.make_rows, each scenario states the lines a VIRUS person reads.
"""
import json
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fplane_samples import SPECIAL_ROWS, grid_position, make_rows
from wsgi.diff import KINDS, Change, diff_rows, in_brief, summary
from wsgi.fplane import REFERENCE_ROW, VIRUS_SLOTS, Row


def config(active=None, installed=None, **kwargs):
    """A configuration with only the given IFUs (no defaults), LRS2 and special rows."""
    return make_rows(active=active or {}, installed=installed or {}, **kwargs)


def lines(changes):
    return [(c.kind, c.seat, c.text) for c in changes]


def with_row(rows, seat, **changes):
    return tuple(replace(r, **changes) if r.ifuslot == seat else r for r in rows)


# --------------------------------------------------------------------------
# Scenarios: (old active, old installed) -> (new active, new installed), and the lines.
# active: seat -> (specid, specslot, ifuid); installed: seat -> (specslot, ifuid).

SCENARIOS = {
    "IFU moved with its spectrograph": (
        ({21: (315, 218, 73)}, {}), ({24: (315, 218, 73)}, {}),
        [("moved", 24, "IFU 073 moved from seat 021 to seat 024 (spectrograph 315)")]),
    "IFU moved and changed spectrograph": (
        ({21: (315, 218, 73)}, {}), ({24: (25, 219, 73)}, {}),
        [("moved", 24, "IFU 073 moved from seat 021 (spectrograph 315) to seat 024 "
                       "(spectrograph 025)")]),
    "IFU moved, same spectrograph, fibres to another slot": (
        ({21: (315, 218, 73)}, {}), ({24: (315, 219, 73)}, {}),
        [("moved", 24, "IFU 073 moved from seat 021 to seat 024 (spectrograph 315; "
                       "spectrograph slot 218 -> 219)")]),
    "IFU moved and lost its spectrograph": (
        ({21: (315, 218, 73)}, {}), ({}, {24: (218, 73)}),
        [("moved", 24, "IFU 073 moved from seat 021 (spectrograph 315) to seat 024 "
                       "(no spectrograph)")]),
    "IFU installed with a spectrograph": (
        ({}, {}), ({24: (315, 218, 73)}, {}),
        [("installed", 24, "IFU 073 installed at seat 024 (spectrograph 315)")]),
    "IFU bundle installed without a spectrograph": (
        ({}, {}), ({}, {13: (241, 43)}),
        [("installed", 13, "IFU 043 installed at seat 013 (no spectrograph)")]),
    "IFU removed": (
        ({21: (315, 218, 73)}, {}), ({}, {}),
        [("removed", 21, "IFU 073 removed from seat 021 (was on spectrograph 315)")]),
    "IFU bundle without spectrograph removed": (
        ({}, {13: (241, 43)}), ({}, {}),
        [("removed", 13, "IFU 043 removed from seat 013 (had no spectrograph)")]),
    "seat activated": (
        ({}, {46: (129, 43)}), ({46: (8, 129, 43)}, {}),
        [("activated", 46, "seat 046 got spectrograph 008 (IFU 043)")]),
    "seat deactivated": (
        ({46: (8, 129, 43)}, {}), ({}, {46: (129, 43)}),
        [("deactivated", 46, "seat 046 lost its spectrograph 008 (IFU 043 stays installed)")]),
    "spectrograph replaced": (
        ({46: (8, 129, 43)}, {}), ({46: (25, 129, 43)}, {}),
        [("spectrograph_replaced", 46, "spectrograph 008 replaced by 025 at seat 046 (IFU 043)")]),
    "spectrograph replaced in another slot": (
        ({46: (8, 129, 43)}, {}), ({46: (25, 130, 43)}, {}),
        [("spectrograph_replaced", 46, "spectrograph 008 replaced by 025 at seat 046 (IFU 043)"),
         ("specslot_changed", 46, "seat 046 spectrograph slot changed from 129 to 130 "
                                  "(IFU 043, spectrograph 025)")]),
    "spectrograph moved from one IFU to another": (
        ({46: (8, 129, 43)}, {47: (130, 44)}), ({47: (8, 130, 44)}, {46: (129, 43)}),
        [("deactivated", 46, "seat 046 lost its spectrograph 008 to seat 047 "
                             "(IFU 043 stays installed)"),
         ("activated", 47, "seat 047 got spectrograph 008 from seat 046 (IFU 044)")]),
    "two seats exchange spectrographs": (
        ({46: (8, 129, 43), 47: (25, 130, 44)}, {}), ({46: (25, 129, 43), 47: (8, 130, 44)}, {}),
        [("spectrograph_replaced", 46, "spectrograph 008 replaced by 025 at seat 046 "
                                       "(IFU 043; 025 came from seat 047; 008 went to seat 047)"),
         ("spectrograph_replaced", 47, "spectrograph 025 replaced by 008 at seat 047 "
                                       "(IFU 044; 008 came from seat 046; 025 went to seat 046)")]),
    "two IFUs swap seats": (
        ({21: (315, 218, 73), 24: (25, 219, 74)}, {}),
        ({21: (25, 219, 74), 24: (315, 218, 73)}, {}),
        [("moved", 21, "IFU 074 moved from seat 024 to seat 021 (spectrograph 025)"),
         ("moved", 24, "IFU 073 moved from seat 021 to seat 024 (spectrograph 315)")]),
    "three IFUs rotate": (
        ({21: (1, 101, 1), 22: (2, 102, 2), 23: (3, 103, 3)}, {}),
        ({22: (1, 101, 1), 23: (2, 102, 2), 21: (3, 103, 3)}, {}),
        [("moved", 21, "IFU 003 moved from seat 023 to seat 021 (spectrograph 003)"),
         ("moved", 22, "IFU 001 moved from seat 021 to seat 022 (spectrograph 001)"),
         ("moved", 23, "IFU 002 moved from seat 022 to seat 023 (spectrograph 002)")]),
    "IFU moved into the seat of a removed IFU": (
        ({21: (315, 218, 73), 24: (25, 219, 74)}, {}), ({24: (315, 218, 73)}, {}),
        [("removed", 24, "IFU 074 removed from seat 024 (was on spectrograph 025)"),
         ("moved", 24, "IFU 073 moved from seat 021 to seat 024 (spectrograph 315)")]),
    "new IFU installed where another one was removed": (
        ({46: (8, 129, 43)}, {}), ({46: (8, 129, 50)}, {}),
        [("removed", 46, "IFU 043 removed from seat 046 (was on spectrograph 008)"),
         ("installed", 46, "IFU 050 installed at seat 046 (spectrograph 008)")]),
    "nothing changed": (
        ({46: (8, 129, 43)}, {13: (241, 44)}), ({46: (8, 129, 43)}, {13: (241, 44)}), []),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name):
    (old_active, old_installed), (new_active, new_installed), expected = SCENARIOS[name]
    changes = diff_rows(config(old_active, old_installed), config(new_active, new_installed))
    assert lines(changes) == expected


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_backwards_mirrors_it(name):
    (old_active, old_installed), (new_active, new_installed), expected = SCENARIOS[name]
    backwards = diff_rows(config(new_active, new_installed), config(old_active, old_installed))
    mirror = {"installed": "removed", "removed": "installed",
              "activated": "deactivated", "deactivated": "activated"}
    assert (sorted(mirror.get(c.kind, c.kind) for c in backwards)
            == sorted(k for k, _, _ in expected))


# --------------------------------------------------------------------------
# Nothing to say

def test_empty_to_empty_and_identical_configurations_are_no_change():
    assert diff_rows((), ()) == ()
    rows = make_rows()
    assert diff_rows(rows, rows) == ()
    assert diff_rows(rows, list(reversed(rows))) == ()
    positions = {21: (-350.2, 350.1)}
    assert diff_rows(rows, rows, positions, dict(positions)) == ()
    assert summary(()) == "no change"


def test_a_configuration_compares_as_it_is_served():
    # A grid seat not stored is an empty seat, a missing 000 row is the standard one,
    # and an empty LRS2 seat is what a file without LRS2 shows.
    rows = make_rows()
    sparse = tuple(r for r in rows if r.ifuid or r.specid or r.ifuslot >= 500)
    assert diff_rows(rows, sparse) == ()
    assert diff_rows(make_rows(reference=False), make_rows()) == ()
    assert diff_rows(make_rows(lrs2=False), tuple(r for r in make_rows(lrs2=False)
                                                  if r.ifuslot not in (56, 66))) == ()


def test_first_version_lists_every_bundle_and_special_row():
    rows = make_rows()
    changes = diff_rows((), rows)
    bundles = [r for r in rows if 0 < r.ifuid < 900]
    assert [c.kind for c in changes].count("installed") == len(bundles)
    assert [c.kind for c in changes].count("special_added") == len(SPECIAL_ROWS) + 2  # + LRS2
    assert {c.kind for c in changes} == {"installed", "special_added"}
    assert summary(changes) == f"{len(bundles)} IFUs installed, 15 special rows added"


def test_whole_configuration_replaced():
    old = config({21: (315, 218, 73), 22: (8, 219, 74)}, {13: (241, 43)})
    new = config({30: (25, 220, 80), 31: (26, 221, 81)})
    assert lines(diff_rows(old, new)) == [
        ("removed", 13, "IFU 043 removed from seat 013 (had no spectrograph)"),
        ("removed", 21, "IFU 073 removed from seat 021 (was on spectrograph 315)"),
        ("removed", 22, "IFU 074 removed from seat 022 (was on spectrograph 008)"),
        ("installed", 30, "IFU 080 installed at seat 030 (spectrograph 025)"),
        ("installed", 31, "IFU 081 installed at seat 031 (spectrograph 026)"),
    ]


# --------------------------------------------------------------------------
# The active flag, geometry and positions

def test_active_flag_flip_without_spectrograph_change():
    on = config({46: (8, 129, 43)})
    off = with_row(on, 46, active=False)  # a commented-out row that still lists 008
    assert lines(diff_rows(off, on)) == [
        ("activated", 46, "seat 046 activated (IFU 043, spectrograph 008)")]
    assert lines(diff_rows(on, off)) == [
        ("deactivated", 46, "seat 046 deactivated (spectrograph 008 stays listed, "
                            "IFU 043 stays installed)")]


def test_geometry_change():
    old = config({46: (8, 129, 43)})
    new = with_row(old, 46, ifurot=1.5, platesc=1.002)
    assert lines(diff_rows(old, new)) == [
        ("geometry_changed", 46, "seat 046 IFUROT 0.000 -> 1.500, PLATESC 1.000 -> 1.002 "
                                 "(IFU 043)")]


def test_position_change_judged_on_measured_positions():
    rows = config({33: (8, 129, 43)})
    x, y = grid_position(33)
    measured = {33: (x + 0.30, y - 0.29)}
    (change,) = diff_rows(rows, rows, None, measured)
    assert (change.kind, change.seat) == ("position_changed", 33)
    assert change.text == "seat 033 position changed by 0.42 arcsec (dx +0.30, dy -0.29)"
    assert change.as_json()["dx"] == 0.3 and change.as_json()["dy"] == -0.29
    assert change.as_json()["distance"] == 0.417
    # The same positions written into the rows are the same change.
    assert diff_rows(rows, with_row(rows, 33, x=x + 0.30, y=y - 0.29)) == (change,)
    # Same measurement on both sides: nothing changed.
    assert diff_rows(rows, rows, measured, measured) == ()


@pytest.mark.parametrize("dx, dy, expected", [
    (0.0004, -0.0004, None),                     # below what the file's 3 decimals show
    (0.004, 0.0, "seat 033 position changed by 0.004 arcsec (dx +0.004, dy +0.000)"),
    (-1.5, 2.0, "seat 033 position changed by 2.50 arcsec (dx -1.50, dy +2.00)"),
    (0.3, -0.001, "seat 033 position changed by 0.30 arcsec (dx +0.30, dy +0.00)"),
])
def test_position_tolerance_and_wording(dx, dy, expected):
    rows = config({33: (8, 129, 43)})
    x, y = grid_position(33)
    changes = diff_rows(rows, rows, {}, {33: (x + dx, y + dy)})
    assert [c.text for c in changes] == ([expected] if expected else [])


def test_positions_of_empty_seats_and_of_moved_ifus_are_not_reported():
    old = config({21: (315, 218, 73)})
    new = config({24: (315, 218, 73)})
    x21, y21 = grid_position(21)
    x24, y24 = grid_position(24)
    old_pos = {21: (x21 + 0.2, y21), 24: (x24 - 0.3, y24)}
    new_pos = {21: (x21 - 0.5, y21), 24: (x24 + 0.4, y24 + 0.1), 30: (0.0, 0.0)}
    assert lines(diff_rows(old, new, old_pos, new_pos)) == [
        ("moved", 24, "IFU 073 moved from seat 021 to seat 024 (spectrograph 315)")]


# --------------------------------------------------------------------------
# Special rows: 000, LRS2, HPF / HRS, placeholder ids

def test_special_rows_by_seat():
    old = make_rows(active={}, installed={})
    new = tuple(r for r in make_rows(active={}, installed={}, lrs2=False) if r.ifuslot != 601)
    new = with_row(new, 600, x=-21.0, active=False)
    new = with_row(new, 0, ifuid=901)
    new += (Row(620, 1.0, 2.0, 914, 914, 914),)
    assert lines(diff_rows(old, new)) == [
        ("special_changed", 0, "reference row 000 changed: IFUID 900 -> 901"),
        ("special_removed", 56, "LRS2-B (seat 056) removed (was SPECID 998, SPECSLOT 998, "
                                "IFUID 998 at X_FP -50.000, Y_FP -150.000)"),
        ("special_removed", 66, "LRS2-R (seat 066) removed (was SPECID 999, SPECSLOT 999, "
                                "IFUID 999 at X_FP 50.000, Y_FP -150.000)"),
        ("special_changed", 600, "HPF acquisition camera fibre (seat 600) changed: "
                                 "X_FP -23.500 -> -21.000, now commented out"),
        ("special_removed", 601, "special row 601 removed (was SPECID 903, SPECSLOT 903, "
                                 "IFUID 903 at X_FP -26.500, Y_FP 8.500)"),
        ("special_added", 620, "special row 620 added: SPECID 914, SPECSLOT 914, IFUID 914 "
                               "at X_FP 1.000, Y_FP 2.000"),
    ]
    as_json = diff_rows(old, new)[3].as_json()
    assert as_json["changed"] == ["X_FP", "active"]
    assert as_json["old_row"] == "600 -23.500 10.500 902 902 902 0.000 1.000"
    assert as_json["new_row"] == "#600 -21.000 10.500 902 902 902 0.000 1.000"


def test_special_row_positions_follow_measured_positions():
    rows = make_rows(active={}, installed={})
    (change,) = diff_rows(rows, rows, {}, {56: (-50.25, -150.0)})
    assert change.text == "LRS2-B (seat 056) changed: X_FP -50.000 -> -50.250"


def test_placeholder_id_on_a_grid_seat_is_a_special_row_not_an_ifu():
    old = config({33: (8, 129, 43)})
    new = with_row(old, 33, specid=950, specslot=950, ifuid=950)
    assert lines(diff_rows(old, new)) == [
        ("removed", 33, "IFU 043 removed from seat 033 (was on spectrograph 008)"),
        ("special_added", 33, "special row 033 added: SPECID 950, SPECSLOT 950, IFUID 950 "
                              "at X_FP -250.000, Y_FP 150.000"),
    ]


# --------------------------------------------------------------------------
# Rows a status or a hand-edited file can hold

def test_seat_with_a_spectrograph_but_no_ifu():
    # A status may list a spectrograph at a seat with IFUID 000.
    bare = config({46: (315, 218, 0)})
    assert lines(diff_rows(bare, config())) == [
        ("deactivated", 46, "seat 046 lost its spectrograph 315 (no IFU listed)")]
    assert lines(diff_rows(bare, config({46: (315, 218, 73)}))) == [
        ("installed", 46, "IFU 073 installed at seat 046 (spectrograph 315); seat 046 listed "
                          "spectrograph 315 in slot 218 without an IFU before")]
    assert lines(diff_rows(config({46: (315, 218, 73)}), bare)) == [
        ("removed", 46, "IFU 073 removed from seat 046 (was on spectrograph 315); seat 046 now "
                        "lists spectrograph 315 in slot 218 without an IFU")]


def test_ifuid_listed_twice_in_a_hand_edited_file():
    old = config({21: (315, 218, 5), 22: (316, 219, 5)})
    assert lines(diff_rows(old, config({22: (316, 219, 5)}))) == [
        ("removed", 21, "IFU 005 removed from seat 021 (was on spectrograph 315)")]
    assert lines(diff_rows(old, config({22: (316, 219, 5), 30: (315, 218, 5)}))) == [
        ("moved", 30, "IFU 005 moved from seat 021 to seat 030 (spectrograph 315)")]


def test_a_seat_given_twice_is_refused():
    rows = config({21: (315, 218, 73)})
    with pytest.raises(ValueError, match="seat 021"):
        diff_rows(rows + (Row(21, -350.0, 350.0, 0, 0, 0, active=False),), rows)


# --------------------------------------------------------------------------
# summary() and the JSON form

@pytest.mark.parametrize("kinds, expected", [
    ((), "no change"),
    (("moved", "spectrograph_replaced", "moved"), "2 IFUs moved, 1 spectrograph replaced"),
    (("position_changed",), "1 position changed"),
    (("deactivated", "activated", "activated", "removed"),
     "1 IFU removed, 2 seats activated, 1 seat deactivated"),
    (("special_changed", "special_changed", "specslot_changed"),
     "1 spectrograph slot changed, 2 special rows changed"),
])
def test_summary(kinds, expected):
    assert summary(Change(k, 46, "x") for k in kinds) == expected


def test_in_brief_says_one_change_itself_and_many_by_their_count():
    old = config({21: (315, 218, 73)})
    one = config({21: (315, 218, 73), 14: (330, 260, 84)})
    assert in_brief(diff_rows(old, one)) == "IFU 084 installed at seat 014 (spectrograph 330)"
    two = config({21: (25, 218, 73), 14: (330, 260, 84)})
    assert in_brief(diff_rows(old, two)) == ("IFU 084 installed at seat 014 (spectrograph 330); "
                                             "spectrograph 315 replaced by 025 at seat 021 (IFU 073)")
    many = config({21: (25, 218, 73), 14: (330, 260, 84), 15: (331, 261, 85)})
    assert in_brief(diff_rows(old, many)) == "3 changes: 2 IFUs installed, 1 spectrograph replaced"
    assert in_brief(()) == "no change"


def test_as_json_is_json_ready_with_file_style_ids():
    old = config({21: (315, 218, 73)})
    new = config({24: (8, 218, 73)})
    (change,) = diff_rows(old, new)
    data = change.as_json()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "kind": "moved", "seat": "024",
        "text": "IFU 073 moved from seat 021 (spectrograph 315) to seat 024 (spectrograph 008)",
        "ifuid": "073", "from_seat": "021", "to_seat": "024",
        "old_specid": "315", "new_specid": "008", "old_specslot": "218", "new_specslot": "218",
        "old_active": True, "new_active": True,
    }
    assert Change("special_added", None, "t").as_json() == {
        "kind": "special_added", "seat": None, "text": "t"}


def test_every_kind_has_plain_words():
    for kind in KINDS:
        one, two = summary([Change(kind, 1, "x")]), summary([Change(kind, 1, "x")] * 2)
        assert one.startswith("1 ") and two.startswith("2 ") and one[2:] != two[2:]
        assert "_" not in one + two


# --------------------------------------------------------------------------
# Properties over random configurations

SEAT_POOL = VIRUS_SLOTS[:20]   # a small pool, so that random configurations share IFUs


_OFFSETS = (None, 0.0, 0.25, -0.4)   # None: no measurement, nominal position


@st.composite
def configurations(draw):
    n = draw(st.integers(0, 14))
    seats = draw(st.permutations(SEAT_POOL))[:n]
    ifuids = draw(st.permutations(range(1, 21)))[:n]
    # One draw per seat: active or installed, spectrograph slot, position offset.
    shapes = draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))
    active, installed, positions = {}, {}, {}
    for k, (seat, ifuid, shape) in enumerate(zip(seats, ifuids, shapes)):
        specslot = 101 + (shape >> 1 & 1)
        if shape & 1:
            active[seat] = (1 + (ifuid * 7 + k) % 20 if shape & 8 else ifuid, specslot, ifuid)
        else:
            installed[seat] = (specslot, ifuid)
        offset = _OFFSETS[shape >> 2 & 3]
        if offset is not None:
            x, y = grid_position(seat)
            positions[seat] = (x + offset, y - offset / 2)
    specials = SPECIAL_ROWS if draw(st.booleans()) else SPECIAL_ROWS[:3]
    return make_rows(active, installed, specials=specials, positions=positions)


def bundles(rows):
    return {r.ifuid: r for r in rows if 0 < r.ifuid < 900}


@settings(max_examples=100, deadline=None)
@given(configurations())
def test_property_no_change_against_itself(rows):
    assert diff_rows(rows, rows) == ()
    shuffled = list(rows)
    random.Random(len(rows)).shuffle(shuffled)
    assert diff_rows(rows, shuffled) == ()


@settings(max_examples=200, deadline=None)
@given(configurations(), configurations())
def test_property_ifus_are_followed_by_ifuid(old, new):
    changes = diff_rows(old, new)
    before, after = bundles(old), bundles(new)

    moved = [c.as_json() for c in changes if c.kind == "moved"]
    expected_moves = {i for i in before.keys() & after.keys()
                      if before[i].ifuslot != after[i].ifuslot}
    # Every IFU whose seat differs is exactly one "moved" change, at its new seat.
    assert sorted(int(m["ifuid"]) for m in moved) == sorted(expected_moves)
    for m in moved:
        i = int(m["ifuid"])
        assert (int(m["from_seat"]), int(m["to_seat"]), int(m["seat"])) == (
            before[i].ifuslot, after[i].ifuslot, after[i].ifuslot)

    removed = sorted(int(c.as_json()["ifuid"]) for c in changes if c.kind == "removed")
    installed = sorted(int(c.as_json()["ifuid"]) for c in changes if c.kind == "installed")
    assert removed == sorted(before.keys() - after.keys())
    assert installed == sorted(after.keys() - before.keys())

    # Seat-level changes only where the same IFU sits on both sides.
    same_seat = {r.ifuslot for i, r in before.items() if i in after
                 and after[i].ifuslot == r.ifuslot}
    for c in changes:
        if c.kind in ("activated", "deactivated", "spectrograph_replaced", "specslot_changed",
                      "position_changed", "geometry_changed"):
            assert c.seat in same_seat


@settings(max_examples=200, deadline=None)
@given(configurations(), configurations())
def test_property_deterministic_ordered_and_symmetric(old, new):
    changes = diff_rows(old, new)
    assert diff_rows(tuple(reversed(old)), tuple(reversed(new))) == changes
    rank = {k: i for i, k in enumerate(KINDS)}
    assert [(c.seat, rank[c.kind]) for c in changes] == sorted(
        (c.seat, rank[c.kind]) for c in changes)
    assert all(c.text and "\n" not in c.text for c in changes)
    assert sum(int(part.split()[0]) for part in summary(changes).split(", ")
               if part != "no change") == len(changes)

    mirror = {"installed": "removed", "removed": "installed", "activated": "deactivated",
              "deactivated": "activated", "special_added": "special_removed",
              "special_removed": "special_added"}
    backwards = diff_rows(new, old)
    assert sorted(mirror.get(c.kind, c.kind) for c in backwards) == sorted(
        c.kind for c in changes)


@settings(max_examples=200, deadline=None)
@given(configurations(), configurations())
def test_property_no_change_exactly_when_the_instrument_is_the_same(old, new):
    def state(rows):
        return {(r.ifuslot, r.x, r.y, r.specid, r.specslot, r.ifuid, r.active)
                for r in rows if r.ifuid or r.ifuslot >= 500}
    assert (diff_rows(old, new) == ()) == (state(old) == state(new))


def test_reference_row_default_is_the_standard_one():
    assert diff_rows((REFERENCE_ROW,), ()) == ()
