"""The spool (wsgi.spool) on a real directory: tmp/ -> new/ -> cur/ -> done/ or failed/,
file names that sort first-in first-out, contents that are plain JSON, update ids that
make the same post the same update."""

import json
import os
import re
import shutil

import pytest

from wsgi.spool import (SUBDIRECTORIES, Spool, SpooledUpdate, is_update_id, update_id)

CHECKSUM = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
T0 = 1_531_674_131_000_000          # 2018-07-15T17:02:11Z in µs


def make_update(received_at=T0, station="tcs", checksum=CHECKSUM, **more) -> SpooledUpdate:
    fields = dict(update_id=update_id(station, checksum), kind="config", station=station,
                  checksum=checksum, received_at=received_at, valid_from=T0 - 5_000_000,
                  data='{"config": {}, "commit": true}', remote_addr="192.0.2.7")
    fields.update(more)
    return SpooledUpdate(**fields)


def distinct(n, start=T0, step=1):
    """n updates with distinct ids, received ``step`` µs apart."""
    return [make_update(received_at=start + i * step, checksum=f"{i:064x}") for i in range(n)]


@pytest.fixture
def spool(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.create()
    return spool


def names(directory):
    return sorted(os.listdir(directory))


# -- the web app's side: enqueue ------------------------------------------------------

def test_enqueue_writes_into_new_with_a_time_first_name(spool):
    update = make_update()
    path = spool.enqueue(update)
    assert path.parent == spool.new
    assert path.name == f"{T0:016d}.{update.update_id}"
    assert re.fullmatch(r"\d{16}\.[0-9a-f]{20}", path.name)
    assert names(spool.new) == [path.name]
    assert names(spool.tmp) == []
    assert all(names(d) == [] for d in (spool.cur, spool.done, spool.failed))


def test_enqueued_file_is_not_world_readable(spool):
    path = spool.enqueue(make_update())
    assert path.stat().st_mode & 0o007 == 0


@pytest.mark.parametrize("update", [
    make_update(),
    make_update(data='{\r\n "config": {"comment": "Zürich 🔭"},\r\n "commit": true\r\n}\r\n'),
    make_update(held=True, hold_reason="it would switch off 60% of the IFUs"),
    make_update(kind="positions", remote_addr=""),
    make_update(received_at=5, valid_from=-86_400_000_000),    # before the epoch
], ids=["plain", "non-ASCII and CRLF data", "held", "positions", "odd instants"])
def test_file_content_round_trips(spool, update):
    path = spool.enqueue(update)
    assert SpooledUpdate.from_bytes(path.read_bytes()) == update


def test_file_content_is_plain_json(spool):
    update = make_update(data='{"comment": "Zürich"}')
    content = json.loads(spool.enqueue(update).read_bytes().decode("utf-8"))
    assert content["update_id"] == update.update_id
    assert content["station"] == "tcs" and content["checksum"] == CHECKSUM
    assert content["data"] == '{"comment": "Zürich"}'
    assert content["held"] is False


def test_enqueue_into_a_broken_spool_raises_and_leaves_no_temporary_file(spool):
    shutil.rmtree(spool.new)
    with pytest.raises(OSError):
        spool.enqueue(make_update())
    assert names(spool.tmp) == []


def test_same_update_enqueued_twice_in_one_microsecond_is_one_file(spool):
    spool.enqueue(make_update())
    spool.enqueue(make_update())
    assert len(names(spool.new)) == 1 and names(spool.tmp) == []


# -- the writer's side: waiting, claim, retry, claimed, finish, give up -----------------

def test_waiting_is_first_in_first_out_by_received_at(spool):
    updates = distinct(3, step=1)
    later, earliest, middle = updates[2], updates[0], updates[1]
    for u in (later, earliest, middle):
        spool.enqueue(u)
    assert spool.waiting() == [earliest.name, middle.name, later.name]


def test_fifo_holds_across_digit_counts(spool):
    """Names are zero-padded: a 15-digit time (before 2001-09-09) sorts before a 16-digit one."""
    old = make_update(received_at=999_999_999_999_999, checksum="a" * 64)
    new = make_update(received_at=1_000_000_000_000_000, checksum="b" * 64)
    spool.enqueue(new)
    spool.enqueue(old)
    assert spool.waiting() == [old.name, new.name]


def test_waiting_ignores_stray_files(spool):
    update = spool.enqueue(make_update())
    for stray in ("README", ".hidden", f"{update.name}.tmp", "12.34"):
        (spool.new / stray).write_text("x")
    assert spool.waiting() == [update.name]


def test_claim_moves_to_cur_as_attempt_1(spool):
    name = spool.enqueue(make_update()).name
    claimed = spool.claim(name)
    assert claimed.attempt == 1 and claimed.name == name
    assert claimed.path == spool.cur / f"{name}:1"
    assert names(spool.new) == [] and names(spool.cur) == [f"{name}:1"]
    assert SpooledUpdate.from_bytes(spool.read(claimed)) == make_update()


def test_claim_of_an_already_claimed_file_is_none(spool):
    name = spool.enqueue(make_update()).name
    assert spool.claim(name) is not None
    assert spool.claim(name) is None
    assert names(spool.cur) == [f"{name}:1"]


def test_retry_counts_one_more_attempt(spool):
    first = spool.claim(spool.enqueue(make_update()).name)
    second = spool.retry(first)
    assert second.attempt == 2 and second.name == first.name
    assert second.path == spool.cur / f"{first.name}:2"
    assert not first.path.exists()
    third = spool.retry(second)
    assert third.attempt == 3 and names(spool.cur) == [f"{first.name}:3"]


def test_retry_of_a_vanished_file_is_none(spool):
    claimed = spool.claim(spool.enqueue(make_update()).name)
    spool.finish(claimed)
    assert spool.retry(claimed) is None


def test_claimed_lists_cur_oldest_first_with_attempts(spool):
    updates = distinct(3, step=1000)
    for u in reversed(updates):
        spool.enqueue(u)
    claims = [spool.claim(u.name) for u in (updates[2], updates[0], updates[1])]
    spool.retry(claims[0])      # the newest is on its second attempt
    (spool.cur / "junk").write_text("x")
    found = spool.claimed()
    assert [c.name for c in found] == [u.name for u in updates]
    assert [c.attempt for c in found] == [1, 1, 2]
    assert all(c.path.exists() for c in found)


def test_finish_keeps_the_request_in_done(spool):
    update = make_update()
    claimed = spool.claim(spool.enqueue(update).name)
    spool.finish(claimed)
    assert names(spool.done) == [update.name]
    assert names(spool.cur) == [] and names(spool.new) == []
    assert SpooledUpdate.from_bytes((spool.done / update.name).read_bytes()) == update


def test_give_up_moves_to_failed_with_its_reason(spool):
    update = make_update()
    claimed = spool.claim(spool.enqueue(update).name)
    spool.give_up(claimed, "attempt 1: ValueError: data is invalid\n")
    assert names(spool.failed) == [update.name, update.name + ".reason"]
    assert (spool.failed / (update.name + ".reason")).read_text("utf-8") == \
        "attempt 1: ValueError: data is invalid\n"
    assert names(spool.cur) == []
    assert spool.failure_reason(update.update_id) == "attempt 1: ValueError: data is invalid"
    assert spool.failed_names() == [update.name]
    assert not spool.is_queued(update.update_id)


def test_failure_reason_of_an_update_not_failed_is_none(spool):
    update = make_update()
    spool.enqueue(update)
    assert spool.failure_reason(update.update_id) is None
    assert spool.failure_reason(update_id("other", CHECKSUM)) is None


def test_failure_reason_without_a_reason_file(spool):
    update = make_update()
    claimed = spool.claim(spool.enqueue(update).name)
    spool.give_up(claimed, "lost")
    (spool.failed / (update.name + ".reason")).unlink()
    assert spool.failure_reason(update.update_id).startswith("no reason recorded")


def test_is_queued_in_new_and_cur_not_after_finish(spool):
    update = make_update()
    assert not spool.is_queued(update.update_id)
    spool.enqueue(update)
    assert spool.is_queued(update.update_id)
    claimed = spool.claim(update.name)
    assert spool.is_queued(update.update_id)
    claimed = spool.retry(claimed)
    assert spool.is_queued(update.update_id)
    spool.finish(claimed)
    assert not spool.is_queued(update.update_id)
    assert not spool.is_queued(update_id("other", CHECKSUM))


def test_a_receipt_stands_exactly_while_the_update_is_in_new_or_cur(spool):
    kept, failed = distinct(2)
    for update in (kept, failed):
        spool.enqueue(update)
    assert names(spool.ids) == sorted([kept.update_id, failed.update_id])
    spool.finish(spool.claim(kept.name))
    spool.give_up(spool.claim(failed.name), "bad")
    assert names(spool.ids) == []


def test_a_receipt_is_the_spooled_file_so_dropping_it_frees_no_inode(spool):
    """On ext4 without a journal a freed inode slows the next file creations for minutes:
    a receipt made and removed per update would slow every post under a steady flow."""
    update = make_update()
    spooled = spool.enqueue(update)
    receipt = spool.ids / update.update_id
    inode = os.stat(spooled).st_ino
    assert os.stat(receipt).st_ino == inode
    spool.finish(spool.claim(update.name))
    kept = os.stat(spool.done / update.name)
    assert kept.st_ino == inode and kept.st_nlink == 1 and not receipt.exists()


def test_a_spool_from_before_receipts_gets_them(spool):
    shutil.rmtree(spool.ids)
    update = make_update()
    spool.enqueue(update)
    assert spool.is_queued(update.update_id)


def test_no_receipt_for_an_update_that_could_not_be_spooled(spool):
    shutil.rmtree(spool.new)
    update = make_update()
    with pytest.raises(OSError):
        spool.enqueue(update)
    assert not spool.is_queued(update.update_id)
    assert names(spool.tmp) == []


def test_put_receipts_right_after_a_crash_or_a_hand_move(spool):
    """A writer killed between moving a file on and removing its receipt leaves a stale
    one; a file moved by hand from failed/ back to new/, or left by a lost receipt,
    has none. The writer puts both right when it starts."""
    stale, moved, claimed = distinct(3)
    for update in (stale, moved, claimed):
        spool.enqueue(update)
    os.rename(spool.new / stale.name, spool.done / stale.name)      # receipt left behind
    (spool.ids / moved.update_id).unlink()                           # receipt lost
    spool.claim(claimed.name)
    (spool.ids / claimed.update_id).unlink()                         # ... also in cur/
    (spool.ids / "not-an-update").touch()

    spool.put_receipts_right()

    assert names(spool.ids) == sorted([moved.update_id, claimed.update_id])
    assert not spool.is_queued(stale.update_id)
    assert spool.is_queued(moved.update_id) and spool.is_queued(claimed.update_id)


def test_backlog_counts_new_and_cur(spool):
    updates = distinct(3)
    for u in updates:
        spool.enqueue(u)
    spool.claim(updates[0].name)
    assert spool.backlog() == 3
    spool.finish(spool.claimed()[0])
    assert spool.backlog() == 2


# -- update ids ----------------------------------------------------------------------

def test_update_id_is_deterministic_for_station_and_checksum():
    assert update_id("tcs", CHECKSUM) == update_id("tcs", CHECKSUM)
    assert update_id("tcs", CHECKSUM) == update_id("tcs", CHECKSUM.upper())
    assert is_update_id(update_id("tcs", CHECKSUM))


def test_update_id_differs_by_station_checksum_and_target():
    ids = {update_id("tcs", CHECKSUM), update_id("ops", CHECKSUM),
           update_id("tcs", "0" * 64), update_id("tcs2", CHECKSUM),
           update_id("tcs", CHECKSUM, "config/20180715"), update_id("tcs", CHECKSUM, "positions/")}
    assert len(ids) == 6


@pytest.mark.parametrize("text, ok", [
    ("0123456789abcdef0123", True), ("0123456789ABCDEF0123", False), ("0123456789abcdef012", False),
    ("0123456789abcdef01234", False), ("", False), ("../../etc/passwd", False),
    ("0123456789abcdef012\n", False),
])
def test_is_update_id(text, ok):
    assert is_update_id(text) is ok


# -- reading a file back -------------------------------------------------------------

GOOD = json.loads(make_update().to_bytes())


GARBAGE = {
    "empty": b"", "not UTF-8": b"\xff\xfe", "not JSON": b"not json", "null": b"null",
    "a list": b"[]", "a number": b"42", "an empty object": b"{}",
    "an unknown field": json.dumps({**GOOD, "unknown": 1}).encode(),
    "no data": json.dumps({k: v for k, v in GOOD.items() if k != "data"}).encode(),
    "a bad update id": json.dumps({**GOOD, "update_id": "ZZ"}).encode(),
    "a number as update id": json.dumps({**GOOD, "update_id": 12345}).encode(),
    "a list as update id": json.dumps({**GOOD, "update_id": ["x"]}).encode(),
    "an unknown kind": json.dumps({**GOOD, "kind": "other"}).encode(),
    "a list as kind": json.dumps({**GOOD, "kind": ["config"]}).encode(),
    "a string as received_at": json.dumps({**GOOD, "received_at": "soon"}).encode(),
    "a boolean as received_at": json.dumps({**GOOD, "received_at": True}).encode(),
    "a float as valid_from": json.dumps({**GOOD, "valid_from": 1.5}).encode(),
    "a string as held": json.dumps({**GOOD, "held": "yes"}).encode(),
    "null as data": json.dumps({**GOOD, "data": None}).encode(),
    "an object as station": json.dumps({**GOOD, "station": {"id": "tcs"}}).encode(),
}


@pytest.mark.parametrize("raw", GARBAGE.values(), ids=GARBAGE.keys())
def test_from_bytes_rejects_garbage_with_value_error(raw):
    with pytest.raises(ValueError, match="not a spooled update"):
        SpooledUpdate.from_bytes(raw)


def test_from_bytes_reads_a_file_without_the_optional_fields():
    minimal = {k: v for k, v in GOOD.items() if k not in ("held", "hold_reason", "remote_addr")}
    update = SpooledUpdate.from_bytes(json.dumps(minimal).encode())
    assert update.held is False and update.hold_reason == "" and update.remote_addr == ""


# -- problems ------------------------------------------------------------------------

def test_a_complete_spool_has_no_problems(spool):
    assert spool.problems() == []


@pytest.mark.parametrize("missing", SUBDIRECTORIES)
def test_problems_name_a_missing_subdirectory(spool, missing):
    shutil.rmtree(spool.root / missing)
    problems = spool.problems()
    assert len(problems) == 1
    assert f"{missing}/" in problems[0] and "fplane-admin init" in problems[0]


def test_problems_of_a_missing_spool_name_every_subdirectory(tmp_path):
    problems = Spool(tmp_path / "nowhere").problems()
    assert len(problems) == len(SUBDIRECTORIES)
    assert all(any(f"{d}/" in p for p in problems) for d in SUBDIRECTORIES)


def test_create_is_idempotent(spool):
    update = spool.enqueue(make_update())
    spool.create()
    assert spool.problems() == [] and names(spool.new) == [update.name]


# -- what the web app never makes ---------------------------------------------------------

def test_only_regular_files_whose_content_matches_their_name_are_read(spool, tmp_path):
    good = make_update()
    outside = tmp_path / "outside.json"
    outside.write_bytes(good.to_bytes())
    other = make_update(received_at=T0 + 1, checksum="b" * 64)
    for received, plant in ((T0 + 10, lambda path: os.symlink(outside, path)),
                            (T0 + 11, lambda path: os.mkdir(path)),
                            (T0 + 12, lambda path: os.mkfifo(path))):
        name = make_update(received_at=received).name
        plant(spool.new / name)
        with pytest.raises(ValueError, match="symbolic link|not a regular file"):
            spool.read(spool.claim(name))
    # a well-formed update under another update's name
    (spool.new / other.name).write_bytes(good.to_bytes())
    claimed = spool.claim(other.name)
    with pytest.raises(ValueError, match="not what its name says"):
        spool.check_name(claimed, SpooledUpdate.from_bytes(spool.read(claimed)))


def test_strays_are_named_safely_for_failed(spool):
    for odd in ("notes.txt", ".hidden", "x\nforged log line", "1234.reason"):
        (spool.new / odd).write_text("junk")
    (spool.cur / "no-attempt-number").write_text("junk")
    strays = spool.strays()
    assert sorted(s.path.name for s in strays) == sorted(
        ["notes.txt", ".hidden", "x\nforged log line", "1234.reason", "no-attempt-number"])
    for stray in strays:
        assert re.fullmatch(r"\d{16}\.stray\.[A-Za-z0-9._-]+", stray.name), stray.name
        assert not stray.name.endswith(".reason")
        spool.give_up(stray, "a stray")
    assert spool.strays() == [] and spool.backlog() == 0
    assert len(spool.failed_names()) == 5
    assert all(spool.failure_reason_of(n) == "a stray" for n in spool.failed_names())


def test_temporaries_are_reported_then_removed_once_old(spool):
    left = spool.tmp / "0000000000000001.0123456789abcdef0123.dead"
    left.write_bytes(b'{"update_id": "01')
    fresh = spool.tmp / "0000000000000002.0123456789abcdef0123.busy"
    fresh.write_bytes(b"{")
    old = os.stat(left).st_mtime - 120
    os.utime(left, (old, old))
    assert [name for name, _ in spool.temporaries(60)] == [left.name]
    assert spool.remove_stale_temporaries(3600) == []          # not old enough yet
    os.utime(left, (old - 3600, old - 3600))
    assert spool.remove_stale_temporaries(3600) == [left.name]
    assert sorted(os.listdir(spool.tmp)) == [fresh.name]


def test_give_up_moves_the_file_even_when_its_reason_cannot_be_written(spool):
    """A full disk refuses the reason file, not the rename: the bad file must not stay in
    the way of the updates behind it (the disk-full drill does this on a full tmpfs)."""
    update = make_update()
    claimed = spool.claim(spool.enqueue(update).name)
    (spool.failed / (update.name + ".reason")).mkdir()   # writing the reason fails
    assert spool.give_up(claimed, "bad") is False
    assert spool.backlog() == 0 and update.name in spool.failed_names()
    assert not spool.is_queued(update.update_id)


def test_a_failed_update_is_put_back_by_id_and_its_reason_dropped(spool):
    update = make_update()
    spool.give_up(spool.claim(spool.enqueue(update).name), "attempt 3: it failed")
    assert spool.failure_reason(update.update_id) == "attempt 3: it failed"
    with pytest.raises(KeyError):
        spool.retry_failed("0" * 20)
    assert spool.retry_failed(update.update_id) == update.name
    assert spool.waiting() == [update.name] and spool.is_queued(update.update_id)
    assert spool.failed_names() == [] and os.listdir(spool.failed) == []


def test_what_a_bad_file_holds_never_reaches_the_reason_as_a_line_of_its_own():
    with pytest.raises(ValueError) as refused:
        SpooledUpdate.from_bytes(b'{"x\\nFORGED ERROR line": 1, "\\u001b[31m": 2}')
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)
    assert "x\\nFORGED" in str(refused.value)
