"""fplane-admin: the operator's tool for the store (contract section 8).

    fplane-admin -c config.ini init
    fplane-admin -c config.ini import FILE --valid-from D [--positions | --discard-positions]
                                      [--comment C]
    fplane-admin -c config.ini export D [-o FILE] [--short] [--actual] [--known-at D]
    fplane-admin -c config.ini history
    fplane-admin -c config.ini verify
    fplane-admin -c config.ini backup FILE
    fplane-admin -c config.ini snapshot FILE     (the file GET /snapshot serves)
    fplane-admin -c config.ini add-station ID --name N --roles R   (prints the new password last)
    fplane-admin -c config.ini passwd ID
    fplane-admin -c config.ini stations
    fplane-admin -c config.ini held
    fplane-admin -c config.ini release ID
    fplane-admin -c config.ini reject ID [--reason R]
    fplane-admin -c config.ini failed
    fplane-admin -c config.ini retry ID

Exit status: 0 done, 1 refused or failed (the reason on standard error), 2 bad usage.
Besides the writer, this is the only program that writes to the store.
"""

import argparse
import getpass
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from wsgi import dates, fplane
from wsgi import stations
from wsgi.plaintext import plural, render as table
from wsgi.config import ConfigError, load_config
from wsgi.files import replace_durably, write_atomically
from wsgi.reading import FplaneQuery, FplaneReader, until_text
from wsgi.heartbeat import read_heartbeat
from wsgi.responses import CodedError
from wsgi.snapshot import SnapshotError, SnapshotSource, make_snapshot
from wsgi.spool import STALE_TEMPORARY_AGE, TEMPORARY_GRACE, Spool
from wsgi.store import Store, StoreUnavailable
from wsgi.hardware_status import PositionsUpdate
from wsgi.updates import plan_positions
from writer.commit import commit_update
from writer.importing import has_special_rows, plan_import


