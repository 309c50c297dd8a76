"""The running processes, as the tests, drills and benches see them through Linux /proc:
which processes a server's master has (uWSGI's workers, its router, the attached writer),
what they are called, whether they still run, and the CPU time and memory they use.

Processes come and go while /proc is read (a worker recycled, a writer restarted): one
that is gone before its files are read is simply not there."""

import os
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")   # /proc/<pid>/stat counts CPU time in these


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str                    # R, S, D, Z (zombie), ...
    cmdline: str                  # its arguments joined by spaces, or the title it set
    cpu_seconds: float            # user + system time of its own
    children_cpu_seconds: float   # user + system time of the children it has waited for


def read(pid: int) -> Proc | None:
    """Process ``pid``, or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return None
    # The command name in parentheses may hold spaces and parentheses: fields follow the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return Proc(pid=pid, ppid=int(fields[1]), state=fields[0],
                # uWSGI's process titles (auto-procname) pad with NULs, hence the strip
                cmdline=cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
                cpu_seconds=(int(fields[11]) + int(fields[12])) / TICK,
                children_cpu_seconds=(int(fields[13]) + int(fields[14])) / TICK)


def snapshot() -> dict[int, Proc]:
    """pid -> Proc of every process, each read once."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := read(int(entry))) is not None:
            procs[proc.pid] = proc
    return procs


def children(pid: int, procs: dict[int, Proc] | None = None) -> list[Proc]:
    """The processes whose parent is ``pid``, from ``procs`` (default: a new snapshot)."""
    procs = snapshot() if procs is None else procs
    return [p for p in procs.values() if p.ppid == pid]


def descendants(pid: int, procs: dict[int, Proc] | None = None) -> list[Proc]:
    """Children, grandchildren, ... of ``pid``, nearest first. By parent, not by session:
    uWSGI's attached writer runs in a session of its own."""
    procs = snapshot() if procs is None else procs
    found, frontier = [], {pid}
    while frontier:
        level = [p for p in procs.values() if p.ppid in frontier]
        found += level
        frontier = {p.pid for p in level}
    return found


def alive(pid: int) -> bool:
    """There and not a zombie (a zombie has ended; only its parent has yet to reap it)."""
    proc = read(pid)
    return proc is not None and proc.state != "Z"


def rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB (VmRSS), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):   # StopIteration: a zombie has no VmRSS line
        return None
