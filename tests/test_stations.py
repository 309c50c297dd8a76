"""wsgi/stations.py: password hashes, the station list file and authentication
(contract.md sections 5 and 7), on real files in tmp_path.

scrypt costs tens of ms a check, so tests make the few hashes they need.
"""
import base64
import hashlib
import os
import re
import stat
import time

import pytest

from wsgi import codes, stations
from wsgi.responses import CodedError
from wsgi.stations import (
    Station,
    StationList,
    add_station,
    hash_password,
    set_password,
    verify_password,
)

HASH_FORMAT = re.compile(r"scrypt\$16384\$8\$1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def known_hash():
    """One hash of a known password, made once for the module."""
    return "correct horse", hash_password("correct horse")


def with_parameters(encoded: str, n, r, p) -> str:
    _, _, _, _, salt, digest = encoded.split("$")
    return "$".join(("scrypt", str(n), str(r), str(p), salt, digest))


# -- hashes ------------------------------------------------------------------------------

def test_a_hash_is_self_describing_scrypt_with_a_16_byte_salt(known_hash):
    _, encoded = known_hash
    match = HASH_FORMAT.fullmatch(encoded)
    assert match, encoded
    assert len(base64.b64decode(match[1])) == 16
    assert len(base64.b64decode(match[2])) == 32


def test_the_same_password_twice_gives_different_salts_and_hashes(known_hash):
    password, first = known_hash
    second = hash_password(password)
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password(password, first) and verify_password(password, second)


def test_verify_accepts_the_right_password_only(known_hash):
    password, encoded = known_hash
    assert verify_password(password, encoded) is True
    assert verify_password(password + " ", encoded) is False
    assert verify_password("Correct horse", encoded) is False
    assert verify_password("", encoded) is False


MALFORMED = [
    "",
    "scrypt",
    "scrypt$x$y",
    "tcs-password",
    "pbkdf2_sha256$600000$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==",
    "scrypt$16384$8$1$not base64!$AAAA",
    "scrypt$16384$8$1$c2FsdHNhbHRzYWx0$",  # no digest
    "scrypt$16384$8$1$$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA==",  # no salt
    "scrypt$-16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
    "scrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==$extra",
    "SCRYPT$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
    "scrypt$１６３８４$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",  # full-width digits
    None,
    b"scrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA==",
]


@pytest.mark.parametrize("encoded", MALFORMED)
def test_a_malformed_hash_never_verifies_and_never_raises(encoded):
    assert verify_password("anything", encoded) is False
    if isinstance(encoded, str):
        assert stations.hash_problem(encoded) is not None


@pytest.mark.parametrize("n, r, p", [
    (2**21, 8, 1),      # N beyond 2**20
    (2**30, 1, 1),
    (2**18, 16, 1),     # work (and 512 MiB) beyond the bound
    (2**14, 10**6, 1),
    (2**14, 8, 10**6),
    (16383, 8, 1),      # not a power of two
    (1, 8, 1),
    (2**14, 0, 1),
    (2**14, 8, 0),
    (10**12, 8, 1),
])
def test_tampered_parameters_are_refused_without_running_them(known_hash, n, r, p):
    password, encoded = known_hash
    tampered = with_parameters(encoded, n, r, p)
    started = time.perf_counter()
    assert verify_password(password, tampered) is False
    assert time.perf_counter() - started < 0.05  # refused, not computed
    assert "out of bounds" in stations.hash_problem(tampered) or \
        "form scrypt" in stations.hash_problem(tampered)


def test_raised_parameters_within_bounds_are_read_from_the_string():
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"pw", salt=salt, n=2**15, r=8, p=1, dklen=32, maxmem=2**26)
    encoded = "$".join(("scrypt", str(2**15), "8", "1", base64.b64encode(salt).decode(),
                        base64.b64encode(digest).decode()))
    assert verify_password("pw", encoded)
    assert not verify_password("px", encoded)


