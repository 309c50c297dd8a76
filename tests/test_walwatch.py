"""The web worker's "has the store changed?" (wsgi/store.py WorkerStore, wsgi/walwatch.py).

A worker serves kept responses until the store changes, so a missed commit means stale
fplane files. These tests commit from another process, as the writer does, through WAL
checkpoints and restarts, and check that every commit is seen and that an unchanged store
costs no SQLite statement.
"""
import os
import sqlite3
import subprocess
import sys

import pytest

from wsgi.store import Store, WorkerStore
from wsgi.walwatch import HEADER_BYTES, wal_index

# A writer in another process: one line in, one transaction (or checkpoint), one line out.
COMMITTER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA wal_autocheckpoint = 4")   # checkpoints (and WAL restarts) come often
for line in sys.stdin:
    command = line.strip()
    if command == "commit":
        db.execute("INSERT INTO scratch (n) VALUES (1)")
    else:  # a checkpoint mode: PASSIVE, FULL, RESTART, TRUNCATE
        db.execute(f"PRAGMA wal_checkpoint({command})")
    print("done", flush=True)
"""


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "fplane.sqlite"
    Store.open_writable(path, create=True).close()
    execute(path, "CREATE TABLE scratch (n INTEGER)")
    return path


def execute(path, sql):
    """One statement in its own connection, closed after (SQLite's last-close cleanup runs)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(sql)
    finally:
        db.close()


@pytest.fixture
def committer(path):
    process = subprocess.Popen([sys.executable, "-c", COMMITTER, str(path)], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(command="commit"):
        process.stdin.write(command + "\n")
        process.stdin.flush()
        assert process.stdout.readline() == "done\n"

    yield run
    process.stdin.close()
    assert process.wait(timeout=10) == 0


def statements_of(worker_store, action):
    """The SQL statements ``action`` made the worker's connection run."""
    statements = []
    connection = worker_store.get()._db
    connection.set_trace_callback(statements.append)
    try:
        action()
    finally:
        connection.set_trace_callback(None)
    return statements


def test_an_unchanged_store_costs_no_statement(path, committer):
    worker = WorkerStore(path)
    assert worker.changed()                      # first use: nothing is known yet
    committer()                                  # the -shm file exists and is in use
    assert worker.changed()
    results = []
    assert statements_of(worker, lambda: results.extend(worker.changed() for _ in range(100))) == []
    assert results == [False] * 100


def test_every_commit_of_another_process_is_seen(path, committer):
    """Through automatic checkpoints, WAL restarts and explicit checkpoints of every mode.

    (A checkpoint commits nothing, but after a restart SQLite's own data_version may
    change too: serving a fresh answer then is harmless, so only commits are judged.)"""
    worker = WorkerStore(path)
    worker.changed()
    checkpoints = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"]
    for i in range(200):
        committer()
        assert worker.changed(), f"commit {i} not seen"
        assert not worker.changed(), f"commit {i} seen twice"
        if i % 7 == 0:
            committer(checkpoints[i // 7 % 4])
            worker.changed()


def test_a_store_not_in_wal_mode_is_asked_every_time(path):
    execute(path, "PRAGMA journal_mode = DELETE")
    worker = WorkerStore(path)
    worker.changed()
    assert wal_index(path) is None
    assert statements_of(worker, worker.changed) == ["PRAGMA data_version"]
    execute(path, "INSERT INTO scratch (n) VALUES (1)")
    assert worker.changed()
    assert not worker.changed()


def test_a_recreated_wal_index_is_mapped_anew(path):
    """SQLite deletes the -shm file when the last connection closes; the next connection
    makes a new one, which must be the one watched."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("INSERT INTO scratch (n) VALUES (1)")
    reader = Store.open_readonly(path)
    first = wal_index(path)
    assert first is not None and len(first[:HEADER_BYTES]) == HEADER_BYTES
    reader.close()
    writer.close()
    shm = path.parent / (path.name + "-shm")
    if shm.exists():
        os.unlink(shm)   # what SQLite does on the last close, when it can
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("INSERT INTO scratch (n) VALUES (1)")  # makes the new -shm file
    worker = WorkerStore(path)
    worker.changed()
    second = wal_index(path)
    assert second is not None and second is not first
    writer.execute("INSERT INTO scratch (n) VALUES (1)")
    writer.close()
    assert worker.changed()
    assert not worker.changed()


def test_a_forked_worker_keeps_the_answer_and_opens_its_own_connection_on_a_commit(path, committer):
    """The header is compared before the connection is looked at: a child forked with the
    parent's WorkerStore serves on while nothing changes, and never runs a statement on the
    parent's connection (an SQLite connection must not cross a fork)."""
    committer()
    worker = WorkerStore(path)
    assert worker.changed()
    parents = worker.get()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            assert not worker.changed()            # nothing committed: the parent's answer holds
            execute(path, "INSERT INTO scratch (n) VALUES (1)")
            assert worker.changed()
            assert worker.get() is not parents     # its own connection
            assert not worker.changed()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert worker.get() is parents and worker.changed()   # the parent sees the child's commit
