"""What changed on the instrument between two configurations, said in its own terms.

``diff_rows`` is a pure function from two full configurations (fplane rows, as
``Store.configuration_rows`` returns them) to lines like::

    IFU 073 moved from seat 021 to seat 024 (spectrograph 315)
    seat 046 lost its spectrograph 008 to seat 047 (IFU 043 stays installed)
    spectrograph 008 replaced by 025 at seat 046 (IFU 043)

How the instrument is read (domain.md):

- An IFU bundle is known by its IFUID, wherever it sits.  Only grid seats other
  than LRS2 hold bundles; IFUID 000 means no bundle.  The same IFUID at another
  seat is one move, never a removal plus an installation.
- Placeholder ids (>= 900) and every row outside those seats (000, LRS2 056 / 066,
  the HPF / HRS fibres) are special rows, compared seat by seat.
- Both sides are compared as they would be served: a grid seat missing from the
  rows is an empty seat, a missing 000 row is the standard one, an empty LRS2 seat
  is no LRS2 row at all.
- Positions are the ones in effect (measured ones applied when given) and belong
  to the seat: they are compared where the seat holds the same thing on both
  sides.  An IFU that changed seats is not also reported as having moved by
  100 arcsec.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from wsgi import fplane
from wsgi.fplane import (GRID_SLOTS, LRS2_SLOTS, PLACEHOLDER_ID_MIN, POSITION_TOLERANCE,
                         REFERENCE_ROW, REFERENCE_SLOT, Row)

__all__ = ["Change", "KINDS", "diff_rows", "in_brief", "summary"]

# Also the order of changes at one seat and of the words in summary(): what left a
# seat, then what arrived, then what changed about what stayed.
KINDS = (
    "removed",                # an IFU bundle left the focal plane (from its seat)
    "moved",                  # an IFU bundle changed seats (seat = the new one)
    "installed",              # an IFU bundle appeared at a seat
    "activated",              # a seat started feeding a spectrograph
    "deactivated",            # a seat stopped feeding a spectrograph
    "spectrograph_replaced",  # another spectrograph unit behind the same IFU
    "specslot_changed",       # the IFU's fibres go to another spectrograph slot
    "position_changed",       # X_FP / Y_FP in effect moved by more than the tolerance
    "geometry_changed",       # IFUROT or PLATESC changed
    "special_removed",        # 000, LRS2, HPF / HRS and other special rows, by seat
    "special_added",
    "special_changed",
)
_KIND_RANK = {kind: i for i, kind in enumerate(KINDS)}

# summary() words: (singular, plural) after the count.
_KIND_WORDS = {
    "removed": ("IFU removed", "IFUs removed"),
    "moved": ("IFU moved", "IFUs moved"),
    "installed": ("IFU installed", "IFUs installed"),
    "activated": ("seat activated", "seats activated"),
    "deactivated": ("seat deactivated", "seats deactivated"),
    "spectrograph_replaced": ("spectrograph replaced", "spectrographs replaced"),
    "specslot_changed": ("spectrograph slot changed", "spectrograph slots changed"),
    "position_changed": ("position changed", "positions changed"),
    "geometry_changed": ("IFU rotation or plate scale changed",
                         "IFU rotations or plate scales changed"),
    "special_removed": ("special row removed", "special rows removed"),
    "special_added": ("special row added", "special rows added"),
    "special_changed": ("special row changed", "special rows changed"),
}

# Grid seats that hold VIRUS IFU bundles (the always-empty central ones included: a
# bundle found there is still a bundle).
_BUNDLE_SEATS = tuple(s for s in GRID_SLOTS if s not in LRS2_SLOTS)
_BUNDLE_SEAT_SET = frozenset(_BUNDLE_SEATS)
_SPECIAL_NAMES = {
    REFERENCE_SLOT: "reference row 000",
    56: "LRS2-B (seat 056)",
    66: "LRS2-R (seat 066)",
    600: "HPF acquisition camera fibre (seat 600)",
    603: "HPF science fibre (seat 603)",
}


@dataclass(frozen=True)
class Change:
    kind: str          # one of KINDS
    seat: int | None   # the IFUSLOT concerned (for "moved": the new seat)
    text: str          # one line in instrument terms
    fields: tuple[tuple[str, object], ...] = ()   # JSON-ready details, ids as "073"

    def as_json(self) -> dict:
        out = {"kind": self.kind,
               "seat": None if self.seat is None else _id(self.seat),
               "text": self.text}
        out.update((k, list(v) if isinstance(v, tuple) else v) for k, v in self.fields)
        return out


def diff_rows(old_rows: Iterable[Row], new_rows: Iterable[Row],
              old_positions: Mapping[int, tuple[float, float]] | None = None,
              new_positions: Mapping[int, tuple[float, float]] | None = None,
              ) -> tuple[Change, ...]:
    """The changes from ``old_rows`` to ``new_rows``, ordered by seat, then by KINDS.

    ``*_positions``: measured positions {ifuslot: (x, y)} to judge positions on
    (applied with fplane.with_positions).  Empty tuple: nothing changed.
    Raises ValueError when a seat appears twice in one configuration.
    """
    old = _Side(old_rows, old_positions)
    new = _Side(new_rows, new_positions)
    changes = _bundle_changes(old, new) + _special_changes(old, new)
    return tuple(sorted(changes, key=lambda c: (-1 if c.seat is None else c.seat,
                                                _KIND_RANK.get(c.kind, len(KINDS)), c.text)))


def summary(changes: Iterable[Change]) -> str:
    """Counts by kind in plain words: '2 IFUs moved, 1 spectrograph replaced' or 'no change'."""
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    if not counts:
        return "no change"
    ordered = sorted(counts, key=lambda k: (_KIND_RANK.get(k, len(KINDS)), k))
    parts = []
    for kind in ordered:
        n = counts[kind]
        one, many = _KIND_WORDS.get(kind, (kind, kind))
        parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts)


def in_brief(changes: Iterable[Change], width: int = 120) -> str:
    """One line for a version's comment, read at a glance in the history, the feed and the
    page: the change itself ('IFU 084 installed at seat 014 (spectrograph 330)'), several
    joined by '; ' while they fit in ``width`` characters, else their count and summary()
    ('3 changes: 2 IFUs moved, 1 spectrograph replaced')."""
    changes = tuple(changes)
    joined = "; ".join(c.text for c in changes)
    if len(changes) <= 1 or len(joined) <= width:
        return joined or "no change"
    return f"{len(changes)} changes: {summary(changes)}"


# --------------------------------------------------------------------------
# One configuration, as the diff sees it

class _Side:
    """A configuration split into bundle seats and special rows, as served."""

    def __init__(self, rows: Iterable[Row], positions):
        by_seat: dict[int, Row] = {}
        for r in rows:
            if r.ifuslot in by_seat:
                raise ValueError(f"seat {r.ifuslot:03d} is given twice")
            by_seat[r.ifuslot] = r
        if positions:
            by_seat = {r.ifuslot: r for r in fplane.with_positions(by_seat.values(), positions)}

        # Every bundle seat has a row: the served full file lists them all.  A
        # placeholder id there makes the row a special one and the seat empty.
        self.grid: dict[int, Row] = {}
        self.specials: dict[int, Row] = {}
        for s in _BUNDLE_SEATS:
            r = by_seat.get(s)
            if r is not None and r.ifuid >= PLACEHOLDER_ID_MIN:
                self.specials[s] = r
                r = None
            self.grid[s] = r if r is not None else fplane.empty_seat_row(s)
        # Served files always carry an active 000 row: the standard one when none is stored.
        self.specials[REFERENCE_SLOT] = replace(by_seat.get(REFERENCE_SLOT, REFERENCE_ROW),
                                                active=True)
        for s, r in by_seat.items():
            if s in _BUNDLE_SEAT_SET or s == REFERENCE_SLOT:
                continue
            # An empty LRS2 seat is what a configuration without LRS2 serves.
            if s in LRS2_SLOTS and _is_empty(r):
                continue
            self.specials[s] = r

        self.bundle_seats: dict[int, list[int]] = {}   # IFUID -> seats (one, unless hand-edited)
        self.spectrograph_seats: dict[int, list[int]] = {}
        for s in _BUNDLE_SEATS:
            r = self.grid[s]
            if r.ifuid:
                self.bundle_seats.setdefault(r.ifuid, []).append(s)
            if r.specid:
                self.spectrograph_seats.setdefault(r.specid, []).append(s)


def _is_empty(r: Row) -> bool:
    return not (r.specid or r.specslot or r.ifuid or r.active)


# --------------------------------------------------------------------------
# VIRUS IFU bundles and their seats

def _bundle_changes(old: _Side, new: _Side) -> list[Change]:
    changes: list[Change] = []
    same_bundle_seats = []
    for ifuid in sorted(old.bundle_seats.keys() | new.bundle_seats.keys()):
        before = old.bundle_seats.get(ifuid, [])
        after = new.bundle_seats.get(ifuid, [])
        same_bundle_seats.extend(s for s in before if s in after)
        left = [s for s in before if s not in after]
        arrived = [s for s in after if s not in before]
        # Pairing in seat order only matters for an IFUID listed twice (hand-edited
        # files); otherwise there is at most one seat on each side.
        for a, b in zip(left, arrived):
            changes.append(_moved(ifuid, old.grid[a], new.grid[b], old, new))
        for a in left[len(arrived):]:
            changes.append(_removed(old.grid[a], new.grid[a]))
        for b in arrived[len(left):]:
            changes.append(_installed(old.grid[b], new.grid[b]))
    # A seat without a bundle on both sides may still list a spectrograph or slot.
    same_bundle_seats.extend(s for s in _BUNDLE_SEATS
                             if not old.grid[s].ifuid and not new.grid[s].ifuid
                             and not (_is_empty(old.grid[s]) and _is_empty(new.grid[s])))
    for s in sorted(same_bundle_seats):
        changes.extend(_seat_changes(old.grid[s], new.grid[s], old, new))
    return changes


def _moved(ifuid: int, o: Row, n: Row, old: _Side, new: _Side) -> Change:
    head = f"IFU {_id(ifuid)} moved from seat {_id(o.ifuslot)}"
    if _feed(o) != _feed(n):
        text = f"{head} ({_feed(o)}) to seat {_id(n.ifuslot)} ({_feed(n)})"
    elif o.specslot != n.specslot:
        text = (f"{head} to seat {_id(n.ifuslot)} ({_feed(n)}; spectrograph slot "
                f"{_id(o.specslot)} -> {_id(n.specslot)})")
    else:
        text = f"{head} to seat {_id(n.ifuslot)} ({_feed(n)})"
    text += _left_behind(new.grid[o.ifuslot]) + _found_there(old.grid[n.ifuslot])
    return Change("moved", n.ifuslot, text, (
        ("ifuid", _id(ifuid)), ("from_seat", _id(o.ifuslot)), ("to_seat", _id(n.ifuslot)),
        *_feed_fields(o, n)))


def _removed(o: Row, now_there: Row) -> Change:
    was = f"was on {_feed(o)}" if o.specid else f"had {_feed(o)}"
    text = (f"IFU {_id(o.ifuid)} removed from seat {_id(o.ifuslot)} ({was})"
            + _left_behind(now_there))
    return Change("removed", o.ifuslot, text, (
        ("ifuid", _id(o.ifuid)), ("from_seat", _id(o.ifuslot)),
        ("old_specid", _id(o.specid)), ("old_specslot", _id(o.specslot)),
        ("old_active", o.active)))


def _installed(there_before: Row, n: Row) -> Change:
    text = (f"IFU {_id(n.ifuid)} installed at seat {_id(n.ifuslot)} ({_feed(n)})"
            + _found_there(there_before))
    return Change("installed", n.ifuslot, text, (
        ("ifuid", _id(n.ifuid)), ("to_seat", _id(n.ifuslot)),
        ("new_specid", _id(n.specid)), ("new_specslot", _id(n.specslot)),
        ("new_active", n.active)))


def _left_behind(r: Row) -> str:
    """A row without a bundle that now holds the seat a bundle left (rare, but said)."""
    if r.ifuid or _is_empty(r):
        return ""
    return f"; seat {_id(r.ifuslot)} now lists {_bare_row(r)}"


def _found_there(r: Row) -> str:
    if r.ifuid or _is_empty(r):
        return ""
    return f"; seat {_id(r.ifuslot)} listed {_bare_row(r)} before"


def _bare_row(r: Row) -> str:
    return f"{_feed(r)} in slot {_id(r.specslot)} without an IFU"


def _feed(r: Row) -> str:
    """What the seat's fibres feed, as the file says it."""
    if r.specid:
        return f"spectrograph {_id(r.specid)}" + ("" if r.active else ", inactive")
    return "no spectrograph" + (", active" if r.active else "")


