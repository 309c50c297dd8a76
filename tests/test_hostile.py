"""Known attacks against the running service: examples/uwsgi.ini under uWSGI on a free
loopback port, spoken to over raw sockets so that every byte is the attacker's choice.

Every request in the table must be answered with an X-FPlane-Code, never a 5xx (503 only
with code 401, an unavailable store), never a stack trace, a server path or a file it
should not show; afterwards the service still answers, and every line of its log is one
well-formed line (nothing a client sent forged or broke one). The few requests uWSGI
drops unanswered by design (README: request line and headers beyond buffer-size, a body
beyond limit-post) are listed as such and checked to be dropped, not half-answered.
"""

import hashlib
import json
import re
import socket
import threading
import time
from datetime import datetime, timezone
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest

from tests.fplane_samples import make_rows, status_from_rows, swap_ifus
from tests.support import add_station, import_rows, init_store, write_config
from tests.test_deploy import running_uwsgi
from wsgi import codes

WORKERS = 4   # processes in examples/uwsgi.ini


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    # Wrong passwords are part of the table: no lockout here (tests/test_guessing.py).
    config = write_config(tmp, Server={"max_failed_logins": "1000000"})
    init_store(config)
    import_rows(config, make_rows(), "20180601", "--comment", "first light")
    password = add_station(config, "tcs", "config;positions")
    with running_uwsgi(config, tmp / "uwsgi.log") as (base, _):
        yield int(base.rsplit(":", 1)[1]), password, tmp


# -- talking HTTP byte by byte -------------------------------------------------------------

class Reply:
    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.code = self.headers.get("x-fplane-code")

    def __repr__(self):
        return f"<HTTP {self.status} code {self.code} {self.body[:120]!r}>"


