"""Posting updates end to end (contract sections 5 and 6): ``POST /fplane``, ``POST
/positions`` and ``GET /updates/<id>`` through the very partial examples/application.wsgi
builds, driven by WebTest (or by hand where WebTest cannot send the request), on a store
made by the real `fplane-admin init` / `import`, stations added by the real
`fplane-admin add-station`, and the real spool directory.

Every refusal is checked as the TCS operator sees it (HTTP status, X-FPlane-Code, the
``<code> <message>`` first line, a message that says what to fix) and for what it must
not do: spool or store anything.
"""

import hashlib
import io
import json
import random
import re
import shutil
import sqlite3
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from webob import Request

from tests.fplane_samples import (COLUMNS_LINE, default_active, entry, grid_position, make_rows,
                                  measured_positions, server_line, status_from_rows,
                                  strict_fplane_parse)
from tests.support import (add_station, import_rows, init_store, run_admin, test_app,
                           update_form, write_config)
from wsgi import dates
from wsgi.app import application
from wsgi.config import load_config
from wsgi.logs import make_logger
from wsgi.spool import SUBDIRECTORIES, update_id

MAX_AGE, MAX_FUTURE = 3600, 300
LIMITS = {"max_age": str(MAX_AGE), "max_future": str(MAX_FUTURE)}
STATIONS = {"tcs": "config", "astrometry": "positions", "ops": "config;positions"}
FIELDS = ("station_id", "password", "checksum", "data")
URLENCODED = "application/x-www-form-urlencoded"

CURRENT = make_rows()                    # the version valid since 2018-06-01 (Chicago)
ACTIVE = sorted(default_active())        # its active VIRUS seats
NOTHING_STORED = {"versions": 1, "position_sets": 0, "updates": 0}


# -- the site: one store and station list per module, a fresh copy per test ------------

@dataclass
class Site:
    root: Path
    passwords: dict

    @property
    def config(self) -> Path:
        return self.root / "config.ini"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def spooled(self) -> list[Path]:
        """The files waiting in spool/new."""
        return sorted((self.spool / "new").iterdir())

    def spooled_json(self) -> dict:
        [path] = self.spooled()
        return json.loads(path.read_bytes().decode("utf-8"))

    def spool_contents(self) -> dict[str, list[str]]:
        return {d: sorted(p.name for p in (self.spool / d).iterdir())
                for d in SUBDIRECTORIES if (self.spool / d).is_dir()}

    def stored(self) -> dict[str, int]:
        db = sqlite3.connect(f"file:{self.root / 'data' / 'fplane.sqlite'}?mode=ro", uri=True)
        try:
            return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in NOTHING_STORED}
        finally:
            db.close()

    def log_text(self) -> str:
        return (self.root / "log" / "fplaneserver.log").read_text("utf-8", "replace")

    def form(self, data, station="tcs", **kw) -> dict:
        return update_form(station, self.passwords[station], data, **kw)

    def set_config(self, **sections) -> None:
        write_config(self.root, **{"Update": LIMITS, **sections})


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template")
    config = write_config(root, Update=LIMITS)
    init_store(config)
    import_rows(config, CURRENT, "20180601", "--comment", "current")
    passwords = {station: add_station(config, station, roles) for station, roles in STATIONS.items()}
    return Site(root, passwords)


@pytest.fixture
def site(template, tmp_path):
    root = tmp_path / "site"
    shutil.copytree(template.root, root)
    return Site(root, template.passwords)


@pytest.fixture
def app(site):
    return test_app(site.config)


# -- hardware statuses and posts ------------------------------------------------------

def stamp(seconds: float = 0.0) -> str:
    """An ISO 8601 UTC time stamp ``seconds`` from now."""
    return dates.format_instant(datetime.now(timezone.utc) + timedelta(seconds=seconds))


def swap_ifus(rows, a, b):
    ifuid = {r.ifuslot: r.ifuid for r in rows}
    return tuple(replace(r, ifuid=ifuid[{a: b, b: a}[r.ifuslot]]) if r.ifuslot in (a, b) else r
                 for r in rows)


SWAPPED = swap_ifus(CURRENT, ACTIVE[0], ACTIVE[1])


def changed_status(timestamp=None) -> dict:
    """Two IFU bundles swapped between seats: a change, nothing suspicious."""
    return status_from_rows(SWAPPED, timestamp or stamp())


def update(status=None, commit=True, **more) -> dict:
    return {"config": changed_status() if status is None else status, "commit": commit, **more}


def positions_update(positions, commit=True) -> dict:
    return {"positions": [{"ifuslot": f"{seat:03d}", "x": x, "y": y}
                          for seat, (x, y) in positions.items()], "commit": commit}


def post(app, form, url="/fplane", **kw):
    return app.post(url, form, expect_errors=True, **kw)


def urlencoded(pairs) -> bytes:
    """An x-www-form-urlencoded body made by hand, for bytes WebTest would not send."""
    def q(value):
        return quote_from_bytes(value if isinstance(value, bytes) else value.encode("utf-8"), safe="")
    return "&".join(f"{q(name)}={q(value)}" for name, value in pairs).encode("ascii")


def signed_pairs(site, data: bytes, station="tcs"):
    """A post's fields with the right checksum over the exact bytes of ``data``."""
    return [("station_id", station), ("password", site.passwords[station]),
            ("checksum", hashlib.sha256(data).hexdigest()), ("data", data)]


def call_wsgi(site, environ):
    """Drive the application by hand: (status, headers, body)."""
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(application(environ, start_response, configfile=str(site.config)))
    return answer["status"], answer["headers"], body


def post_environ(path, body: bytes, content_type: str | None, length: str | None = "auto",
                 terminated: bool = True):
    """A POST environ; ``length=None`` leaves out Content-Length as a chunked request does,
    from a server that reads chunked bodies (``wsgi.input_terminated``) unless
    ``terminated`` is false."""
    environ = Request.blank(path, method="POST").environ
    environ["wsgi.input"] = io.BytesIO(body)
    environ.pop("CONTENT_TYPE", None)
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    if length is None:
        environ.pop("CONTENT_LENGTH", None)
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = terminated
    else:
        environ["CONTENT_LENGTH"] = str(len(body)) if length == "auto" else length
    return environ


# -- what a refusal must look like ----------------------------------------------------

