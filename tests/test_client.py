"""get_fplane (wsgi/client.py) and examples/get_fplane.sh against the real app over real HTTP.

One store per module, built the way an operator does it (`fplane-admin init` and `import`),
served by wsgiref on a free loopback port. The server records every request target as it
arrived on the wire, so the tests can hold the clients to the original get_fplane.sh form
`<base>/fplane/<DATE>?actual_pos=0|1&full_fplane=0|1`.
"""

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server
from zoneinfo import ZoneInfo

import pytest

import wsgi.app
from tests.fplane_samples import default_active, make_rows, measured_positions, strict_fplane_parse
from wsgi import dates, fplane
from wsgi.client import get_fplane_main

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "get_fplane.sh"

# The history: FIRST from 20180601, SECOND (three IFUs fewer) from 20180801, and measured
# positions from 20180615. Bare dates are 00:00 America/Chicago (CDT) = 05:00Z.
FIRST = make_rows()
SECOND = make_rows(active={s: ids for i, (s, ids) in enumerate(sorted(default_active().items())) if i >= 3})
MEASURED = measured_positions(fplane.VIRUS_SLOTS)
FIRST_MEASURED = make_rows(positions=MEASURED)
FIRST_LINE = ("wrote {name} (version 1, valid_from 2018-06-01T05:00:00Z, "
              "valid_until 2018-08-01T05:00:00Z)\n")


@dataclass
class Server:
    url: str
    requests: list = field(default_factory=list)  # request targets, as sent

    def last_request(self) -> str:
        return self.requests[-1]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass

    def get_environ(self):
        environ = super().get_environ()
        environ["test.request_target"] = self.path  # before wsgiref unquotes PATH_INFO
        return environ


def _serve(app):
    """(server, thread) serving ``app`` on 127.0.0.1 at a free port, in a daemon thread."""
    httpd = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return httpd, thread


def _stop(httpd, thread):
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _admin(config: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "writer.admin", "-c", str(config), *args],
                   cwd=REPO, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("fplaneserver")
    config = home / "config.ini"
    config.write_text(
        "[General]\n"
        f"log = {home / 'fplaneserver.log'}\n"
        f"station_list = {home / 'station_list.csv'}\n"
        f"data_dir = {home / 'data'}\n"
        f"spool_dir = {home / 'spool'}\n"
        "[Site]\n"
        f"static_rows = {REPO / 'wsgi' / 'static_rows.txt'}\n"
    )
    _admin(config, "init")
    for name, rows, valid_from, extra in (
        ("first.txt", FIRST, "20180601", ()),
        ("second.txt", SECOND, "20180801", ()),
        ("positions.txt", FIRST_MEASURED, "20180615", ("--positions",)),
    ):
        (home / name).write_text(fplane.render_fplane(rows, [f"test file {name}"], full=True))
        _admin(config, "import", str(home / name), "--valid-from", valid_from, *extra)

    app = functools.partial(wsgi.app.application, configfile=str(config))
    recorded = Server(url="")

    def recording_app(environ, start_response):
        recorded.requests.append(environ["test.request_target"])
        return app(environ, start_response)

    httpd, thread = _serve(recording_app)
    recorded.url = f"http://127.0.0.1:{httpd.server_port}"
    yield recorded
    _stop(httpd, thread)


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Each test its own answer cache (get_fplane keeps one by default), never ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FPLANE_URL", raising=False)
    return tmp_path


def run(capsys, *argv):
    """(exit status, stdout, stderr) of get_fplane called in this process."""
    status = get_fplane_main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def rows_of(path_or_text) -> tuple:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    parsed = fplane.parse_fplane(text)
    assert not parsed.errors
    return parsed.rows


