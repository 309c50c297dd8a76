"""The web app through WebTest: the very partial examples/application.wsgi builds, a real
store made and filled by the real fplane-admin, real config.ini files in tmp_path."""

import os
import sqlite3
from datetime import datetime, timezone
from email.utils import formatdate
from zoneinfo import ZoneInfo

import pytest

from tests.fplane_samples import make_rows, measured_positions, strict_fplane_parse, swap_ifus
from tests.support import import_rows, init_store, run_admin, test_app, write_config
from wsgi import app as wsgi_app
from wsgi import fplane, logs
from wsgi.dates import night_label
from wsgi.fplane import VIRUS_SLOTS, parse_fplane



FIRST = make_rows()
SECOND = swap_ifus(FIRST, 21, 24)


@pytest.fixture
def config(tmp_path):
    config = write_config(tmp_path)
    init_store(config)
    import_rows(config, FIRST, "20180601", "--comment", "first light")
    import_rows(config, SECOND, "20180801", "--comment", "IFU swap")
    return config


@pytest.fixture
def app(config):
    return test_app(config)


def served_rows(text):
    return parse_fplane(text).rows


def data_lines(text):
    return [line for line in text.splitlines() if not line.startswith("# ")]


# -- the original client's URL --------------------------------------------------------

@pytest.mark.parametrize("actual", ["0", "1"])
@pytest.mark.parametrize("full", ["0", "1"])
def test_original_client_url_is_served_and_strictly_parseable(app, actual, full):
    response = app.get(f"/fplane/20180707?actual_pos={actual}&full_fplane={full}")
    assert response.status_int == 200
    assert response.headers["X-FPlane-Code"] == "100"
    assert response.content_type == "text/plain"
    rows = strict_fplane_parse(response.text)
    assert "000" in rows
    active_virus = {f"{r.ifuslot:03d}" for r in FIRST if r.active and r.ifuslot in VIRUS_SLOTS}
    if full == "0":
        assert set(rows) == {"000"} | active_virus
    else:
        assert active_virus < set(rows) and {"056", "066"} <= set(rows)


def test_full_file_rows_are_the_imported_rows(app):
    text = app.get("/fplane/20180707?actual_pos=0&full_fplane=1").text
    assert served_rows(text) == fplane.canonical_order(FIRST)
    assert data_lines(text)[1:] == data_lines(fplane.render_fplane(FIRST, (), full=True))[1:]
    assert text.endswith("\n") and "\n\n" not in text


def test_header_comments_state_instant_version_validity_and_positions(app):
    text = app.get("/fplane/20180707").text
    header = [line for line in text.splitlines() if line.startswith("# ")]
    assert header[-1] == fplane.COLUMN_HEADER
    joined = "\n".join(header)
    assert "2018-07-07T05:00:00Z" in joined and "20180707" in joined
    assert "valid_from 2018-06-01T05:00:00Z, valid_until 2018-08-01T05:00:00Z" in joined
    assert "first light" in joined
    assert "positions: nominal" in joined


# -- which version: boundaries, night rule, DST, corrections ------------------------------

@pytest.mark.parametrize("datestr, comment", [
    ("20180731", "first light"),
    ("20180801", "IFU swap"),                   # 00:00 CDT on 1 August = 05:00Z
    ("2018-08-01", "IFU swap"),
    ("20180801v012", "IFU swap"),
    ("20180801T04:59:59.999999", "first light"),
    ("20180801T050000", "IFU swap"),
    ("2018-08-01T00:00:00-05:00", "IFU swap"),
    ("20180731T23:59:59-05:00", "first light"),
    # an exposure at 21:27 local on 31 July belongs to the night labelled 20180801,
    # but precedes that night's midnight, when the new version starts
    ("20180801T022724.0", "first light"),
    ("latest", "IFU swap"),
])
def test_version_valid_at_instant(app, datestr, comment):
    assert f"comment: {comment}" in app.get(f"/fplane/{datestr}").text


