"""The service describing itself: GET /sys, /sys/config, /sys/stats and /health.

Each answers text, or JSON with ``format=json`` or ``Accept: application/json``, and is
never cached (``Cache-Control: no-store``): it describes this moment.

Request counters across uWSGI workers
-------------------------------------
uWSGI runs several worker processes, and a count kept in one worker's memory would make
/sys/stats answer with whichever worker the request happened to reach. So the counters
live in one anonymous shared memory map (``mmap(-1, ...)``: MAP_SHARED), made when the
Service is built. examples/application.wsgi builds it in the uWSGI master (lazy-apps =
false), so every worker the master forks, respawned ones included, shares the same pages.

There are no locks: each worker increments only its own slot (its uWSGI worker id), so
no two processes ever write the same counter, and a reader sums the slots. A respawned
worker (max-requests, harakiri) takes over its predecessor's slot and keeps counting, so
the totals run from the master's start. A process that cannot be given a slot of its own
(forked by a server that is not uWSGI) counts into a private map instead of sharing one
it could corrupt. Every answer states its ``scope``: "all workers" when the totals cover
every worker, "this worker" when they cannot (lazy-apps = true: each worker built its own
Service and counts alone), "this process" when served by a single process or one that
counts alone. The numbers are never silently those of one worker.

record() is on every request's path (a few hundred ns: two increments and a clock read);
getrusage is sampled into the slot at most once a second.
"""

import dataclasses
import json
import logging
import mmap
import os
import resource
import sqlite3
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from webob import Request

from wsgi import codes, dates
from wsgi.heartbeat import read_heartbeat
from wsgi.responses import JSON, TEXT, CodedError, Prepared, wants_json
from wsgi.spool import Spool
from wsgi.stations import StationList
from wsgi.store import NO_LIMIT, StoreUnavailable

# The writer beats every [Writer] sleep seconds when idle and at least once a second
# between updates, but a single update may hold it longer: its commit, then its
# notification, whose SMTP exchange may wait 10 s per reply (writer/notify.py). So the
# heartbeat counts as fresh for three sleeps (two missed beats), and never less than 30 s.
# A writer silent for longer than that is not committing, which is what /health reports.
HEARTBEAT_MISSED_BEATS = 3
HEARTBEAT_MIN_LIMIT = 30.0

SAMPLE_INTERVAL = 1.0  # seconds between getrusage samples of a worker

# -- request counters -----------------------------------------------------------------------

# Counted responses by X-FPlane-Code and by HTTP status, each with a last "other" bucket
# (a code or status added later is counted there rather than lost).
CODE_KEYS = tuple(sorted(codes.CODES))
STATUS_KEYS = tuple(sorted({c.http_status for c in codes.CODES.values()} | {200, 202, 204, 304}))
OTHER = "other"

# One slot: int64 fields, then the code counters, then the status counters.
PID, PROCESSES, SAMPLED_AT, UTIME, STIME, MAXRSS = range(6)  # µs, µs, µs, KiB
_CODES_AT = 6
_STATUSES_AT = _CODES_AT + len(CODE_KEYS) + 1
SLOT_FIELDS = _STATUSES_AT + len(STATUS_KEYS) + 1
_FIELD_BYTES = 8


@dataclass(frozen=True)
class SlotUsage:
    """One worker slot: the process now counting in it and its last resource sample."""
    slot: int
    pid: int
    processes: int      # processes that have counted in this slot (1 + respawns)
    requests: int
    sampled_at: float   # Unix seconds of the resource sample
    utime: float        # CPU seconds, user
    stime: float        # CPU seconds, system
    maxrss_kib: int

    def as_json(self) -> dict:
        return {"slot": self.slot, "pid": self.pid, "processes": self.processes,
                "requests": self.requests, "utime_s": round(self.utime, 3),
                "stime_s": round(self.stime, 3), "maxrss_kib": self.maxrss_kib,
                "sampled_at": _format_unix(self.sampled_at)}


@dataclass(frozen=True)
class Counts:
    """What the counters say at one moment, and how far that reaches (scope)."""
    scope: str          # "all workers", "this worker" or "this process"
    scope_note: str     # the scope in a sentence: which processes are counted
    by_code: dict       # "100" -> responses, ..., "other"
    by_status: dict     # "200" -> responses, ..., "other"
    slots: tuple        # SlotUsage of every slot in use

    @property
    def requests(self) -> int:
        return sum(self.by_code.values())


