"""The service a drill works on: examples/uwsgi.ini under uWSGI with its attached
fplane-writer, on a free loopback port, with a store made by the real `fplane-admin init`
and `import`, a station made by `add-station`, and helpers to post, read and count.

Nothing here fakes a part: posts go over HTTP to the uWSGI router, the writer is the
process uWSGI starts (and restarts when it dies), and the counts come from the store file,
the spool directories and the real `fplane-admin` command.
"""

import hashlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

from tests import processes
from tests.fplane_samples import make_rows, numbered_update_data
from tests.support import REPO, free_port, uwsgi_binary, wait_for, write_config
from wsgi.config import load_config
from wsgi.fplane import render_fplane
from wsgi.heartbeat import read_heartbeat
from wsgi.spool import Spool, update_id

UWSGI_INI = REPO / "examples" / "uwsgi.ini"
BIN = Path(sys.executable).parent
STATION = "drill-tcs"
BASE_VALID_FROM = "2018-07-01T00:00:00"


class DrillFailure(Exception):
    """The service did not do what the drill needs in order to go on (it did not start,
    a condition never came): the drill stops and reports it."""


def valid_from(n: int) -> str:
    return f"{BASE_VALID_FROM}.{n:06d}Z"


class Post:
    """One post of update ``n``: its bytes made once, so a retry sends the same update
    (same data, same target: the same update id)."""

    def __init__(self, n: int, password: str):
        self.n = n
        data = numbered_update_data(n, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        checksum = hashlib.sha256(data.encode()).hexdigest()
        self.path = f"/fplane/{valid_from(n)}"
        self.update_id = update_id(STATION, checksum, f"config/{valid_from(n)}")
        body = urllib.parse.urlencode({"station_id": STATION, "password": password,
                                       "checksum": checksum, "data": data}).encode("ascii")
        self.request = (f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Content-Type: application/x-www-form-urlencoded\r\nAccept: text/plain\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


class Answer:
    """An HTTP answer: status, X-FPlane-Code and X-FPlane-Update (None when absent)."""

    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body
        self.code = headers.get("x-fplane-code")
        self.update_id = headers.get("x-fplane-update")

    def __repr__(self) -> str:
        return f"Answer({self.status}, code={self.code}, {self.body[:80]!r})"


_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")


def http(port: int, request: bytes, timeout: float = 30) -> Answer | None:
    """One request on a connection of its own; None when no whole answer came (the
    connection refused, reset or closed early: the client cannot know what happened)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
                head, blank, body = answer.partition(b"\r\n\r\n")
                match = _CONTENT_LENGTH.search(head) if blank else None
                if match and len(body) >= int(match[1]):
                    break
    except OSError:
        return None
    head, blank, body = answer.partition(b"\r\n\r\n")
    if not blank:
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    match = _CONTENT_LENGTH.search(head)
    if match and len(body) < int(match[1]):
        return None
    try:
        return Answer(int(status_line.split()[1]), headers, body)
    except (IndexError, ValueError):
        return None


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("ascii")


class Service:
    """A store, a spool and a station in ``workdir``; uWSGI started and stopped on demand.

    ``spool_dir`` / ``data_dir``: where they go (a size-limited mount for disk-full)."""

    def __init__(self, workdir: Path, writer_sleep: float = 0.2, max_attempts: int = 3,
                 spool_dir: Path | None = None, data_dir: Path | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        general = {}
        if spool_dir is not None:
            general["spool_dir"] = str(spool_dir)
        if data_dir is not None:
            general["data_dir"] = str(data_dir)
        self.config_path = write_config(self.workdir, General=general,
                                        Writer={"sleep": str(writer_sleep),
                                                "max_attempts": str(max_attempts)})
        # The real command, in a process of its own (drills run side by side in threads,
        # and tests.support's in-process helpers redirect sys.stdout, which threads share)
        base = self.workdir / "base-fplane.txt"
        base.write_text(render_fplane(make_rows(), ["drill base"], full=True))
        self._admin_ok("init")
        self._admin_ok("import", str(base), "--valid-from", "20180601", "--comment", "drill base")
        self.password = self._admin_ok("add-station", STATION, "--name", "drill station",
                                       "--roles", "config").strip().splitlines()[-1]
        self.config = load_config(self.config_path)
        self.spool = Spool(self.config.spool_dir)
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.log = self.workdir / "uwsgi.log"
        self.starts = 0

    # -- uWSGI ------------------------------------------------------------------------

    def start(self, attached_writer: bool = True) -> "Service":
        """uWSGI from examples/uwsgi.ini; without ``attached_writer``, from a copy of it
        that lacks only the attach-daemon2 line, for a drill that starts, kills and starts
        again fplane-writer itself (start_writer): uWSGI waits longer and longer before it
        starts a daemon that keeps dying (its "throttling"), which would make fifty kills
        take an hour."""
        self.port = free_port()
        env = {**os.environ, "FPLANE_CONFIG": str(self.config_path), "FPLANE_PORT": str(self.port),
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        ini = UWSGI_INI if attached_writer else self._ini_without_writer()
        self.attached_writer = attached_writer
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([uwsgi_binary(), "--ini", str(ini)], env=env,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.workdir, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DrillFailure(f"uWSGI exited with {self.process.returncode}: see {self.log}")
            answer = http(self.port, get_request("/?format=txt"), timeout=2)
            if answer is not None and answer.status == 200:
                if attached_writer:
                    self.wait_for(lambda: self.writer_pid() is not None, 30, "the writer to start")
                return self
            time.sleep(0.1)
        raise DrillFailure(f"uWSGI did not answer within 60 s: see {self.log}")

    def _ini_without_writer(self) -> Path:
        lines = UWSGI_INI.read_text().replace("%d", str(UWSGI_INI.parent)).splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("attach-daemon2")]
        if len(kept) != len(lines) - 1:
            raise DrillFailure("examples/uwsgi.ini must have exactly one attach-daemon2 line")
        path = self.workdir / "uwsgi-without-writer.ini"
        path.write_text("".join(kept))
        return path

    def start_writer(self) -> subprocess.Popen:
        """fplane-writer as uWSGI runs it (the same command), started by the drill."""
        with open(self.workdir / "writer.out", "ab") as out:
            self.writer_process = subprocess.Popen(
                [str(BIN / "fplane-writer"), "-c", str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        return self.writer_process

    def stop_writer(self) -> None:
        process = getattr(self, "writer_process", None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the master (die-on-term): workers, router and writer stop with it."""
        self.stop_writer()
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)   # anything left of its session
        except ProcessLookupError:
            pass
        self.process = None
        return process.returncode

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _children(self) -> list[tuple[int, str]]:
        """(pid, command line) of uWSGI's master's descendants."""
        if self.process is None:
            return []
        return [(p.pid, p.cmdline) for p in processes.descendants(self.process.pid)]

    def writer_pid(self) -> int | None:
        pids = [pid for pid, cmd in self._children()
                if "fplane-writer" in cmd and cmd.split()[0] not in ("/bin/sh", "sh", "nice")
                and processes.alive(pid)]
        return pids[0] if pids else None

    def worker_pids(self) -> list[int]:
        return [pid for pid, cmd in self._children()
                if "uWSGI worker" in cmd and processes.alive(pid)]

    def writer_respawns(self) -> int:
        """How often uWSGI has started the writer again after it died (its log says so)."""
        return self.log.read_text(errors="replace").count("[uwsgi-daemons] respawning")

    # -- HTTP -------------------------------------------------------------------------

    def post(self, post: Post, timeout: float = 30) -> Answer | None:
        return http(self.port, post.request, timeout)

    def get(self, path: str, timeout: float = 30) -> Answer | None:
        return http(self.port, get_request(path), timeout)

    # -- what the store and the spool hold --------------------------------------------

    def commits_by_update(self) -> dict[str, int]:
        """update id -> how many versions its commit made (the writer's comment names the
        update), for every update the store recorded as committed or unchanged."""
        db = sqlite3.connect(f"{self.config.store_path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            recorded = {uid: 0 for (uid,) in db.execute(
                "SELECT update_id FROM updates WHERE state IN ('committed', 'unchanged')")}
            for (comment,) in db.execute("SELECT comment FROM versions"):
                match = re.search(r"\bupdate ([0-9a-f]{20})\b", comment or "")
                if match:
                    recorded[match[1]] = recorded.get(match[1], 0) + 1
        finally:
            db.close()
        return recorded

    def spool_counts(self) -> dict[str, int]:
        return {d: len(os.listdir(self.spool.root / d))
                for d in ("tmp", "new", "cur", "done", "failed", "ids")}

    def admin(self, *args) -> subprocess.CompletedProcess:
        """The real fplane-admin command."""
        return subprocess.run([str(BIN / "fplane-admin"), "-c", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=120)

    def _admin_ok(self, *args) -> str:
        done = self.admin(*args)
        if done.returncode != 0:
            raise DrillFailure(f"fplane-admin {args[0]} failed: {done.stderr}")
        return done.stdout

    def heartbeat(self) -> dict:
        return read_heartbeat(self.config.data_dir) or {}

    def wait_drained(self, timeout: float) -> None:
        """Until new/ and cur/ are empty and the writer is idle."""
        self.wait_for(lambda: self.spool.backlog() == 0 and self.heartbeat().get("state") == "idle",
                      timeout, "the writer to drain the spool")

    @staticmethod
    def wait_for(condition, timeout: float, what: str):
        return wait_for(condition, timeout, what, poll=0.05, error=DrillFailure)


def check_outcome(posts, answers: dict, commits: dict[str, int]) -> dict:
    """The drill's verdict on posts: answered 100 must be committed exactly once, anything
    else (no answer, a coded refusal) at most once; never twice.

    ``answers``: update id -> the last Answer (or None) its post got."""
    accepted = [p for p in posts if (a := answers.get(p.update_id)) is not None and a.code == "100"]
    lost = [p.update_id for p in accepted if commits.get(p.update_id, 0) == 0]
    duplicated = [uid for uid, n in commits.items() if n > 1]
    unanswered = [p for p in posts if p not in accepted]
    return {"posted": len(posts), "answered_100": len(accepted),
            "not_answered_100": len(unanswered),
            "not_answered_committed": sum(1 for p in unanswered if commits.get(p.update_id, 0) == 1),
            "lost": len(lost), "duplicated": len(duplicated),
            "lost_ids": lost[:5], "duplicated_ids": duplicated[:5]}
