"""Soak (make bench): 200 concurrent readers for 60 s while the writer commits an update
every second.

Target (issue 18): zero errors, zero responses mixing two versions (the X-FPlane-Version
header always matches the body's provenance lines), memory per worker flat (RSS at the end
within 10 % of after warm-up).

The real service: examples/uwsgi.ini under uWSGI (4 workers, routers, the attached
fplane-writer, [Writer] sleep 0.2 s), a store made by fplane-admin init + import, one
station made by fplane-admin add-station.

- Readers: wrk, READERS connections, tests/bench/wrk_soak.lua: GET /fplane/<date> with
  the date latest / now / empty / fixed old dates / an instant of the last 90 s / a random
  instant since 2018, actual_pos and full_fplane 0 or 1, text or JSON. Every answer is
  checked in the script: HTTP 200, the header's version is the one the body names, and the
  body's rows are that version's (every version has an IFU of its own on seat 031: version
  N > 1 has IFU IFU_BASE + N - 1 there).
  Any other HTTP status, a connect / read / write error or a timeout (5 s) fails the run
  (harness.run_wrk).
- Writer: a poster thread posts a new hardware status every second (the next IFU on seat
  031, timestamp now) with the station's password, as the TCS does; each must be answered
  100, and at the end each update must be committed as the version it was meant to be
  (GET /updates/<id>); the writer's delay from receipt to commit is reported.
- Warm-up: WARMUP seconds of the same, the poster already posting (the per-worker caches
  fill, and commits empty them), then the workers' RSS (/proc/<pid>/status VmRSS); it is
  sampled every second during the soak and read again at the end. The one difference from
  examples/uwsgi.ini: max-requests off (soak_ini), so each worker lives through the soak.

Environment: SOAK_SECONDS (default 60) and SOAK_READERS (default 200) for a shorter trial.
Writes tests/artifacts/bench_soak.json, and its section of tests/bench/RESULTS.md when run
at full size.
"""

import http.client
import json
import os
import shutil
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest

from tests import processes
from tests.bench import harness
from tests.bench.test_update_path import process_tree_cpu
from tests.fplane_samples import make_rows, status_from_rows
from tests.results import machine_info, record
from tests.support import (REPO, add_station, import_rows, init_store, update_form, uwsgi_workers,
                           write_config)

pytestmark = pytest.mark.bench

SECONDS = int(os.environ.get("SOAK_SECONDS", "60"))
READERS = int(os.environ.get("SOAK_READERS", "200"))
WARMUP = 20
WRK_THREADS = 2
POST_EVERY = 1.0
RSS_GROWTH_LIMIT = 0.10
# the first version is valid from 2018-06-01 00:00 site time (05:00Z): random instants start after
FIRST_INSTANT = int(datetime(2018, 6, 2, tzinfo=timezone.utc).timestamp())
SOAK_LUA = harness.BENCH_DIR / "wrk_soak.lua"
ARTIFACT = REPO / "tests" / "artifacts" / "bench_soak.json"
COMMAND = "make bench PYTEST_ARGS='-k soak'"
TARGET = ("0 errors, 0 answers mixing two versions, RSS of every worker at the end within "
          "10 % of after warm-up")
SEAT = 31
HISTORY = 100    # versions imported before the service starts
IFU_BASE = 300   # version N > 1 has IFU IFU_BASE + N - 1 on SEAT; ids make_rows never uses


def soak_script(directory) -> "os.PathLike":
    """wrk_soak.lua, wrk_report.lua, and a done() that calls both reports."""
    path = directory / "soak-combined.lua"
    path.write_text(SOAK_LUA.read_text() + "\n" + harness.REPORT_LUA.read_text() + "\n"
                    "local report_done = done\n"
                    "function done(summary, latency, requests)\n"
                    "  report_done(summary, latency, requests)\n"
                    "  soak_done(summary, latency, requests)\n"
                    "end\n")
    return path


