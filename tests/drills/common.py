"""Steps several drills share: posting with many clients, holding the store's lock."""

import itertools
import subprocess
import sys
import threading
import time

from tests.drills.service import Post, Service, check_outcome


def post_all(service: Service, posts: list[Post], clients: int = 8, retries: int = 0,
             answers: dict | None = None, pause: float = 0.0) -> dict:
    """``posts`` by ``clients`` threads, each taking the next when answered. A post that
    got no answer (or a 5xx) is sent again up to ``retries`` times, after 0.2 s, as a
    station would. Returns update id -> the last answer (None: none came)."""
    answers = {} if answers is None else answers
    counter = itertools.count()
    lock = threading.Lock()

    def client():
        while (i := next(counter)) < len(posts):
            post = posts[i]
            for attempt in range(retries + 1):
                answer = service.post(post)
                with lock:
                    answers[post.update_id] = answer
                if answer is not None and answer.status < 500:
                    break
                time.sleep(0.2)
            if pause:
                time.sleep(pause)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()          # until the drill closes our stdin
db.execute("ROLLBACK")
"""


class StoreLock:
    """Another process holding the store in an exclusive transaction until released."""

    def __init__(self, store_path):
        self.process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(store_path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "locked":
            raise RuntimeError("the lock holder could not lock the store")
        self.taken_at = time.monotonic()

    def release(self) -> float:
        """Let go; returns how long it was held (seconds)."""
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        return time.monotonic() - self.taken_at

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


def judge_posts(outcome, posts, answers: dict, commits: dict[str, int]) -> dict:
    """check_outcome's figures into ``outcome``, and its promises checked: nothing answered
    100 lost, nothing committed twice. Returns the verdict for a drill's own checks."""
    verdict = check_outcome(posts, answers, commits)
    outcome.figures.update({k: v for k, v in verdict.items() if not k.endswith("_ids")})
    outcome.check(verdict["lost"] == 0, f"lost: {verdict['lost_ids']}")
    outcome.check(verdict["duplicated"] == 0, f"duplicated: {verdict['duplicated_ids']}")
    return verdict
