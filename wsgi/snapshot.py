"""Store snapshots: the history in one self-contained SQLite file, for nodes without network.

Made by ``GET /snapshot`` and ``fplane-admin snapshot FILE`` (``make_snapshot``, one
implementation for both); read by ``get_fplane --snapshot`` and the client API
(``SnapshotSource``), which answer with the server's own answer code (FplaneReader.answer),
so a snapshot answers byte for byte what the server serves for the same query and known_at.

What a snapshot holds: the versions, configurations, position sets and positions, and a
``snapshot_info`` table (when it was made, the site time zone that date-only forms need, the
state of the history it copies). What it never holds: the audit trail of posted updates
(payloads, client addresses), and no station or password (those live in the station list,
never in the store). The copy is made with SQLite's online backup (one consistent state),
emptied of the rest, then VACUUMed, so no page of what was removed is left in the file.

Serving it publicly (``SnapshotService``): the ETag names the newest version and position
set and the latest recording instant, so ``If-None-Match`` / ``curl -z`` download it only
when the history changed. A snapshot is built at most once per REBUILD_INTERVAL_S whatever
the number of requests (between builds the last one is served), by one worker at a time,
kept in ``<data_dir>/snapshots/`` and streamed from there; one larger than MAX_BYTES is
refused rather than served.
"""

import fcntl
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from webob.static import FileIter

from wsgi import codes, dates
from wsgi.files import replace_durably
from wsgi.reading import Answer, FplaneQuery, FplaneReader
from wsgi.responses import CodedError, CodedResponse, respond
from wsgi.store import Store, StoreUnavailable

SNAPSHOT_FORMAT = 1
CONTENT_TYPE = "application/vnd.sqlite3"
MAX_BYTES = 64 * 2**20
REBUILD_INTERVAL_S = 60.0
BUILD_WAIT_S = 20.0   # below uwsgi.ini's harakiri (30 s)
# Tables a snapshot keeps the rows of: what answers need. Every other table (the updates
# audit trail, and whatever a later schema adds) is kept empty, so the file still has the
# store's schema and nothing new can leak into a snapshot unseen.
KEPT_TABLES = ("configurations", "configuration_rows", "versions", "position_sets", "positions")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class SnapshotError(Exception):
    """The file is not a complete, intact snapshot; str() says why (nothing is answered)."""


@dataclass(frozen=True)
class SnapshotTag:
    """A state of the history: what the ETag and the file name say."""
    newest_version: int
    newest_position_set: int
    recorded_at: int   # microseconds

    @classmethod
    def of(cls, store: Store) -> "SnapshotTag":
        return cls(*store.newest_records())

    def text(self) -> str:
        instant = dates.from_micros(self.recorded_at).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"v{self.newest_version}-p{self.newest_position_set}-{instant}"

    def etag(self) -> str:
        return f'"{self.text()}"'


