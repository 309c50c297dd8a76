"""fplane-admin (writer/admin.py), run for real: `python3 -m writer.admin -c CONFIG ...` in a
subprocess, on a real config.ini, store and spool in tmp_path (contract.md section 8).

Every run is checked for a traceback: whatever goes wrong, the operator gets a reason.
"""
import functools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import webtest

import wsgi.app
from tests.fplane_samples import (
    full_commented_text,
    full_uncommented_text,
    grid_position,
    hand_edited_text,
    make_rows,
    measured_positions,
    short_expected,
    short_text,
    strict_fplane_parse,
)
from wsgi.fplane import GRID_SLOTS, VIRUS_SLOTS, Row, parse_static_rows
from wsgi.fplane import is_grid_slot as fplane_is_grid
from wsgi.store import Store
from tests.support import STATIC_ROWS

REPO = Path(__file__).resolve().parent.parent
SITE = ZoneInfo("America/Chicago")

A = make_rows()
# Another configuration: the first active seat lost its spectrograph.
FIRST_ACTIVE = next(r.ifuslot for r in A if r.active and r.ifuslot in VIRUS_SLOTS)
B = tuple(Row(r.ifuslot, r.x, r.y, 0, r.specslot, r.ifuid, active=False)
          if r.ifuslot == FIRST_ACTIVE else r for r in A)
C = tuple(r for r in A if r.ifuslot < 600)  # fewer special rows


def night(label: str) -> str:
    """00:00 site time on YYYYMMDD, as the tool writes instants (contract section 3)."""
    local = datetime.strptime(label, "%Y%m%d").replace(tzinfo=SITE)
    return local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def active_virus(rows):
    return {r.ifuslot for r in rows if r.active and r.ifuslot in VIRUS_SLOTS}


@dataclass
class Run:
    status: int
    stdout_bytes: bytes
    out: str
    err: str


def admin(config: Path, *args) -> Run:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FPLANE_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "writer.admin", "-c", str(config), *map(str, args)],
        cwd=REPO, env=env, capture_output=True, timeout=60)
    run = Run(proc.returncode, proc.stdout, proc.stdout.decode(), proc.stderr.decode())
    assert "Traceback" not in run.out + run.err, run.err
    return run


