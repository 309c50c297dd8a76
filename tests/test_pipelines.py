"""Pipelines in bulk and offline (issue 20): get_fplane's cache, --batch, --fits and
--snapshot, and GET /snapshot, as a pipeline uses them: against the real app under uWSGI
on a free loopback port, with real cache directories, FITS files made here, and processes
running at once.

The history: five versions (June to October 2018) and three measured position sets that
start inside them, so measured answers change more often than nominal ones.
"""

import gzip
import json
import random
import re
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import webtest

from tests.fplane_samples import make_rows, measured_positions, status_from_rows, swap_ifus
from tests.support import REPO, add_station, import_rows, init_store, run_admin, update_form, write_config
from tests.test_deploy import running_uwsgi
from wsgi import fplane, snapshot
from wsgi.app import application
from wsgi.client import FplaneError, fplane_answer, get_fplane_main
from wsgi.client_cache import ENTRY_SUFFIX
from wsgi.fits_header import BLOCK, FitsError, exposure_instant_of

VERSION_STARTS = ("20180601", "20180701", "20180801", "20180901", "20181001")
POSITION_STARTS = (("20180615", [21, 22]), ("20180715", [23]), ("20180915", [24, 25]))
FIRST_DAY = datetime(2018, 6, 1, 6, tzinfo=timezone.utc)
LAST_DAY = datetime(2018, 11, 10, tzinfo=timezone.utc)


