"""The focal plane's history as people read it: the version table and one IFU's life.

Pure functions over Versions and their rows (the store reads them, wsgi/views.py serves
them). A version can be superseded: a later import with the same valid_from corrects it.
Both stay in the store (it is bitemporal); what the instrument looked like, as known now,
is the last recorded version of each valid_from, the "effective" history.
"""

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from wsgi import dates, plaintext
from wsgi.fplane import Row
from wsgi.reading import until_text
from wsgi.store import Version


def superseded_by(versions: Sequence[Version]) -> dict[int, int]:
    """version id -> id of the later-recorded version with the same valid_from that replaced it.

    ``versions`` in Store.history() order (valid_from, then recorded_at)."""
    replaced = {}
    for earlier, later in zip(versions, versions[1:]):
        if earlier.valid_from == later.valid_from:
            replaced[earlier.id] = later.id
    # A version replaced twice points at the last replacement, the one in effect.
    for version_id in reversed(list(replaced)):
        successor = replaced[version_id]
        replaced[version_id] = replaced.get(successor, successor)
    return replaced


def effective(versions: Sequence[Version]) -> list[Version]:
    """The versions in effect as known now, valid_from order (Store.history() order in)."""
    replaced = superseded_by(versions)
    return [v for v in versions if v.id not in replaced]


def version_json(version: Version, replaced_by: int | None = None) -> dict:
    return {
        "version": version.id,
        "valid_from": dates.format_micros(version.valid_from),
        "valid_until": None if version.valid_until is None else dates.format_micros(version.valid_until),
        "recorded_at": dates.format_micros(version.recorded_at),
        "station": version.station,
        "comment": version.comment,
        "active_ifus": version.active_ifus,
        "superseded_by": replaced_by,
    }


def history_text(versions: Sequence[Version]) -> str:
    """A fixed-width table, one version per line, comments last so the columns stay aligned."""
    replaced = superseded_by(versions)
    # recorded_at keeps its microseconds: it is what a known_at query needs to name.
    lines = plaintext.render(
        ("# version", "valid_from", "valid_until", "recorded_at", "active", "station", "comment"),
        [(v.id, dates.format_micros(v.valid_from), until_text(v.valid_until),
          dates.format_micros(v.recorded_at), v.active_ifus, v.station,
          (f"[superseded by version {replaced[v.id]}] " if v.id in replaced else "") + v.comment)
         for v in versions],
        right=(0, 4), gap=" ")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Stay:
    """One stretch of an IFU's life in which nothing about its placement changed."""
    valid_from: int
    valid_until: int | None
    seat: int
    specid: int
    specslot: int
    active: bool
    since_version: int   # the version that placed it so

    def as_json(self) -> dict:
        return {
            "valid_from": dates.format_micros(self.valid_from),
            "valid_until": None if self.valid_until is None else dates.format_micros(self.valid_until),
            "ifuslot": f"{self.seat:03d}",
            "specid": f"{self.specid:03d}",
            "specslot": f"{self.specslot:03d}",
            "active": self.active,
            "since_version": self.since_version,
        }


def ifu_stays(ifuid: int, versions: Iterable[Version],
              rows_of: Callable[[Version], Sequence[Row]]) -> list[Stay]:
    """Where IFU ``ifuid`` sat, on which spectrograph, over the effective ``versions``.

    Consecutive versions that place it the same way make one Stay; a version without it
    ends the stay (the gap is when it was not in the focal plane)."""
    stays: list[Stay] = []
    for version in versions:
        row = next((r for r in rows_of(version) if r.ifuid == ifuid), None)
        if row is None:
            continue
        placement = (row.ifuslot, row.specid, row.specslot, row.active)
        last = stays[-1] if stays else None
        if last is not None and last.valid_until == version.valid_from and \
                (last.seat, last.specid, last.specslot, last.active) == placement:
            stays[-1] = Stay(last.valid_from, version.valid_until, *placement, last.since_version)
        else:
            stays.append(Stay(version.valid_from, version.valid_until, *placement, version.id))
    return stays


def stays_text(ifuid: int, stays: Sequence[Stay]) -> str:
    lines = [f"# IFU {ifuid:03d}: where it sat, and on which spectrograph, over time",
             "# valid_from            valid_until            seat specid specslot state    since_version"]
    for s in stays:
        state = "active" if s.active else "inactive"
        lines.append(f"{dates.format_micros(s.valid_from):23} {until_text(s.valid_until):22}"
                     f" {s.seat:03d}  {s.specid:03d}    {s.specslot:03d}      {state:8} {s.since_version}")
    return "\n".join(lines) + "\n"