def write_config(directory: Path, **general) -> Path:
    """A config.ini whose paths are relative to its own directory (as the template's are)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "wsgi" / "static_rows.txt", directory / "static_rows.txt")
    settings = {"log": "log/fplaneserver.log", "station_list": "station_list.csv",
                "data_dir": "data", "spool_dir": "spool", **general}
    path = directory / "config.ini"
    path.write_text("[General]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
                    + "[Site]\ntimezone = America/Chicago\nstatic_rows = static_rows.txt\n")
    return path


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path / "site")


@pytest.fixture(scope="module")
def initialised_template(tmp_path_factory):
    """One site made by the real `init`; each test gets its own copy (saves a run per test)."""
    config = write_config(tmp_path_factory.mktemp("template") / "site")
    run = admin(config, "init")
    assert run.status == 0, run.err
    return config.parent


@pytest.fixture
def initialised(initialised_template, tmp_path):
    shutil.copytree(initialised_template, tmp_path / "site")
    return tmp_path / "site" / "config.ini"


def store_path(config: Path) -> Path:
    return config.parent / "data" / "fplane.sqlite"


def stored_history(config: Path):
    store = Store.open_readonly(store_path(config))
    try:
        return store.history()
    finally:
        store.close()


def stored_rows_at(config: Path, label: str):
    """The rows the store holds for 00:00 site time on YYYYMMDD."""
    midnight = datetime.strptime(label, "%Y%m%d").replace(tzinfo=SITE)
    micros = (midnight - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    store = Store.open_readonly(store_path(config))
    try:
        return store.configuration_rows(store.version_at(micros).configuration_id)
    finally:
        store.close()


def write_file(config: Path, name: str, text: str) -> Path:
    path = config.parent / name
    path.write_bytes(text.encode("utf-8"))
    return path


def import_rows(config: Path, rows, label: str, *extra) -> Run:
    path = write_file(config, f"fplane{label}.txt", full_commented_text(rows))
    run = admin(config, "import", path, "--valid-from", label, *extra)
    assert run.status == 0, run.err
    return run


def notes(run: Run) -> list[str]:
    return [line[len("note: "):] for line in run.out.splitlines() if line.startswith("note: ")]


# -- init -------------------------------------------------------------------------------

def test_init_creates_data_dir_spool_empty_store_and_station_list(config):
    run = admin(config, "init")

    assert run.status == 0, run.err
    site = config.parent
    assert (site / "data").is_dir()
    for sub in ("tmp", "new", "cur", "done", "failed"):
        assert (site / "spool" / sub).is_dir()
    assert stored_history(config) == []
    assert (site / "station_list.csv").read_text().splitlines() == [
        "station_id,name,roles,password_hash"]
    assert "created" in run.out


def test_a_second_init_says_ready_and_keeps_everything(initialised):
    import_rows(initialised, A, "20180701")
    station_list = initialised.parent / "station_list.csv"
    station_list.write_text(station_list.read_text() + "tcs,TCS,config,scrypt$x$y\n")

    run = admin(initialised, "init")

    assert run.status == 0, run.err
    assert "ready" in run.out
    assert len(stored_history(initialised)) == 1
    assert "tcs,TCS,config" in station_list.read_text()


def test_init_where_the_data_dir_cannot_be_made_says_why(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "blocker").write_text("a file where a directory should go\n")
    config = write_config(tmp_path / "site", data_dir="blocker/data")
    run = admin(config, "init")
    assert run.status == 1
    assert "blocker" in run.err


@pytest.mark.parametrize("command", [
    ["history"],
    ["verify"],
    ["export", "20180705"],
    ["backup", "copy.sqlite"],
    ["import", "FILE", "--valid-from", "20180705"],
])
def test_commands_before_init_are_refused(config, command):
    fplane_file = write_file(config, "fplane.txt", full_commented_text(A))
    run = admin(config, *[fplane_file if arg == "FILE" else arg for arg in command])
    assert run.status == 1
    assert "not initialised (fplane-admin init)" in run.err
    assert not store_path(config).exists()


# -- import -----------------------------------------------------------------------------

# the shipped static rows (wsgi/static_rows.txt), which write_config puts in [Site] static_rows.
SITE_SPECIAL_ROWS = parse_static_rows(STATIC_ROWS.read_text())[0]


def with_site_special_rows(rows):
    """``rows`` with LRS2 and the non-grid rows of the site's static rows (its own 000)."""
    special = {r.ifuslot: r for r in SITE_SPECIAL_ROWS if r.ifuslot != 0}
    return tuple(sorted({**{r.ifuslot: r for r in rows}, **special}.values(),
                        key=lambda r: r.ifuslot))


def grid_seats_with_specid_0(rows) -> int:
    return sum(1 for r in rows if r.ifuslot in GRID_SLOTS and r.specid == 0)


VARIANTS = [
    # variant, text, expected notes (patterns, in order), rows the store must hold
    ("full commented", full_commented_text(A), [], A),
    ("Windows (CRLF, BOM)", full_commented_text(A, newline="\r\n", bom=True), [], A),
    ("full uncommented", full_uncommented_text(A),
     [rf"{grid_seats_with_specid_0(A)} seats with SPECID 000 were not commented out; "
      r"read as inactive"], A),
    ("short", short_text(A),
     [rf"{len(GRID_SLOTS) - len(active_virus(A))} grid seats are not listed .*"
      r"this looks like a short file"], with_site_special_rows(short_expected(A))),
    ("hand edited", hand_edited_text(A),
     [r"rows write ids with fewer than 3 digits .*SPECID.*'00' is 000"], A),
]


@pytest.mark.parametrize("variant, text, expected_notes, expected_rows", VARIANTS,
                         ids=[v[0] for v in VARIANTS])