def refused(site, response, code: int, http: int) -> list[str]:
    """The operator's view of a refusal; nothing spooled and nothing stored. Returns the
    body's lines."""
    assert response.status_int == http, response.text
    assert response.headers["X-FPlane-Code"] == str(code)
    assert response.content_type == "text/plain"
    lines = response.text.splitlines()
    assert lines[0].startswith(f"{code} "), lines[0]
    assert len(lines[0]) > len(f"{code} ") + 10, "a message the operator can act on"
    assert "Traceback" not in response.text
    assert str(site.root) not in response.text
    assert "X-FPlane-Update" not in response.headers
    assert_nothing_kept(site)
    return lines


def assert_nothing_kept(site):
    assert site.spool_contents() == {d: [] for d in SUBDIRECTORIES}
    assert site.stored() == NOTHING_STORED


def first_line(response) -> str:
    return response.text.splitlines()[0]


# == the order of the checks ========================================================

def invalid_and_old_status() -> dict:
    status = changed_status(stamp(-MAX_AGE - 60))
    status["spectrographs"].append(entry(999, 901, 901, 990))
    return update(status)


# Each row breaks its check and every later one it can: the first check in the
# contract's order answers.
ORDER = [
    # code, http, station, right password?, checksum, data
    (202, 400, "nobody", False, None, "{not json"),
    (206, 403, "nobody", False, "wrong", "{not json"),
    (203, 403, "astrometry", False, "wrong", "{not json"),      # role wrong too
    (204, 403, "astrometry", True, "wrong", "{not json"),
    (201, 400, "tcs", True, "wrong", "{not json"),
    (208, 400, "tcs", True, "right", "{not json"),
    (209, 422, "tcs", True, "right", invalid_and_old_status),
    (210, 422, "tcs", True, "right", lambda: update(changed_status(stamp(-MAX_AGE - 60)))),
    (211, 422, "tcs", True, "right", lambda: update(changed_status(stamp(MAX_FUTURE + 60)))),
]


@pytest.mark.parametrize("code, http, station, right_password, checksum, data", ORDER,
                         ids=[str(row[0]) for row in ORDER])
def test_the_first_failing_check_in_contract_order_answers(site, app, code, http, station,
                                                           right_password, checksum, data):
    data = data() if callable(data) else data
    password = site.passwords.get(station, "x") if right_password else "wrong-password"
    form = update_form(station, password, data)
    if checksum is None:
        del form["checksum"]
    elif checksum == "wrong":
        form["checksum"] = hashlib.sha256(b"other bytes").hexdigest()
    refused(site, post(app, form), code, http)


# == 202: the form's fields ==========================================================

@pytest.mark.parametrize("content_type", [URLENCODED, "multipart/form-data"])
@pytest.mark.parametrize("missing", FIELDS)
def test_each_missing_field_is_202_naming_it(site, app, missing, content_type):
    form = site.form(update())
    del form[missing]
    lines = refused(site, post(app, form, content_type=content_type), 202, 400)
    assert lines[0].startswith("202 missing or empty form field: ")
    assert missing in lines[0]
    assert [f for f in FIELDS if f != missing and f in lines[0].split(": ", 1)[1]] == []


@pytest.mark.parametrize("empty", FIELDS)
@pytest.mark.parametrize("value", ["", "   "])
def test_empty_field_is_202_naming_it(site, app, empty, value):
    form = site.form(update())
    form[empty] = value
    lines = refused(site, post(app, form), 202, 400)
    assert empty in lines[0]


def test_all_fields_missing_are_named_at_once(site, app):
    lines = refused(site, post(app, {"comment": "hello"}), 202, 400)
    assert all(f in lines[0] for f in FIELDS)


@pytest.mark.parametrize("repeated", FIELDS)
def test_repeated_field_is_202(site, app, repeated):
    form = site.form(update())
    pairs = list(form.items()) + [(repeated, form[repeated])]
    lines = refused(site, post(app, pairs), 202, 400)
    assert "more than once" in lines[0] and repeated in lines[0]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/xml"])
def test_unsupported_content_type_is_202(site, app, content_type):
    body = json.dumps(site.form(update())).encode()
    lines = refused(site, app.post("/fplane", body, content_type=content_type,
                                   expect_errors=True), 202, 400)
    assert content_type in lines[0]
    assert URLENCODED in lines[0] and "multipart/form-data" in lines[0]


def test_no_content_type_is_202(site):
    body = urlencoded(site.form(update()).items())
    status, headers, text = call_wsgi(site, post_environ("/fplane", body, None))
    assert status.startswith("400 ") and headers["X-FPlane-Code"] == "202"
    assert text.decode().startswith("202 missing or empty form field: the post has no Content-Type")
    assert_nothing_kept(site)


def test_missing_field_comes_before_unknown_station(site, app):
    form = update_form("nobody", "x", update())
    del form["checksum"]
    refused(site, post(app, form), 202, 400)


# == 206, 203, 204: who posts =========================================================

def test_unknown_station_is_206_before_checksum_and_data(site, app):
    form = update_form("nobody", "secret", "{not json", checksum="0" * 64)
    lines = refused(site, post(app, form), 206, 403)
    assert "'nobody'" in lines[0] and "station list" in lines[0]


@pytest.mark.parametrize("station_id", ["../../etc/passwd", "a" * 65, "tcs; DROP TABLE", "tcs\n"])
def test_malformed_station_id_is_206(site, app, station_id):
    lines = refused(site, post(app, update_form(station_id, "x", update())), 206, 403)
    assert "station unknown" in lines[0]


def test_station_ids_are_case_sensitive(site, app):
    refused(site, post(app, update_form("TCS", site.passwords["tcs"], update())), 206, 403)


def test_wrong_password_is_203_before_checksum(site, app):
    wrong = "not-the-password-" + "x" * 10
    form = update_form("tcs", wrong, "{not json", checksum="0" * 64)
    lines = refused(site, post(app, form), 203, 403)
    assert "wrong password for station 'tcs'" in lines[0]
    assert "fplane-admin passwd tcs" in lines[0]
    assert wrong not in site.log_text()


def test_another_stations_password_is_203(site, app):
    refused(site, post(app, update_form("tcs", site.passwords["ops"], update())), 203, 403)


def test_positions_station_posting_fplane_is_204_before_checksum(site, app):
    form = site.form("{not json", station="astrometry", checksum="0" * 64)
    lines = refused(site, post(app, form), 204, 403)
    assert "'astrometry' is not allowed to post config" in lines[0]
    assert "positions" in lines[0]    # what it may do instead


def test_config_station_posting_positions_is_204(site, app):
    form = site.form(positions_update(measured_positions(ACTIVE[:4])))
    lines = refused(site, post(app, form, "/positions"), 204, 403)
    assert "'tcs' is not allowed to post positions" in lines[0]


# == 201: the checksum ===============================================================

