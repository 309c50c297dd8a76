"""The writer (writer/loop.py) for real: `python -m writer.loop -c config.ini [--once]` in
subprocesses, on a real store made and filled by fplane-admin, a real spool filled by
posting through the web app (or, for big backlogs, by wsgi.spool itself, as the web app
does), real signals, SIGKILL at random moments and a real SMTP listener on loopback.

Every subprocess is checked for a traceback: whatever goes wrong, the operator gets a
reason. Waits poll for a condition with a deadline; randomness is seeded.
"""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
import webtest

from tests.fplane_samples import default_active, entry, make_rows, status_from_rows
from tests.smtp_sink import HOST, SmtpSink
from tests.support import (add_station, import_rows, init_store, run_admin, test_app,
                           update_form, wait_for, write_config)
from wsgi import dates
from wsgi.config import Config, load_config
from wsgi.fplane import VIRUS_SLOTS, parse_fplane
from wsgi.heartbeat import read_heartbeat
from wsgi.logs import make_logger
from wsgi.spool import Spool, SpooledUpdate, update_id
from wsgi.store import Store
from writer import loop

REPO = Path(__file__).resolve().parent.parent
STATION = "tcs"
ACTIVE = default_active()          # seat -> (specid, specslot, ifuid), 59 seats
SEATS = sorted(ACTIVE)
NEW_SPECID = 98                    # no seat of default_active() has it


# -- building a service and its updates ------------------------------------------------

@dataclass
class Service:
    config: Path          # config.ini
    cfg: Config           # the same, parsed
    password: str         # of STATION
    app: webtest.TestApp  # the web app on this config.ini
    spool: Spool


def make_service(tmp_path: Path, **sections) -> Service:
    """A store with one imported version (from 20180601) and a station allowed to post."""
    sections.setdefault("Writer", {"sleep": "0.2"})
    config = write_config(tmp_path, **sections)
    init_store(config)
    import_rows(config, make_rows(), "20180601")
    password = add_station(config, STATION)
    cfg = load_config(config)
    return Service(config, cfg, password, test_app(config), Spool(cfg.spool_dir))


@pytest.fixture
def svc(tmp_path) -> Service:
    return make_service(tmp_path)


def now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micros(instant: str) -> int:
    return dates.to_micros(datetime.fromisoformat(instant.replace("Z", "+00:00")))


def hardware(drop=(), changes=None, timestamp=None) -> dict:
    """The default hardware status without the seats in ``drop``, with ``changes``
    (seat -> (specid, specslot, ifuid)); time stamped now."""
    active = {seat: ids for seat, ids in ACTIVE.items() if seat not in drop}
    active.update(changes or {})
    return status_from_rows(make_rows(active=active), timestamp or now_text())


def post(svc: Service, status: dict, valid_from: str | None = None, code: int = 100) -> str | None:
    """POST /fplane[/<valid_from>] as the station does; returns the update id answered."""
    url = "/fplane" + (f"/{valid_from}" if valid_from else "")
    response = svc.app.post(url, update_form(STATION, svc.password,
                                             {"config": status, "commit": True}),
                            expect_errors=True)
    assert response.headers["X-FPlane-Code"] == str(code), response.text[:800]
    return response.headers.get("X-FPlane-Update")


def spooled(status: dict, valid_from: str, received_at: int) -> SpooledUpdate:
    """A spooled update as the web app writes it for a post of ``status`` from ``valid_from``."""
    data = json.dumps({"config": status, "commit": True, "valid_from": valid_from})
    checksum = hashlib.sha256(data.encode("utf-8")).hexdigest()
    return SpooledUpdate(update_id=update_id(STATION, checksum), kind="config", station=STATION,
                         checksum=checksum, received_at=received_at,
                         valid_from=micros(valid_from), data=data, remote_addr="127.0.0.1")


def updates_state(svc: Service, uid: str) -> dict:
    """GET /updates/<uid> as JSON."""
    response = svc.app.get(f"/updates/{uid}?format=json")
    assert response.headers["X-FPlane-Code"] == "100"
    return response.json


def served_version(svc: Service, datestr: str = "") -> int:
    return int(svc.app.get(f"/fplane/{datestr}").headers["X-FPlane-Version"])


def served_active_seats(svc: Service, datestr: str) -> set[int]:
    rows = parse_fplane(svc.app.get(f"/fplane/{datestr}").text).rows
    return {r.ifuslot for r in rows if r.active and r.ifuslot in VIRUS_SLOTS}


def names(svc: Service, subdirectory: str) -> list[str]:
    return sorted(os.listdir(svc.spool.root / subdirectory))


def store_query(svc: Service, sql: str, *params) -> list[tuple]:
    with Store.open_readonly(svc.cfg.store_path) as store:
        return store._db.execute(sql, params).fetchall()


def version_count(svc: Service) -> int:
    return store_query(svc, "SELECT COUNT(*) FROM versions")[0][0]