def test_import_of_each_real_world_variant(initialised, variant, text, expected_notes,
                                           expected_rows):
    path = write_file(initialised, "fplane.txt", text)

    run = admin(initialised, "import", path, "--valid-from", "20180707", "--comment", variant)

    assert run.status == 0, run.err
    assert len(notes(run)) == len(expected_notes), notes(run)
    for note, pattern in zip(notes(run), expected_notes):
        assert re.search(pattern, note), note
    assert re.search(rf"recorded version 1 \({len(active_virus(expected_rows))} active IFUs\), "
                     rf"valid_from {night('20180707')}", run.out), run.out
    assert stored_rows_at(initialised, "20180707") == tuple(
        sorted(expected_rows, key=lambda r: r.ifuslot))
    [version] = stored_history(initialised)
    assert version.comment == variant


def test_importing_the_same_file_at_the_same_date_again_records_nothing(initialised):
    import_rows(initialised, A, "20180707")

    run = import_rows(initialised, A, "20180707")

    assert "unchanged" in run.out
    assert "recorded version" not in run.out
    assert len(stored_history(initialised)) == 1
    history = admin(initialised, "history")
    assert len(version_lines(history)) == 1


def test_a_file_with_errors_is_not_imported_and_names_the_line(initialised):
    lines = full_commented_text(A).splitlines()
    bad_line = next(n for n, line in enumerate(lines, 1) if line.startswith("021\t"))
    lines[bad_line - 1] += "\t1.000"  # 9 fields
    path = write_file(initialised, "broken.txt", "\n".join(lines) + "\n")

    run = admin(initialised, "import", path, "--valid-from", "20180707")

    assert run.status == 1
    assert f"line {bad_line}" in run.err
    assert "9 fields" in run.err
    assert "nothing recorded" in run.err
    assert stored_history(initialised) == []


@pytest.mark.parametrize("valid_from", ["2018-13-45", "yesterday", "20180707T25:00:00", "7/7/2018"])
def test_a_bad_valid_from_is_refused_with_the_accepted_forms(initialised, valid_from):
    path = write_file(initialised, "fplane.txt", full_commented_text(A))
    run = admin(initialised, "import", path, "--valid-from", valid_from)
    assert run.status == 1
    assert "accepted forms" in run.err and "YYYYMMDD" in run.err
    assert stored_history(initialised) == []


@pytest.mark.parametrize("name, make", [
    ("missing.txt", lambda path: None),
    ("a_directory", lambda path: path.mkdir()),
])
def test_a_file_that_cannot_be_read_is_refused(initialised, name, make):
    path = initialised.parent / name
    make(path)
    run = admin(initialised, "import", path, "--valid-from", "20180707")
    assert run.status == 1
    assert name in run.err
    assert stored_history(initialised) == []


def test_import_positions_records_only_the_listed_seats(initialised):
    import_rows(initialised, A, "20180701")
    # A file listing a few measured seats (and 000): as astrometry delivers them.
    measured = measured_positions(sorted(active_virus(A))[:12])
    listed_rows = make_rows(active={r.ifuslot: (r.specid, r.specslot, r.ifuid)
                                    for r in A if r.ifuslot in measured},
                            installed={}, specials=(), lrs2=False, positions=measured)
    path = write_file(initialised, "positions.txt", short_text(listed_rows))

    run = admin(initialised, "import", path, "--valid-from", "20180703", "--positions")

    assert run.status == 0, run.err
    assert f"recorded position set 1 ({len(measured)} seats)" in run.out
    store = Store.open_readonly(store_path(initialised))
    try:
        [position_set] = store.position_set_history()
        assert store.positions(position_set.id) == measured
    finally:
        store.close()

    # (the strict parser, like the clients, sees the active rows: 000, VIRUS, LRS2, specials)
    actual = strict_fplane_parse(admin(initialised, "export", "20180705", "--actual").out)
    nominal = strict_fplane_parse(admin(initialised, "export", "20180705").out)
    configured = {f"{r.ifuslot:03d}": (r.x, r.y) for r in A}
    assert set(actual) == set(nominal) >= {f"{s:03d}" for s in measured}
    for seat in actual:
        expected = measured.get(int(seat), configured[seat])
        assert actual[seat][:2] == pytest.approx(expected, abs=5e-4), seat
        assert nominal[seat][:2] == pytest.approx(configured[seat], abs=5e-4), seat
    assert all(grid_position(s) != measured[s] for s in measured)  # the test shows a difference
    # before the position set is valid, --actual gives nominal positions
    before = strict_fplane_parse(admin(initialised, "export", "20180702", "--actual").out)
    assert before == strict_fplane_parse(admin(initialised, "export", "20180702").out)


