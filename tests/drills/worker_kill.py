"""worker-kill: uWSGI's web workers SIGKILLed at random moments while 8 clients post (the
master starts new ones).

Promises checked: every post answered 100 is committed exactly once; a post that got no
answer is committed once or not at all; no half-written spool file is ever picked up
(failed/ stays empty, every file in done/ is a whole update under its own name); the
temporary files a killed worker leaves in tmp/ are reported by `fplane-admin verify` and
removed by the writer once they are safely old, never before.
"""

import os
import random
import signal
import threading
import time

from tests.drills.common import judge_posts, post_all
from tests.drills.service import Post, Service
from wsgi.spool import STALE_TEMPORARY_AGE, TEMPORARY_GRACE, SpooledUpdate

TARGET = ("0 lost (answered 100 committed once), 0 duplicated, unanswered committed at most "
          "once, no half-written file picked up, stale tmp/ files reported then removed")


def drill(workdir, outcome, small: bool = False) -> None:
    updates = 40 if small else 1000
    rng = random.Random(18)
    figures = outcome.figures
    service = Service(workdir, writer_sleep=0.2)
    posts = [Post(n, service.password) for n in range(updates)]
    kills = []
    with service.start():
        done = threading.Event()

        def killer():
            while not done.wait(rng.uniform(0.05, 0.6)):
                workers = service.worker_pids()
                if workers:
                    victim = rng.choice(workers)
                    try:
                        os.kill(victim, signal.SIGKILL)
                        kills.append(victim)
                    except ProcessLookupError:
                        pass

        thread = threading.Thread(target=killer)
        thread.start()
        started = time.monotonic()
        try:
            answers = post_all(service, posts, clients=8)
        finally:
            done.set()
            thread.join()
        figures["posting_seconds"] = round(time.monotonic() - started, 1)
        figures["workers_killed"] = len(kills)
        service.wait_drained(120)
        figures["no_answer"] = sum(1 for a in answers.values() if a is None)
        figures["uncoded_answers"] = sum(1 for a in answers.values()
                                         if a is not None and a.code is None)
        outcome.check(figures["workers_killed"] > 0, "no worker was killed")

        # what killed workers left in tmp/, and one more as a worker killed between its
        # write and its rename leaves it: half an update, under a spool name
        left_by_kills = sorted(os.listdir(service.spool.tmp))
        figures["tmp_files_left_by_killed_workers"] = len(left_by_kills)
        planted = service.spool.tmp / f"{1:016d}.{'f' * 20}.deadbeef"
        planted.write_bytes(Post(updates, service.password).request[-300:-100])
        left = left_by_kills + [planted.name]
        _age(service, left, TEMPORARY_GRACE + 60)
        verify = service.admin("verify")
        outcome.check(verify.returncode == 0 and f"{len(left)} temporary files" in verify.stdout,
                      f"verify does not report the {len(left)} left-over temporary files: "
                      f"{verify.stdout}{verify.stderr}")
        time.sleep(2.5)   # the writer's check for stale temporaries comes and goes
        outcome.check(sorted(os.listdir(service.spool.tmp)) == sorted(left),
                      "the writer removed temporary files that were not yet safely old")
        _age(service, left, STALE_TEMPORARY_AGE + 60)
        service.wait_for(lambda: not os.listdir(service.spool.tmp), 30,
                         "the writer to remove the stale temporary files")
        verify = service.admin("verify")
        outcome.check("temporary files" not in verify.stdout,
                      f"verify still reports temporary files: {verify.stdout}")
        figures["stale_tmp_files_removed_by_writer"] = len(left)

    commits = service.commits_by_update()
    judge_posts(outcome, posts, answers, commits)
    outcome.check(figures["uncoded_answers"] == 0,
                  f"{figures['uncoded_answers']} answers without X-FPlane-Code")
    counts = service.spool_counts()
    figures["failed"] = counts["failed"]
    outcome.check(counts["failed"] == 0, "a spool file went to failed/ (half-written?)")
    whole = 0
    for name in os.listdir(service.spool.done):
        try:
            update = SpooledUpdate.from_bytes((service.spool.done / name).read_bytes())
            whole += update.name == name
        except ValueError:
            pass
    figures["done_files_whole_and_named_right"] = f"{whole} of {counts['done']}"
    outcome.check(whole == counts["done"], "a file in done/ is not a whole update under its name")
    outcome.check(counts["new"] + counts["cur"] == 0, f"left queued: {counts}")
    verify = service.admin("verify")
    outcome.check(verify.returncode == 0, f"fplane-admin verify: {verify.stdout}{verify.stderr}")


def _age(service: Service, names, seconds: float) -> None:
    """Make the files look ``seconds`` old (their mtime), as time passing would."""
    then = time.time() - seconds
    for name in names:
        try:
            os.utime(service.spool.tmp / name, (then, then))
        except FileNotFoundError:
            pass