def uwsgi_worker_id() -> int | None:
    """This process's uWSGI worker id (1..processes), None outside a uWSGI worker."""
    try:
        import uwsgi
    except ImportError:
        return None
    return uwsgi.worker_id() or None


def uwsgi_worker_count() -> int | None:
    """How many workers uWSGI runs (the processes option), None outside uWSGI."""
    try:
        import uwsgi
    except ImportError:
        return None
    return int(uwsgi.numproc)


# Counters to tell about a fork (os.fork, fork-based servers). Weak: a Service a test
# dropped must not live on. uWSGI forks its workers in C without these hooks, which is
# fine: its master never records, so a worker's first record() claims its slot anyway.
_LIVE_COUNTERS: "weakref.WeakSet[RequestCounters]" = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [c._after_fork() for c in list(_LIVE_COUNTERS)])


class RequestCounters:
    """Responses by code and status, and resource usage, of every worker sharing this map.

    Make it in the process that forks the workers (the uWSGI master). ``worker_slot``
    tells a forked process its slot (1 .. slots - 1; the maker counts in slot 0) and
    ``worker_count`` how many workers the server runs; both default to what uWSGI says.
    """

    def __init__(self, slots: int | None = None,
                 worker_slot: Callable[[], int | None] = uwsgi_worker_id,
                 worker_count: int | None = None):
        if worker_count is None and worker_slot is uwsgi_worker_id:
            worker_count = uwsgi_worker_count()
        self._worker_slot = worker_slot
        self._worker_count = worker_count
        self._slots = slots if slots is not None else (worker_count or 0) + 1
        self._creator_pid = os.getpid()
        self._private = False
        self._map = mmap.mmap(-1, self._slots * SLOT_FIELDS * _FIELD_BYTES)
        self._counts = memoryview(self._map).cast("q")
        self._base = -1                   # this process's slot * SLOT_FIELDS; -1: not claimed
        self._forked_from_recorder = False
        self._code_index: dict = {}
        self._status_index: dict = {}
        self._other_code = self._other_status = 0
        self._next_sample = 0.0
        _LIVE_COUNTERS.add(self)

    def record(self, code: int, status: str) -> None:
        """Count one response: its X-FPlane-Code and the status line actually sent."""
        if self._base < 0:
            self._claim_slot()
        counts = self._counts
        counts[self._code_index.get(code, self._other_code)] += 1
        counts[self._status_index.get(status[:3], self._other_status)] += 1
        now = time.monotonic()
        if now >= self._next_sample:
            self._sample(now)

    def snapshot(self) -> Counts:
        if self._base >= 0:
            self._sample(time.monotonic())  # this worker's own line is current
        values = self._counts.tolist()
        by_code = dict.fromkeys([*map(str, CODE_KEYS), OTHER], 0)
        by_status = dict.fromkeys([*map(str, STATUS_KEYS), OTHER], 0)
        slots = []
        for slot in range(self._slots):
            fields = values[slot * SLOT_FIELDS:(slot + 1) * SLOT_FIELDS]
            if not fields[PID]:
                continue  # never used
            for key, n in zip(by_code, fields[_CODES_AT:_STATUSES_AT]):
                by_code[key] += n
            for key, n in zip(by_status, fields[_STATUSES_AT:]):
                by_status[key] += n
            slots.append(SlotUsage(
                slot=slot, pid=fields[PID], processes=fields[PROCESSES],
                requests=sum(fields[_CODES_AT:_STATUSES_AT]), sampled_at=fields[SAMPLED_AT] / 1e6,
                utime=fields[UTIME] / 1e6, stime=fields[STIME] / 1e6, maxrss_kib=fields[MAXRSS]))
        scope, note = self._scope(slots)
        return Counts(scope, note, {k: n for k, n in by_code.items() if n},
                      {k: n for k, n in by_status.items() if n}, tuple(slots))

    def _scope(self, slots) -> tuple[str, str]:
        pid = os.getpid()
        if self._private:
            return "this process", (f"only the requests of this process (pid {pid}): it was forked "
                                    f"without a worker slot of its own, so it counts alone")
        if pid != self._creator_pid:
            master = " (the uWSGI master)" if self._worker_count is not None else ""
            return "all workers", (f"totals of every worker forked from pid {self._creator_pid}"
                                   f"{master} since it started; {len(slots)} worker slots have "
                                   f"answered so far")
        if (self._worker_count or 0) > 1:
            return "this worker", (f"only the requests of this worker (pid {pid}), one of "
                                   f"{self._worker_count}: the app was loaded in each worker "
                                   f"(lazy-apps = true), so each counts alone")
        others = sum(1 for s in slots if s.pid != pid)
        if others:
            return "all workers", (f"totals of this process (pid {pid}) and the {others} "
                                   f"processes forked from it")
        return "this process", f"the requests answered by this process (pid {pid})"

    def _claim_slot(self) -> None:
        """Find this process's slot, once per process (at its first record)."""
        pid = os.getpid()
        slot = 0
        if pid != self._creator_pid and not self._private:
            slot = None if self._forked_from_recorder else self._worker_slot()
            if slot is None or not 0 < slot < self._slots:
                # No slot of its own: sharing another's would lose increments to a race.
                self._go_private()
                slot = 0
        base = slot * SLOT_FIELDS
        counts = self._counts
        counts[base + PID] = pid
        counts[base + PROCESSES] += 1
        self._code_index = {code: base + _CODES_AT + i for i, code in enumerate(CODE_KEYS)}
        self._status_index = {str(s): base + _STATUSES_AT + i for i, s in enumerate(STATUS_KEYS)}
        self._other_code = base + _STATUSES_AT - 1
        self._other_status = base + SLOT_FIELDS - 1
        self._base = base
        self._next_sample = 0.0

    def _go_private(self) -> None:
        self._map = mmap.mmap(-1, SLOT_FIELDS * _FIELD_BYTES)
        self._counts = memoryview(self._map).cast("q")
        self._slots = 1
        self._private = True

    def _sample(self, now: float) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        counts, base = self._counts, self._base
        counts[base + SAMPLED_AT] = int(time.time() * 1e6)
        counts[base + UTIME] = int(usage.ru_utime * 1e6)
        counts[base + STIME] = int(usage.ru_stime * 1e6)
        counts[base + MAXRSS] = usage.ru_maxrss
        self._next_sample = now + SAMPLE_INTERVAL

    def _after_fork(self) -> None:
        # The child is a new process: it needs a slot of its own. If the parent counted
        # already, the slot its worker id would name is the parent's: the child counts alone.
        self._forked_from_recorder = self._base >= 0
        self._base = -1