def make_snapshot(store: Store, target: Path, site_tz: ZoneInfo) -> SnapshotTag:
    """Write a snapshot of ``store`` to ``target`` (replaced atomically, durable); returns
    the state it holds. Safe while the writer commits: the copy is one consistent state."""
    target = Path(target)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        store.backup(temporary)
        with Store.open_readonly(temporary) as copy:
            tag = SnapshotTag.of(copy)
        db = sqlite3.connect(str(temporary), isolation_level=None)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            db.execute("BEGIN")
            for table in tables:
                if table not in KEPT_TABLES and not table.startswith("sqlite_"):
                    db.execute(f'DELETE FROM "{table}"')
            db.execute("CREATE TABLE snapshot_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.executemany("INSERT INTO snapshot_info VALUES (?, ?)", [
                ("format", str(SNAPSHOT_FORMAT)),
                ("made_at", str(dates.to_micros(datetime.now(timezone.utc)))),
                ("site_timezone", site_tz.key),
                ("tag", tag.text()),
            ])
            db.execute("COMMIT")
            db.execute("VACUUM")
        finally:
            db.close()
        replace_durably(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return tag


# -- reading a snapshot (the client side) ---------------------------------------------------

@dataclass(frozen=True)
class _Site:
    """What FplaneReader needs of a config: the site time zone, here the snapshot's."""
    timezone: ZoneInfo


class SnapshotSource:
    """Answers from a snapshot file, with no server. Checked whole when opened: a truncated
    or damaged file raises SnapshotError and answers nothing."""

    def __init__(self, path):
        self.path = Path(path)
        _check_file(self.path)
        try:
            self._store = Store.open_readonly(self.path)
        except StoreUnavailable as err:
            raise SnapshotError(f"{self.path}: not a usable snapshot ({err.detail})") from None
        try:
            info = self._info()
            problems = self._store.integrity_problems()
        except sqlite3.DatabaseError as err:
            self._store.close()
            raise SnapshotError(f"{self.path}: damaged snapshot ({err})") from None
        if problems:
            self._store.close()
            raise SnapshotError(f"{self.path}: damaged snapshot ({problems[0]})")
        self.made_at = int(info["made_at"])
        self.tag = info["tag"]
        try:
            self.site_timezone = ZoneInfo(info["site_timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            self._store.close()
            raise SnapshotError(f"{self.path}: unknown site time zone {info['site_timezone']!r}") from None
        self._reader = FplaneReader(_Site(self.site_timezone))

    def _info(self) -> dict:
        db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            info = dict(db.execute("SELECT key, value FROM snapshot_info"))
        except sqlite3.OperationalError:
            raise SnapshotError(f"{self.path}: an SQLite file, but not an fplane snapshot "
                                "(no snapshot_info: a store backup?)") from None
        finally:
            db.close()
        if info.get("format") != str(SNAPSHOT_FORMAT) or not {"made_at", "site_timezone", "tag"} <= set(info):
            raise SnapshotError(f"{self.path}: snapshot format {info.get('format')!r}, "
                                f"this client reads format {SNAPSHOT_FORMAT}")
        return info

    def describe(self) -> str:
        """Where answers come from, for a batch table or an API result."""
        return f"snapshot {self.path} ({self.tag}, made {dates.format_micros(self.made_at)})"

    def answer(self, query: FplaneQuery, now: datetime) -> Answer:
        """What the server serves for ``query``; raises CodedError (301, 302) as it does."""
        return self._reader.answer(self._store, query, now)

    def close(self) -> None:
        self._store.close()


def _check_file(path: Path) -> None:
    """Complete, by the size SQLite's own header states (a cut download is caught here,
    before SQLite reads a page that is not there)."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError as err:
        raise SnapshotError(f"{path}: cannot read it: {err.strerror or err}") from None
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise SnapshotError(f"{path}: not a snapshot (not an SQLite file"
                            + (", or cut short" if len(header) < 100 else "") + ")")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count in the header is valid when its "valid for" number matches the
    # change counter (SQLite 3.7.0 and later write both; VACUUM does).
    if pages and header[92:96] == header[24:28] and size != pages * page_size:
        raise SnapshotError(f"{path}: truncated or damaged snapshot ({size} bytes, its header "
                            f"says {pages * page_size})")


# -- serving snapshots (GET /snapshot) ------------------------------------------------------

class SnapshotService:
    """GET /snapshot for one Service (its config and worker store)."""

    def __init__(self, config, worker_store):
        self._config = config
        self._worker_store = worker_store
        self._directory = config.data_dir / "snapshots"

    def get(self, req) -> CodedResponse:
        live = SnapshotTag.of(self._worker_store.get())
        newest = self._newest_built()
        if newest is None or (newest[1] != live and time.time() - newest[0].stat().st_mtime
                              >= REBUILD_INTERVAL_S):
            if live.etag() in _tags(req.environ.get("HTTP_IF_NONE_MATCH")):
                return _response(None, live)   # current: a 304 (WebOb), nothing built
            newest = self._build(live)
        path, tag = newest
        if path.stat().st_size > MAX_BYTES:
            raise CodedError(codes.UNAVAILABLE, f"the snapshot is larger than this server serves "
                                                f"({MAX_BYTES // 2**20} MiB): ask its operator for "
                                                "one (fplane-admin snapshot FILE)")
        return _response(path, tag)

    def _newest_built(self):
        """(path, tag) of the newest snapshot in the directory, or None."""
        try:
            built = [p for p in self._directory.iterdir() if p.name.startswith("snapshot-")
                     and p.suffix == ".sqlite"]
        except FileNotFoundError:
            return None
        if not built:
            return None
        path = max(built, key=lambda p: p.stat().st_mtime)
        return path, _tag_of_name(path.name)

    def _build(self, live: SnapshotTag):
        self._directory.mkdir(exist_ok=True)
        with open(self._directory / ".lock", "a") as lock:
            deadline = time.monotonic() + BUILD_WAIT_S
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CodedError(codes.UNAVAILABLE, "a snapshot is being made: try again "
                                                            "in a minute", headers=[("Retry-After", "60")])
                    time.sleep(0.1)
            newest = self._newest_built()   # another worker may have built it meanwhile
            if newest is not None and (newest[1] == live or time.time() - newest[0].stat().st_mtime
                                       < REBUILD_INTERVAL_S):
                return newest
            tag = make_snapshot(self._worker_store.get(), self._directory / "building.sqlite",
                                self._config.timezone)
            path = self._directory / f"snapshot-{tag.text()}.sqlite"
            os.replace(self._directory / "building.sqlite", path)
            for old in self._directory.glob("snapshot-*.sqlite"):
                if old != path:
                    old.unlink(missing_ok=True)   # a download in progress keeps its open file
            return path, tag


def _tags(if_none_match: str | None) -> set[str]:
    return {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}


def _response(path: Path | None, tag: SnapshotTag) -> CodedResponse:
    """The snapshot streamed from its file (WebOb answers conditional GETs, HEAD and ranges);
    without a path, the answer to a client whose copy is current."""
    response = respond(codes.OK, b"", CONTENT_TYPE,
                       cache_control=f"public, max-age={int(REBUILD_INTERVAL_S)}",
                       etag=tag.etag(), last_modified=tag.recorded_at / 1e6)
    if path is not None:
        # Opened now: the file may be replaced by a newer snapshot, an open one stays whole.
        f = open(path, "rb")
        response.app_iter = FileIter(f)
        response.content_length = os.fstat(f.fileno()).st_size
        response.content_disposition = f'attachment; filename="fplane-snapshot-{tag.text()}.sqlite"'
    return response


def _tag_of_name(name: str) -> SnapshotTag:
    text = name.removeprefix("snapshot-").removesuffix(".sqlite")
    version, position_set, instant = text.split("-", 2)
    recorded = datetime.strptime(instant, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)
    return SnapshotTag(int(version[1:]), int(position_set[1:]), dates.to_micros(recorded))
