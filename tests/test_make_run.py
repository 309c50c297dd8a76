"""`make run` as a newcomer meets it: the real Makefile, demo and uWSGI, with the demo site
in a temporary directory (VAR=...) on a free loopback port."""

import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from tests.support import REPO, free_port

# What uWSGI says about itself at start-up: kept out of the terminal, in var/log/uwsgi.log.
UWSGI_BANNER = ("*** Starting uWSGI", "compiled with version", "detected binary path",
                "*** Operational MODE", "spawned uWSGI worker")


def make(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_a_busy_port_is_one_line_naming_it_and_how_to_choose_another(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = make("run", f"PORT={port}", f"VAR={tmp_path / 'var'}")

    assert run.returncode != 0
    [line] = run.stderr.splitlines()
    assert f"port {port} on 127.0.0.1 is in use" in line
    assert "make run PORT=9000" in line
    # Refused before anything was installed, set up or started.
    assert run.stdout == "" and not (tmp_path / "var").exists()


def test_run_installs_the_package_without_the_test_tools():
    # -n: what make would run if setup.cfg had changed (-W), without running it.
    recipe = make("-n", "-W", "setup.cfg", ".venv/.installed-run").stdout
    assert "pip install -q -e ." in recipe and "[test]" not in recipe
    assert "[test]" in make("-n", "-W", "setup.cfg", ".venv/.installed").stdout


class Terminal:
    """What `make run` prints, line by line, as it comes."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            time.sleep(0.1)
        pytest.fail(f"{text!r} never appeared on the terminal:\n" + "\n".join(self.lines))


def test_run_shows_each_request_on_the_terminal_and_in_the_log_file(tmp_path):
    port, var = free_port(), tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    # Its own session, so that Ctrl-C can be sent to the whole of it, as a terminal does.
    process = subprocess.Popen(["make", "--no-print-directory", "run", f"PORT={port}", f"VAR={var}"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    terminal = Terminal(process.stdout)
    try:
        terminal.wait_for("requests as they come", timeout=240)   # the demo is set up first
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                # healthy: the web app answers and the writer beside it beats
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, "\n".join(terminal.lines)
                assert time.monotonic() < deadline, "\n".join(terminal.lines)
                time.sleep(0.2)

        with urllib.request.urlopen(f"{base}/fplane/20180715?full_fplane=0", timeout=5) as r:
            assert r.headers["X-FPlane-Code"] == "100"

        shown = terminal.wait_for("GET /fplane/20180715?full_fplane=0")

        assert " 100 200 " in shown
        assert shown in (var / "log" / "fplaneserver.log").read_text().splitlines()
        assert not [line for line in terminal.lines if any(b in line for b in UWSGI_BANNER)]
        assert "Starting uWSGI" in (var / "log" / "uwsgi.log").read_text()

        # The CLI command the banner shows works as shown, on the running service's store.
        admin = terminal.wait_for("fplane-admin -c ")
        listed = subprocess.run(shlex.split(admin), cwd=REPO, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("version  valid_from"), listed.stdout
    finally:
        os.killpg(process.pid, signal.SIGINT)     # Ctrl-C
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Ctrl-C stopped it all: nothing answers on the port any more, the writer stopped too.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert "writer stopped" in (var / "log" / "fplaneserver.log").read_text()