def test_checksum_mismatch_is_201_before_the_data_is_read(site, app):
    form = site.form("{not json", checksum=hashlib.sha256(b"something else").hexdigest())
    lines = refused(site, post(app, form), 201, 400)
    assert lines[0].startswith("201 checksum mismatch")


@pytest.mark.parametrize("checksum", ["abc", "z" * 64, "0" * 63, "0" * 65])
def test_checksum_that_is_not_a_sha256_hex_digest_is_201(site, app, checksum):
    lines = refused(site, post(app, site.form(update(), checksum=checksum)), 201, 400)
    assert "64 hex digits" in lines[0]


def test_checksum_over_other_bytes_than_utf8_is_201(site, app):
    text = json.dumps(update(comment="Zürich"), ensure_ascii=False)
    latin1 = hashlib.sha256(text.encode("latin-1")).hexdigest()
    refused(site, post(app, site.form(text, checksum=latin1)), 201, 400)


# == 208: the data is UTF-8 JSON =====================================================

@pytest.mark.parametrize("text", ["{not json", '{"config": {}, "commit": true', "\x00",
                                  "{'config': {}, 'commit': true}"])
def test_invalid_json_is_208(site, app, text):
    lines = refused(site, post(app, site.form(text)), 208, 400)
    assert lines[0].startswith("208 data is not valid JSON")


def test_non_utf8_data_with_a_checksum_over_those_bytes_is_208(site, app):
    data = json.dumps(update(comment="Zürich"), ensure_ascii=False).encode("latin-1")
    response = app.post("/fplane", urlencoded(signed_pairs(site, data)),
                        content_type=URLENCODED, expect_errors=True)
    lines = refused(site, response, 208, 400)
    assert "not valid UTF-8" in lines[0]


# == 209: structure and consistency, every problem listed ============================

def test_invalid_status_lists_every_problem(site, app):
    status = changed_status(stamp(-MAX_AGE - 60))   # too old as well: 209 comes first
    seats = status["spectrographs"]
    seats.append(entry(999, 901, 901, 990))                         # unknown seat
    seats.append(entry(int(seats[0]["ifuslot"]), 902, 902, 991))    # a seat listed twice
    seats[1]["specid"] = "x1"                                       # a malformed id
    lines = refused(site, post(app, site.form(update(status))), 209, 422)
    assert lines[0] == "209 the hardware status is invalid: 3 problems"
    details = "\n".join(lines[1:])
    assert "unknown seat 999" in details
    assert f"seat {seats[0]['ifuslot']} is listed twice" in details
    assert "specid 'x1' is not an id" in details
    assert len(lines) == 4


@pytest.mark.parametrize("how", [{"url": "/fplane?format=json"},
                                 {"headers": {"Accept": "application/json"}}],
                         ids=["format=json", "Accept"])
def test_refusal_as_json_when_asked_lists_every_problem(site, app, how):
    status = changed_status()
    status["spectrographs"] += [entry(999, 901, 901, 990), entry(998, 902, 902, 991)]
    response = post(app, site.form(update(status)), **how)
    assert response.status_int == 422 and response.headers["X-FPlane-Code"] == "209"
    assert response.content_type == "application/json"
    body = response.json
    assert body["code"] == 209
    assert body["message"] == "the hardware status is invalid: 2 problems"
    assert len(body["errors"]) == 2
    assert "unknown seat 999" in body["errors"][0] and "unknown seat 998" in body["errors"][1]
    assert_nothing_kept(site)


def test_central_seats_listed_with_ids_000_as_in_the_full_file_are_accepted(site, app):
    # The real full file lists 054, 055, 064 and 065 as "#054 ... 000 000 000": a status
    # that lists them so says they are empty, which they always are.
    status = changed_status()
    status["spectrographs"] += [entry(seat, 0, 0, 0) for seat in (54, 55, 64, 65)]
    response = post(app, site.form(update(status)))
    assert response.status_int == 202 and response.headers["X-FPlane-Code"] == "100", response.text
    served = strict_fplane_parse(response.text.split("\n", 1)[1])
    assert "054" not in served   # still commented out: empty


def test_an_ifu_on_a_central_seat_is_209_with_the_reason(site, app):
    status = changed_status()
    status["spectrographs"].append(entry(64, 0, 0, 977))
    lines = refused(site, post(app, site.form(update(status))), 209, 422)
    assert lines[1:] == ["spectrographs[%d] (seat 064): seat 064 cannot hold IFU 977: the "
                         "central seats 054, 055, 064, 065 are always empty; list it with ids "
                         "000 (empty) or leave it out" % (len(status["spectrographs"]) - 1)]


def test_ifu_and_spectrograph_listed_twice_are_209(site, app):
    status = changed_status()
    seats = status["spectrographs"]
    first, second = seats[0], seats[1]
    second["ifuid"] = first["ifuid"]
    second["specid"] = first["specid"]
    lines = refused(site, post(app, site.form(update(status))), 209, 422)
    details = "\n".join(lines[1:])
    assert f"IFU {first['ifuid']} is listed twice" in details
    assert f"active spectrograph {first['specid']} is listed twice" in details


def test_data_without_config_and_commit_is_209_naming_both(site, app):
    lines = refused(site, post(app, site.form({"status": {}})), 209, 422)
    details = "\n".join(lines[1:])
    assert "config is missing" in details and "commit is missing" in details


# == 210, 211: the time stamp ========================================================

def test_status_older_than_max_age_is_210(site, app):
    lines = refused(site, post(app, site.form(update(changed_status(stamp(-MAX_AGE - 60))))),
                    210, 422)
    assert re.match(r"210 hardware status is 1 h 1 min( \d s)? old \(timestamp ", lines[0])
    assert f"[Update] max_age = {MAX_AGE} s" in lines[0]


def test_status_further_in_the_future_than_max_future_is_211(site, app):
    lines = refused(site, post(app, site.form(update(changed_status(stamp(MAX_FUTURE + 60))))),
                    211, 422)
    assert re.match(r"211 hardware status time stamp is (6 min|5 min 59 s) in the future ", lines[0])
    assert f"[Update] max_future = {MAX_FUTURE} s" in lines[0]
    assert "clock" in lines[0]


def test_time_stamp_within_the_limits_is_accepted(site, app):
    for seconds in (-MAX_AGE + 60, MAX_FUTURE - 60):
        response = post(app, site.form(update(changed_status(stamp(seconds)))))
        assert response.headers["X-FPlane-Code"] == "100", response.text


# == 212: the body's size ============================================================

MAX_BODY = 20000