@pytest.mark.parametrize("night, before, after", [
    ("20181104", "20181104T04:59:59Z", "20181104T05:00:00Z"),  # midnight still CDT (-5)
    ("20181105", "20181105T05:59:59Z", "20181105T06:00:00Z"),  # first CST midnight (-6)
    ("20190310", "20190310T05:59:59Z", "20190310T06:00:00Z"),  # midnight still CST
    ("20190311", "20190311T04:59:59Z", "20190311T05:00:00Z"),  # first CDT midnight
])
def test_night_labels_across_dst_changes(config, app, night, before, after):
    import_rows(config, FIRST, night, "--comment", f"from {night}")
    assert f"from {night}" not in app.get(f"/fplane/{before}").text
    assert f"from {night}" in app.get(f"/fplane/{after}").text
    assert f"from {night}" in app.get(f"/fplane/{night}").text


def test_correction_wins_and_known_at_shows_the_past(config, app):
    before = app.get("/fplane/20180707")
    recorded_at = app.get("/fplane/20180707?format=json").json["recorded_at"]
    import_rows(config, make_rows(active={13: (401, 241, 43)}), "20180601", "--comment", "correction")
    corrected = app.get("/fplane/20180707")
    assert "comment: correction" in corrected.text
    assert corrected.headers["X-FPlane-Version"] != before.headers["X-FPlane-Version"]
    pinned = app.get("/fplane/20180707", {"known_at": "2000-01-01T00:00:00Z"}, status=404)
    assert pinned.headers["X-FPlane-Code"] == "302"
    # as the store knew it when the first answer was given: the original version
    old = app.get("/fplane/20180707", {"known_at": recorded_at})
    assert "comment: first light" in old.text
    assert old.headers["Cache-Control"] == "public, max-age=31536000"


def test_store_change_is_seen_without_restart(config, app):
    """The worker keeps whole responses, but never past a change of the store."""
    assert "comment: IFU swap" in app.get("/fplane/20181001").text
    import_rows(config, FIRST, "20180901", "--comment", "swapped back")
    assert "comment: swapped back" in app.get("/fplane/20181001").text


def test_identical_request_does_no_store_work_again(config, app):
    """The second identical GET asks SQLite nothing: the wal-index header says that
    nothing was committed since the first."""
    app.get("/fplane/20180707?actual_pos=0&full_fplane=1")
    service = wsgi_app._SERVICES[str(config)]
    statements = []
    service.store.get()._db.set_trace_callback(statements.append)
    try:
        again = app.get("/fplane/20180707?actual_pos=0&full_fplane=1")
    finally:
        service.store.get()._db.set_trace_callback(None)
    assert again.headers["X-FPlane-Code"] == "100"
    assert statements == []


# -- positions ---------------------------------------------------------------------------

def test_actual_positions_from_the_latest_measured_set(config, app):
    measured = measured_positions([21, 22, 23])
    rows = make_rows(positions=measured)
    path = config.parent / "positions.txt"
    path.write_text(fplane.render_fplane(rows, (), full=False))
    status, out, err = run_admin(config, "import", str(path), "--valid-from", "20180615", "--positions")
    assert status == 0, err

    nominal = {r.ifuslot: r for r in served_rows(app.get("/fplane/20180707?actual_pos=0").text)}
    actual = {r.ifuslot: r for r in served_rows(app.get("/fplane/20180707?actual_pos=1").text)}
    for slot, (x, y) in measured.items():
        assert (actual[slot].x, actual[slot].y) == (x, y)
        assert (nominal[slot].x, nominal[slot].y) == fplane.nominal_position(slot)
    unmeasured = next(s for s in VIRUS_SLOTS if s not in measured)
    assert (actual[unmeasured].x, actual[unmeasured].y) == fplane.nominal_position(unmeasured)
    assert "positions: measured (position set" in app.get("/fplane/20180707?actual_pos=1").text
    # before the position set is valid: nominal, and the header says so
    early = app.get("/fplane/20180610?actual_pos=1").text
    assert "no measured position set is valid then: nominal" in early


