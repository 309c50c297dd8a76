"""The store: the bitemporal history of the focal plane in one SQLite database (WAL mode).

Every configuration version has ``valid_from`` (when it became true on the instrument) and
``recorded_at`` (when the store learned it), who recorded it, a comment and its source.
Rows live in content-addressed configurations: a version points at the full row set
(every seat, inactive and special rows included), and a configuration that recurs (a
revert, a re-import) is stored once. Measured positions are versioned the same way, as
position sets.

Instants are integer microseconds since the Unix epoch, UTC (see wsgi.dates.to_micros):
exact, and compared by index.

As-of rule (contract section 4): the version with the latest ``valid_from <= t`` among the
versions recorded at or before ``known_at``; among equal ``valid_from`` the later recorded
one wins. The index on (valid_from, recorded_at) makes the usual question (known now) one
index probe whatever the size of the history.

Only the writer and the admin tool write; web workers open the file read-only. The schema
version lives in ``PRAGMA user_version``; ``migrate()`` brings an older file up to date.
A web worker holds its connection in a WorkerStore, which opens it after uWSGI's fork and
tells the worker's response cache when another process has committed (``changed``).
"""

import hashlib
import os
import sqlite3
from contextlib import contextmanager, suppress
from dataclasses import astuple, dataclass, replace
from pathlib import Path

from wsgi.fplane import VIRUS_SLOTS, Row
from wsgi.walwatch import HEADER_BYTES, release, wal_index

SCHEMA_VERSION = 3