def body_of_size(site, size: int) -> bytes:
    """A valid urlencoded post padded to exactly ``size`` bytes with an extra field."""
    body = urlencoded(site.form(update()).items()) + b"&padding="
    assert len(body) < size
    return body + b"x" * (size - len(body))


@pytest.mark.parametrize("length", ["auto", None], ids=["content-length", "chunked"])
def test_body_over_max_body_is_212(site, length):
    site.set_config(Server={"max_body": str(MAX_BODY)})
    environ = post_environ("/fplane", body_of_size(site, MAX_BODY + 1), URLENCODED, length)
    status, headers, body = call_wsgi(site, environ)
    assert status.startswith("413 ")
    assert headers["X-FPlane-Code"] == "212"
    assert body.decode().startswith(f"212 request body too large: the limit is {MAX_BODY} bytes")
    assert_nothing_kept(site)


@pytest.mark.parametrize("length", ["auto", None], ids=["content-length", "chunked"])
def test_body_of_exactly_max_body_is_accepted(site, length):
    site.set_config(Server={"max_body": str(MAX_BODY)})
    environ = post_environ("/fplane", body_of_size(site, MAX_BODY), URLENCODED, length)
    status, headers, body = call_wsgi(site, environ)
    assert status.startswith("202 ") and headers["X-FPlane-Code"] == "100", body
    assert len(site.spooled()) == 1


def test_too_large_comes_before_missing_fields(site):
    site.set_config(Server={"max_body": "100"})
    status, headers, _ = call_wsgi(site, post_environ("/fplane", b"x" * 101, URLENCODED))
    assert headers["X-FPlane-Code"] == "212" and status.startswith("413 ")


# == garbage never gets a 500 ========================================================

def multipart(parts, boundary="b0undary") -> bytes:
    out = b""
    for headers, value in parts:
        out += f"--{boundary}\r\n".encode() + headers + b"\r\n\r\n" + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def form_parts(pairs):
    return [(f'Content-Disposition: form-data; name="{name}"'.encode(),
             value if isinstance(value, bytes) else value.encode()) for name, value in pairs]


def signed(data: str | bytes):
    data = data.encode("utf-8") if isinstance(data, str) else data
    return lambda site: (URLENCODED, urlencoded(signed_pairs(site, data)))


def valid_status_text(**replace_in_status) -> str:
    status = changed_status()
    status.update(replace_in_status)
    return json.dumps({"config": status, "commit": True})


NOISE = random.Random(20180715).randbytes(4096)
NO_CODE = None   # any coded 4xx will do

HOSTILE = {
    "empty body": (lambda s: (URLENCODED, b""), 202),
    "random bytes": (lambda s: (URLENCODED, NOISE), 202),
    "random bytes as multipart": (lambda s: ("multipart/form-data; boundary=b0undary", NOISE), 202),
    "huge field name": (lambda s: (URLENCODED, b"a" * 500_000 + b"=1"), 202),
    "huge field names beside valid fields": (
        lambda s: (URLENCODED, urlencoded([("n" * 100_000, "1")] + list(s.form(update()).items())
                                          + [("m" * 100_000, "2")])), 100),
    "invalid percent escapes": (lambda s: (URLENCODED, b"station_id=%ZZ&password=%&data=%%"), 202),
    "non-UTF-8 field names": (lambda s: (URLENCODED, b"\xff\xfe=1&%ff=2"), 202),
    "non-UTF-8 station id": (lambda s: (URLENCODED, urlencoded(
        [("station_id", b"\xfftcs")] + list(s.form(update()).items())[1:])), 206),
    "2 KB password": (lambda s: (URLENCODED, urlencoded(
        update_form("tcs", "p" * 2048, update()).items())), 203),
    "multipart without boundary": (
        lambda s: ("multipart/form-data", multipart(form_parts(s.form(update()).items()))), 202),
    "multipart with an empty boundary": (
        lambda s: ("multipart/form-data; boundary=", multipart(form_parts(s.form(update()).items()))),
        202),
    "multipart with another boundary": (
        lambda s: ("multipart/form-data; boundary=other",
                   multipart(form_parts(s.form(update()).items()))), 202),
    "multipart parts without names": (
        lambda s: ("multipart/form-data; boundary=b0undary",
                   multipart([(b"Content-Disposition: form-data", b"x")] * 4)), 202),
    "multipart with broken base64": (
        lambda s: ("multipart/form-data; boundary=b0undary", multipart(
            form_parts(list(s.form(update()).items())[:3])
            + [(b'Content-Disposition: form-data; name="data"\r\n'
                b"Content-Transfer-Encoding: base64", b"!!!not base64***")])), NO_CODE),
    "multipart truncated": (
        lambda s: ("multipart/form-data; boundary=b0undary",
                   multipart(form_parts(s.form(update()).items()))[:-40]), NO_CODE),
    "nested arrays 1000 deep": (signed("[" * 1000 + "]" * 1000), 209),
    "nested objects 1000 deep in config": (
        signed('{"config": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + ', "commit": true}'), 209),
    "unterminated nesting 100000 deep": (signed("[" * 100_000), 209),
    "data is a JSON array": (signed(json.dumps([update()])), 209),
    "data is null": (signed("null"), 209),
    "data is a string": (signed('"config"'), 209),
    "NaN": (signed(valid_status_text().replace('"commit": true', '"commit": NaN')), 209),
    "Infinity as an id": (signed(valid_status_text().replace('"ifuslot": "013"',
                                                             '"ifuslot": Infinity')), 209),
    "NaN time stamp": (signed(valid_status_text(timestamp=0).replace(
        '"timestamp": 0', '"timestamp": NaN')), 209),
    "a 5000-digit integer": (signed(valid_status_text(spectrographs=[]).replace(
        '"spectrographs": []', '"spectrographs": [{"ifuslot": ' + "9" * 5000 + "}]")), 209),
    "a huge float": (signed(valid_status_text(spectrographs=[]).replace(
        '"spectrographs": []', '"spectrographs": [{"ifuslot": 1e999}]')), 209),
    "20000 items": (signed(json.dumps({**update(), "extra": [0] * 20000})), 209),
    "config is a list": (signed(json.dumps({"config": [], "commit": True})), 209),
    "spectrographs is an object": (signed(valid_status_text(spectrographs={"a": 1})), 209),
    "commit is a string": (signed(json.dumps(update(commit="yes"))), 209),
    "lone surrogate in the time stamp": (signed(valid_status_text(timestamp="\ud800")), 209),
    "lone surrogate in valid_from": (signed(json.dumps(update(valid_from="\udfff"))), 209),
    "lone surrogate as a key": (signed(json.dumps({**update(), "\ud800": 1})), 100),
    "duplicate keys": (signed('{"commit": true, "commit": false, "config": {}}'), 209),
    "time stamp of 10000 characters": (signed(valid_status_text(timestamp="2" * 10000)), 209),
    "time stamp in year 0": (signed(valid_status_text(timestamp="0000-01-01T00:00:00Z")), 209),
    "time stamp in year 9999": (signed(valid_status_text(timestamp="9999-12-31T23:59:59Z")), 209),
    "time stamp in year 9998": (signed(valid_status_text(timestamp="9998-12-31T23:59:59Z")), 211),
    "valid_from in year 9998": (signed(json.dumps(update(valid_from="9998-12-31T23:59:59.999999Z"))),
                                100),
    "valid_from in 1900": (signed(json.dumps(update(valid_from="1900-01-01T00:00:00Z"))), 100),
    "valid_from in year 1": (signed(json.dumps(update(valid_from="0001-01-01T00:00:00Z"))), 209),
}


@pytest.mark.parametrize("make, code", HOSTILE.values(), ids=HOSTILE.keys())
def test_garbage_gets_a_coded_answer_never_a_500(site, make, code):
    content_type, body = make(site)
    status, headers, text = call_wsgi(site, post_environ("/fplane", body, content_type))
    text = text.decode("utf-8")
    assert "X-FPlane-Code" in headers, (status, text)
    assert text.startswith(f"{headers['X-FPlane-Code']} ")
    assert "Traceback" not in text and str(site.root) not in text
    if code is NO_CODE:
        assert 400 <= int(status[:3]) < 500, (status, text)
    else:
        assert headers["X-FPlane-Code"] == str(code), text
    if int(headers["X-FPlane-Code"]) >= 200:
        assert 400 <= int(status[:3]) < 500, (status, text)
        assert_nothing_kept(site)


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "0x10", "9" * 40])
def test_odd_content_length_is_a_coded_4xx(site, length):
    body = urlencoded(site.form(update()).items())
    status, headers, text = call_wsgi(site, post_environ("/fplane", body, URLENCODED, length))
    assert 400 <= int(status[:3]) < 500 and "X-FPlane-Code" in headers, (status, text)
    assert_nothing_kept(site)


