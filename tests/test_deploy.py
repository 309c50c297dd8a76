"""The real deployment: examples/uwsgi.ini started with uWSGI on a free loopback port."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from datetime import datetime, timezone

from tests.fplane_samples import make_rows, status_from_rows, strict_fplane_parse
from tests.support import (REPO, add_station, free_port, import_rows, init_store, uwsgi_binary,
                           write_config)
from wsgi import fplane
from wsgi.heartbeat import read_heartbeat

UWSGI_INI = REPO / "examples" / "uwsgi.ini"


def start_uwsgi(config: Path, port: int, log: Path, ini: Path = UWSGI_INI) -> subprocess.Popen:
    # The venv's bin/ first on PATH, as `make run` does, so the attached daemon finds fplane-writer.
    env = {**os.environ, "FPLANE_CONFIG": str(config), "FPLANE_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "wb") as out:
        return subprocess.Popen([uwsgi_binary(), "--ini", str(ini)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=config.parent)


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
    return process.returncode


def wait_until_serving(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uWSGI exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/?format=txt", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # accepted, workers still loading
            time.sleep(0.2)
    pytest.fail(f"uWSGI did not answer within 30 s:\n{log.read_text()}")


@contextmanager
def running_uwsgi(config: Path, log: Path, ini: Path = UWSGI_INI):
    """uWSGI on a free loopback port, once it answers: yields (base URL, process); stopped
    after, and it must stop cleanly (exit status 0)."""
    port = free_port()
    process = start_uwsgi(config, port, log, ini)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, process, log)
        yield base, process
    finally:
        assert stop(process) == 0, log.read_text()


WRITER_SLEEP = 1.0


@pytest.fixture
def service(tmp_path):
    config = write_config(tmp_path, Writer={"sleep": str(WRITER_SLEEP)})
    init_store(config)
    rows = make_rows()
    import_rows(config, rows, "20180601", "--comment", "deployed")
    with running_uwsgi(config, tmp_path / "uwsgi.log") as (base, _):
        yield base, rows, tmp_path


def test_original_url_under_uwsgi_with_urllib(service):
    base, rows, _ = service
    with urllib.request.urlopen(f"{base}/fplane/20180707?actual_pos=0&full_fplane=1") as response:
        assert response.status == 200
        assert response.headers["X-FPlane-Code"] == "100"
        text = response.read().decode()
    served = strict_fplane_parse(text)
    assert set(served) == {f"{r.ifuslot:03d}" for r in rows if r.active}
    assert fplane.parse_fplane(text).rows == fplane.canonical_order(rows)


def test_original_url_under_uwsgi_with_curl(service, tmp_path):
    base, rows, _ = service
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out = tmp_path / "fplane20180707.txt"
    subprocess.run(["curl", "--silent", "--show-error", "--fail", "-o", str(out),
                    f"{base}/fplane/20180707?actual_pos=0&full_fplane=0"], check=True)
    served = strict_fplane_parse(out.read_text())
    assert set(served) == {"000"} | {f"{r.ifuslot:03d}" for r in rows
                                     if r.active and r.ifuslot in fplane.VIRUS_SLOTS}


def test_errors_and_conditional_get_under_uwsgi(service):
    base, _, tmp_path = service
    for path, status, code in (("/fplane/garbage", 400, "301"), ("/fplane/19990101", 404, "302"),
                               ("/nothing/here", 404, "303")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path)
        assert refused.value.code == status
        assert refused.value.headers["X-FPlane-Code"] == code
        assert refused.value.read().decode().startswith(f"{code} ")
    with urllib.request.urlopen(f"{base}/fplane/20180707") as response:
        etag = response.headers["ETag"]
    request = urllib.request.Request(f"{base}/fplane/20180707", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(request)
    assert not_modified.value.code == 304
    # every request reached the app's own log, with address, method, path, code and time
    log = (tmp_path / "log" / "fplaneserver.log").read_text()
    assert "127.0.0.1 GET /fplane/garbage 301 400 " in log


def test_an_overlong_date_gets_its_coded_answer_under_uwsgi(service):
    # 20,000 characters in the path and as many in the query: uWSGI passes each on twice,
    # beyond its default buffer (and the 16 KiB the ini once set), which it drops unanswered
    base, _, _ = service
    for url in (f"{base}/fplane/{'9' * 20_000}", f"{base}/fplane/20180707?known_at={'9' * 20_000}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url)
        assert refused.value.code == 400
        assert refused.value.headers["X-FPlane-Code"] == "301"
        assert len(refused.value.read()) < 1000   # the date is cut short in the message


def test_bad_config_stops_start_up_with_one_clear_line(tmp_path):
    config = write_config(tmp_path, Update={"max_age": "six hours"})
    log = tmp_path / "uwsgi.log"
    process = start_uwsgi(config, free_port(), log)
    try:
        status = process.wait(timeout=30)
    finally:
        stop(process)
    assert status != 0
    output = log.read_text()
    assert f"fplaneserver: {config}: [Update] max_age = 'six hours': not a whole number" in output
    assert "Traceback" not in output


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers, response.read().decode()


def test_a_posted_status_is_served_within_the_writer_sleep(service):
    """The whole update path under uWSGI: update_fplane posts, the attached writer commits,
    GET serves it, all within [Writer] sleep plus a second."""
    base, rows, tmp_path = service
    config = tmp_path / "config.ini"
    password = add_station(config, "tcs", "config")
    (tmp_path / "tcs.password").write_text(password + "\n")
    (tmp_path / "tcs.password").chmod(0o600)
    changed = [r for r in rows if r.ifuslot != 21]  # seat 021 loses everything
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps(status_from_rows(changed, now)))
    before, _ = _get(f"{base}/fplane/")

    posted = subprocess.run(
        [str(Path(sys.executable).parent / "update_fplane"), "--station", "tcs",
         "--password-file", str(tmp_path / "tcs.password"), "--url", base, str(status_file)],
        capture_output=True, text=True, timeout=60)
    accepted = time.monotonic()
    assert posted.returncode == 0, posted.stderr
    assert posted.stdout.startswith("100 OK")
    update_id = posted.stdout.split("update ")[-1].split()[0]

    deadline = accepted + WRITER_SLEEP + 1.0
    while True:
        headers, text = _get(f"{base}/fplane/")
        if headers["X-FPlane-Version"] != before["X-FPlane-Version"]:
            break
        assert time.monotonic() < deadline, "not committed within [Writer] sleep + 1 s"
        time.sleep(0.05)
    assert "021" not in strict_fplane_parse(text)
    _, state = _get(f"{base}/updates/{update_id}")
    assert "state: committed" in state and f"version: {headers['X-FPlane-Version']}" in state
    beat = read_heartbeat(tmp_path / "data")
    assert beat is not None and beat["committed"] == 1


def test_stopping_uwsgi_stops_the_writer(tmp_path):
    config = write_config(tmp_path, Writer={"sleep": str(WRITER_SLEEP)})
    init_store(config)
    log = tmp_path / "uwsgi.log"
    with running_uwsgi(config, log):
        deadline = time.monotonic() + 10
        while (beat := read_heartbeat(tmp_path / "data")) is None:
            assert time.monotonic() < deadline, "the writer never started:\n" + log.read_text()
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while _alive(beat["pid"]):
        assert time.monotonic() < deadline, "the writer outlived uWSGI"
        time.sleep(0.05)
    assert read_heartbeat(tmp_path / "data")["state"] == "stopped"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