def test_a_huge_password_is_refused_before_hashing(known_hash, monkeypatch):
    _, encoded = known_hash
    calls = count_scrypt(monkeypatch)
    assert verify_password("x" * 1_000_000, encoded) is False
    assert verify_password("é" * 513, encoded) is False  # 1026 bytes
    assert verify_password("\udc80", encoded) is False  # not encodable: no crash
    assert verify_password(12345, encoded) is False
    assert calls == []
    with pytest.raises(ValueError):
        hash_password("x" * 1025)


# -- the file ----------------------------------------------------------------------------

def write_list(path, *lines, header=True):
    text = ("station_id,name,roles,password_hash\n" if header else "") + "".join(
        line + "\n" for line in lines)
    path.write_text(text)
    return path


def test_add_station_stores_only_a_hash_in_a_0600_file(tmp_path):
    path = tmp_path / "station_list.csv"

    password = add_station(path, "tcs", "Telescope control system", "config")

    data = path.read_bytes()
    assert password.encode() not in data
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = data.decode().splitlines()
    assert lines[0] == "station_id,name,roles,password_hash"
    station_id, name, roles, encoded = lines[1].split(",")
    assert (station_id, name, roles) == ("tcs", "Telescope control system", "config")
    assert HASH_FORMAT.fullmatch(encoded)
    assert verify_password(password, encoded)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station_list.csv"]  # no temp left


def test_add_station_keeps_the_other_lines_as_they_are(tmp_path, known_hash):
    _, encoded = known_hash
    original = ("station_id,name,roles,password_hash\r\n"
                "# the telescope\r\n"
                f"tcs , TCS,config,{encoded}\r\n"
                "\r\n"
                "broken line without columns")  # no newline at the end
    path = tmp_path / "station_list.csv"
    path.write_bytes(original.encode())

    add_station(path, "astrometry", "Astrometry, the pipeline", ["positions", "config"])

    text = path.read_bytes().decode()
    assert text.startswith(original + "\n")
    [added] = text[len(original) + 1:].splitlines()
    assert added.startswith('astrometry,"Astrometry, the pipeline",config;positions,scrypt$')
    listed = StationList(path)
    assert listed.get("astrometry").name == "Astrometry, the pipeline"
    assert listed.get("astrometry").roles == frozenset({"config", "positions"})
    assert listed.get("tcs").name == "TCS"


@pytest.mark.parametrize("station_id, name, roles, why", [
    ("tcs", "Again", "config", "already in"),
    ("bad/id", "x", "config", "is not 1 to 64 letters"),
    ("", "x", "config", "is not 1 to 64 letters"),
    ("a" * 65, "x", "config", "is not 1 to 64 letters"),
    ("new", "x", "config;admin", "unknown role 'admin'"),
    ("new", "x", "", "at least one role"),
    ("new", "", "config", "give the station a name"),
    ("new", "two\nlines", "config", "one line of text"),
])
def test_add_station_refuses_with_a_reason_and_changes_nothing(tmp_path, station_id, name,
                                                               roles, why):
    path = tmp_path / "station_list.csv"
    add_station(path, "tcs", "TCS", "config")
    before = path.read_bytes()

    with pytest.raises(ValueError, match=re.escape(why)):
        add_station(path, station_id, name, roles)

    assert path.read_bytes() == before


def test_set_password_changes_only_that_station_s_hash(tmp_path):
    path = tmp_path / "station_list.csv"
    old = add_station(path, "tcs", "TCS", "config")
    add_station(path, "astrometry", "Astrometry", "positions")
    before = path.read_text().splitlines()

    new = set_password(path, "tcs")

    after = path.read_text().splitlines()
    assert new != old and new.encode() not in path.read_bytes()
    assert [after[0], after[2]] == [before[0], before[2]]
    assert after[1].startswith("tcs,TCS,config,scrypt$") and after[1] != before[1]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    encoded = after[1].split(",")[3]
    assert verify_password(new, encoded) and not verify_password(old, encoded)


def test_set_password_repairs_a_line_whose_hash_is_unusable(tmp_path):
    path = write_list(tmp_path / "station_list.csv", "tcs,TCS,config,plaintext-password")
    assert StationList(path).get("tcs") is None

    password = set_password(path, "tcs")

    assert StationList(path).authenticate("tcs", password, "config").station_id == "tcs"
    assert "plaintext-password" not in path.read_text()


