"""get_fplane's answer cache: answers kept on disk with the interval they are valid for.

An answer from the server holds for every instant of its validity interval
(``X-FPlane-Valid-From`` / ``-Until``: the whole answer's, position set included). So an
instant inside a kept answer's interval is answered from here with no network at all while
that answer is fresh (its ``max-age``: a minute for an open interval, a day for a closed one
that a later correction could still change, a year when pinned by a past known_at); after
that the server is asked with ``If-None-Match`` and a 304 makes it fresh again. An instant
outside every kept interval is asked for.

Layout: ``<dir>/<server key>/<variant>/v<version>-<etag key>.entry``, one file per answer:
a JSON line (server, variant, version, interval, ETag, when fetched, max-age, the body's
length and SHA-256) then the body. Variant: full/short, nominal/actual, format, known_at.

Many processes may share one directory (a pipeline's workers on one node): every file is
written to a temporary name and renamed, so a reader sees an old entry or a whole new one;
no lock is held, least of all across a download (two processes missing the same answer
both fetch it, and the second rename wins with the same content); an entry that does not
check out (bad JSON, wrong length or digest: a disk or an editor, not us) is ignored and
removed, and the answer fetched again. The directory is bounded (``max_bytes``): after each
new entry the oldest (least recently fetched or revalidated) go first.
"""

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

ENTRY_SUFFIX = ".entry"
DEFAULT_MAX_BYTES = 200 * 2**20


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/fplane, or ~/.cache/fplane."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    return (Path(base) if base.strip() else Path.home() / ".cache") / "fplane"


@dataclass(frozen=True)
class Entry:
    server: str
    variant: str
    version: int
    valid_from: int           # microseconds
    valid_until: int | None   # None: open
    etag: str
    fetched_at: float         # Unix seconds: when fetched, or last revalidated
    max_age: int
    body: bytes

    def holds(self, t: int) -> bool:
        return self.valid_from <= t and (self.valid_until is None or t < self.valid_until)

    def fresh(self, now: float) -> bool:
        return now < self.fetched_at + self.max_age


def variant_key(*, full: bool, actual: bool, known_at: str | None) -> str:
    """What besides the instant an answer depends on, as a directory name."""
    name = f"{'full' if full else 'short'}-{'actual' if actual else 'nominal'}-txt"
    if known_at is not None:
        name += "-known_at-" + _digest(known_at.encode())[:16]
    return name