# Index i holds the statements that take a database from user_version i to i + 1.
_MIGRATIONS = [
    """
    CREATE TABLE configurations (
        id           INTEGER PRIMARY KEY,
        content_hash TEXT NOT NULL UNIQUE,
        active_ifus  INTEGER NOT NULL,
        full_text    TEXT NOT NULL,
        short_text   TEXT NOT NULL
    );
    CREATE TABLE configuration_rows (
        configuration_id INTEGER NOT NULL REFERENCES configurations(id),
        ifuslot  INTEGER NOT NULL,
        x        REAL NOT NULL,
        y        REAL NOT NULL,
        specid   INTEGER NOT NULL,
        specslot INTEGER NOT NULL,
        ifuid    INTEGER NOT NULL,
        ifurot   REAL NOT NULL,
        platesc  REAL NOT NULL,
        active   INTEGER NOT NULL,
        PRIMARY KEY (configuration_id, ifuslot)
    ) WITHOUT ROWID;
    CREATE TABLE versions (
        id               INTEGER PRIMARY KEY,
        valid_from       INTEGER NOT NULL,
        recorded_at      INTEGER NOT NULL,
        station          TEXT NOT NULL,
        comment          TEXT NOT NULL,
        source           TEXT NOT NULL,
        configuration_id INTEGER NOT NULL REFERENCES configurations(id)
    );
    CREATE INDEX versions_as_of ON versions (valid_from, recorded_at);
    CREATE TABLE position_sets (
        id           INTEGER PRIMARY KEY,
        valid_from   INTEGER NOT NULL,
        recorded_at  INTEGER NOT NULL,
        station      TEXT NOT NULL,
        comment      TEXT NOT NULL,
        source       TEXT NOT NULL,
        content_hash TEXT NOT NULL
    );
    CREATE INDEX position_sets_as_of ON position_sets (valid_from, recorded_at);
    CREATE TABLE positions (
        position_set_id INTEGER NOT NULL REFERENCES position_sets(id),
        ifuslot INTEGER NOT NULL,
        x       REAL NOT NULL,
        y       REAL NOT NULL,
        PRIMARY KEY (position_set_id, ifuslot)
    ) WITHOUT ROWID;
    """,
    # 2: the audit trail of posted updates. An update's row is written in the same
    # transaction as the version or position set it made, so "recorded" and "committed"
    # can never disagree, and a spooled file met again is recognised by its update_id.
    """
    CREATE TABLE updates (
        update_id       TEXT PRIMARY KEY,
        kind            TEXT NOT NULL,     -- config (POST /fplane) or positions
        station         TEXT NOT NULL,
        checksum        TEXT NOT NULL,
        received_at     INTEGER NOT NULL,
        valid_from      INTEGER NOT NULL,
        remote_addr     TEXT NOT NULL,
        payload         TEXT NOT NULL,     -- the posted data field, exactly as received
        state           TEXT NOT NULL,     -- committed, unchanged, held or rejected
        decided_at      INTEGER NOT NULL,
        reason          TEXT NOT NULL,     -- why held or rejected, who released it
        version_id      INTEGER REFERENCES versions(id),
        position_set_id INTEGER REFERENCES position_sets(id)
    );
    CREATE INDEX updates_by_state ON updates (state, received_at);
    """,
    # 3: the rendered texts kept per configuration go: files are rendered from the rows,
    # and a worker keeps finished responses in memory (wsgi/reading.py).
    """
    ALTER TABLE configurations DROP COLUMN full_text;
    ALTER TABLE configurations DROP COLUMN short_text;
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION


class StoreUnavailable(Exception):
    """The store cannot be used (missing, not initialised, wrong schema, unreadable).

    str() is safe to show to a client (no server paths); the log gets ``detail``."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail or message


class UpdateAlreadyRecorded(Exception):
    """The update id is in the store already (and not held): nothing was written."""


def _require_initialised(path: Path) -> None:
    if not path.is_file():
        raise StoreUnavailable("the store is not initialised (fplane-admin init)", f"no store file at {path}")


@dataclass(frozen=True)
class Version:
    id: int
    valid_from: int
    recorded_at: int
    station: str
    comment: str
    source: str
    configuration_id: int
    active_ifus: int
    valid_until: int | None = None  # the next version's valid_from, as known then; None: open


@dataclass(frozen=True)
class PositionSet:
    id: int
    valid_from: int
    recorded_at: int
    station: str
    comment: str
    source: str
    valid_until: int | None = None


@dataclass(frozen=True)
class UpdateRecord:
    """The audit record of one posted update: who sent what, when, and what became of it."""
    update_id: str
    kind: str
    station: str
    checksum: str
    received_at: int
    valid_from: int
    remote_addr: str
    payload: str
    state: str = ""
    decided_at: int = 0
    reason: str = ""
    version_id: int | None = None
    position_set_id: int | None = None


UPDATE_STATES = ("committed", "unchanged", "held", "rejected")
_UPDATE_COLUMNS = ", ".join(UpdateRecord.__dataclass_fields__)


def content_hash(rows) -> str:
    """A digest of what a configuration says, independent of row order and float noise.

    Stored with every configuration, so its bytes must never change: one line per seat,
    "%03d %.3f %.3f %03d %03d %03d %.3f %.3f %d"."""
    return _sha256_without_negative_zeros("".join(map(_hash_line, sorted(rows, key=_seat))))


def _hash_line(r: Row) -> str:
    return ("%03d %.3f %.3f %03d %03d %03d %.3f %.3f %d\n"
            % (r.ifuslot, r.x, r.y, r.specid, r.specslot, r.ifuid, r.ifurot, r.platesc, r.active))


def _sha256_without_negative_zeros(text: str) -> str:
    # -0.0001 and 0.0001 are the same position, but "%.3f" writes "-0.000" for one. In the
    # hashed lines every float follows a space, and a minus sign can only start a number,
    # so " -0.000" is exactly a negative zero.
    return hashlib.sha256(text.replace(" -0.000", " 0.000").encode()).hexdigest()


def _seat(row) -> int:
    return row.ifuslot


def positions_hash(positions: dict) -> str:
    """The same for a position set (seat -> (x, y)): "%03d %.3f %.3f" per seat."""
    text = "".join("%03d %.3f %.3f\n" % (slot, *positions[slot]) for slot in sorted(positions))
    return _sha256_without_negative_zeros(text)


# Both histories are read the same way, their columns qualified by the table's name.
_VERSION_SELECT = (
    "SELECT versions.id, valid_from, recorded_at, station, comment, source,"
    " configuration_id, c.active_ifus FROM versions JOIN configurations c"
    " ON c.id = versions.configuration_id"
)
_POSITION_SET_SELECT = (
    "SELECT id, valid_from, recorded_at, station, comment, source FROM position_sets"
)

_HISTORIES = {Version: ("versions", _VERSION_SELECT),
              PositionSet: ("position_sets", _POSITION_SET_SELECT)}

# known_at filters are written as "recorded_at <= ?" with NO_LIMIT standing for "now and
# everything recorded": one query text, one index plan.
NO_LIMIT = 2**62


class Store:
    """A connection to the store file. Not shared across processes or threads."""

    def __init__(self, connection: sqlite3.Connection):
        self._db = connection
        self._data_version = None
        self._data_version_cursor = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open_readonly(cls, path: Path) -> "Store":
        path = Path(path)
        _require_initialised(path)
        # One connection per worker process, used by that process only (uwsgi.ini runs
        # single-threaded workers), so sqlite3's same-thread check stays on.
        return cls._opened(path, "the store cannot be read", lambda: sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=ro", uri=True))

    @classmethod
    def open_writable(cls, path: Path, create: bool = False, busy_timeout: float = 30) -> "Store":
        """Open for writing; with ``create``, make the file and bring its schema up to date.
        ``busy_timeout``: how long a write waits for another process's lock (seconds)."""
        path = Path(path)
        if not create:
            _require_initialised(path)

        def connect():
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) so a write
            # never upgrades a read lock halfway and hits SQLITE_BUSY mid-transaction.
            db = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout)
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk (WAL fsynced) before we report success.
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            return db

        return cls._opened(path, "the store cannot be opened for writing", connect, migrate=create)

    @classmethod
    def _opened(cls, path: Path, failure: str, connect, migrate: bool = False) -> "Store":
        db = None
        try:
            db = connect()
            store = cls(db)
            if migrate:
                store.migrate()
            store._check_schema()
            return store
        except (sqlite3.Error, StoreUnavailable) as err:
            if db is not None:
                db.close()
            if isinstance(err, StoreUnavailable):
                # The operator's log must say which file has the wrong schema.
                raise StoreUnavailable(str(err), f"{path}: {err.detail}") from None
            raise StoreUnavailable(failure, f"{path}: {err}") from None

    def close(self) -> None:
        self._db.close()

    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _check_schema(self) -> None:
        found = self.schema_version()
        if found != SCHEMA_VERSION:
            raise StoreUnavailable(
                "the store has another schema version than this program "
                "(run fplane-admin init to migrate it)",
                f"store schema {found}, program schema {SCHEMA_VERSION}",
            )

    def migrate(self) -> int:
        """Apply the migrations this file lacks, each in its own transaction; return the version."""
        found = self.schema_version()
        if found > SCHEMA_VERSION:
            raise StoreUnavailable(
                "the store was made by a newer fplaneserver",
                f"store schema {found}, program schema {SCHEMA_VERSION}",
            )
        for version in range(found, SCHEMA_VERSION):
            with self._write_transaction():
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version + 1}")
        return SCHEMA_VERSION

    @contextmanager
    def _write_transaction(self):
        """All of it or nothing. IMMEDIATE takes the write lock first, so a write never
        upgrades a read lock halfway and hits SQLITE_BUSY mid-transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def snapshot(self):
        """Reads inside see one committed state of the store, whatever the writer does
        meanwhile (a version and its position set never come from two states)."""
        self._db.execute("BEGIN")
        try:
            yield self
        finally:
            self._db.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection has committed. Asked before every cached GET,
        so it keeps its cursor rather than making one per call."""
        if self._data_version_cursor is None:
            self._data_version_cursor = self._db.cursor()
        return self._data_version_cursor.execute("PRAGMA data_version").fetchone()[0]

    def changed(self) -> bool:
        """True when another connection has committed since the last call (and at the first)."""
        version = self.data_version()
        changed, self._data_version = version != self._data_version, version
        return changed

    # -- reading ---------------------------------------------------------------------

    def version_at(self, t: int, known_at: int = NO_LIMIT) -> Version | None:
        return self._as_of(Version, t, known_at)

    def position_set_at(self, t: int, known_at: int = NO_LIMIT) -> PositionSet | None:
        return self._as_of(PositionSet, t, known_at)

    def _as_of(self, kind, t: int, known_at: int):
        table, select = _HISTORIES[kind]
        row = self._db.execute(
            f"{select} WHERE {table}.valid_from <= ? AND {table}.recorded_at <= ?"
            f" ORDER BY {table}.valid_from DESC, {table}.recorded_at DESC, {table}.id DESC LIMIT 1",
            (t, known_at),
        ).fetchone()
        if row is None:
            return None
        return kind(*row, valid_until=self._next_valid_from(table, row[1], known_at))

    def _next_valid_from(self, table: str, valid_from: int, known_at: int) -> int | None:
        # ORDER BY ... LIMIT 1 walks the (valid_from, recorded_at) index upwards and stops
        # at the first entry recorded by known_at: one probe in the usual case.
        row = self._db.execute(
            f"SELECT valid_from FROM {table} WHERE valid_from > ? AND recorded_at <= ?"
            " ORDER BY valid_from LIMIT 1",
            (valid_from, known_at),
        ).fetchone()
        return row[0] if row else None

    def newest_records(self) -> tuple[int, int, int]:
        """(newest version id, newest position set id, latest recorded_at of either; 0 when
        there is none): every record changes them, so they name a state of the history."""
        return self._db.execute(
            "SELECT COALESCE((SELECT MAX(id) FROM versions), 0),"
            " COALESCE((SELECT MAX(id) FROM position_sets), 0),"
            " MAX(COALESCE((SELECT MAX(recorded_at) FROM versions), 0),"
            " COALESCE((SELECT MAX(recorded_at) FROM position_sets), 0))").fetchone()

    def next_position_set_from(self, t: int, known_at: int = NO_LIMIT) -> int | None:
        """Where the first position set starting after ``t`` starts, as known at known_at."""
        return self._next_valid_from("position_sets", t, known_at)

    def earliest_valid_from(self, known_at: int = NO_LIMIT) -> int | None:
        return self._db.execute(
            "SELECT MIN(valid_from) FROM versions WHERE recorded_at <= ?", (known_at,)
        ).fetchone()[0]

    def configuration_rows(self, configuration_id: int) -> tuple[Row, ...]:
        cursor = self._db.execute(
            "SELECT ifuslot, x, y, specid, specslot, ifuid, ifurot, platesc, active"
            " FROM configuration_rows WHERE configuration_id = ? ORDER BY ifuslot",
            (configuration_id,),
        )
        return tuple(Row(*r[:8], active=bool(r[8])) for r in cursor)

    def positions(self, position_set_id: int) -> dict[int, tuple[float, float]]:
        cursor = self._db.execute(
            "SELECT ifuslot, x, y FROM positions WHERE position_set_id = ?", (position_set_id,)
        )
        return {slot: (x, y) for slot, x, y in cursor}

    def history(self, valid_from_min: int = -NO_LIMIT, valid_from_max: int = NO_LIMIT) -> list[Version]:
        """Versions in valid_from order, each with valid_until as the store knows it now."""
        rows = self._db.execute(
            f"{_VERSION_SELECT} WHERE valid_from BETWEEN ? AND ?"
            " ORDER BY valid_from, recorded_at, versions.id",
            (valid_from_min, valid_from_max),
        ).fetchall()
        # valid_until is the next greater valid_from: one backwards pass over the sorted
        # list (plus one probe past the range's end), not one query per version.
        versions = []
        next_from = self._next_valid_from("versions", rows[-1][1], NO_LIMIT) if rows else None
        for row in reversed(rows):
            if versions and versions[-1].valid_from > row[1]:
                next_from = versions[-1].valid_from
            versions.append(Version(*row, valid_until=next_from))
        return versions[::-1]

    def recently_recorded(self, limit: int) -> list[Version]:
        """The last ``limit`` versions recorded, newest first (valid_until not filled in)."""
        rows = self._db.execute(
            f"{_VERSION_SELECT} ORDER BY recorded_at DESC, versions.id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [Version(*row) for row in rows]

    def first_recorded_at(self) -> int | None:
        return self._db.execute("SELECT MIN(recorded_at) FROM versions").fetchone()[0]

    def position_set_history(self) -> list[PositionSet]:
        rows = self._db.execute(
            f"{_POSITION_SET_SELECT} ORDER BY valid_from, recorded_at, id"
        ).fetchall()
        return [PositionSet(*row) for row in rows]

    def integrity_problems(self) -> list[str]:
        """What is wrong with the file, in words; empty when all is well."""
        problems = [r[0] for r in self._db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [
            f"foreign key violation in {table} (row {rowid}) -> {parent}"
            for table, rowid, parent, _ in self._db.execute("PRAGMA foreign_key_check")
        ]
        for config_id, stored_hash in self._db.execute(
            "SELECT id, content_hash FROM configurations"
        ).fetchall():
            if content_hash(self.configuration_rows(config_id)) != stored_hash:
                problems.append(f"configuration {config_id}: rows do not match their content hash")
        for (version_id,) in self._db.execute(
            "SELECT v.id FROM versions v LEFT JOIN configuration_rows r"
            " ON r.configuration_id = v.configuration_id WHERE r.ifuslot IS NULL"
        ):
            problems.append(f"version {version_id}: its configuration has no rows")
        for update_id, state in self._db.execute(
            "SELECT update_id, state FROM updates WHERE (state IN ('committed', 'unchanged'))"
            " = (version_id IS NULL AND position_set_id IS NULL)"
        ):
            problems.append(f"update {update_id}: {state}, but its version / position set "
                            f"link says otherwise")
        return problems

    def backup(self, target: Path) -> None:
        """An online, consistent copy (SQLite's backup API), safe while others read and write."""
        copy = sqlite3.connect(str(target))
        try:
            with copy:
                self._db.backup(copy)
            # The copy inherits WAL mode from the store; as a rollback-journal file it is one
            # self-contained file that opening it (even read-only) litters with no -wal/-shm.
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()

    # -- writing (writer and admin tool only) -----------------------------------------

    def record_version(self, rows, valid_from: int, recorded_at: int, station: str,
                       comment: str = "", source: str = "",
                       update: UpdateRecord | None = None, digest: str | None = None
                       ) -> tuple[Version, bool]:
        """Record a configuration valid from ``valid_from``, in one transaction.

        Returns (version, created). When the version already valid at ``valid_from`` says
        the same, nothing is written and that version comes back with created=False.
        ``update``: the posted update this comes from, recorded in the same transaction
        as committed (or unchanged), with the version's id. ``digest``: content_hash(rows),
        when the caller has it already.
        """
        digest = digest or content_hash(rows)
        with self._write_transaction():
            current = self.version_at(valid_from)
            if current is not None and self.configuration_hash(current.configuration_id) == digest:
                self._write_update(update, "unchanged", recorded_at, version_id=current.id)
                return current, False
            configuration_id = self._configuration_id(rows, digest)
            version_id = self._db.execute(
                "INSERT INTO versions (valid_from, recorded_at, station, comment, source,"
                " configuration_id) VALUES (?, ?, ?, ?, ?, ?)",
                (valid_from, recorded_at, station, comment, source, configuration_id),
            ).lastrowid
            self._write_update(update, "committed", recorded_at, version_id=version_id)
        return self.version_by_id(version_id), True

    def version_by_id(self, version_id: int) -> Version | None:
        return self._by_id(Version, version_id)

    def position_set_by_id(self, set_id: int) -> PositionSet | None:
        return self._by_id(PositionSet, set_id)

    def _by_id(self, kind, row_id: int):
        table, select = _HISTORIES[kind]
        row = self._db.execute(f"{select} WHERE {table}.id = ?", (row_id,)).fetchone()
        if row is None:
            return None
        return kind(*row, valid_until=self._next_valid_from(table, row[1], NO_LIMIT))

    def configuration_hash(self, configuration_id: int) -> str:
        return self._db.execute(
            "SELECT content_hash FROM configurations WHERE id = ?", (configuration_id,)
        ).fetchone()[0]

    def _configuration_id(self, rows, digest: str) -> int:
        """The id of the configuration with ``digest``, inserted unless there is one."""
        found = self._db.execute(
            "SELECT id FROM configurations WHERE content_hash = ?", (digest,)
        ).fetchone()
        if found:
            return found[0]
        active_ifus = sum(1 for r in rows if r.active and r.specid and r.ifuslot in VIRUS_SLOTS)
        configuration_id = self._db.execute(
            "INSERT INTO configurations (content_hash, active_ifus) VALUES (?, ?)",
            (digest, active_ifus),
        ).lastrowid
        self._db.executemany(
            "INSERT INTO configuration_rows (configuration_id, ifuslot, x, y, specid, specslot,"
            " ifuid, ifurot, platesc, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(configuration_id, r.ifuslot, r.x, r.y, r.specid, r.specslot, r.ifuid, r.ifurot,
              r.platesc, int(r.active)) for r in rows],
        )
        return configuration_id

    def record_position_set(self, positions: dict, valid_from: int, recorded_at: int,
                            station: str, comment: str = "", source: str = "",
                            update: UpdateRecord | None = None) -> tuple[PositionSet, bool]:
        """Record measured positions (seat -> (x, y)); same no-change and ``update`` rules
        as record_version."""
        digest = positions_hash(positions)
        with self._write_transaction():
            current = self.position_set_at(valid_from)
            if current is not None and self._db.execute(
                "SELECT content_hash FROM position_sets WHERE id = ?", (current.id,)
            ).fetchone()[0] == digest:
                self._write_update(update, "unchanged", recorded_at, position_set_id=current.id)
                return current, False
            set_id = self._db.execute(
                "INSERT INTO position_sets (valid_from, recorded_at, station, comment, source,"
                " content_hash) VALUES (?, ?, ?, ?, ?, ?)",
                (valid_from, recorded_at, station, comment, source, digest),
            ).lastrowid
            self._db.executemany(
                "INSERT INTO positions (position_set_id, ifuslot, x, y) VALUES (?, ?, ?, ?)",
                [(set_id, slot, x, y) for slot, (x, y) in positions.items()],
            )
            self._write_update(update, "committed", recorded_at, position_set_id=set_id)
        return self.position_set_by_id(set_id), True

    # -- posted updates -----------------------------------------------------------------

    def update_by_id(self, update_id: str) -> UpdateRecord | None:
        row = self._db.execute(
            f"SELECT {_UPDATE_COLUMNS} FROM updates WHERE update_id = ?", (update_id,)
        ).fetchone()
        return UpdateRecord(*row) if row else None

    def updates_in_state(self, state: str) -> list[UpdateRecord]:
        """Oldest first."""
        return [UpdateRecord(*row) for row in self._db.execute(
            f"SELECT {_UPDATE_COLUMNS} FROM updates WHERE state = ? ORDER BY received_at",
            (state,))]

    def record_update(self, update: UpdateRecord, state: str, decided_at: int, reason: str = "") -> None:
        """Record an update that made no version (held, rejected), in its own transaction."""
        with self._write_transaction():
            self._write_update(update, state, decided_at, reason=reason)

    def _write_update(self, update: UpdateRecord | None, state: str, decided_at: int,
                      reason: str | None = None, version_id: int | None = None,
                      position_set_id: int | None = None) -> None:
        # Insert, or move a held update on (released, rejected). Any other update id met
        # again is refused, and the whole transaction with it: an update commits once.
        if update is None:
            return
        assert state in UPDATE_STATES, state
        record = replace(update, state=state, decided_at=decided_at,
                         reason=update.reason if reason is None else reason,
                         version_id=version_id, position_set_id=position_set_id)
        values = astuple(record)
        placeholders = ", ".join("?" * len(values))
        written = self._db.execute(
            f"INSERT INTO updates ({_UPDATE_COLUMNS}) VALUES ({placeholders})"
            " ON CONFLICT (update_id) DO UPDATE SET state = excluded.state,"
            " decided_at = excluded.decided_at, reason = excluded.reason,"
            " version_id = excluded.version_id, position_set_id = excluded.position_set_id"
            " WHERE updates.state = 'held'",
            values).rowcount
        if written != 1:
            raise UpdateAlreadyRecorded(f"update {update.update_id} is already recorded")



