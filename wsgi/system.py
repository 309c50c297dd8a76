"""The service describing itself: GET /sys, /sys/config, /sys/stats and /health.

Each answers text, or JSON with ``format=json`` or ``Accept: application/json``, and is
never cached (``Cache-Control: no-store``): it describes this moment. The request counts
come from wsgi/counters.py, shared by the uWSGI workers.
"""

import json
import logging
import os
import resource
import sqlite3
import time

from webob import Request, Response

from wsgi import codes, dates
from wsgi.config import SETTINGS
from wsgi.counters import RequestCounters
from wsgi.heartbeat import read_heartbeat
from wsgi.reading import json_asked
from wsgi.responses import JSON, TEXT, respond
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

    def links(self, req: Request) -> Response:
        base = req.script_name
        links = [{"href": f"{base}{path}", "title": title} for path, title in (
            ("/sys/config", "the effective configuration (secrets left out)"),
            ("/sys/stats", "uptime, requests and responses by code, resource usage, store, "
                           "spool and writer"),
            ("/health", "200 when the store is readable and the writer's heartbeat is fresh, "
                        "503 with the reason otherwise"),
        )]
        if json_asked(req):
            return _answer({"code": codes.OK, "links": links})
        text = (f"{codes.OK} fplaneserver: the service describing itself\n"
                + "".join(f"{link['href']:<13} {link['title']}\n" for link in links)
                + "each answers text, or JSON with format=json or Accept: application/json\n")
        return _answer(text)

    # -- GET /sys/config ------------------------------------------------------------------

    def config_view(self, req: Request) -> Response:
        as_json = json_asked(req)
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

    def stats(self, req: Request) -> Response:
        as_json = json_asked(req)
        now = time.time()
        counts = self.counters.snapshot()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        store = self._store_state()
        beat = read_heartbeat(self.config.data_dir)
        age = None if beat is None else _heartbeat_age(beat, now)
        document = {
            "code": codes.OK,
            "pid": os.getpid(),
            "started_at": dates.format_unix(self._started_at),
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

    def health(self, req: Request) -> Response:
        as_json = json_asked(req)
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
# A key whose name says it holds a secret is left out, whatever it is.
_SECRET_WORDS = ("password", "passwd", "secret", "hash", "token", "credential")


def config_sections(config) -> dict[str, list[tuple[str, object, str]]]:
    """Section -> [(key, JSON-ready value, note)] of every setting, secrets left out."""
    sections: dict[str, list] = {}
    for setting in SETTINGS:
        if any(word in setting.key.lower() for word in _SECRET_WORDS):
            continue
        value, note = getattr(config, setting.field), setting.note
        entries = sections.setdefault(setting.section, [])
        if setting.field == "loglevel":
            value = logging.getLevelName(value)
        elif setting.field == "log" and value is None:
            note = "none: standard error"
        elif setting.field == "static_rows_file":
            note = f"{len(config.static_rows)} rows" + ("" if value else ": the 000 row only")
        entries.append((setting.key, _json_value(value), note))
        if setting.field == "static_rows_file":
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

def _answer(content: dict | str, code: int = codes.OK) -> Response:
    """A JSON answer of a dict, a text answer of a str; never to be cached."""
    if isinstance(content, dict):
        body, content_type = json.dumps(content, indent=1) + "\n", JSON
    else:
        body, content_type = content, TEXT
    return respond(code, body, content_type)


def _file_sizes(store_path) -> dict[str, int]:
    sizes = {}
    for path in (store_path, store_path.with_name(store_path.name + "-wal")):
        try:
            sizes[path.name] = path.stat().st_size
        except OSError:
            pass
    return sizes


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
