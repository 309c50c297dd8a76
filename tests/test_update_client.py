"""update_fplane (wsgi/update_client.py) over real HTTP, against a scripted fake server.

The fake is a real http.server listener on a free loopback port: it records every
request as it arrived on the wire (path, headers, raw body and the form parsed from it)
and answers from a list of responses the test scripts. It knows nothing of fplaneserver
beyond the contract's response shape (X-FPlane-Code, ``<code> <message>`` first line),
so these tests pin the client's side of contract.md sections 5, 6 and 8. The injected
sleep records the backoff delays instead of waiting.
"""

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wsgi import update_client
from wsgi.update_client import backoff_delay, main

PASSWORD = "s3cret+pass word&=%"  # characters that must survive form encoding
STATUS = {
    "timestamp": "2018-07-15T17:02:11Z",
    "spectrographs": [
        {"specid": "315", "specslot": "218", "ifuslot": "021", "ifuid": "073"},
        {"specid": "000", "specslot": "241", "ifuslot": "013", "ifuid": "043", "note": "Größe"},
    ],
}
POSITIONS = [{"ifuslot": "021", "x": -50.1, "y": 0.25}]
FPLANE_FILE = "# fplane file\n021\t 0.000\t-50.000\t315\t218\t073\t0.000\t1.000\n"


@dataclass
class Reply:
    status: int
    body: str = ""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: longer than the client's timeout = a lost answer


def coded(code: int, status: int, *lines: str, **headers: str) -> Reply:
    """An fplaneserver-style answer: X-FPlane-Code and ``<code> <message>`` lines."""
    return Reply(status, "".join(line + "\n" for line in lines),
                 {"X-FPlane-Code": str(code), "Content-Type": "text/plain; charset=utf-8",
                  **{name.replace("_", "-"): value for name, value in headers.items()}})


