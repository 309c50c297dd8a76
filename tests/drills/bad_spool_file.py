"""bad-spool-file: files the web app never makes dropped into the spool among good
updates: truncated, corrupt, empty and foreign files (one whose JSON key holds a newline,
to forge a log line), a whole update under another update's name, names the spool never makes (hidden, with spaces, a newline, overlong, one
ending in .reason), directories, a symlink to a valid update outside the spool, a pipe,
and an odd name in cur/.

Promises checked: each is moved aside into failed/ with its reason (nothing followed out
of the spool: the symlinked update is never committed), the good updates are all
committed once, the writer never dies on them (same pid), no log line is forged,
`fplane-admin failed` lists every one, and `fplane-admin verify` is clean.
"""

import os
import random
import signal
import time

from tests.drills.common import judge_posts, post_all
from tests.drills.service import Post, Service
from wsgi.spool import SpooledUpdate

TARGET = "every bad entry in failed/ with its reason, listed by fplane-admin failed; good ones 0 lost, 0 duplicated"


def drill(workdir, outcome, small: bool = False) -> None:
    updates = 10 if small else 200
    rng = random.Random(18)
    figures = outcome.figures
    service = Service(workdir, writer_sleep=0.2)
    posts = [Post(n, service.password) for n in range(updates)]
    with service.start():
        writer = service.writer_pid()
        os.kill(writer, signal.SIGSTOP)
        try:
            answers = post_all(service, posts, clients=4)
            planted, outside_id = _plant(service, rng)
        finally:
            os.kill(writer, signal.SIGCONT)
        figures["good_updates"] = updates
        figures["bad_entries"] = len(planted)
        service.wait_drained(120)
        time.sleep(0.5)
        figures["writer_same_pid"] = service.writer_pid() == writer
        outcome.check(figures["writer_same_pid"], "the writer died on a bad file")
        listed = service.admin("failed")
        lines = listed.stdout.splitlines()[1:]   # after the heading, one line per file
        figures["listed_by_fplane_admin_failed"] = len(lines)
        outcome.check(len(lines) == len(planted),
                      f"fplane-admin failed lists {len(lines)} of {len(planted)}: {listed.stdout}")
        without_reason = [n for n in service.spool.failed_names()
                          if service.spool.failure_reason_of(n).startswith("no reason")]
        outcome.check(not without_reason, f"moved aside without a reason: {without_reason}")
        reasons = sorted({service.spool.failure_reason_of(n) for n in service.spool.failed_names()})
        figures["distinct_reasons"] = len(reasons)
        for reason in reasons:
            print(f"   reason: {reason[:150]}")
    log = (service.workdir / "log" / "fplaneserver.log").read_text(errors="replace")
    forged = [line for line in log.splitlines() if line.startswith("FORGED")]
    figures["forged_log_lines"] = len(forged)
    outcome.check(not forged, f"a bad file forged a log line: {forged[:2]}")
    commits = service.commits_by_update()
    outcome.check(outside_id not in commits, "the update a symlink pointed at was committed")
    judge_posts(outcome, posts, answers, commits)
    counts = service.spool_counts()
    figures["failed_files_with_reasons"] = counts["failed"]
    outcome.check(counts["new"] + counts["cur"] == 0, f"left queued: {counts}")
    outcome.check(len(service.spool.failed_names()) == len(planted),
                  f"{len(service.spool.failed_names())} in failed/, {len(planted)} planted")
    verify = service.admin("verify")
    outcome.check(verify.returncode == 0, f"fplane-admin verify: {verify.stdout}{verify.stderr}")


def _plant(service: Service, rng: random.Random) -> tuple[list[str], str]:
    """The bad entries, named to come before, among and after the good updates."""
    spool = service.spool
    good = sorted(os.listdir(spool.new))
    sample = (spool.new / good[0]).read_bytes()
    now = time.time_ns() // 1000
    names = iter(f"{now - 10_000_000 + i * 7:016d}.{rng.getrandbits(80):020x}" for i in range(100))
    planted = []

    def put(directory, name, make):
        make(directory / name)
        planted.append(name)

    put(spool.new, next(names), lambda p: p.write_bytes(sample[:len(sample) // 2]))        # truncated
    put(spool.new, next(names), lambda p: p.write_bytes(rng.randbytes(3000)))              # corrupt
    put(spool.new, next(names), lambda p: p.write_bytes(b""))                              # empty
    put(spool.new, next(names), lambda p: p.write_bytes(b'{"hello": "world"}'))            # foreign JSON
    put(spool.new, next(names), lambda p: p.write_text("# an fplane file, not an update\n"))
    put(spool.new, next(names), lambda p: p.write_bytes(sample))   # a whole update, wrong name
    put(spool.new, next(names),   # a key that would forge a log line if written as it is
        lambda p: p.write_bytes(b'{"update_id": "x", "\\nFORGED ERROR a log line": 1}'))
    for odd in ("notes.txt", ".hidden", "name with spaces", "line\nbreak", "x" * 200,
                "1234.reason", good[0] + ".orig"):
        put(spool.new, odd, lambda p: p.write_bytes(sample))
    put(spool.new, next(names), lambda p: p.mkdir())                                       # directory
    put(spool.new, "a-directory", lambda p: p.mkdir())
    put(spool.new, next(names), lambda p: os.mkfifo(p))                                    # pipe
    outside = SpooledUpdate.from_bytes(sample)
    outside_update = SpooledUpdate(**{**outside.__dict__, "update_id": f"{rng.getrandbits(80):020x}"})
    target = service.workdir / "outside.json"
    target.write_bytes(outside_update.to_bytes())
    put(spool.new, outside_update.name, lambda p: os.symlink(target, p))                   # symlink
    put(spool.cur, "not-a-claim", lambda p: p.write_bytes(sample))                         # cur/
    return planted, outside_update.update_id