# == accepted ========================================================================

def test_accepted_update_is_spooled_and_answered_100(site, app):
    form = site.form(update())
    response = post(app, form)
    assert response.status_int == 202
    assert response.headers["X-FPlane-Code"] == "100"
    uid = response.headers["X-FPlane-Update"]
    assert uid == update_id("tcs", form["checksum"], "config/")
    lines = response.text.splitlines()
    assert lines[0].startswith(f"100 OK: accepted as update {uid};")
    assert f"GET /updates/{uid}" in lines[0]
    spooled = site.spooled()
    assert len(spooled) == 1 and spooled[0].name.endswith(f".{uid}")
    content = site.spooled_json()
    assert content["update_id"] == uid and content["kind"] == "config"
    assert content["station"] == "tcs"
    assert content["checksum"] == form["checksum"]
    assert content["data"] == form["data"]
    assert content["held"] is False
    assert site.spool_contents()["tmp"] == []
    assert site.stored() == NOTHING_STORED      # the writer stores, not the web app
    password = site.passwords["tcs"]
    assert password not in spooled[0].read_text("utf-8")
    assert password not in site.log_text()
    assert uid in site.log_text()


def test_answer_shows_the_resulting_file(site, app):
    response = post(app, site.form(update()))
    served = strict_fplane_parse(response.text.split("\n", 1)[1])
    for seat in (ACTIVE[0], ACTIVE[1]):
        expected = next(r for r in SWAPPED if r.ifuslot == seat)
        assert served[f"{seat:03d}"][4] == f"{expected.ifuid:03d}"


@pytest.mark.parametrize("how", ["urlencoded", "multipart", "multipart file upload"])
def test_non_ascii_data_with_checksum_over_utf8_bytes(site, app, how):
    # Pretty-printed with CRLF line ends and a trailing newline: every byte counts.
    text = json.dumps(update(comment="Zürich 🔭"), ensure_ascii=False, indent=1)
    text = text.replace("\n", "\r\n") + "\r\n"
    form = site.form(text)
    if how == "urlencoded":
        response = post(app, form)
    elif how == "multipart":
        response = post(app, form, content_type="multipart/form-data")
    else:
        data = form.pop("data")
        response = post(app, form, upload_files=[("data", "status.json", data.encode("utf-8"))])
    assert response.headers["X-FPlane-Code"] == "100", response.text
    assert response.status_int == 202
    assert site.spooled_json()["data"] == text


def test_upper_case_checksum_is_accepted(site, app):
    form = site.form(update())
    form["checksum"] = form["checksum"].upper()
    response = post(app, form)
    assert response.headers["X-FPlane-Code"] == "100"
    assert site.spooled_json()["checksum"] == form["checksum"].lower()


def test_chunked_post_without_content_length_is_accepted(site):
    body = urlencoded(site.form(update()).items())
    status, headers, _ = call_wsgi(site, post_environ("/fplane", body, URLENCODED, None))
    assert status.startswith("202 ") and headers["X-FPlane-Code"] == "100"
    assert len(site.spooled()) == 1


def test_a_chunked_post_the_server_cannot_read_is_411_saying_to_send_a_length(site):
    # A server without wsgi.input_terminated (wsgiref, mod_wsgi by default) gives the app
    # an empty stream for a chunked body: that must not read as "missing field".
    body = urlencoded(site.form(update()).items())
    status, headers, text = call_wsgi(site, post_environ("/fplane", body, URLENCODED, None,
                                                         terminated=False))
    assert status == "411 Length Required" and headers["X-FPlane-Code"] == "207"
    assert text.decode().startswith("207 length required: ") and b"Content-Length" in text
    assert_nothing_kept(site)


def test_a_post_without_length_or_chunked_body_has_no_fields(site):
    environ = post_environ("/fplane", b"", URLENCODED)
    environ.pop("CONTENT_LENGTH")
    environ["wsgi.input"] = io.BytesIO(urlencoded(site.form(update()).items()))  # not to be read
    status, headers, text = call_wsgi(site, environ)
    assert status.startswith("400 ") and headers["X-FPlane-Code"] == "202", text


def test_same_update_posted_twice_has_one_id_and_one_file(site, app):
    form = site.form(update())
    first = post(app, form)
    second = post(app, form)
    assert first.headers["X-FPlane-Code"] == second.headers["X-FPlane-Code"] == "100"
    assert first.headers["X-FPlane-Update"] == second.headers["X-FPlane-Update"]
    uid = first.headers["X-FPlane-Update"]
    assert first_line(second).startswith(f"100 OK: update {uid} was already received (queued)")
    assert len(site.spooled()) == 1