@dataclass
class Request:
    path: str
    headers: dict
    body: bytes
    form: dict


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Request] = []
        self.replies: list[Reply] = []
        self.url = f"http://127.0.0.1:{self.server_port}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def handle_error(self, request, client_address):
        pass  # a client that timed out and left is part of the script, not a failure


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(Request(
            self.path, dict(self.headers), body,
            urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True)))
        reply = self.server.replies.pop(0)
        time.sleep(reply.delay)
        payload = reply.body.encode("utf-8")
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def server():
    httpd = FakeServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def sleeps(monkeypatch):
    """The delays update_fplane waited, instead of waiting them."""
    waited: list[float] = []
    monkeypatch.setattr(update_client, "sleep", waited.append)
    return waited


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv("FPLANE_URL", raising=False)
    monkeypatch.delenv("FPLANE_PASSWORD", raising=False)


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "tcs.password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def status_file(tmp_path):
    path = tmp_path / "hardware_status.json"
    path.write_text(json.dumps(STATUS, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    """update_fplane in-process: (exit status, stdout, stderr); never shows the password."""
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert urllib.parse.quote_plus(PASSWORD) not in out + err
    return status, out, err


def post_args(server, password_file, status_file, *extra):
    return ("--station", "tcs", "--password-file", password_file, "--url", server.url, *extra,
            status_file)


def data_of(request: Request) -> dict:
    return json.loads(request.form["data"][0])


# --- the form ----------------------------------------------------------------------

def test_posts_the_station_form_and_prints_the_code_line_and_update_id(
        server, password_file, status_file, sleeps, capsys):
    server.script(coded(100, 202, "100 OK, update 2018-07-15-0001 queued", *FPLANE_FILE.splitlines(),
                        X_FPlane_Update="2018-07-15-0001"))

    status, out, err = run(capsys, *post_args(server, password_file, status_file))

    assert (status, out, err) == (0, "100 OK, update 2018-07-15-0001 queued\nupdate 2018-07-15-0001\n", "")
    [request] = server.requests
    assert request.path == "/fplane"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sorted(request.form) == ["checksum", "data", "password", "station_id"]
    assert request.form["station_id"] == ["tcs"]
    assert request.form["password"] == [PASSWORD]
    data = request.form["data"][0]
    assert request.form["checksum"] == [hashlib.sha256(data.encode("utf-8")).hexdigest()]
    assert json.loads(data) == {"config": STATUS, "commit": True}
    # Compact and not ASCII-escaped: the checksum is of these exact bytes.
    assert data == json.dumps({"config": STATUS, "commit": True}, separators=(",", ":"), ensure_ascii=False)
    assert sleeps == []


def test_dry_run_posts_commit_false_and_shows_the_resulting_file(
        server, password_file, status_file, sleeps, capsys):
    server.script(coded(101, 200, "101 dry run OK, nothing stored", *FPLANE_FILE.splitlines()))

    status, out, err = run(capsys, *post_args(server, password_file, status_file, "--dry-run"))

    assert (status, out, err) == (0, "101 dry run OK, nothing stored\n" + FPLANE_FILE, "")
    assert data_of(server.requests[0]) == {"config": STATUS, "commit": False}


@pytest.mark.parametrize("code, http_status", [(102, 200), (103, 202)])
def test_no_change_and_held_for_review_are_accepted(
        server, password_file, status_file, sleeps, capsys, code, http_status):
    server.script(coded(code, http_status, f"{code} message", *FPLANE_FILE.splitlines()))

    status, out, err = run(capsys, *post_args(server, password_file, status_file))

    assert (status, out, err) == (0, f"{code} message\n", "")


@pytest.mark.parametrize("valid_from, path", [
    ("2018-07-15T17:00:00+00:00", "/fplane/2018-07-15T17:00:00%2B00:00"),
    ("20180715", "/fplane/20180715"),
    ("a/b?c#d", "/fplane/a%2Fb%3Fc%23d"),  # one path segment, whatever it holds
])
def test_valid_from_goes_into_the_path_quoted(
        server, password_file, status_file, sleeps, capsys, valid_from, path):
    server.script(coded(100, 202, "100 OK"))

    status, _, _ = run(capsys, *post_args(server, password_file, status_file, "--valid-from", valid_from))

    assert status == 0
    assert server.requests[0].path == path


@pytest.mark.parametrize("content", [{"positions": POSITIONS}, POSITIONS])
def test_positions_are_posted_to_positions(server, password_file, tmp_path, sleeps, capsys, content):
    positions_file = tmp_path / "positions.json"
    positions_file.write_text(json.dumps(content))
    server.script(coded(100, 202, "100 OK"))

    status, _, _ = run(capsys, *post_args(server, password_file, positions_file,
                                          "--positions", "--valid-from", "20180715"))

    assert status == 0
    [request] = server.requests
    assert request.path == "/positions/20180715"
    assert data_of(request) == {"positions": POSITIONS, "commit": True}


def test_url_with_a_trailing_slash_and_from_the_environment(
        server, password_file, status_file, sleeps, capsys, monkeypatch):
    monkeypatch.setenv("FPLANE_URL", server.url + "/")
    server.script(coded(100, 202, "100 OK"))

    status, _, _ = run(capsys, "--station", "tcs", "--password-file", password_file, status_file)

    assert status == 0
    assert server.requests[0].path == "/fplane"


# --- the password ------------------------------------------------------------------

def test_password_from_the_environment(server, status_file, sleeps, capsys, monkeypatch):
    monkeypatch.setenv("FPLANE_PASSWORD", PASSWORD)
    server.script(coded(100, 202, "100 OK"))

    status, _, _ = run(capsys, "--station", "tcs", "--url", server.url, status_file)

    assert status == 0
    assert server.requests[0].form["password"] == [PASSWORD]


def test_password_file_first_line_only_and_warns_when_others_may_read_it(
        server, password_file, status_file, sleeps, capsys):
    password_file.write_text(PASSWORD + "  \r\nsecond line\n")
    password_file.chmod(0o644)
    server.script(coded(100, 202, "100 OK"))

    status, _, err = run(capsys, *post_args(server, password_file, status_file))

    assert status == 0  # a warning, like ssh's, but the update still goes out
    assert "accessible by group or others (mode 0644)" in err
    assert server.requests[0].form["password"] == [PASSWORD]


def test_missing_password_is_bad_usage_and_posts_nothing(server, status_file, sleeps, capsys):
    status, out, err = run(capsys, "--station", "tcs", "--url", server.url, status_file)

    assert (status, out) == (2, "")
    assert "no password: give --password-file F or set FPLANE_PASSWORD" in err
    assert server.requests == []


def test_unreadable_password_file_is_bad_usage(server, tmp_path, status_file, sleeps, capsys):
    status, _, err = run(capsys, "--station", "tcs", "--password-file", tmp_path / "missing",
                         "--url", server.url, status_file)

    assert status == 2
    assert "cannot read password file" in err
    assert server.requests == []


# --- refusals: final, never retried ------------------------------------------------

@pytest.mark.parametrize("code, http_status",
                         [(201, 400), (203, 403), (209, 422), (210, 422), (301, 400), (305, 405)])
def test_refusal_exits_1_with_details_on_stderr_and_is_not_retried(
        server, password_file, status_file, sleeps, capsys, code, http_status):
    server.script(coded(code, http_status, f"{code} refused", "seat 021: IFU 073 listed twice",
                        "seat 099: no such seat"))

    status, out, err = run(capsys, *post_args(server, password_file, status_file))

    assert (status, out) == (1, "")
    assert err == f"{code} refused\nseat 021: IFU 073 listed twice\nseat 099: no such seat\n"
    assert len(server.requests) == 1
    assert sleeps == []


def test_redirect_is_not_followed(server, password_file, status_file, sleeps, capsys):
    # urllib would repeat a redirected POST as a GET, and GET /fplane answers 100.
    server.script(Reply(301, headers={"Location": "https://fplane.example.org/fplane"}))

    status, out, err = run(capsys, *post_args(server, password_file, status_file))

    assert (status, out) == (1, "")
    assert "redirects to https://fplane.example.org/fplane" in err
    assert len(server.requests) == 1


# --- retries -----------------------------------------------------------------------

def test_server_failures_are_retried_with_growing_delays(server, password_file, status_file, sleeps, capsys):
    server.script(coded(401, 503, "401 store or spool unavailable"),
                  coded(400, 500, "400 internal error"),
                  coded(100, 202, "100 OK", X_FPlane_Update="7"))

    status, out, err = run(capsys, *post_args(server, password_file, status_file))

    assert (status, out) == (0, "100 OK\nupdate 7\n")
    assert len(server.requests) == 3
    # Every attempt carries the same bytes: the server recognises a repeat by its checksum.
    assert len({request.body for request in server.requests}) == 1
    assert len(sleeps) == 2 and 0 < sleeps[0] < sleeps[1]
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("update_fplane: attempt 1 of 6 failed (401 store or spool unavailable); "
                               "retrying in ")
    assert lines[1].startswith("update_fplane: attempt 2 of 6 failed (400 internal error); retrying in ")


def test_answers_without_fplane_code_are_retried(server, password_file, status_file, sleeps, capsys):
    server.script(Reply(502, "<html>Bad Gateway</html>"), Reply(200, "<html>maintenance</html>"),
                  coded(100, 202, "100 OK"))

    status, _, err = run(capsys, *post_args(server, password_file, status_file))

    assert status == 0
    assert len(server.requests) == 3
    assert "HTTP 502 from" in err and "without X-FPlane-Code" in err


def test_a_lost_answer_is_retried(server, password_file, status_file, sleeps, capsys):
    # The first answer comes after the client stopped waiting: the server may have spooled
    # the update, and posting it again is safe.
    server.script(Reply(202, "100 OK\n", {"X-FPlane-Code": "100"}, delay=0.5), coded(100, 202, "100 OK"))

    status, _, err = run(capsys, *post_args(server, password_file, status_file, "--timeout", "0.1"))

    assert status == 0
    assert len(server.requests) == 2
    assert "attempt 1 of 6 failed (" in err and "timed out" in err


def test_gives_up_after_the_last_server_failure(server, password_file, status_file, sleeps, capsys):
    server.script(*[coded(401, 503, "401 store or spool unavailable")] * 3)

    status, out, err = run(capsys, *post_args(server, password_file, status_file, "--retries", "2"))

    assert (status, out) == (1, "")
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert err.splitlines()[-1] == ("update_fplane: attempt 3 of 3 failed "
                                    "(401 store or spool unavailable); giving up")


def test_unreachable_server_is_retried_then_exit_1(password_file, status_file, sleeps, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    status, out, err = run(capsys, "--station", "tcs", "--password-file", password_file,
                           "--url", url, "--retries", "3", status_file)

    assert (status, out) == (1, "")
    assert len(sleeps) == 3 and sleeps == sorted(sleeps)
    assert "attempt 1 of 4 failed (cannot reach" in err
    assert err.splitlines()[-1].startswith("update_fplane: attempt 4 of 4 failed (cannot reach")
    assert err.splitlines()[-1].endswith("Connection refused); giving up")


def test_no_retries(password_file, status_file, sleeps, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    status, _, err = run(capsys, "--station", "tcs", "--password-file", password_file,
                         "--url", url, "--retries", "0", status_file)

    assert status == 1 and sleeps == []
    assert "attempt 1 of 1 failed" in err


@pytest.mark.parametrize("attempt, base", [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)])
def test_backoff_doubles_up_to_a_minute_with_a_little_jitter(attempt, base):
    delays = [backoff_delay(attempt) for _ in range(50)]
    assert all(0.8 * base <= delay <= base for delay in delays)


# --- bad usage: nothing posted -----------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ('{"timestamp": "2018-07-15T17:02:11Z", ', "is not valid JSON"),
    ("\xff\xfe garbage", "is not valid JSON"),
    ('[{"specid": "315"}]', "does not hold a hardware status"),
])
def test_bad_status_file_is_bad_usage(server, password_file, tmp_path, sleeps, capsys, content, message):
    bad = tmp_path / "status.json"
    bad.write_text(content, encoding="latin-1")

    status, out, err = run(capsys, *post_args(server, password_file, bad))

    assert (status, out) == (2, "")
    assert message in err and len(err.splitlines()) == 1
    assert server.requests == []


def test_positions_file_without_positions_is_bad_usage(server, password_file, status_file, sleeps, capsys):
    status, _, err = run(capsys, *post_args(server, password_file, status_file, "--positions"))

    assert status == 2
    assert "neither" in err
    assert server.requests == []


@pytest.mark.parametrize("url_args, message", [
    ((), "no server URL: give --url URL or set FPLANE_URL"),
    (("--url", "ftp://fplane.example.org"), "is not an http:// or https:// URL"),
])
def test_missing_or_bad_url_is_bad_usage(password_file, status_file, capsys, url_args, message):
    status, _, err = run(capsys, "--station", "tcs", "--password-file", password_file, *url_args, status_file)

    assert status == 2
    assert message in err


def test_station_is_required(password_file, status_file, capsys):
    status, _, err = run(capsys, "--password-file", password_file, "--url", "http://127.0.0.1:9", status_file)

    assert status == 2
    assert "--station" in err


# --- standard input and the console script -----------------------------------------

def test_status_from_standard_input(server, password_file, sleeps, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(STATUS).encode("utf-8"))))
    server.script(coded(100, 202, "100 OK"))

    status, _, _ = run(capsys, "--station", "tcs", "--password-file", password_file, "--url", server.url, "-")

    assert status == 0
    assert data_of(server.requests[0]) == {"config": STATUS, "commit": True}


def test_installed_console_script_reads_standard_input(server):
    script = Path(sys.executable).parent / "update_fplane"
    assert script.exists(), "run `pip install -e .` to install the update_fplane console script"
    server.script(coded(100, 202, "100 OK", X_FPlane_Update="12"))
    environment = {**os.environ, "FPLANE_URL": server.url, "FPLANE_PASSWORD": PASSWORD}

    done = subprocess.run([str(script), "--station", "tcs"], input=json.dumps(STATUS),
                          capture_output=True, text=True, env=environment, timeout=30)

    assert (done.returncode, done.stdout, done.stderr) == (0, "100 OK\nupdate 12\n", "")
    assert server.requests[0].form["password"] == [PASSWORD]
    assert data_of(server.requests[0]) == {"config": STATUS, "commit": True}