def admin_ok(svc: Service, *args) -> str:
    status, out, err = run_admin(svc.config, *args)
    assert status == 0, out + err
    return out


# -- running the writer ------------------------------------------------------------------

def writer_command(config: Path, *args) -> list[str]:
    return [sys.executable, "-m", "writer.loop", "-c", str(config), *args]


def subprocess_env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FPLANE_CONFIG", None)
    return env


@dataclass
class Run:
    status: int
    err: str


def run_writer(config: Path, *args, command=None, timeout: float = 30) -> Run:
    """fplane-writer to the end (usually --once)."""
    proc = subprocess.run(command or writer_command(config, *args), cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return Run(proc.returncode, proc.stderr)


def summary_counts(err: str) -> dict[str, int]:
    """The counts of the writer's last line: "fplane-writer: 1 committed, 0 unchanged, ..."."""
    line = [line for line in err.splitlines() if "committed," in line][-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line)}


class Writers:
    """Long-running writers started by a test; whatever is left running is killed at the end."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def start(self, config: Path, *args, command=None) -> subprocess.Popen:
        proc = subprocess.Popen(command or writer_command(config, *args), cwd=REPO,
                                env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def writers():
    started = Writers()
    yield started
    started.close()


def heartbeat_of(svc: Service, proc: subprocess.Popen) -> dict | None:
    beat = read_heartbeat(svc.cfg.data_dir)
    return beat if beat is not None and beat.get("pid") == proc.pid else None


def wait_idle(svc: Service, proc: subprocess.Popen, timeout: float = 10.0) -> dict:
    """The heartbeat once ``proc`` has nothing to do (its signal handlers are in place)."""
    def idle():
        assert proc.poll() is None, f"the writer exited early: {proc.communicate()}"
        beat = heartbeat_of(svc, proc)
        return beat if beat is not None and beat["state"] == "idle" else None
    return wait_for(idle, timeout, "the writer to be idle")


def stop(proc: subprocess.Popen, signum=signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, float]:
    """Send ``signum``; (exit status, stderr, seconds until it exited)."""
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=timeout)
    elapsed = time.monotonic() - sent
    assert "Traceback" not in err, err
    return proc.returncode, err, elapsed


# -- one update, end to end --------------------------------------------------------------

def test_once_commits_a_posted_update_end_to_end(svc):
    before = served_version(svc)
    uid = post(svc, hardware(drop=SEATS[:1]))
    assert updates_state(svc, uid)["state"] == "queued"
    assert [n.split(".")[1] for n in names(svc, "new")] == [uid]

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    assert summary_counts(run.err)["committed"] == 1
    after = served_version(svc)
    assert after != before
    state = updates_state(svc, uid)
    assert state["state"] == "committed" and state["version"] == after
    assert state["station"] == STATION
    assert SEATS[0] not in served_active_seats(svc, "")
    assert names(svc, "new") == [] and names(svc, "cur") == []
    assert [n.split(".")[1] for n in names(svc, "done")] == [uid]
    admin_ok(svc, "verify")
    history = admin_ok(svc, "history")
    [line] = [line for line in history.splitlines() if line.split()[0] == str(after)]
    assert STATION in line and f"update {uid}" in line


def test_a_committed_status_is_commented_with_its_change_in_instrument_terms(svc):
    empty_seat = min(r.ifuslot for r in make_rows() if r.ifuslot in VIRUS_SLOTS and not r.ifuid)
    uid = post(svc, hardware(changes={empty_seat: (330, 260, 84)}))
    assert run_writer(svc.config, "--once").status == 0

    [(comment,)] = store_query(svc, "SELECT comment FROM versions WHERE id = ?",
                               updates_state(svc, uid)["version"])

    assert comment == (f"IFU 084 installed at seat {empty_seat:03d} (spectrograph 330); "
                       f"update {uid}")
    # ... and the history, the feed and the page show it.
    assert comment in svc.app.get("/history").text
    assert f"IFU 084 installed at seat {empty_seat:03d}" in svc.app.get("/feed").text


def test_a_status_with_many_changes_is_commented_with_their_count(svc):
    dropped = SEATS[:3]
    uid = post(svc, hardware(drop=dropped, changes={SEATS[3]: (NEW_SPECID, *ACTIVE[SEATS[3]][1:])}))
    assert run_writer(svc.config, "--once").status == 0

    [(comment,)] = store_query(svc, "SELECT comment FROM versions WHERE id = ?",
                               updates_state(svc, uid)["version"])

    assert comment == f"4 changes: 3 IFUs removed, 1 spectrograph replaced; update {uid}"


def test_fplane_writer_console_script_is_installed(svc):
    """The command the contract names, as cron or uWSGI runs it."""
    script = Path(sys.executable).parent / "fplane-writer"
    if not script.exists():
        pytest.skip("no fplane-writer script beside this python (not the project venv)")
    uid = post(svc, hardware(drop=SEATS[:1]))
    run = run_writer(svc.config, command=[str(script), "-c", str(svc.config), "--once"])
    assert run.status == 0, run.err
    assert updates_state(svc, uid)["state"] == "committed"


# -- order, duplicates, crash recovery -----------------------------------------------------

def test_updates_for_the_same_instant_are_committed_in_posting_order(svc):
    valid_from = "2018-07-01T00:00:00Z"
    drops = [SEATS[i:i + 1] for i in range(4)]
    uids = [post(svc, hardware(drop=drop), valid_from) for drop in drops]
    assert len(set(uids)) == 4

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    assert summary_counts(run.err)["committed"] == 4
    versions = [updates_state(svc, uid)["version"] for uid in uids]
    assert versions == sorted(versions) and len(set(versions)) == 4
    # the last posted wins: it is the version valid then, with its content
    assert served_version(svc, valid_from) == versions[-1]
    assert served_active_seats(svc, valid_from) == set(SEATS) - set(drops[-1])
    # recorded in posting order
    recorded = store_query(svc, "SELECT id, recorded_at, comment FROM versions"
                                " WHERE valid_from = ? ORDER BY id", micros(valid_from))
    assert [row[0] for row in recorded] == versions
    assert [row[1] for row in recorded] == sorted(row[1] for row in recorded)
    assert [re.search(r"update (\w+)", row[2])[1] for row in recorded] == uids


def test_posting_the_same_update_twice_spools_it_once(svc):
    status = hardware(drop=SEATS[:1])
    first = post(svc, status)
    again = post(svc, status)
    assert again == first
    assert len(names(svc, "new")) == 1


def test_a_done_file_delivered_again_is_a_duplicate(svc):
    uid = post(svc, hardware(drop=SEATS[:1]))
    assert run_writer(svc.config, "--once").status == 0
    versions = version_count(svc)
    [done] = names(svc, "done")
    shutil.copy(svc.spool.done / done, svc.spool.new / done)

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    counts = summary_counts(run.err)
    assert counts["committed"] == 0 and counts["duplicates"] == 1
    assert version_count(svc) == versions
    assert names(svc, "new") == [] and names(svc, "cur") == [] and names(svc, "done") == [done]
    assert store_query(svc, "SELECT COUNT(*) FROM updates WHERE update_id = ?", uid) == [(1,)]
    admin_ok(svc, "verify")


def test_two_copies_of_one_update_in_the_spool_commit_once(svc):
    """Two posts racing past the web app's check spool two copies (different received_at)."""
    update = spooled(hardware(drop=SEATS[:1]), "2018-07-01T00:00:00Z",
                     dates.to_micros(datetime.now(timezone.utc)))
    svc.spool.enqueue(update)
    svc.spool.enqueue(SpooledUpdate(**{**update.__dict__, "received_at": update.received_at + 7}))
    assert len(names(svc, "new")) == 2
    versions = version_count(svc)

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    counts = summary_counts(run.err)
    assert counts["committed"] == 1 and counts["duplicates"] == 1
    assert version_count(svc) == versions + 1
    assert len(names(svc, "done")) == 2 and names(svc, "new") == []
    assert updates_state(svc, update.update_id)["state"] == "committed"


