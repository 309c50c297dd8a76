"""fplane-admin: the operator's tool for the store (contract section 8).

    fplane-admin -c config.ini init
    fplane-admin -c config.ini import FILE --valid-from D [--positions] [--comment C]
    fplane-admin -c config.ini export D [-o FILE] [--short] [--actual] [--known-at D]
    fplane-admin -c config.ini history
    fplane-admin -c config.ini verify
    fplane-admin -c config.ini backup FILE
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
from wsgi.config import ConfigError, load_config
from wsgi.files import replace_durably, write_atomically
from wsgi.reading import FplaneQuery, FplaneReader, until_text
from wsgi.heartbeat import read_heartbeat
from wsgi.responses import CodedError
from wsgi.spool import STALE_TEMPORARY_AGE, TEMPORARY_GRACE, Spool
from wsgi.store import Store, StoreUnavailable
from writer.commit import commit_update


class Refused(Exception):
    """The command cannot do what was asked; str() says why, for standard error."""


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
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
                        required="FPLANE_CONFIG" not in os.environ,
                        help="config.ini (default: $FPLANE_CONFIG)")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create the data directory, spool and an empty store "
                                            "(or migrate an existing store)")
    init.set_defaults(command=cmd_init)

    imp = commands.add_parser("import", help="record an fplane file as the configuration from a date")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--valid-from", required=True, metavar="D",
                     help="when the configuration starts (any date form, e.g. 20180707)")
    imp.add_argument("--positions", action="store_true",
                     help="record the file's X/Y as a measured position set instead")
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
    backup.set_defaults(command=cmd_backup)

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
        print(f"store {config.store_path} is ready (schema {schema}, {versions} versions)")
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
        raise Refused(f"{args.file}: not imported ({len(parsed.errors)} problems); nothing recorded")

    station = _operator()
    source = f"import of {args.file.name}"
    with Store.open_writable(config.store_path) as store:
        if args.positions:
            # Only the seats the file lists were measured; the field centre is 0,0 by definition.
            positions = {r.ifuslot: (r.x, r.y) for r in parsed.rows
                         if r.ifuslot != fplane.REFERENCE_SLOT}
            recorded, created = store.record_position_set(
                positions, dates.to_micros(valid_from), dates.to_micros(now), station,
                args.comment, source)
            what = f"position set {recorded.id} ({len(positions)} seats)"
        else:
            recorded, created = store.record_version(
                parsed.rows, dates.to_micros(valid_from), dates.to_micros(now), station,
                args.comment, source)
            what = f"version {recorded.id} ({recorded.active_ifus} active IFUs)"

    when = dates.format_micros(recorded.valid_from)
    if created:
        print(f"recorded {what}, valid_from {when}")
    else:
        print(f"unchanged: {what}, valid_from {when}, already says the same at "
              f"{dates.format_instant(valid_from)}; nothing recorded")
    return 0


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
    print(f"{'version':>7}  {'valid_from':<20}  {'valid_until':<20}  {'recorded_at':<27}  "
          f"{'IFUs':>4}  station / source / comment")
    for v in versions:
        print(f"{v.id:>7}  {dates.format_micros(v.valid_from):<20}  "
              f"{until_text(v.valid_until):<20}  "
              f"{dates.format_micros(v.recorded_at):<27}  {v.active_ifus:>4}  "
              + " / ".join(part for part in (v.station, v.source, v.comment) if part))
    if position_sets:
        print()
        print(f"{'posset':>7}  {'valid_from':<20}  {'recorded_at':<27}  station / source / comment")
        for p in position_sets:
            print(f"{p.id:>7}  {dates.format_micros(p.valid_from):<20}  "
                  f"{dates.format_micros(p.recorded_at):<27}  "
                  + " / ".join(part for part in (p.station, p.source, p.comment) if part))
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
        raise Refused(f"verify found {len(problems)} problems")
    print(f"store OK: {versions} versions, schema, content hashes and update records check out")
    print(f"spool: {spool.backlog()} updates waiting, {len(spool.failed_names())} failed "
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
    print(f"backup of {versions} versions written to {target} ({target.stat().st_size} bytes)")
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
        id_width = max(len("station_id"), *(len(s.station_id) for s in known))
        name_width = max(len("name"), *(len(s.name) for s in known))
        print(f"{'station_id':<{id_width}}  {'name':<{name_width}}  roles")
        for s in known:
            print(f"{s.station_id:<{id_width}}  {s.name:<{name_width}}  "
                  f"{stations.format_roles(s.roles) or '(none)'}")
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
    print(f"{'update':<20}  {'received_at':<20}  {'valid_from':<20}  {'station':<12}  why held")
    for u in held:
        print(f"{u.update_id:<20}  {dates.format_micros(u.received_at)[:20]:<20}  "
              f"{dates.format_micros(u.valid_from):<20}  {u.station:<12}  {u.reason}")
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


def _operator() -> str:
    try:
        return f"admin:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "admin"


if __name__ == "__main__":
    sys.exit(main())