# -- headers -----------------------------------------------------------------------------

def test_validity_headers(app):
    closed = app.get("/fplane/20180707")
    assert closed.headers["X-FPlane-Valid-From"] == "2018-06-01T05:00:00Z"
    assert closed.headers["X-FPlane-Valid-Until"] == "2018-08-01T05:00:00Z"
    assert closed.headers["Cache-Control"] == "public, max-age=86400"
    assert closed.headers["Content-Disposition"] == 'attachment; filename="fplane20180707.txt"'
    assert closed.headers["ETag"].startswith('W/"')
    assert closed.headers["Last-Modified"].endswith("GMT")
    current = app.get("/fplane/20190101")
    assert current.headers["X-FPlane-Valid-Until"] == "open"
    assert current.headers["Cache-Control"] == "public, max-age=60"


def test_no_date_is_now_and_names_the_file_after_tonight(app):
    tonight = night_label(datetime.now(timezone.utc), ZoneInfo("America/Chicago"))
    for path in ("/fplane/", "/fplane", "/fplane/latest"):
        response = app.get(path)
        assert "comment: IFU swap" in response.text
    assert app.get("/fplane/").headers["Content-Disposition"] == f'attachment; filename="fplane{tonight}.txt"'
    assert app.get("/fplane/now").headers["Content-Disposition"] == 'attachment; filename="fplanenow.txt"'


@pytest.mark.parametrize("path", ["/fplane/20180707", "/fplane/"])
def test_conditional_get_answers_304(app, path):
    first = app.get(path)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": etag.removeprefix("W/")},
                    {"If-None-Match": f'"other", {etag}'}, {"If-Modified-Since": modified}):
        again = app.get(path, headers=headers, status=304)
        assert again.body == b""
        assert again.headers["ETag"] == etag
    assert app.get(path, headers={"If-None-Match": '"stale"'}).status_int == 200
    assert app.get(path, headers={"If-Modified-Since": formatdate(0, usegmt=True)}).status_int == 200
    # If-None-Match decides when both are sent
    assert app.get(path, headers={"If-None-Match": '"stale"', "If-Modified-Since": modified}).status_int == 200


def test_etag_changes_with_what_is_served(app):
    tags = {app.get(url).headers["ETag"] for url in (
        "/fplane/20180707", "/fplane/20180707?full_fplane=0", "/fplane/20180707?actual_pos=1",
        "/fplane/20180901", "/fplane/20180707?format=json")}
    assert len(tags) == 5


def test_head_has_the_headers_and_no_body(app):
    get = app.get("/fplane/20180707")
    head = app.head("/fplane/20180707")
    assert head.body == b""
    for name in ("X-FPlane-Version", "ETag", "Content-Length", "X-FPlane-Valid-Until"):
        assert head.headers[name] == get.headers[name]


# -- JSON ----------------------------------------------------------------------------------

def test_json_by_format_or_accept(app):
    by_query = app.get("/fplane/20180707?format=json&full_fplane=0")
    by_accept = app.get("/fplane/20180707?full_fplane=0", headers={"Accept": "application/json"})
    assert by_query.json == by_accept.json
    assert by_accept.headers["Vary"] == "Accept"
    document = by_query.json
    assert document["valid_from"] == "2018-06-01T05:00:00Z"
    assert document["valid_until"] == "2018-08-01T05:00:00Z"
    assert document["comment"] == "first light" and document["positions"] == "nominal"
    text_rows = strict_fplane_parse(app.get("/fplane/20180707?full_fplane=0").text)
    assert [r["ifuslot"] for r in document["rows"]] == list(text_rows)
    assert all(len(r["specid"]) == 3 for r in document["rows"])
    assert by_query.headers["Content-Disposition"] == 'attachment; filename="fplane20180707.json"'


# -- refusals: coded, clear, never a trace ---------------------------------------------------