def listing(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- success ------------------------------------------------------------------------------

def test_writes_fplane_date_txt_with_the_version_valid_then(server, workdir, capsys):
    status, out, err = run(capsys, "--url", server.url, "20180707")

    assert (status, out) == (0, "")
    assert err == FIRST_LINE.format(name="fplane20180707.txt")
    assert sorted(listing(workdir)) == ["fplane20180707.txt"]  # no temporary file left
    assert rows_of(workdir / "fplane20180707.txt") == FIRST
    assert server.last_request() == "/fplane/20180707?actual_pos=0&full_fplane=1"


@pytest.mark.parametrize("options, query", [
    ((), "actual_pos=0&full_fplane=1"),
    (("-s",), "actual_pos=0&full_fplane=0"),
    (("-p",), "actual_pos=1&full_fplane=1"),
    (("-p", "-s"), "actual_pos=1&full_fplane=0"),
    (("--known-at", "20990101"), "actual_pos=0&full_fplane=1&known_at=20990101"),
    # Quoted: a raw '+' would reach the server as a space (and be a bad date).
    (("--known-at", "2099-01-01T00:00:00+01:00"),
     "actual_pos=0&full_fplane=1&known_at=2099-01-01T00%3A00%3A00%2B01%3A00"),
])
def test_sends_the_original_clients_request(server, workdir, capsys, options, query):
    status, _, err = run(capsys, "--url", server.url + "/", *options, "20180707")

    assert status == 0, err
    assert server.last_request() == f"/fplane/20180707?{query}"


def test_url_from_the_environment(server, workdir, capsys, monkeypatch):
    monkeypatch.setenv("FPLANE_URL", server.url)
    status, _, err = run(capsys, "2018-07-07")

    assert status == 0, err
    assert rows_of(workdir / "fplane2018-07-07.txt") == FIRST


def test_short_file_is_what_strict_clients_read(server, workdir, capsys):
    status, _, err = run(capsys, "-u", server.url, "-s", "20180707")

    assert status == 0, err
    seats = strict_fplane_parse((workdir / "fplane20180707.txt").read_text())
    active_virus = {f"{r.ifuslot:03d}" for r in FIRST if r.active and r.ifuslot in fplane.VIRUS_SLOTS}
    assert set(seats) == {"000"} | active_virus


def test_actual_positions(server, workdir, capsys):
    status, _, err = run(capsys, "-u", server.url, "-p", "-o", "measured.txt", "20180707")

    assert status == 0, err
    assert err.startswith("wrote measured.txt (version 1,")
    assert rows_of(workdir / "measured.txt") == FIRST_MEASURED
    assert FIRST_MEASURED != FIRST


def test_output_to_stdout(server, workdir, capsys):
    status, out, err = run(capsys, "-u", server.url, "-o", "-", "20180901")

    assert status == 0, err
    assert err == ("wrote standard output (version 2, valid_from 2018-08-01T05:00:00Z, "
                   "valid_until open)\n")
    assert rows_of(out) == SECOND
    assert listing(workdir) == {}


def test_output_file_elsewhere_replaces_the_old_one(server, workdir, capsys):
    target = workdir / "sub" / "fplane.txt"
    target.parent.mkdir()
    target.write_text("an older download\n")

    status, _, err = run(capsys, "-u", server.url, "-o", str(target), "20180707")

    assert status == 0, err
    assert rows_of(target) == FIRST
    assert sorted(listing(target.parent)) == ["fplane.txt"]


def test_known_at_is_passed_and_stated_in_the_file(server, workdir, capsys):
    status, _, err = run(capsys, "-u", server.url, "--known-at", "2099-01-01T00:00:00+01:00", "20180707")

    assert status == 0, err
    text = (workdir / "fplane20180707.txt").read_text()
    assert "# as known at 2099-01-01T00:00:00+01:00\n" in text
    assert rows_of(text) == FIRST


def test_without_date_asks_for_now_and_names_the_file_after_tonight(server, workdir, capsys):
    site = ZoneInfo("America/Chicago")
    before = dates.night_label(datetime.now(timezone.utc), site)
    status, _, err = run(capsys, "-u", server.url)
    after = dates.night_label(datetime.now(timezone.utc), site)

    assert status == 0, err
    assert server.last_request() == "/fplane/?actual_pos=0&full_fplane=1"
    (name,) = listing(workdir)
    assert name in {f"fplane{before}.txt", f"fplane{after}.txt"}
    assert rows_of(workdir / name) == SECOND
    assert err.startswith(f"wrote {name} (version 2,")


# -- refusals: the code line, exit 1, nothing written or replaced -----------------------------

def test_before_the_history_is_302_and_leaves_an_existing_file_alone(server, workdir, capsys):
    (workdir / "fplane20180101.txt").write_text("a good file from before\n")
    before = listing(workdir)

    status, out, err = run(capsys, "-u", server.url, "20180101")

    assert (status, out) == (1, "")
    assert re.fullmatch(r"302 no configuration known for 2018-01-01T06:00:00Z\b.*\n", err)
    assert listing(workdir) == before


def test_known_at_before_anything_was_recorded_is_302(server, workdir, capsys):
    status, _, err = run(capsys, "-u", server.url, "--known-at", "20000101", "20180707")

    assert status == 1
    assert err.startswith("302 no configuration known for ") and err.count("\n") == 1
    assert listing(workdir) == {}


@pytest.mark.parametrize("date, target", [
    ("notadate", "/fplane/notadate"),
    ("2018-13-45", "/fplane/2018-13-45"),
    # Quoted into one path segment: the '?' and '&' cannot add parameters.
    ("20180707?full_fplane=0&x", "/fplane/20180707%3Ffull_fplane%3D0%26x"),
    ("20180707#frag", "/fplane/20180707%23frag"),
])
def test_bad_date_is_301(server, workdir, capsys, date, target):
    status, _, err = run(capsys, "-u", server.url, date)

    assert status == 1
    assert err.startswith("301 ") and err.count("\n") == 1
    assert server.last_request() == f"{target}?actual_pos=0&full_fplane=1"
    assert listing(workdir) == {}


def test_a_slash_in_the_date_cannot_leave_the_path(server, workdir, capsys):
    status, _, err = run(capsys, "-u", server.url, "../../sys/config")

    assert status == 1
    assert server.last_request() == "/fplane/..%2F..%2Fsys%2Fconfig?actual_pos=0&full_fplane=1"
    assert re.match(r"30[13] ", err)
    assert listing(workdir) == {}


# -- the network and foreign servers: one line, exit 1, no traceback -------------------------------

def test_connection_refused(workdir, capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    status, out, err = run(capsys, "--url", url, "20180707")

    assert (status, out) == (1, "")
    assert err == f"get_fplane: cannot get {url}/fplane/20180707?actual_pos=0&full_fplane=1: Connection refused\n"
    assert listing(workdir) == {}


def test_timeout(workdir, capsys):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        status, _, err = run(capsys, "--url", url, "--timeout", "0.2", "20180707")

    assert status == 1
    assert err == f"get_fplane: cannot get {url}/fplane/20180707?actual_pos=0&full_fplane=1: timed out\n"
    assert listing(workdir) == {}


@pytest.fixture(scope="module")
def foreign_server():
    """A web server that is not fplaneserver: a 200 HTML page and a proxy's 502."""
    def app(environ, start_response):
        if environ["PATH_INFO"].endswith("/ok"):
            start_response("200 OK", [("Content-Type", "text/html")])
            return [b"<html>welcome</html>\n"]
        start_response("502 Bad Gateway", [("Content-Type", "text/html")])
        return [b"<html>upstream down</html>\n"]

    httpd, thread = _serve(app)
    yield f"http://127.0.0.1:{httpd.server_port}"
    _stop(httpd, thread)


def test_a_page_from_another_server_is_not_written(foreign_server, workdir, capsys):
    status, _, err = run(capsys, "-u", foreign_server, "ok")

    assert status == 1
    assert err.startswith("get_fplane: ") and "did not answer like an fplane server" in err
    assert err.count("\n") == 1
    assert listing(workdir) == {}


def test_an_uncoded_http_error_names_the_status(foreign_server, workdir, capsys):
    status, _, err = run(capsys, "-u", foreign_server, "20180707")

    assert status == 1
    assert err == f"get_fplane: {foreign_server}/fplane/20180707?actual_pos=0&full_fplane=1: HTTP 502 Bad Gateway\n"


# -- usage ----------------------------------------------------------------------------------------

def test_no_url_is_a_usage_error(workdir, capsys):
    status, out, err = run(capsys, "20180707")

    assert (status, out) == (2, "")
    assert err == "get_fplane: no server URL: give --url URL or set FPLANE_URL\n"


@pytest.mark.parametrize("argv", [
    ("--url", "localhost:8080", "20180707"),
    ("--url", "http://[::1", "20180707"),
    ("--url", "http://127.0.0.1:1", "--timeout", "-1"),
    ("--url", "http://127.0.0.1:1", "--bogus"),
])
def test_bad_usage_exits_2_without_traceback(workdir, capsys, argv):
    status, _, err = run(capsys, *argv)

    assert status == 2
    assert "Traceback" not in err
    assert listing(workdir) == {}


def test_unwritable_output_is_one_line(server, workdir, capsys):
    status, _, err = run(capsys, "-u", server.url, "-o", str(workdir / "missing" / "f.txt"), "20180707")

    assert status == 1
    assert err == f"get_fplane: cannot write {workdir / 'missing' / 'f.txt'}: No such file or directory\n"


# -- the installed console script and the curl example ----------------------------------------------

def _console_script():
    beside_python = Path(sys.executable).parent / "get_fplane"  # a venv not on PATH
    return str(beside_python) if beside_python.exists() else shutil.which("get_fplane")


def test_installed_console_script(server, tmp_path):
    script = _console_script()
    if script is None:
        pytest.skip("get_fplane is not installed (pip install -e .)")
    env = {**os.environ, "FPLANE_URL": server.url}
    done = subprocess.run([script, "-s", "20180707"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert done.stderr == FIRST_LINE.format(name="fplane20180707.txt")
    strict_fplane_parse((tmp_path / "fplane20180707.txt").read_text())

    refused = subprocess.run([script, "20180101"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert refused.stderr.startswith("302 ") and refused.stderr.count("\n") == 1


needs_curl = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None,
                                reason="examples/get_fplane.sh needs bash and curl")


def _shell(cwd, *args, url=None):
    env = {k: v for k, v in os.environ.items() if k != "FPLANE_URL"}
    if url is not None:
        env["FPLANE_URL"] = url
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30)


@needs_curl
def test_shell_example_downloads_like_get_fplane(server, tmp_path, capsys, monkeypatch):
    done = _shell(tmp_path, "20180707", url=server.url)

    assert done.returncode == 0, done.stderr
    assert server.last_request() == "/fplane/20180707?actual_pos=0&full_fplane=1"
    assert done.stderr == FIRST_LINE.format(name="fplane20180707.txt")
    assert sorted(listing(tmp_path)) == ["fplane20180707.txt"]
    shell_text = (tmp_path / "fplane20180707.txt").read_text()

    monkeypatch.chdir(tmp_path)
    status, python_text, _ = run(capsys, "-u", server.url, "-o", "-", "20180707")
    assert status == 0
    assert shell_text == python_text

    done = _shell(tmp_path, "-s", "-p", "-k", "2099-01-01T00:00:00+01:00", "-o", "-", "-u", server.url,
                  "20180707")
    assert done.returncode == 0, done.stderr
    assert server.last_request() == ("/fplane/20180707?actual_pos=1&full_fplane=0"
                                     "&known_at=2099-01-01T00%3A00%3A00%2B01%3A00")
    assert set(strict_fplane_parse(done.stdout)) == {"000"} | {
        f"{r.ifuslot:03d}" for r in FIRST_MEASURED if r.active and r.ifuslot in fplane.VIRUS_SLOTS}


@needs_curl
def test_shell_example_refusal_prints_the_code_line(server, tmp_path):
    (tmp_path / "fplane20180101.txt").write_text("a good file from before\n")
    before = listing(tmp_path)

    done = _shell(tmp_path, "-u", server.url, "20180101")

    assert done.returncode == 1
    assert re.fullmatch(r"302 no configuration known for 2018-01-01T06:00:00Z\b.*\n", done.stderr)
    assert done.stdout == ""
    assert listing(tmp_path) == before

    refused = _shell(tmp_path, "-u", f"http://127.0.0.1:{closed_port()}", "20180707")
    assert refused.returncode == 1
    assert refused.stderr.startswith("get_fplane.sh: cannot get http://127.0.0.1:")
    assert listing(tmp_path) == before

    assert _shell(tmp_path, "20180707").returncode == 2  # no URL
