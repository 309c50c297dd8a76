"""The system API: /sys, /sys/config, /sys/stats and /health, through WebTest and under
uWSGI, and the request counters that several worker processes share."""

import json
import os
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.fplane_samples import make_rows
from tests.support import (REPO, add_station, import_rows, init_store, test_app,
                           write_config)
from tests.test_deploy import running_uwsgi
from wsgi import dates
from wsgi.config import SETTINGS as config_schema
from wsgi.config import load_config
from wsgi.heartbeat import write_heartbeat
from wsgi.spool import Spool, SpooledUpdate

UWSGI_INI = REPO / "examples" / "uwsgi.ini"


@pytest.fixture
def config(tmp_path):
    config = write_config(tmp_path)
    init_store(config)
    import_rows(config, make_rows(), "20180601", "--comment", "first light")
    return config


@pytest.fixture
def app(config):
    return test_app(config)


def beat(config, age: float = 0.0, state: str = "idle") -> None:
    """A heartbeat as fplane-writer writes it, ``age`` seconds old."""
    at = datetime.fromtimestamp(time.time() - age, timezone.utc)
    write_heartbeat(config.parent / "data", {
        "pid": 4242, "beat_at": dates.format_instant(at), "beat_at_unix": at.timestamp(),
        "started_at": dates.format_instant(at), "state": state, "backlog": 0,
        "committed": 3, "unchanged": 0, "held": 0, "duplicates": 0, "failed": 0})


def as_json(app, path, status=200):
    return app.get(path, {"format": "json"}, status=status).json


# -- /sys ------------------------------------------------------------------------------

def test_sys_links_to_the_system_answers_in_text_and_json(app):
    text = app.get("/sys")
    assert text.content_type == "text/plain" and text.headers["X-FPlane-Code"] == "100"
    assert text.text.startswith("100 ")
    for path in ("/sys/config", "/sys/stats", "/health"):
        assert path in text.text
    links = app.get("/sys/", headers={"Accept": "application/json"}).json["links"]
    assert [link["href"] for link in links] == ["/sys/config", "/sys/stats", "/health"]


@pytest.mark.parametrize("path", ["/sys", "/sys/config", "/sys/stats", "/health"])
def test_system_answers_are_never_cached_and_refuse_a_bad_format(app, config, path):
    beat(config)
    for response in (app.get(path), app.get(path, {"format": "json"}), app.head(path)):
        assert response.headers["Cache-Control"] == "no-store"
    refused = app.get(path, {"format": "xml"}, status=400)
    assert refused.headers["X-FPlane-Code"] == "306"


def test_index_names_the_system_answers(app):
    text = app.get("/", {"format": "txt"}).text  # the plain-text summary of the API
    assert all(path in text for path in ("GET /sys ", "GET /sys/config", "GET /sys/stats", "GET /health"))


# -- /sys/config -----------------------------------------------------------------------

def test_config_shows_the_effective_values(tmp_path):
    config = write_config(tmp_path, Writer={"sleep": "2.5"}, Server={"cors_origins": "https://a.example"},
                          Notify={"recipients": "ops@example.org"})
    init_store(config)
    app = test_app(config)
    document = as_json(app, "/sys/config")
    assert document["config_file"] == str(config)
    assert document["store_file"] == str(tmp_path / "data" / "fplane.sqlite")
    assert document["General"]["data_dir"] == str(tmp_path / "data")
    assert document["General"]["loglevel"] == "INFO"
    assert document["Site"]["timezone"] == "America/Chicago"
    assert document["Site"]["static_rows_count"] == len(load_config(config).static_rows) > 1
    assert document["Writer"] == {"sleep": 2.5, "max_attempts": 3}
    assert document["Update"] == {"max_age": 21600, "max_future": 600}
    assert document["Server"]["cors_origins"] == ["https://a.example"]
    assert document["Notify"]["recipients"] == ["ops@example.org"]

    text = app.get("/sys/config").text
    assert text.startswith("100 OK\n")
    assert "[Writer]\nsleep = 2.5  ; seconds\n" in text
    assert "timezone = America/Chicago\n" in text
    rows = len(load_config(config).static_rows)
    assert f"static_rows = {REPO / 'examples' / 'static_rows.txt'}  ; {rows} rows\n" in text


def test_config_lists_every_setting_of_config_ini(app):
    document = as_json(app, "/sys/config")
    for setting in config_schema:  # every key config.ini may hold
        assert setting.key in document[setting.section], setting