@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/fplane/garbage", 400, "301"),
    ("GET", "/fplane/20180230", 400, "301"),
    ("GET", "/fplane/" + "9" * 5000, 400, "301"),
    ("GET", "/fplane/..%2F..%2Fetc%2Fpasswd", 404, "303"),
    ("GET", "/fplane/..%5C..%5Cetc%5Cpasswd", 400, "301"),
    ("GET", "/fplane/%00", 400, "301"),
    ("GET", "/fplane/%C3%A9t%C3%A9", 400, "301"),
    ("GET", "/fplane/20100101", 404, "302"),
    ("GET", "/fplane/20180707?known_at=nonsense", 400, "301"),
    ("GET", "/fplane/20180707/extra", 404, "303"),
    ("GET", "/etc/passwd", 404, "303"),
    ("GET", "/fplane/20180707?actual_pos=2", 400, "306"),
    ("GET", "/fplane/20180707?full_fplane=yes", 400, "306"),
    ("GET", "/fplane/20180707?format=xml", 400, "306"),
    ("GET", "/fplane/20180707?actual_pos=0&actual_pos=1", 400, "306"),
    ("GET", "/fplane/20180707?actual_pos=%ff", 400, "306"),
    ("DELETE", "/fplane/20180707", 405, "305"),
    ("PUT", "/fplane/", 405, "305"),
])
def test_bad_requests_get_a_code_and_a_clear_message(app, tmp_path, method, path, status, code):
    response = app.request(path, method=method, expect_errors=True)
    assert response.status_int == status
    assert response.headers["X-FPlane-Code"] == code
    first_line = response.text.splitlines()[0]
    assert first_line.startswith(f"{code} ") and len(first_line) > 10
    assert "Traceback" not in response.text and str(tmp_path) not in response.text
    if code == "301":
        assert "YYYYMMDD" in response.text  # the accepted forms are listed
    if code == "305":
        assert response.headers["Allow"] == "GET, HEAD, POST, OPTIONS"


def test_errors_as_json_when_asked(app):
    response = app.get("/fplane/garbage?format=json", status=400)
    assert response.json["code"] == 301 and "accepted forms" in response.json["message"]


def test_store_not_initialised_is_503_and_recovers_without_restart(tmp_path):
    config = write_config(tmp_path)
    app = test_app(config)
    response = app.get("/fplane/20180707", status=503)
    assert response.headers["X-FPlane-Code"] == "401"
    assert "fplane-admin init" in response.text and str(tmp_path) not in response.text
    init_store(config)
    assert app.get("/fplane/20180707", status=404).headers["X-FPlane-Code"] == "302"
    import_rows(config, FIRST, "20180601")
    assert app.get("/fplane/20180707").headers["X-FPlane-Code"] == "100"


def test_corrupt_store_is_503(tmp_path):
    config = write_config(tmp_path)
    init_store(config)
    (tmp_path / "data" / "fplane.sqlite").write_bytes(b"this is not a database" * 100)
    response = test_app(config).get("/fplane/20180707", status=503)
    assert response.headers["X-FPlane-Code"] == "401"


def test_internal_error_is_400_with_details_only_in_the_log(config, tmp_path):
    # A store tampered with behind the tools' back: an id no fplane file can hold.
    with sqlite3.connect(tmp_path / "data" / "fplane.sqlite") as db:
        db.execute("UPDATE configuration_rows SET specid = 5000 WHERE ifuslot = 21")
    # (JSON is built from the rows themselves, so the bad row is read)
    response = test_app(config).get("/fplane/20180707?format=json", status=500)
    assert response.headers["X-FPlane-Code"] == "400"
    assert response.json == {"code": 400, "message": "internal error (details only in the log)",
                             "errors": []}
    log = (tmp_path / "log" / "fplaneserver.log").read_text()
    assert "Traceback" in log and "internal error on GET /fplane/20180707?format=json" in log