def test_a_file_claimed_by_a_crashed_writer_is_committed_at_the_next_start(svc):
    uid = post(svc, hardware(drop=SEATS[:1]))
    [name] = names(svc, "new")
    os.rename(svc.spool.new / name, svc.spool.cur / f"{name}:1")   # claimed, then killed
    assert updates_state(svc, uid)["state"] == "queued"
    versions = version_count(svc)

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    assert summary_counts(run.err)["committed"] == 1
    assert version_count(svc) == versions + 1
    assert names(svc, "cur") == [] and names(svc, "done") == [name]
    assert updates_state(svc, uid)["state"] == "committed"


def test_a_file_committed_before_a_crash_is_only_moved_on(svc):
    """Killed between the commit and moving the file to done/: no second version."""
    uid = post(svc, hardware(drop=SEATS[:1]))
    assert run_writer(svc.config, "--once").status == 0
    [name] = names(svc, "done")
    os.rename(svc.spool.done / name, svc.spool.cur / f"{name}:1")
    versions = version_count(svc)
    decided = store_query(svc, "SELECT decided_at, version_id FROM updates WHERE update_id = ?", uid)

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    counts = summary_counts(run.err)
    assert counts["committed"] == 0 and counts["duplicates"] == 1
    assert version_count(svc) == versions
    assert names(svc, "cur") == [] and names(svc, "done") == [name]
    assert store_query(svc, "SELECT decided_at, version_id FROM updates WHERE update_id = ?",
                       uid) == decided
    admin_ok(svc, "verify")


# -- chaos: SIGKILL at random moments ------------------------------------------------------