@pytest.mark.parametrize("lines, station_id, why", [
    (["tcs,TCS,config,scrypt$x"], "nope", "'nope' is not in"),
    (["tcs,TCS,config,scrypt$x", "tcs,Again,config,scrypt$y"], "tcs", "on lines 2 and 3"),
    (["tcs,TCS,scrypt$x"], "tcs", "3 columns instead of 4"),
    ([], "../etc", "is not 1 to 64 letters"),
])
def test_set_password_refuses_with_a_reason_and_changes_nothing(tmp_path, lines, station_id, why):
    path = write_list(tmp_path / "station_list.csv", *lines)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=re.escape(why)):
        set_password(path, station_id)
    assert path.read_bytes() == before


def test_set_password_without_a_station_list_says_so(tmp_path):
    with pytest.raises(ValueError, match="no station list"):
        set_password(tmp_path / "station_list.csv", "tcs")


def test_malformed_lines_are_skipped_and_listed_in_problems(tmp_path, known_hash):
    _, good = known_hash
    path = write_list(
        tmp_path / "station_list.csv",
        f"tcs,TCS,config,{good}",                               # 2
        "# a comment, ignored",                                 # 3
        "",                                                     # 4
        f"short,Short,{good}",                                  # 5 three columns
        f"bad id,Bad,config,{good}",                            # 6
        f"roles,Roles,config;admin,{good}",                     # 7
        f"tcs,Again,config;positions,{good}",                   # 8 duplicate
        "plain,Plain,config,hunter2",                           # 9 not a hash
        f"huge,Huge,config,{with_parameters(good, 2**24, 8, 1)}",  # 10 tampered
        f'quote,"unbalanced,config,{good}',                     # 11
        f"astrometry,Astrometry,config;positions,{good}",       # 12
    )
    warnings = []

    listed = StationList(path, warn=warnings.append)

    assert [s.station_id for s in listed.stations()] == ["astrometry", "tcs"]
    assert listed.get("tcs") == Station("tcs", "TCS", frozenset({"config"}), good)
    problems = listed.problems
    assert warnings == problems
    assert [re.search(r"line (\d+):", p)[1] for p in problems] == [
        "5", "6", "7", "8", "9", "10", "11"]
    assert all(p.startswith(f"{path}: line ") for p in problems)
    assert "3 columns instead of 4" in problems[0]
    assert "'bad id' is not 1 to 64" in problems[1]
    assert "unknown role 'admin'" in problems[2]
    assert "'tcs' is already on line 2" in problems[3]
    assert "scrypt$N$r$p$salt$hash" in problems[4] and "fplane-admin passwd plain" in problems[4]
    assert "out of bounds" in problems[5]
    assert "hunter2" not in " ".join(problems)


def test_a_missing_header_is_a_problem_but_the_stations_count(tmp_path, known_hash):
    _, good = known_hash
    path = write_list(tmp_path / "station_list.csv", f"tcs,TCS,config,{good}", header=False)
    listed = StationList(path)
    assert listed.get("tcs") is not None
    assert listed.problems == [f"{path}: line 1: expected the header "
                               "station_id,name,roles,password_hash"]


@pytest.mark.parametrize("make, why", [
    (lambda path: None, "No such file"),
    (lambda path: path.mkdir(), "Is a directory"),
    (lambda path: path.write_bytes(b"station_id,name,roles,password_hash\n\xff\xfe\n"),
     "not UTF-8"),
])
def test_a_missing_or_unreadable_list_means_every_station_is_unknown(tmp_path, make, why):
    path = tmp_path / "station_list.csv"
    make(path)
    warnings = []
    listed = StationList(path, warn=warnings.append)

    with pytest.raises(CodedError) as refused:
        listed.authenticate("tcs", "whatever", "config")

    assert refused.value.code == codes.UNKNOWN_STATION
    assert len(listed.problems) == 1 and why in listed.problems[0]
    assert warnings == listed.problems
    listed.get("tcs")
    assert len(warnings) == 1  # warned once per change, not once per request


