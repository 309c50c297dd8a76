"""Crash-safe file writes: temp file + fsync + rename + fsync of the directory.

After a crash a reader finds either the old file or the complete new one, never a torn
one, and a success reported after these calls survives a power cut.
"""

import os
import secrets
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(temporary: Path, target: Path) -> None:
    """Flush ``temporary`` to disk and rename it over ``target`` (same file system)."""
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    fsync_directory(Path(target).parent)


def write_atomically(target: Path, data: bytes, mode: int = 0o644) -> None:
    target = Path(target)
    # A random part, not the pid: two threads, or a pid reused after a crash, never collide.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never write through a file (or link) someone else left at that name.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
