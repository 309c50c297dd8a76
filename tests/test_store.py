"""The store (wsgi/store.py), driven directly on a real SQLite file in tmp_path.

Reads like contract.md sections 1 (one SQLite file, WAL, read-only web workers) and 4
(the as-of rule: the version with the latest valid_from <= t among those recorded by
known_at; among equal valid_from the later recorded one wins).
"""
import re
import sqlite3
from dataclasses import astuple
from datetime import datetime, timedelta, timezone

import pytest

from tests.fplane_samples import SPECIAL_ROWS, make_rows, measured_positions
from wsgi.fplane import VIRUS_SLOTS, Row
from wsgi import store as store_module
from wsgi.store import (SCHEMA_VERSION, Store, StoreUnavailable, UpdateAlreadyRecorded, UpdateRecord,
                         content_hash, positions_hash)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def us(iso: str) -> int:
    """Microseconds since the epoch for an ISO 8601 UTC instant ('2018-07-10T05:00:00')."""
    instant = datetime.fromisoformat(iso).replace(tzinfo=timezone.utc)
    return (instant - EPOCH) // timedelta(microseconds=1)


def without_seat_spectrograph(rows, seat):
    """The same configuration with ``seat``'s spectrograph taken out (an inactive seat)."""
    return tuple(Row(r.ifuslot, r.x, r.y, 0, r.specslot, r.ifuid, r.ifurot, r.platesc, False)
                 if r.ifuslot == seat else r for r in rows)


# Four different configurations of the instrument.
A = make_rows()
B = without_seat_spectrograph(A, VIRUS_SLOTS[0])
C = without_seat_spectrograph(A, VIRUS_SLOTS[1])
D = without_seat_spectrograph(A, VIRUS_SLOTS[2])
ROWS = {"A": A, "B": B, "C": C, "D": D}


def by_seat(rows):
    return sorted(rows, key=lambda r: r.ifuslot)


def count(path, table) -> int:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def raw_update(path, sql, *params):
    """Change the file behind the store's back, as a careless person with sqlite3 would."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(sql, params)
    finally:
        db.close()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "fplane.sqlite"


@pytest.fixture
def store(path):
    store = Store.open_writable(path, create=True)
    yield store
    store.close()


@pytest.fixture
def reader(store, path):
    """A web worker's connection: read-only, opened after the store exists."""
    reader = Store.open_readonly(path)
    yield reader
    reader.close()


def record(store, rows, valid_from, recorded_at, comment=""):
    return store.record_version(rows, us(valid_from), us(recorded_at), "test", comment, "test")


# -- opening ---------------------------------------------------------------------------

def test_a_new_store_is_in_wal_mode_with_the_current_schema(store, path):
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.schema_version() == SCHEMA_VERSION


def test_a_readonly_connection_refuses_writes(store, reader, path):
    with pytest.raises(sqlite3.Error):
        reader.record_version(A, us("2018-07-01T05:00:00"), us("2018-07-02T00:00:00"), "web")
    with pytest.raises(sqlite3.Error):
        reader._db.execute("INSERT INTO configurations (content_hash, active_ifus) VALUES ('x', 0)")
    assert count(path, "versions") == 0
    assert count(path, "configurations") == 0


def make_missing(path):
    assert not path.exists()


def make_empty_sqlite_file(path):
    sqlite3.connect(path).close()
    path.touch()


