"""Request counters shared by the uWSGI workers, for /sys/stats.

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

import mmap
import os
import resource
import time
from dataclasses import dataclass
from typing import Callable

from wsgi import codes, dates

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
# A code's or status's place among its slot's counters; the one after the last is "other".
_CODE_PLACE = {code: i for i, code in enumerate(CODE_KEYS)}
_STATUS_PLACE = {str(status): i for i, status in enumerate(STATUS_KEYS)}


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
                "sampled_at": dates.format_unix(self.sampled_at)}


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
        self._owner = None                # the pid that claimed it
        self._fields: dict = {}           # (code, status line) -> the two counters to increment
        self._next_sample = 0.0

    def record(self, code: int, status: str) -> None:
        """Count one response: its X-FPlane-Code and the status line actually sent."""
        if self._owner != os.getpid():
            self._claim_slot()   # the first response of this process (a forked worker)
        fields = self._fields.get((code, status))
        if fields is None:
            fields = self._fields_of(code, status)
        counts = self._counts
        counts[fields[0]] += 1
        counts[fields[1]] += 1
        now = time.monotonic()
        if now >= self._next_sample:
            self._sample(now)

    def _fields_of(self, code: int, status: str) -> tuple[int, int]:
        """The two counters (code, status) of this process's slot that count such a
        response; remembered, because a server sends few distinct pairs."""
        base = self._base
        fields = (base + _CODES_AT + _CODE_PLACE.get(code, len(CODE_KEYS)),
                  base + _STATUSES_AT + _STATUS_PLACE.get(status[:3], len(STATUS_KEYS)))
        self._fields[code, status] = fields
        return fields

    def snapshot(self) -> Counts:
        if self._owner == os.getpid():
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
        """Find this process's slot, once per process (at its first record). uWSGI's master
        never records, so each worker it forks claims the slot of its worker id. A process
        forked from one that counted already would name that process's slot: it counts alone."""
        pid = os.getpid()
        slot = 0
        if pid != self._creator_pid and not self._private:
            slot = None if self._owner is not None else self._worker_slot()
            if slot is None or not 0 < slot < self._slots:
                # No slot of its own: sharing another's would lose increments to a race.
                self._go_private()
                slot = 0
        base = slot * SLOT_FIELDS
        counts = self._counts
        counts[base + PID] = pid
        counts[base + PROCESSES] += 1
        self._base = base
        self._owner = pid
        self._fields = {}
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


# -- the views ------------------------------------------------------------------------------