# -- what an import records: nominal configurations, special rows -------------------------

def web(config: Path) -> webtest.TestApp:
    return webtest.TestApp(functools.partial(wsgi.app.application, configfile=str(config)))


def served(config: Path, query: str, date: str = "20180710"):
    """(header lines, seat -> (x, y, specid, ...)) of GET /fplane/<date>?<query>, parsed as
    strictly as the clients do (8 fields, 3-digit ids)."""
    text = web(config).get(f"/fplane/{date}?{query}").text
    return [line for line in text.splitlines() if line.startswith("#")], strict_fplane_parse(text)


# A short file with measured positions, as vdrp's fplane.txt: 000 and the active VIRUS
# seats only, most of them a few tenths of an arcsec off the grid, some exactly on it.
MEASURED_A = measured_positions(sorted(active_virus(A)))
SHORT_MEASURED_TEXT = short_text(make_rows(positions=MEASURED_A))


def test_a_short_file_with_measured_positions_is_served_nominal_unless_actual_pos(initialised):
    path = write_file(initialised, "fplane_short.txt", SHORT_MEASURED_TEXT)

    run = admin(initialised, "import", path, "--valid-from", "20180707")

    assert run.status == 0, run.err
    listed = active_virus(A)
    assert re.search(rf"positions: X/Y off the nominal grid at {len(MEASURED_A)} seats .*"
                     rf"the version holds nominal positions \(actual_pos=0\); the file's X/Y "
                     rf"of the {len(listed)} grid seats it lists are its measured positions "
                     rf"\(actual_pos=1\)", run.out), run.out
    assert f"recorded position set 1 ({len(listed)} seats), valid_from {night('20180707')}" \
        in run.out
    header, nominal = served(initialised, "actual_pos=0&full_fplane=1")
    assert "# positions: nominal" in header
    for seat, values in nominal.items():
        if int(seat) in GRID_SLOTS:
            assert values[:2] == grid_position(int(seat)), seat   # the grid formula
    header, actual = served(initialised, "actual_pos=1&full_fplane=0")
    assert any(line.startswith("# positions: measured (position set 1") for line in header)
    assert set(actual) == {"000"} | {f"{s:03d}" for s in listed}
    for seat in listed:
        expected = MEASURED_A.get(seat, grid_position(seat))
        assert actual[f"{seat:03d}"][:2] == pytest.approx(expected, abs=5e-4), seat
    assert any(grid_position(s) != xy for s, xy in MEASURED_A.items())  # the test shows a difference


def test_a_short_file_gets_the_sites_special_rows_as_a_status_does(initialised):
    path = write_file(initialised, "fplane_short.txt", SHORT_MEASURED_TEXT)

    run = admin(initialised, "import", path, "--valid-from", "20180707")

    assert re.search(r"special rows: the file has none \(no LRS2, no HPF rows\); carried over "
                     r"056, 066, 555, 600, .* from \[Site\] static_rows \(.*static_rows.txt\), "
                     r"as a posted status gets them", run.out), run.out
    _, full = served(initialised, "actual_pos=0&full_fplane=1")
    for row in SITE_SPECIAL_ROWS:
        assert full[f"{row.ifuslot:03d}"][2:5] == (row.specid, row.specslot, f"{row.ifuid:03d}")


def test_a_short_file_after_a_full_one_carries_over_that_versions_special_rows(initialised):
    # The full file's special rows (tests/fplane_samples: made-up positions, ids 901-913)
    # differ from the site's static rows: the short file must get these.
    import_rows(initialised, A, "20180701")
    path = write_file(initialised, "fplane_short.txt", SHORT_MEASURED_TEXT)

    run = admin(initialised, "import", path, "--valid-from", "20180707")

    assert "from version 1, valid before, as a posted status gets them" in run.out
    _, full = served(initialised, "actual_pos=0&full_fplane=1")
    for row in A:
        if not fplane_is_grid(row.ifuslot) or row.ifuslot in (56, 66):
            assert full[f"{row.ifuslot:03d}"][:2] == pytest.approx((row.x, row.y)), row
            assert full[f"{row.ifuslot:03d}"][4] == f"{row.ifuid:03d}"


