"""Receiving updates: ``POST /fplane[/<datestr>]`` and ``POST /positions[/<datestr>]``, and
``GET /updates/<id>`` to follow one (contract section 5).

The web app only checks and spools; the writer commits. A post is checked in the
contract's order, each failure its own code with a message the station's operator can
act on: fields (202), station (206), password (203), role (204), checksum (201), data
(208, 209), time stamp (210, 211). Then what the update would do is judged against the
store as it is now: a dry run answers 101 with the resulting file, an update that
changes nothing 102, one that would switch off half the IFUs is spooled to be held
(103), anything else is spooled (100). The answer comes only after the spooled file is
on disk (wsgi.spool), so an update answered 100 survives any crash.
"""

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from webob import Response

from wsgi import codes, dates, fplane, guessing
from wsgi.forms import parse_form, read_body
from wsgi.reading import json_asked
from wsgi.responses import JSON, TEXT, CodedError, respond
from wsgi.spool import Spool, SpooledUpdate, is_update_id, update_id
from wsgi.stations import StationList
from wsgi.hardware_status import UpdateError, check_timestamp
from wsgi.store import Store
from wsgi.updates import decode_payload, plan_configuration, plan_positions, resolve_valid_from

FIELDS = ("station_id", "password", "checksum", "data")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Whereabouts:
    """Where an update is now: ``state`` is queued, committed, unchanged, held, rejected
    or failed; ``record`` is its store audit record once the writer has decided on it."""
    state: str
    record: object = None
    reason: str = ""


