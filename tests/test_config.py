"""config.ini (wsgi/config.py), read from real files in tmp_path (contract.md section 2).

A good file gives typed values and absolute paths; a bad one stops start-up with ONE line
naming the file, the section and the key.
"""
import configparser
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from wsgi.config import SHIPPED_STATIC_ROWS, STORE_FILENAME, ConfigError, load_config
from wsgi.fplane import Row

REPO = Path(__file__).resolve().parent.parent

STATIC_ROWS_TEXT = (
    "# the site's special rows\n"
    "# IFUSLOT X_FP   Y_FP   SPECID SPECSLOT IFUID IFUROT  PLATESC\n"
    "000\t   0.000\t   0.000\t900\t900\t900\t0.000\t1.000\n"
    "056\t -50.000\t-150.000\t998\t998\t998\t0.000\t1.000\n"
    "600\t -35.800\t  12.300\t902\t902\t902\t0.000\t1.000\n"
)
STATIC_ROWS = (
    Row(0, 0.0, 0.0, 900, 900, 900, 0.0, 1.0),
    Row(56, -50.0, -150.0, 998, 998, 998, 0.0, 1.0),
    Row(600, -35.8, 12.3, 902, 902, 902, 0.0, 1.0),
)

FULL = {
    "General": {"log": "log/fplaneserver.log", "loglevel": "debug",
                "station_list": "etc/station_list.csv", "data_dir": "var/data",
                "spool_dir": "/srv/fplane/spool"},
    "Server": {"max_body": "2048", "cors_origins": "https://a.example.org, https://b.example.org"},
    "Site": {"timezone": "Europe/Berlin", "static_rows": "etc/static_rows.txt"},
    "Update": {"max_age": "3600", "max_future": "0"},
    "Writer": {"sleep": "0.5", "max_attempts": "7"},
    "Notify": {"smtp_host": "mail.example.org", "smtp_port": "587",
               "sender": "fplane@example.org", "recipients": "ops@example.org night@example.org"},
}
MINIMAL = {"General": {"station_list": "stations.csv", "data_dir": "data", "spool_dir": "spool"}}


def ini_text(sections) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                   for name, keys in sections.items())


def write_config(directory: Path, sections) -> Path:
    (directory / "etc").mkdir(parents=True, exist_ok=True)
    (directory / "etc" / "static_rows.txt").write_text(STATIC_ROWS_TEXT)
    path = directory / "config.ini"
    path.write_text(ini_text(sections))
    return path


def changed(sections, section, key, value):
    """A copy of ``sections`` with one key set (value None: the key removed)."""
    out = {name: dict(keys) for name, keys in sections.items()}
    out.setdefault(section, {})
    if value is None:
        out[section].pop(key, None)
    else:
        out[section][key] = value
    return out


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from another directory: relative paths must not follow the current directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_a_full_config_gives_typed_values_and_absolute_paths(tmp_path, elsewhere):
    site = tmp_path / "site"
    config = load_config(write_config(site, FULL))

    assert config.path == site / "config.ini"
    assert config.log == site / "log" / "fplaneserver.log"
    assert config.loglevel == logging.DEBUG
    assert config.station_list == site / "etc" / "station_list.csv"
    assert config.data_dir == site / "var" / "data"
    assert config.spool_dir == Path("/srv/fplane/spool")
    assert config.store_path == site / "var" / "data" / STORE_FILENAME
    assert config.max_body == 2048 and isinstance(config.max_body, int)
    assert config.cors_origins == ("https://a.example.org", "https://b.example.org")
    assert config.timezone == ZoneInfo("Europe/Berlin")
    assert config.static_rows_file == site / "etc" / "static_rows.txt"
    assert config.static_rows == STATIC_ROWS
    assert (config.max_age, config.max_future) == (3600, 0)
    assert config.writer_sleep == 0.5
    assert config.max_attempts == 7 and isinstance(config.max_attempts, int)
    assert (config.smtp_host, config.smtp_port, config.sender) == (
        "mail.example.org", 587, "fplane@example.org")
    assert config.recipients == ("ops@example.org", "night@example.org")