def test_a_file_with_its_own_special_rows_keeps_them(initialised):
    own = tuple(r if r.ifuslot != 600 else Row(600, -1.5, 2.5, 950, 950, 950) for r in C)
    run = import_rows(initialised, own, "20180707")
    assert "special rows" not in run.out and "positions:" not in run.out
    assert stored_rows_at(initialised, "20180707") == tuple(sorted(own, key=lambda r: r.ifuslot))


def test_discard_positions_keeps_the_nominal_version_and_records_no_position_set(initialised):
    path = write_file(initialised, "fplane_short.txt", SHORT_MEASURED_TEXT)

    run = admin(initialised, "import", path, "--valid-from", "20180707", "--discard-positions")

    assert run.status == 0, run.err
    assert "discarded (--discard-positions)" in run.out and "position set" in run.out
    assert "recorded position set" not in run.out
    header, actual = served(initialised, "actual_pos=1&full_fplane=1")
    assert any("no measured position set is valid then: nominal" in line for line in header)
    for seat, values in actual.items():
        if int(seat) in GRID_SLOTS:
            assert values[:2] == grid_position(int(seat)), seat


def test_a_full_file_with_measured_positions_is_stored_nominal(initialised):
    measured = make_rows(positions=MEASURED_A)
    run = import_rows(initialised, measured, "20180707")
    assert f"recorded position set 1 ({len(GRID_SLOTS)} seats)" in run.out
    assert stored_rows_at(initialised, "20180707") == tuple(sorted(A, key=lambda r: r.ifuslot))
    _, actual = served(initialised, "actual_pos=1&full_fplane=1")
    for row in measured:
        if row.active:   # (commented-out rows are comments to the clients' parser)
            assert actual[f"{row.ifuslot:03d}"][:2] == pytest.approx((row.x, row.y), abs=5e-4)


# -- export -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_versions_template(initialised_template, tmp_path_factory):
    site = tmp_path_factory.mktemp("two_versions") / "site"
    shutil.copytree(initialised_template, site)
    import_rows(site / "config.ini", A, "20180701")
    import_rows(site / "config.ini", B, "20180710")
    return site


@pytest.fixture
def two_versions(two_versions_template, tmp_path):
    """A store holding A from 20180701 and B from 20180710 (each test its own copy)."""
    shutil.copytree(two_versions_template, tmp_path / "site")
    return tmp_path / "site" / "config.ini"


@pytest.mark.parametrize("date, flags, query", [
    ("20180705", [], "actual_pos=0&full_fplane=1"),
    ("20180710", [], "actual_pos=0&full_fplane=1"),
    ("2018-07-10T04:59:59Z", [], "actual_pos=0&full_fplane=1"),
    ("20180712", ["--short"], "actual_pos=0&full_fplane=0"),
    ("20180712", ["--actual"], "actual_pos=1&full_fplane=1"),
])
def test_export_writes_exactly_what_the_web_app_serves(two_versions, tmp_path, date, flags, query):
    web = webtest.TestApp(functools.partial(wsgi.app.application, configfile=str(two_versions)))
    served = web.get(f"/fplane/{date}?{query}").body

    to_stdout = admin(two_versions, "export", date, *flags)
    output = tmp_path / "exported.txt"
    to_file = admin(two_versions, "export", date, *flags, "-o", output)

    assert to_stdout.status == 0 and to_file.status == 0
    assert to_stdout.stdout_bytes == served
    assert output.read_bytes() == served
    strict_fplane_parse(served.decode())


def test_export_short_has_only_000_and_the_active_virus_seats(two_versions):
    run = admin(two_versions, "export", "20180712", "--short")
    seats = strict_fplane_parse(run.out)
    assert set(seats) == {"000"} | {f"{s:03d}" for s in active_virus(B)}


def test_export_before_the_history_is_refused_with_the_302_message(two_versions):
    run = admin(two_versions, "export", "20180630")
    assert run.status == 1
    assert f"no configuration known for {night('20180630')}" in run.err
    assert f"the history starts at {night('20180701')}" in run.err
    assert run.out == ""


