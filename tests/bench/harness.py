"""uWSGI servers and wrk runs for the benchmarks in tests/bench.

Every server is started from examples/uwsgi.ini (the fplane app) or from a copy of it that
differs in the wsgi-file line only (the trivial baseline), on a free loopback port, and is
stopped with SIGTERM (the ini has die-on-term); nothing is left running.
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import REPO, free_port, init_store, uwsgi_binary, write_config

UWSGI_INI = REPO / "examples" / "uwsgi.ini"
BENCH_DIR = Path(__file__).resolve().parent
TRIVIAL_APP = BENCH_DIR / "trivial_app.py"
REPORT_LUA = BENCH_DIR / "wrk_report.lua"
RANDOM_INSTANTS_LUA = BENCH_DIR / "wrk_random_instants.lua"


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        pytest.fail("wrk (the HTTP load generator) is not installed: apt-get install wrk")
    return found


def server_env(config: Path) -> dict:
    """FPLANE_CONFIG, and the venv's bin/ first on PATH, as `make run` does, so that the
    ini's attached daemon finds fplane-writer and runs it (a missing one would be respawned
    over and over, taking CPU from the server being measured)."""
    return {"FPLANE_CONFIG": str(config),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def check_server_log(server: "Server") -> None:
    """No crash, no harakiri, and the attached writer ran without being respawned."""
    text = server.log.read_text(errors="replace")
    for bad in ("DAMN", "Traceback", "HARAKIRI", "segmentation", "[uwsgi-daemons] throttling",
                "[uwsgi-daemons] respawning"):
        assert bad not in text, f"uWSGI {server.name}: {bad!r} in {server.log}"


def trivial_ini(directory: Path) -> Path:
    """examples/uwsgi.ini with only its wsgi-file line pointing at trivial_app.py.

    The copy lives elsewhere, so uWSGI's %d (the ini's directory) is spelled out as the
    examples directory: every other line means exactly what it means in the original."""
    original = UWSGI_INI.read_text().replace("%d", str(UWSGI_INI.parent))
    lines = original.splitlines(keepends=True)
    wsgi_file = [i for i, line in enumerate(lines) if line.startswith("wsgi-file")]
    assert len(wsgi_file) == 1, "examples/uwsgi.ini must have exactly one wsgi-file line"
    copy = list(lines)
    copy[wsgi_file[0]] = f"wsgi-file = {TRIVIAL_APP}\n"
    changed = [i for i, (a, b) in enumerate(zip(lines, copy)) if a != b]
    assert changed == wsgi_file and len(copy) == len(lines)
    path = directory / "uwsgi-trivial.ini"
    path.write_text("".join(copy))
    return path


def trivial_server(name: str, directory: Path, body_size: int) -> "Server":
    """The trivial app (trivial_ini) answering ``body_size`` bytes. Its attached writer
    idles on an empty store of its own, as the fplane server's writer does on its store:
    both servers run the same processes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    config = write_config(directory, General={"data_dir": "data"})
    init_store(config)
    return Server(name, trivial_ini(directory), directory,
                  {**server_env(config), "FPLANE_BENCH_BODY_SIZE": str(body_size)})


class Server:
    """One uWSGI instance (master, 4 workers, HTTP router) on 127.0.0.1:<free port>."""

    def __init__(self, name: str, ini: Path, workdir: Path, env: dict, probe: str = "/",
                 cpus: set[int] | None = None, args=()):
        self.name, self.ini, self.workdir, self.probe, self.cpus = name, ini, workdir, probe, cpus
        self.args = tuple(args)  # more uWSGI options after --ini (e.g. a --socket for nginx)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "FPLANE_PORT": str(self.port)}
        self.log = workdir / f"uwsgi-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        with open(self.log, "wb") as out:
            # Own session: a stray child can be found by this process group id at the end.
            self.process = subprocess.Popen([uwsgi_binary(), "--ini", str(self.ini), *self.args], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.workdir, start_new_session=True,
                                            preexec_fn=self._pin if self.cpus else None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"uWSGI ({self.name}) exited with {self.process.returncode}:\n"
                            f"{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + self.probe, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"uWSGI ({self.name}) did not answer within 30 s:\n{self.log.read_text()[-3000:]}")

    def _pin(self) -> None:
        os.sched_setaffinity(0, self.cpus)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Workers and the router die with the master (die-on-term); make sure of it.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process = None

    def get(self, path: str):
        """(status, headers, body) of one GET."""
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return response.status, dict(response.headers), response.read()


def run_wrk(url: str, *, threads: int, connections: int, seconds: float,
            script: Path | None = None, script_args=(), cpus: set[int] | None = None) -> dict:
    """One wrk run; the figures of wrk_report.lua plus req_per_s. Fails on any error."""
    if script is None:
        script = REPORT_LUA
    command = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "5s", "-s", str(script), url]
    if script_args:
        command += ["--", *map(str, script_args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if done.returncode != 0 or not lines:
        pytest.fail(f"wrk failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    figures = json.loads(lines[-1].removeprefix("WRK_JSON "))
    # examples/uwsgi.ini has no http-keepalive: uWSGI's HTTP router closes the connection
    # after every response, without a "Connection: close" header. wrk then writes its next
    # request on the closed socket, reads EOF, counts one "read" error and reconnects: one
    # read error per completed request (at most one more per connection) is that, not a
    # failure. Any other error, a non-2xx/3xx status, or more read errors, fails the run.
    errors = dict(figures["errors"])
    closes = errors.pop("read")
    errors = {k: v for k, v in errors.items() if v}
    if closes > figures["requests"] + connections:
        errors["read"] = closes
    if errors or figures["requests"] == 0:
        pytest.fail(f"wrk saw errors {errors} ({figures['requests']} requests) on {url}:\n{done.stdout}")
    figures["closed_connections"] = closes
    # what the script itself reported, on lines of its own: "<TAG>_JSON {...}"
    figures["script"] = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1])
                         for line in done.stdout.splitlines()
                         if line.split(" ", 1)[0].endswith("_JSON") and not line.startswith("WRK_JSON ")}
    figures["bytes_per_request"] = figures["bytes"] / figures["requests"]
    figures["req_per_s"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def combined_script(directory: Path, request_script: Path) -> Path:
    """wrk takes one script: the request generator followed by the reporting done()."""
    path = directory / f"combined-{request_script.name}"
    path.write_text(request_script.read_text() + "\n" + REPORT_LUA.read_text())
    return path


def summary(values) -> dict:
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


@contextmanager
def module_report(results: dict, artifact: Path, table, record=None):
    """Around a benchmark module: time it, then write ``results`` to ``artifact`` (JSON),
    print ``table(results)`` and, with ``record``, call it to put the figures into
    tests/bench/RESULTS.md (tests/results.py)."""
    started = time.monotonic()
    yield results
    results["total_seconds"] = round(time.monotonic() - started, 1)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + table(results) + f"\n(figures also in {artifact.relative_to(REPO)})")
    if record is not None:
        print(f"(and in {record(results).relative_to(REPO)})")
