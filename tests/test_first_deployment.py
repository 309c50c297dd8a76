"""The README's "First deployment", followed in a temporary directory standing for /srv/fplane.

From step 2 on, every `fplane$` line runs as written (in a login shell whose home is the
temporary /srv/fplane, so `~/.profile` of step 2 sets FPLANE_CONFIG and PATH as it would
for the user fplane). Step 1's install is this checkout and its virtualenv. What the
`root#` and `tcs$` lines install is run or checked here instead: the systemd unit's own
command line and environment start the service (and `systemd-analyze verify` reads the
unit), the daily job of examples/crontab posts a status, the backup line of fplane's
crontab runs, and logrotate rotates the live log with examples/logrotate.
"""

import grp
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fplane_samples import default_active, make_rows, status_from_rows
from tests.support import REPO, free_port, required_programs
from wsgi import fplane

README = REPO / "README"
UNIT = REPO / "examples" / "fplaneserver.service"
LOGROTATE = REPO / "examples" / "logrotate"
CRONTAB = REPO / "examples" / "crontab"
VENV = Path(sys.executable).parent.parent


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def steps(text: str) -> dict[int, str]:
    """Step number -> its text (prose and blocks), from the numbered paragraphs."""
    parts = re.split(r"(?m)^(\d+)\. ", text)
    return {int(number): body for number, body in zip(parts[1::2], parts[2::2])}


def prompted(text: str, prompt: str) -> list[str]:
    return [line[len(f"    {prompt} "):] for line in text.splitlines()
            if line.startswith(f"    {prompt} ")]


class Site:
    """The temporary /srv/fplane: paths in the README's lines and example files are moved
    into it (the virtualenv and the checkout to this test's own)."""

    def __init__(self, root: Path, port: int):
        self.home = root / "srv" / "fplane"
        self.home.mkdir(parents=True)
        self.port = port
        # curl writing into a pipe shows a progress meter that it leaves out on a terminal.
        (self.home / ".curlrc").write_text("--silent\n--show-error\n")

    def localise(self, text: str) -> str:
        for old, new in (("/srv/fplane/venv", str(VENV)), ("/srv/fplane/fplaneserver", str(REPO)),
                         ("/srv/fplane", str(self.home)), ("127.0.0.1:8080", f"127.0.0.1:{self.port}"),
                         ("FPLANE_PORT=8080", f"FPLANE_PORT={self.port}")):
            text = text.replace(old, new)
        return text

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items()
               if k not in ("FPLANE_CONFIG", "FPLANE_URL", "VIRTUAL_ENV", "PYTHONPATH")}
        # The test's own python first on PATH would hide whether ~/.profile puts the venv there.
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        env["HOME"] = str(self.home)
        return env

    def as_fplane(self, line: str, timeout: float = 120) -> str:
        """One `fplane$` line, in a login shell as the user would type it; its output."""
        run = subprocess.run(["bash", "-lc", self.localise(line)], cwd=self.home, env=self.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=timeout)
        assert run.returncode == 0, f"fplane$ {line}\n{run.stdout}"
        assert "Traceback" not in run.stdout, run.stdout
        return run.stdout


def write_existing_fplane_files(directory: Path) -> list[dict]:
    """Three fplane files as an observatory has them, named fplaneYYYYMMDD.txt."""
    directory.mkdir(parents=True)
    first = default_active()
    second = {seat: ids for seat, ids in first.items() if seat != min(first)}
    third = dict(second)
    third[max(second)] = (98, *second[max(second)][1:])    # a spectrograph replaced
    history = {"20180105": first, "20180212": second, "20180319": third}
    for night, active in history.items():
        (directory / f"fplane{night}.txt").write_text(
            fplane.render_fplane(make_rows(active), [f"fplane file of {night}"], full=True))
    return list(history.values())