def _feed_fields(o: Row, n: Row) -> tuple[tuple[str, object], ...]:
    return (("old_specid", _id(o.specid)), ("new_specid", _id(n.specid)),
            ("old_specslot", _id(o.specslot)), ("new_specslot", _id(n.specslot)),
            ("old_active", o.active), ("new_active", n.active))


def _seat_changes(o: Row, n: Row, old: _Side, new: _Side) -> list[Change]:
    """What changed at a seat that holds the same bundle (or none) on both sides."""
    seat = o.ifuslot
    S = _id(seat)
    ifu = f"IFU {_id(n.ifuid)}" if n.ifuid else "no IFU"
    ifu_fields = (("ifuid", _id(n.ifuid)),)
    changes = []

    feed_change = _feed_change(o, n, old, new, ifu)
    if feed_change:
        kind, text, whereabouts = feed_change
        changes.append(Change(kind, seat, text, ifu_fields + _feed_fields(o, n) + whereabouts))

    # A row without an IFU that appears or goes is said by its spectrograph line alone.
    row_came_or_went = not n.ifuid and (_is_empty(o) or _is_empty(n))
    if o.specslot != n.specslot and not (feed_change and row_came_or_went):
        changes.append(Change(
            "specslot_changed", seat,
            f"seat {S} spectrograph slot changed from {_id(o.specslot)} to "
            f"{_id(n.specslot)} ({ifu}, {_feed(n)})",
            ifu_fields + (("old_specslot", _id(o.specslot)), ("new_specslot", _id(n.specslot)))))

    optics = [(name, a, b) for name, a, b in (("IFUROT", o.ifurot, n.ifurot),
                                              ("PLATESC", o.platesc, n.platesc))
              if abs(b - a) > POSITION_TOLERANCE]
    if optics:
        what = ", ".join(f"{name} {a:.3f} -> {b:.3f}" for name, a, b in optics)
        changes.append(Change(
            "geometry_changed", seat, f"seat {S} {what} ({ifu})",
            ifu_fields + (("old_ifurot", round(o.ifurot, 3)), ("new_ifurot", round(n.ifurot, 3)),
                          ("old_platesc", round(o.platesc, 3)),
                          ("new_platesc", round(n.platesc, 3)))))

    dx, dy = n.x - o.x, n.y - o.y
    if abs(dx) > POSITION_TOLERANCE or abs(dy) > POSITION_TOLERANCE:
        distance = math.hypot(dx, dy)
        # Two decimals read best; a change below 0.01" would then print as 0.00.
        places = 2 if distance >= 0.01 else 3
        changes.append(Change(
            "position_changed", seat,
            f"seat {S} position changed by {_fixed(distance, places, False)} arcsec "
            f"(dx {_fixed(dx, places)}, dy {_fixed(dy, places)})",
            ifu_fields + (("distance", round(distance, 3)), ("dx", round(dx, 3) + 0.0),
                          ("dy", round(dy, 3) + 0.0),
                          ("old_x", round(o.x, 3)), ("old_y", round(o.y, 3)),
                          ("new_x", round(n.x, 3)), ("new_y", round(n.y, 3)))))
    return changes


