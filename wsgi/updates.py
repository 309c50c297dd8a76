"""What a posted update would do to the store: the one judgement the web app makes when
it answers a post and the writer makes again when it commits.

Both ask the same questions of the store as it is at that moment (the writer may commit
hours after the post, and other updates may have landed in between): which version is
valid at the update's valid_from, what configuration the status makes of it, whether
that changes anything, and whether the change is big enough to hold for review.
"""

from dataclasses import dataclass
from datetime import datetime

from wsgi import codes, dates, fplane
from wsgi.fplane import Row
from wsgi.responses import CodedError
from wsgi.hardware_status import (HardwareStatus, PositionsUpdate, UpdateError, build_configuration,
                         decode_update, hold_reason, merged_positions, new_hardware,
                         parse_status, positions_from_update)
from wsgi.store import PositionSet, Store, Version, content_hash, positions_hash


@dataclass(frozen=True)
class ConfigurationPlan:
    valid_from: int                 # µs
    previous: Version | None        # the version valid at valid_from now, if any
    rows: tuple[Row, ...]           # the full configuration the status makes
    digest: str                     # its content_hash
    unchanged: bool                 # previous already says exactly this
    hold_reason: str                # why it must wait for review; "" when it need not
    news: tuple[str, ...]           # new spectrographs and IFUs, for the operators


@dataclass(frozen=True)
class PositionsPlan:
    valid_from: int
    positions: dict                 # seat -> (x, y): the whole new set (hardware_status.merged_positions)
    current: PositionSet | None     # the position set valid at valid_from now, if any
    unchanged: bool
    version: Version | None         # the configuration they will be served with
    rows: tuple[Row, ...]           # its rows with these positions; () without a version
    hold_reason: str = ""           # measured positions are never held


def plan_configuration(store: Store, status: HardwareStatus, valid_from: int,
                       static_rows) -> ConfigurationPlan:
    """Call inside store.snapshot(): the answer must come from one state of the store."""
    previous = store.version_at(valid_from)
    previous_rows = store.configuration_rows(previous.configuration_id) if previous else None
    rows = build_configuration(status, previous_rows, static_rows)
    digest = content_hash(rows)
    return ConfigurationPlan(
        valid_from=valid_from,
        previous=previous,
        rows=rows,
        digest=digest,
        unchanged=previous is not None and store.configuration_hash(previous.configuration_id) == digest,
        hold_reason=hold_reason(previous_rows, rows) if previous else "",
        news=tuple(new_hardware(previous_rows, rows)),
    )


def plan_positions(store: Store, update: PositionsUpdate, valid_from: int) -> PositionsPlan:
    """Call inside store.snapshot(), like plan_configuration. The new set is the one valid
    at valid_from with the update's seats measured or reset (hardware_status.merged_positions)."""
    current = store.position_set_at(valid_from)
    last = store.positions(current.id) if current is not None else {}
    positions = merged_positions(last, update)
    unchanged = positions_hash(last) == positions_hash(positions)
    version = store.version_at(valid_from)
    rows = ()
    if version is not None:
        rows = fplane.with_positions(store.configuration_rows(version.configuration_id), positions)
    return PositionsPlan(valid_from, positions, current, unchanged, version, rows)


def decode_payload(kind: str, data: bytes | str, site_tz):
    """The posted data -> (decoded data, payload): a HardwareStatus for ``config``, a
    PositionsUpdate for ``positions``. UpdateError 208 / 209 for what is wrong with it."""
    decoded = decode_update(data, payload=kind)
    if kind == "config":
        return decoded, parse_status(decoded["config"], site_tz)
    return decoded, positions_from_update(decoded)


def resolve_valid_from(url_datestr: str | None, decoded: dict, default: datetime,
                       site_tz, now: datetime) -> datetime:
    """When the update starts to be valid: the URL's datestr, else data's valid_from, else
    ``default`` (the status's timestamp; the time of the post for positions).

    A date string that cannot be read is 301 in the URL (like GET) and 209 in data."""
    from_url = from_data = None
    if url_datestr:
        try:
            from_url = dates.parse_datestr(url_datestr, site_tz, now)
        except dates.DateError as err:
            raise CodedError(codes.BAD_DATE, str(err)) from None
    if decoded.get("valid_from") is not None:
        try:
            from_data = dates.parse_datestr(decoded["valid_from"], site_tz, now)
        except dates.DateError as err:
            raise UpdateError(codes.INVALID_DATA, "data is invalid",
                              [f"valid_from: {err}"]) from None
    if from_url is not None and from_data is not None and from_url != from_data:
        raise UpdateError(codes.INVALID_DATA, "data is invalid", [
            f"valid_from is given twice and the two disagree: {dates.format_instant(from_url)} "
            f"in the URL, {dates.format_instant(from_data)} in data; give one"])
    return from_url or from_data or default