def test_config_never_shows_a_password_or_its_hash(app, config):
    password = add_station(config, "tcs", "config;positions")
    add_station(config, "astrometry", "positions")
    lines = (config.parent / "station_list.csv").read_text().splitlines()[1:]
    hashes = [line.rsplit(",", 1)[1] for line in lines]
    assert len(hashes) == 2 and all(h.startswith("scrypt$") for h in hashes)

    for response in (app.get("/sys/config"), app.get("/sys/config", {"format": "json"})):
        assert password not in response.text
        assert "scrypt" not in response.text and not any(h in response.text for h in hashes)
        assert not any(part in response.text for h in hashes for part in h.split("$")[4:])
    stations = as_json(app, "/sys/config")["stations"]
    assert stations == {"count": 2, "problems": 0, "stations": [
        {"station_id": "astrometry", "roles": ["positions"]},
        {"station_id": "tcs", "roles": ["config", "positions"]}]}
    assert "tcs = config;positions\n" in app.get("/sys/config").text


# -- /sys/stats ------------------------------------------------------------------------

def test_stats_counts_every_response_by_code_and_status(app):
    before = as_json(app, "/sys/stats")["requests"]
    etag = app.get("/fplane/20180707").headers["ETag"]
    app.get("/fplane/20180707", headers={"If-None-Match": etag}, status=304)
    app.head("/fplane/20180707")
    app.get("/fplane/garbage", status=400)
    app.get("/nothing/here", status=404)
    app.get("/nothing/here", {"format": "json"}, status=404)

    after = as_json(app, "/sys/stats")["requests"]
    # the first stats request is counted, the one answering is not yet
    assert after["total"] == before["total"] + 7
    grew = {key: n - before["by_code"].get(key, 0) for key, n in after["by_code"].items()}
    assert grew == {"100": 4, "301": 1, "303": 2}
    grew = {key: n - before["by_status"].get(key, 0) for key, n in after["by_status"].items()}
    assert grew == {"200": 3, "304": 1, "400": 1, "404": 2}
    assert after["scope"] == "this process" and str(os.getpid()) in after["note"]


def test_stats_describe_process_store_spool_and_writer(app, config):
    spool = Spool(config.parent / "spool")
    update = SpooledUpdate(update_id="a" * 20, kind="config", station="tcs", checksum="0" * 64,
                           received_at=1, valid_from=1, data="{}")
    spool.enqueue(update)
    spool.give_up(spool.claim(update.name), "a test failure")
    spool.enqueue(SpooledUpdate(**{**update.__dict__, "update_id": "b" * 20, "received_at": 2}))
    beat(config, age=2)
    app.get("/")

    stats = as_json(app, "/sys/stats")
    assert stats["pid"] == os.getpid()
    assert 0 <= stats["uptime_s"] < 60 and stats["started_at"].endswith("Z")
    store = stats["store"]
    sqlite_size = (config.parent / "data" / "fplane.sqlite").stat().st_size
    assert store["files"]["fplane.sqlite"] == sqlite_size and store["size_bytes"] >= sqlite_size
    assert store["newest_version"]["version"] == 1
    assert store["newest_version"]["valid_from"] == "2018-06-01T05:00:00Z"
    assert store["problem"] is None
    assert stats["spool"] == {"backlog": 1, "failed": 1}
    writer = stats["writer"]
    assert writer["heartbeat"]["pid"] == 4242 and writer["heartbeat"]["state"] == "idle"
    assert 2 <= writer["age_s"] < 10 and writer["problem"] is None
    this = stats["resources"]["this_worker"]
    assert this["pid"] == os.getpid() and this["utime_s"] > 0 and this["maxrss_kib"] > 0
    [slot] = stats["resources"]["workers"]
    assert slot["pid"] == os.getpid() and slot["requests"] == stats["requests"]["total"]

    text = app.get("/sys/stats").text
    assert text.startswith("100 OK\n")
    for expected in ("scope: this process", "newest version 1 valid from 2018-06-01T05:00:00Z",
                     "spool: 1 waiting, 1 failed", "writer: heartbeat 2.", "writer committed: 3",
                     f"this worker: pid {os.getpid()}", "store size: "):
        assert expected in text