@pytest.mark.parametrize("blanks", ["%20", "%09", "%20%0D%0A", "%0B%0C"])
@pytest.mark.parametrize("kind, url", [("config", "/fplane"), ("positions", "/positions")])
def test_blanks_around_the_date_make_the_same_update(site, app, kind, url, blanks):
    # The GET path forgives blanks around a date; a post must not become a second update
    # because a script added a space (or a CR LF) after it.
    form = (site.form(update()) if kind == "config"
            else site.form(positions_update(MEASURED), station="astrometry"))
    plain = post(app, form, url=f"{url}/20190401")
    padded = post(app, form, url=f"{url}/{blanks}20190401{blanks}")
    assert plain.headers["X-FPlane-Code"] == padded.headers["X-FPlane-Code"] == "100", padded.text
    assert padded.headers["X-FPlane-Update"] == plain.headers["X-FPlane-Update"]
    assert "was already received" in first_line(padded)
    assert len(site.spooled()) == 1


def test_same_data_for_another_instant_is_another_update(site, app):
    form = site.form(update())
    first = post(app, form, url="/fplane/20180701").headers["X-FPlane-Update"]
    second = post(app, form, url="/fplane/20180702").headers["X-FPlane-Update"]
    assert first != second
    assert len(site.spooled()) == 2


def test_same_data_from_another_station_is_another_update(site, app):
    text = json.dumps(update())
    first = post(app, site.form(text, station="tcs"))
    second = post(app, site.form(text, station="ops"))
    assert first.headers["X-FPlane-Update"] != second.headers["X-FPlane-Update"]
    assert len(site.spooled()) == 2


def test_status_identical_to_the_current_configuration_is_102(site, app):
    response = post(app, site.form(update(status_from_rows(CURRENT, stamp()))))
    assert response.status_int == 200
    assert response.headers["X-FPlane-Code"] == "102"
    assert first_line(response).startswith("102 no change, nothing new committed")
    assert "X-FPlane-Update" not in response.headers
    strict_fplane_parse(response.text.split("\n", 1)[1])
    assert_nothing_kept(site)