# -- the views ------------------------------------------------------------------------------

def heartbeat_limit(config) -> float:
    """How old the writer's heartbeat may be and still count as fresh (seconds)."""
    return max(HEARTBEAT_MISSED_BEATS * config.writer_sleep, HEARTBEAT_MIN_LIMIT)


def heartbeat_problem(beat: dict | None, now: float, limit: float) -> str | None:
    """Why the heartbeat says the writer is not working, or None when it is."""
    if beat is None:
        return "no writer heartbeat: has fplane-writer ever run?"
    age = _heartbeat_age(beat, now)
    if age is None:
        return "the writer heartbeat has no time in it (beat_at_unix)"
    if age > limit:
        return f"writer heartbeat is {age:.0f} s old (fresh means at most {limit:.0f} s)"
    state = beat.get("state")
    if state == "stopped":
        return f"the writer stopped at {beat.get('beat_at')}"
    if isinstance(state, str) and state.startswith("waiting"):
        return f"the writer is {state}"
    return None


def _heartbeat_age(beat: dict, now: float) -> float | None:
    at = beat.get("beat_at_unix")
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        return None
    return now - at


class SystemViews:
    """The four system answers of one Service. Built in the uWSGI master with the Service."""

    def __init__(self, config, counters: RequestCounters, store, stations: StationList,
                 spool: Spool):
        self.config = config
        self.counters = counters
        self._store = store        # the app's WorkerStore: this worker's read-only connection
        self._stations = stations
        self._spool = spool
        self._started_at = time.time()
        self._started_monotonic = time.monotonic()

    # -- GET /sys -----------------------------------------------------------------------

    def links(self, req: Request) -> Prepared:
        base = req.script_name
        links = [{"href": f"{base}{path}", "title": title} for path, title in (
            ("/sys/config", "the effective configuration (secrets left out)"),
            ("/sys/stats", "uptime, requests and responses by code, resource usage, store, "
                           "spool and writer"),
            ("/health", "200 when the store is readable and the writer's heartbeat is fresh, "
                        "503 with the reason otherwise"),
        )]
        if _json_asked(req):
            return _answer({"code": codes.OK, "links": links})
        text = (f"{codes.OK} fplaneserver: the service describing itself\n"
                + "".join(f"{link['href']:<13} {link['title']}\n" for link in links)
                + "each answers text, or JSON with format=json or Accept: application/json\n")
        return _answer(text)

    # -- GET /sys/config ------------------------------------------------------------------

    def config_view(self, req: Request) -> Prepared:
        as_json = _json_asked(req)
        sections = config_sections(self.config)
        stations = self._stations.stations()
        station_list = {
            "count": len(stations),
            "stations": [{"station_id": s.station_id, "roles": sorted(s.roles)} for s in stations],
            "problems": len(self._stations.problems),
        }
        if as_json:
            document = {"code": codes.OK, "config_file": str(self.config.path),
                        "store_file": str(self.config.store_path)}
            for section, entries in sections.items():
                document[section] = {key: value for key, value, _ in entries}
            document["stations"] = station_list
            return _answer(document)
        lines = [f"{codes.OK} OK", "# the effective configuration (secrets left out)",
                 f"config_file = {self.config.path}", f"store_file = {self.config.store_path}"]
        for section, entries in sections.items():
            lines.append(f"[{section}]")
            for key, value, note in entries:
                if key == "static_rows_count":
                    continue  # the text says it in static_rows' note
                lines.append(f"{key} = {_ini_value(value)}" + (f"  ; {note}" if note else ""))
        lines.append("[stations]")
        lines.append(f"count = {station_list['count']}"
                     + (f"  ; {station_list['problems']} unusable lines skipped"
                        if station_list["problems"] else ""))
        for s in station_list["stations"]:
            lines.append(f"{s['station_id']} = {';'.join(s['roles']) or '(no roles)'}")
        return _answer("\n".join(lines) + "\n")

    # -- GET /sys/stats -------------------------------------------------------------------

    def stats(self, req: Request) -> Prepared:
        as_json = _json_asked(req)
        now = time.time()
        counts = self.counters.snapshot()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        store = self._store_state()
        beat = read_heartbeat(self.config.data_dir)
        age = None if beat is None else _heartbeat_age(beat, now)
        document = {
            "code": codes.OK,
            "pid": os.getpid(),
            "started_at": _format_unix(self._started_at),
            "uptime_s": round(time.monotonic() - self._started_monotonic, 3),
            "requests": {
                "scope": counts.scope, "note": counts.scope_note,
                "total": counts.requests, "by_code": counts.by_code, "by_status": counts.by_status,
            },
            "resources": {
                "this_worker": {
                    "pid": os.getpid(), "utime_s": round(usage.ru_utime, 3),
                    "stime_s": round(usage.ru_stime, 3), "maxrss_kib": usage.ru_maxrss,
                    "minflt": usage.ru_minflt, "majflt": usage.ru_majflt,
                    "nvcsw": usage.ru_nvcsw, "nivcsw": usage.ru_nivcsw,
                },
                "workers": [slot.as_json() for slot in counts.slots],
            },
            "store": store,
            "spool": {"backlog": self._spool.backlog(), "failed": len(self._spool.failed_names())},
            "writer": {
                "heartbeat": beat,
                "age_s": None if age is None else round(age, 3),
                "fresh_limit_s": heartbeat_limit(self.config),
                "problem": heartbeat_problem(beat, now, heartbeat_limit(self.config)),
            },
        }
        if as_json:
            return _answer(document)
        return _answer(_stats_text(document))

    # -- GET /health ----------------------------------------------------------------------

    def health(self, req: Request) -> Prepared:
        as_json = _json_asked(req)
        now = time.time()
        limit = heartbeat_limit(self.config)
        store = self._store_state()
        beat = read_heartbeat(self.config.data_dir)
        writer_problem = heartbeat_problem(beat, now, limit)
        spool_problems = self._spool.problems()
        problems = ([f"store unavailable: {store['problem']}"] if store["problem"] else []) \
            + ([writer_problem] if writer_problem else []) + spool_problems
        age = None if beat is None else _heartbeat_age(beat, now)
        checks = {
            "store": _store_line(store),
            "writer": (writer_problem if beat is None or age is None else
                       f"heartbeat {age:.1f} s old (fresh means at most {limit:.0f} s), "
                       f"pid {beat.get('pid')}, {beat.get('state')}"),
            "spool": "; ".join(spool_problems) or
                     f"{self._spool.backlog()} waiting, {len(self._spool.failed_names())} failed",
        }
        code = codes.UNAVAILABLE if problems else codes.OK
        message = f"not healthy: {'; '.join(problems)}" if problems else "healthy"
        if as_json:
            return _answer({"code": code, "message": message, "errors": problems, "checks": checks},
                           code)
        text = f"{code} {message}\n" + "".join(f"{name}: {line}\n" for name, line in checks.items())
        return _answer(text, code)

    # -- shared ---------------------------------------------------------------------------

    def _store_state(self) -> dict:
        """The store's files and newest version, or why it cannot be read (never raises)."""
        files = _file_sizes(self.config.store_path)
        state = {"size_bytes": sum(files.values()), "files": files, "newest_version": None,
                 "problem": None}
        if not self.config.store_path.is_file():
            # Checked apart from the connection: a worker's open connection still reads a
            # store file that has been deleted or moved away, a restart would not.
            state["problem"] = "there is no store file (fplane-admin init makes it)"
            return state
        try:
            version = self._store.get().version_at(NO_LIMIT)
        except StoreUnavailable as err:
            state["problem"] = str(err)
        except sqlite3.Error as err:
            state["problem"] = f"the store cannot be read ({err})"
        else:
            if version is not None:
                state["newest_version"] = {
                    "version": version.id, "valid_from": dates.format_micros(version.valid_from),
                    "recorded_at": dates.format_micros(version.recorded_at),
                    "station": version.station, "active_ifus": version.active_ifus}
        return state


