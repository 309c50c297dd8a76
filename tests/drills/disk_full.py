"""disk-full: the spool, then the data directory, each on a small size-limited file
system (tmpfs with size=, mounted by the drill: as root, or in a user namespace of its own,
runner.MOUNTS) filled to the last byte.

Promises checked:
- spool full: a POST is refused with a coded answer (503, X-FPlane-Code 401), nothing
  partial is left (tmp/, new/ and the receipts as before), GETs are served; once there is
  room, the same post is accepted and committed once;
- data directory full: a post is accepted (the spool has room), the writer keeps the
  update queued without spending its attempts and says why in its log, GETs are served;
  once there is room, it is committed once;
- spool full while the writer moves a bad file aside: the writer neither exits nor
  crash-loops (same pid, never restarted by uWSGI), the bad file goes to failed/ and the
  good updates behind it are committed.
"""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.drills.common import judge_posts
from tests.drills.service import DrillFailure, Post, Service

TARGET = ("coded refusal, nothing partial, GETs served, queued update committed once when "
          "room is back, the writer never exits on ENOSPC; 0 lost, 0 duplicated")
SPOOL_SIZE = "2m"
DATA_SIZE = "8m"


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        raise DrillFailure(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> Path:
    """A file taking every byte left on ``directory``'s file system."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):   # big steps, then the last bytes
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def drill(workdir, outcome, small: bool = False) -> None:
    figures = outcome.figures
    workdir = Path(workdir)
    spool_mount, data_mount = workdir / "spool-fs", workdir / "data-fs"
    with tmpfs(spool_mount, SPOOL_SIZE), tmpfs(data_mount, DATA_SIZE):
        figures["filesystem"] = (f"tmpfs size={SPOOL_SIZE} (spool), tmpfs size={DATA_SIZE} "
                                 f"(data directory), mounted by the drill")
        service = Service(workdir / "service", writer_sleep=0.2,
                          spool_dir=spool_mount / "spool", data_dir=data_mount / "data")
        posts, answers = [], {}
        n = iter(range(1000))
        with service.start():
            _spool_full(service, outcome, posts, answers, n, small)
            _data_full(service, outcome, posts, answers, n, small)
            _bad_file_on_full_spool(service, outcome, posts, answers, n)
        commits = service.commits_by_update()
    verdict = judge_posts(outcome, posts, answers, commits)
    outcome.check(verdict["not_answered_100"] == 0, "a post was never accepted once room was back")


def _gets_served(service: Service, count: int = 5) -> bool:
    answers = [service.get("/fplane/20180707") for _ in range(count)]
    return all(a is not None and a.status == 200 for a in answers)


def _spool_full(service, outcome, posts, answers, n, small) -> None:
    figures = outcome.figures
    refused = [Post(next(n), service.password) for _ in range(3 if small else 20)]
    before = {d: sorted(os.listdir(service.spool.root / d)) for d in ("tmp", "new", "ids")}
    filler = fill(service.spool.root)
    try:
        results = [service.post(p) for p in refused]
        figures["spool_full_posts"] = len(results)
        figures["spool_full_answers"] = sorted({(a.status, a.code) if a else None for a in results},
                                               key=str)
        outcome.check(all(a is not None and (a.status, a.code) == (503, "401") for a in results),
                      f"a post to a full spool was not refused with 503 / 401: {results}")
        after = {d: sorted(os.listdir(service.spool.root / d)) for d in ("tmp", "new", "ids")}
        outcome.check(after == before, f"a refused post left something in the spool: {after}")
        figures["spool_full_gets_served"] = _gets_served(service)
        outcome.check(figures["spool_full_gets_served"], "GETs failed while the spool was full")
    finally:
        filler.unlink()
    for post in refused:   # room again: the station posts again
        posts.append(post)
        answers[post.update_id] = service.post(post)
    service.wait_drained(60)


def _data_full(service, outcome, posts, answers, n, small) -> None:
    figures = outcome.figures
    queued = [Post(next(n), service.password) for _ in range(2 if small else 10)]
    filler = fill(service.config.data_dir)
    try:
        for post in queued:
            posts.append(post)
            answers[post.update_id] = service.post(post)
        outcome.check(all(answers[p.update_id] is not None and answers[p.update_id].code == "100"
                          for p in queued), "a post was refused while only the data directory was full")
        wait = 3.0 if small else 20.0   # many times [Writer] sleep x max_attempts
        time.sleep(wait)
        figures["data_full_seconds_waited"] = wait
        claimed = os.listdir(service.spool.cur)
        figures["data_full_queued_while_full"] = service.spool.backlog()
        outcome.check(service.spool.backlog() == len(queued) and claimed
                      and all(name.endswith(":1") for name in claimed),
                      f"the writer did not keep the updates queued at attempt 1: {claimed}")
        outcome.check(service.spool.failed_names() == [], "an update was given up on a full disk")
        log = (service.workdir / "log" / "fplaneserver.log").read_text(errors="replace")
        outcome.check("the disk is full" in log, "the writer's log does not say the disk is full")
        figures["data_full_gets_served"] = _gets_served(service)
        outcome.check(figures["data_full_gets_served"], "GETs failed while the data directory was full")
    finally:
        filler.unlink()
    started = time.monotonic()
    service.wait_drained(60)
    figures["data_full_committed_after_room_s"] = round(time.monotonic() - started, 1)


def _bad_file_on_full_spool(service, outcome, posts, answers, n) -> None:
    figures = outcome.figures
    writer = service.writer_pid()
    respawns = service.writer_respawns()
    os.kill(writer, signal.SIGSTOP)
    try:
        good = [Post(next(n), service.password) for _ in range(3)]
        for post in good:
            posts.append(post)
            answers[post.update_id] = service.post(post)
        bad = service.spool.new / f"{1:016d}.{'b' * 20}"   # oldest: first in line
        bad.write_bytes(b'{"update_id": "bbbbbbbbbbbbbbbbbbbb", "kind": "config", "stat')
        filler = fill(service.spool.root)
    finally:
        os.kill(writer, signal.SIGCONT)
    try:
        service.wait_for(lambda: service.spool.backlog() == 0, 60,
                         "the writer to move the bad file aside and commit the good ones")
        time.sleep(1.0)
        figures["bad_file_on_full_spool_writer_same_pid"] = service.writer_pid() == writer
        figures["bad_file_on_full_spool_writer_restarts"] = service.writer_respawns() - respawns
        outcome.check(service.writer_pid() == writer and service.writer_respawns() == respawns,
                      "the writer exited or was restarted on a full spool")
        outcome.check(bad.name in service.spool.failed_names(), "the bad file is not in failed/")
        figures["bad_file_reason_file_written_on_full_spool"] = (
            service.spool.failed / f"{bad.name}.reason").exists()
    finally:
        filler.unlink()
    service.wait_drained(30)