class Refused(Exception):
    """The command cannot do what was asked; str() says why, for standard error."""


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.config:
        # Exit status 2 (bad usage), naming both ways of giving it.
        parser.error("no config file: give -c config.ini, or set FPLANE_CONFIG=/path/to/config.ini")
    try:
        config = load_config(args.config)
        return args.command(config, args)
    except (ConfigError, Refused, StoreUnavailable) as err:
        detail = getattr(err, "detail", "")
        print(f"fplane-admin: {err}" + (f" ({detail})" if detail and detail != str(err) else ""),
              file=sys.stderr)
        return 1
    except OSError as err:
        # A directory that cannot be made, a disk that is full: a reason, not a traceback.
        print(f"fplane-admin: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fplane-admin", description="Manage the fplaneserver store.")
    parser.add_argument("-c", "--config", default=os.environ.get("FPLANE_CONFIG"),
                        help="config.ini (default: $FPLANE_CONFIG)")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create the data directory, spool and an empty store "
                                            "(or migrate an existing store)")
    init.set_defaults(command=cmd_init)

    imp = commands.add_parser("import", help="record an fplane file as the configuration from a date")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--valid-from", required=True, metavar="D",
                     help="when the configuration starts (any date form, e.g. 20180707)")
    what = imp.add_mutually_exclusive_group()
    what.add_argument("--positions", action="store_true",
                      help="the file lists measured positions only: record its X/Y as a "
                           "position set (seats it does not list keep their last measurement)")
    what.add_argument("--discard-positions", action="store_true",
                      help="X/Y off the nominal grid are dropped instead of recorded as a "
                           "position set (the version is stored at nominal positions either way)")
    imp.add_argument("--comment", default="", metavar="C")
    imp.set_defaults(command=cmd_import)

    exp = commands.add_parser("export", help="write the fplane file valid at a date")
    exp.add_argument("date", metavar="D")
    exp.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: standard output")
    exp.add_argument("--short", action="store_true", help="active VIRUS IFUs only")
    exp.add_argument("--actual", action="store_true", help="measured positions")
    exp.add_argument("--known-at", metavar="D", help="as the store knew it at D")
    exp.set_defaults(command=cmd_export)

    commands.add_parser("history", help="list the versions and position sets").set_defaults(
        command=cmd_history)
    commands.add_parser("verify", help="check the store's integrity").set_defaults(command=cmd_verify)

    backup = commands.add_parser("backup", help="an online, consistent copy of the store")
    backup.add_argument("file", type=Path, metavar="FILE")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.set_defaults(command=cmd_backup)

    snapshot = commands.add_parser(
        "snapshot", help="the history without updates or secrets, for get_fplane --snapshot "
                         "(the file GET /snapshot serves)")
    snapshot.add_argument("file", type=Path, metavar="FILE")
    snapshot.set_defaults(command=cmd_snapshot)

    add_station = commands.add_parser(
        "add-station", help="add a station; prints its new password once, alone on the last line")
    add_station.add_argument("station_id", metavar="ID", help=stations.STATION_ID_RULE)
    add_station.add_argument("--name", required=True, metavar="N", help="who or what it is")
    add_station.add_argument("--roles", required=True, metavar="R",
                             help="config, positions or both (config;positions)")
    add_station.set_defaults(command=cmd_add_station)

    passwd = commands.add_parser(
        "passwd", help="give a station a new password; prints it once, alone on the last line")
    passwd.add_argument("station_id", metavar="ID")
    passwd.set_defaults(command=cmd_passwd)

    commands.add_parser("stations", help="list the stations and their roles").set_defaults(
        command=cmd_stations)

    commands.add_parser("held", help="list the updates held for review").set_defaults(
        command=cmd_held)
    release = commands.add_parser("release", help="commit an update held for review")
    release.add_argument("update_id", metavar="ID")
    release.set_defaults(command=cmd_release)
    reject = commands.add_parser("reject", help="drop an update held for review")
    reject.add_argument("update_id", metavar="ID")
    reject.add_argument("--reason", default="", metavar="R", help="why, for the audit trail")
    reject.set_defaults(command=cmd_reject)

    commands.add_parser("failed", help="list the spooled files the writer gave up on, and why"
                        ).set_defaults(command=cmd_failed)
    retry = commands.add_parser("retry", help="put a failed update back in the spool for the "
                                              "writer to try again")
    retry.add_argument("update_id", metavar="ID", help="the update id (or the file name in failed/)")
    retry.set_defaults(command=cmd_retry)
    return parser


# -- commands ---------------------------------------------------------------------------

def cmd_init(config, args) -> int:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    Spool(config.spool_dir).create()
    existed = config.store_path.exists()
    with Store.open_writable(config.store_path, create=True) as store:
        versions = len(store.history())
        schema = store.schema_version()
    if not config.station_list.exists():
        config.station_list.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(config.station_list, stations.HEADER_LINE.encode(), mode=0o600)
        print(f"created the station list {config.station_list}")
    if existed:
        print(f"store {config.store_path} is ready (schema {schema}, {plural(versions, 'version')})")
    else:
        print(f"created an empty store {config.store_path} (schema {schema})")
    print(f"spool {config.spool_dir} is ready")
    return 0