def make_newer_schema(path):
    Store.open_writable(path, create=True).close()
    raw_update(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def make_garbage(path):
    path.write_bytes(b"this is not an SQLite database, it is a text file " * 100)


@pytest.mark.parametrize("make_file, why", [
    (make_missing, "not initialised"),
    (make_empty_sqlite_file, "another schema version"),
    (make_newer_schema, "another schema version"),
    (make_garbage, "cannot be read"),
], ids=["missing", "schema 0", "newer schema", "not sqlite"])
def test_an_unusable_store_is_unavailable_without_showing_its_path(path, make_file, why):
    make_file(path)
    with pytest.raises(StoreUnavailable) as caught:
        Store.open_readonly(path)
    message = str(caught.value)
    assert why in message
    # str() goes to clients: no server path. detail goes to the log: it names the file.
    assert str(path.parent) not in message and path.name not in message
    assert str(path) in caught.value.detail


def test_migrate_brings_a_fresh_file_to_the_current_schema(path):
    make_empty_sqlite_file(path)
    with pytest.raises(StoreUnavailable, match="another schema version"):
        Store.open_writable(path)  # without create: no silent migration
    store = Store.open_writable(path, create=True)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        version, created = record(store, A, "2018-07-01T05:00:00", "2018-07-02T00:00:00")
        assert created
    finally:
        store.close()


def test_migrate_is_idempotent_on_a_current_store(store, path):
    version, _ = record(store, A, "2018-07-01T05:00:00", "2018-07-02T00:00:00")
    assert store.migrate() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION
    Store.open_writable(path, create=True).close()
    assert store.schema_version() == SCHEMA_VERSION
    assert store.history() == [version]


def test_a_store_from_a_newer_program_is_refused_and_left_alone(path):
    make_newer_schema(path)
    with pytest.raises(StoreUnavailable, match="newer") as caught:
        Store.open_writable(path, create=True)
    assert str(path) in caught.value.detail
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


# -- the as-of rule (contract section 4) ------------------------------------------------

# The story: A from July 1st; B from July 10th, recorded on the 11th; on the 20th B is
# corrected to C (same valid_from); on August 1st someone records D, valid from July 5th,
# in between (a backfill).
HISTORY = [
    # name, rows, valid_from, recorded_at
    ("A", A, "2018-07-01T05:00:00", "2018-07-02T00:00:00"),
    ("B", B, "2018-07-10T05:00:00", "2018-07-11T00:00:00"),
    ("C", C, "2018-07-10T05:00:00", "2018-07-20T00:00:00"),
    ("D", D, "2018-07-05T05:00:00", "2018-08-01T00:00:00"),
]
NOW = None


@pytest.fixture
def story(store):
    versions = {}
    for name, rows, valid_from, recorded_at in HISTORY:
        versions[name], created = record(store, rows, valid_from, recorded_at)
        assert created
    return versions


@pytest.mark.parametrize("t, known_at, expected, valid_until", [
    # before anything was valid
    ("2018-06-30T00:00:00", NOW, None, None),
    # exactly at a boundary the new version; one microsecond before it the old one
    ("2018-07-01T05:00:00", NOW, "A", "2018-07-05T05:00:00"),
    ("2018-07-05T04:59:59.999999", NOW, "A", "2018-07-05T05:00:00"),
    ("2018-07-05T05:00:00", NOW, "D", "2018-07-10T05:00:00"),
    ("2018-07-10T04:59:59.999999", NOW, "D", "2018-07-10T05:00:00"),
    # among equal valid_from the later recorded wins (a correction)
    ("2018-07-10T05:00:00", NOW, "C", None),
    ("2019-01-01T00:00:00", NOW, "C", None),
    # known_at before the correction was recorded: the original
    ("2018-07-10T05:00:00", "2018-07-19T23:59:59.999999", "B", None),
    ("2018-07-10T05:00:00", "2018-07-20T00:00:00", "C", None),
    # known_at before B was recorded: A still open
    ("2018-07-10T05:00:00", "2018-07-10T23:00:00", "A", None),
    # the backfilled D changes A's valid_until only for later known_at
    ("2018-07-03T00:00:00", "2018-07-31T23:59:59", "A", "2018-07-10T05:00:00"),
    ("2018-07-06T00:00:00", "2018-07-31T23:59:59", "A", "2018-07-10T05:00:00"),
    ("2018-07-06T00:00:00", "2018-08-01T00:00:00", "D", "2018-07-10T05:00:00"),
    ("2018-07-03T00:00:00", "2018-08-01T00:00:00", "A", "2018-07-05T05:00:00"),
    # known_at before anything was recorded
    ("2018-07-10T05:00:00", "2018-07-01T23:59:59", None, None),
])
def test_version_at_follows_the_as_of_rule(store, story, t, known_at, expected, valid_until):
    args = (us(t),) if known_at is NOW else (us(t), us(known_at))
    found = store.version_at(*args)
    if expected is None:
        assert found is None
        return
    assert found.id == story[expected].id
    assert store.configuration_rows(found.configuration_id) == tuple(by_seat(ROWS[expected]))
    assert found.valid_until == (None if valid_until is None else us(valid_until))


def test_a_read_only_worker_sees_the_same_answers(story, reader):
    assert reader.version_at(us("2018-07-10T05:00:00")).id == story["C"].id
    assert reader.earliest_valid_from() == us("2018-07-01T05:00:00")
    assert reader.earliest_valid_from(us("2018-07-01T00:00:00")) is None


# -- recording versions -----------------------------------------------------------------

def reordered(rows):
    return tuple(reversed(rows))


def with_float_noise(rows):
    """What a file written with 3 decimals and read back gives: the same configuration."""
    return tuple(Row(r.ifuslot, r.x + 1e-7, r.y + 1e-7, r.specid, r.specslot, r.ifuid,
                     r.ifurot, r.platesc, r.active) for r in rows)


def with_negative_zero(rows):
    """The 000 row written as '-0.000' by a tool that computed -0.0001: still the centre."""
    return tuple(Row(r.ifuslot, -0.0001, -0.0, r.specid, r.specslot, r.ifuid,
                     r.ifurot, r.platesc, r.active) if r.ifuslot == 0 else r for r in rows)


@pytest.mark.parametrize("rows, valid_from", [
    (A, "2018-07-01T05:00:00"),                    # the same, at the same instant
    (A, "2018-07-03T00:00:00"),                    # the same as what is valid then
    (reordered(A), "2018-07-01T05:00:00"),         # row order does not matter
    (with_float_noise(A), "2018-07-01T05:00:00"),  # nor noise below the written precision
    (with_negative_zero(A), "2018-07-01T05:00:00"),  # nor the sign of a zero
], ids=["same instant", "later instant", "reordered", "float noise", "negative zero"])
def test_recording_what_is_already_valid_writes_nothing(store, path, rows, valid_from):
    first, _ = record(store, A, "2018-07-01T05:00:00", "2018-07-02T00:00:00")
    before = {t: count(path, t) for t in ("versions", "configurations", "configuration_rows")}

    again, created = record(store, rows, valid_from, "2018-07-05T00:00:00")

    assert not created
    assert again == first
    assert {t: count(path, t) for t in before} == before


def test_recording_before_the_history_starts_is_a_new_version(store):
    first, _ = record(store, A, "2018-07-01T05:00:00", "2018-07-02T00:00:00")
    earlier, created = record(store, A, "2018-06-01T05:00:00", "2018-07-03T00:00:00")
    assert created
    assert [v.id for v in store.history()] == [earlier.id, first.id]


def test_a_revert_reuses_the_row_set_but_is_a_new_version(store, path):
    first, _ = record(store, A, "2018-07-01T05:00:00", "2018-07-02T00:00:00")
    record(store, B, "2018-07-10T05:00:00", "2018-07-11T00:00:00")
    rows_stored = count(path, "configuration_rows")

    reverted, created = record(store, A, "2018-07-20T05:00:00", "2018-07-21T00:00:00")

    assert created
    assert reverted.id != first.id
    assert reverted.configuration_id == first.configuration_id
    assert count(path, "versions") == 3
    assert count(path, "configurations") == 2
    assert count(path, "configuration_rows") == rows_stored
    assert store.version_at(us("2018-07-25T00:00:00")).id == reverted.id


def test_rows_come_back_exactly(store, path):
    # Every seat: 000, active and inactive grid seats (one inactive seat keeps its SPECID),
    # LRS2, the special rows; measured positions and odd optics as floats, one seat's
    # numbers given as ints.
    rows = make_rows(positions=measured_positions(VIRUS_SLOTS))
    rows = tuple(
        Row(r.ifuslot, r.x, r.y, r.specid or 7, r.specslot, r.ifuid, 0.25, 1.003, False)
        if r.ifuslot == VIRUS_SLOTS[3] else
        Row(r.ifuslot, -150, 250, r.specid, r.specslot, r.ifuid, 0, 1, r.active)
        if r.ifuslot == VIRUS_SLOTS[4] else r
        for r in rows)
    version, _ = record(store, rows, "2018-07-01T05:00:00", "2018-07-02T00:00:00")

    back = store.configuration_rows(version.configuration_id)   # the writer's, kept
    with Store.open_readonly(path) as reader:                   # read from the file
        read = reader.configuration_rows(version.configuration_id)

    assert back == read == tuple(by_seat(rows))
    types = [int, float, float, int, int, int, float, float, bool]
    assert [[type(v) for v in astuple(r)] for r in back] == [types] * len(rows)
    assert [[type(v) for v in astuple(r)] for r in read] == [types] * len(rows)
    assert {r.ifuslot for r in SPECIAL_ROWS} <= {r.ifuslot for r in back}
    assert sum(not r.active for r in back) == sum(not r.active for r in rows) > 0
    assert version.active_ifus == sum(
        1 for r in rows if r.active and r.specid and r.ifuslot in VIRUS_SLOTS)


def test_version_metadata_is_kept(store):
    version, _ = store.record_version(A, us("2018-07-01T05:00:00"), us("2018-07-02T00:00:00"),
                                      "station-7", "new IFU 073", "POST /fplane")
    assert (version.valid_from, version.recorded_at, version.station, version.comment,
            version.source, version.valid_until) == (
        us("2018-07-01T05:00:00"), us("2018-07-02T00:00:00"), "station-7", "new IFU 073",
        "POST /fplane", None)
    assert store.version_by_id(version.id) == version
    assert store.version_by_id(version.id + 1) is None


# -- measured position sets -------------------------------------------------------------

P1 = measured_positions(VIRUS_SLOTS[:20])
P2 = measured_positions(VIRUS_SLOTS[20:40])
P3 = {**P2, VIRUS_SLOTS[20]: (-123.456, 78.901)}


@pytest.fixture
def position_story(store):
    sets = {}
    for name, positions, valid_from, recorded_at in [
        ("P1", P1, "2018-07-01T05:00:00", "2018-07-02T00:00:00"),
        ("P2", P2, "2018-07-10T05:00:00", "2018-07-11T00:00:00"),
        ("P3", P3, "2018-07-10T05:00:00", "2018-07-20T00:00:00"),  # a correction of P2
    ]:
        sets[name], created = store.record_position_set(
            positions, us(valid_from), us(recorded_at), "astrometry", "", "test")
        assert created
    return sets


@pytest.mark.parametrize("t, known_at, expected, valid_until", [
    ("2018-06-30T00:00:00", NOW, None, None),
    ("2018-07-01T05:00:00", NOW, "P1", "2018-07-10T05:00:00"),
    ("2018-07-10T04:59:59.999999", NOW, "P1", "2018-07-10T05:00:00"),
    ("2018-07-10T05:00:00", NOW, "P3", None),
    ("2018-07-10T05:00:00", "2018-07-19T00:00:00", "P2", None),
    ("2018-07-10T05:00:00", "2018-07-10T00:00:00", "P1", None),
    ("2018-07-10T05:00:00", "2018-07-01T00:00:00", None, None),
])
def test_position_set_at_follows_the_as_of_rule(store, position_story, t, known_at, expected,
                                                valid_until):
    args = (us(t),) if known_at is NOW else (us(t), us(known_at))
    found = store.position_set_at(*args)
    if expected is None:
        assert found is None
        return
    assert found.id == position_story[expected].id
    assert store.positions(found.id) == {"P1": P1, "P2": P2, "P3": P3}[expected]
    assert found.valid_until == (None if valid_until is None else us(valid_until))


def test_recording_the_same_positions_again_writes_nothing(store, path, position_story):
    before = (count(path, "position_sets"), count(path, "positions"))
    again, created = store.record_position_set(
        dict(reversed(P3.items())), us("2018-07-15T00:00:00"), us("2018-08-01T00:00:00"),
        "astrometry")
    assert not created
    assert again.id == position_story["P3"].id
    assert (count(path, "position_sets"), count(path, "positions")) == before


def test_position_set_history_is_in_valid_from_order(store, position_story):
    assert [p.id for p in store.position_set_history()] == [
        position_story[name].id for name in ("P1", "P2", "P3")]


# -- history ----------------------------------------------------------------------------

def test_history_is_in_valid_from_order_with_valid_until_as_known_now(store, story):
    history = store.history()
    assert [v.id for v in history] == [story[n].id for n in ("A", "D", "B", "C")]
    assert [v.valid_until for v in history] == [
        us("2018-07-05T05:00:00"), us("2018-07-10T05:00:00"), None, None]


def test_history_can_be_limited_to_a_valid_from_range(store, story):
    selected = store.history(us("2018-07-05T00:00:00"), us("2018-07-09T00:00:00"))
    assert [v.id for v in selected] == [story["D"].id]


# -- change detection for web workers ---------------------------------------------------

def test_data_version_changes_when_another_connection_commits(store, reader):
    before = reader.data_version()
    reader.version_at(us("2018-07-01T05:00:00"))
    assert reader.data_version() == before  # reading changes nothing

    record(store, A, "2018-07-01T05:00:00", "2018-07-02T00:00:00")
    after_commit = reader.data_version()
    assert after_commit != before

    record(store, A, "2018-07-01T05:00:00", "2018-07-03T00:00:00")  # no change: rolled back
    assert reader.data_version() == after_commit


# -- integrity --------------------------------------------------------------------------

def test_a_good_store_has_no_integrity_problems(store, story):
    assert store.integrity_problems() == []


@pytest.mark.parametrize("tamper, expected", [
    ("UPDATE configuration_rows SET specid = 77 WHERE configuration_id = ? AND ifuslot = 13",
     r"configuration {id}: rows do not match their content hash"),
    ("UPDATE configuration_rows SET x = x + 1 WHERE configuration_id = ? AND ifuslot = 21",
     r"configuration {id}: rows do not match their content hash"),
    ("DELETE FROM configuration_rows WHERE configuration_id = ? AND ifuslot = 13",
     r"configuration {id}: rows do not match their content hash"),
    ("DELETE FROM configuration_rows WHERE configuration_id = ?",
     r"its configuration has no rows"),
], ids=["specid changed", "x changed", "row deleted", "all rows deleted"])
def test_a_tampered_configuration_is_reported(store, story, path, tamper, expected):
    configuration_id = story["B"].configuration_id
    raw_update(path, tamper, configuration_id)
    problems = store.integrity_problems()
    assert any(re.search(expected.format(id=configuration_id), p) for p in problems), problems


# -- backup -----------------------------------------------------------------------------

def test_backup_while_a_reader_holds_a_transaction_is_a_complete_copy(store, story, path, tmp_path):
    target_dir = tmp_path / "backups"
    target_dir.mkdir()
    target = target_dir / "copy.sqlite"
    history_before = store.history()
    busy_reader = sqlite3.connect(path, isolation_level=None)
    busy_reader.execute("BEGIN")
    assert busy_reader.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == len(HISTORY)
    try:
        store.backup(target)
        # the writer is not blocked by the reader or the backup either
        record(store, A, "2018-09-01T05:00:00", "2018-09-02T00:00:00")
    finally:
        busy_reader.execute("ROLLBACK")
        busy_reader.close()

    copy = Store.open_readonly(target)
    try:
        assert copy.history() == history_before
        assert copy.integrity_problems() == []
        assert copy.version_at(us("2018-07-10T05:00:00")).id == story["C"].id
    finally:
        copy.close()
    # one self-contained file: opening it did not litter its directory with -wal / -shm
    assert [p.name for p in target_dir.iterdir()] == ["copy.sqlite"]


# -- performance sanity (not timing): the as-of queries probe the index -------------------

def traced_sql(store, call):
    statements = []
    store._db.set_trace_callback(statements.append)
    try:
        call()
    finally:
        store._db.set_trace_callback(None)
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


@pytest.mark.parametrize("query, table, index", [
    (lambda s: s.version_at(us("2018-07-06T00:00:00")), "versions", "versions_as_of"),
    (lambda s: s.version_at(us("2018-07-06T00:00:00"), us("2018-07-15T00:00:00")),
     "versions", "versions_as_of"),
    (lambda s: s.position_set_at(us("2018-07-06T00:00:00")), "position_sets", "position_sets_as_of"),
], ids=["version_at", "version_at known_at", "position_set_at"])
def test_as_of_queries_search_the_index_instead_of_scanning(store, story, position_story,
                                                            query, table, index):
    statements = traced_sql(store, lambda: query(store))
    assert len(statements) == 2  # the version itself, and the next valid_from (valid_until)
    for sql in statements:
        plan = [row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql)]
        on_table = [step for step in plan if re.search(rf"\b({table}|v)\b", step)]
        assert on_table, plan
        for step in on_table:
            assert re.match(rf"SEARCH \w+ USING (COVERING )?INDEX {index} ", step), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan


def test_a_schema_1_store_keeps_its_history_when_init_migrates_it(path):
    """A store made before the update path (schema 1) is refused until migrated, then has
    its versions and the updates table, and no longer the rendered texts (schema 3)."""
    db = sqlite3.connect(path)
    db.executescript(store_module._MIGRATIONS[0] + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO configurations (content_hash, active_ifus, full_text, short_text)"
               " VALUES ('h', 0, '', '')")
    db.execute("INSERT INTO versions (valid_from, recorded_at, station, comment, source,"
               " configuration_id) VALUES (1, 2, 'admin', 'old', 'import', 1)")
    db.commit()
    db.close()
    with pytest.raises(StoreUnavailable, match="fplane-admin init"):
        Store.open_readonly(path)
    with Store.open_writable(path, create=True) as store:
        assert store.schema_version() == SCHEMA_VERSION == 3
        assert [v.comment for v in store.history()] == ["old"]
        columns = {row[1] for row in store._db.execute("PRAGMA table_info(configurations)")}
        assert columns == {"id", "content_hash", "active_ifus"}
        assert store.update_by_id("0" * 20) is None
        assert store.updates_in_state("held") == []


# -- update records ----------------------------------------------------------------------

def posted(update_id="a" * 20, valid_from="2018-07-01T05:00:00"):
    return UpdateRecord(update_id, "config", "tcs", "c" * 64, us("2018-07-01T06:00:00"),
                        us(valid_from), "127.0.0.1", '{"config": {}, "commit": true}')


