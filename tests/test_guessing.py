"""Password guessing (wsgi/guessing.py): failed attempts counted per station and per client
address in a SQLite file every worker shares, 213 (HTTP 429 + Retry-After) while locked out.

First the counts themselves, two limiters on one data directory standing for two workers;
then the real service: examples/uwsgi.ini (4 workers) on a free port, clients on distinct
loopback addresses (127.0.0.2, .3, ...), every worker killed in the middle."""

import http.client
import logging
import os
import signal
import time
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest

from tests.fplane_samples import make_rows, status_from_rows, swap_ifus
from tests.support import (add_station, import_rows, init_store, update_form, uwsgi_workers,
                           write_config)
from tests.test_deploy import running_uwsgi
from wsgi import codes
from wsgi.guessing import GuessLimiter, address_key, station_key
from wsgi.responses import CodedError

LOG = logging.getLogger("test_guessing")


def refusal(limiter, keys, now):
    try:
        limiter.check(keys, now)
    except CodedError as err:
        return err
    return None


def test_failures_counted_by_one_worker_lock_out_in_another(tmp_path):
    one, two = (GuessLimiter(tmp_path, max_failures=3, lockout=60, log=LOG) for _ in range(2))
    keys = [station_key("tcs"), address_key("10.0.0.1")]
    one.failed(keys, now=1000)
    two.failed(keys, now=1001)
    assert refusal(one, keys, 1002) is None
    one.failed(keys, now=1002)              # the third: locked out until 1062
    for limiter in (one, two, GuessLimiter(tmp_path, 3, 60, LOG)):   # a restarted worker too
        err = refusal(limiter, [station_key("tcs"), address_key("10.0.0.9")], 1012)
        assert err.code == codes.TOO_MANY_FAILURES
        assert dict(err.headers)["Retry-After"] == "50"
        assert "station tcs" in err.message and "wait 50 s" in err.message
        # the address, for any station
        assert refusal(limiter, [station_key("other"), address_key("10.0.0.1")], 1012) is not None
    assert refusal(two, keys, 1062.5) is None          # the lockout has passed
    assert refusal(two, [station_key("other"), address_key("10.0.0.2")], 1012) is None


def test_old_failures_are_forgotten_and_a_good_password_forgives_the_station(tmp_path):
    limiter = GuessLimiter(tmp_path, max_failures=3, lockout=60, log=LOG)
    keys = [station_key("tcs"), address_key("10.0.0.1")]
    limiter.failed(keys, now=1000)
    limiter.failed(keys, now=1001)
    limiter.failed(keys, now=1070)          # the first two are older than 60 s: one failure now
    assert refusal(limiter, keys, 1071) is None
    limiter.failed([station_key("tcs")], now=1071)
    limiter.succeeded("tcs")                # the owner, with the right password
    limiter.failed([station_key("tcs")], now=1072)
    assert refusal(limiter, [station_key("tcs")], 1073) is None
    # ... but not the address (one failure from 1070): a good password must not clear a
    # guesser's count
    limiter.failed([address_key("10.0.0.1")], now=1073)
    assert refusal(limiter, [address_key("10.0.0.1")], 1074) is None
    limiter.failed([address_key("10.0.0.1")], now=1074)
    assert refusal(limiter, [address_key("10.0.0.1")], 1075).code == codes.TOO_MANY_FAILURES


def test_an_unreadable_counts_file_refuses_with_a_code(tmp_path):
    limiter = GuessLimiter(tmp_path / "missing", max_failures=3, lockout=60, log=LOG)
    err = refusal(limiter, [station_key("tcs")], 1000)
    assert err.code == codes.UNAVAILABLE
    limiter.failed([station_key("tcs")], now=1000)    # logged, not raised: 203 is answered


# -- the real service --------------------------------------------------------------------

LOCKOUT = 6
PASSWORD_MARK = "guess-"   # every wrong password starts with it: the log must never hold one


@pytest.fixture
def service(tmp_path):
    config = write_config(tmp_path, Server={"max_failed_logins": "3", "login_lockout": str(LOCKOUT)})
    init_store(config)
    rows = make_rows()
    import_rows(config, rows, "20180601")
    passwords = {name: add_station(config, name, "config") for name in ("tcs", "other")}
    with running_uwsgi(config, tmp_path / "uwsgi.log") as (base, process):
        yield base, process, passwords, tmp_path


def dry_run(rows) -> dict:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"config": status_from_rows(swap_ifus(rows, 31, 32), now), "commit": False}


def post(base: str, source: str, station: str, password: str):
    """POST /fplane from the loopback address ``source``: (code, Retry-After, body)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    try:
        body = urlencode(update_form(station, password, dry_run(make_rows())))
        connection.request("POST", "/fplane", body=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        return (int(response.headers["X-FPlane-Code"]), response.headers.get("Retry-After"),
                response.read().decode())
    finally:
        connection.close()


def test_guessing_is_locked_out_across_workers_and_restarts(service):
    base, process, passwords, tmp_path = service
    guesser, owner, bystander = "127.0.0.2", "127.0.0.3", "127.0.0.4"

    # three wrong guesses at tcs, each on its own connection: the workers take turns
    for n in range(3):
        code, _, body = post(base, guesser, "tcs", f"{PASSWORD_MARK}{n}")
        assert code == codes.WRONG_PASSWORD, body
    locked_at = time.monotonic()

    # the station is locked from any address, even for its right password ...
    code, retry_after, body = post(base, owner, "tcs", passwords["tcs"])
    assert code == codes.TOO_MANY_FAILURES, body
    assert 1 <= int(retry_after) <= LOCKOUT
    assert body.startswith("213 too many failed password attempts") and f"wait {retry_after} s" in body
    # ... and the guessing address for any station; others are untouched
    assert post(base, guesser, "other", passwords["other"])[0] == codes.TOO_MANY_FAILURES
    assert post(base, bystander, "other", passwords["other"])[0] == codes.DRY_RUN

    # every worker killed and respawned by the master: the lockout holds
    before = list(uwsgi_workers(process.pid).values())
    assert len(before) == 4
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while len(after := list(uwsgi_workers(process.pid).values())) < 4 or set(after) & set(before):
        assert time.monotonic() < deadline, "uWSGI did not respawn its workers"
        time.sleep(0.1)
    assert post(base, owner, "tcs", passwords["tcs"])[0] == codes.TOO_MANY_FAILURES

    # once the lockout has passed, the owner's right password works at once
    time.sleep(max(0.0, locked_at + LOCKOUT + 0.5 - time.monotonic()))
    code, _, body = post(base, owner, "tcs", passwords["tcs"])
    assert code == codes.DRY_RUN, body

    log = (tmp_path / "log" / "fplaneserver.log").read_text()
    assert "failed logins: station tcs locked out for 6 s after 3 failed password attempts" in log
    assert "failed logins: address 127.0.0.2 locked out" in log
    assert f"{owner} POST /fplane 213 429 " in log
    assert PASSWORD_MARK not in log and passwords["tcs"] not in log