# -- the configuration ------------------------------------------------------------------

# Config field -> (config.ini section, key, unit note), in config.ini's order. A field not
# listed here (added later) still appears, under [other]: never silently missing.
_CONFIG_KEYS = {
    "log": ("General", "log", ""), "loglevel": ("General", "loglevel", ""),
    "station_list": ("General", "station_list", ""), "data_dir": ("General", "data_dir", ""),
    "spool_dir": ("General", "spool_dir", ""),
    "max_body": ("Server", "max_body", "bytes"), "cors_origins": ("Server", "cors_origins", ""),
    "timezone": ("Site", "timezone", ""), "static_rows_file": ("Site", "static_rows", ""),
    "max_age": ("Update", "max_age", "seconds"), "max_future": ("Update", "max_future", "seconds"),
    "writer_sleep": ("Writer", "sleep", "seconds"), "max_attempts": ("Writer", "max_attempts", ""),
    "smtp_host": ("Notify", "smtp_host", ""), "smtp_port": ("Notify", "smtp_port", ""),
    "sender": ("Notify", "sender", ""), "recipients": ("Notify", "recipients", ""),
}
_NOT_SETTINGS = {"path", "static_rows"}  # the file itself; the rows (counted instead)
# A field whose name says it holds a secret is left out, whatever it is.
_SECRET_WORDS = ("password", "passwd", "secret", "hash", "token", "credential")


