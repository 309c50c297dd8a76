"""db-lock: another process holds the store in an exclusive transaction for longer than the
writer's timeout (small) and for minutes (full), while stations post and pipelines read.

Promises checked: the writer waits and tries again for as long as it takes, spending no
update's attempts (the update in hand keeps attempt 1, nothing goes to failed/); nothing is
lost, nothing committed twice once the lock goes; every GET meanwhile is answered, served
or with a coded 503; the heartbeat stays fresh and says the writer waits for a locked
store, and /health answers 503 saying so.
"""

import itertools
import os
import threading
import time

from tests.drills.common import StoreLock, judge_posts
from tests.drills.service import Post, Service
from wsgi.system import heartbeat_limit

TARGET = ("0 lost, 0 duplicated, 0 attempts spent, every GET served or a coded 503, "
          "heartbeat and /health say the store is locked")
READ_PATHS = ("/fplane/20180707", "/fplane/20180707?actual_pos=1&full_fplane=0",
              "/fplane/?format=json", "/history", "/health")


def drill(workdir, outcome, small: bool = False) -> None:
    hold = 5.0 if small else 150.0
    figures = outcome.figures
    service = Service(workdir, writer_sleep=0.2)
    limit = heartbeat_limit(service.config)
    answers, gets, samples = {}, [], []
    n = itertools.count()
    with service.start():
        stop = threading.Event()

        def poster():   # a station posting every half second
            while not stop.wait(0.5):
                post = Post(next(n), service.password)
                answers[post.update_id] = (post, service.post(post))

        def reader():   # a pipeline reading all the time
            for path in itertools.cycle(READ_PATHS):
                if stop.is_set():
                    return
                answer = service.get(path, timeout=30)
                gets.append((path, None if answer is None else (answer.status, answer.code)))
                time.sleep(0.05)

        with StoreLock(service.config.store_path) as lock:
            threads = [threading.Thread(target=poster)] + [threading.Thread(target=reader)
                                                          for _ in range(2)]
            for t in threads:
                t.start()
            try:
                while time.monotonic() - lock.taken_at < hold:
                    time.sleep(1.0)
                    beat = service.heartbeat()
                    health = service.get("/health")
                    claimed = os.listdir(service.spool.cur)
                    samples.append({
                        "t": time.monotonic() - lock.taken_at,
                        "beat_age": time.time() - beat.get("beat_at_unix", 0),
                        "state": beat.get("state", ""),
                        "health": None if health is None else (health.status, health.code,
                                                               health.body.decode(errors="replace")),
                        "attempts": sorted(name.rsplit(":", 1)[1] for name in claimed),
                        "failed": len(service.spool.failed_names())})
            finally:
                stop.set()
                for t in threads:
                    t.join()
            figures["lock_held_seconds"] = round(lock.release(), 1)
        service.wait_drained(120)

        said = [s for s in samples if s["state"].startswith("waiting: the store is locked")
                and s["health"] and s["health"][:2] == (503, "401") and "locked" in s["health"][2]]
        figures["first_said_locked_after_s"] = round(said[0]["t"], 1) if said else None
        figures["samples_saying_locked"] = f"{len(said)} of {len(samples)}"
        outcome.check(len(said) >= len(samples) - 8,
                      "the heartbeat and /health did not keep saying the store is locked: "
                      f"{[(round(s['t']), s['state'][:60], s['health'] and s['health'][:2]) for s in samples][:12]}")
        figures["oldest_heartbeat_s"] = round(max(s["beat_age"] for s in samples), 1)
        outcome.check(figures["oldest_heartbeat_s"] < limit,
                      f"the heartbeat went stale ({figures['oldest_heartbeat_s']} s)")
        spent = sorted({a for s in samples for a in s["attempts"]})
        figures["attempt_numbers_seen_in_cur"] = spent
        outcome.check(spent in ([], ["1"]), f"attempts were spent while locked: {spent}")
        outcome.check(all(s["failed"] == 0 for s in samples), "an update went to failed/")

        figures["gets"] = len(gets)
        figures["gets_served_200"] = sum(1 for _, a in gets if a and a[0] == 200)
        figures["gets_coded_503"] = sum(1 for _, a in gets if a and a[0] == 503 and a[1] == "401")
        bad = [(p, a) for p, a in gets if not a or a[1] is None or (a[0] >= 500 and a[0] != 503)]
        figures["gets_unanswered_or_uncoded"] = len(bad)
        outcome.check(not bad, f"GETs unanswered, uncoded or another 5xx: {bad[:5]}")

    posts = [post for post, _ in answers.values()]
    commits = service.commits_by_update()
    verdict = judge_posts(outcome, posts, {uid: a for uid, (_, a) in answers.items()}, commits)
    outcome.check(verdict["answered_100"] == verdict["posted"] > 0,
                  f"posts not answered 100 while locked: {verdict['not_answered_100']}")
    counts = service.spool_counts()
    outcome.check(counts["new"] + counts["cur"] + counts["failed"] == 0, f"spool: {counts}")