def test_the_list_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "station_list.csv"
    listed = StationList(path)
    assert listed.get("tcs") is None  # no file yet

    password = add_station(path, "tcs", "TCS", "config")
    assert listed.authenticate("tcs", password, "config").name == "TCS"

    other = add_station(path, "astrometry", "Astrometry", "positions")
    assert listed.authenticate("astrometry", other, "positions").name == "Astrometry"

    path.unlink()
    assert listed.get("tcs") is None
    assert "cannot read the station list" in listed.problems[0]


# -- authenticate ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config_station(tmp_path_factory):
    """A list with 'tcs' (role config); returns (path, password)."""
    path = tmp_path_factory.mktemp("stations") / "station_list.csv"
    password = add_station(path, "tcs", "Telescope control system", "config")
    return path, password


@pytest.mark.parametrize("station_id, password, role, code", [
    ("nope", "guess-7Q", "positions", codes.UNKNOWN_STATION),     # 206 before 203 and 204
    ("../../etc/passwd", "guess-7Q", "config", codes.UNKNOWN_STATION),
    ("", "", "config", codes.UNKNOWN_STATION),
    ("TCS", "right", "config", codes.UNKNOWN_STATION),          # ids are case-sensitive
    ("tcs", "guess-7Q", "positions", codes.WRONG_PASSWORD),        # 203 before 204
    ("tcs", "", "config", codes.WRONG_PASSWORD),
    ("tcs", "right" * 300, "config", codes.WRONG_PASSWORD),
    ("tcs", "right", "positions", codes.NOT_ALLOWED),
    ("tcs", "right", "admin", codes.NOT_ALLOWED),
])
def test_authenticate_checks_station_then_password_then_role(config_station, station_id,
                                                             password, role, code):
    path, right = config_station
    password = password.replace("right", right)
    listed = StationList(path)

    with pytest.raises(CodedError) as refused:
        listed.authenticate(station_id, password, role)

    assert refused.value.code == code
    message = refused.value.message
    assert "\n" not in message
    assert right not in message and (not password or password not in message)
    if code == codes.WRONG_PASSWORD:
        assert "fplane-admin passwd tcs" in message
    if code == codes.NOT_ALLOWED:
        assert f"not allowed to post {role}" in message and "its roles: config" in message


def test_authenticate_returns_the_station(config_station):
    path, password = config_station
    station = StationList(path).authenticate("tcs", password, "config")
    assert station.station_id == "tcs"
    assert station.roles == frozenset({"config"})
    assert station.name == "Telescope control system"


def count_scrypt(monkeypatch) -> list:
    """Instrumentation: record each real scrypt call (the real one still runs)."""
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs.get("n"))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def test_every_check_runs_the_slow_hash_right_or_wrong(tmp_path, monkeypatch):
    """No shortcut after a first success: a wrong guess costs an attacker a full scrypt,
    and a password changed with passwd is refused at once."""
    path = tmp_path / "station_list.csv"
    password = add_station(path, "tcs", "TCS", "config")
    listed = StationList(path)
    calls = count_scrypt(monkeypatch)

    for _ in range(3):
        listed.authenticate("tcs", password, "config")
    with pytest.raises(CodedError) as refused:
        listed.authenticate("tcs", password + "x", "config")
    assert refused.value.code == codes.WRONG_PASSWORD
    assert len(calls) == 4

    new = set_password(path, "tcs")  # one scrypt to make the new hash
    with pytest.raises(CodedError) as refused:
        listed.authenticate("tcs", password, "config")
    assert refused.value.code == codes.WRONG_PASSWORD
    assert listed.authenticate("tcs", new, "config").station_id == "tcs"
    assert len(calls) == 7


def test_a_station_list_holds_no_password(tmp_path):
    path = tmp_path / "station_list.csv"
    password = add_station(path, "tcs", "TCS", "config")
    listed = StationList(path)
    listed.authenticate("tcs", password, "config")
    assert password not in repr(vars(listed))