def backlog_of(n: int, rng: random.Random, first_valid_from: str = "2018-07-02T00:00:00Z"):
    """``n`` updates at successive seconds from ``first_valid_from``, each dropping one of a
    few seats; every tenth says again what the one before said (it changes nothing).
    Returns [(update, dropped seat, whether it changes the configuration)]."""
    start = micros(first_valid_from)
    received = dates.to_micros(datetime.now(timezone.utc))
    timestamp = now_text()
    out = []
    previous = None   # the imported version drops nothing
    for i in range(n):
        if i % 10 == 9:
            drop = previous
        else:
            drop = rng.choice([s for s in SEATS[:4] if s != previous])
        valid_from = dates.format_micros(start + i * 1_000_000)
        out.append((spooled(hardware(drop=(drop,), timestamp=timestamp), valid_from, received + i),
                    drop, drop != previous))
        previous = drop
    return out


def test_chaos_sigkill_at_random_moments_loses_and_doubles_nothing(tmp_path, writers):
    # A random SIGKILL is not the update's fault: a cap high enough that no update is
    # given up because the test kept killing the writer (the cap has its own test).
    svc = make_service(tmp_path, Writer={"sleep": "0.2", "max_attempts": "1000"})
    rng = random.Random(20180707)
    backlog = backlog_of(300, rng)
    for update, _, _ in backlog:
        svc.spool.enqueue(update)
    changing = sum(1 for _, _, changes in backlog if changes)
    versions_before = version_count(svc)

    kills = interrupted = 0
    deadline = time.monotonic() + 30
    while svc.spool.backlog():
        assert time.monotonic() < deadline, f"spool not drained after {kills} kills"
        waiting = svc.spool.backlog()
        proc = writers.start(svc.config)
        # The delay counts from the first heartbeat (written just before the first pass,
        # which starts with the files a killed writer left in cur/), not from the start:
        # however slowly the interpreter starts, every kill lands while the writer works.
        wait_for(lambda: heartbeat_of(svc, proc) or proc.poll() is not None, 10,
                 "the writer's first heartbeat")
        time.sleep(rng.uniform(0.02, 0.2))
        assert proc.poll() is None, f"the writer exited by itself: {proc.communicate()}"
        proc.kill()
        proc.communicate()
        kills += 1
        if 0 < svc.spool.backlog() < waiting:
            interrupted += 1
    log = svc.cfg.log.read_text()
    print(f"chaos: {len(backlog)} updates drained by {kills} writers killed with SIGKILL, "
          f"{interrupted} of them in the middle of the backlog; "
          f"{log.count('is already recorded: nothing to do')} found committed before the kill; "
          f"{len(list(svc.cfg.data_dir.glob('.writer.heartbeat.*')))} heartbeat temporaries left")
    assert interrupted >= 1, "no kill landed while the writer was draining"

    # Nothing lost, nothing doubled, nothing left behind
    assert names(svc, "new") == [] and names(svc, "cur") == [] and names(svc, "tmp") == []
    assert names(svc, "failed") == []
    assert sorted(names(svc, "done")) == sorted(u.name for u, _, _ in backlog)
    rows = store_query(svc, "SELECT update_id, state, version_id FROM updates")
    by_id = {uid: (state, version) for uid, state, version in rows}
    assert len(rows) == len(by_id) == len(backlog)
    for update, _, changes in backlog:
        state, _ = by_id[update.update_id]
        assert state == ("committed" if changes else "unchanged"), update.update_id
    committed_versions = [v for s, v in by_id.values() if s == "committed"]
    assert len(set(committed_versions)) == changing
    assert version_count(svc) == versions_before + changing
    # every instant got the configuration of its update
    with Store.open_readonly(svc.cfg.store_path) as store:
        for update, drop, _ in backlog:
            version = store.version_at(update.valid_from)
            active = {r.ifuslot for r in store.configuration_rows(version.configuration_id)
                      if r.active and r.ifuslot in VIRUS_SLOTS}
            assert active == set(SEATS) - {drop}, dates.format_micros(update.valid_from)
    admin_ok(svc, "verify")
    run = run_writer(svc.config, "--once")
    assert run.status == 0 and summary_counts(run.err)["committed"] == 0


# -- one writer per data directory ---------------------------------------------------------

def test_a_second_writer_is_refused_while_the_first_runs(svc, writers):
    first = writers.start(svc.config)
    wait_idle(svc, first)

    second = run_writer(svc.config, "--once")
    assert second.status == 1
    assert f"pid {first.pid}" in second.err and "already running" in second.err
    long_running = run_writer(svc.config)
    assert long_running.status == 1 and f"pid {first.pid}" in long_running.err

    status, _, _ = stop(first)
    assert status == 0
    again = run_writer(svc.config, "--once")
    assert again.status == 0, again.err