def half_off_status() -> dict:
    """Half of the active spectrographs switched off (specid 000) at once."""
    status = status_from_rows(CURRENT, stamp())
    active = [e for e in status["spectrographs"] if e["specid"] != "000"]
    for e in active[: (len(active) + 1) // 2]:
        e["specid"] = "000"
    return status


def test_status_switching_off_half_the_ifus_is_held_103(site, app):
    response = post(app, site.form(update(half_off_status())))
    assert response.status_int == 202
    assert response.headers["X-FPlane-Code"] == "103"
    uid = response.headers["X-FPlane-Update"]
    assert first_line(response).startswith(f"103 accepted but held for review: update {uid}")
    assert f"fplane-admin release / reject {uid}" in first_line(response)
    content = site.spooled_json()
    assert content["held"] is True and content["update_id"] == uid
    assert "switch off" in content["hold_reason"]
    again = post(app, site.form(content["data"]))
    assert again.headers["X-FPlane-Code"] == "103" and again.headers["X-FPlane-Update"] == uid
    assert len(site.spooled()) == 1


def test_status_switching_off_less_than_half_is_not_held(site, app):
    status = status_from_rows(CURRENT, stamp())
    active = [e for e in status["spectrographs"] if e["specid"] != "000"]
    for e in active[: len(active) // 2 - 1]:
        e["specid"] = "000"
    response = post(app, site.form(update(status)))
    assert response.headers["X-FPlane-Code"] == "100"
    assert site.spooled_json()["held"] is False


# == dry run =========================================================================

def test_dry_run_is_101_with_the_file_and_keeps_nothing(site, app):
    response = post(app, site.form(update(commit=False)))
    assert response.status_int == 200
    assert response.headers["X-FPlane-Code"] == "101"
    assert "X-FPlane-Update" not in response.headers
    code_line, file_text = response.text.split("\n", 1)
    assert code_line.startswith("101 dry run OK, nothing stored")
    served = strict_fplane_parse(file_text)
    swapped = next(r for r in SWAPPED if r.ifuslot == ACTIVE[0])
    assert served[f"{ACTIVE[0]:03d}"][4] == f"{swapped.ifuid:03d}"      # the change shows
    assert {"000", "056", "066"} <= set(served)
    assert file_text.endswith("\n") and "\n\n" not in file_text
    assert_nothing_kept(site)


@pytest.mark.parametrize("status, note", [
    (lambda: status_from_rows(CURRENT, stamp()), "it would change nothing"),
    (half_off_status, "it would be held for review"),
])
def test_dry_run_says_what_a_real_post_would_do(site, app, status, note):
    response = post(app, site.form(update(status(), commit=False)))
    assert response.headers["X-FPlane-Code"] == "101"
    assert note in first_line(response)
    assert_nothing_kept(site)


# == valid_from ======================================================================

def chicago_midnight_micros(y, m, d) -> int:
    from zoneinfo import ZoneInfo
    return dates.to_micros(datetime(y, m, d, tzinfo=ZoneInfo("America/Chicago")))


def test_valid_from_defaults_to_the_status_time_stamp(site, app):
    taken = datetime.now(timezone.utc) - timedelta(seconds=5, microseconds=123457)
    response = post(app, site.form(update(changed_status(dates.format_instant(taken)))))
    assert response.headers["X-FPlane-Code"] == "100"
    assert site.spooled_json()["valid_from"] == dates.to_micros(taken)


def test_valid_from_from_the_url(site, app):
    response = post(app, site.form(update()), url="/fplane/20180715")
    assert response.headers["X-FPlane-Code"] == "100", response.text
    assert site.spooled_json()["valid_from"] == chicago_midnight_micros(2018, 7, 15)
    assert "valid_from 2018-07-15T05:00:00Z" in response.text


def test_valid_from_from_data(site, app):
    response = post(app, site.form(update(valid_from="2018-07-20T12:00:00.25Z")))
    assert response.headers["X-FPlane-Code"] == "100", response.text
    expected = datetime(2018, 7, 20, 12, 0, 0, 250000, tzinfo=timezone.utc)
    assert site.spooled_json()["valid_from"] == dates.to_micros(expected)


def test_valid_from_in_url_and_data_agreeing_is_accepted(site, app):
    response = post(app, site.form(update(valid_from="2018-07-15T00:00:00-05:00")),
                    url="/fplane/20180715")
    assert response.headers["X-FPlane-Code"] == "100", response.text
    assert site.spooled_json()["valid_from"] == chicago_midnight_micros(2018, 7, 15)


def test_valid_from_in_url_and_data_disagreeing_is_209(site, app):
    response = post(app, site.form(update(valid_from="2018-07-16")), url="/fplane/20180715")
    lines = refused(site, response, 209, 422)
    assert "disagree" in "\n".join(lines[1:])
    assert "2018-07-15T05:00:00Z" in "\n".join(lines[1:])


def test_bad_valid_from_in_data_is_209(site, app):
    lines = refused(site, post(app, site.form(update(valid_from="last tuesday"))), 209, 422)
    assert "valid_from" in "\n".join(lines[1:]) and "accepted forms" in "\n".join(lines[1:])


@pytest.mark.parametrize("datestr", ["notadate", "2018-13-45", "20180715T25:00:00", "x" * 200,
                                     "%C3%BC", "%FF", "2018%2007%2015"])
def test_bad_datestr_in_the_url_is_301(site, app, datestr):
    lines = refused(site, post(app, site.form(update()), url=f"/fplane/{datestr}"), 301, 400)
    assert "accepted forms" in lines[0]


def test_update_before_the_first_version_builds_on_the_static_rows(site, app):
    response = post(app, site.form(update(commit=False)), url="/fplane/20170101")
    assert response.headers["X-FPlane-Code"] == "101"
    # The status makes a whole configuration from the site's static rows.
    assert {"000", f"{ACTIVE[0]:03d}"} <= set(strict_fplane_parse(response.text.split("\n", 1)[1]))


# == POST /positions =================================================================

MEASURED = measured_positions(ACTIVE[:9])


@pytest.mark.parametrize("station", ["astrometry", "ops"])
def test_positions_from_a_station_with_the_positions_role_are_accepted(site, app, station):
    form = site.form(positions_update(MEASURED), station=station)
    response = post(app, form, "/positions")
    assert response.status_int == 202 and response.headers["X-FPlane-Code"] == "100"
    content = site.spooled_json()
    assert content["kind"] == "positions" and content["station"] == station
    assert content["data"] == form["data"]
    assert content["update_id"] == response.headers["X-FPlane-Update"]


def test_positions_valid_from_the_url(site, app):
    form = site.form(positions_update(MEASURED), station="astrometry")
    response = post(app, form, "/positions/20180715")
    assert response.headers["X-FPlane-Code"] == "100", response.text
    assert site.spooled_json()["valid_from"] == chicago_midnight_micros(2018, 7, 15)


def test_positions_dry_run_shows_the_measured_positions(site, app):
    form = site.form(positions_update(MEASURED, commit=False), station="astrometry")
    response = post(app, form, "/positions")
    assert response.status_int == 200 and response.headers["X-FPlane-Code"] == "101"
    code_line, file_text = response.text.split("\n", 1)
    assert code_line.startswith("101 dry run OK")
    assert "measured" in file_text
    served = strict_fplane_parse(file_text)
    for seat, (x, y) in MEASURED.items():
        assert served[f"{seat:03d}"][:2] == (pytest.approx(x, abs=5e-4), pytest.approx(y, abs=5e-4))
    assert_nothing_kept(site)


def test_positions_identical_to_the_current_set_are_102(site, app):
    measured = [server_line(r) for r in make_rows(positions=MEASURED) if r.ifuslot in MEASURED]
    (site.root / "measured.txt").write_text("\n".join([COLUMNS_LINE, *measured]) + "\n")
    status, out, err = run_admin(site.config, "import", str(site.root / "measured.txt"),
                                 "--valid-from", "20180601", "--positions")
    assert status == 0, err
    form = site.form(positions_update(MEASURED), station="astrometry")
    response = post(app, form, "/positions")
    assert response.status_int == 200, response.text
    assert response.headers["X-FPlane-Code"] == "102"
    assert first_line(response).startswith("102 no change, nothing new committed")
    assert site.spool_contents() == {d: [] for d in SUBDIRECTORIES}
    assert site.stored()["updates"] == 0


def test_bad_positions_are_209_listing_every_problem(site, app):
    data = {"positions": [{"ifuslot": "999", "x": 0, "y": 0},
                          {"ifuslot": f"{ACTIVE[0]:03d}", "x": "a", "y": 0},
                          {"ifuslot": f"{ACTIVE[1]:03d}", "x": 0, "y": 0}],   # far from nominal
            "commit": True}
    lines = refused(site, post(app, site.form(data, station="astrometry"), "/positions"), 209, 422)
    assert lines[0] == "209 the positions are invalid: 3 problems"
    details = "\n".join(lines[1:])
    assert "unknown seat 999" in details
    assert "x 'a' is not a finite number" in details
    assert "from the seat's nominal centre" in details


def test_positions_in_fplane_form_are_209(site, app):
    """A positions payload posted to /fplane: the config is missing."""
    lines = refused(site, post(app, site.form(positions_update(MEASURED), station="ops")),
                    209, 422)
    assert "config is missing" in "\n".join(lines[1:])


def served_positions(app, date="latest") -> dict[int, tuple[float, float]]:
    served = strict_fplane_parse(app.get(f"/fplane/{date}?actual_pos=1&full_fplane=1").text)
    return {int(seat): values[:2] for seat, values in served.items()}


def commit_positions(site, app, data, station="astrometry"):
    response = post(app, site.form(data, station=station), "/positions")
    assert response.headers["X-FPlane-Code"] == "100", response.text
    assert run_writer(site) == 1
    return response


def test_positions_for_a_few_seats_keep_every_other_seats_last_measurement(site, app):
    # Astrometry measures a few seats at a time: a second post for two seats must not send
    # the seats measured before back to nominal.
    first = measured_positions(ACTIVE[:12])
    commit_positions(site, app, positions_update(first))
    few = {seat: (x + 0.1, y - 0.1) for seat, (x, y) in list(first.items())[:2]}
    answer = commit_positions(site, app, positions_update(few))
    assert "last measurement of every seat it does not list" in answer.text
    served = served_positions(app)
    for seat in first:
        expected = few.get(seat, first[seat])
        assert served[seat] == (pytest.approx(expected[0], abs=5e-4),
                                pytest.approx(expected[1], abs=5e-4)), seat
    # the answer showed the same file as GET does now
    assert strict_fplane_parse(answer.text.split("\n", 1)[1]) == strict_fplane_parse(
        app.get("/fplane/latest?actual_pos=1").text)


def test_positions_reset_seats_to_nominal_only_when_asked(site, app):
    first = measured_positions(ACTIVE[:12])
    commit_positions(site, app, positions_update(first))
    seats = list(first)
    reset = {**positions_update({seats[0]: (first[seats[0]][0] + 0.2, first[seats[0]][1])}),
             "reset": [f"{seats[1]:03d}"]}
    commit_positions(site, app, reset)
    served = served_positions(app)
    assert served[seats[1]] == grid_position(seats[1])               # reset: nominal
    assert served[seats[2]] == pytest.approx(first[seats[2]], abs=5e-4)  # kept
    whole = {**positions_update({seats[3]: first[seats[3]]}), "complete": True}
    commit_positions(site, app, whole)
    served = served_positions(app)
    assert served[seats[3]] == pytest.approx(first[seats[3]], abs=5e-4)
    assert all(served[seat] == grid_position(seat) for seat in seats if seat != seats[3])


# == GET /updates/<id> ===============================================================

@pytest.mark.parametrize("uid", ["0123456789abcdef0123", "zz", "", "..%2F..%2Fetc%2Fpasswd",
                                 "0123456789ABCDEF0123", "%00"])
def test_unknown_or_malformed_update_id_is_303(site, app, uid):
    response = app.get(f"/updates/{uid}", expect_errors=True)
    assert response.status_int == 404
    assert response.headers["X-FPlane-Code"] == "303"
    assert first_line(response).startswith("303 ")
    assert "Traceback" not in response.text and str(site.root) not in response.text


def test_posted_update_is_queued(site, app):
    uid = post(app, site.form(update())).headers["X-FPlane-Update"]
    response = app.get(f"/updates/{uid}")
    assert response.status_int == 200 and response.headers["X-FPlane-Code"] == "100"
    assert response.headers["X-FPlane-Update"] == uid
    assert "state: queued" in response.text.splitlines()
    assert f"update_id: {uid}" in response.text.splitlines()
    as_json = app.get(f"/updates/{uid}?format=json")
    assert as_json.content_type == "application/json"
    assert as_json.json == {"code": 100, "update_id": uid, "state": "queued"}


def test_update_status_format_is_txt_or_json_as_everywhere_else(site, app):
    uid = post(app, site.form(update())).headers["X-FPlane-Update"]
    as_text = app.get(f"/updates/{uid}?format=txt", headers={"Accept": "application/json"})
    assert as_text.content_type == "text/plain" and "state: queued" in as_text.text
    for query in ("format=xml", "format=json&format=txt"):
        response = app.get(f"/updates/{uid}?{query}", expect_errors=True)
        assert response.status_int == 400 and response.headers["X-FPlane-Code"] == "306"
        assert first_line(response).startswith("306 ") and "format" in first_line(response)


def run_writer(site, whole_loop: bool = False) -> int:
    """The real writer on the site's spool and store: one pass (run_once: how many it
    finished), or its whole loop until idle (run(once=True), which puts the spool's
    receipts right first)."""
    from writer.loop import Writer
    config = load_config(site.config)
    writer = Writer(config, make_logger(config, "writer"))
    try:
        if whole_loop:
            writer.run(once=True)
            return sum(writer.counts.values())
        return writer.run_once()
    finally:
        writer.close()


def test_update_is_committed_by_the_writer(site, app):
    form = site.form(update())
    uid = post(app, form).headers["X-FPlane-Update"]
    assert run_writer(site) == 1
    state = app.get(f"/updates/{uid}?format=json").json
    assert state["state"] == "committed" and state["station"] == "tcs"
    served = app.get("/fplane/latest")
    assert served.headers["X-FPlane-Version"] == str(state["version"])
    assert len(site.spool_contents()["done"]) == 1 and site.spool_contents()["new"] == []
    # Posted again: the same id, found committed, nothing spooled again.
    again = post(app, form)
    assert again.headers["X-FPlane-Update"] == uid
    assert f"update {uid} was already received (committed)" in first_line(again)
    assert site.spool_contents()["new"] == []


def test_the_store_decides_over_a_stale_receipt(site, app):
    """A writer killed after committing and moving the file on, before removing the
    update's receipt: the update is committed, not queued, and the next writer to
    start removes the receipt."""
    form = site.form(update())
    uid = post(app, form).headers["X-FPlane-Update"]
    assert run_writer(site) == 1
    receipt = site.spool / "ids" / uid
    assert not receipt.exists()
    receipt.touch()   # as if the writer had died before removing it

    assert app.get(f"/updates/{uid}?format=json").json["state"] == "committed"
    assert f"update {uid} was already received (committed)" in first_line(post(app, form))
    run_writer(site, whole_loop=True)
    assert not receipt.exists()


def test_a_rejected_update_posted_again_is_102_not_accepted(site, app):
    half_off = status_from_rows([r for r in CURRENT if r.ifuslot not in ACTIVE[: len(ACTIVE) // 2 + 1]],
                                stamp())
    form = site.form(update(half_off))
    uid = post(app, form).headers["X-FPlane-Update"]
    run_writer(site)
    assert post(app, form).headers["X-FPlane-Code"] == "103"   # still held: the same answer
    status, _, err = run_admin(site.config, "reject", uid, "--reason", "bad status")
    assert status == 0, err
    again = post(app, form)
    assert again.headers["X-FPlane-Code"] == "102"
    assert "(rejected: rejected by" in first_line(again) and "bad status" in first_line(again)
    assert site.spool_contents()["new"] == []


def test_a_multipart_body_of_many_parts_is_refused_before_parsing(site):
    parts = b"".join(b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' for _ in range(5000))
    environ = post_environ("/fplane", parts + b"--b--\r\n", "multipart/form-data; boundary=b")
    status, headers, body = call_wsgi(site, environ)
    assert headers["X-FPlane-Code"] == "202" and b"more than 32 parts" in body


# == the spool is unavailable ========================================================

@pytest.mark.parametrize("missing", ["new", "tmp", ""])
def test_spool_unavailable_is_503_401(site, app, missing):
    shutil.rmtree(site.spool / missing)
    response = post(app, site.form(update()))
    assert response.status_int == 503
    assert response.headers["X-FPlane-Code"] == "401"
    assert first_line(response).startswith("401 the spool is unavailable")
    assert "post it again later" in first_line(response)
    assert "Traceback" not in response.text and str(site.root) not in response.text
    assert "X-FPlane-Update" not in response.headers
    assert not (site.spool / "tmp").is_dir() or list((site.spool / "tmp").iterdir()) == []
    assert "cannot spool update" in site.log_text()
