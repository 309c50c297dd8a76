"""What ``fplane-admin import`` records for an fplane file (contract section 5).

An imported file is historical truth: its seats, ids and special rows are stored as they
are, with two exceptions that keep every served file true:

- a configuration holds its grid seats at their nominal positions, since that is what
  ``actual_pos=0`` serves and what the served header says; X/Y that differ from nominal
  (a file of measured positions, a hand-edited file) are the file's measured positions,
  recorded as a position set valid from the same instant (``actual_pos=1`` serves them);
- a file without special rows (a short file: no LRS2, no HPF rows) gets them as a posted
  hardware status does, from the version valid before or ``[Site] static_rows``
  (hardware_status.carried_over_rows, the one rule for both).

Pure: the caller reads the previous version's rows and records the result.
"""

from dataclasses import dataclass

from wsgi.fplane import (LRS2_SLOTS, POSITION_TOLERANCE, REFERENCE_SLOT, ParsedFile, Row,
                         canonical_order, is_grid_slot, nominal_position)
from wsgi.hardware_status import at_nominal, carried_over_rows


@dataclass(frozen=True)
class ImportPlan:
    rows: tuple[Row, ...]                        # the configuration: grid seats at nominal
    measured: dict[int, tuple[float, float]]     # the X/Y of every grid seat the file lists,
    #                                              when any of them is off nominal; else {}
    off_nominal: tuple[int, ...]                 # the seats whose X/Y are off nominal
    carried: tuple[int, ...]                     # special seats carried over; () when the
    #                                              file has its own


def has_special_rows(listed) -> bool:
    """True when a file lists LRS2 (056, 066) or a non-grid row besides 000."""
    return any(s in LRS2_SLOTS or (s != REFERENCE_SLOT and not is_grid_slot(s)) for s in listed)


def plan_import(parsed: ParsedFile, previous_rows, static_rows) -> ImportPlan:
    """The configuration and measured positions a parsed file (parse_fplane, no errors)
    makes, given the rows of the version valid at its valid_from (None: no version)."""
    rows = {r.ifuslot: r for r in parsed.rows}
    carried: tuple[int, ...] = ()
    if not has_special_rows(parsed.listed):
        special = carried_over_rows(previous_rows, static_rows)
        # The file's own 000 row stays (the parser gives a file without one the standard row
        # and says so).
        del special[REFERENCE_SLOT]
        rows.update(special)
        carried = tuple(sorted(special))
    off_nominal = tuple(s for s in sorted(rows) if is_grid_slot(s) and _off_nominal(rows[s]))
    measured = {s: (rows[s].x, rows[s].y) for s in sorted(parsed.listed)
                if is_grid_slot(s)} if off_nominal else {}
    nominal = canonical_order(at_nominal(r) if is_grid_slot(r.ifuslot) else r
                              for r in rows.values())
    return ImportPlan(nominal, measured, off_nominal, carried)


def _off_nominal(row: Row) -> bool:
    x, y = nominal_position(row.ifuslot)
    return abs(row.x - x) > POSITION_TOLERANCE or abs(row.y - y) > POSITION_TOLERANCE