# -- signals -------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_idle_stops_the_writer_promptly(tmp_path, writers, signum):
    svc = make_service(tmp_path, Writer={"sleep": "5"})
    proc = writers.start(svc.config)
    wait_idle(svc, proc)
    time.sleep(0.05)   # inside the 5 s sleep, not just before it

    status, err, elapsed = stop(proc, signum)

    assert status == 0, err
    assert elapsed < 1.0, f"took {elapsed:.2f} s to stop with [Writer] sleep = 5"
    assert heartbeat_of(svc, proc)["state"] == "stopped"


def test_sigterm_while_draining_finishes_the_current_update_and_exits(svc, writers):
    backlog = backlog_of(150, random.Random(7))
    for update, _, _ in backlog:
        svc.spool.enqueue(update)
    proc = writers.start(svc.config)
    wait_for(lambda: len(names(svc, "done")) >= 10, 10, "the writer to commit 10 updates")

    status, err, elapsed = stop(proc)

    assert status == 0, err
    assert elapsed < 2.0
    done, waiting = names(svc, "done"), names(svc, "new")
    assert names(svc, "cur") == [], "an update was left half done"
    assert waiting, "the whole backlog was done before SIGTERM arrived: nothing tested"
    assert sorted(done + waiting) == sorted(u.name for u, _, _ in backlog)
    in_store = {uid for (uid,) in store_query(svc, "SELECT update_id FROM updates")}
    assert in_store == {name.split(".")[1] for name in done}
    assert summary_counts(err)["committed"] + summary_counts(err)["unchanged"] == len(done)
    assert heartbeat_of(svc, proc)["state"] == "stopped"
    admin_ok(svc, "verify")

    run = run_writer(svc.config, "--once")
    assert run.status == 0, run.err
    assert len(names(svc, "done")) == len(backlog)


# -- updates that fail -----------------------------------------------------------------------

def test_a_permanently_bad_file_goes_to_failed_at_once_and_the_spool_carries_on(svc):
    received = dates.to_micros(datetime.now(timezone.utc))
    garbage_id = "0123456789abcdef0123"
    garbage = f"{received:016d}.{garbage_id}"
    (svc.spool.new / garbage).write_bytes(b"\x00 this is not JSON {")
    bad_status = hardware()
    bad_status["spectrographs"].append(entry(999, 1, 2, 3))   # no such seat: 209
    refused = spooled(bad_status, "2018-07-01T00:00:00Z", received + 1)
    svc.spool.enqueue(refused)   # an envelope whose data the checks now refuse
    good = post(svc, hardware(drop=SEATS[:1]))

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    counts = summary_counts(run.err)
    assert counts["failed"] == 2 and counts["committed"] == 1
    assert updates_state(svc, good)["state"] == "committed"
    assert names(svc, "failed") == sorted([garbage, garbage + ".reason", refused.name,
                                           refused.name + ".reason"])
    garbage_reason = (svc.spool.failed / (garbage + ".reason")).read_text()
    assert garbage_reason.startswith("attempt 1:") and "not a spooled update" in garbage_reason
    assert "attempt 1:" in (svc.spool.failed / (refused.name + ".reason")).read_text()
    for uid in (garbage_id, refused.update_id):
        state = updates_state(svc, uid)
        assert state["state"] == "failed" and state["reason"].startswith("attempt 1:")
    assert "not a spooled update" in updates_state(svc, garbage_id)["reason"]
    assert names(svc, "new") == [] and names(svc, "cur") == []
    admin_ok(svc, "verify")


class Failures:
    """Which updates' writes fail, with what, and how often: shared by every connection
    the writer opens (it opens a new one after a store error)."""

    def __init__(self, fails, error, left: int | None = None):
        self.fails, self.error, self.left = fails, error, left
        self.tries: list[str] = []   # update ids whose write failed, in order


class FailingStore:
    """A real store whose writes fail as ``failures`` says (a full disk, a lock held too
    long, or an error the update itself causes)."""

    def __init__(self, store: Store, failures: Failures):
        self._store = store
        self._failures = failures

    def __getattr__(self, name):
        return getattr(self._store, name)

    def record_version(self, *args, update=None, **kwargs):
        failures = self._failures
        if failures.fails(update.update_id) and failures.left != 0:
            failures.tries.append(update.update_id)
            if failures.left is not None:
                failures.left -= 1
            raise failures.error
        return self._store.record_version(*args, update=update, **kwargs)


DISK_FULL = sqlite3.OperationalError("database or disk is full")
LOCKED = sqlite3.OperationalError("database is locked")
# What the update itself may cause (a row the schema refuses): counts toward max_attempts
UPDATE_CAUSED = sqlite3.IntegrityError("CHECK constraint failed: specid")