def unit_service(unit_text: str) -> tuple[list[str], dict[str, str], str, int]:
    """[Service] ExecStart, Environment, WorkingDirectory and TimeoutStopSec of a unit."""
    service = re.search(r"(?ms)^\[Service\]\n(.*?)(?=^\[|\Z)", unit_text)[1]
    keys = [line.split("=", 1) for line in service.splitlines()
            if line.strip() and not line.startswith("#")]
    environment = dict(value.split("=", 1) for key, value in keys if key == "Environment")
    settings = {key: value for key, value in keys if key != "Environment"}
    return (shlex.split(settings["ExecStart"]), environment, settings["WorkingDirectory"],
            int(settings.get("TimeoutStopSec", "90")))


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"waited {timeout} s for {what}")


def test_the_first_deployment_as_the_readme_says(tmp_path):
    [curl] = required_programs("curl", install="apt-get install curl")
    site = Site(tmp_path, free_port())
    text = section("First deployment")
    numbered = steps(text)
    assert sorted(numbered) == list(range(1, 10))

    # 2-4: config file, store, station.
    for step in (2, 3):
        for line in prompted(numbered[step], "fplane$"):
            site.as_fplane(line)
    assert (site.home / "config.ini").read_text() == (REPO / "config.ini.example").read_text()
    assert (site.home / "var" / "data" / "fplane.sqlite").exists()
    [add_station] = prompted(numbered[4], "fplane$")
    password = site.as_fplane(add_station).strip().splitlines()[-1]

    # 5: the existing files, imported by the README's loop; history lists them.
    configurations = write_existing_fplane_files(site.home / "import")
    import_loop, history = prompted(numbered[5], "fplane$")
    site.as_fplane(import_loop)
    versions = [line for line in site.as_fplane(history).splitlines() if re.match(r"\s+\d+\s+2018", line)]
    assert [line.split()[1] for line in versions] == [
        "2018-01-05T06:00:00Z", "2018-02-12T06:00:00Z", "2018-03-19T05:00:00Z"]

    # 6: the service, started as the systemd unit starts it.
    unit = site.localise(UNIT.read_text())
    command, environment, workdir, stop_timeout = unit_service(unit)
    assert environment["FPLANE_CONFIG"] == str(site.home / "config.ini")
    # Type=notify: systemd waits for READY=1 on its notification socket; this one stands in.
    assert re.search(r"(?m)^Type=notify$", unit)
    notifications = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notifications.bind(str(tmp_path / "notify"))
    notifications.settimeout(60)
    env = {**site.env(), **environment, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    with open(tmp_path / "journal.log", "wb") as journal:
        service = subprocess.Popen(command, cwd=workdir, env=env, stdout=journal,
                                   stderr=subprocess.STDOUT)
    try:
        received = ""
        while "READY=1" not in received:
            received += notifications.recv(4096).decode()
        base = f"http://127.0.0.1:{site.port}"
        assert _answers(base), (tmp_path / "journal.log").read_text()

        # 7: health and verify, as the README's lines run them.
        health, verify = prompted(numbered[7], "fplane$")
        wait_for(lambda: site.as_fplane(health).startswith("100 healthy"), "a healthy service")
        assert "store OK: 3 versions" in site.as_fplane(verify)
        served = fplane.parse_fplane(get(f"{base}/fplane/20180301")[1]).rows
        assert {r.ifuslot for r in served if r.active and r.ifuslot in fplane.VIRUS_SLOTS} == \
            set(configurations[1])

        # 8: the daily job of examples/crontab, with this site's paths, posts a status.
        status = tmp_path / "hardware_status.json"
        changed = dict(configurations[2])
        changed.pop(max(changed))
        status.write_text(json.dumps(status_from_rows(make_rows(changed), _now())))
        password_file = tmp_path / "tcs.password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        job = _crontab_command(CRONTAB.read_text(), {
            "/opt/fplaneserver/.venv/bin/": f"{VENV}/bin/",
            "/etc/fplaneserver/tcs.password": str(password_file),
            "https://fplane.example.org": base,
            "/var/tcs/hardware_status.json": str(status),
            "/var/log/update_fplane.log": str(tmp_path / "update_fplane.log")})
        subprocess.run(["sh", "-c", job], check=True, timeout=120, env=site.env())
        assert (tmp_path / "update_fplane.log").read_text().startswith("100 ")
        wait_for(lambda: "store OK: 4 versions" in site.as_fplane(verify), "the writer's commit")

        # 9: a first backup, then the nightly crontab line, twice (it replaces last week's).
        [first_backup] = prompted(numbered[9], "fplane$")
        site.as_fplane(first_backup)
        assert (site.home / "backup" / "fplane-first.sqlite").stat().st_size > 0
        nightly = _crontab_command(numbered[9], {})
        for _ in range(2):
            subprocess.run(["sh", "-c", site.localise(nightly)], check=True, timeout=120,
                           env=site.env(), cwd=site.home)
        weekday = time.strftime("%a")
        assert (site.home / "backup" / f"fplane-{weekday}.sqlite").stat().st_size > 0
    finally:
        notifications.close()
        service.send_signal(signal.SIGTERM)   # KillSignal of the unit
        try:
            status_code = service.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            service.kill()
            raise
    assert status_code == 0, (tmp_path / "journal.log").read_text()
    log = (site.home / "var" / "log" / "fplaneserver.log").read_text()
    assert "GET /health" in log and "writer stopped" in log