def config_sections(config) -> dict[str, list[tuple[str, object, str]]]:
    """Section -> [(key, JSON-ready value, note)] of every setting, secrets left out."""
    sections: dict[str, list] = {}
    for field in dataclasses.fields(config):
        if field.name in _NOT_SETTINGS or any(w in field.name.lower() for w in _SECRET_WORDS):
            continue
        section, key, note = _CONFIG_KEYS.get(field.name, ("other", field.name, ""))
        value = getattr(config, field.name)
        entries = sections.setdefault(section, [])
        if field.name == "loglevel":
            value = logging.getLevelName(value)
        elif field.name == "log" and value is None:
            note = "none: standard error"
        elif field.name == "static_rows_file":
            note = f"{len(config.static_rows)} rows" + ("" if value else ": the 000 row only")
        entries.append((key, _json_value(value), note))
        if field.name == "static_rows_file":
            entries.append(("static_rows_count", len(config.static_rows), ""))
    return sections


def _json_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if hasattr(value, "key"):  # ZoneInfo
        return value.key
    return str(value)  # paths, and whatever a later field holds


def _ini_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


# -- helpers ----------------------------------------------------------------------------

def _json_asked(req: Request) -> bool:
    try:
        formats = set(req.GET.getall("format"))
    except UnicodeDecodeError:
        raise CodedError(codes.BAD_PARAMETER, "the query string is not valid UTF-8") from None
    if len(formats) > 1:
        raise CodedError(codes.BAD_PARAMETER, "format is given more than once with different values")
    fmt = formats.pop() if formats else None
    if fmt is not None and fmt not in ("txt", "json"):
        raise CodedError(codes.BAD_PARAMETER, f"format must be txt or json, not {fmt[:20]!r}")
    return wants_json(req.environ, fmt)