@pytest.fixture
def failing_writer(svc, monkeypatch):
    """An in-process Writer on ``svc`` whose store fails as make(fails, error, left) says."""
    made = {}

    def make(fails, error=UPDATE_CAUSED, left=None) -> loop.Writer:
        made["failures"] = Failures(fails, error, left)

        class Stores:
            @staticmethod
            def open_writable(path, **kwargs):
                return FailingStore(Store.open_writable(path, **kwargs), made["failures"])

        monkeypatch.setattr(loop, "Store", Stores)
        made["writer"] = loop.Writer(svc.cfg, make_logger(svc.cfg, "writer"))
        return made["writer"]

    yield make, made
    if "writer" in made:
        made["writer"].close()


def test_a_failure_the_update_causes_is_tried_max_attempts_times(svc, failing_writer):
    flaky_uid = post(svc, hardware(drop=SEATS[:1]), "2018-07-01T00:00:00Z")
    good_uid = post(svc, hardware(drop=SEATS[1:2]), "2018-07-01T00:00:01Z")
    make, made = failing_writer
    writer = make(lambda uid: uid == flaky_uid)
    [flaky_name, good_name] = names(svc, "new")

    assert writer.run_once() == 0 and writer.retry_pending
    assert names(svc, "cur") == [f"{flaky_name}:2"]   # attempt 1 failed: the next is 2
    assert updates_state(svc, flaky_uid)["state"] == "queued"
    # the next update waits: committed in the order posted, not overtaking a retry
    assert names(svc, "new") == [good_name]
    assert writer.run_once() == 0 and writer.retry_pending
    assert names(svc, "cur") == [f"{flaky_name}:3"]
    assert writer.run_once() == 2      # the third and last attempt, then the next update
    assert not writer.retry_pending

    assert made["failures"].tries == [flaky_uid] * svc.cfg.max_attempts
    assert names(svc, "cur") == [] and names(svc, "new") == [] and names(svc, "done") == [good_name]
    assert names(svc, "failed") == [flaky_name, flaky_name + ".reason"]
    state = updates_state(svc, flaky_uid)
    assert state["state"] == "failed"
    assert state["reason"] == "attempt 3: IntegrityError: CHECK constraint failed: specid"
    assert updates_state(svc, good_uid)["state"] == "committed"
    assert writer.counts["failed"] == 1 and writer.counts["committed"] == 1

    # The operator sees it, and puts it back once the cause is mended
    listed = admin_ok(svc, "failed")
    assert flaky_uid in listed and "CHECK constraint failed" in listed
    assert "put back" in admin_ok(svc, "retry", flaky_uid)
    assert names(svc, "new") == [flaky_name] and names(svc, "failed") == []
    assert updates_state(svc, flaky_uid)["state"] == "queued"
    made["failures"].left = 0
    assert writer.run_once() == 1
    assert updates_state(svc, flaky_uid)["state"] == "committed"
    assert "no failed updates" in admin_ok(svc, "failed")
    status, _, err = run_admin(svc.config, "retry", flaky_uid)
    assert status == 1 and f"no failed update '{flaky_uid}'" in err


def test_a_retried_update_is_not_overtaken_by_a_later_correction(svc, failing_writer):
    valid_from = "2018-07-01T00:00:00Z"
    first = post(svc, hardware(drop=SEATS[:1]), valid_from)
    correction = post(svc, hardware(drop=SEATS[1:2]), valid_from)
    make, _ = failing_writer
    writer = make(lambda uid: uid == first, left=1)

    assert writer.run_once() == 0
    assert writer.run_once() == 2

    assert updates_state(svc, first)["version"] < updates_state(svc, correction)["version"]
    assert served_version(svc, valid_from) == updates_state(svc, correction)["version"]
    assert served_active_seats(svc, valid_from) == set(SEATS) - {SEATS[1]}


@pytest.mark.parametrize("error, trouble", [(DISK_FULL, "the disk is full"),
                                            (LOCKED, "the store is locked by another process")])
def test_a_full_disk_or_a_locked_store_spends_no_attempt(svc, failing_writer, error, trouble):
    """However long it lasts: an update is never given up for the machine's trouble."""
    uids = [post(svc, hardware(drop=SEATS[i:i + 1]), f"2018-07-01T00:00:0{i}Z") for i in range(5)]
    first_name = names(svc, "new")[0]
    make, made = failing_writer
    writer = make(lambda uid: True, error)
    for _ in range(svc.cfg.max_attempts * 3):
        assert writer.run_once() == 0 and writer.retry_pending
        assert names(svc, "cur") == [f"{first_name}:1"]   # still its first attempt
        beat = read_heartbeat(svc.cfg.data_dir)
        assert beat["state"].startswith(f"waiting: {trouble}"), beat
        assert first_name in beat["state"] and "no attempt spent" in beat["state"]
    assert made["failures"].tries == [uids[0]] * svc.cfg.max_attempts * 3
    health = svc.app.get("/health", expect_errors=True)
    assert health.status_int == 503 and trouble in health.text

    made["failures"].left = 0         # room on the disk again, the lock let go
    assert writer.run_once() == 5
    assert [updates_state(svc, uid)["state"] for uid in uids] == ["committed"] * 5
    assert names(svc, "failed") == [] and writer.counts["failed"] == 0
    assert names(svc, "new") == names(svc, "cur") == [] and len(names(svc, "done")) == 5