def soak_ini(directory) -> "os.PathLike":
    """examples/uwsgi.ini with its max-requests lines off, so that each worker lives through
    the whole soak and its RSS at the end says whether it leaks (in the shipped ini, uWSGI
    recycles a worker after ~5000 requests, which would hide a slow leak and leave fresh
    processes to compare with warm ones). Every other line means what it means there."""
    original = harness.UWSGI_INI.read_text().replace("%d", str(harness.UWSGI_INI.parent))
    lines = original.splitlines(keepends=True)
    copy = ["max-requests = 0\n" if line.startswith("max-requests =") else
            "; max-requests-delta: off with max-requests\n" if line.startswith("max-requests-delta =")
            else line for line in lines]
    assert sum(a != b for a, b in zip(lines, copy)) == 2 and len(copy) == len(lines)
    path = directory / "uwsgi-soak.ini"
    path.write_text("".join(copy))
    return path


def workers_rss(master: int) -> dict[str, dict]:
    """'worker N' -> {pid, rss_kib} of uWSGI's web workers."""
    out = {}
    for number, pid in uwsgi_workers(master).items():
        rss = processes.rss_kib(pid)
        if rss is not None:   # else recycled meanwhile
            out[f"worker {number}"] = {"pid": pid, "rss_kib": rss}
    return out


def with_ifu(rows, ifuid: int) -> list:
    """``rows`` with IFU ``ifuid`` on SEAT."""
    return [replace(r, ifuid=ifuid) if r.ifuslot == SEAT else r for r in rows]


class Poster(threading.Thread):
    """Posts a new configuration every POST_EVERY seconds until stopped: the one that is
    to become version v (after the history: v = HISTORY + 2, ...) has IFU IFU_BASE + v - 1
    on seat 031."""

    def __init__(self, port: int, password: str, rows):
        super().__init__(daemon=True)
        self.port, self.password, self.rows = port, password, rows
        self.stopping = threading.Event()
        self.accepted: list[tuple[str, int]] = []   # (update id, the version it must become)
        self.refused: list[str] = []

    def run(self):
        next_at = time.monotonic()
        while not self.stopping.is_set():
            version = 2 + HISTORY + len(self.accepted)
            rows = with_ifu(self.rows, IFU_BASE + version - 1)
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            data = {"config": status_from_rows(rows, now), "commit": True}
            body = urlencode(update_form("tcs", self.password, data)).encode()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("POST", "/fplane", body=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded"})
                answer = connection.getresponse()
                text = answer.read().decode(errors="replace")
                connection.close()
                if answer.headers.get("X-FPlane-Code") == "100":
                    self.accepted.append((answer.headers["X-FPlane-Update"], version))
                else:
                    self.refused.append(f"HTTP {answer.status} {text[:200]}")
            except (OSError, http.client.HTTPException) as err:
                self.refused.append(f"no answer: {err}")
            next_at = max(next_at + POST_EVERY, time.monotonic())
            self.stopping.wait(max(0.0, next_at - time.monotonic()))


def committed_versions(base: str, accepted, timeout: float = 120) -> dict[str, dict]:
    """update id -> its GET /updates/<id> (JSON), once the writer has decided on it."""
    deadline = time.monotonic() + timeout
    states = {}
    for uid, _ in accepted:
        while True:
            with urllib.request.urlopen(f"{base}/updates/{uid}?format=json", timeout=10) as r:
                status = json.load(r)
            if status["state"] != "queued" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        states[uid] = status
    return states


def _seconds_between(earlier: str, later: str) -> float:
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parse(later) - parse(earlier)).total_seconds()