def test_a_relative_config_path_is_made_absolute(tmp_path, monkeypatch):
    write_config(tmp_path / "site", MINIMAL)
    monkeypatch.chdir(tmp_path)
    config = load_config("site/config.ini")
    assert config.path == tmp_path / "site" / "config.ini"
    assert config.data_dir == tmp_path / "site" / "data"


@pytest.mark.parametrize("extra_sections", [
    {},
    {"Server": {}, "Site": {}, "Update": {}, "Writer": {}, "Notify": {}},
], ids=["sections absent", "sections empty"])
def test_defaults_when_optional_keys_are_absent(tmp_path, extra_sections):
    config = load_config(write_config(tmp_path, {**MINIMAL, **extra_sections}))

    assert config.timezone == ZoneInfo("America/Chicago")
    assert config.max_age == 21600
    assert config.max_future == 600
    assert config.writer_sleep == 5
    assert config.max_attempts == 3
    assert config.max_body == 1048576
    assert config.log is None  # standard error
    assert config.loglevel == logging.INFO
    assert config.cors_origins == ()
    # The site's rows shipped with the package, found wherever config.ini is.
    assert config.static_rows_file == SHIPPED_STATIC_ROWS
    assert {r.ifuslot for r in config.static_rows} == static_row_seats(SHIPPED_STATIC_ROWS)
    assert {0, 56, 66, 600, 603} <= {r.ifuslot for r in config.static_rows}
    assert config.smtp_host == "" and config.recipients == ()  # notifications only logged
    assert config.smtp_port == 25


STATIC_ROWS_WITH_A_VIRUS_SEAT = STATIC_ROWS_TEXT + "013\t-450.000\t 150.000\t301\t101\t001\t0.000\t1.000\n"

FAILURES = [
    # id, sections, section and key the line must name, and words it must say
    ("missing [General]", {k: v for k, v in FULL.items() if k != "General"},
     "General", None, "missing"),
    ("missing data_dir", changed(FULL, "General", "data_dir", None), "General", "data_dir", "missing"),
    ("empty data_dir", changed(FULL, "General", "data_dir", ""), "General", "data_dir", "empty"),
    ("typo datadir", changed(MINIMAL, "General", "datadir", "data"), "General", "datadir", "unknown"),
    ("typo [Writter]", {**FULL, "Writter": {"sleep": "1"}}, "Writter", None, "unknown section"),
    ("max_age abc", changed(FULL, "Update", "max_age", "abc"), "Update", "max_age", "whole number"),
    ("max_age -1", changed(FULL, "Update", "max_age", "-1"), "Update", "max_age", "at least 1"),
    ("max_age 1.5", changed(FULL, "Update", "max_age", "1.5"), "Update", "max_age", "whole number"),
    ("max_future -5", changed(FULL, "Update", "max_future", "-5"), "Update", "max_future", "at least"),
    ("sleep nan", changed(FULL, "Writer", "sleep", "nan"), "Writer", "sleep", "at least"),
    ("max_attempts 0", changed(FULL, "Writer", "max_attempts", "0"), "Writer", "max_attempts",
     "at least 1"),
    ("max_body many", changed(FULL, "Server", "max_body", "1MB"), "Server", "max_body", "number"),
    ("timezone Mars", changed(FULL, "Site", "timezone", "Mars/Olympus"), "Site", "timezone",
     "time zone"),
    ("timezone path", changed(FULL, "Site", "timezone", "../../etc/passwd"), "Site", "timezone",
     "time zone"),
    ("loglevel LOUD", changed(FULL, "General", "loglevel", "LOUD"), "General", "loglevel",
     "log level"),
    ("smtp_port 70000", changed(FULL, "Notify", "smtp_port", "70000"), "Notify", "smtp_port",
     "at most 65535"),
    ("static_rows missing", changed(FULL, "Site", "static_rows", "etc/nonexistent.txt"), "Site",
     "static_rows", "cannot read"),
    ("static_rows a directory", changed(FULL, "Site", "static_rows", "etc"), "Site",
     "static_rows", "cannot read"),
]


