"""writer-kill: updates queued while the writer is stopped, then the writer SIGKILLed at
random moments while it drains (uWSGI starts it again each time), then killed again and
again while it holds the same update, then an update that fails by its own fault, retried
by the operator.

Promises checked: every update answered 100 is committed exactly once; `fplane-admin
verify` is clean; nothing is left in new/, cur/ or tmp/; an update in hand whenever the
writer dies keeps its attempt count and is committed once the cause is gone (never given
up for the deaths); an update whose own commit fails goes to failed/ after max_attempts
and `fplane-admin retry` brings it back.
"""

import os
import random
import signal
import sqlite3
import time

from tests.drills.common import StoreLock, post_all
from tests.drills.service import Post, Service, check_outcome

TARGET = "0 lost, 0 duplicated, verify clean, spool empty; the same update never given up for the writer's deaths"
MAX_ATTEMPTS = 2


def drill(workdir, outcome, small: bool = False) -> None:
    updates, kills = (20, 2) if small else (2000, 50)
    rng = random.Random(18)
    figures = outcome.figures
    service = Service(workdir, writer_sleep=0.2, max_attempts=MAX_ATTEMPTS)
    with service.start():
        # 1. the backlog, queued with the writer stopped
        writer = service.writer_pid()
        os.kill(writer, signal.SIGSTOP)
        posts = [Post(n, service.password) for n in range(updates)]
        started = time.monotonic()
        answers = post_all(service, posts, clients=8)
        figures["updates_posted"] = updates
        figures["posts_per_s"] = round(updates / (time.monotonic() - started), 1)
        outcome.check(all(a is not None and a.code == "100" for a in answers.values()),
                      "not every post of the backlog was answered 100")
        figures["backlog_before_drain"] = service.spool.backlog()

        # 2. SIGKILL at random moments while it drains; uWSGI starts it again each time
        backlog_at_kills, drain_started = [], time.monotonic()
        for k in range(kills):
            if k:
                writer = service.wait_for(lambda: _new_writer(service, writer), 60,
                                          "uWSGI to start the writer again")
                time.sleep(rng.uniform(0.0, 0.4))
            os.kill(writer, signal.SIGKILL)
            backlog_at_kills.append(service.spool.backlog())
        service.wait_drained(300)
        figures["kills"] = kills
        figures["kills_while_updates_were_queued"] = sum(1 for b in backlog_at_kills if b > 0)
        figures["drain_seconds_with_kills"] = round(time.monotonic() - drain_started, 1)
        figures["writer_restarts_by_uwsgi"] = service.writer_respawns()

        # 3. killed again and again while it holds the same update
        deaths = MAX_ATTEMPTS + (1 if small else 4)
        held = Post(updates, service.password)
        with StoreLock(service.config.store_path):
            answers[held.update_id] = service.post(held)
            name = service.wait_for(lambda: _claimed(service, held.update_id), 30,
                                    "the writer to claim the update")
            for _ in range(deaths):
                writer = service.writer_pid()
                time.sleep(0.3)   # it is in its commit, waiting for the lock
                os.kill(writer, signal.SIGKILL)
                writer = service.wait_for(lambda: _new_writer(service, writer), 60,
                                          "uWSGI to start the writer again")
                service.wait_for(lambda: service.heartbeat().get("pid") == writer, 30,
                                 "the new writer to start working")
                outcome.check(_claimed(service, held.update_id) == name,
                              f"the update in hand changed its attempt after a death: "
                              f"{_claimed(service, held.update_id)} (was {name})")
            outcome.check(service.spool.failed_names() == [],
                          "an update was given up because the writer died")
        service.wait_drained(60)
        figures["deaths_holding_one_update"] = deaths
        figures["its_attempt_number_after_the_deaths"] = name.rsplit(":", 1)[1]

        # 4. failing by its own fault: max_attempts, then failed/, then the operator's retry
        refused = Post(updates + 1, service.password)
        trigger = (f"CREATE TRIGGER drill_refuse BEFORE INSERT ON versions "
                   f"WHEN NEW.comment LIKE '%{refused.update_id}%' "
                   f"BEGIN SELECT RAISE(ABORT, 'refused by the drill'); END")
        _store_sql(service, trigger)
        answers[refused.update_id] = service.post(refused)
        service.wait_for(lambda: any(refused.update_id in n for n in service.spool.failed_names()),
                         60, "the writer to give the refused update up")
        listed = service.admin("failed").stdout
        outcome.check(f"attempt {MAX_ATTEMPTS}:" in listed and "refused by the drill" in listed,
                      f"fplane-admin failed does not give the reason: {listed!r}")
        _store_sql(service, "DROP TRIGGER drill_refuse")
        retried = service.admin("retry", refused.update_id)
        outcome.check(retried.returncode == 0, f"fplane-admin retry failed: {retried.stderr}")
        service.wait_drained(60)
        figures["failed_by_its_own_fault_then_retried"] = 1

    # 5. the verdict, with the service stopped (nothing moves any more)
    commits = service.commits_by_update()
    all_posts = posts + [held, refused]
    verdict = check_outcome(all_posts, answers, commits)
    figures.update({k: v for k, v in verdict.items() if not k.endswith("_ids")})
    outcome.check(verdict["lost"] == 0, f"lost: {verdict['lost_ids']}")
    outcome.check(verdict["duplicated"] == 0, f"duplicated: {verdict['duplicated_ids']}")
    outcome.check(commits.get(refused.update_id) == 1, "the retried update was not committed once")
    verify = service.admin("verify")
    figures["verify_exit_status"] = verify.returncode
    outcome.check(verify.returncode == 0, f"fplane-admin verify: {verify.stdout}{verify.stderr}")
    counts = service.spool_counts()
    figures["left_in_new_cur_tmp_failed"] = sum(counts[d] for d in ("new", "cur", "tmp", "failed"))
    outcome.check(figures["left_in_new_cur_tmp_failed"] == 0, f"left in the spool: {counts}")


def _new_writer(service: Service, old: int) -> int | None:
    pid = service.writer_pid()
    return pid if pid not in (None, old) else None


def _claimed(service: Service, uid: str) -> str | None:
    names = [n for n in os.listdir(service.spool.cur) if uid in n]
    return names[0] if names else None


def _store_sql(service: Service, sql: str) -> None:
    """The operator changing the store by hand (sqlite3), waiting for the writer's turn."""
    db = sqlite3.connect(service.config.store_path, timeout=60)
    try:
        db.execute(sql)
        db.commit()
    finally:
        db.close()