def cmd_import(config, args) -> int:
    now = datetime.now(timezone.utc)
    valid_from = _instant(args.valid_from, config, now)
    try:
        text = args.file.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise Refused(f"{args.file}: cannot read it: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise Refused(f"{args.file}: not UTF-8 text (byte {err.start})") from None

    # A position file lists the measured seats only: nothing is filled in.
    parsed = fplane.parse_fplane(text, complete=not args.positions)
    for note in parsed.notes:
        print(f"note: {note}")
    if parsed.errors:
        for error in parsed.errors:
            print(f"{args.file}: {error}", file=sys.stderr)
        raise Refused(f"{args.file}: not imported ({plural(len(parsed.errors), 'problem')}); nothing recorded")

    station = _operator()
    source = f"import of {args.file.name}"
    at, now_micros = dates.to_micros(valid_from), dates.to_micros(now)
    with Store.open_writable(config.store_path) as store:
        if args.positions:
            # Only the seats the file lists were measured; the field centre is 0,0 by definition.
            measured = {r.ifuslot: (r.x, r.y) for r in parsed.rows
                        if r.ifuslot != fplane.REFERENCE_SLOT}
            _record_positions(store, measured, at, now_micros, station, args.comment, source)
            return 0
        with store.snapshot():
            previous = store.version_at(at)
            previous_rows = (store.configuration_rows(previous.configuration_id)
                             if previous is not None else None)
        plan = plan_import(parsed, previous_rows, config.static_rows)
        if plan.carried:
            origin = (f"version {previous.id}, valid before" if previous is not None
                      else f"[Site] static_rows ({config.static_rows_file})")
            print(f"special rows: the file has none (no LRS2, no HPF rows); carried over "
                  f"{_seats(plan.carried)} from {origin}, as a posted status gets them")
        elif not has_special_rows(parsed.listed):
            print("special rows: the file has none, and neither a version before it nor "
                  "[Site] static_rows has any to carry over: stored without them")
        recorded, created = store.record_version(plan.rows, at, now_micros, station,
                                                 args.comment, source)
        _report(created, f"version {recorded.id} ({recorded.active_ifus} active IFUs)",
                recorded.valid_from, valid_from)
        if plan.off_nominal:
            count = len(plan.off_nominal)
            where = (f"X/Y off the nominal grid at {count} seat{'' if count == 1 else 's'} "
                     f"({_seats(plan.off_nominal)})")
            if args.discard_positions:
                print(f"positions: {where}: discarded (--discard-positions); the version holds "
                      f"nominal positions and no position set is recorded")
            else:
                print(f"positions: {where}: the version holds nominal positions (actual_pos=0); "
                      f"the file's X/Y of the {len(plan.measured)} grid seats it lists are its "
                      f"measured positions (actual_pos=1)")
                _record_positions(store, plan.measured, at, now_micros, station, args.comment,
                                  source)
    return 0


def _record_positions(store, measured, at: int, now_micros: int, station: str, comment: str,
                      source: str) -> None:
    """Record ``measured`` as a POST /positions does: the seats it lists take these values,
    every other seat keeps its last measurement."""
    with store.snapshot():
        plan = plan_positions(store, PositionsUpdate(measured), at)
    recorded, created = store.record_position_set(plan.positions, at, now_micros, station,
                                                  comment, source)
    kept = len(plan.positions) - len(measured)
    _report(created, f"position set {recorded.id} ({len(measured)} seats"
                     + (f", {kept} more kept from the last measurement" if kept else "") + ")",
            recorded.valid_from, dates.from_micros(at))


def _report(created: bool, what: str, valid_from: int, asked) -> None:
    when = dates.format_micros(valid_from)
    if created:
        print(f"recorded {what}, valid_from {when}")
    else:
        print(f"unchanged: {what}, valid_from {when}, already says the same at "
              f"{dates.format_instant(asked)}; nothing recorded")


def _seats(seats) -> str:
    seats = list(seats)
    shown = ", ".join(f"{s:03d}" for s in seats[:10])
    return shown + (f" and {len(seats) - 10} more" if len(seats) > 10 else "")


def cmd_export(config, args) -> int:
    query = FplaneQuery(datestr=args.date, actual=args.actual, full=not args.short,
                        known_at=args.known_at, as_json=False)
    try:
        with Store.open_readonly(config.store_path) as store:
            answer = FplaneReader(config).answer(store, query, datetime.now(timezone.utc))
    except CodedError as err:
        raise Refused(err.message) from None
    if args.output is None:
        sys.stdout.write(answer.body)
    else:
        try:
            write_atomically(args.output, answer.body.encode("utf-8"))
        except OSError as err:
            raise Refused(f"{args.output}: cannot write it: {err.strerror}") from None
        print(f"wrote version {answer.version.id} to {args.output}", file=sys.stderr)
    return 0


def cmd_history(config, args) -> int:
    with Store.open_readonly(config.store_path) as store:
        versions = store.history()
        position_sets = store.position_set_history()

    # recorded_at keeps its microseconds: it is what a known_at query needs to name.
    for line in table(
            ("version", "valid_from", "valid_until", "recorded_at", "IFUs",
             "station / source / comment"),
            [(v.id, dates.format_micros(v.valid_from), until_text(v.valid_until),
              dates.format_micros(v.recorded_at), v.active_ifus, _provenance(v))
             for v in versions], right=(0, 4)):
        print(line)
    if position_sets:
        print()
        for line in table(
                ("posset", "valid_from", "recorded_at", "station / source / comment"),
                [(p.id, dates.format_micros(p.valid_from), dates.format_micros(p.recorded_at),
                  _provenance(p)) for p in position_sets], right=(0,)):
            print(line)
    if not versions:
        print("(no versions yet: fplane-admin import FILE --valid-from D)")
    return 0


def cmd_verify(config, args) -> int:
    problems = [] if config.data_dir.is_dir() else [f"missing directory {config.data_dir}"]
    spool = Spool(config.spool_dir)
    problems += spool.problems()
    with Store.open_readonly(config.store_path) as store:
        problems += store.integrity_problems()
        versions = len(store.history())
        held = len(store.updates_in_state("held"))
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        raise Refused(f"verify found {plural(len(problems), 'problem')}")
    print(f"store OK: {plural(versions, 'version')}, schema, content hashes and update records check out")
    print(f"spool: {plural(spool.backlog(), 'update')} waiting, {len(spool.failed_names())} failed "
          f"(in {spool.failed}), {held} held for review (fplane-admin held)")
    left = spool.temporaries(TEMPORARY_GRACE)
    if left:
        oldest = max(age for _, age in left)
        print(f"spool: {len(left)} temporary files in {spool.tmp}, left by web workers that "
              f"stopped while writing them (oldest {oldest:.0f} s); never accepted, the writer "
              f"removes them once {STALE_TEMPORARY_AGE:.0f} s old")
    beat = read_heartbeat(config.data_dir)
    print("writer: no heartbeat yet (has fplane-writer ever run?)" if beat is None else
          f"writer: pid {beat.get('pid')}, {beat.get('state')}, last heartbeat {beat.get('beat_at')}")
    return 0


def cmd_backup(config, args) -> int:
    target = args.file.absolute()
    if not target.parent.is_dir():
        raise Refused(f"{target.parent}: no such directory")
    if target.exists() and not args.force:
        # An earlier backup is worth keeping until the operator says otherwise.
        raise Refused(f"{target} exists; not replaced (backup --force FILE replaces it)")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with Store.open_readonly(config.store_path) as store:
        store.backup(temporary)
    with Store.open_readonly(temporary) as copy:
        problems = copy.integrity_problems()
        versions = len(copy.history())
    if problems:
        temporary.unlink()
        raise Refused(f"the copy failed its integrity check: {problems[0]}")
    # The copy is complete and checked: make it durable, then put it in place atomically.
    replace_durably(temporary, target)
    print(f"backup of {plural(versions, 'version')} written to {target} ({target.stat().st_size} bytes)")
    return 0


def cmd_snapshot(config, args) -> int:
    target = args.file.absolute()
    if not target.parent.is_dir():
        raise Refused(f"{target.parent}: no such directory")
    with Store.open_readonly(config.store_path) as store:
        tag = make_snapshot(store, target, config.timezone)
    try:
        SnapshotSource(target).close()   # read back as get_fplane --snapshot will
    except SnapshotError as err:
        raise Refused(f"the snapshot failed its check: {err}") from None
    print(f"snapshot {tag.text()} written to {target} ({target.stat().st_size} bytes)")
    return 0


def cmd_add_station(config, args) -> int:
    try:
        password = stations.add_station(config.station_list, args.station_id, args.name,
                                            args.roles)
    except ValueError as err:
        raise Refused(str(err)) from None
    roles = stations.format_roles(stations.parse_roles(args.roles))
    print(f"added station {args.station_id} ({args.name.strip()}; roles {roles}) to "
          f"{config.station_list}; its password, shown only this once:")
    print(password)  # alone on the last line: `fplane-admin ... | tail -1` takes it
    return 0


def cmd_passwd(config, args) -> int:
    try:
        password = stations.set_password(config.station_list, args.station_id)
    except ValueError as err:
        raise Refused(str(err)) from None
    print(f"new password for station {args.station_id} (the old one no longer works; "
          f"running workers notice at their next request), shown only this once:")
    print(password)  # alone on the last line
    return 0


def cmd_stations(config, args) -> int:
    if not config.station_list.exists():
        raise Refused(f"{config.station_list}: no station list (fplane-admin init makes one)")
    listed = stations.StationList(config.station_list)
    known = listed.stations()  # never the hashes
    if known:
        for line in table(("station_id", "name", "roles"),
                          [(s.station_id, s.name, stations.format_roles(s.roles) or "(none)")
                           for s in known]):
            print(line)
    else:
        print("(no stations yet: fplane-admin add-station ID --name N --roles R)")
    for problem in listed.problems:
        print(f"problem: {problem}")
    return 0


def cmd_held(config, args) -> int:
    with Store.open_readonly(config.store_path) as store:
        held = store.updates_in_state("held")
    if not held:
        print("no updates are held for review")
        return 0
    for line in table(("update", "received_at", "valid_from", "station", "why held"),
                      [(u.update_id, dates.format_micros(u.received_at),
                        dates.format_micros(u.valid_from), u.station, u.reason) for u in held]):
        print(line)
    print("release ID commits one, reject ID drops it")
    return 0


def cmd_release(config, args) -> int:
    with Store.open_writable(config.store_path) as store:
        update = _held_update(store, args.update_id)
        outcome = commit_update(store, config, update, _now_micros(), released_by=_operator())
    print(f"update {update.update_id}: {outcome.describe()}")
    return 0


def cmd_reject(config, args) -> int:
    with Store.open_writable(config.store_path) as store:
        update = _held_update(store, args.update_id)
        reason = f"rejected by {_operator()}" + (f": {args.reason}" if args.reason else "")
        store.record_update(update, "rejected", _now_micros(), reason=reason)
    print(f"update {update.update_id}: {reason}; nothing committed")
    return 0


def cmd_failed(config, args) -> int:
    spool = Spool(config.spool_dir)
    failed = spool.failed_names()
    if not failed:
        print(f"no failed updates in {spool.failed}")
        return 0
    print(f"{len(failed)} files the writer gave up on, in {spool.failed} (retry ID puts an "
          f"update back):")
    for name in failed:
        reason = spool.failure_reason_of(name)
        print(f"{name}  {reason}")
    return 0


def cmd_retry(config, args) -> int:
    spool = Spool(config.spool_dir)
    try:
        name = spool.retry_failed(args.update_id)
    except KeyError:
        raise Refused(f"no failed update {args.update_id!r} in {spool.failed} "
                      f"(fplane-admin failed lists them)") from None
    print(f"update {name} put back in {spool.new}: the writer tries it again "
          f"(GET /updates/ID follows it)")
    return 0


# -- helpers ----------------------------------------------------------------------------

def _instant(text: str, config, now: datetime) -> datetime:
    try:
        return dates.parse_datestr(text, config.timezone, now)
    except dates.DateError as err:
        raise Refused(str(err)) from None


def _held_update(store: Store, update_id: str):
    update = store.update_by_id(update_id)
    if update is None:
        raise Refused(f"no update {update_id!r} in the store (fplane-admin held lists the held ones)")
    if update.state != "held":
        raise Refused(f"update {update_id} is {update.state}, not held: nothing to do")
    return update


def _now_micros() -> int:
    return dates.to_micros(datetime.now(timezone.utc))


def _provenance(recorded) -> str:
    """Who recorded a version or position set, how, and why."""
    return " / ".join(part for part in (recorded.station, recorded.source, recorded.comment) if part)


def _operator() -> str:
    try:
        return f"admin:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "admin"


if __name__ == "__main__":
    sys.exit(main())
