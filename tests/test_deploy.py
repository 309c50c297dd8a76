"""The real deployment: examples/uwsgi.ini started with uWSGI on a free loopback port."""

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fplane_samples import make_rows, strict_fplane_parse
from tests.support import REPO, free_port, import_rows, init_store, uwsgi_binary, write_config
from wsgi import fplane

UWSGI_INI = REPO / "examples" / "uwsgi.ini"


def start_uwsgi(config: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FPLANE_CONFIG": str(config), "FPLANE_PORT": str(port)}
    with open(log, "wb") as out:
        return subprocess.Popen([uwsgi_binary(), "--ini", str(UWSGI_INI)], env=env,
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
            with urllib.request.urlopen(base + "/", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    pytest.fail(f"uWSGI did not answer within 30 s:\n{log.read_text()}")


@pytest.fixture
def service(tmp_path):
    config = write_config(tmp_path)
    init_store(config)
    rows = make_rows()
    import_rows(config, rows, "20180601", "--comment", "deployed")
    port = free_port()
    log = tmp_path / "uwsgi.log"
    process = start_uwsgi(config, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, process, log)
        yield base, rows, tmp_path
    finally:
        assert stop(process) == 0, log.read_text()


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