def build_history(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    config = write_config(directory)
    init_store(config)
    rows = make_rows()
    for i, start in enumerate(VERSION_STARTS):
        import_rows(config, rows, start, "--comment", f"version {i + 1}")
        rows = swap_ifus(rows, 30 + i, 40 + i)
    for start, slots in POSITION_STARTS:
        path = directory / f"positions-{start}.txt"
        path.write_text(fplane.render_fplane(make_rows(positions=measured_positions(slots)), (), full=False))
        status, _, err = run_admin(config, "import", str(path), "--valid-from", start, "--positions")
        assert status == 0, err
    return config


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("server")
    config = build_history(directory)
    with running_uwsgi(config, directory / "uwsgi.log") as (base, _):
        yield base, config, directory


@pytest.fixture(autouse=True)
def no_home_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.delenv("FPLANE_URL", raising=False)


def fplane_requests(directory: Path) -> list[str]:
    """The GET /fplane lines of the app's request log: what reached the app."""
    log = directory / "log" / "fplaneserver.log"
    return [line for line in log.read_text().splitlines() if " GET /fplane/" in line]


def random_date_obs(rng: random.Random, n: int) -> list[str]:
    span = (LAST_DAY - FIRST_DAY).total_seconds()
    return [(FIRST_DAY + timedelta(seconds=rng.uniform(0, span))).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            for _ in range(n)]


def server_get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def run(*argv) -> int:
    return get_fplane_main([str(a) for a in argv])


def table_rows(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["input", "instant", "version", "file", "source"]
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


# -- the batch and the cache -------------------------------------------------------------------

def test_a_batch_costs_one_download_per_answer_and_a_second_run_none(server, tmp_path):
    base, _, directory = server
    dates_obs = random_date_obs(random.Random(1), 400)
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(["# a night", *dates_obs, "not-a-date", "20170101", "20180715v012"]) + "\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    before = len(fplane_requests(directory))

    status = run("-u", base, "-p", "--batch", batch, "-o", out, "--table", tmp_path / "t1.tsv",
                 "--cache-dir", cache)

    assert status == 1   # two lines failed; all the others were answered
    rows = table_rows(tmp_path / "t1.tsv")
    assert len(rows) == 403
    failed = [r for r in rows if r["source"].startswith("error")]
    assert [r["input"] for r in failed] == ["not-a-date", "20170101"]
    assert failed[0]["source"].startswith("error: 301 ") and failed[1]["source"].startswith("error: 302 ")
    files = {r["file"] for r in rows if r not in failed}
    # 5 versions x the position sets met inside them: 8 measured answers over the span
    assert len(files) == 8 == len(list(out.iterdir()))
    assert len(fplane_requests(directory)) - before == 8 + 2
    # Every file is the server's answer to the first input that met it, byte for byte,
    # and every input's own answer has that file's version.
    first_input = {}
    for r in rows:
        if r not in failed:
            first_input.setdefault(r["file"], r["input"])
            assert Path(r["file"]).name.startswith(f"fplane_v{r['version']}_")
    for name, date in first_input.items():
        status_code, headers, body = server_get(f"{base}/fplane/{date}?actual_pos=1&full_fplane=1")
        assert Path(name).read_bytes() == body
    for r in rows[:40]:
        _, headers, _ = server_get(f"{base}/fplane/{r['input']}?actual_pos=1&full_fplane=1")
        assert headers["X-FPlane-Version"] == r["version"]
    shot = next(r for r in rows if r["input"] == "20180715v012")
    assert shot["instant"] == "2018-07-15T05:00:00Z"

    before = len(fplane_requests(directory))
    assert run("-u", base, "-p", "--batch", batch, "-o", out, "--table", tmp_path / "t2.tsv",
               "--cache-dir", cache) == 1
    again = table_rows(tmp_path / "t2.tsv")
    assert [(r["input"], r["version"], r["file"]) for r in again] == \
           [(r["input"], r["version"], r["file"]) for r in rows]
    assert {r["source"] for r in again if r not in failed and not r["source"].startswith("error")} == {"cache"}
    assert len(fplane_requests(directory)) - before == 2   # only the two failing lines asked


def test_an_expired_answer_is_revalidated_with_a_304(server, tmp_path):
    base, _, directory = server
    cache = tmp_path / "cache"
    first = fplane_answer("2018-07-20T03:00:00", url=base, cache_dir=cache)
    assert first.source == "server" and first.valid_until == "2018-08-01T05:00:00Z"
    for entry in cache.rglob(f"*{ENTRY_SUFFIX}"):   # a day and a minute later
        head, _, body = entry.read_bytes().partition(b"\n")
        meta = json.loads(head)
        meta["fetched_at"] -= 86400 + 60
        entry.write_bytes(json.dumps(meta).encode() + b"\n" + body)
    before = len(fplane_requests(directory))
    again = fplane_answer("2018-07-21T03:00:00", url=base, cache_dir=cache, timeout=10.5)
    assert again.source == "cache (revalidated)"
    new = fplane_requests(directory)[before:]
    assert len(new) == 1 and " 100 304 " in new[0]
    later = fplane_answer("2018-07-22", url=base, cache_dir=cache, timeout=10.5)
    assert later.source == "cache"
    # A kept file is what the server serves for the instant asked now, first line included.
    for when, answer in (("2018-07-21T03:00:00", again), ("2018-07-22", later)):
        status, _, served = server_get(f"{base}/fplane/{when}?actual_pos=0&full_fplane=1")
        assert status == 200 and answer.text == served.decode("utf-8")
        assert answer.text.splitlines()[1:] == first.text.splitlines()[1:]


def test_many_processes_share_one_cache_directory(server, tmp_path):
    base, _, directory = server
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(random_date_obs(random.Random(2), 300)) + "\n")
    cache = tmp_path / "shared-cache"
    command = [sys.executable, "-m", "wsgi.client", "-u", base, "--batch", str(batch),
               "--cache-dir", str(cache)]
    outs = []
    for i in range(6):
        (tmp_path / f"out{i}").mkdir()
        outs.append(subprocess.Popen([*command, "-o", str(tmp_path / f"out{i}")], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=120) + (p.returncode,) for p in outs]
    assert all(code == 0 for _, _, code in results), [err for _, err, _ in results]
    tables = [[line.split("\t")[:3] for line in out.splitlines()] for out, _, _ in results]
    assert all(t == tables[0] for t in tables)
    versions = {row[2] for row in tables[0][1:]}
    assert versions == {"1", "2", "3", "4", "5"}
    entries = list(cache.rglob(f"*{ENTRY_SUFFIX}"))
    assert len(entries) == 5 and not list(cache.rglob("*.tmp"))
    for i in range(6):
        assert sorted(p.name for p in (tmp_path / f"out{i}").iterdir()) == \
               [f"fplane_v{v}.txt" for v in range(1, 6)]


def test_a_corrupt_cache_entry_is_ignored_and_replaced(server, tmp_path):
    base, _, directory = server
    cache = tmp_path / "cache"
    good = fplane_answer("2018-08-10T04:00:00", url=base, cache_dir=cache)
    [entry] = cache.rglob(f"*{ENTRY_SUFFIX}")
    damaged = entry.read_bytes().replace(b"\n# IFUSLOT", b"\n# IFUSLOX", 1)
    entry.write_bytes(damaged)
    # a fresh process (a new client) reads the directory again
    again = fplane_answer("2018-08-11T04:00:00", url=base, cache_dir=cache, timeout=11.5)
    assert again.source == "server" and again.text.split("\n", 1)[1] == good.text.split("\n", 1)[1]
    assert b"IFUSLOX" not in entry.read_bytes()
    assert fplane_answer("2018-08-12", url=base, cache_dir=cache, timeout=12.5).source == "cache"


def test_a_full_cache_drops_its_oldest_entries(server, tmp_path):
    base, _, _ = server
    cache = tmp_path / "cache"
    for i, date in enumerate(("20180610", "20180710", "20180810", "20180910", "20181010")):
        assert run("-u", base, "-o", tmp_path / f"f{i}.txt", "--cache-dir", cache,
                   "--cache-max", "20K", date) == 0
    names = sorted(p.name for p in cache.rglob(f"*{ENTRY_SUFFIX}"))
    assert 0 < len(names) < 5 and sum(p.stat().st_size for p in cache.rglob(f"*{ENTRY_SUFFIX}")) <= 20 * 1024
    assert any(n.startswith("v5-") for n in names) and not any(n.startswith("v1-") for n in names)


def test_the_server_stopped_halfway(tmp_path):
    config = build_history(tmp_path / "site")
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    with running_uwsgi(config, tmp_path / "uwsgi.log") as (base, _):
        assert run("-u", base, "--cache-dir", cache, "-o", tmp_path / "june.txt", "20180615") == 0
        assert run("-u", base, "--cache-dir", cache, "-o", tmp_path / "aug.txt", "20180815") == 0
    # stopped: instants inside cached intervals are still answered, the others fail alone
    batch = tmp_path / "batch.txt"
    batch.write_text("2018-06-20T03:00:00\n2018-07-20T03:00:00\n2018-08-20T03:00:00\n")
    assert run("-u", base, "--cache-dir", cache, "--batch", batch, "-o", out,
               "--table", tmp_path / "t.tsv", "--timeout", "5") == 1
    rows = table_rows(tmp_path / "t.tsv")
    assert [(r["version"], r["source"]) for r in rows[::2]] == [("1", "cache"), ("3", "cache")]
    assert rows[1]["version"] == "-" and rows[1]["source"].startswith("error: get_fplane: cannot get ")
    june, kept = (tmp_path / "june.txt").read_text(), (out / "fplane_v1.txt").read_text()
    assert kept.splitlines()[1:] == june.splitlines()[1:]   # the same file, written for its instant
    assert "(asked for: 2018-06-20T03:00:00)" in kept.splitlines()[0]
    assert sorted(p.name for p in out.iterdir()) == ["fplane_v1.txt", "fplane_v3.txt"]


# -- FITS headers --------------------------------------------------------------------------------

def fits_bytes(cards: dict) -> bytes:
    """A minimal FITS file: the primary header (cards, END) padded to a block, no data."""
    def card(key, value):
        text = f"'{value}'" if isinstance(value, str) else str(value)
        return f"{key:<8}= {text:>20}".ljust(80)
    lines = [card("SIMPLE", "T").replace("'T'", "  T"), card("BITPIX", 8), card("NAXIS", 0)]
    lines += [card(k, v) for k, v in cards.items()] + ["END".ljust(80)]
    header = "".join(lines).encode("ascii")
    return header + b" " * (-len(header) % BLOCK)


def test_fits_headers_give_the_instants(tmp_path):
    (tmp_path / "a.fits").write_bytes(fits_bytes({"DATE-OBS": "2018-07-15", "UT": "05:12:34.5678901"}))
    (tmp_path / "b.fits.gz").write_bytes(gzip.compress(fits_bytes({"DATE-OBS": "2018-07-15T06:00:01.5"})))
    (tmp_path / "c.fits").write_bytes(fits_bytes({"DATE-OBS": "2018-07-15", "TIME-OBS": "07:00:00"}))
    assert exposure_instant_of(tmp_path / "a.fits") == "2018-07-15T05:12:34.567890"
    assert exposure_instant_of(tmp_path / "b.fits.gz") == "2018-07-15T06:00:01.5"
    assert exposure_instant_of(tmp_path / "c.fits") == "2018-07-15T07:00:00"
    (tmp_path / "d.fits").write_bytes(fits_bytes({"OBJECT": "no date"}))
    (tmp_path / "e.fits").write_bytes(b"not a fits file at all" * 200)
    (tmp_path / "f.fits").write_bytes(fits_bytes({"DATE-OBS": "2018-07-15"}))
    for name, why in (("d.fits", "no DATE-OBS"), ("e.fits", "not a FITS file"),
                      ("f.fits", "has no time"), ("missing.fits", "cannot read it")):
        with pytest.raises(FitsError, match=why):
            exposure_instant_of(tmp_path / name)


def test_get_fplane_fits(server, tmp_path):
    base, _, _ = server
    night = tmp_path / "night"
    night.mkdir()
    for i, ut in enumerate(("05:00:00", "06:30:00", "09:00:00")):
        (night / f"exp{i}.fits").write_bytes(fits_bytes({"DATE-OBS": "2018-08-03", "UT": ut}))
    (night / "broken.fits").write_bytes(b"SIMPLE" + b"\0" * 100)
    out = tmp_path / "out"
    out.mkdir()
    status = run("-u", base, "--fits", *sorted(night.iterdir()), "-o", out, "--table", tmp_path / "t.tsv")
    assert status == 1
    rows = table_rows(tmp_path / "t.tsv")
    assert [r["version"] for r in rows] == ["-", "3", "3", "3"]
    assert rows[0]["input"].endswith("broken.fits") and "not a FITS file" in rows[0]["source"]
    assert rows[1]["instant"] == "2018-08-03T05:00:00Z"


# -- snapshots -----------------------------------------------------------------------------------

def fetch_snapshot(base: str, target: Path, etag: str | None = None):
    request = urllib.request.Request(f"{base}/snapshot", headers={"If-None-Match": etag} if etag else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            target.write_bytes(response.read())
            return response.status, response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


def test_snapshot_answers_byte_for_byte_as_the_server(server, tmp_path):
    base, config, directory = server
    status, headers = fetch_snapshot(base, tmp_path / "snap.sqlite")
    assert status == 200 and headers["Content-Type"] == snapshot.CONTENT_TYPE
    assert re.fullmatch(r'"v5-p3-\d{8}T\d{6}\.\d{6}Z"', headers["ETag"])
    assert fetch_snapshot(base, tmp_path / "unused", headers["ETag"])[0] == 304
    # the instants at which the history was recorded: known_at between them sees part of it
    status, history, _ = run_admin(config, "history")
    recorded = sorted(set(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", history)))
    rng = random.Random(3)
    forms = [lambda d: d.strftime("%Y%m%d"), lambda d: d.strftime("%Y-%m-%dT%H:%M:%S"),
             lambda d: d.strftime("%Y%m%dv012"), lambda d: d.strftime("%Y-%m-%d"),
             lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-2] + "Z"]
    compared = refused = 0
    for date_obs in random_date_obs(rng, 150):
        when = rng.choice(forms)(datetime.fromisoformat(date_obs))
        actual, full = rng.choice((True, False)), rng.choice((True, False))
        known_at = rng.choice([None, None, *recorded, "2018-01-01"])
        query = f"actual_pos={int(actual)}&full_fplane={int(full)}" + (f"&known_at={known_at}" if known_at else "")
        code, headers, body = server_get(f"{base}/fplane/{when}?{query}")
        try:
            answer = fplane_answer(when, actual=actual, full=full, known_at=known_at,
                                   snapshot=tmp_path / "snap.sqlite")
        except FplaneError as err:
            assert code != 200 and str(err) == body.decode().splitlines()[0] and err.code == int(headers["X-FPlane-Code"])
            refused += 1
            continue
        assert code == 200 and answer.text.encode() == body, (when, query)
        assert (str(answer.version), answer.valid_from, answer.valid_until or "open") == (
            headers["X-FPlane-Version"], headers["X-FPlane-Valid-From"], headers["X-FPlane-Valid-Until"])
        assert answer.source.startswith(f"snapshot {tmp_path / 'snap.sqlite'} (v5-p3-")
        compared += 1
    assert compared > 100 and refused > 0


def test_snapshot_batch_from_get_fplane_matches_the_server(server, tmp_path):
    base, config, _ = server
    assert run_admin(config, "snapshot", str(tmp_path / "snap.sqlite"))[0] == 0
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(random_date_obs(random.Random(4), 200)) + "\n")
    for name, source in (("server", ("-u", base, "--no-cache")), ("snap", ("--snapshot", tmp_path / "snap.sqlite"))):
        (tmp_path / name).mkdir()
        assert run(*source, "-p", "-s", "--batch", batch, "-o", tmp_path / name,
                   "--table", tmp_path / f"{name}.tsv") == 0
    server_rows, snap_rows = table_rows(tmp_path / "server.tsv"), table_rows(tmp_path / "snap.tsv")
    assert [(r["instant"], r["version"], Path(r["file"]).name) for r in server_rows] == \
           [(r["instant"], r["version"], Path(r["file"]).name) for r in snap_rows]
    assert {r["source"] for r in server_rows} == {"server"}
    for path in (tmp_path / "server").iterdir():
        assert (tmp_path / "snap" / path.name).read_bytes() == path.read_bytes()


def test_a_truncated_or_foreign_snapshot_answers_nothing(server, tmp_path, capsys):
    base, config, _ = server
    fetch_snapshot(base, tmp_path / "snap.sqlite")
    whole = (tmp_path / "snap.sqlite").read_bytes()
    (tmp_path / "cut.sqlite").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "text.sqlite").write_text("# IFUSLOT X_FP\n")
    (tmp_path / "backup.sqlite").unlink(missing_ok=True)
    assert run_admin(config, "backup", str(tmp_path / "backup.sqlite"))[0] == 0
    for name, why in (("cut.sqlite", "truncated"), ("text.sqlite", "not a snapshot"),
                      ("backup.sqlite", "not an fplane snapshot"), ("missing.sqlite", "cannot read it")):
        capsys.readouterr()
        assert run("--snapshot", tmp_path / name, "-o", tmp_path / "f.txt", "20180707") == 1
        err = capsys.readouterr().err
        assert err.startswith(f"get_fplane: {tmp_path / name}: ") and why in err and err.count("\n") == 1
        assert not (tmp_path / "f.txt").exists()
        with pytest.raises(FplaneError, match=why):
            fplane_answer("20180707", snapshot=tmp_path / name)


def test_get_snapshot_holds_no_updates_and_refreshes_only_on_change(tmp_path, monkeypatch):
    config = build_history(tmp_path)
    password = add_station(config, "tcs")
    app = webtest.TestApp(partial(application, configfile=str(config)))
    status = status_from_rows(swap_ifus(make_rows(), 50, 51), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    form = update_form("tcs", password, {"config": status, "commit": True})
    app.post("/fplane", form, extra_environ={"REMOTE_ADDR": "192.0.2.99"})
    subprocess.run([sys.executable, "-m", "writer.loop", "-c", str(config), "--once"], cwd=REPO,
                   check=True, capture_output=True, timeout=60)
    monkeypatch.setattr(snapshot, "REBUILD_INTERVAL_S", 0.0)
    first = app.get("/snapshot")
    (tmp_path / "snap.sqlite").write_bytes(first.body)
    raw = (tmp_path / "snap.sqlite").read_bytes()
    assert password.encode() not in raw and b"192.0.2.99" not in raw and b"spectrographs" not in raw
    assert first.headers["ETag"].startswith('"v6-p3-')
    assert fplane_answer("now", snapshot=tmp_path / "snap.sqlite").version == 6
    app.get("/snapshot", headers={"If-None-Match": first.headers["ETag"]}, status=304)
    app.get("/snapshot", headers={"If-Modified-Since": first.headers["Last-Modified"]}, status=304)
    import_rows(config, make_rows(), "20190101")
    second = app.get("/snapshot", headers={"If-None-Match": first.headers["ETag"]}, status=200)
    assert second.headers["ETag"].startswith('"v7-p3-')


# -- the README's example ------------------------------------------------------------------------

def readme_pipeline_example() -> str:
    text = (REPO / "README").read_text()
    section = text[text.index("## Using it from a pipeline"):]
    section = section[:section.index("\n## ", 1)]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_pipeline_example_runs(server, tmp_path):
    base, _, _ = server
    night = tmp_path / "raw" / "20180715"
    night.mkdir(parents=True)
    for i, ut in enumerate(("03:10:00", "04:20:00.5", "05:30:00", "08:45:10")):
        data = fits_bytes({"DATE-OBS": "2018-07-15", "UT": ut})
        if i % 2:
            (night / f"exp{i:02d}.fits.gz").write_bytes(gzip.compress(data))
        else:
            (night / f"exp{i:02d}.fits").write_bytes(data)
    (tmp_path / "example.py").write_text(readme_pipeline_example())
    env = {"FPLANE_URL": base, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [line[0] for line in lines] == ["exp00.fits", "exp01.fits.gz", "exp02.fits", "exp03.fits.gz"]
    assert [line[1:3] for line in lines] == [["2018-07-15T03:10:00Z", "2"], ["2018-07-15T04:20:00.5Z", "2"],
                                              ["2018-07-15T05:30:00Z", "2"], ["2018-07-15T08:45:10Z", "2"]]
    assert [line[4] for line in lines] == ["server", "cache", "cache", "cache"]
    _, _, body = server_get(f"{base}/fplane/2018-07-15T03:10:00?actual_pos=0&full_fplane=1")
    assert (tmp_path / "fplanes" / "fplane_v2.txt").read_bytes() == body


# -- https: certificates are verified, --cacert names a site CA ---------------------------------

@pytest.fixture
def tls_server(server, tmp_path):
    """The app behind a TLS listener whose certificate (for 127.0.0.1) no system CA signed."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl (Debian package openssl) is needed to make a test certificate"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    _, config, _ = server
    httpd = make_server("127.0.0.1", 0, partial(application, configfile=str(config)), handler_class=Quiet)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_port}", cert
    httpd.shutdown()
    httpd.server_close()


def test_https_certificates_are_verified_and_cacert_trusts_a_site_ca(tls_server, tmp_path, capsys):
    url, cert = tls_server
    assert run("-u", url, "--no-cache", "-o", tmp_path / "f.txt", "20180707") == 1
    assert "certificate not trusted" in capsys.readouterr().err and not (tmp_path / "f.txt").exists()
    assert run("-u", url, "--no-cache", "--cacert", cert, "-o", tmp_path / "f.txt", "20180707") == 0
    assert (tmp_path / "f.txt").read_text().startswith("# fplane file of the HET/VIRUS focal plane at 2018-07-07")
    assert fplane_answer("20180707", url=url, cache=False, cafile=cert).version == 2