@pytest.mark.parametrize("error, transient", [
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("database or disk is full"), True),
    (sqlite3.OperationalError("disk I/O error"), True),
    (sqlite3.DatabaseError("database disk image is malformed"), True),
    (OSError(28, "No space left on device"), True),
    (OSError(5, "Input/output error"), True),
    (UPDATE_CAUSED, False),
    (OSError(13, "Permission denied"), False),
    (ValueError("not a spooled update"), False),
    (KeyError("specid"), False),
])
def test_only_the_machines_trouble_is_transient(error, transient):
    assert loop.is_transient(error) is transient


# Runs the real writer, except that committing one update kills it, as an update that
# crashes the interpreter or gets the writer OOM-killed would.
KILLED_BY = """
import os, signal, sys
from writer import loop
poison = os.environ.get("POISON_UPDATE")
real_commit = loop.commit_update
def commit_update(store, config, update, *args, **kwargs):
    if update.update_id == poison:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_commit(store, config, update, *args, **kwargs)
loop.commit_update = commit_update
sys.exit(loop.main(sys.argv[1:]))
"""


def test_an_update_in_hand_whenever_the_writer_dies_is_never_given_up(svc, monkeypatch):
    held = post(svc, hardware(drop=SEATS[:1]), "2018-07-01T00:00:00Z")
    behind = post(svc, hardware(drop=SEATS[1:2]), "2018-07-01T00:00:01Z")
    [held_name, behind_name] = names(svc, "new")
    monkeypatch.setenv("POISON_UPDATE", held)
    command = [sys.executable, "-c", KILLED_BY, "-c", str(svc.config), "--once"]

    for _ in range(svc.cfg.max_attempts + 2):
        assert run_writer(svc.config, command=command).status == -signal.SIGKILL
        # a death spends no attempt, and the update behind waits its turn
        assert names(svc, "cur") == [f"{held_name}:1"] and names(svc, "new") == [behind_name]
        assert updates_state(svc, held)["state"] == "queued"

    monkeypatch.delenv("POISON_UPDATE")   # whatever killed the writer has stopped
    run = run_writer(svc.config, command=command)
    assert run.status == 0, run.err
    assert "in hand when a writer stopped" in run.err or summary_counts(run.err)["committed"] == 2
    assert [updates_state(svc, uid)["state"] for uid in (held, behind)] == ["committed"] * 2
    assert names(svc, "failed") == [] and names(svc, "cur") == []
    assert names(svc, "done") == [held_name, behind_name]


def test_a_file_committed_before_its_last_fatal_attempt_is_not_given_up(svc):
    """The writer died after the commit of the last allowed attempt: it is done, not failed."""
    uid = post(svc, hardware(drop=SEATS[:1]))
    assert run_writer(svc.config, "--once").status == 0
    [name] = names(svc, "done")
    os.rename(svc.spool.done / name, svc.spool.cur / f"{name}:{svc.cfg.max_attempts}")

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    assert summary_counts(run.err)["duplicates"] == 1
    assert names(svc, "done") == [name] and names(svc, "failed") == []
    assert updates_state(svc, uid)["state"] == "committed"


# -- held for review ---------------------------------------------------------------------------

