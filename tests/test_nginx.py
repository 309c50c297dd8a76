"""The cache front: examples/nginx.conf run by a real nginx in front of a real uWSGI.

nginx reads examples/nginx.conf itself, with only its ports, paths and certificate made
local (examples/run_cached.py, as `make run-cached` does), on free loopback ports, with a
certificate from a test CA made here. Whether an answer reached the app is read from the
app's own request log, one line per request it answered.

Needs Debian's nginx and openssl (tests.support.required_programs: skipped outside CI when
missing, a failure under CI).
"""

import fcntl
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests import processes
from tests.fplane_samples import make_rows, status_from_rows, swap_ifus
from tests.support import (REPO, add_station, free_port, import_rows, init_store, required_programs,
                           uwsgi_binary, write_config)
from tests.test_deploy import stop, wait_until_serving

_spec = importlib.util.spec_from_file_location("run_cached", REPO / "examples" / "run_cached.py")
run_cached = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_cached)

WRITER_SLEEP = 1.0
MAX_AGE_OPEN = 60          # wsgi/reading.py: an open interval's lifetime
SLACK = 10.0               # seconds of scheduling delay allowed on a loaded 2-core machine
FIRST = make_rows()
SECOND = swap_ifus(FIRST, 21, 24)
NOW_ISO = "%Y-%m-%dT%H:%M:%SZ"


# -- a test CA and the service behind nginx -------------------------------------------------

