"""Committing one posted update into the store: used by the writer for spooled updates and
by ``fplane-admin release`` for held ones.

The update's audit record (who, when received, checksum, the data exactly as posted) is
written in the same SQLite transaction as the version or position set it makes, so an
update is either wholly in the store or not at all, and its id, found again, means
"already done".
"""

from dataclasses import dataclass, replace

from wsgi import dates
from wsgi.diff import diff_rows, in_brief
from wsgi.plaintext import plural
from wsgi.store import Store, UpdateRecord
from wsgi.updates import decode_payload, plan_configuration, plan_positions

SOURCE = {"config": "POST /fplane", "positions": "POST /positions"}


@dataclass(frozen=True)
class Outcome:
    state: str                      # committed, unchanged or held
    version_id: int | None = None
    position_set_id: int | None = None
    reason: str = ""                # why held
    news: tuple[str, ...] = ()      # new spectrographs / IFUs in a committed configuration

    def describe(self) -> str:
        made = (f"version {self.version_id}" if self.version_id is not None
                else f"position set {self.position_set_id}")
        if self.state == "held":
            return f"held for review: {self.reason}"
        if self.state == "unchanged":
            return f"unchanged: {made} already says this"
        return f"committed as {made}"


def commit_update(store: Store, config, update: UpdateRecord, decided_at: int,
                  hold_reason: str = "", released_by: str = "") -> Outcome:
    """Record ``update`` (its payload, valid_from and station) as a version or position set,
    or as held when it would switch off half the IFUs or ``hold_reason`` says so, unless
    an operator has released it (``released_by``).

    An update that changes nothing is recorded as unchanged and never held."""
    _, payload = decode_payload(update.kind, update.payload, config.timezone)
    # The change in instrument terms comes first, for the history, the feed and the page;
    # the update id ties the version to its audit record.
    provenance = f"update {update.update_id}"
    if released_by:
        provenance += f", released by {released_by}"
        update = replace(update, reason=f"released by {released_by}; it was held: {update.reason}")
    if update.kind == "positions":
        reset = f", {plural(len(payload.reset), 'seat')} reset to nominal" if payload.reset else ""
        comment = f"measured positions of {plural(len(payload.measured), 'seat')}{reset}; {provenance}"
        with store.snapshot():
            plan = plan_positions(store, payload, update.valid_from)
        position_set, created = store.record_position_set(
            plan.positions, update.valid_from, decided_at, update.station, comment,
            SOURCE[update.kind], update=update)
        return Outcome("committed" if created else "unchanged", position_set_id=position_set.id)

    with store.snapshot():
        plan = plan_configuration(store, payload, update.valid_from, config.static_rows)
        change = _what_changed(store, plan)
    hold_reason = "" if released_by else hold_reason or plan.hold_reason
    if hold_reason and not plan.unchanged:
        store.record_update(update, "held", decided_at, reason=hold_reason)
        return Outcome("held", reason=hold_reason)
    version, created = store.record_version(
        plan.rows, update.valid_from, decided_at, update.station, f"{change}; {provenance}",
        SOURCE[update.kind], update=update, digest=plan.digest)
    return Outcome("committed" if created else "unchanged", version_id=version.id,
                   news=plan.news if created else ())


def _what_changed(store: Store, plan) -> str:
    """The plan's change from the version valid before, in instrument terms (wsgi.diff)."""
    if plan.previous is None:
        return "first configuration"    # its active IFUs are counted beside the comment
    return in_brief(diff_rows(store.configuration_rows(plan.previous.configuration_id), plan.rows))


def notification_for(update: UpdateRecord, outcome: Outcome, config_path: str) -> tuple[str, str] | None:
    """(subject, body) of the mail operators get about this outcome, or None."""
    facts = (f"update {update.update_id} ({update.kind}) from station {update.station}\n"
             f"received {dates.format_micros(update.received_at)}, "
             f"valid_from {dates.format_micros(update.valid_from)}\n")
    if outcome.state == "held":
        return (f"update {update.update_id} from {update.station} held for review",
                f"{facts}held: {outcome.reason}\n\n"
                f"Look at it, then either commit it:\n"
                f"  fplane-admin -c {config_path} release {update.update_id}\n"
                f"or drop it:\n"
                f"  fplane-admin -c {config_path} reject {update.update_id}\n")
    if outcome.news:
        return (f"new hardware in version {outcome.version_id}: {outcome.news[0]}"
                + (f" (and {len(outcome.news) - 1} more)" if len(outcome.news) > 1 else ""),
                f"{facts}committed as version {outcome.version_id}\n\n"
                + "".join(f"{line}\n" for line in outcome.news))
    return None
