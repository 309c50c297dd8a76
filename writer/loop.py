"""fplane-writer: commits spooled updates into the store, one SQLite transaction each.

    fplane-writer -c config.ini [--once]

A thin loop around ``Writer.run_once()``, which handles every update waiting now, oldest
first (file names start with the receiving time): claimed-but-unfinished ones left by a
writer that crashed or was killed, then new ones. It sleeps ``[Writer] sleep`` seconds
only when there was nothing to do, or before trying a failed update again. SIGTERM and
SIGINT let the current update finish, then the writer exits 0. ``--once`` drains what is
there and exits (cron, tests); it exits 1 when the store cannot be opened (the
long-running writer waits for it instead).

Crash safety, with the update ids of wsgi.spool: an update is claimed by renaming it into
cur/, committed with its audit record in one transaction, then moved to done/. Killed
anywhere in between, the writer finds the file in cur/ at its next start and commits it
again, which the update id in the store turns into "already recorded, nothing to do".

What counts toward ``[Writer] max_attempts`` is only a failure the update itself causes:
the attempt number in a claimed file's name goes up when an attempt fails, never when the
writer dies (it is killed, the machine stops: an accepted update is not given up for
that), and never for a transient trouble of the machine (a store locked or busy beyond
its timeout, a full disk, an I/O error): the update then stays in cur/ as it is, the
heartbeat says what the writer waits for, and it tries again after ``[Writer] sleep``,
for as long as it takes. A file that cannot be an update (bad content, a directory, a
symlink, a name the spool never makes) goes to failed/ at once, with its reason; an
operator puts a failed update back with ``fplane-admin retry ID``.

One writer per data directory: a lock file (flock, released by the kernel however the
process ends) refuses a second one.
"""

import argparse
import errno
import fcntl
import os
import sqlite3
import signal
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from wsgi import dates
from wsgi.config import ConfigError, load_config
from wsgi.heartbeat import write_heartbeat
from wsgi.logs import make_logger, printable
from wsgi.spool import STALE_TEMPORARY_AGE, Claimed, Spool, SpooledUpdate
from wsgi.hardware_status import UpdateError
from wsgi.store import Store, StoreUnavailable, UpdateAlreadyRecorded, UpdateRecord
from writer.commit import commit_update, notification_for
from writer.notify import Notifier

LOCK_FILENAME = "writer.lock"
HEARTBEAT_INTERVAL = 1.0   # seconds between heartbeats while busy
# How long one try waits for a store another process has locked: short, so the heartbeat
# keeps saying "waiting" while the lock lasts (and /health with it) instead of going stale.
STORE_BUSY_TIMEOUT = 2.0
# How often the writer removes what dead workers left in tmp/ (wsgi.spool)
TEMPORARIES_CHECK_INTERVAL = 2.0
# errno values of troubles of the machine, not of the update: tried again without end
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM,
                              errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.EROFS,
                              errno.ESTALE})
# What the writer counts, in the heartbeat and in its closing summary
OUTCOMES = ("committed", "unchanged", "held", "duplicates", "failed")


class WriterBusy(Exception):
    """Another writer holds the data directory's lock."""


def is_transient(err: Exception) -> bool:
    """A failure of the machine (the store locked or busy, a full disk, an I/O error), which
    passes without anything done to the update, as opposed to one the update causes."""
    if isinstance(err, (sqlite3.OperationalError, StoreUnavailable)):
        return True   # locked, busy, full, I/O error, cannot open: never the data's fault
    if type(err) is sqlite3.DatabaseError:
        return True   # a damaged file: the operator restores it; the update waits
    return isinstance(err, OSError) and err.errno in TRANSIENT_ERRNOS