class UpdateReceiver:
    def __init__(self, config, log, store):
        self.config = config
        self.log = log
        self._store = store    # the app's WorkerStore
        self.stations = StationList(config.station_list, warn=log.warning)
        self.spool = Spool(config.spool_dir)
        self.guesses = guessing.GuessLimiter(config.data_dir, config.max_failed_logins,
                                             config.login_lockout, log)

    # -- POST -------------------------------------------------------------------------

    def receive(self, req, datestr: str | None = None, *, kind: str,
                now: datetime | None = None) -> Response:
        """POST /fplane and /positions: check, judge and (unless a dry run or no change)
        spool one post of ``kind`` (``config`` or ``positions``, which is also the role the
        station needs)."""
        environ, store = req.environ, self._store.get()
        now = now or datetime.now(timezone.utc)
        # The date as parse_datestr reads it, blanks around it forgiven (as on GET), before it
        # names the update: "/fplane/20190401%20" is the same update as "/fplane/20190401".
        datestr = (datestr or "").strip(dates.SURROUNDING_WHITESPACE) or None
        fields = self._posted_fields(environ)                                   # 212, 202
        station = self._authenticated(fields["station_id"].decode("utf-8", "replace"),
                                      fields["password"].decode("utf-8", "replace"),
                                      kind, environ.get("REMOTE_ADDR", ""))   # 213, 206, 203, 204
        checksum = _checked_checksum(fields["checksum"], fields["data"])        # 201
        # 208, 209 (data), 301 (valid_from), 210, 211 (time stamp):
        decoded, payload, valid_from = self._checked_data(kind, fields["data"], datestr, now)

        uid = update_id(station.station_id, checksum, f"{kind}/{datestr or ''}")
        commit = decoded["commit"]
        earlier = self.locate(store, uid) if commit else None
        plan = self._plan(store, kind, payload, valid_from)
        if not commit:
            return self._dry_run(plan, kind, station.station_id)
        if earlier is not None and earlier.state != "failed":
            # (A failed update is spooled again below: its cause may have been fixed.)
            return self._received_before(uid, earlier, plan, kind)
        if plan.unchanged:
            return self._no_change(plan, kind)
        self._spool(SpooledUpdate(
            update_id=uid, kind=kind, station=station.station_id, checksum=checksum,
            received_at=dates.to_micros(now), valid_from=valid_from,
            data=fields["data"].decode("utf-8"), held=bool(plan.hold_reason),
            hold_reason=plan.hold_reason, remote_addr=environ.get("REMOTE_ADDR", "")))
        return self._accepted(uid, plan, kind)

    def _posted_fields(self, environ) -> dict[str, bytes]:
        """The four fields of the posted form (FIELDS), as bytes; 212 for a body over
        [Server] max_body (and read_body's other refusals), 202 for a field missing, empty
        or given twice."""
        body = read_body(environ, self.config.max_body)
        return _required_fields(parse_form(environ.get("CONTENT_TYPE", ""), body))

    def _authenticated(self, station_id: str, password: str, role: str, address: str):
        """The station, unless it or the address is locked out for guessing (213, before
        the password is looked at) or the password is wrong (203, counted)."""
        keys = [guessing.station_key(station_id), guessing.address_key(address)]
        self.guesses.check(keys)
        try:
            station = self.stations.authenticate(station_id, password, role=role)
        except CodedError as err:
            if err.code == codes.WRONG_PASSWORD:
                self.guesses.failed(keys)
            elif err.code == codes.UNKNOWN_STATION:
                self.guesses.failed(keys[1:])   # made-up ids must not grow the counts file
            raise
        self.guesses.succeeded(station.station_id)
        return station

    def _checked_data(self, kind: str, data: bytes, datestr: str | None, now: datetime):
        """(decoded data, payload, valid_from in µs), or the first refusal 208-211 / 301."""
        site_tz = self.config.timezone
        try:
            decoded, payload = decode_payload(kind, data, site_tz)
            default = payload.timestamp if kind == "config" else now
            valid_from = resolve_valid_from(datestr, decoded, default, site_tz, now)
            if kind == "config":
                check_timestamp(payload.timestamp, now, self.config.max_age, self.config.max_future)
        except UpdateError as err:
            raise CodedError(err.code, err.message, err.problems) from None
        return decoded, payload, dates.to_micros(valid_from)

    def _plan(self, store: Store, kind: str, payload, valid_from: int):
        """What the update would do to the store, judged on one state of it (a snapshot)."""
        with store.snapshot():
            if kind == "config":
                return plan_configuration(store, payload, valid_from, self.config.static_rows)
            return plan_positions(store, payload, valid_from)

    def _dry_run(self, plan, kind: str, station_id: str) -> Response:
        """101, saying whether the update would change nothing or be held."""
        note = ""
        if plan.unchanged:
            note = " (it would change nothing)"
        elif plan.hold_reason:
            note = f" (it would be held for review: {plan.hold_reason})"
        return self._answer(codes.DRY_RUN, f"dry run OK, nothing stored{note}", plan, kind,
                            f"dry run by station {station_id}: nothing stored")

    def _received_before(self, uid: str, earlier: Whereabouts, plan, kind: str) -> Response:
        """The answer to update ``uid`` posted again: by what became of it (_repeat_code)."""
        code = _repeat_code(earlier.state, plan.hold_reason)
        return self._answer(code, f"{codes.CODES[code].message}: update {uid} was already "
                                  f"received ({earlier.state}{_reason(earlier)}); "
                                  f"not spooled again",
                            plan, kind, f"update {uid}: {earlier.state}", uid)

    def _no_change(self, plan, kind: str) -> Response:
        """102: the store already says this at the update's valid_from."""
        same = (f"version {plan.previous.id}" if kind == "config"
                else f"position set {plan.current.id}" if plan.current is not None
                else "no position set (every seat nominal)")
        return self._answer(codes.NO_CHANGE, f"no change, nothing new committed: {same}, "
                                             f"valid at {dates.format_micros(plan.valid_from)}, "
                                             f"already says this", plan, kind,
                            "no change: nothing spooled")

    def _spool(self, update: SpooledUpdate) -> None:
        """``update`` durably in the spool (wsgi.spool), and logged; 401 when the spool
        cannot take it, so that the station posts it again."""
        try:
            self.spool.enqueue(update)
        except OSError as err:
            self.log.error("spool: cannot spool update %s from %s: %s", update.update_id,
                           update.station, err)
            raise CodedError(codes.UNAVAILABLE, "the spool is unavailable: the update was not "
                                                "accepted; post it again later") from None
        self.log.info("update %s (%s) from station %s spooled%s, valid_from %s", update.update_id,
                      update.kind, update.station, " to be held" if update.held else "",
                      dates.format_micros(update.valid_from))

    def _accepted(self, uid: str, plan, kind: str) -> Response:
        """The answer to an update just spooled: 103 when it is to be held, else 100."""
        if plan.hold_reason:
            return self._answer(codes.HELD, f"accepted but held for review: update {uid}; "
                                            f"{plan.hold_reason}; an operator decides with "
                                            f"fplane-admin release / reject {uid}",
                                plan, kind, f"update {uid}: held for review", uid)
        return self._answer(codes.OK, f"OK: accepted as update {uid}; the writer commits it "
                                      f"shortly (GET /updates/{uid} tells when)",
                            plan, kind, f"update {uid}: spooled", uid)

    def _answer(self, code: int, message: str, plan, kind: str, summary: str,
                uid: str | None = None) -> Response:
        """``<code> <message>``, then the resulting full fplane file (contract section 6)."""
        header = [summary, f"valid_from {dates.format_micros(plan.valid_from)}",
                  "positions: nominal" if kind == "config" else
                  "positions: measured (this update, and the last measurement of every seat "
                  "it does not list or reset); seats never measured are nominal"]
        if plan.rows:
            header.append("full file (inactive seats commented out)")
            text = fplane.render_fplane(plan.rows, header, full=True)
        else:
            text = fplane.render_header(header + [
                "no configuration is valid then, so there is no file to show"])
        return respond(code, f"{code} {message}\n{text}", TEXT, status=codes.post_status_line(code),
                       headers=[("X-FPlane-Update", uid)] if uid is not None else ())

    # -- following an update ----------------------------------------------------------

    def locate(self, store: Store, uid: str) -> Whereabouts | None:
        """Where update ``uid`` is, None if it was never received (or its file is gone).

        An update's receipt (wsgi/spool.py) stands while its file is in new/ or cur/ and
        is removed after the writer has recorded it in the store (or moved it to
        failed/): looking at the receipt first, then the store, then failed/, cannot
        miss an update that moves on while we look. The store decides over the receipt,
        which outlives the file for a moment; a receipt means queued even with an older
        copy in failed/, which is what posting a failed update again does."""
        queued = self.spool.is_queued(uid)
        record = store.update_by_id(uid)
        if record is not None:
            return Whereabouts(record.state, record, record.reason)
        if queued:
            return Whereabouts("queued")
        reason = self.spool.failure_reason(uid)
        if reason is not None:
            return Whereabouts("failed", reason=reason)
        return None

    def update_status(self, req, uid: str) -> Response:
        """GET /updates/<id>: queued / committed (version) / unchanged / held / rejected /
        failed (reason)."""
        as_json = json_asked(req)
        where = self.locate(self._store.get(), uid) if is_update_id(uid) else None
        if where is None:
            raise CodedError(codes.NOT_FOUND, f"unknown update id {uid[:40]!r}",
                             ["an update id is the 20 hex digits a post answered with 100 or 103"])
        fields = {"update_id": uid, "state": where.state}
        record = where.record
        if record is not None:
            fields.update({
                "kind": record.kind, "station": record.station,
                "received_at": dates.format_micros(record.received_at),
                "valid_from": dates.format_micros(record.valid_from),
                "decided_at": dates.format_micros(record.decided_at),
                "version": record.version_id, "position_set": record.position_set_id,
            })
        if where.reason:
            fields["reason"] = where.reason
        fields = {k: v for k, v in fields.items() if v is not None}
        if as_json:
            body = json.dumps({"code": codes.OK, **fields}, indent=1) + "\n"
        else:
            body = f"{codes.OK} OK\n" + "".join(f"{k}: {v}\n" for k, v in fields.items())
        return respond(codes.OK, body, JSON if as_json else TEXT, headers=[("X-FPlane-Update", uid)])


