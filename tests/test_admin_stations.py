"""fplane-admin add-station, passwd and stations (contract.md sections 7 and 8), run for
real: `python3 -m writer.admin -c CONFIG ...` in a subprocess, on a real config.ini and
station list in tmp_path. Every run is checked for a traceback.
"""
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from wsgi import codes
from wsgi.responses import CodedError
from wsgi.stations import StationList

REPO = Path(__file__).resolve().parent.parent
PASSWORD = re.compile(r"[A-Za-z0-9_-]{32}")


@dataclass
class Run:
    status: int
    out: str
    err: str

    @property
    def password(self) -> str:
        """The last line of the output, which must be the password alone."""
        last = self.out.splitlines()[-1]
        assert PASSWORD.fullmatch(last), self.out
        return last


def admin(config: Path, *args) -> Run:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FPLANE_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "writer.admin", "-c", str(config), *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in run.out + run.err, run.err
    return run


@pytest.fixture
def config(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    path = site / "config.ini"
    path.write_text("[General]\nstation_list = station_list.csv\ndata_dir = data\n"
                    "spool_dir = spool\nlog = log/fplaneserver.log\n")
    return path


@pytest.fixture
def station_list(config):
    """The station list that `fplane-admin init` makes."""
    run = admin(config, "init")
    assert run.status == 0, run.err
    return config.parent / "station_list.csv"


def refused(run: Run, *fragments):
    assert run.status == 1
    assert run.out == ""
    assert len(run.err.splitlines()) == 1, run.err
    assert run.err.startswith("fplane-admin: ")
    for fragment in fragments:
        assert fragment in run.err, run.err


# -- add-station -------------------------------------------------------------------------

def test_add_station_prints_the_password_alone_on_the_last_line_and_it_authenticates(
        config, station_list):
    run = admin(config, "add-station", "tcs", "--name", "Telescope control system",
                "--roles", "config")

    assert run.status == 0, run.err
    password = run.password
    lines = run.out.splitlines()
    assert len(lines) == 2
    assert "tcs" in lines[0] and "Telescope control system" in lines[0] and "config" in lines[0]
    assert run.out.count(password) == 1 and password not in run.err
    data = station_list.read_bytes()
    assert password.encode() not in data
    assert stat.S_IMODE(os.stat(station_list).st_mode) == 0o600

    listed = StationList(station_list)
    assert listed.authenticate("tcs", password, "config").name == "Telescope control system"
    with pytest.raises(CodedError) as not_allowed:
        listed.authenticate("tcs", password, "positions")
    assert not_allowed.value.code == codes.NOT_ALLOWED


@pytest.mark.parametrize("roles", ["config;positions", "config,positions", " Positions ; config "])
def test_add_station_takes_both_roles_in_either_spelling(config, station_list, roles):
    run = admin(config, "add-station", "astrometry", "--name", "Astrometry", "--roles", roles)
    assert run.status == 0, run.err
    assert "roles config;positions" in run.out
    listed = StationList(station_list)
    station = listed.authenticate("astrometry", run.password, "positions")
    assert station.roles == frozenset({"config", "positions"})
    assert "astrometry,Astrometry,config;positions,scrypt$" in station_list.read_text()


def test_add_station_makes_the_station_list_when_there_is_none(config):
    run = admin(config, "add-station", "tcs", "--name", "TCS", "--roles", "config")
    assert run.status == 0, run.err
    path = config.parent / "station_list.csv"
    assert path.read_text().splitlines()[0] == "station_id,name,roles,password_hash"
    assert StationList(path).authenticate("tcs", run.password, "config")


def test_a_duplicate_add_station_exits_1_and_changes_nothing(config, station_list):
    first = admin(config, "add-station", "tcs", "--name", "TCS", "--roles", "config")
    before = station_list.read_bytes()

    again = admin(config, "add-station", "tcs", "--name", "Another", "--roles", "positions")

    refused(again, "'tcs' is already in", "fplane-admin passwd tcs")
    assert station_list.read_bytes() == before
    assert StationList(station_list).authenticate("tcs", first.password, "config")


@pytest.mark.parametrize("args, fragments", [
    (["bad/id", "--name", "x", "--roles", "config"], ["'bad/id' is not 1 to 64 letters"]),
    (["tcs", "--name", "x", "--roles", "admin"], ["unknown role 'admin'", "config, positions"]),
    (["tcs", "--name", "x", "--roles", ";"], ["at least one role"]),
    (["tcs", "--name", " ", "--roles", "config"], ["give the station a name"]),
])
def test_add_station_refuses_bad_input_with_one_line(config, station_list, args, fragments):
    before = station_list.read_bytes()
    refused(admin(config, "add-station", *args), *fragments)
    assert station_list.read_bytes() == before


def test_add_station_without_name_or_roles_is_a_usage_error(config, station_list):
    run = admin(config, "add-station", "tcs", "--roles", "config")
    assert run.status == 2
    assert "--name" in run.err


# -- passwd ------------------------------------------------------------------------------

def test_passwd_prints_a_new_password_last_and_the_old_one_stops_working(config, station_list):
    old = admin(config, "add-station", "tcs", "--name", "TCS", "--roles", "config").password
    admin(config, "add-station", "astrometry", "--name", "Astrometry", "--roles", "positions")
    listed = StationList(station_list)  # alive across the change, as a web worker is
    assert listed.authenticate("tcs", old, "config")
    other_line = station_list.read_text().splitlines()[2]

    run = admin(config, "passwd", "tcs")

    assert run.status == 0, run.err
    new = run.password
    assert new != old and new.encode() not in station_list.read_bytes()
    assert station_list.read_text().splitlines()[2] == other_line
    assert stat.S_IMODE(os.stat(station_list).st_mode) == 0o600
    with pytest.raises(CodedError) as wrong:
        listed.authenticate("tcs", old, "config")
    assert wrong.value.code == codes.WRONG_PASSWORD
    assert listed.authenticate("tcs", new, "config").station_id == "tcs"


def test_passwd_of_an_unknown_station_exits_1(config, station_list):
    refused(admin(config, "passwd", "nope"), "'nope' is not in", "add-station")


def test_passwd_without_a_station_list_exits_1(config):
    refused(admin(config, "passwd", "tcs"), "no station list", "fplane-admin init")


# -- stations ----------------------------------------------------------------------------

def test_stations_lists_ids_names_and_roles_but_never_hashes(config, station_list):
    admin(config, "add-station", "tcs", "--name", "Telescope control system", "--roles", "config")
    admin(config, "add-station", "astrometry", "--name", "Astrometry, pipeline",
          "--roles", "positions;config")

    run = admin(config, "stations")

    assert run.status == 0, run.err
    rows = [line.split("  ") for line in run.out.splitlines()]
    rows = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    assert rows == [
        ["station_id", "name", "roles"],
        ["astrometry", "Astrometry, pipeline", "config;positions"],
        ["tcs", "Telescope control system", "config"],
    ]
    assert "scrypt" not in run.out
    for line in station_list.read_text().splitlines()[1:]:
        _, _, _, _, salt, digest = line.rsplit(",", 1)[1].split("$")
        assert salt not in run.out and digest not in run.out


def test_stations_names_the_lines_it_skips(config, station_list):
    admin(config, "add-station", "tcs", "--name", "TCS", "--roles", "config")
    with station_list.open("a") as f:
        f.write("typo,Typo,config,not-a-hash\n")

    run = admin(config, "stations")

    assert run.status == 0, run.err
    assert "tcs" in run.out and "not-a-hash" not in run.out
    [problem] = [line for line in run.out.splitlines() if line.startswith("problem: ")]
    assert "line 3" in problem and "typo" in problem and "fplane-admin passwd typo" in problem


def test_stations_of_an_empty_list_says_how_to_add_one(config, station_list):
    run = admin(config, "stations")
    assert run.status == 0
    assert "fplane-admin add-station" in run.out


def test_stations_without_a_station_list_exits_1(config):
    refused(admin(config, "stations"), "no station list")


# -- a running worker sees the changes ---------------------------------------------------

def test_a_live_station_list_picks_up_a_station_added_by_the_cli(config, station_list):
    first = admin(config, "add-station", "tcs", "--name", "TCS", "--roles", "config").password
    listed = StationList(station_list)
    assert listed.authenticate("tcs", first, "config")
    with pytest.raises(CodedError) as unknown:
        listed.authenticate("astrometry", "not yet", "positions")
    assert unknown.value.code == codes.UNKNOWN_STATION

    run = admin(config, "add-station", "astrometry", "--name", "Astrometry",
                "--roles", "positions")

    assert listed.authenticate("astrometry", run.password, "positions").name == "Astrometry"
    assert listed.authenticate("tcs", first, "config").name == "TCS"
    assert listed.problems == []
