"""Building real services for tests: a config.ini in a temporary directory, a store made by
the real `fplane-admin init`, versions recorded by the real `fplane-admin import`."""

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import webtest

from tests import processes
from wsgi import fplane
from wsgi.app import application
from writer import admin

REPO = Path(__file__).resolve().parent.parent
STATIC_ROWS = REPO / "wsgi" / "static_rows.txt"


def write_config(directory: Path, **sections) -> Path:
    """A config.ini with paths inside ``directory``; ``sections`` override or add keys,
    e.g. write_config(tmp, Site={"timezone": "UTC"})."""
    settings = {
        "General": {"log": "log/fplaneserver.log", "loglevel": "INFO",
                    "station_list": "station_list.csv", "data_dir": "data", "spool_dir": "spool"},
        "Site": {"timezone": "America/Chicago", "static_rows": str(STATIC_ROWS)},
    }
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    text = "".join(
        f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
        for section, values in settings.items()
    )
    path = directory / "config.ini"
    path.write_text(text)
    return path


def run_admin(config: Path, *args) -> tuple[int, str, str]:
    """Run fplane-admin in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = admin.main(["-c", str(config), *args])
    return status, out.getvalue(), err.getvalue()


def init_store(config: Path) -> None:
    status, out, err = run_admin(config, "init")
    assert status == 0, err


def import_rows(config: Path, rows, valid_from: str, *extra, name=None) -> str:
    """Write ``rows`` as a full fplane file and import it; returns what fplane-admin printed."""
    path = config.parent / (name or f"import_{valid_from}_{len(list(config.parent.glob('import_*')))}.txt")
    path.write_text(fplane.render_fplane(rows, ["test file"], full=True))
    status, out, err = run_admin(config, "import", str(path), "--valid-from", valid_from, *extra)
    assert status == 0, err
    return out


def add_station(config: Path, station_id: str, roles: str = "config") -> str:
    """Add a station with the real `fplane-admin add-station`; returns its password."""
    status, out, err = run_admin(config, "add-station", station_id, "--name", f"test {station_id}",
                                 "--roles", roles)
    assert status == 0, err
    return out.strip().splitlines()[-1]


def update_form(station_id: str, password: str, data, checksum: str | None = None) -> dict:
    """The form fields of a post (contract section 5). ``data``: a dict (JSON-encoded here)
    or the exact text to send; ``checksum`` defaults to the right one."""
    text = data if isinstance(data, str) else json.dumps(data)
    return {"station_id": station_id, "password": password, "data": text,
            "checksum": hashlib.sha256(text.encode("utf-8")).hexdigest() if checksum is None else checksum}


def test_app(config: Path) -> webtest.TestApp:
    """The very partial that examples/application.wsgi builds, driven by WebTest."""
    return webtest.TestApp(partial(application, configfile=str(config)))


test_app.__test__ = False  # a factory, not a test


def uwsgi_binary() -> str:
    """The venv's uWSGI (make test and make bench run pytest from .venv), else one on PATH."""
    beside_python = Path(sys.executable).parent / "uwsgi"
    found = str(beside_python) if beside_python.exists() else shutil.which("uwsgi")
    if found is None:
        pytest.fail("uWSGI is not installed: run the tests with `make test`")
    return found


def uwsgi_workers(master: int) -> dict[int, int]:
    """uWSGI worker number -> pid of the web workers of ``master`` (not its routers, not
    the attached writer), found by their process titles (auto-procname in the ini)."""
    return {int(p.cmdline.rsplit(" ", 1)[1]): p.pid
            for p in processes.children(master) if "uWSGI worker" in p.cmdline}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def under_ci() -> bool:
    """CI sets CI=true (.ci/run runs there): every test must run, none may skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def required_programs(*programs: str, install: str) -> list[str]:
    """The paths of programs pip cannot install (Chromium, its driver, nginx), each given
    as an absolute path or a name looked up on PATH and in /usr/sbin (Debian's nginx).

    One missing: the test skips with a one-line reason outside CI, so a fresh clone's
    `make test` passes without them; under CI (CI=true) it fails, because .ci/run installs
    them and a skipped test there would hide a broken install. ``install`` says how."""
    found, missing = [], []
    for program in programs:
        if os.path.isabs(program):
            path = program if os.access(program, os.X_OK) else None
        else:
            path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
        (found if path else missing).append(path or program)
    if missing:
        unavailable(f"{', '.join(missing)} missing: {install}")
    return found


def unavailable(reason: str):
    """For a test that needs what this machine lacks (a program pip cannot install, root):
    skipped with ``reason`` on a developer's machine, a failure under CI, where everything
    it needs must be there (.ci/run installs it)."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: this test must run)")
    pytest.skip(reason)


def wait_for(condition, timeout: float = 10.0, what: str = "the condition", poll: float = 0.01,
             error=AssertionError):
    """condition()'s first true value, polled every ``poll`` s; ``error`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"waited {timeout:g} s for {what}")
        time.sleep(poll)