def _repeat_code(state: str, hold_reason: str) -> int:
    """The code for a post of an update received before, by what became of it: a
    station that lost the first answer must learn the same (100 / 103), and one
    that repeats a decided update must not read "accepted" for what changed nothing."""
    if state == "held" or (state == "queued" and hold_reason):
        return codes.HELD
    if state in ("unchanged", "rejected"):
        return codes.NO_CHANGE
    return codes.OK


def _reason(where: Whereabouts) -> str:
    return f": {where.reason}" if where.reason else ""


def _required_fields(form: dict[str, list[bytes]]) -> dict[str, bytes]:
    missing = [name for name in FIELDS if not form.get(name) or not form[name][-1].strip()]
    if missing:
        raise CodedError(codes.MISSING_FIELD,
                         f"missing or empty form field: {', '.join(missing)}",
                         [f"a post has the fields {', '.join(FIELDS)} (contract section 5)"])
    repeated = [name for name in FIELDS if len(form[name]) > 1]
    if repeated:
        raise CodedError(codes.MISSING_FIELD,
                         f"form field given more than once: {', '.join(repeated)}; send each once")
    return {name: form[name][0] for name in FIELDS}


def _checked_checksum(checksum: bytes, data: bytes) -> str:
    """The posted checksum, lower-case, if it is the SHA-256 of ``data``; else 201."""
    text = checksum.decode("ascii", "replace").strip()
    if not _SHA256_HEX.fullmatch(text):
        raise CodedError(codes.CHECKSUM_MISMATCH,
                         "checksum mismatch: checksum must be the SHA-256 hex digest "
                         "(64 hex digits) of the data field's UTF-8 bytes")
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, text.lower()):
        raise CodedError(codes.CHECKSUM_MISMATCH,
                         "checksum mismatch: checksum is not the SHA-256 of data as received "
                         "(was data changed on the way, or the checksum made of other bytes?)")
    return actual
