"""Password guessing: a limit of failed attempts per station and per client address.

After ``[Server] max_failed_logins`` failed attempts within ``[Server] login_lockout``
seconds, a station (whoever asks for it) and a client address (whichever station it
names) are answered 213 (HTTP 429 with ``Retry-After``) for ``login_lockout`` seconds,
before any password is checked: a locked guesser costs no slow hash and learns nothing,
not even whether a guess was right. Once the lockout has passed, the right password
works again at once.

The counts live in a small SQLite file in the data directory (``failed_logins.sqlite``),
not in process memory: every uWSGI worker sees the same counts, and a restarted worker
(max-requests, harakiri, a crash) forgets nothing. Only the station id, the address,
counts and times are stored, never a password.

Both keys count. The station's: an attacker with many addresses still gets
``max_failed_logins`` guesses per lockout for a station. The address's: one address
cannot guess across many stations (a guess at an unknown station counts for the
address only, so made-up station ids cannot grow the file). The price, documented in
the README: someone who knows a station's id can keep that station locked out by failing
on purpose; its posts are then answered 213 until the guessing stops, and the station
retries (update_fplane does), losing nothing.
"""

import math
import os
import sqlite3
import time
from pathlib import Path

from wsgi import codes
from wsgi.logs import printable
from wsgi.responses import CodedError

FILENAME = "failed_logins.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,        -- 'station <id>' or 'address <addr>'
    count INTEGER NOT NULL,      -- failures since first_at
    first_at REAL NOT NULL,      -- Unix time of the first of them
    locked_until REAL NOT NULL   -- Unix time; 0 when not locked
)
"""


def station_key(station_id: str) -> str:
    return f"station {station_id}"


def address_key(address: str) -> str:
    return f"address {address}"


class GuessLimiter:
    """The failure counts in ``<data_dir>/failed_logins.sqlite``, shared by all workers."""

    def __init__(self, data_dir: Path, max_failures: int, lockout: float, log):
        self.path = Path(data_dir) / FILENAME
        self.max_failures = max_failures
        self.lockout = lockout
        self.log = log
        self._db = None
        self._pid = None

    def _connection(self) -> sqlite3.Connection:
        # Opened lazily in each worker, after uWSGI's fork: a connection must not cross one.
        if self._db is None or self._pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")   # counts, not data: a lost second is fine
            db.execute(_SCHEMA)
            self._db, self._pid = db, os.getpid()
        return self._db

    def check(self, keys: list[str], now: float | None = None) -> None:
        """CodedError 213 with Retry-After while any of ``keys`` is locked out; 401 when
        the counts cannot be read (refusing is safer than letting guesses through)."""
        now = time.time() if now is None else now
        try:
            rows = self._connection().execute(
                f"SELECT key, locked_until FROM failures WHERE key IN ({','.join('?' * len(keys))})"
                " AND locked_until > ?", (*keys, now)).fetchall()
        except (sqlite3.Error, OSError) as err:
            self.log.error("failed logins: cannot read %s: %s", self.path, err)
            raise CodedError(codes.UNAVAILABLE, "the failed-login counts are unavailable: "
                                                "nothing was accepted; post again later") from None
        if rows:
            key, until = max(rows, key=lambda row: row[1])
            wait = max(1, math.ceil(until - now))
            raise CodedError(codes.TOO_MANY_FAILURES,
                             f"too many failed password attempts for {key}: wait {wait} s "
                             f"before trying again",
                             [f"after {self.max_failures} failed attempts within "
                              f"{self.lockout:g} s a station and a client address are refused "
                              f"for {self.lockout:g} s ([Server] max_failed_logins, login_lockout)"],
                             headers=[("Retry-After", str(wait))])

    def failed(self, keys: list[str], now: float | None = None) -> None:
        """Count one failed attempt for each of ``keys``; lock out those that reach the limit.
        A count that cannot be written is logged: the attempt was refused anyway."""
        now = time.time() if now is None else now
        try:
            db = self._connection()
            with _immediate(db):
                # Forget what has passed: expired counts and lockouts (keeps the file small).
                db.execute("DELETE FROM failures WHERE first_at <= ? AND locked_until <= ?",
                           (now - self.lockout, now))
                for key in keys:
                    row = db.execute("SELECT count FROM failures WHERE key = ?", (key,)).fetchone()
                    count = (row[0] if row else 0) + 1
                    locked_until = now + self.lockout if count >= self.max_failures else 0
                    if row is None:
                        db.execute("INSERT INTO failures VALUES (?, ?, ?, ?)",
                                   (key, count, now, locked_until))
                    elif locked_until:
                        # locked: the count starts afresh when the lockout ends
                        db.execute("UPDATE failures SET count = 0, first_at = ?, locked_until = ? "
                                   "WHERE key = ?", (locked_until, locked_until, key))
                    else:
                        db.execute("UPDATE failures SET count = ? WHERE key = ?", (count, key))
                    if locked_until:
                        self.log.warning("failed logins: %s locked out for %g s after %d failed "
                                         "password attempts", printable(key), self.lockout, count)
        except (sqlite3.Error, OSError) as err:
            self.log.error("failed logins: cannot count a failure in %s: %s", self.path, err)

    def succeeded(self, station_id: str) -> None:
        """The station's owner got in: its earlier failures (a mistyped password) are
        forgiven. The address's are not, so that a client with one good password cannot
        clear its count while guessing at other stations."""
        key = station_key(station_id)
        try:
            db = self._connection()
            # Looked at first: a write for every good post would queue the workers' posts
            # behind one another for nothing.
            if db.execute("SELECT 1 FROM failures WHERE key = ?", (key,)).fetchone():
                db.execute("DELETE FROM failures WHERE key = ?", (key,))
        except (sqlite3.Error, OSError) as err:
            self.log.error("failed logins: cannot clear the count in %s: %s", self.path, err)


class _immediate:
    """BEGIN IMMEDIATE ... COMMIT: the read and the write of a count in one transaction,
    so two workers counting at once never lose one."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback):
        self.db.execute("ROLLBACK" if kind else "COMMIT")
        return False