def test_export_from_an_empty_store_says_so(initialised):
    run = admin(initialised, "export", "20180705")
    assert run.status == 1
    assert "no configuration known" in run.err and "no versions yet" in run.err


def test_export_into_a_missing_directory_is_refused(two_versions, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "fplane.txt"
    run = admin(two_versions, "export", "20180705", "-o", target)
    assert run.status == 1
    assert str(target) in run.err
    assert not target.parent.exists()


# -- history ----------------------------------------------------------------------------

VERSION_LINE = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s")


def version_lines(run: Run) -> list[tuple[str, ...]]:
    """(id, valid_from, valid_until, recorded_at, IFUs) of each version line."""
    lines = []
    for line in run.out.split("\n\n")[0].splitlines():
        match = VERSION_LINE.match(line)
        if match:
            lines.append(match.groups())
    return lines


def test_history_lists_versions_in_valid_from_order_with_valid_until(initialised):
    # recorded out of order: the middle one last
    import_rows(initialised, A, "20180710")
    import_rows(initialised, B, "20180701")
    import_rows(initialised, C, "20180720")

    run = admin(initialised, "history")

    assert run.status == 0, run.err
    lines = version_lines(run)
    assert [(vid, vf, vu, ifus) for vid, vf, vu, _, ifus in lines] == [
        ("2", night("20180701"), night("20180710"), str(len(active_virus(B)))),
        ("1", night("20180710"), night("20180720"), str(len(active_virus(A)))),
        ("3", night("20180720"), "open", str(len(active_virus(C)))),
    ]


def test_history_of_an_empty_store_says_how_to_start(initialised):
    run = admin(initialised, "history")
    assert run.status == 0
    assert version_lines(run) == []
    assert "fplane-admin import" in run.out


# -- verify -----------------------------------------------------------------------------

def test_verify_a_clean_store(two_versions):
    run = admin(two_versions, "verify")
    assert run.status == 0, run.err
    assert "store OK: 2 versions" in run.out


def test_verify_reports_what_dead_workers_left_in_tmp(two_versions):
    tmp = two_versions.parent / "spool" / "tmp"
    fresh = tmp / "0000000000000002.0123456789abcdef0123.0a0b0c0d"
    left = tmp / "0000000000000001.0123456789abcdef0123.deadbeef"
    for path in (fresh, left):
        path.write_bytes(b'{"update_id": "0123')   # half an update, never answered 100
    then = left.stat().st_mtime - 600
    os.utime(left, (then, then))
    run = admin(two_versions, "verify")
    assert run.status == 0, run.err   # harmless: nothing was accepted from them
    assert re.search(r"spool: 1 temporary files in \S+, left by web workers that stopped while "
                     r"writing them \(oldest 6\d\d s\)", run.out), run.out
    assert "the writer removes them once 3600 s old" in run.out


def tamper_with_a_row(config):
    db = sqlite3.connect(store_path(config))
    with db:
        db.execute("UPDATE configuration_rows SET specid = specid + 1 WHERE ifuslot = ?",
                   (FIRST_ACTIVE,))
    db.close()


def remove_spool_dir(config):
    (config.parent / "spool" / "new").rmdir()


@pytest.mark.parametrize("damage, problem", [
    (tamper_with_a_row, "problem: configuration 1: rows do not match their content hash"),
    (remove_spool_dir, "problem: spool directory new/ is missing"),
])
def test_verify_names_what_is_wrong(two_versions, damage, problem):
    damage(two_versions)
    run = admin(two_versions, "verify")
    assert run.status == 1
    assert problem in run.out
    assert "verify found" in run.err


# -- backup -----------------------------------------------------------------------------

def test_backup_is_a_consistent_copy_that_restores(two_versions, tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    target = backups / "fplane-backup.sqlite"

    run = admin(two_versions, "backup", target)

    assert run.status == 0, run.err
    assert sorted(p.name for p in backups.iterdir()) == ["fplane-backup.sqlite"]
    copy = Store.open_readonly(target)
    try:
        assert copy.integrity_problems() == []
        assert copy.history() == stored_history(two_versions)
    finally:
        copy.close()
    # Restoring: the copy as the data directory's store, init, verify.
    restored = write_config(tmp_path / "restored")
    (restored.parent / "data").mkdir()
    shutil.copy(target, store_path(restored))
    assert "ready" in admin(restored, "init").out
    assert admin(restored, "verify").status == 0
    assert admin(restored, "history").out == admin(two_versions, "history").out


def test_backup_into_a_missing_directory_is_refused(two_versions, tmp_path):
    target = tmp_path / "nowhere" / "copy.sqlite"
    run = admin(two_versions, "backup", target)
    assert run.status == 1
    assert "nowhere" in run.err and "no such directory" in run.err
    assert not target.parent.exists()


# -- what the tool says (issue 21) --------------------------------------------------------

def test_without_a_config_the_tool_names_both_ways_of_giving_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FPLANE_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "writer.admin", "history"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "-c config.ini" in proc.stderr and "FPLANE_CONFIG" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_counts_of_one_are_singular(initialised, tmp_path):
    import_rows(initialised, A, "20180701")
    assert "(schema" in admin(initialised, "init").out
    assert ", 1 version)" in admin(initialised, "init").out
    assert "store OK: 1 version," in admin(initialised, "verify").out
    run = admin(initialised, "backup", tmp_path / "copy.sqlite")
    assert "backup of 1 version written" in run.out
    bad = write_file(initialised, "one_problem.txt",
                     full_commented_text(A).replace("\n021\t", "\n021\tx\t", 1))
    run = admin(initialised, "import", bad, "--valid-from", "20180801")
    assert run.status == 1
    assert "(1 problem)" in run.err, run.err


def test_backup_never_replaces_an_existing_file_unless_forced(two_versions, tmp_path):
    target = tmp_path / "fplane-backup.sqlite"
    target.write_bytes(b"last week's backup")

    run = admin(two_versions, "backup", target)

    assert run.status == 1
    assert str(target) in run.err and "--force" in run.err
    assert target.read_bytes() == b"last week's backup"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    run = admin(two_versions, "backup", "--force", target)

    assert run.status == 0, run.err
    copy = Store.open_readonly(target)
    try:
        assert copy.history() == stored_history(two_versions)
    finally:
        copy.close()


def assert_columns_aligned(lines: list[str], header: str, names: list[str],
                           right: tuple[str, ...] = ()) -> None:
    """Every row keeps the gap before each header name blank, and its cell of a left-aligned
    column starts where the header's name does."""
    for name in names[1:]:
        start = header.index(name)
        for line in lines:
            assert line[start - 2:start] == "  ", (name, header, line)
            assert name in right or line[start] != " ", (name, header, line)


def test_history_columns_stay_aligned_whatever_the_values(initialised):
    import_rows(initialised, A, "20180701")
    # An instant with microseconds is wider than the rest; a comment may hold a newline.
    path = write_file(initialised, "b.txt", full_commented_text(B))
    run = admin(initialised, "import", path, "--valid-from", "2018-07-10T05:00:00.250000Z",
                "--comment", "seat lost its spectrograph\nforged line")
    assert run.status == 0, run.err

    lines = admin(initialised, "history").out.splitlines()

    header, rows = lines[0], lines[1:3]
    assert_columns_aligned(rows, header, ["version", "valid_from", "valid_until", "recorded_at",
                                          "IFUs", "station / source / comment"], right=("IFUs",))
    assert len(lines) == 3 and "forged line" in rows[1]


def test_held_columns_stay_aligned_whatever_the_values(two_versions):
    from wsgi.store import UpdateRecord
    store = Store.open_writable(store_path(two_versions))
    try:
        for n, (station, received) in enumerate((("tcs", 1530421200_000000),
                                                 ("astrometry-station-west", 1530421200_123456))):
            store.record_update(UpdateRecord(
                update_id=f"{n:020x}", kind="config", station=station, checksum="0" * 64,
                received_at=received, valid_from=1530421200_000000, remote_addr="127.0.0.1",
                payload="{}"), "held", received, reason=f"held reason {n}")
    finally:
        store.close()

    lines = admin(two_versions, "held").out.splitlines()

    header, rows = lines[0], lines[1:3]
    assert_columns_aligned(rows, header, ["update", "received_at", "valid_from", "station", "why held"])
    assert rows[1].endswith("held reason 1") and "astrometry-station-west" in rows[1]