def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def server_pair(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by ``ca``."""
    cert, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(request)], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                    "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def cache(self) -> str:
        return self.headers.get("X-Cache-Status", "")

    @property
    def text(self) -> str:
        return self.body.decode()


class Front:
    """uWSGI (examples/uwsgi.ini + a uwsgi socket) and nginx (examples/nginx.conf) in front."""

    def __init__(self, root: Path, config: Path, nginx: str):
        self.root, self.config = root, config
        self.log = config.parent / "log" / "fplaneserver.log"
        # nginx's own directory: traversable by its workers, which run as nobody under root
        self.dir = Path(tempfile.mkdtemp(prefix="fplane-nginx-"))
        self.dir.chmod(0o755)
        self.ca = make_ca(root, "test-ca")
        self.wrong_ca = make_ca(root, "other-ca")
        cert, key = server_pair(self.dir, self.ca)
        self.https_port, self.http_port = free_port(), free_port()
        self.socket, self.direct_port = f"127.0.0.1:{free_port()}", free_port()
        self.main = run_cached.write_configs(self.dir, https_port=self.https_port, http_port=self.http_port,
                                             uwsgi=self.socket, certificate=cert, key=key)
        self.https = f"https://127.0.0.1:{self.https_port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.context = ssl.create_default_context(cafile=str(self.ca[0]))
        self.nginx_cmd = run_cached.nginx_command(nginx, self.main)
        self.web = self.front = None

    def start_uwsgi(self) -> None:
        log = self.root / "uwsgi.log"
        with open(log, "ab") as out:
            self.web = subprocess.Popen(run_cached.uwsgi_command(uwsgi_binary(), self.socket),
                                        env=run_cached.uwsgi_env(self.config, self.direct_port),
                                        stdout=out, stderr=subprocess.STDOUT, cwd=self.root)
        wait_until_serving(f"http://127.0.0.1:{self.direct_port}", self.web, log)

    def stop_uwsgi(self) -> None:
        assert stop(self.web) == 0, (self.root / "uwsgi.log").read_text()[-3000:]
        self.web = None

    def start_nginx(self) -> None:
        log = self.dir / "nginx.out"
        with open(log, "wb") as out:
            self.front = subprocess.Popen(self.nginx_cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.front.poll() is None, f"nginx exited:\n{log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"nginx did not listen within 20 s:\n{log.read_text()}")

    def close(self) -> None:
        if self.web is not None:
            stop(self.web)
        if self.front is not None:
            self.front.terminate()
            self.front.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)

    def get(self, path: str, *, plain: bool = False, method: str = "GET", data: bytes | None = None,
            **headers) -> Reply:
        """One request through nginx (HTTPS, or plain HTTP), whatever its status."""
        request = urllib.request.Request((self.http if plain else self.https) + path, method=method,
                                         data=data, headers={k.replace("_", "-"): v for k, v in headers.items()})
        try:
            with urllib.request.urlopen(request, timeout=30, context=None if plain else self.context) as answer:
                return Reply(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    def app_saw(self, method: str, path: str) -> list[str]:
        """The app's request-log lines for ``method path`` (path with its query)."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if f" {method} {path} " in line]

    def update_fplane(self, status: dict, *args) -> subprocess.CompletedProcess:
        status_file = self.root / "status.json"
        status_file.write_text(json.dumps(status))
        return subprocess.run([str(Path(sys.executable).parent / "update_fplane"), "--station", "tcs",
                               "--password-file", str(self.root / "tcs.password"), *args, str(status_file)],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def front(tmp_path):
    nginx, _ = required_programs("nginx", "openssl", install=run_cached.NGINX_INSTALL_HINT)
    config = write_config(tmp_path, Writer={"sleep": str(WRITER_SLEEP)})
    init_store(config)
    import_rows(config, FIRST, "20180601", "--comment", "first light")
    password = add_station(config, "tcs", "config")
    (tmp_path / "tcs.password").write_text(password + "\n")
    (tmp_path / "tcs.password").chmod(0o600)
    service = Front(tmp_path, config, nginx)
    try:
        service.start_uwsgi()
        service.start_nginx()
        yield service
    finally:
        service.close()


def fresh_status(rows) -> dict:
    return status_from_rows(rows, datetime.now(timezone.utc).strftime(NOW_ISO))


def provenance(reply: Reply) -> tuple[str, str]:
    """(version, valid_until) as the body's comment lines state them; they must agree with
    X-FPlane-Version and X-FPlane-Valid-Until: one answer, never a mix of two."""
    match = re.search(r"^# version (\d+): valid_from \S+, valid_until (\S+)$", reply.text, re.M)
    assert match, reply.text[:300]
    assert match.groups() == (reply.headers["X-FPlane-Version"], reply.headers["X-FPlane-Valid-Until"])
    return match.groups()


def max_age(reply: Reply) -> int:
    return int(re.search(r"max-age=(\d+)", reply.headers["Cache-Control"]).group(1))


def poll(ask, until, deadline: float, what: str) -> Reply:
    while True:
        reply = ask()
        if until(reply):
            return reply
        assert time.monotonic() < deadline, f"{what}: still {reply.status} {reply.cache} {reply.headers}"
        time.sleep(0.5)


# -- the cache -------------------------------------------------------------------------------

def test_a_repeated_historical_get_is_a_hit_that_never_reaches_the_app(front):
    import_rows(front.config, SECOND, "20180801")   # 20180701 now lies in a closed interval
    path = "/fplane/20180701?actual_pos=0&full_fplane=1"
    replies = [front.get(path) for _ in range(6)]
    assert [r.cache for r in replies] == ["MISS"] + ["HIT"] * 5
    assert {r.body for r in replies} == {replies[0].body} and provenance(replies[0])[0] == "1"
    assert max_age(replies[-1]) == 86400
    assert len(front.app_saw("GET", path)) == 1
    # the JSON asked for by Accept is another answer under its own key: not the text's copy
    as_json = [front.get(path, Accept="application/json") for _ in range(3)]
    assert [r.cache for r in as_json] == ["MISS", "HIT", "HIT"]
    assert json.loads(as_json[-1].body)["version"] == 1
    assert front.get(path).body == replies[0].body
    assert len(front.app_saw("GET", path)) == 2
    # plain HTTP readers share the same copy
    assert front.get(path, plain=True).cache == "HIT"
    # a HEAD's empty answer is never served for a GET
    assert front.get("/fplane/20180702", method="HEAD").body == b""
    assert front.get("/fplane/20180702").body.startswith(b"# fplane file")


def test_if_none_match_through_the_cache_gives_304(front):
    path = "/fplane/20180705"
    first = front.get(path)
    again = front.get(path, If_None_Match=first.headers["ETag"])
    assert again.status == 304 and again.body == b"" and again.cache == "HIT"
    assert len(front.app_saw("GET", path)) == 1


def test_posts_updates_stats_and_health_are_never_served_from_the_cache(front):
    refused = front.update_fplane(fresh_status(SECOND), "--url", front.https, "--cacert", str(front.ca[0]),
                                  "--dry-run")
    assert refused.returncode == 0 and refused.stdout.startswith("101 ")
    posted = front.update_fplane(fresh_status(SECOND), "--url", front.https, "--cacert", str(front.ca[0]))
    assert posted.returncode == 0 and posted.stdout.startswith("100 "), posted.stderr
    update = posted.stdout.split("update ")[-1].split()[0]
    for path in (f"/updates/{update}", "/sys/stats", "/health"):
        replies = [front.get(path) for _ in range(3)]
        assert all(r.cache != "HIT" and "no-store" in r.headers["Cache-Control"] for r in replies), path
        assert len(front.app_saw("GET", path)) == 3, path
    assert len(front.app_saw("POST", "/fplane")) == 2


def test_a_post_over_plain_http_a_body_too_large_or_an_overlong_date_get_coded_refusals(front):
    form = b"station_id=tcs&password=x&checksum=0&data=%7B%7D"
    plain = front.get("/fplane", plain=True, method="POST", data=form)
    assert (plain.status, plain.headers["X-FPlane-Code"]) == (405, "305")
    assert plain.text.startswith("305 posts are accepted over HTTPS only")
    too_large = front.get("/fplane", method="POST", data=b"x" * (3 << 20))
    assert (too_large.status, too_large.headers["X-FPlane-Code"]) == (413, "212")
    assert front.app_saw("POST", "/fplane") == []
    # an overlong date passes nginx's header buffers and gets the app's own coded answer
    overlong = front.get("/fplane/" + "9" * 30_000)
    assert (overlong.status, overlong.headers["X-FPlane-Code"]) == (400, "301")


def test_update_fplane_refuses_a_certificate_its_ca_did_not_sign(front):
    for trust in (["--cacert", str(front.wrong_ca[0])], []):   # another CA; the system's CAs
        refused = front.update_fplane(fresh_status(SECOND), "--url", front.https, *trust)
        assert refused.returncode == 1
        assert "certificate is not trusted" in refused.stderr and "--cacert" in refused.stderr
        assert "retrying" not in refused.stderr
    assert front.app_saw("POST", "/fplane") == []   # the password never left the client
    accepted = front.update_fplane(fresh_status(SECOND), "--url", front.https, "--cacert", str(front.ca[0]))
    assert accepted.returncode == 0 and accepted.stdout.startswith("100 "), accepted.stderr


def test_the_cache_follows_a_commit_and_serves_while_uwsgi_is_down(front):
    """One timeline, as an operator would see it (about 70 s: the open lifetime is 60 s)."""
    before_post, after_post = "/fplane/20180701", "/fplane/20180901"
    for path in (before_post, after_post):
        reply = front.get(path)
        assert (reply.cache, provenance(reply), max_age(reply)) == ("MISS", ("1", "open"), MAX_AGE_OPEN)

    posted = front.update_fplane(fresh_status(SECOND), "--url", front.https, "--cacert", str(front.ca[0]),
                                 "--valid-from", "20180801")
    committed_by = time.monotonic() + WRITER_SLEEP
    assert posted.returncode == 0 and posted.stdout.startswith("100 "), posted.stderr
    update = posted.stdout.split("update ")[-1].split()[0]
    poll(lambda: front.get(f"/updates/{update}"), lambda r: "state: committed" in r.text,
         time.monotonic() + WRITER_SLEEP + SLACK, "the writer's commit")
    # two answers of the new version, cached now, to expire while the test goes on
    revalidated, stale = "/fplane/20180915", "/fplane/20180920"
    for path in (revalidated, stale):
        reply = front.get(path)
        assert (reply.cache, provenance(reply)) == ("MISS", ("2", "open"))
        time.sleep(2)

    # The new version is seen through the cache within the open lifetime plus the writer's sleep.
    seen = poll(lambda: front.get(after_post), lambda r: provenance(r)[0] == "2",
                committed_by + MAX_AGE_OPEN + SLACK, "the committed version through the cache")
    assert seen.cache == "EXPIRED"
    # The version before it, now closed: its new text (valid_until stated) and a day's lifetime.
    closed = front.get(before_post)
    assert closed.cache == "EXPIRED"
    assert provenance(closed) == ("1", "2018-08-01T05:00:00Z") and max_age(closed) == 86400
    assert front.get(before_post).body == closed.body

    # An unchanged answer past its lifetime: revalidated, the app answering 304.
    again = poll(lambda: front.get(revalidated), lambda r: r.cache != "HIT",
                 time.monotonic() + MAX_AGE_OPEN + SLACK, "the revalidation")
    assert again.cache == "REVALIDATED" and provenance(again) == ("2", "open")
    assert [line.split()[-2] for line in front.app_saw("GET", revalidated)] == ["200", "304"]

    # uWSGI stops: cached answers are still served, stale ones marked, the rest coded 503.
    front.stop_uwsgi()
    assert front.get(before_post).cache == "HIT"
    old = poll(lambda: front.get(stale), lambda r: r.cache != "HIT",
               time.monotonic() + MAX_AGE_OPEN + SLACK, "the stale answer")
    assert (old.status, old.cache, provenance(old)) == (200, "STALE", ("2", "open"))
    missing = front.get("/fplane/20181001")
    assert (missing.status, missing.headers["X-FPlane-Code"]) == (503, "401")
    assert missing.text.startswith("401 store or spool unavailable")
    assert "no-store" in missing.headers["Cache-Control"]
    as_json = front.get("/fplane/20181001", Accept="application/json")
    assert json.loads(as_json.body)["code"] == 401
    post = front.update_fplane(fresh_status(FIRST), "--url", front.https, "--cacert", str(front.ca[0]),
                               "--retries", "0")
    assert post.returncode == 1 and "401 store or spool unavailable" in post.stderr

    # uWSGI is back: fresh answers again.
    front.start_uwsgi()
    fresh = front.get(stale)
    assert fresh.cache in ("REVALIDATED", "EXPIRED") and provenance(fresh) == ("2", "open")
    assert front.get("/fplane/20181001").cache == "MISS"


def test_the_script_handed_out_through_the_front_points_at_the_front(front, tmp_path):
    script = front.get("/get_fplane.sh")
    assert script.cache != "HIT" and f"served_from='{front.https}'" in script.text
    work = tmp_path / "work"
    work.mkdir()
    (work / "get_fplane.sh").write_bytes(script.body)
    env = {**{k: v for k, v in os.environ.items() if k != "FPLANE_URL"}, "CURL_CA_BUNDLE": str(front.ca[0])}
    done = subprocess.run(["sh", "get_fplane.sh", "20180707"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (work / "fplane20180707.txt").read_bytes() == front.get("/fplane/20180707").body
    assert front.get("/get_fplane.sh", plain=True).text.count(f"served_from='{front.http}'") == 1


def test_make_run_cached_serves_through_nginx_and_ctrl_c_stops_both(tmp_path):
    """examples/run_cached.py as `make run-cached` runs it, interrupted as a terminal's Ctrl-C
    does (SIGINT to the foreground process group)."""
    required_programs("nginx", "openssl", install=run_cached.NGINX_INSTALL_HINT)
    config = write_config(tmp_path)
    init_store(config)
    import_rows(config, FIRST, "20180601")
    directory = Path(tempfile.mkdtemp(prefix="fplane-run-cached-"))
    directory.chmod(0o755)
    https_port, http_port, uwsgi_port, direct_port = (free_port() for _ in range(4))
    output = tmp_path / "run_cached.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "examples" / "run_cached.py"), "--config", str(config),
             "--dir", str(directory), "--port", str(https_port), "--http-port", str(http_port),
             "--uwsgi-port", str(uwsgi_port), "--direct-port", str(direct_port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{http_port}/fplane/20180707"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, output.read_text()
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    assert answer.headers["X-FPlane-Code"] == "100"
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.3)
        context = ssl.create_default_context(cafile=str(directory / "localhost.pem"))
        with urllib.request.urlopen(f"https://127.0.0.1:{https_port}/fplane/20180707", context=context) as answer:
            assert answer.headers["X-Cache-Status"] == "HIT"
        assert f"https://127.0.0.1:{https_port}/" in output.read_text()

        # uWSGI dies: nginx goes on serving what it has, and says so. Its writer is up first
        # (it has written its pid into its lock), so that its fate below is a real question.
        lock_file = tmp_path / "data" / "writer.lock"
        poll(lambda: Reply(0, {}, lock_file.read_bytes() if lock_file.exists() else b""),
             lambda r: r.body.strip().isdigit(), time.monotonic() + 30, "the writer's lock")
        masters = [p.pid for p in processes.children(process.pid) if "uWSGI master" in p.cmdline]
        assert len(masters) == 1
        os.kill(masters[0], signal.SIGKILL)
        poll(lambda: Reply(0, {}, output.read_bytes()), lambda r: b"uWSGI exited" in r.body,
             time.monotonic() + 20, "the notice that uWSGI exited")
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.headers["X-Cache-Status"] == "HIT"
        with pytest.raises(urllib.error.HTTPError) as down:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/fplane/20180708", timeout=5)
        assert (down.value.code, down.value.headers["X-FPlane-Code"]) == (503, "401")

        children = [p.pid for p in processes.children(process.pid)]
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0, output.read_text()
        for child in children:
            assert not processes.alive(child)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", http_port), timeout=2).close()
        # nor is the writer that the killed uWSGI could not stop left running: its lock is free
        lock = os.open(lock_file, os.O_RDWR)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "a writer outlived make run-cached"
                    time.sleep(0.2)
        finally:
            os.close(lock)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
