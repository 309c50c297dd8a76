"""writer-kill: updates queued while the writer is stopped, then the writer SIGKILLed at
random moments while it drains and started again each time, then killed again and
again while it holds the same update, then an update that fails by its own fault, retried
by the operator.

Promises checked: every update answered 100 is committed exactly once; `fplane-admin
verify` is clean; nothing is left in new/, cur/ or tmp/; an update in hand whenever the
writer dies keeps its attempt count and is committed once the cause is gone (never given
up for the deaths); an update whose own commit fails goes to failed/ after max_attempts
and `fplane-admin retry` brings it back.

The web side is examples/uwsgi.ini under uWSGI; the writer is the same fplane-writer
command, started by the drill rather than by uWSGI (see Service.start): the restart drill
checks that uWSGI starts a killed writer again.
"""

import os
import random
import sqlite3
import time

from tests.drills.common import StoreLock, judge_posts, post_all
from tests.drills.service import DrillFailure, Post, Service

TARGET = "0 lost, 0 duplicated, verify clean, spool empty; the same update never given up for the writer's deaths"
MAX_ATTEMPTS = 2


def drill(workdir, outcome, small: bool = False) -> None:
    updates, kills = (30, 3) if small else (2000, 50)
    rng = random.Random(18)
    figures = outcome.figures
    service = Service(workdir, writer_sleep=0.2, max_attempts=MAX_ATTEMPTS)
    with service.start(attached_writer=False):
        # 1. the backlog, queued while no writer runs
        posts = [Post(n, service.password) for n in range(updates)]
        started = time.monotonic()
        answers = post_all(service, posts, clients=8)
        figures["updates_posted"] = updates
        figures["posts_per_s"] = round(updates / (time.monotonic() - started), 1)
        outcome.check(all(a is not None and a.code == "100" for a in answers.values()),
                      "not every post of the backlog was answered 100")
        figures["backlog_before_drain"] = service.spool.backlog()

        # 2. SIGKILL at random moments while it drains, started again each time
        # The moments: one in five while it starts up (a random time after its start),
        # the others at a random point of the drain (when the backlog has come down to a
        # random level, then a random few ms more), so every kill comes while it drains.
        levels = sorted(rng.sample(range(1, updates), kills), reverse=True)
        backlog_at_kills, in_start_up, drain_started = [], 0, time.monotonic()
        for level in levels:
            if rng.random() < 0.2:
                writer = service.start_writer()
                time.sleep(rng.uniform(0.0, 0.3))
                in_start_up += service.heartbeat().get("pid") != writer.pid
            else:
                writer = _started_writer(service)
                while service.spool.backlog() > level and writer.poll() is None:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.02))
            writer.kill()
            writer.wait()
            backlog_at_kills.append(service.spool.backlog())
        _started_writer(service)
        service.wait_drained(600)
        figures["kills"] = kills
        figures["kills_while_updates_were_queued"] = sum(1 for b in backlog_at_kills if b > 0)
        figures["kills_during_start_up"] = in_start_up
        figures["backlog_at_kills_first_last"] = f"{backlog_at_kills[0]}, {backlog_at_kills[-1]}"
        figures["drain_seconds_with_kills"] = round(time.monotonic() - drain_started, 1)
        outcome.check(figures["kills_while_updates_were_queued"] >= kills - max(1, kills // 10),
                      f"only {figures['kills_while_updates_were_queued']} of {kills} kills came "
                      f"while updates were queued")
        service.stop_writer()

        # 3. killed again and again while it holds the same update
        deaths = MAX_ATTEMPTS + (1 if small else 4)
        held = Post(updates, service.password)
        with StoreLock(service.config.store_path):
            answers[held.update_id] = service.post(held)
            writer = _started_writer(service)
            name = service.wait_for(lambda: _claimed(service, held.update_id), 60,
                                    "the writer to claim the update")
            for _ in range(deaths):
                time.sleep(0.3)   # it is in its commit, waiting for the lock
                writer.kill()
                writer.wait()
                outcome.check(_claimed(service, held.update_id) == name,
                              f"the update in hand changed its attempt after a death: "
                              f"{_claimed(service, held.update_id)} (was {name})")
                writer = _started_writer(service)
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
        writer = service.writer_process
        writer.terminate()
        figures["writer_exit_status_on_sigterm"] = writer.wait(timeout=30)
        outcome.check(figures["writer_exit_status_on_sigterm"] == 0, "the writer did not stop cleanly")

    # 5. the verdict, with the service stopped (nothing moves any more)
    commits = service.commits_by_update()
    all_posts = posts + [held, refused]
    judge_posts(outcome, all_posts, answers, commits)
    outcome.check(commits.get(refused.update_id) == 1, "the retried update was not committed once")
    verify = service.admin("verify")
    figures["verify_exit_status"] = verify.returncode
    outcome.check(verify.returncode == 0, f"fplane-admin verify: {verify.stdout}{verify.stderr}")
    counts = service.spool_counts()
    figures["left_in_new_cur_tmp_failed_ids"] = sum(counts[d] for d in ("new", "cur", "tmp", "failed", "ids"))
    outcome.check(figures["left_in_new_cur_tmp_failed_ids"] == 0, f"left in the spool: {counts}")


def _started_writer(service: Service):
    """A new fplane-writer, once it is at work (its heartbeat carries its pid)."""
    writer = service.start_writer()
    service.wait_for(lambda: service.heartbeat().get("pid") == writer.pid or writer.poll() is not None,
                     60, "the writer to start")
    if writer.poll() is not None:
        raise DrillFailure(f"fplane-writer exited with {writer.returncode}: see "
                           f"{service.workdir / 'writer.out'}")
    return writer


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