def _answer(content: dict | str, code: int = codes.OK) -> Prepared:
    """A JSON answer of a dict, a text answer of a str; never to be cached."""
    if isinstance(content, dict):
        body, content_type = json.dumps(content, indent=1) + "\n", JSON
    else:
        body, content_type = content, TEXT
    return Prepared(codes.http_status_line(code),
                    [("Content-Type", content_type), ("X-FPlane-Code", str(code)),
                     ("Cache-Control", "no-store")],
                    body.encode("utf-8"), code=code)


def _file_sizes(store_path) -> dict[str, int]:
    sizes = {}
    for path in (store_path, store_path.with_name(store_path.name + "-wal")):
        try:
            sizes[path.name] = path.stat().st_size
        except OSError:
            pass
    return sizes


def _format_unix(seconds: float) -> str:
    return dates.format_instant(datetime.fromtimestamp(round(seconds, 3), timezone.utc))


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    parts = [f"{days} d"] * bool(days) + [f"{h} h"] * bool(hours) + [f"{m} min"] * bool(minutes)
    return " ".join(parts + [f"{s} s"])


def _store_line(store: dict) -> str:
    if store["problem"]:
        return f"unavailable: {store['problem']}"
    newest = store["newest_version"]
    return "readable, " + ("no versions yet" if newest is None else
                           f"newest version {newest['version']} valid from {newest['valid_from']}"
                           f" (recorded {newest['recorded_at']})")


def _counts_line(counts: dict) -> str:
    return ", ".join(f"{key}: {n}" for key, n in counts.items()) or "none"


def _stats_text(d: dict) -> str:
    requests, resources, store, spool, writer = (
        d["requests"], d["resources"], d["store"], d["spool"], d["writer"])
    this = resources["this_worker"]
    lines = [
        f"{codes.OK} OK",
        f"started_at: {d['started_at']} (up {_duration(d['uptime_s'])})",
        f"answered by: pid {d['pid']}",
        f"scope: {requests['scope']}: {requests['note']}",
        f"requests: {requests['total']} (this one not yet counted)",
        f"responses by code: {_counts_line(requests['by_code'])}",
        f"responses by status: {_counts_line(requests['by_status'])}",
        f"this worker: pid {this['pid']}, cpu {this['utime_s']:.2f} s user"
        f" + {this['stime_s']:.2f} s system, max rss {this['maxrss_kib']} KiB",
    ]
    for w in resources["workers"]:
        lines.append(f"worker slot {w['slot']}: pid {w['pid']}, {w['requests']} requests,"
                     f" cpu {w['utime_s']:.2f} s user + {w['stime_s']:.2f} s system,"
                     f" max rss {w['maxrss_kib']} KiB (sampled {w['sampled_at']};"
                     f" {w['processes']} process{'es' * (w['processes'] != 1)} so far)")
    lines.append(f"store: {_store_line(store)}")
    lines.append(f"store size: {store['size_bytes']} bytes ("
                 + (", ".join(f"{name} {size}" for name, size in store["files"].items()) or "no files")
                 + ")")
    lines.append(f"spool: {spool['backlog']} waiting, {spool['failed']} failed")
    beat = writer["heartbeat"]
    if beat is None:
        lines.append(f"writer: {writer['problem']}")
    else:
        age = "unknown" if writer["age_s"] is None else f"{writer['age_s']:.1f} s"
        lines.append(f"writer: heartbeat {age} old (fresh means at most {writer['fresh_limit_s']:.0f} s)"
                     + (f": {writer['problem']}" if writer["problem"] else ""))
        lines.extend(f"writer {key}: {value}" for key, value in beat.items())
    return "\n".join(lines) + "\n"
