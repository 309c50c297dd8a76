"""The spool: accepted updates on their way from the web app to the writer (Maildir style).

    tmp/     the web app writes a file here (O_EXCL), flushes and fsyncs it,
    new/     then renames it here and fsyncs the directory: only then is 100 answered;
    cur/     the writer claims a file by renaming it here, the attempt number in its name;
    done/    committed (or found already committed): the raw request, kept;
    failed/  given up (an update that cannot be committed, or a file the web app never
             makes: another name, a directory, a symlink), with a ``.reason`` file beside
             it; ``fplane-admin retry`` puts an update back into new/;
    ids/     a receipt named by the update id for each update in new/ or cur/: the
             web app asks "is this update queued?" with one stat instead of listing a
             backlog that may be thousands long. Made once the file is safely in new/,
             removed after it has left cur/; a hint (not fsynced), so the store decides
             over it, the writer puts the receipts right when it starts, and a missing
             one costs at most a second copy of an update, which the writer skips.
             A receipt is a hard link to the spooled file, not a file of its own: removing
             it frees no inode. On ext4 without a journal (common on VMs) every freed inode
             is skipped for minutes by the next files created, so one freed per update
             made each post slower the more updates had passed before it.

File names start with the receiving time in microseconds, so a sorted listing is FIFO:
``<received_at:016d>.<update_id>`` (in cur/ ``...:<attempt>``).

The update id is derived from station + checksum + URL, so posting the same update again
finds the same id: the web app answers with it instead of spooling a second copy, and
the writer, which records every id in the store in the same transaction as the commit,
never commits one twice even if two copies do slip in (two posts racing) or a crash
comes between commit and cleanup.

A spooled update is a small JSON object (never pickle): who sent it, when, what
(the ``data`` text exactly as posted) and what the web app decided about it.
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path

from wsgi.files import fsync_directory
from wsgi.logs import printable

SUBDIRECTORIES = ("tmp", "new", "cur", "done", "failed", "ids")
KINDS = ("config", "positions")

_UPDATE_ID = re.compile(r"[0-9a-f]{20}")
_NAME = re.compile(r"(?P<received>\d{16})\.(?P<update_id>[0-9a-f]{20})")
_CLAIMED = re.compile(rf"(?P<name>{_NAME.pattern}):(?P<attempt>\d+)")
REASON_SUFFIX = ".reason"
# A file in tmp/ is being written for milliseconds (a worker stuck longer is killed by
# uWSGI's harakiri after 30 s): one older than a minute was left by a worker that died
# mid-write, which `fplane-admin verify` reports, and one older than an hour is removed
# by the writer, long after any worker could still be writing it.
TEMPORARY_GRACE = 60.0
STALE_TEMPORARY_AGE = 3600.0
# Far above any update the web app accepts ([Server] max_body): a bigger file is not one.
MAX_SPOOLED_BYTES = 64 * 1024 * 1024
_STRAY_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def update_id(station: str, checksum: str, target: str = "") -> str:
    """The id of an update: the same station posting the same data to the same ``target``
    (what the URL names: ``config/20180715``) gets the same id. The target counts because
    the same status posted for another instant is another update."""
    return hashlib.sha256(f"{station}\n{checksum.lower()}\n{target}".encode()).hexdigest()[:20]


def is_update_id(text: str) -> bool:
    return _UPDATE_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class SpooledUpdate:
    update_id: str
    kind: str               # "config" (POST /fplane) or "positions" (POST /positions)
    station: str
    checksum: str           # SHA-256 hex of data, as posted
    received_at: int        # µs UTC
    valid_from: int         # µs UTC, as resolved by the web app
    data: str               # the posted data field, exactly
    held: bool = False      # the web app answered 103: hold for review whatever the writer finds
    hold_reason: str = ""
    remote_addr: str = ""

    @property
    def name(self) -> str:
        return f"{self.received_at:016d}.{self.update_id}"

    def to_bytes(self) -> bytes:
        # Not dataclasses.asdict, which deep-copies every value: all fields are plain scalars.
        fields = {name: getattr(self, name) for name in _FIELD_NAMES}
        return json.dumps(fields, ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SpooledUpdate":
        """Raises ValueError for a file that is not a spooled update."""
        try:
            fields = json.loads(raw.decode("utf-8"))
            update = cls(**fields)
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as err:
            # printable: a TypeError names the file's own keys, which may hold a newline
            raise ValueError(f"not a spooled update: {printable(str(err))}") from None
        for f in dataclass_fields(cls):
            # Exact types: True is no received_at, "yes" no held (and is_update_id needs a str).
            if type(getattr(update, f.name)) is not f.type:
                raise ValueError(f"not a spooled update: {f.name} is not {f.type.__name__}")
        if not is_update_id(update.update_id) or update.kind not in KINDS:
            raise ValueError("not a spooled update: bad update_id or kind")
        return update


_FIELD_NAMES = tuple(f.name for f in dataclass_fields(SpooledUpdate))


@dataclass(frozen=True)
class Claimed:
    """A file the writer has claimed: its path in cur/ and which attempt this is."""
    path: Path
    name: str
    attempt: int


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp, self.new, self.cur, self.done, self.failed, self.ids = (
            self.root / d for d in SUBDIRECTORIES)
        self._ids_made = False

    def create(self) -> None:
        for directory in (self.root, self.tmp, self.new, self.cur, self.done, self.failed,
                          self.ids):
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)

    def problems(self) -> list[str]:
        """What keeps the spool from working (for errors and fplane-admin verify)."""
        return [f"spool directory {d.name}/ is missing (fplane-admin init makes it)"
                for d in (self.tmp, self.new, self.cur, self.done, self.failed, self.ids)
                if not d.is_dir()]

    # -- the web app's side ---------------------------------------------------------

    def enqueue(self, update: SpooledUpdate) -> Path:
        """Write ``update`` durably into new/; when this returns, a crash cannot lose it."""
        # A random part: two workers spooling the same update in the same microsecond
        # must not write into one temporary file.
        temporary = self.tmp / f"{update.name}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(update.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            target = self.new / update.name
            os.rename(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        fsync_directory(self.new)
        # Only now, with the file safely in new/: a receipt must never stand for an update
        # that is not there, or a repeated post would be answered "queued" for nothing.
        self._make_receipt(update.update_id, target)
        return target

    def _make_receipt(self, update_id: str, spooled: Path) -> None:
        # A hint only: without a receipt a repeated post spools a copy the writer skips.
        receipt = self.ids / update_id
        try:
            if not self._ids_made:   # a spool from before receipts has no ids/
                self.ids.mkdir(mode=0o750, exist_ok=True)
                self._ids_made = True
            os.link(spooled, receipt)
        except FileExistsError:
            pass   # a second copy of the update: one receipt stands for both
        except FileNotFoundError:
            pass   # the writer has already taken the update out of new/
        except OSError:   # a file system without hard links: an empty file does as well
            with contextlib.suppress(OSError):
                os.close(os.open(receipt, os.O_WRONLY | os.O_CREAT, 0o640))

    def is_queued(self, update_id: str) -> bool:
        """True while the update waits in new/ or is being committed from cur/ (its
        receipt in ids/ is there), and for a moment after the writer has finished it:
        ask the store after this, as UpdateReceiver.locate does."""
        return os.path.exists(self.ids / update_id)

    def put_receipts_right(self) -> None:
        """One receipt for each update in new/ or cur/ and none for any other: after a
        crash, a file moved by hand, or a spool from before there were receipts (the
        writer calls this when it starts)."""
        self.ids.mkdir(mode=0o750, exist_ok=True)
        queued = {_id_of(name): directory / name for directory in (self.new, self.cur)
                  for name in _names(directory)}
        queued.pop(None, None)
        receipts = set(_names(self.ids))
        for stale in receipts - queued.keys():
            (self.ids / stale).unlink(missing_ok=True)
        for missing in queued.keys() - receipts:
            self._make_receipt(missing, queued[missing])

    def failure_reason(self, update_id: str) -> str | None:
        """Why the writer gave up on the update, or None if it is not in failed/."""
        for name in reversed(self.failed_names()):   # the latest copy of the update
            if _id_of(name) == update_id:
                return self.failure_reason_of(name)
        return None

    def failure_reason_of(self, name: str) -> str:
        """The reason beside failed/<name>, on one line."""
        try:
            text = (self.failed / (name + REASON_SUFFIX)).read_text("utf-8", "replace")
        except OSError:
            return "no reason recorded (the disk may have been full: see the writer's log)"
        return " ".join(text.split())

    def failed_names(self) -> list[str]:
        return sorted(n for n in _names(self.failed) if not n.endswith(REASON_SUFFIX))

    def backlog(self) -> int:
        return sum(1 for _ in _names(self.new)) + sum(1 for _ in _names(self.cur))

    # -- the writer's side ---------------------------------------------------------

    def claimed(self) -> list[Claimed]:
        """Files a writer claimed and did not finish (it crashed or was killed), oldest first."""
        found = []
        for name in _names(self.cur):
            match = _CLAIMED.fullmatch(name)
            if match:
                found.append(Claimed(self.cur / name, match["name"], int(match["attempt"])))
        return sorted(found, key=lambda c: c.name)

    def strays(self) -> list[Claimed]:
        """Entries in new/ and cur/ with names the spool never makes (dropped in by hand or
        by another program), each as a Claimed to move aside under a safe name of its own
        in failed/: ``<now µs>.stray.<the name, odd characters as _>``."""
        found = []
        for directory, pattern in ((self.new, _NAME), (self.cur, _CLAIMED)):
            for name in _names(directory):
                if not pattern.fullmatch(name):
                    safe = _STRAY_NAME_UNSAFE.sub("_", name)[:80]
                    if safe.endswith(REASON_SUFFIX):   # it must not pass for a reason file
                        safe += "_"
                    aside = f"{time.time_ns() // 1000:016d}.stray.{safe}"
                    found.append(Claimed(directory / name, aside, 0))
        return found

    def temporaries(self, older_than: float, now: float | None = None) -> list[tuple[str, float]]:
        """(name, age in seconds) of the files in tmp/ last changed over ``older_than`` ago."""
        now = time.time() if now is None else now
        old = []
        for name in _names(self.tmp):
            try:
                age = now - os.lstat(self.tmp / name).st_mtime
            except FileNotFoundError:
                continue   # renamed into new/ meanwhile
            if age > older_than:
                old.append((name, age))
        return sorted(old)

    def remove_stale_temporaries(self, older_than: float = STALE_TEMPORARY_AGE) -> list[str]:
        """Remove what workers that died mid-write left in tmp/ (never a file in
        progress: see STALE_TEMPORARY_AGE); returns the names removed."""
        removed = []
        for name, _ in self.temporaries(older_than):
            with contextlib.suppress(FileNotFoundError):
                (self.tmp / name).unlink()
                removed.append(name)
        return removed

    def retry_failed(self, wanted: str) -> str:
        """Put a failed update (by update id or file name) back into new/ for the writer
        to try again; returns its file name. KeyError when failed/ has no such update."""
        for name in reversed(self.failed_names()):   # the latest copy of an update id
            if _NAME.fullmatch(name) and wanted in (name, _id_of(name)):
                target = self.new / name
                os.rename(self.failed / name, target)
                fsync_directory(self.new)
                (self.failed / (name + REASON_SUFFIX)).unlink(missing_ok=True)
                self._make_receipt(_id_of(name), target)
                return name
        raise KeyError(wanted)

    def waiting(self) -> list[str]:
        """Names in new/, oldest first."""
        return sorted(name for name in _names(self.new) if _NAME.fullmatch(name))

    def claim(self, name: str) -> Claimed | None:
        """Move new/<name> into cur/ as attempt 1; None if it is gone (claimed elsewhere)."""
        return self._move_to_attempt(self.new / name, name, 1)

    def retry(self, claimed: Claimed) -> Claimed | None:
        """Count one more attempt at a claimed file, before trying it again: the count
        survives a crash, so a file that kills the writer still ends in failed/."""
        return self._move_to_attempt(claimed.path, claimed.name, claimed.attempt + 1)

    def _move_to_attempt(self, source: Path, name: str, attempt: int) -> Claimed | None:
        target = self.cur / f"{name}:{attempt}"
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None
        # No fsync: after a crash that undoes this rename the file is just processed
        # again, and the store's update ids make that a no-op.
        return Claimed(target, name, attempt)

    def read(self, claimed: Claimed) -> bytes:
        """The claimed file's bytes; ValueError when it is not a file the web app makes
        (a symlink, a directory, a pipe, a file far too big) or its content's id is not
        its name's."""
        try:
            # O_NOFOLLOW: a symlink is never followed out of the spool; O_NONBLOCK: a
            # pipe cannot hang the writer on open.
            fd = os.open(claimed.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise ValueError("not a spooled update: a symbolic link") from None
            raise
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode):
                raise ValueError("not a spooled update: not a regular file "
                                 f"({_file_type(found.st_mode)})")
            if found.st_size > MAX_SPOOLED_BYTES:
                raise ValueError(f"not a spooled update: {found.st_size} bytes is too big")
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read()
        finally:
            os.close(fd)

    def check_name(self, claimed: Claimed, update: "SpooledUpdate") -> None:
        """ValueError unless the update in the file is the one its name says."""
        if update.name != claimed.name:
            raise ValueError(f"not a spooled update: its content ({update.name}) is not "
                             f"what its name says")

    def finish(self, claimed: Claimed) -> None:
        """The update is in the store: keep the raw request in done/."""
        os.rename(claimed.path, self.done / claimed.name)
        self._drop_receipt(claimed)

    def give_up(self, claimed: Claimed, reason: str) -> bool:
        """Move aside for good, with its reason, so one bad file cannot block the spool.

        The move is a rename, which a full disk does not stop; the reason is a new file,
        which it may: then the file is moved without it (False, and the caller logs the
        reason instead) rather than left to block the updates behind it."""
        reason_file = self.failed / (claimed.name + REASON_SUFFIX)
        try:
            reason_file.write_text(reason.rstrip("\n") + "\n", "utf-8")
            written = True
        except OSError:
            with contextlib.suppress(OSError):
                reason_file.unlink(missing_ok=True)   # never half a reason
            written = False
        os.rename(claimed.path, self.failed / claimed.name)
        self._drop_receipt(claimed)
        fsync_directory(self.failed)
        return written

    def _drop_receipt(self, claimed: Claimed) -> None:
        update_id = _id_of(claimed.name)
        if update_id is not None:   # a stray has none
            (self.ids / update_id).unlink(missing_ok=True)


def _id_of(name: str) -> str | None:
    match = _NAME.match(name)
    return match["update_id"] if match else None


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a plain file"


def _names(directory: Path):
    try:
        with os.scandir(directory) as entries:
            return [entry.name for entry in entries]
    except FileNotFoundError:
        return []