def test_stats_answer_when_the_store_is_missing(tmp_path):
    config = write_config(tmp_path)
    app = test_app(config)
    stats = as_json(app, "/sys/stats")
    assert stats["store"]["problem"] == "there is no store file (fplane-admin init makes it)"
    assert stats["writer"]["problem"] == "no writer heartbeat: has fplane-writer ever run?"
    assert "store: unavailable: there is no store file" in app.get("/sys/stats").text
    assert as_json(app, "/sys/config")["stations"]["count"] == 0
    # the file itself is still refused as before
    assert app.get("/fplane/20180707", status=503).headers["X-FPlane-Code"] == "401"


# -- /health ---------------------------------------------------------------------------

def test_health_is_503_without_a_heartbeat(app):
    response = app.get("/health", status=503)
    assert response.headers["X-FPlane-Code"] == "401"
    assert response.text.startswith("401 not healthy: no writer heartbeat: has fplane-writer ever run?\n")
    document = app.get("/health", headers={"Accept": "application/json"}, status=503).json
    assert document["code"] == 401
    assert document["errors"] == ["no writer heartbeat: has fplane-writer ever run?"]
    assert document["checks"]["store"].startswith("readable, newest version 1")


def test_health_is_503_with_a_stale_heartbeat(app, config):
    beat(config, age=95)
    response = app.get("/health", status=503)
    assert response.headers["X-FPlane-Code"] == "401"
    assert response.text.splitlines()[0] == \
        "401 not healthy: writer heartbeat is 95 s old (fresh means at most 30 s)"


def test_health_is_200_with_a_fresh_heartbeat(app, config):
    beat(config, age=1)
    response = app.get("/health")
    assert response.headers["X-FPlane-Code"] == "100"
    assert response.text.startswith("100 healthy\n")
    assert "writer: heartbeat 1." in response.text and "pid 4242, idle" in response.text
    document = as_json(app, "/health")
    assert document["code"] == 100 and document["errors"] == []


def test_health_freshness_follows_the_writer_sleep(tmp_path):
    # fresh means at most max(3 x [Writer] sleep, 30 s): here 60 s
    config = write_config(tmp_path, Writer={"sleep": "20"})
    init_store(config)
    app = test_app(config)
    beat(config, age=45)
    app.get("/health", status=200)
    beat(config, age=65)
    assert "heartbeat is 65 s old (fresh means at most 60 s)" in app.get("/health", status=503).text


def test_health_is_503_when_the_writer_stopped_or_waits_for_the_store(app, config):
    beat(config, state="stopped")
    assert "the writer stopped at " in app.get("/health", status=503).text
    beat(config, state="waiting for the store: the store cannot be read")
    assert "the writer is waiting for the store" in app.get("/health", status=503).text


def test_health_is_503_when_the_store_is_missing(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "data").mkdir()
    beat(config, age=1)
    document = as_json(test_app(config), "/health", status=503)
    assert document["code"] == 401
    assert document["errors"][0] == \
        "store unavailable: there is no store file (fplane-admin init makes it)"
    assert any("spool directory new/ is missing" in error for error in document["errors"])
    assert str(tmp_path) not in json.dumps(document)


def test_health_notices_a_store_file_removed_under_an_open_connection(app, config):
    beat(config)
    app.get("/health", status=200)
    (config.parent / "data" / "fplane.sqlite").rename(config.parent / "elsewhere.sqlite")
    assert "store unavailable: there is no store file" in app.get("/health", status=503).text


# -- under uWSGI -----------------------------------------------------------------------