def _answers(base: str) -> bool:
    try:
        get(base + "/?format=txt", timeout=2)
        return True
    except OSError:
        return False


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _crontab_command(text: str, replacements: dict) -> str:
    """The command of the one crontab entry in ``text`` (after its five time fields), as
    cron's shell gets it (`\\%` is a literal %), paths replaced."""
    [entry] = [line.strip() for line in text.splitlines()
               if re.match(r"\s*[\d*][\d*,/-]* [\d*][\d*,/-]* \* \* \* ", line)]
    command = entry.split(None, 5)[5].replace("\\%", "%")
    for old, new in replacements.items():
        command = command.replace(old, new)
    return command


def test_the_systemd_unit_verifies(tmp_path):
    """systemd's own reading of the unit: no unknown key, a command that exists (with the
    paths of a site where they exist)."""
    [analyze] = required_programs("systemd-analyze", install="apt-get install systemd")
    site = Site(tmp_path, 8080)
    unit = tmp_path / "fplaneserver.service"
    unit.write_text(site.localise(UNIT.read_text()))
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr


def test_logrotate_rotates_the_live_log_and_the_service_keeps_logging(tmp_path):
    [logrotate] = required_programs("logrotate", install="apt-get install logrotate")
    from tests.support import import_rows, init_store, write_config
    from tests.test_deploy import running_uwsgi
    site = Site(tmp_path, 0)
    config = write_config(site.home, General={"log": "var/log/fplaneserver.log"})
    init_store(config)
    import_rows(config, make_rows(), "20180601")
    log = site.home / "var" / "log" / "fplaneserver.log"
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    conf = tmp_path / "logrotate.conf"
    conf.write_text(site.localise(LOGROTATE.read_text()).replace("su fplane fplane", f"su {me} {group}"))
    conf.chmod(0o644)

    with running_uwsgi(config, tmp_path / "uwsgi.log") as (base, _):
        get(f"{base}/fplane/20180701?before=rotation")
        wait_for(lambda: "before=rotation" in log.read_text(), "the request line")
        run = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"), str(conf)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        get(f"{base}/fplane/20180701?after=rotation")
        wait_for(lambda: "after=rotation" in log.read_text(), "the request line after rotation")

    rotated = log.with_name(log.name + ".1")
    assert "before=rotation" in rotated.read_text()
    live = log.read_bytes()
    # copytruncate: the workers' O_APPEND lines land at the start of the emptied file
    assert b"\0" not in live and b"before=rotation" not in live and b"after=rotation" in live