def test_every_request_is_logged(app, tmp_path):
    app.get("/fplane/20180707?full_fplane=0", extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    app.get("/fplane/garbage", status=400, extra_environ={"REMOTE_ADDR": "192.0.2.8"})
    lines = (tmp_path / "log" / "fplaneserver.log").read_text().splitlines()
    assert any("192.0.2.7 GET /fplane/20180707?full_fplane=0 100 200 " in line for line in lines)
    assert any("192.0.2.8 GET /fplane/garbage 301 400 " in line for line in lines)
    assert lines[-1].endswith("ms")


def test_request_lines_follow_each_answer_to_the_same_url(app, tmp_path):
    # The method-to-status part of a line is remembered per distinct request: a repeated
    # URL answered differently (a 304, a HEAD) must still be logged as it was answered.
    url = "/fplane/20180707"
    etag = app.get(url).headers["ETag"]
    app.get(url, headers={"If-None-Match": etag}, status=304)
    app.head(url)
    long_query = "full_fplane=1&" + "x" * 3000   # longer than any line worth remembering
    app.get(f"{url}?{long_query}")
    lines = (tmp_path / "log" / "fplaneserver.log").read_text().splitlines()
    # (WebTest sends no client address: "-")
    assert [line.split(" INFO ")[1].rsplit(" ", 1)[0] for line in lines[-4:]] == [
        "- GET /fplane/20180707 100 200", "- GET /fplane/20180707 100 304",
        "- HEAD /fplane/20180707 100 200", f"- GET {url}?{long_query} 100 200"]


def test_what_request_lines_remember_stays_bounded(app, tmp_path):
    for i in range(logs.DESCRIBED_LIMIT + 5):
        app.get(f"/nowhere/{i}", status=404)
    service = wsgi_app.load_service(app.app.keywords["configfile"])
    assert len(service.request_log._described) <= logs.DESCRIBED_LIMIT
    last = (tmp_path / "log" / "fplaneserver.log").read_text().splitlines()[-1]
    assert f" GET /nowhere/{logs.DESCRIBED_LIMIT + 4} 303 404 " in last


def test_request_lines_name_the_process_that_answered_also_after_a_fork(app, tmp_path):
    # The pid is looked up once a second: a child forked within the same second must not
    # log under its parent's pid.
    app.get("/fplane/20180707", extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            app.get("/fplane/20180707", extra_environ={"REMOTE_ADDR": "192.0.2.2"})
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    lines = (tmp_path / "log" / "fplaneserver.log").read_text().splitlines()
    by_client = {line.split()[4]: int(line.split()[2]) for line in lines if " INFO 192.0.2." in line}
    assert by_client == {"192.0.2.1": os.getpid(), "192.0.2.2": pid}


def test_index_explains_the_url(app):
    text = app.get("/?format=txt").text
    assert "/fplane/<datestr>?actual_pos=0|1&full_fplane=0|1" in text and "YYYYMMDDvNNN" in text


def test_blanks_around_the_date_never_reach_the_file_name_header(app):
    # %0D%0A is forgiven around a datestr, as other blanks are; it must not split a header.
    response = app.get("/fplane/%0D%0A20180707%20")
    assert response.headers["Content-Disposition"] == 'attachment; filename="fplane20180707.txt"'


# -- one list of routes --------------------------------------------------------------------

def test_the_routes_are_the_documented_paths_and_the_index_lists_them(config, app):
    """Whoever adds a route to Service.routes must describe it in /openapi.json and in the
    index text (/?format=txt), and /sys links only to routes: this fails otherwise."""
    from wsgi.openapi import openapi_document
    routes = {route.path: set(route.methods) for route in wsgi_app.load_service(str(config)).routes}
    documented = {path: {m.upper() for m in item} & {"GET", "HEAD", "POST"}
                  for path, item in openapi_document()["paths"].items()}
    assert routes == documented

    index = app.get("/", {"format": "txt"}).text.replace("[", "").replace("]", "")  # optional parts
    for path in routes:
        assert path.replace("{", "<").replace("}", ">") in index, path
    for link in app.get("/sys", {"format": "json"}).json["links"]:
        assert link["href"] in routes