@pytest.mark.parametrize("sections, section, key, says",
                         [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_a_bad_config_stops_with_one_line_naming_file_section_and_key(
        tmp_path, sections, section, key, says):
    path = write_config(tmp_path, sections)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_one_line_naming(caught.value, path, section, key, says)


def test_a_static_rows_file_with_a_virus_seat_is_refused(tmp_path):
    path = write_config(tmp_path, FULL)
    (tmp_path / "etc" / "static_rows.txt").write_text(STATIC_ROWS_WITH_A_VIRUS_SEAT)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_one_line_naming(caught.value, path, "Site", "static_rows", "grid seat")
    assert "013" in str(caught.value)


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"),
    ("this is not an ini file\nmax_age = 3\n", "not a valid ini file"),
    ("[General]\ndata_dir = a\ndata_dir = b\n", "not a valid ini file"),
    (b"\xff\xfe\x00binary\x00", "not a valid ini file"),
], ids=["missing file", "no sections", "key twice", "binary"])
def test_an_unreadable_config_file_stops_with_one_line_naming_it(tmp_path, content, says):
    path = tmp_path / "config.ini"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_one_line_naming(caught.value, path, None, None, says)


def assert_one_line_naming(error, path, section, key, says):
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message
    if section is not None:
        assert f"[{section}]" in message, message
    if key is not None:
        assert key in message, message
    assert says in message, message


# -- the shipped template ---------------------------------------------------------------

CONTRACT_KEYS = {
    "General": {"log", "loglevel", "station_list", "data_dir", "spool_dir"},
    "Server": {"max_body", "cors_origins"},
    "Site": {"timezone", "static_rows"},
    "Update": {"max_age", "max_future"},
    "Writer": {"sleep", "max_attempts"},
    "Notify": {"smtp_host", "smtp_port", "sender", "recipients"},
}


def static_row_seats(path: Path) -> set[int]:
    return {int(line.split()[0]) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def test_the_shipped_template_loads_in_place(elsewhere):
    config = load_config(REPO / "config.ini.example")
    assert config.data_dir == REPO / "var" / "data"
    assert config.static_rows_file == SHIPPED_STATIC_ROWS
    assert {r.ifuslot for r in config.static_rows} == static_row_seats(config.static_rows_file)
    assert config.timezone == ZoneInfo("America/Chicago")


@pytest.mark.parametrize("where", ["srv/fplane/config.ini", "etc/fplaneserver.ini"])
def test_the_shipped_template_works_wherever_it_is_copied(tmp_path, elsewhere, where):
    """Nothing in it points into the source tree: its paths are relative to the copy, and
    the static rows come from the installed package."""
    copy = tmp_path / where
    copy.parent.mkdir(parents=True)
    shutil.copy(REPO / "config.ini.example", copy)

    config = load_config(copy)

    assert config.data_dir == copy.parent / "var" / "data"
    assert config.station_list == copy.parent / "var" / "station_list.csv"
    assert config.log == copy.parent / "var" / "log" / "fplaneserver.log"
    assert config.static_rows_file == SHIPPED_STATIC_ROWS
    assert config.static_rows == load_config(REPO / "config.ini.example").static_rows
    assert len(config.static_rows) > 1


def test_an_installed_package_finds_its_static_rows_from_a_copied_template(tmp_path):
    """A real install (a wheel, not this source tree): the template copied to /srv-like
    directory loads with the static rows of the installed package."""
    wheels, target, site = tmp_path / "wheels", tmp_path / "installed", tmp_path / "srv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "-w", str(wheels),
                          str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("fplaneserver-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    site.mkdir()
    shutil.copy(REPO / "config.ini.example", site / "config.ini")
    probe = ("import sys; from wsgi.config import load_config; c = load_config(sys.argv[1]); "
             "print(c.static_rows_file); print(len(c.static_rows))")

    # -I: the installed copy only, never this source tree (nor the cwd, nor PYTHONPATH).
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}",
                          str(site / "config.ini")], cwd=site, check=True, capture_output=True,
                         text=True, timeout=60).stdout.split()

    assert out == [str(target / "wsgi" / "static_rows.txt"), str(len(load_config(REPO / "config.ini.example").static_rows))]


def test_the_shipped_template_documents_every_key_of_the_contract():
    parser = configparser.ConfigParser(interpolation=None)
    with open(REPO / "config.ini.example", encoding="utf-8") as f:
        parser.read_file(f)
    for section, keys in CONTRACT_KEYS.items():
        assert keys <= set(parser[section]), section