def _get_json(url: str):
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _send(base: str, paths, threads: int = 8) -> None:
    failures = []

    def run(share):
        for path in share:
            try:
                urllib.request.urlopen(base + path, timeout=30).read()
            except urllib.error.HTTPError as err:
                err.read()
            except Exception as err:  # noqa: BLE001 - reported below
                failures.append(repr(err))

    workers = [threading.Thread(target=run, args=(paths[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures


def ini_variant(directory, lines: dict[str, str]) -> Path:
    """examples/uwsgi.ini with whole lines replaced ({old line: new line(s)}). %d (the ini's
    directory) is spelled out, since the copy lives elsewhere; every other line means what
    it means in the original."""
    text = UWSGI_INI.read_text().replace("%d", str(UWSGI_INI.parent))
    for old, new in lines.items():
        assert text.count(f"\n{old}\n") == 1, old
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    path = directory / "uwsgi-variant.ini"
    path.write_text(text)
    return path


def settled_stats(base: str) -> dict:
    """/sys/stats once nothing but these requests is counted any more: a start-up probe
    that timed out may still be answered after the first look."""
    _, stats = _get_json(f"{base}/sys/stats")
    while True:
        _, again = _get_json(f"{base}/sys/stats")
        if again["requests"]["total"] == stats["requests"]["total"] + 1:
            return again
        stats = again


@contextmanager
def uwsgi_serving(tmp_path, ini, apps: int = 1):
    """uWSGI on a free port, serving once ``apps`` processes have loaded the app (1: the
    master; with lazy-apps each of the 4 workers loads it, slowly on a busy machine, and a
    stop while one is still loading ends uWSGI with need-app's failure status)."""
    config = write_config(tmp_path, Writer={"sleep": "1"})
    init_store(config)
    import_rows(config, make_rows(), "20180601")
    log = tmp_path / "uwsgi.log"
    with running_uwsgi(config, log, ini) as (base, process):
        deadline = time.monotonic() + 60
        while log.read_text().count("WSGI app 0 (mountpoint='') ready") < apps:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base, log


def test_under_uwsgi_stats_count_every_worker_across_respawns_and_health_is_200(tmp_path):
    # examples/uwsgi.ini (4 workers), with each worker recycled after 40 to 43 requests
    # instead of ~5000, once it is 2 s old (uWSGI's default: 10 s; at 1 s, uWSGI may call
    # a respawn "too fast" and stall)
    ini = ini_variant(tmp_path, lines={"max-requests = 5000": "max-requests = 40",
                                       "max-requests-delta = 100": "max-requests-delta = 1\n"
                                                                   "min-worker-lifetime = 2"})
    with uwsgi_serving(tmp_path, ini) as (base, log):
        before = settled_stats(base)
        # 180 requests: some worker answers more than 43 and is recycled at its next request
        first = ["/fplane/20180707?actual_pos=0&full_fplane=1"] * 130 + ["/nothing/here"] * 50
        _send(base, first)
        time.sleep(2.1)  # the workers are now old enough to be recycled
        second = ["/fplane/20180707?actual_pos=0&full_fplane=1"] * 20 + ["/nothing/here"] * 20
        _send(base, second)
        deadline = time.monotonic() + 15  # the master replaces a recycled worker within ~1 s
        while "Respawned uWSGI worker" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        third = ["/fplane/20180707?actual_pos=0&full_fplane=1"] * 40  # successors answer too
        _send(base, third)
        _, after = _get_json(f"{base}/sys/stats")

        # the attached writer beats: healthy within a few seconds of start-up
        deadline = time.monotonic() + 20
        while (health := _get_json(f"{base}/health"))[0] != 200:
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        assert health[1]["code"] == 100 and health[1]["errors"] == []

    respawned = log.read_text().count("Respawned uWSGI worker")
    requests = after["requests"]
    assert requests["scope"] == "all workers"
    assert requests["total"] == before["requests"]["total"] + 1 + len(first) + len(second) + len(third)
    assert requests["by_code"]["100"] == before["requests"]["by_code"]["100"] + 1 + 130 + 20 + 40
    assert requests["by_code"]["303"] == 70 and requests["by_status"]["404"] == 70
    workers = after["resources"]["workers"]
    assert len(workers) >= 2, workers  # eight connections at once keep several workers busy
    assert len({w["pid"] for w in workers}) == len(workers)
    assert all(1 <= w["slot"] <= 4 for w in workers)
    assert sum(w["requests"] for w in workers) == requests["total"]
    # workers were replaced, yet nothing they counted was lost (the totals above), and
    # their successors took over their slots (a successor that has not answered yet has
    # not claimed its slot)
    assert respawned >= 1
    assert 1 <= sum(w["processes"] - 1 for w in workers) <= respawned


def test_stats_under_uwsgi_with_lazy_apps_say_per_worker(tmp_path):
    ini = ini_variant(tmp_path, lines={"lazy-apps = false": "lazy-apps = true"})
    with uwsgi_serving(tmp_path, ini, apps=4) as (base, _):
        _send(base, ["/"] * 40)
        _, stats = _get_json(f"{base}/sys/stats")
    assert stats["requests"]["scope"] == "this worker"
    assert "lazy-apps" in stats["requests"]["note"]
    assert [w["pid"] for w in stats["resources"]["workers"]] == [stats["pid"]]