def server_key(url: str) -> str:
    return _digest(url.rstrip("/").encode())[:16]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AnswerCache:
    """The entries of one server and variant, as this process knows them."""

    def __init__(self, directory: Path | None, server: str, variant: str,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        """``directory`` None: kept in this process only (get_fplane --no-cache)."""
        self.root = None if directory is None else Path(directory)
        self.server, self.variant, self.max_bytes = server.rstrip("/"), variant, max_bytes
        self.directory = None if directory is None else self.root / server_key(server) / variant
        self._entries: dict[Path, Entry] = {}
        self._mtimes: dict[Path, int | None] = {}   # of each entry file, when read
        self._listed_mtime = None
        self._last_hit: Entry | None = None

    # -- finding -----------------------------------------------------------------------------

    def find(self, t: int) -> Entry | None:
        """The most recently fetched entry whose interval holds ``t``, fresh or not."""
        last = self._last_hit
        if last is not None and last.holds(t) and self._entries.get(self._path(last)) is last:
            return last   # a batch's instants come in runs: most lookups end here
        found = self._best(t)
        if found is None and self._reload():
            found = self._best(t)   # another process may have fetched it meanwhile
        self._last_hit = found
        return found

    def _best(self, t: int) -> Entry | None:
        holding = [e for e in self._entries.values() if e.holds(t)]
        return max(holding, key=lambda e: e.fetched_at) if holding else None

    def _reload(self) -> bool:
        """Read the directory again when it changed; True when it did."""
        if self.directory is None:
            return False
        try:
            mtime = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._listed_mtime:
            return False
        self._listed_mtime = mtime
        entries = {}
        for path in self.directory.glob(f"*{ENTRY_SUFFIX}"):
            entry = self._entries.get(path)
            if entry is None or _mtime(path) != self._mtimes.get(path):
                entry = self._read(path)
            if entry is not None:
                entries[path] = entry
        self._entries = entries
        self._mtimes = {path: self._mtimes.get(path) for path in entries}
        return True

    def _read(self, path: Path) -> Entry | None:
        try:
            data = path.read_bytes()
            mtime = _mtime(path)
        except OSError:
            return None
        entry = _decode(data)
        if entry is None or entry.server != self.server or entry.variant != self.variant:
            _remove(path)   # corrupt or foreign: ignored, and replaced when fetched again
            return None
        self._mtimes[path] = mtime
        return entry

    def load(self) -> None:
        self._reload()

    # -- keeping -----------------------------------------------------------------------------

    def store(self, entry: Entry) -> Entry:
        """Keep a fetched (or revalidated) answer; entries it contradicts are dropped."""
        path = self._path(entry)
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                _write(path, _encode(entry))
            except OSError:
                pass   # a full or read-only cache costs later downloads, never this answer
            self._mtimes[path] = _mtime(path)
        # Intervals of one variant do not overlap in one state of the history: an older
        # entry overlapping a newer one describes a state the server has left.
        for other_path, other in list(self._entries.items()):
            if other_path != path and other.fetched_at <= entry.fetched_at and _overlap(other, entry):
                if self.directory is not None:
                    _remove(other_path)
                del self._entries[other_path]
        self._entries[path] = entry
        self._last_hit = entry
        if self.directory is not None:
            self._bound()
        return entry

    def revalidated(self, entry: Entry, now: float, max_age: int) -> Entry:
        return self.store(replace(entry, fetched_at=now, max_age=max_age))

    def _path(self, entry: Entry) -> Path:
        return (self.directory or Path("memory")) / f"v{entry.version}-{_digest(entry.etag.encode())[:16]}{ENTRY_SUFFIX}"

    def _bound(self) -> None:
        """Drop the oldest entries of the whole cache directory beyond max_bytes."""
        files = []
        for path in self.root.glob(f"*/*/*{ENTRY_SUFFIX}"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime_ns, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            _remove(path)
            self._entries.pop(path, None)
            total -= size


def _overlap(a: Entry, b: Entry) -> bool:
    a_end = float("inf") if a.valid_until is None else a.valid_until
    b_end = float("inf") if b.valid_until is None else b.valid_until
    return a.valid_from < b_end and b.valid_from < a_end


def _encode(entry: Entry) -> bytes:
    meta = {"server": entry.server, "variant": entry.variant, "version": entry.version,
            "valid_from": entry.valid_from, "valid_until": entry.valid_until, "etag": entry.etag,
            "fetched_at": entry.fetched_at, "max_age": entry.max_age,
            "length": len(entry.body), "sha256": _digest(entry.body)}
    return json.dumps(meta).encode() + b"\n" + entry.body


def _decode(data: bytes) -> Entry | None:
    line, newline, body = data.partition(b"\n")
    try:
        meta = json.loads(line)
        entry = Entry(str(meta["server"]), str(meta["variant"]), int(meta["version"]),
                      int(meta["valid_from"]),
                      None if meta["valid_until"] is None else int(meta["valid_until"]),
                      str(meta["etag"]), float(meta["fetched_at"]), int(meta["max_age"]), body)
        intact = newline and len(body) == meta["length"] and _digest(body) == meta["sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    return entry if intact else None


def _write(path: Path, data: bytes) -> None:
    # Rename, no fsync: a cache entry lost in a crash is fetched again; a torn one is
    # never seen (and would fail its digest anyway).
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
