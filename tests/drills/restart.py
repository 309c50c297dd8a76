"""restart: the whole service (uWSGI master, workers, router, writer) stopped with SIGTERM
in the middle of a stream of posts, and started again, several times. The clients send a
post that got no answer again, as a station does.

Promises checked: every post answered 100 is committed exactly once, none twice; the
service stops cleanly (exit status 0, the writer's heartbeat says stopped) and the spool
is empty at the end; `fplane-admin verify` is clean.
"""

import os
import signal
import threading
import time

from tests.drills.common import judge_posts, post_all
from tests.drills.service import Post, Service

TARGET = "0 lost, 0 duplicated, clean stops, spool empty, verify clean"


def drill(workdir, outcome, small: bool = False) -> None:
    updates, restarts = (40, 1) if small else (1000, 5)
    figures = outcome.figures
    service = Service(workdir, writer_sleep=0.2)
    posts = [Post(n, service.password) for n in range(updates)]
    answers: dict = {}
    stops = []
    with service.start():
        # The writer alone SIGKILLed: uWSGI starts it again, and no other copy runs on
        killed = service.writer_pid()
        os.kill(killed, signal.SIGKILL)
        again = service.wait_for(lambda: _other_writer(service, killed), 60,
                                 "uWSGI to start the killed writer again")
        writers = [pid for pid, cmd in service._children() if "fplane-writer" in cmd]
        figures["writer_restarted_by_uwsgi"] = again != killed and writers == [again]
        outcome.check(figures["writer_restarted_by_uwsgi"],
                      f"after a SIGKILL of the writer, its processes are {writers}")
        finished = threading.Event()

        def restarter():
            for r in range(restarts):
                # wait for a part of the stream to pass, then stop in the middle of it
                target = (r + 1) * updates // (restarts + 1)
                while len(answers) < target and not finished.is_set():
                    time.sleep(0.01)
                if finished.is_set():
                    return
                stops.append(service.stop())
                stops.append(service.heartbeat().get("state", f"no heartbeat: {service.heartbeat()}"))
                service.start()

        thread = threading.Thread(target=restarter)
        thread.start()
        started = time.monotonic()
        try:
            post_all(service, posts, clients=8, retries=200, answers=answers)
        finally:
            finished.set()
            thread.join()
        figures["posting_seconds"] = round(time.monotonic() - started, 1)
        figures["restarts"] = len(stops) // 2
        figures["stop_exit_statuses"] = sorted(set(stops[0::2]))
        figures["writer_state_after_stops"] = sorted(set(map(str, stops[1::2])))
        outcome.check(figures["restarts"] == restarts, f"only {figures['restarts']} restarts")
        outcome.check(set(stops[0::2]) <= {0}, f"uWSGI stopped with {stops[0::2]}")
        outcome.check(set(stops[1::2]) <= {"stopped"},
                      f"the writer did not stop cleanly: {stops[1::2]}")
        service.wait_drained(120)
    commits = service.commits_by_update()
    verdict = judge_posts(outcome, posts, answers, commits)
    outcome.check(verdict["not_answered_100"] == 0,
                  f"{verdict['not_answered_100']} posts never answered 100 despite retries")
    counts = service.spool_counts()
    outcome.check(counts["new"] + counts["cur"] + counts["failed"] == 0, f"spool: {counts}")
    verify = service.admin("verify")
    outcome.check(verify.returncode == 0, f"fplane-admin verify: {verify.stdout}{verify.stderr}")


def _other_writer(service: Service, old: int) -> int | None:
    pid = service.writer_pid()
    return pid if pid not in (None, old) else None
