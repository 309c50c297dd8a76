"""Benchmark stores built fast: the schema from Store.open_writable(create=True), then every
version inserted directly with one sqlite3 connection in a single transaction.

Both stores span the same stretch of time (BENCH_SPAN_HOURS from BENCH_START) so that a random
instant "inside the history" is drawn from the same range for both; only the number of
versions differs (100,000 versions: one per hour; 10 versions: one per 10,000 hours).

Every version is a distinct configuration, derived from the one before it by giving one
active VIRUS seat a new SPECID/IFUID (a cumulative history, as instrument changes are), so
a 100,000-version store holds 100,000 configurations (~9.8 million configuration rows).
configurations.content_hash is computed with wsgi.store.content_hash, as the writer does.

Building the 100,000-version store takes about a minute (see ``build_store``'s result);
building it once per run is acceptable, but it is cached under /tmp keyed by a hash of this
file (see ``cached_store``) so that a re-run starts at once.
"""

import hashlib
import json
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tests.fplane_samples import make_rows
from wsgi import dates
from wsgi.fplane import VIRUS_SLOTS, Row
from wsgi.store import SCHEMA_VERSION, Store, content_hash

BENCH_START = datetime(2012, 1, 1, tzinfo=timezone.utc)
BENCH_SPAN_HOURS = 100_000           # ~11.4 years: 2012-01-01 .. 2023-05-29
RECORDED_DELAY_S = 600               # each version recorded 10 minutes after it became valid
STATION, SOURCE = "bench", "tests/bench/store_builder.py"
CHUNK_VERSIONS = 1000                # versions per executemany batch

CACHE_ROOT = Path(os.environ.get("FPLANE_BENCH_CACHE", "/tmp/fplaneserver-bench-cache"))


@dataclass(frozen=True)
class BuiltStore:
    path: Path
    versions: int
    configuration_rows: int
    seconds: float          # time to build (0.0 when taken from the cache)
    size_bytes: int
    cached: bool
    first_valid_from: int   # microseconds
    last_valid_from: int
    spacing_us: int


def spacing_us(n_versions: int) -> int:
    return BENCH_SPAN_HOURS * 3600 * 10**6 // n_versions


def valid_from_us(i: int, n_versions: int) -> int:
    return dates.to_micros(BENCH_START) + i * spacing_us(n_versions)


def _insert_tail(r: Row) -> tuple:
    return (r.ifuslot, r.x, r.y, r.specid, r.specslot, r.ifuid, r.ifurot, r.platesc, int(r.active))


def _configurations(n_versions: int, seed: int = 20180715):
    """Yield (rows sorted by seat, their insert tails) for each version: all distinct."""
    rows = sorted(make_rows(), key=lambda r: r.ifuslot)
    index_of = {r.ifuslot: i for i, r in enumerate(rows)}
    tails = [_insert_tail(r) for r in rows]
    mutable = [r.ifuslot for r in rows if r.ifuslot in VIRUS_SLOTS and r.active and r.specid]
    rng = random.Random(seed)
    seen = set()
    for i in range(n_versions):
        if i:
            while True:
                slot = rng.choice(mutable)
                old = rows[index_of[slot]]
                new = Row(slot, old.x, old.y, rng.randint(1, 899), old.specslot,
                          rng.randint(1, 899), old.ifurot, old.platesc, True)
                candidate = list(rows)
                candidate[index_of[slot]] = new
                digest = content_hash(candidate)
                if digest not in seen:
                    break
            rows = candidate
            tails = list(tails)
            tails[index_of[slot]] = _insert_tail(new)
        else:
            digest = content_hash(rows)
        seen.add(digest)
        yield rows, tails, digest


def build_store(path: Path, n_versions: int) -> BuiltStore:
    """Create ``path`` (must not exist) holding ``n_versions`` versions; returns the figures."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    started = time.perf_counter()
    Store.open_writable(path, create=True).close()   # the schema, exactly as the writer makes it

    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")   # a benchmark fixture: durability not needed
    db.execute("PRAGMA cache_size = -262144")
    db.execute("BEGIN")
    n_rows = 0
    try:
        versions, configs, config_rows = [], [], []
        for i, (rows, tails, digest) in enumerate(_configurations(n_versions)):
            cid = i + 1
            active_ifus = sum(1 for r in rows if r.active and r.specid and r.ifuslot in VIRUS_SLOTS)
            configs.append((cid, digest, active_ifus))
            vf = valid_from_us(i, n_versions)
            versions.append((cid, vf, vf + RECORDED_DELAY_S * 10**6, STATION,
                             f"bench version {cid}", SOURCE, cid))
            config_rows.extend((cid, *t) for t in tails)
            if len(configs) >= CHUNK_VERSIONS or i == n_versions - 1:
                db.executemany("INSERT INTO configurations (id, content_hash, active_ifus)"
                               " VALUES (?, ?, ?)", configs)
                db.executemany(
                    "INSERT INTO configuration_rows (configuration_id, ifuslot, x, y, specid,"
                    " specslot, ifuid, ifurot, platesc, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    config_rows)
                db.executemany(
                    "INSERT INTO versions (id, valid_from, recorded_at, station, comment, source,"
                    " configuration_id) VALUES (?, ?, ?, ?, ?, ?, ?)", versions)
                n_rows += len(config_rows)
                versions, configs, config_rows = [], [], []
        db.execute("COMMIT")
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        db.close()
    seconds = time.perf_counter() - started
    return BuiltStore(path, n_versions, n_rows, seconds, path.stat().st_size, False,
                      valid_from_us(0, n_versions), valid_from_us(n_versions - 1, n_versions),
                      spacing_us(n_versions))


def builder_key(n_versions: int) -> str:
    """Changes whenever this file, the schema or the sample rows change."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"{n_versions} {SCHEMA_VERSION}".encode())
    for name in ("fplane_samples.py",):
        digest.update((Path(__file__).resolve().parent.parent / name).read_bytes())
    digest.update((Path(__file__).resolve().parent.parent.parent / "wsgi" / "store.py").read_bytes())
    return digest.hexdigest()[:16]


def cached_store(n_versions: int) -> BuiltStore:
    """The store of ``n_versions`` versions under CACHE_ROOT/<key>/, built when missing.

    A cached store reports the build time measured when it was built (built.json) with
    cached=True.
    Built into a temporary name and renamed, so an interrupted build is never reused."""
    directory = CACHE_ROOT / f"v{n_versions}-{builder_key(n_versions)}"
    path = directory / "fplane.sqlite"
    figures = directory / "built.json"
    if path.is_file() and figures.is_file():
        first = json.loads(figures.read_text())
        return BuiltStore(path, n_versions, first["configuration_rows"], first["seconds"],
                          path.stat().st_size, True, valid_from_us(0, n_versions),
                          valid_from_us(n_versions - 1, n_versions), spacing_us(n_versions))
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"building-{os.getpid()}.sqlite"
    for leftover in directory.glob("building-*"):
        leftover.unlink()
    try:
        built = build_store(partial, n_versions)
        for suffix in ("-wal", "-shm"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
        partial.rename(path)
        figures.write_text(json.dumps({"configuration_rows": built.configuration_rows,
                                       "seconds": built.seconds}))
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
    return BuiltStore(path, n_versions, built.configuration_rows, built.seconds,
                      path.stat().st_size, False, built.first_valid_from, built.last_valid_from,
                      built.spacing_us)
