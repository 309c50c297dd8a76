"""Where the update path spends its time, without uWSGI: cProfile of a POST through the
WSGI callable and of Writer.run_once on a spooled backlog.

    .venv/bin/python -m tests.bench.profile_update [--posts N] [--batch N] [--backlog N] [--top N] [--only post|writer]

Same setup as tests/bench/test_update_path.py (a store from fplane-admin init + import, one
station, distinct statuses from status_data), in a temporary directory, at the
deployment's log level (INFO). Reports:
  post     the first post of the process (scrypt, first use), then CPU and wall time per
           post (no profiler; a writer drains the spool after every --batch posts, as the
           attached one does, so new/ stays short; --batch 1 is the service under a burst
           of posts, where nearly every post finds a store the writer has just changed),
           then the profile's top functions;
  writer   wall and CPU time per committed update for Writer.run_once on a backlog (no
           profiler), the same with PRAGMA synchronous = NORMAL on the writer's connection
           (an experiment only: how much of a commit is the WAL fsync), the time of the
           spool's own fsyncs, then the profile's top functions.
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from tests.bench.test_update_path import _service_dir, post_items, spooled_update
from wsgi import dates
from wsgi.app import application
from wsgi.config import load_config
from wsgi.logs import make_logger
from wsgi.spool import Spool
from writer.loop import Writer


def post_environ(item: dict) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": item["path"], "QUERY_STRING": "",
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(item["body"])), "HTTP_ACCEPT": "text/plain",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8080", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(item["body"]), "wsgi.errors": sys.stderr}


def start_response(status, headers, exc_info=None):
    assert status.startswith("202"), (status, headers)


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def top(profile: cProfile.Profile, n: int, key: str) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats(key).print_stats(n)
    text = out.getvalue()
    return text[text.index("   ncalls"):] if "   ncalls" in text else text


class StageClock:
    """Wraps named functions (module attributes or methods) in this process to add up the
    wall and CPU time spent in each, calls nested in another wrapped one included there too.
    Only for this profiling run: the originals are put back on exit."""

    def __init__(self, targets):
        self.targets = targets          # [(owner, attribute name, label)]
        self.totals: dict[str, list] = {}
        self._saved = []
        self.enabled = True

    def __enter__(self):
        for owner, name, label in self.targets:
            raw = owner.__dict__[name]
            self._saved.append((owner, name, raw))
            if isinstance(raw, classmethod):
                setattr(owner, name, classmethod(self._clocked(raw.__func__, label)))
            else:
                setattr(owner, name, self._clocked(raw, label))
        return self

    @contextmanager
    def paused(self):
        self.enabled = False
        try:
            yield
        finally:
            self.enabled = True

    def _clocked(self, real, label):
        totals = self.totals.setdefault(label, [0, 0.0, 0.0])
        if label.endswith("[exit]"):
            # A context manager: clock only its exit (for a transaction: the COMMIT).
            @contextmanager
            def exit_clocked(*args, **kwargs):
                inner = real(*args, **kwargs)
                value = inner.__enter__()
                try:
                    yield value
                except BaseException:
                    if not inner.__exit__(*sys.exc_info()):
                        raise
                else:
                    wall, cpu = time.perf_counter(), time.process_time()
                    inner.__exit__(None, None, None)
                    if self.enabled:
                        totals[0] += 1
                        totals[1] += time.perf_counter() - wall
                        totals[2] += time.process_time() - cpu
            return exit_clocked

        def clocked(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                if self.enabled:
                    totals[0] += 1
                    totals[1] += time.perf_counter() - wall
                    totals[2] += time.process_time() - cpu
        return clocked

    def __exit__(self, *exc):
        for owner, name, real in reversed(self._saved):
            setattr(owner, name, real)

    def report(self, per: int, title: str) -> str:
        lines = [f"{title}: ms per update, wall / CPU (calls per update); nested stages are"
                 f" also inside their callers"]
        for label, (calls, wall, cpu) in self.totals.items():
            lines.append(f"  {label:<58}{wall / per * 1000:>7.2f} /{cpu / per * 1000:>6.2f}"
                         f"  ({calls / per:.1f})")
        return "\n".join(lines)


def post_stages():
    from wsgi import posting, stations, store, updates
    return [
        (posting, "read_body", "read_body"),
        (posting, "parse_form", "parse_form (urlencoded)"),
        (stations.StationList, "authenticate", "StationList.authenticate (cached)"),
        (posting, "_checked_checksum", "checksum"),
        (posting.UpdateReceiver, "_checked_data", "_checked_data (decode, parse_status, timestamp)"),
        (posting.UpdateReceiver, "locate", "locate (spool listing + store lookup)"),
        (posting, "plan_configuration", "plan_configuration"),
        (updates, "build_configuration", "  of which build_configuration"),
        (store.Store, "configuration_rows", "  of which Store.configuration_rows"),
        (updates, "content_hash", "  of which content_hash (previous and new rows)"),
        (posting.Spool, "enqueue", "Spool.enqueue (write, 2 fsyncs, rename)"),
        (posting.UpdateReceiver, "_answer", "_answer (render the full file)"),
    ]


def writer_stages():
    from wsgi import spool, store, updates
    from writer import commit, loop
    return [
        (spool.Spool, "claim", "Spool.claim (rename into cur/)"),
        (spool.Spool, "read", "Spool.read"),
        (spool.SpooledUpdate, "from_bytes", "SpooledUpdate.from_bytes"),
        (store.Store, "update_by_id", "Store.update_by_id"),
        (loop, "commit_update", "commit_update"),
        (commit, "decode_payload", "  decode_payload (decode, parse_status)"),
        (commit, "plan_configuration", "  plan_configuration"),
        (updates, "build_configuration", "    of which build_configuration"),
        (store.Store, "configuration_rows", "    of which Store.configuration_rows"),
        (updates, "content_hash", "    of which content_hash (previous and new rows)"),
        (store.Store, "record_version", "  Store.record_version (one transaction)"),
        (store, "content_hash", "    of which content_hash (of the new rows, again)"),
        (store.Store, "_write_transaction", "    of which COMMIT (WAL write + fsync) [exit]"),
        (loop, "notification_for", "notification_for"),
        (spool.Spool, "finish", "Spool.finish (rename into done/)"),
        (loop.Writer, "_beat_if_due", "heartbeat"),
    ]


class FsyncClock:
    """Wraps os.fsync in this process to add up its time (the spool's fsyncs; SQLite's
    own fsyncs happen in C and are not seen here)."""

    def __init__(self):
        self.calls, self.seconds, self._real = 0, 0.0, os.fsync

    def __enter__(self):
        def clocked(fd):
            start = time.perf_counter()
            try:
                return self._real(fd)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - start
        os.fsync = clocked
        return self

    def __exit__(self, *exc):
        os.fsync = self._real


def profile_posts(base: Path, posts: int, n_top: int, batch_size: int) -> None:
    config, password = _service_dir(base)
    app = partial(application, configfile=str(config))
    writer = Writer(load_config(config), make_logger(load_config(config), "writer"))
    timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = post_items(range(1 + posts + posts // 2 + posts), password, timestamp)

    def post(item):
        body = b"".join(app(post_environ(item), start_response))
        assert body.startswith(b"100 "), body[:200]

    _, wall, cpu = timed(post, items[0])
    print(f"post: first post of the process {wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU"
          f" (scrypt password check, store opened, first use)")
    writer.run_once()

    def batch(chunk, profiler=None, stages=None):
        wall = cpu = 0.0
        with FsyncClock() as clock:
            for i in range(0, len(chunk), batch_size):
                if profiler:
                    profiler.enable()
                _, w, c = timed(lambda: [post(it) for it in chunk[i:i + batch_size]])
                if profiler:
                    profiler.disable()
                wall, cpu = wall + w, cpu + c
                # as the attached writer would: new/ stays short (not clocked)
                with stages.paused() if stages else contextlib.nullcontext():
                    assert writer.run_once() == len(chunk[i:i + batch_size])
        return wall, cpu, clock

    wall, cpu, clock = batch(items[1:1 + posts])
    print(f"post: {posts} warm posts, per post {wall / posts * 1000:.2f} ms wall, "
          f"{cpu / posts * 1000:.2f} ms CPU; spool fsyncs {clock.calls / posts:.1f} per post, "
          f"{clock.seconds / posts * 1000:.2f} ms per post")
    with StageClock(post_stages()) as stages:
        batch(items[1 + posts:1 + posts + posts // 2], stages=stages)
    print(stages.report(posts // 2, f"post: stages of {posts // 2} posts"))
    profiler = cProfile.Profile()
    batch(items[1 + posts + posts // 2:], profiler)
    print(f"post: profile of {posts} posts (sorted by tottime)\n{top(profiler, n_top, 'tottime')}")
    print(f"post: profile of {posts} posts (sorted by cumulative)\n{top(profiler, n_top, 'cumulative')}")
    writer.close()


def spool_backlog(config: Path, first: int, count: int) -> None:
    spool = Spool(load_config(config).spool_dir)
    now = datetime.now(timezone.utc)
    timestamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    received0 = dates.to_micros(now)
    valid0 = dates.to_micros(datetime(2018, 7, 1, tzinfo=timezone.utc))
    for n in range(first, first + count):
        spool.enqueue(spooled_update(n, timestamp, received0 + n, valid0 + n * 1_000_000))


def profile_writer(base: Path, backlog: int, n_top: int) -> None:
    config, _ = _service_dir(base)
    cfg = load_config(config)
    writer = Writer(cfg, make_logger(cfg, "writer"))

    def drain(label, first):
        spool_backlog(config, first, backlog)
        with FsyncClock() as clock:
            done, wall, cpu = timed(writer.run_once)
        assert done == backlog and writer.counts["failed"] == 0, (done, writer.counts)
        print(f"writer ({label}): {backlog} updates, {backlog / wall:.0f} updates/s; per update "
              f"{wall / backlog * 1000:.2f} ms wall, {cpu / backlog * 1000:.2f} ms CPU; "
              f"os.fsync in Python {clock.calls / backlog:.1f} calls, "
              f"{clock.seconds / backlog * 1000:.2f} ms per update")

    drain("synchronous = FULL, as shipped", 0)
    store = writer._open_store()
    store._db.execute("PRAGMA synchronous = NORMAL")   # the experiment, this process only
    drain("synchronous = NORMAL, experiment", backlog)
    store._db.execute("PRAGMA synchronous = FULL")
    spool_backlog(config, 2 * backlog, backlog)
    with StageClock(writer_stages()) as stages:
        assert writer.run_once() == backlog
    print(stages.report(backlog, f"writer: stages of {backlog} commits (synchronous = FULL)"))
    spool_backlog(config, 3 * backlog, backlog)
    profiler = cProfile.Profile()
    profiler.enable()
    writer.run_once()
    profiler.disable()
    print(f"writer: profile of {backlog} commits (sorted by tottime)\n{top(profiler, n_top, 'tottime')}")
    print(f"writer: profile of {backlog} commits (sorted by cumulative)\n{top(profiler, n_top, 'cumulative')}")
    writer.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="profile_update", description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--batch", type=int, default=50,
                        help="posts between two writer runs (1: the store changes before every post)")
    parser.add_argument("--only", choices=("post", "writer"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "post"):
            (Path(tmp) / "post").mkdir()
            profile_posts(Path(tmp) / "post", args.posts, args.top, args.batch)
        if args.only in (None, "writer"):
            (Path(tmp) / "writer").mkdir()
            profile_writer(Path(tmp) / "writer", args.backlog, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