def test_held_updates_wait_for_release_or_reject(svc):
    versions = version_count(svc)
    half = SEATS[:len(SEATS) // 2 + 1]
    held = post(svc, hardware(drop=half), "2018-07-01T00:00:00Z", code=103)
    assert held is not None

    run = run_writer(svc.config, "--once")

    assert run.status == 0, run.err
    assert summary_counts(run.err)["held"] == 1
    state = updates_state(svc, held)
    assert state["state"] == "held" and "switch off" in state["reason"]
    assert "version" not in state
    assert version_count(svc) == versions
    assert held in admin_ok(svc, "held")
    assert names(svc, "done") and names(svc, "new") == []

    out = admin_ok(svc, "release", held)
    assert "committed as version" in out
    state = updates_state(svc, held)
    assert state["state"] == "committed"
    assert version_count(svc) == versions + 1
    assert served_version(svc, "2018-07-01T00:00:00Z") == state["version"]
    assert served_active_seats(svc, "2018-07-01T00:00:00Z") == set(SEATS) - set(half)

    other = post(svc, hardware(drop=SEATS[-len(half):]), "2018-06-15T00:00:00Z", code=103)
    assert run_writer(svc.config, "--once").status == 0
    assert updates_state(svc, other)["state"] == "held"
    out = admin_ok(svc, "reject", other, "--reason", "a test")
    assert "nothing committed" in out
    state = updates_state(svc, other)
    assert state["state"] == "rejected" and "a test" in state["reason"]
    assert version_count(svc) == versions + 1
    assert "no updates are held" in admin_ok(svc, "held")
    status, _, err = run_admin(svc.config, "release", other)
    assert status == 1 and "rejected, not held" in err
    admin_ok(svc, "verify")


# -- notifications -----------------------------------------------------------------------------

def test_operators_are_mailed_about_held_updates_and_new_hardware(tmp_path):
    with SmtpSink() as sink:
        svc = make_service(tmp_path, Notify={"smtp_host": HOST, "smtp_port": str(sink.port),
                                             "recipients": "ops@example.org"})
        held = post(svc, hardware(drop=SEATS[:30]), "2018-07-01T00:00:00Z", code=103)
        seat = SEATS[5]
        _, specslot, ifuid = ACTIVE[seat]
        news = post(svc, hardware(changes={seat: (NEW_SPECID, specslot, ifuid)}), "2018-08-01")

        run = run_writer(svc.config, "--once")

        assert run.status == 0, run.err
        first, second = sink.wait_for(2)
        assert len(sink.messages) == 2
    assert first.rcpt_tos == ("ops@example.org",)
    assert held in first.message["Subject"] and "held for review" in first.message["Subject"]
    assert f"fplane-admin -c {svc.config} release {held}" in first.message.get_content()
    version = updates_state(svc, news)["version"]
    # strip(): Python's email generator folds a long Subject right after "Subject:",
    # which leaves a leading space in the unfolded value.
    assert second.message["Subject"].strip() == (f"[fplaneserver] new hardware in version {version}: "
                                         f"spectrograph {NEW_SPECID:03d} appears (seat {seat:03d})")


def test_without_smtp_the_notification_goes_to_the_log(svc):
    held = post(svc, hardware(drop=SEATS[:30]), "2018-07-01T00:00:00Z", code=103)

    assert run_writer(svc.config, "--once").status == 0

    log = svc.cfg.log.read_text()
    assert "notification (no SMTP configured)" in log
    assert f"update {held} from {STATION} held for review" in log
    assert f"fplane-admin -c {svc.config} release {held}" in log


# -- heartbeat ---------------------------------------------------------------------------------

def test_heartbeat_after_a_run_and_while_idling(svc, writers):
    post(svc, hardware(drop=SEATS[:1]))
    proc = writers.start(svc.config, "--once")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err

    beat = read_heartbeat(svc.cfg.data_dir)
    assert beat["pid"] == proc.pid and beat["state"] == "stopped"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", beat["beat_at"])
    assert abs(beat["beat_at_unix"] - time.time()) < 30
    assert {k: beat[k] for k in ("committed", "unchanged", "held", "duplicates", "failed")} == {
        "committed": 1, "unchanged": 0, "held": 0, "duplicates": 0, "failed": 0}
    assert beat["backlog"] == 0

    proc = writers.start(svc.config)
    first = wait_idle(svc, proc)
    later = wait_for(lambda: (b := heartbeat_of(svc, proc)) and
                     b["beat_at_unix"] > first["beat_at_unix"] + 0.15 and b,
                     5, "the idle writer's heartbeat to advance")
    assert later["state"] in ("idle", "working")
    assert stop(proc)[0] == 0


# -- no store ------------------------------------------------------------------------------------

def test_once_without_a_store_says_so_and_fails(tmp_path):
    config = write_config(tmp_path)

    run = run_writer(config, "--once")

    assert run.status == 1
    assert "not initialised" in run.err and "fplane-admin init" in run.err
    assert not (tmp_path / "data" / "fplane.sqlite").exists()


def test_a_long_running_writer_waits_for_the_store(tmp_path, writers):
    config = write_config(tmp_path, Writer={"sleep": "0.2"})
    data_dir = load_config(config).data_dir
    proc = writers.start(config)

    def waiting():
        beat = read_heartbeat(data_dir)
        if beat is not None and beat["pid"] == proc.pid and beat["state"] != "working":
            return beat
    first = wait_for(waiting, 10, "the writer's heartbeat")
    assert first["state"].startswith("waiting for the store: the store is not initialised")
    # what the heartbeat says between passes, not for a moment in each
    later = wait_for(lambda: (b := waiting()) and b["beat_at_unix"] > first["beat_at_unix"] and b,
                     5, "the next heartbeat")
    assert later["state"] == first["state"]
    assert proc.poll() is None

    init_store(config)
    import_rows(config, make_rows(), "20180601")
    password = add_station(config, STATION)
    cfg = load_config(config)
    svc = Service(config, cfg, password, test_app(config), Spool(cfg.spool_dir))
    uid = post(svc, hardware(drop=SEATS[:1]))
    wait_for(lambda: updates_state(svc, uid)["state"] == "committed", 10, "the commit")
    assert stop(proc)[0] == 0
