"""Has anything been committed to the store? Asked before every cached GET, answered in
most cases without a system call, from the wal-index header.

A WAL-mode SQLite database keeps its wal-index in ``<database>-shm``, a file every connection
maps into memory. Every commit rewrites the header at its start (https://sqlite.org/walformat.html,
section 2.2.1 "The WAL-Index Header"): mxFrame grows and the checksum of the last frame
changes, and a WAL restart changes the salts. So when the header's bytes are the ones seen
before, nothing has been committed since. Comparing 48 bytes of shared memory costs well
under a microsecond; PRAGMA data_version costs a read transaction (two fcntl locks, an fstat
and the SQLite VM), which was most of the time of a cached GET.

The header is a hint, never the judge: any difference (a commit, a checkpoint, a header
caught while SQLite writes it) only sends the caller to PRAGMA data_version, which decides.

A mapping, once made, is kept for the life of the process, one per -shm file: closing any
descriptor of a file drops every POSIX lock the process holds on that file, including the
locks SQLite holds on the -shm through its own descriptor (https://sqlite.org/howtocorrupt.html,
section 2.2), so a descriptor of a -shm file in use must never be closed. Only a mapping
of a -shm file that has been deleted since (SQLite deletes it when the last connection
closes) is let go, when its database is mapped again.
"""

import mmap
import os
from pathlib import Path

# The first copy of the header; SQLite writes the second copy first, then this one.
HEADER_BYTES = 48

# -shm path -> (device and inode of the mapped file, descriptor, mapping)
_MAPPINGS: dict[str, tuple[tuple[int, int], int, mmap.mmap]] = {}


def wal_index(database: Path) -> mmap.mmap | None:
    """A read-only mapping of ``database``'s wal-index, or None when there is none to map
    (a database not in WAL mode, a -shm file this process may not read).

    Call it with a connection to ``database`` open in this process: that connection keeps
    the -shm file from being deleted and re-created under the mapping."""
    # SQLite names the file after the database path with symbolic links resolved
    shm = f"{Path(database).resolve()}-shm"
    try:
        status = os.stat(shm)
    except OSError:
        return None
    identity = (status.st_dev, status.st_ino)
    known = _MAPPINGS.get(shm)
    if known is not None:
        if known[0] == identity:
            return known[2]
        # The file mapped before was deleted (no connection was left): nobody locks it.
        _, old_fd, old_map = _MAPPINGS.pop(shm)
        old_map.close()
        os.close(old_fd)
    if status.st_size < 2 * HEADER_BYTES:
        return None  # not initialised by SQLite (it is, once a connection has read)
    try:
        fd = os.open(shm, os.O_RDONLY)
    except OSError:
        return None
    mapping = mmap.mmap(fd, HEADER_BYTES, access=mmap.ACCESS_READ)
    _MAPPINGS[shm] = (identity, fd, mapping)
    return mapping


def release(database: Path) -> None:
    """Let go of ``database``'s mapping and descriptor. Only once this process has closed
    its connections to ``database``: closing the descriptor drops their locks."""
    known = _MAPPINGS.pop(f"{Path(database).resolve()}-shm", None)
    if known is not None:
        _, fd, mapping = known
        mapping.close()
        os.close(fd)