def test_soak(tmp_path):
    harness.wrk_binary()
    config = write_config(tmp_path, Writer={"sleep": "0.2"})
    init_store(config)
    rows = make_rows()
    import_rows(config, rows, "20180601", "--comment", "soak: the first version")
    first_ifu = next(r.ifuid for r in rows if r.ifuslot == SEAT)
    assert next(r for r in rows if r.ifuslot == SEAT).active
    # History to read: versions 2 .. HISTORY + 1 spread from 2018 until last week, each with
    # its own IFU on the seat, as the posted ones will have. Reading them fills every bounded
    # per-worker cache (rendered files, rows by version, the row memo) during the warm-up.
    first_day = datetime(2018, 6, 2, tzinfo=timezone.utc)
    step = (datetime.now(timezone.utc) - timedelta(days=7) - first_day) / HISTORY
    for n in range(HISTORY):
        version = 2 + n
        import_rows(config, with_ifu(rows, IFU_BASE + version - 1),
                    (first_day + n * step).strftime("%Y%m%d"), name=f"history{n}.txt")
    most = IFU_BASE + HISTORY + 3 * SECONDS   # far more versions than the soak can post
    assert most < 1000 and not set(range(IFU_BASE + 1, most)) & {r.ifuid for r in rows}, (
        "the soak's IFU ids must be new to the store")
    password = add_station(config, "tcs", "config")
    script = soak_script(tmp_path)
    args = (FIRST_INSTANT, 1, first_ifu, IFU_BASE)

    server = harness.Server("soak", soak_ini(tmp_path), tmp_path, harness.server_env(config)).start()
    try:
        url = server.base + "/fplane/"
        # Warm-up as the soak itself: the writer committing and the readers reading, so that
        # every per-worker cache has filled and been emptied by commits before RSS is read.
        poster = Poster(server.port, password, rows)
        poster.start()
        warm = harness.run_wrk(url, threads=WRK_THREADS, connections=READERS, seconds=WARMUP,
                               script=script, script_args=args)
        after_warmup = workers_rss(server.process.pid)
        cpu_before = process_tree_cpu(server.process.pid)
        posted_before = len(poster.accepted)
        samples: dict[int, list[int]] = {}
        sampling = threading.Event()

        master = server.process.pid

        def sample():
            while not sampling.wait(1.0):
                for worker in workers_rss(master).values():
                    samples.setdefault(worker["pid"], []).append(worker["rss_kib"])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        soak = harness.run_wrk(url, threads=WRK_THREADS, connections=READERS, seconds=SECONDS,
                               script=script, script_args=args)
        elapsed = time.monotonic() - started
        poster.stopping.set()
        poster.join(timeout=60)
        sampling.set()
        sampler.join(timeout=10)
        cpu_after = process_tree_cpu(server.process.pid)
        at_end = workers_rss(server.process.pid)
        committed = committed_versions(server.base, poster.accepted)
        _, latest_headers, _ = server.get("/fplane/")
    finally:
        if "poster" in locals():
            poster.stopping.set()
        if "sampling" in locals():
            sampling.set()
        server.stop()
        # the logs kept where the next pytest run does not remove them (gitignored)
        kept = ARTIFACT.parent / "soak"
        kept.mkdir(parents=True, exist_ok=True)
        for log in (server.log, tmp_path / "log" / "fplaneserver.log"):
            if log.exists():
                shutil.copy(log, kept / log.name)
    harness.check_server_log(server)

    checks = soak["script"]["SOAK_JSON"]
    wrong_commits = {uid: committed[uid].get("version", committed[uid]["state"])
                     for uid, want in poster.accepted if committed[uid].get("version") != want}
    commit_delays = sorted(_seconds_between(c["received_at"], c["decided_at"])
                           for c in committed.values() if "decided_at" in c)
    memory = {}
    for slot, warm_worker in sorted(after_warmup.items()):
        end = at_end.get(slot, {"pid": None, "rss_kib": 0})
        memory[slot] = {
            "pid_after_warmup": warm_worker["pid"], "pid_at_end": end["pid"],
            "recycled": warm_worker["pid"] != end["pid"],
            "rss_kib_after_warmup": warm_worker["rss_kib"], "rss_kib_at_end": end["rss_kib"],
            "change": round(end["rss_kib"] / warm_worker["rss_kib"] - 1, 4),
            "max_rss_kib_seen": max((max(v) for pid, v in samples.items()
                                     if pid in (warm_worker["pid"], end["pid"])), default=0)}
    worker_cpu = cpu_after.get("worker", 0) - cpu_before.get("worker", 0)
    figures = {
        "seconds": round(elapsed, 1), "readers": READERS,
        "requests": soak["requests"], "req_per_s": round(soak["req_per_s"], 1),
        "latency_p50_ms": soak["latency_p50_us"] / 1000, "latency_p99_ms": soak["latency_p99_us"] / 1000,
        "latency_max_ms": soak["latency_max_us"] / 1000,
        "answers_checked": checks["checked"], "json_answers": checks["json_answers"],
        "errors": checks["not_ok"] + checks["no_version"],
        "version_header_mismatches": checks["version_mismatch"],
        "rows_of_another_version": checks["rows_mismatch"],
        "posts_accepted": len(poster.accepted) - posted_before, "posts_refused": len(poster.refused),
        "updates_posted_per_s": round((len(poster.accepted) - posted_before) / elapsed, 2),
        "commits_not_as_expected": len(wrong_commits),
        "commit_delay_s_median": round(commit_delays[len(commit_delays) // 2], 3) if commit_delays else None,
        "commit_delay_s_max": round(commit_delays[-1], 3) if commit_delays else None,
        "newest_version_served": checks["max_version"],
        "newest_version_at_end": int(latest_headers["X-FPlane-Version"]),
        "worker_cpu_ms_per_request": round(worker_cpu * 1000 / soak["requests"], 3),
        "cpu_seconds_by_role": {k: round(cpu_after.get(k, 0) - cpu_before.get(k, 0), 1)
                                for k in cpu_after},
        "worker_rss": memory,
        "rss_kib_samples_by_pid": samples,
        "warmup": {"seconds": WARMUP, "requests": warm["requests"],
                   "req_per_s": round(warm["req_per_s"], 1)},
    }
    met = (figures["errors"] == 0 and figures["version_header_mismatches"] == 0
           and figures["rows_of_another_version"] == 0 and not poster.refused
           and not wrong_commits and all(m["change"] <= RSS_GROWTH_LIMIT for m in memory.values()))
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps({"target": TARGET, "met": met, "command": COMMAND,
                                    "machine": machine_info(), **figures}, indent=1) + "\n")
    shown = {k: v for k, v in figures.items()
             if k not in ("worker_rss", "rss_kib_samples_by_pid", "cpu_seconds_by_role", "warmup")}
    shown["worker_rss_kib"] = "; ".join(
        f"{slot}: {m['rss_kib_after_warmup']} -> {m['rss_kib_at_end']} ({m['change']:+.1%}"
        f"{', recycled' if m['recycled'] else ''}, max {m['max_rss_kib_seen']})"
        for slot, m in memory.items())
    if (SECONDS, READERS) == (60, 200):   # a shorter trial never stands in for the soak
        record("bench: soak", machine_info(), COMMAND, shown, TARGET, met)
    print("\nsoak:", json.dumps({k: v for k, v in figures.items() if k != "rss_kib_samples_by_pid"},
                                indent=1))

    assert figures["errors"] == 0
    assert figures["version_header_mismatches"] == 0 and figures["rows_of_another_version"] == 0
    assert not poster.refused, poster.refused[:5]
    assert not wrong_commits, wrong_commits
    assert figures["posts_accepted"] >= 0.8 * SECONDS / POST_EVERY, "the writer did not get its updates"
    assert figures["newest_version_served"] >= figures["newest_version_at_end"] - 2, (
        "the readers did not see the versions being committed")
    for slot, m in memory.items():
        assert m["change"] <= RSS_GROWTH_LIMIT, f"{slot}: RSS grew {m['change']:+.1%}"