def _feed_change(o: Row, n: Row, old: _Side, new: _Side, ifu: str):
    """(kind, text, whereabouts fields) for a change of spectrograph or of the active
    flag at one seat, or None.  A seat feeds a spectrograph when its row is active and
    names one; what else happens (a commented-out row listing a spectrograph, in
    hand-edited files) is said as it is."""
    a, b = o.specid, n.specid
    if a == b and o.active == n.active:
        return None
    seat = o.ifuslot
    S, A, B = _id(seat), _id(a), _id(b)
    # Where the spectrographs involved were before / went: "from seat 046", "to seat 047".
    came_from = [x for x in old.spectrograph_seats.get(b, []) if x != seat] if b != a else []
    went_to = [x for x in new.spectrograph_seats.get(a, []) if x != seat] if b != a else []
    whereabouts = (("new_specid_was_at", tuple(_id(x) for x in came_from)),
                   ("old_specid_now_at", tuple(_id(x) for x in went_to)))
    stays = f"{ifu} stays installed" if n.ifuid else "no IFU listed"
    was_on = o.active and a != 0
    is_on = n.active and b != 0

    if is_on and not was_on:
        kind = "activated"
        if a == 0:
            text = f"seat {S} got spectrograph {B}{_from(came_from)} ({ifu})"
        elif a == b:
            text = f"seat {S} activated ({ifu}, spectrograph {B})"
        else:
            text = (f"seat {S} activated with spectrograph {B}{_from(came_from)} "
                    f"instead of {A} ({ifu})")
    elif was_on and not is_on:
        kind = "deactivated"
        if b == 0:
            text = f"seat {S} lost its spectrograph {A}{_to(went_to)} ({stays})"
        elif a == b:
            text = f"seat {S} deactivated (spectrograph {A} stays listed, {stays})"
        else:
            text = (f"seat {S} deactivated, its spectrograph {A}{_to(went_to)} replaced by "
                    f"{B} ({stays})")
    elif was_on and is_on:
        kind = "spectrograph_replaced"
        notes = ""
        if came_from:
            notes += f"; {B} came from {_seats(came_from)}"
        if went_to:
            notes += f"; {A} went to {_seats(went_to)}"
        text = f"spectrograph {A} replaced by {B} at seat {S} ({ifu}{notes})"
    elif a == b:
        # The active flag of a row without a spectrograph flipped.
        kind = "activated" if n.active else "deactivated"
        text = f"seat {S} {kind} without a spectrograph ({ifu})"
    else:
        kind = "spectrograph_replaced"
        text = f"inactive seat {S}: SPECID {A} -> {B} ({ifu})"
    return kind, text, whereabouts