class WorkerStore:
    """A web worker's read-only store connection, opened on first use and again after a
    fork: an SQLite connection must not cross one (uWSGI forks its workers from the master
    that loaded the app)."""

    def __init__(self, path: Path):
        self._path = path
        self._store = None
        self._pid = None
        self._wal_index = None
        self._wal_header = None

    def get(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            self._store = Store.open_readonly(self._path)
            self._pid = os.getpid()
            self._wal_index = wal_index(self._path)
            self._wal_header = None
        return self._store

    def close(self) -> None:
        """Close the connection and let go of the wal-index; get() opens them again.

        From the thread that opened the connection; from another (the tests' threaded
        servers) it is only dropped, and sqlite3 closes it when it is collected."""
        if self._store is not None and self._pid == os.getpid():
            with suppress(sqlite3.ProgrammingError):
                self._store.close()
            release(self._path)
        self._store = self._wal_index = self._wal_header = None

    def changed(self) -> bool:
        """True when the store has changed since the last call (or on first use).

        Asked before every cached GET. Unchanged wal-index header bytes (wsgi/walwatch.py)
        mean no commit; any other answer is SQLite's, Store.changed. Why not always ask
        SQLite: PRAGMA data_version is a read transaction, and under uWSGI a cached GET
        cost 86 us of worker CPU with it against 53 us with the header comparison (a
        trivial app: 43 us; tests/bench/test_get_cpu.py measures the whole GET).

        The header is read before SQLite is asked, so a commit between the two is seen
        again, never missed, at the next call. It is compared before get(): that answer
        touches no connection, so it holds in a forked child too."""
        index = self._wal_index
        if index is not None and index[:HEADER_BYTES] == self._wal_header:
            return False
        store = self.get()   # after a fork: reopened, the header forgotten
        if self._wal_index is not None:
            self._wal_header = self._wal_index[:HEADER_BYTES]
        return store.changed()
