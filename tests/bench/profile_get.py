"""Where the fplane app spends its time per GET, without uWSGI: cProfile of the WSGI callable.

    .venv/bin/python -m tests.bench.profile_get [--top N] [--evict MIB] [--loglevel LEVEL]

Uses the stores of the throughput benchmark (a fresh 10-version store in a temporary
directory and the cached 100,000-version one, built when missing) and the deployment's
log level (INFO, as config.ini.example; WARNING leaves the request lines out), and reports
for each kind of request: microseconds per request without the profiler, then the
profile's top functions.
  cached   /fplane/20180715?actual_pos=0&full_fplane=1 repeated (response-cache hits)
  random   a different random instant per request (response-cache misses)

--evict MIB also times each request after writing to every cache line of a MIB-sized
buffer, beside a trivial WSGI app timed the same way. Under uWSGI a worker gets the CPU
after the HTTP router, wrk and the other workers have run, and finds its code and data
evicted from the caches: a cached GET costs 6-10 us in a loop here, 13-22 us with 4 MiB
evicted between requests, 65-140 us with 32 MiB (the trivial app: 0.3, 1-2 and 8-10 us),
and 40-50 us of CPU in a worker under wrk. Evicting shows which code is dear when cold,
which the hot loop and the profile below do not.
"""

import argparse
import cProfile
import io
import pstats
import random
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from tests.bench.store_builder import BENCH_SPAN_HOURS, BENCH_START, build_store, cached_store
from tests.support import write_config
from wsgi.app import application, load_service

FIXED = ("/fplane/20180715", "actual_pos=0&full_fplane=1")


def environ(path, query):
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8080", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}


def start_response(status, headers, exc_info=None):
    assert status.startswith("200"), status


def requests(kind, n, seed=1):
    rng = random.Random(seed)
    first = int(BENCH_START.timestamp())
    for _ in range(n):
        if kind == "cached":
            yield environ(*FIXED)
        else:
            t = time.gmtime(first + rng.randrange(BENCH_SPAN_HOURS * 3600))
            yield environ("/fplane/" + time.strftime("%Y%m%dT%H%M%S", t), FIXED[1])


def trivial_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1")])
    return [b"x"]


def timed_cold(app, kind, n, evict_bytes):
    """Microseconds per request, each request timed alone after the caches were evicted."""
    buffer = bytearray(evict_bytes)
    every_line = b"\1" * len(range(0, evict_bytes, 64))
    total = 0
    for env in requests(kind, n, seed=3):
        buffer[::64] = every_line
        started = time.perf_counter()
        app(env, start_response)
        total += time.perf_counter() - started
    return total / n * 1e6


def measure(app, kind, n):
    for env in requests(kind, 200, seed=99):          # warm-up: store opened, caches filled
        app(env, start_response)
    envs = list(requests(kind, n))
    started = time.perf_counter()
    for env in envs:
        app(env, start_response)
    per_request = (time.perf_counter() - started) / n * 1e6
    profile = cProfile.Profile()
    envs = list(requests(kind, n, seed=2))
    profile.enable()
    for env in envs:
        app(env, start_response)
    profile.disable()
    return per_request, profile


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--evict", type=int, default=0, metavar="MIB",
                        help="also time requests with MIB of cache evicted before each")
    parser.add_argument("--loglevel", default="INFO",
                        help="[General] loglevel: WARNING leaves out the request lines, to see "
                             "what they cost")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small_dir = tmp / "s10"
        (small_dir / "data").mkdir(parents=True)
        small = build_store(small_dir / "data" / "fplane.sqlite", 10)
        big = cached_store(100_000)
        (tmp / "s100k").mkdir()
        configs = {
            "10": write_config(small_dir, General={"data_dir": str(small.path.parent),
                                                   "loglevel": args.loglevel}),
            "100k": write_config(tmp / "s100k", General={"data_dir": str(big.path.parent),
                                                        "loglevel": args.loglevel}),
        }
        for label, config in configs.items():
            load_service(str(config))
            app = partial(application, configfile=str(config))
            for kind, n in (("cached", 20000), ("random", 3000)):
                per_request, profile = measure(app, kind, n)
                print(f"\n=== {label}-version store, {kind}: {per_request:.1f} us/request"
                      f" (without profiler, {n} requests) ===")
                if args.evict:
                    evict = args.evict << 20
                    print(f"{args.evict} MiB evicted before each request: "
                          f"{timed_cold(app, kind, n // 10, evict):.1f} us/request, "
                          f"trivial app {timed_cold(trivial_app, kind, n // 10, evict):.1f} us")
                stats = pstats.Stats(profile, stream=sys.stdout)
                stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