class Writer:
    def __init__(self, config, log, notifier=None):
        self.config = config
        self.log = log
        self.spool = Spool(config.spool_dir)
        self.notifier = notifier or Notifier(config, log)
        self.counts: Counter = Counter()
        self.started_at = time.time()
        self.state = "starting"
        self._store: Store | None = None
        self.store_problem: StoreUnavailable | None = None   # why the store cannot be opened
        self.retry_pending = False   # the last pass ended on an attempt to try again
        self.waiting_for: str | None = None   # the transient trouble the last pass met
        self._stop = threading.Event()
        self._last_beat = 0.0
        self._temporaries_checked = 0.0

    # -- one pass -----------------------------------------------------------------------

    def run_once(self) -> int:
        """Handle every update waiting now; returns how many were finished (committed,
        found already committed, held or given up).

        An attempt that failed but may pass later ends the pass: its update stays in cur/
        for the next pass, after a sleep, and the updates behind it wait. So updates are
        still committed in the order they came (a later correction for the same instant
        is not overtaken by the retry of an earlier one). A store that fails every write
        for a while (a full disk, a lock held too long) spends no update's attempts."""
        self.retry_pending = False
        self.waiting_for = None
        store = self._open_store()
        if store is None:
            return 0
        self._move_strays_aside()
        finished = 0
        for claimed in self._attempts():
            if not self._handle(store, claimed):
                self.retry_pending = True
                break
            finished += 1
            if self.stopping:
                break
        return finished

    def _attempts(self):
        """Claimed files in the order to try them: those a stopped writer left in cur/ or a
        failed attempt put back there (each at the attempt its name says: a writer's
        death spends none), then new/, oldest first. Lazy, so stopping claims nothing more."""
        yield from self.spool.claimed()
        for name in self.spool.waiting():
            if (claimed := self.spool.claim(name)) is not None:
                yield claimed

    def _handle(self, store: Store, claimed: Claimed) -> bool:
        """True when the pass may go on to the next update."""
        try:
            update = SpooledUpdate.from_bytes(self.spool.read(claimed))
            self.spool.check_name(claimed, update)
            self._commit(store, update)
        except Exception as err:   # one update's failure must not stop the spool
            return self._failed(claimed, err)
        try:
            self.spool.finish(claimed)
        except OSError as err:
            # In the store already: the next pass finds it recorded and moves it on.
            return self._transient(claimed, err)
        self._beat_if_due()
        return True

    def _failed(self, claimed: Claimed, err: Exception) -> bool:
        if is_transient(err):
            return self._transient(claimed, err)
        reason = printable(f"{type(err).__name__}: {err}")   # one line in the log, whatever it says
        # A file that cannot be read as an update, or whose data the checks now refuse,
        # will not get better by trying again.
        permanent = isinstance(err, (ValueError, UpdateError))
        if permanent or claimed.attempt >= self.config.max_attempts:
            self._give_up(claimed, f"attempt {claimed.attempt}: {reason}")
            return True
        self.log.warning("update %s: attempt %d of %d failed, retrying after a pause: %s",
                         claimed.name, claimed.attempt, self.config.max_attempts, reason)
        try:
            self.spool.retry(claimed)   # counted before the next try: it survives a crash
        except OSError as move_err:
            return self._transient(claimed, move_err)
        return False

    def _transient(self, claimed: Claimed, err: Exception) -> bool:
        """The machine's trouble, not the update's: it stays in cur/ with its attempts
        unspent, and the pass ends, to try again after a sleep."""
        trouble = _trouble(err)
        self.waiting_for = trouble
        if isinstance(err, sqlite3.Error):
            self.close()   # a fresh connection next pass: never one left mid-transaction
        self._set_state(f"waiting: {trouble}; update {claimed.name} stays queued and is tried "
                        f"again (no attempt spent)")
        self.log.warning("update %s: %s; it stays queued, trying again in %g s (no attempt spent)",
                         claimed.name, trouble, self.config.writer_sleep)
        return False

    def _give_up(self, claimed: Claimed, reason: str) -> None:
        try:
            reason_kept = self.spool.give_up(claimed, reason)
        except OSError as err:
            # It stays in cur/ and is given up at the next pass; the pass goes on, so one
            # bad file never holds back the good ones behind it.
            self.retry_pending = True
            self.log.error("update %s failed for good (%s) but cannot be moved to failed/: %s; "
                           "trying again at the next pass", claimed.name, reason, err)
            return
        self.counts["failed"] += 1
        self.log.error("update %s failed for good after attempt %d, moved to failed/%s: %s",
                       claimed.name, claimed.attempt,
                       "" if reason_kept else " (its reason file could not be written)", reason)
        self.notifier.notify(
            f"update {claimed.name} failed",
            f"The writer gave up on spooled update {claimed.name} after attempt "
            f"{claimed.attempt}:\n{reason}\n\nThe file and its reason are in "
            f"{self.spool.failed}/. `fplane-admin failed` lists the failed updates, "
            f"`fplane-admin retry ID` puts one back; posting it again spools it anew.\n")

    def _move_strays_aside(self) -> None:
        for stray in self.spool.strays():
            what = repr(stray.path.name)[:120]   # repr: a name with a newline forges no log line
            self._give_up(stray, f"{what} in {stray.path.parent.name}/ is not a name the "
                                 f"spool makes; moved aside as {stray.name}")

    def _remove_stale_temporaries(self) -> None:
        if time.monotonic() - self._temporaries_checked < TEMPORARIES_CHECK_INTERVAL:
            return
        self._temporaries_checked = time.monotonic()
        try:
            removed = self.spool.remove_stale_temporaries(STALE_TEMPORARY_AGE)
        except OSError as err:
            self.log.warning("spool: cannot clean %s: %s", self.spool.tmp, err)
            return
        if removed:
            self.log.info("spool: removed %d temporary files over %d s old in tmp/, left by "
                          "workers that stopped while writing them", len(removed),
                          STALE_TEMPORARY_AGE)

    def _commit(self, store: Store, update: SpooledUpdate) -> None:
        if store.update_by_id(update.update_id) is not None:
            # Committed before a crash or kill, or posted twice at the same moment.
            self.counts["duplicates"] += 1
            self.log.info("update %s is already recorded: nothing to do", update.update_id)
            return
        record = UpdateRecord(update.update_id, update.kind, update.station, update.checksum,
                              update.received_at, update.valid_from, update.remote_addr,
                              update.data)
        try:
            outcome = commit_update(store, self.config, record, dates.to_micros(_now()),
                                    hold_reason=update.hold_reason if update.held else "")
        except UpdateAlreadyRecorded:
            # Two copies of one update raced past the check above (cannot happen with one
            # writer, but the store refuses a second commit whatever happens).
            self.counts["duplicates"] += 1
            return
        self.counts[outcome.state] += 1
        self.log.info("update %s (%s) from station %s: %s", update.update_id, update.kind,
                      update.station, outcome.describe())
        mail = notification_for(record, outcome, str(self.config.path))
        if mail is not None:
            self.notifier.notify(*mail)

    def _open_store(self) -> Store | None:
        if self._store is None:
            try:
                self._store = Store.open_writable(self.config.store_path,
                                                  busy_timeout=STORE_BUSY_TIMEOUT)
            except StoreUnavailable as err:
                # Nothing is claimed while the store is away, so no update uses up its
                # attempts on a problem that is not its own.
                self.store_problem = err
                self._set_state(f"waiting for the store: {err}")
                self.log.error("store unavailable, will try again: %s", err.detail)
                return None
            self.store_problem = None
        return self._store

    # -- the loop -----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, *_signal_args) -> None:
        """Finish the current update, then stop (the SIGTERM / SIGINT handler)."""
        self._stop.set()

    def run(self, once: bool = False) -> None:
        """Until stopped (or, with ``once``, until nothing is left to do)."""
        try:
            self.spool.put_receipts_right()   # a writer that died may have left them wrong
        except OSError as err:
            self.log.warning("spool: cannot put the receipts in %s right: %s", self.spool.ids, err)
        in_hand = self.spool.claimed()
        if in_hand:
            self.log.warning("%d updates were in hand when a writer stopped; trying them again "
                             "(a writer's death spends no attempt): %s", len(in_hand),
                             ", ".join(c.path.name for c in in_hand[:5]))
        while not self.stopping:
            if self.waiting_for is None and self.store_problem is None:
                self._set_state("working")
            try:
                self._remove_stale_temporaries()
                finished = self.run_once()
            except (OSError, sqlite3.Error) as err:
                # A full or failing disk under the spool itself (a claim, a listing): the
                # writer waits it out; it never exits, so it never crash-loops.
                self.close()
                self.waiting_for = _trouble(err)
                self._set_state(f"waiting: {self.waiting_for}")
                self.log.error("spool or store trouble, trying again in %g s: %s",
                               self.config.writer_sleep, self.waiting_for)
                finished, self.retry_pending = 0, True
            if finished and not self.retry_pending:
                continue   # sleep only when idle: more may have arrived meanwhile
            if once:
                break
            if self.store_problem is None and self.waiting_for is None:
                self._set_state("idle")   # else the heartbeat keeps saying why it waits
            self._stop.wait(self.config.writer_sleep)
        self._set_state("stopped")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _set_state(self, state: str) -> None:
        self.state = state
        self._beat()

    def _beat_if_due(self) -> None:
        if time.monotonic() - self._last_beat >= HEARTBEAT_INTERVAL:
            self._beat()

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        now = _now()
        try:
            write_heartbeat(self.config.data_dir, {
                "pid": os.getpid(),
                "beat_at": dates.format_instant(now),
                "beat_at_unix": now.timestamp(),
                "started_at": dates.format_instant(datetime.fromtimestamp(self.started_at, timezone.utc)),
                "state": self.state,
                "backlog": self.spool.backlog(),
                **{k: self.counts[k] for k in OUTCOMES},
            })
        except OSError as err:
            self.log.warning("cannot write the heartbeat: %s", err)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _trouble(err: Exception) -> str:
    """What a transient failure is, in the operator's words."""
    text = printable(str(err))
    if isinstance(err, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return f"the store is locked by another process ({text})"
    if (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "disk is full" in text:
        return f"the disk is full ({text})"
    return f"{type(err).__name__}: {text}"


class DataDirectoryLock:
    """flock on <data_dir>/writer.lock: the kernel drops it however the holder ends."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILENAME
        self._fd: int | None = None

    def __enter__(self) -> "DataDirectoryLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise WriterBusy(f"another fplane-writer (pid {holder}) is already running on "
                             f"{self.path.parent}; only one may write there") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self._fd)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="fplane-writer", description="Commit spooled fplane updates into the store.")
    parser.add_argument("-c", "--config", required=True, metavar="config.ini")
    parser.add_argument("--once", action="store_true",
                        help="handle what is in the spool now, then exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"fplane-writer: {err}", file=sys.stderr)
        return 1
    log = make_logger(config, "writer")
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        with DataDirectoryLock(config.data_dir):
            writer = Writer(config, log)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, writer.stop)
            log.info("writer started (pid %d, spool %s)", os.getpid(), config.spool_dir)
            try:
                writer.run(once=args.once)
            finally:
                writer.close()
            log.info("writer stopped: %s", _summary(writer.counts))
            print(f"fplane-writer: {_summary(writer.counts)}", file=sys.stderr)
            if args.once and writer.store_problem is not None:
                # cron must hear that nothing could be done, not a quiet "0 committed".
                problem = writer.store_problem
                print(f"fplane-writer: {problem} ({problem.detail}); the spool was left as it is",
                      file=sys.stderr)
                return 1
            if args.once and writer.waiting_for is not None:
                print(f"fplane-writer: stopped while waiting: {writer.waiting_for}; the updates "
                      f"left stay queued", file=sys.stderr)
                return 1
    except (WriterBusy, OSError) as err:
        log.error("%s", err)
        print(f"fplane-writer: {err}", file=sys.stderr)
        return 1
    return 0


def _summary(counts: Counter) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in OUTCOMES)


if __name__ == "__main__":
    sys.exit(main())