def _from(seats: list[int]) -> str:
    return f" from {_seats(seats)}" if seats else ""


def _to(seats: list[int]) -> str:
    return f" to {_seats(seats)}" if seats else ""


def _seats(seats: list[int]) -> str:
    ids = [_id(s) for s in seats]
    if len(ids) == 1:
        return f"seat {ids[0]}"
    return f"seats {', '.join(ids[:-1])} and {ids[-1]}"


# --------------------------------------------------------------------------
# Special rows, by seat

_COLUMNS = (("X_FP", "x"), ("Y_FP", "y"), ("SPECID", "specid"), ("SPECSLOT", "specslot"),
            ("IFUID", "ifuid"), ("IFUROT", "ifurot"), ("PLATESC", "platesc"))


def _special_changes(old: _Side, new: _Side) -> list[Change]:
    changes = []
    for s in sorted(old.specials.keys() | new.specials.keys()):
        o, n = old.specials.get(s), new.specials.get(s)
        name = _special_name(s)
        if o is None:
            changes.append(Change("special_added", s, f"{name} added: {_describe(n)}",
                                  (("old_row", None), ("new_row", _row_text(n)), ("changed", ()))))
        elif n is None:
            changes.append(Change("special_removed", s, f"{name} removed (was {_describe(o)})",
                                  (("old_row", _row_text(o)), ("new_row", None), ("changed", ()))))
        else:
            changed, parts = [], []
            for column, attr in _COLUMNS:
                a, b = getattr(o, attr), getattr(n, attr)
                if isinstance(a, int) and isinstance(b, int):
                    if a != b:
                        changed.append(column)
                        parts.append(f"{column} {_id(a)} -> {_id(b)}")
                elif abs(b - a) > POSITION_TOLERANCE:
                    changed.append(column)
                    parts.append(f"{column} {a:.3f} -> {b:.3f}")
            if o.active != n.active:
                changed.append("active")
                parts.append("now active" if n.active else "now commented out")
            if changed:
                changes.append(Change("special_changed", s, f"{name} changed: {', '.join(parts)}",
                                      (("old_row", _row_text(o)), ("new_row", _row_text(n)),
                                       ("changed", tuple(changed)))))
    return changes


def _special_name(seat: int) -> str:
    return _SPECIAL_NAMES.get(seat, f"special row {_id(seat)}")


def _describe(r: Row) -> str:
    text = (f"SPECID {_id(r.specid)}, SPECSLOT {_id(r.specslot)}, IFUID {_id(r.ifuid)} "
            f"at X_FP {r.x:.3f}, Y_FP {r.y:.3f}")
    return text if r.active else text + ", commented out"


def _row_text(r: Row) -> str:
    """The row as the file writes it, single spaces instead of TABs."""
    return " ".join(fplane.render_row(r).split())


# --------------------------------------------------------------------------

def _id(n: int) -> str:
    return f"{n:03d}"


def _fixed(value: float, places: int, sign: bool = True) -> str:
    # round() then + 0.0: no "-0.00" for a change that rounds to nothing.
    value = round(value, places) + 0.0
    return f"{value:+.{places}f}" if sign else f"{value:.{places}f}"