def test_an_update_is_recorded_with_the_version_it_made_in_the_same_transaction(store):
    version, created = store.record_version(A, us("2018-07-01T05:00:00"), us("2018-07-02T00:00:00"),
                                            "tcs", update=posted())
    assert created
    kept = store.update_by_id("a" * 20)
    assert (kept.state, kept.version_id, kept.payload) == ("committed", version.id, posted().payload)
    again, created = store.record_version(A, us("2018-07-01T05:00:00"), us("2018-07-03T00:00:00"),
                                          "tcs", update=posted("b" * 20))
    assert not created and again.id == version.id
    assert store.update_by_id("b" * 20).state == "unchanged"
    assert store.integrity_problems() == []


def test_a_failed_version_write_leaves_no_update_record(store, path):
    store.record_version(A, us("2018-07-01T05:00:00"), us("2018-07-02T00:00:00"), "tcs",
                         update=posted())
    # The same update id again is refused, and the version insert is rolled back with it.
    with pytest.raises(UpdateAlreadyRecorded):
        store.record_version(B, us("2018-08-01T05:00:00"), us("2018-08-02T00:00:00"), "tcs",
                             update=posted())
    assert count(path, "versions") == 1


def test_a_held_update_is_released_or_rejected_in_place(store):
    store.record_update(posted(), "held", us("2018-07-02T00:00:00"), reason="too many off")
    assert [u.update_id for u in store.updates_in_state("held")] == ["a" * 20]
    version, _ = store.record_version(A, us("2018-07-01T05:00:00"), us("2018-07-03T00:00:00"),
                                      "tcs", update=store.update_by_id("a" * 20))
    released = store.update_by_id("a" * 20)
    assert (released.state, released.version_id) == ("committed", version.id)
    assert store.updates_in_state("held") == []
    store.record_update(posted("b" * 20), "held", us("2018-07-02T00:00:00"), reason="x")
    store.record_update(store.update_by_id("b" * 20), "rejected", us("2018-07-04T00:00:00"),
                        reason="rejected by admin")
    assert store.update_by_id("b" * 20).state == "rejected"