def exchange(port: int, request: bytes, timeout: float = 20) -> Reply | None:
    """Send ``request`` as is; the reply, or None when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass   # refused before the whole request was sent: whatever came back counts
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    raw = b"".join(chunks)
    return Reply(raw) if raw else None


def request(method: bytes, target: bytes, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    headers = dict(headers or {})
    if body and b"Content-Length" not in headers:
        headers[b"Content-Length"] = str(len(body)).encode()
    lines += [name + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def get(target: str | bytes) -> bytes:
    return request(b"GET", target.encode("latin-1") if isinstance(target, str) else target)


URLENCODED = {b"Content-Type": b"application/x-www-form-urlencoded"}


def form_post(target: str, fields, headers=URLENCODED) -> bytes:
    """POST of urlencoded ``fields`` ((name, bytes value) pairs, repeats allowed)."""
    body = "&".join(f"{quote(name)}={quote_from_bytes(value, safe='')}" for name, value in fields)
    return request(b"POST", target.encode("latin-1"), headers, body.encode("ascii"))


def status_post(password: str, data: bytes, target: str = "/fplane", station: bytes = b"tcs") -> bytes:
    return form_post(target, [("station_id", station), ("password", password.encode()),
                              ("data", data), ("checksum", hashlib.sha256(data).hexdigest().encode())])


def dry_run_data() -> bytes:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"config": status_from_rows(swap_ifus(make_rows(), 31, 32), now),
                       "commit": False}).encode()


# -- what every answer must be -------------------------------------------------------------

def assert_coded(reply: Reply, label: str, tmp) -> None:
    assert reply is not None, f"{label}: no answer"
    assert reply.code is not None, f"{label}: no X-FPlane-Code: {reply!r}"
    assert int(reply.code) in codes.CODES, f"{label}: unknown code {reply.code}"
    assert reply.status == codes.CODES[int(reply.code)].http_status or (
        reply.status == 202 and reply.code == "100"), f"{label}: {reply!r}"
    assert reply.status < 500 or (reply.status, reply.code) == (503, "401"), f"{label}: {reply!r}"
    for leak in (b"Traceback", b"root:x:0", str(tmp).encode(), b"/etc/passwd\n"):
        assert leak not in reply.body, f"{label}: the body shows {leak!r}"


def assert_still_serving(port: int) -> None:
    reply = exchange(port, get("/fplane/20180707?actual_pos=0&full_fplane=1"))
    assert reply is not None and (reply.status, reply.code) == (200, "100"), reply


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S")


def assert_log_intact(tmp) -> None:
    """Every line of the log is one of ours: no client text began a line or broke one."""
    text = (tmp / "log" / "fplaneserver.log").read_bytes()
    for bad in (b"\r", b"\x00", b"\x1b", b"\x9b", "\u2028".encode(), "\x9b".encode()):
        assert bad not in text, f"the log holds {bad!r}"
    for line in text.decode("utf-8").split("\n")[:-1]:
        assert LOG_LINE.match(line), f"a log line that is not one of ours: {line[:200]!r}"
        assert "FORGED" not in line[:40], line


# -- the table -------------------------------------------------------------------------------

TRAVERSALS = ["../../../../etc/passwd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
              "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%252f..%252fetc%252fpasswd",
              "....//....//etc/passwd", "..\\..\\..\\etc\\passwd", "%c0%ae%c0%ae/etc/passwd",
              "..%00/etc/passwd", "%2e%2e", ".."]
GET_TEMPLATES = ["/fplane/{}", "/map/{}.svg", "/diff/{}/20180707", "/diff/20180707/{}", "/ifu/{}",
                 "/updates/{}", "/fplane/20180707?known_at={}", "/?date={}", "/?compare={}",
                 "/history?format={}", "/sys/config?format={}"]
POST_TEMPLATES = ["/fplane/{}", "/positions/{}"]

# (label, request, expected (HTTP status, code); None: any coded refusal; ANY: any coded
# answer, for the traversals: a plain ".." segment is resolved by uWSGI, so /ifu/.. is the
# front page, and what matters is that no file is shown (assert_coded looks for one)
ANY = "any"
Case = tuple[str, bytes, tuple[int, str] | None | str]


def table(password: str) -> list[Case]:
    data = dry_run_data()
    cases: list[Case] = []
    for template in GET_TEMPLATES:
        for attack in TRAVERSALS:
            cases.append((f"traversal GET {template} {attack}", get(template.format(attack)), ANY))
    for template in POST_TEMPLATES:
        for attack in TRAVERSALS:
            cases.append((f"traversal POST {template} {attack}",
                          status_post(password, data, template.format(attack)), ANY))
    cases += [
        # NUL bytes, escaped and raw
        ("NUL in date", get("/fplane/2018%000707"), (400, "301")),
        ("NUL after date", get("/fplane/20180707%00"), (400, "301")),
        ("NUL in query", get("/fplane/20180707?known_at=2018%000707"), (400, "301")),
        ("NUL in format", get("/fplane/20180707?format=json%00"), (400, "306")),
        ("NUL in update id", get("/updates/%00"), (404, "303")),
        ("NUL in a form field", status_post(password, data, station=b"tcs\x00"), (403, "206")),
        ("NUL in data", status_post(password, b'{"config": {}\x00}'), (400, "208")),
        # overlong paths and queries that still reach the app
        ("30,000-character date", get("/fplane/" + "9" * 30_000), (400, "301")),
        ("30,000-character query", get("/fplane/20180707?known_at=" + "9" * 30_000), (400, "301")),
        ("2,000 repeated parameters", get("/fplane/20180707?" + "actual_pos=1&" * 2000), (200, "100")),
        ("2,000 parameters, two values", get("/fplane/20180707?" + "actual_pos=1&actual_pos=0&" * 1000),
         (400, "306")),
        ("5,000-digit IFU id", get("/ifu/" + "9" * 5000), None),
        # invalid UTF-8, escaped and raw
        ("invalid UTF-8 date", get("/fplane/%ff%fe"), (400, "301")),
        ("raw invalid UTF-8 date", get(b"/fplane/\xff\xfe"), (400, "301")),
        ("invalid UTF-8 query", get("/fplane/20180707?known_at=%c3%28"), (400, "306")),
        ("raw invalid UTF-8 query", get(b"/fplane/20180707?known_at=\xc3\x28"), (400, "306")),
        ("invalid UTF-8 on the page", get("/?date=%ff"), None),
        ("invalid UTF-8 IFU", get("/ifu/%ff"), None),
        ("invalid UTF-8 map", get("/map/%ff.svg"), None),
        ("invalid UTF-8 diff", get("/diff/%ff/%fe"), None),
        ("invalid UTF-8 update id", get("/updates/%ff"), (404, "303")),
        ("invalid UTF-8 station", status_post(password, data, station=b"\xff\xfe"), (403, "206")),
        ("invalid UTF-8 password", form_post("/fplane", [
            ("station_id", b"tcs"), ("password", b"\xff"), ("data", data),
            ("checksum", hashlib.sha256(data).hexdigest().encode())]), (403, "203")),
        ("invalid UTF-8 data", status_post(password, b'{"config": "\xff"}'), (400, "208")),
        # JSON bombs (within max_body once urlencoded, so that they reach the JSON check)
        # and huge numbers
        ("JSON nesting bomb (lists)", status_post(password, b"[" * 150_000 + b"]" * 150_000),
         (422, "209")),
        ("JSON nesting bomb (objects)",
         status_post(password, b'{"a":' * 30_000 + b"1" + b"}" * 30_000), (422, "209")),
        ("200,000 items", status_post(password, b"[" + b"0," * 200_000 + b"0]"), (422, "209")),
        ("5,000-digit integer", status_post(password, json.dumps(
            {"config": {"timestamp": "2018-07-07T00:00:00Z", "spectrographs": [
                {"ifuslot": "013", "specid": "001", "specslot": "001", "ifuid": "001"}]},
             "commit": False}).replace('"001"}', "1" + "0" * 5000 + "}", 1).encode()), (422, "209")),
        ("1e400 position", status_post(password, json.dumps(
            {"positions": [{"ifuslot": "021", "x": 0, "y": 0}], "commit": False}).replace(
            '"x": 0', '"x": 1e400').encode(), "/positions"), (422, "209")),
        ("NaN position", status_post(password, json.dumps(
            {"positions": [{"ifuslot": "021", "x": 0, "y": 0}], "commit": False}).replace(
            '"x": 0', '"x": NaN').encode(), "/positions"), None),
        ("huge year", get("/fplane/99999999999999999999999"), (400, "301")),
        # duplicate form fields
        ("station_id twice", form_post("/fplane", [
            ("station_id", b"tcs"), ("station_id", b"tcs"), ("password", password.encode()),
            ("data", data), ("checksum", hashlib.sha256(data).hexdigest().encode())]), (400, "202")),
        ("data twice", form_post("/fplane", [
            ("station_id", b"tcs"), ("password", password.encode()), ("data", data),
            ("data", b"{}"), ("checksum", hashlib.sha256(data).hexdigest().encode())]), (400, "202")),
        ("multipart field twice", request(b"POST", b"/fplane", {
            b"Content-Type": b"multipart/form-data; boundary=b"},
            b"".join(b'--b\r\nContent-Disposition: form-data; name="station_id"\r\n\r\ntcs\r\n'
                     for _ in range(2)) + b"--b--\r\n"), (400, "202")),
        ("40 multipart parts", request(b"POST", b"/fplane", {
            b"Content-Type": b"multipart/form-data; boundary=b"},
            b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' * 40 + b"--b--\r\n"),
         (400, "202")),
        # wrong content types
        ("JSON body", request(b"POST", b"/fplane", {b"Content-Type": b"application/json"}, data),
         (400, "202")),
        ("text body", request(b"POST", b"/fplane", {b"Content-Type": b"text/plain"}, b"station_id=tcs"),
         (400, "202")),
        ("no content type", request(b"POST", b"/fplane", {}, b"station_id=tcs"), (400, "202")),
        ("multipart without boundary", request(b"POST", b"/fplane", {
            b"Content-Type": b"multipart/form-data"}, b"--x\r\n\r\n"), (400, "202")),
        ("multipart, other boundary", request(b"POST", b"/fplane", {
            b"Content-Type": b"multipart/form-data; boundary=zzz"}, b"--b\r\n\r\n--b--\r\n"),
         (400, "202")),
        ("garbage content type", request(b"POST", b"/fplane", {
            b"Content-Type": b";;;=\xff; boundary=\"\""}, b"a=b"), (400, "202")),
        # bodies: too large for the app, a lying length
        ("1.5 MiB body", request(b"POST", b"/fplane", URLENCODED, b"x" * (3 << 19)), (413, "212")),
        # control characters in paths, queries and fields (the log is checked afterwards)
        ("LF in date", get("/fplane/2018%0A2026-12-04%2000:00:00,000%201%20INFO%20FORGED"), (400, "301")),
        ("CR LF in date", get("/fplane/x%0D%0A2026-12-04%2000:00:00,000%201%20ERROR%20FORGED"), (400, "301")),
        ("ANSI escape in date", get("/fplane/%1b[2J%1b[31mFORGED"), (400, "301")),
        ("U+2028 in date", get("/fplane/x%E2%80%A8FORGED"), (400, "301")),
        ("C1 CSI in date", get("/fplane/x%C2%9B2JFORGED"), (400, "301")),
        ("raw ESC in path", get(b"/fplane/\x1b[31mFORGED"), (400, "301")),
        ("raw ESC in query", get(b"/fplane/20180707?x=\x1b[31mFORGED"), (200, "100")),
        ("LF in an unknown path", get("/nothing%0A2026-12-04%2000:00:00,000%201%20INFO%20FORGED"), (404, "303")),
        ("LF in an update id", get("/updates/%0AFORGED"), (404, "303")),
        ("LF in a station id", status_post(password, data, station=b"tcs\n2026 FORGED"), (403, "206")),
        ("ESC in a password", form_post("/fplane", [
            ("station_id", b"tcs"), ("password", b"\x1b[31m\nFORGED"), ("data", data),
            ("checksum", hashlib.sha256(data).hexdigest().encode())]), (403, "203")),
        # methods other than GET, HEAD, POST, OPTIONS
        *[(f"{m.decode()} /fplane/20180707", request(m, b"/fplane/20180707"), (405, "305"))
          for m in (b"PUT", b"DELETE", b"PATCH", b"TRACE", b"PROPFIND", b"FOO", b"get")],
        ("PUT with a body", request(b"PUT", b"/fplane", URLENCODED, b"station_id=tcs"), (405, "305")),
        ("DELETE an update", request(b"DELETE", b"/updates/8443b7066d6d60f1d5b4"), (405, "305")),
        ("TRACE with a header to echo", request(b"TRACE", b"/", {b"X-Secret": b"FORGED"}), (405, "305")),
    ]
    return cases


def test_known_attacks_get_coded_answers(service):
    port, password, tmp = service
    failures = []
    for label, raw, expected in table(password):
        reply = exchange(port, raw)
        try:
            assert_coded(reply, label, tmp)
            if expected == ANY:
                pass
            elif expected is not None:
                assert (reply.status, reply.code) == expected, f"{label}: {reply!r}, expected {expected}"
            else:
                assert 400 <= reply.status < 500, f"{label}: {reply!r}"
            if label.startswith("TRACE"):
                assert b"FORGED" not in reply.body, "TRACE echoed the request"
        except AssertionError as err:
            failures.append(str(err))
    assert not failures, "\n".join(failures)
    assert_still_serving(port)
    assert_log_intact(tmp)


def test_requests_uwsgi_drops_are_dropped_whole(service):
    """Beyond buffer-size and limit-post, uWSGI closes the connection unanswered (README):
    no partial answer, nothing reaches the app, and the service goes on."""
    port, _, tmp = service
    assert exchange(port, get("/fplane/" + "9" * 70_000)) is None
    assert exchange(port, request(b"POST", b"/fplane", URLENCODED, b"x" * (3 << 20))) is None
    assert exchange(port, request(b"POST", b"/fplane", {
        **URLENCODED, b"Content-Length": b"99999999999999999999999"}, b"x")) is None
    assert_still_serving(port)
    assert_log_intact(tmp)


def test_slow_bodies_do_not_stop_gets(service):
    """Twice as many clients as workers send a post's headers, then its body a few bytes at
    a time: GETs are answered all along (the fastrouter in examples/uwsgi.ini reads each
    body whole before a worker sees the request), and each slow post, once complete, gets
    its coded answer."""
    port, password, tmp = service
    data = dry_run_data()
    body = urlencode({"station_id": "tcs", "password": password + "-wrong", "data": data.decode(),
                      "checksum": hashlib.sha256(data).hexdigest()}).encode()
    head = request(b"POST", b"/fplane", {**URLENCODED, b"Content-Length": str(len(body)).encode()})
    answers = [None] * (2 * WORKERS)
    sent_all = threading.Event()
    # A Content-Length that is no number: the fastrouter waits for a body it cannot measure
    # (uWSGI reads "ten" as some large number) until its timeout, 30 s, and closes unanswered;
    # meanwhile it holds a router socket, not a worker.
    unmeasurable = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(WORKERS)]
    for n, sock in enumerate(unmeasurable):
        sock.sendall(request(b"POST", b"/fplane", {**URLENCODED, b"Content-Length": (b"ten", b"-1")[n % 2]},
                             b"station_id=tcs"))

    def slow_client(n):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(head + body[:10])
            sent_all.wait(timeout=60)   # hold the body back until the GETs have been made
            sock.sendall(body[10:])
            answers[n] = Reply(b"".join(iter(lambda: sock.recv(65536), b"")))

    clients = [threading.Thread(target=slow_client, args=(n,)) for n in range(2 * WORKERS)]
    for client in clients:
        client.start()
    try:
        time.sleep(1.0)   # every slow client connected and stalled
        slowest = 0.0
        for n in range(20):
            started = time.monotonic()
            reply = exchange(port, get(f"/fplane/2018070{n % 9 + 1}"), timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            assert reply is not None and reply.code == "100", reply
        assert slowest < 2.0, f"a GET waited {slowest:.1f} s behind the slow posts"
    finally:
        sent_all.set()
        for client in clients:
            client.join(timeout=60)
        for sock in unmeasurable:
            sock.close()
    assert [(a.status, a.code) for a in answers] == [(403, "203")] * (2 * WORKERS)
    assert_log_intact(tmp)


def test_a_burst_of_clients_is_answered_whole(service):
    """Three hundred clients at once, more than uWSGI's default listen queue (100): each gets
    its answer. (A full queue on the routers' and workers' Unix sockets refuses at once and the
    client's connection is closed unanswered: examples/uwsgi.ini sets listen = 1024.)"""
    port, _, _ = service
    clients = 300
    ready = threading.Barrier(clients)
    answers = [None] * clients

    def client(n):
        ready.wait(timeout=60)
        answers[n] = exchange(port, get(f"/fplane/2018070{n % 9 + 1}T0{n % 10}0000?format=json"),
                              timeout=60)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    unanswered = sum(answer is None for answer in answers)
    assert unanswered == 0, f"{unanswered} of {clients} clients got no answer"
    assert {(a.status, a.code) for a in answers} == {(200, "100")}