def test_verify_notices_an_update_that_claims_a_commit_without_a_version(store, path):
    store.record_update(posted(), "held", us("2018-07-02T00:00:00"))
    raw_update(path, "UPDATE updates SET state = 'committed'")
    assert any("update aaaa" in p for p in store.integrity_problems())


# -- digests ----------------------------------------------------------------------------

def test_digests_never_change():
    """content_hash and positions_hash are stored with every configuration and position
    set: an existing store compares new updates with them, so their bytes are pinned."""
    assert content_hash(A) == "ccf5325866ce029858d509dea7fc5e58ec73f9e486f3f174cf217fb1b2585818"
    assert positions_hash({21: (-0.0001, 3.0), 5: (-10.0004, -0.0), 7: (0.0005, 12.3456)}) == \
        "4edde585063450c793325cd4434fd7a29ace768787ca90f1233313dd392e81d4"


def test_digests_ignore_order_and_sub_milliarcsecond_noise():
    nudged = tuple(Row(r.ifuslot, r.x + 0.0001 if r.x == 0 else r.x, -0.0 if r.y == 0 else r.y,
                       r.specid, r.specslot, r.ifuid, r.ifurot, r.platesc, r.active) for r in A)
    assert content_hash(tuple(reversed(nudged))) == content_hash(A)
    assert content_hash(B) != content_hash(A)
    assert positions_hash({5: (-0.0001, 1.0), 7: (2.0, 3.0)}) == positions_hash({7: (2.0, 3.0), 5: (0.0, 1.0)})
    assert positions_hash({5: (-0.0001, 1.0)}) != positions_hash({5: (-0.001, 1.0)})
