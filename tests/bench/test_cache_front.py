"""The nginx cache front (examples/nginx.conf) measured (make bench).

1. Requests per second for one historical date asked over and over (a closed interval: a
   day's lifetime, so every request after the first is a HIT), side by side in one run:
     cache   nginx (examples/nginx.conf as `make run-cached` writes it) in front of uWSGI;
     static  the same nginx serving a file with the same bytes from disk: the limit of this
             HTTP stack on this machine;
     direct  uWSGI's own HTTP router (examples/uwsgi.ini), no cache.
   Target: cache >= 0.8 x static (median of the per-round ratios): not met here, so that
   check is an expected failure that says what was measured. Beside req/s, nginx's worker
   CPU per request, which the other jobs on a shared machine disturb far less. The A/A row, no target:
   the static file against an identical second file on the same server; its distance from 1
   is how far this run's host lets any ratio stray. The app's request log must not grow
   while the cache is measured: a HIT never reaches the app.
2. What a revalidation costs the app: CPU time of the uWSGI workers per request, for a
   full 200 answer of the same date and for the 304 the app answers nginx's revalidation
   (If-None-Match with the copy's ETag), and for a full answer rendered anew (the query
   varied, so that the app's per-worker response cache misses).

Everything on 127.0.0.1, plain HTTP (TLS would cost the cache and the static file alike).
wrk -t1 -c16 -d3s as in test_get_throughput.py (see its WRK note), 7 rounds after a warm-up,
the order reversed every other round, 2 s of rest after each run. Figures go to stdout (pytest -s) and to
tests/artifacts/bench_cache.json.
"""

import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests import processes
from tests.bench import harness
from tests.bench.harness import BENCH_DIR, Server, run_wrk, server_env, summary
from tests.fplane_samples import make_rows, swap_ifus
from tests.results import machine_info, record
from tests.support import REPO, free_port, import_rows, init_store, required_programs, write_config
from tests.test_nginx import run_cached, server_pair, make_ca

pytestmark = pytest.mark.bench

TARGET = 0.80
DATE_URL = "/fplane/20180701?actual_pos=0&full_fplane=1"   # a closed interval: max-age a day
WRK = dict(threads=1, connections=16, seconds=3)
ROUNDS = 7
SETTLE_SECONDS = 2
CPU_SECONDS = 3
ARTIFACT = REPO / "tests" / "artifacts" / "bench_cache.json"
COMMAND = "make bench PYTEST_ARGS='-k cache_front'"
CONDITIONAL_LUA = BENCH_DIR / "wrk_conditional.lua"
VARYING_LUA = BENCH_DIR / "wrk_varying_query.lua"
RESULTS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    harness.wrk_binary()
    RESULTS.clear()
    RESULTS.update(machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                            "nginx": subprocess.run([run_cached.nginx_binary() or "nginx", "-v"],
                                                    capture_output=True, text=True).stderr.strip()},
                   wrk={**WRK, "rounds": ROUNDS, "host": "127.0.0.1"}, target=TARGET)
    with harness.module_report(RESULTS, ARTIFACT, _table):
        yield RESULTS


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """uWSGI (examples/uwsgi.ini + a uwsgi socket) and one nginx: the cache front on one port,
    a static server of the same answer's bytes on another."""
    nginx, _ = required_programs("nginx", "openssl", install=run_cached.NGINX_INSTALL_HINT)
    root = tmp_path_factory.mktemp("bench_cache")
    config = write_config(root, Writer={"sleep": "5"})
    init_store(config)
    first = make_rows()
    import_rows(config, first, "20180601")
    import_rows(config, swap_ifus(first, 21, 24), "20180801")
    socket = f"127.0.0.1:{free_port()}"
    # Workers are never recycled here (max-requests): a recycled worker's CPU time would be
    # lost from the per-request figures of benchmark 2. Otherwise examples/uwsgi.ini as is.
    app = Server("fplane", run_cached.UWSGI_INI, root, server_env(config), probe="/?format=txt",
                 args=("--socket", socket, "--max-requests", "100000000"))
    directory = Path(tempfile.mkdtemp(prefix="fplane-bench-nginx-"))
    directory.chmod(0o755)
    try:
        app.start()
        status, headers, body = app.get(DATE_URL)
        assert status == 200 and "max-age=86400" in headers["Cache-Control"]
        static = directory / "static"
        static.mkdir()
        (static / "answer.txt").write_bytes(body)
        (static / "same.txt").write_bytes(body)
        static.chmod(0o755)
        static_port = free_port()
        cert, key = server_pair(directory, make_ca(root, "bench-ca"))
        http_port = free_port()
        main = run_cached.write_configs(
            directory, https_port=free_port(), http_port=http_port, uwsgi=socket, certificate=cert, key=key,
            extra_http=f"    server {{\n        listen 127.0.0.1:{static_port};\n"
                       f"        root {static};\n    }}\n")
        log = directory / "nginx.out"
        with open(log, "wb") as out:
            process = subprocess.Popen(run_cached.nginx_command(nginx, main), stdout=out, stderr=subprocess.STDOUT)
        try:
            bases = {"cache": f"http://127.0.0.1:{http_port}{DATE_URL}",
                     "static": f"http://127.0.0.1:{static_port}/answer.txt",
                     "static-2": f"http://127.0.0.1:{static_port}/same.txt",
                     "direct": app.base + DATE_URL}
            _wait_for(bases["static"], process, log)
            yield {"app": app, "urls": bases, "log": config.parent / "log" / "fplaneserver.log",
                   "body": body, "etag": headers["ETag"], "nginx": process.pid}
        finally:
            process.terminate()
            process.wait(timeout=20)
    finally:
        app.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_cache_against_static_file_and_direct(front):
    """Measures benchmark 1; a cached answer never reaches the app."""
    urls = front["urls"]
    for name in ("cache", "static"):   # the cache's copy is made here; both must be the same bytes
        assert _body(urls[name]) == front["body"]
    order = ["static", "cache", "direct", "static-2"]
    runs = {name: [] for name in order}
    cache_reached_app = 0   # lines the app logged while the cache alone was under load
    for i in range(ROUNDS + 1):
        for name in (order if i % 2 == 0 else order[::-1]):
            before, cpu_before = _app_lines(front["log"]), _workers_cpu(front["nginx"], "nginx: worker")
            figures = run_wrk(urls[name], **WRK)
            figures["nginx_cpu_us"] = (_workers_cpu(front["nginx"], "nginx: worker") - cpu_before) \
                / figures["requests"] * 1e6
            if name == "cache":
                cache_reached_app += _app_lines(front["log"]) - before
            if i:
                runs[name].append(figures)
            # A run leaves work behind (uWSGI respawning the workers it recycled after a
            # burst, sockets closing): without a pause it lands on the next server's run.
            time.sleep(SETTLE_SECONDS)
    RESULTS["throughput"] = {
        "cache_vs_static": _ratio(runs, "cache", "static"),
        "direct_vs_static": _ratio(runs, "direct", "static"),
        "a_a_static": _ratio(runs, "static-2", "static"),
        "body_bytes": len(front["body"]),
        # nginx's worker CPU per request, which the other jobs on a shared machine disturb
        # far less than req/s: requests per CPU-second, cache against static file, is the
        # same comparison made on what nginx itself spends.
        "nginx_cpu_us_per_request": {name: summary(r["nginx_cpu_us"] for r in runs[name])
                                     for name in ("cache", "static", "static-2")},
        "cache_vs_static_by_cpu": summary(y["nginx_cpu_us"] / x["nginx_cpu_us"]
                                          for x, y in zip(runs["cache"], runs["static"])),
        "a_a_static_by_cpu": summary(y["nginx_cpu_us"] / x["nginx_cpu_us"]
                                     for x, y in zip(runs["static-2"], runs["static"])),
        "cache_requests_that_reached_the_app": cache_reached_app,
    }
    _record_throughput(RESULTS["throughput"])
    assert cache_reached_app == 0, f"{cache_reached_app} cached requests reached the app"


@pytest.mark.xfail(strict=False, reason=(
    "a HIT costs nginx more than a static file: the cache lookup, and the stored upstream "
    "headers read and parsed on every HIT; open_file_cache, which would save the open, can "
    "serve a replaced cache file (a version before its revalidation); figures in RESULTS.md"))
def test_cache_target_four_fifths_of_the_static_file():
    """The issue's target: req/s through the cache >= 0.8 x nginx serving the static file."""
    throughput = RESULTS.get("throughput")
    if throughput is None:
        pytest.fail("test_cache_against_static_file_and_direct did not run")
    ratio = throughput["cache_vs_static"]["ratio"]["median"]
    assert ratio >= TARGET, f"cache/static req/s {ratio:.3f} < {TARGET}"


def test_a_revalidation_costs_the_app_less_than_a_full_answer(front):
    app, url = front["app"], front["urls"]["direct"]
    kinds = {
        "full answer (the app's response cache)": dict(),
        "304 revalidation": dict(script=_combined(CONDITIONAL_LUA), script_args=(front["etag"],)),
        "full answer rendered anew": dict(script=_combined(VARYING_LUA)),
    }
    per_request = {name: [] for name in kinds}
    for i in range(ROUNDS + 1):
        for name, spec in (kinds.items() if i % 2 == 0 else reversed(kinds.items())):
            before = _workers_cpu(app.process.pid, "uWSGI worker")
            figures = run_wrk(url, threads=1, connections=4, seconds=CPU_SECONDS, **spec)
            spent = _workers_cpu(app.process.pid, "uWSGI worker") - before
            if i:
                per_request[name].append(spent / figures["requests"] * 1e6)
    RESULTS["app_cpu_us_per_request"] = {name: summary(v) for name, v in per_request.items()}
    _record_app_cpu(RESULTS["app_cpu_us_per_request"])
    # No target in the issue: measured. What must hold is that a revalidation costs the app
    # far less than the answer a cache miss would otherwise make it build.
    revalidation = statistics.median(per_request["304 revalidation"])
    rendered = statistics.median(per_request["full answer rendered anew"])
    assert revalidation < rendered / 2, (revalidation, rendered)


# -- helpers --------------------------------------------------------------------------------

def _wait_for(url, process, log) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nginx did not answer:\n{log.read_text()}")


def _body(url) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def _app_lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _combined(script: Path) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="fplane-bench-wrk-"))
    return harness.combined_script(directory, script)


def _workers_cpu(master: int, name: str) -> float:
    """CPU seconds of the master's children whose command line holds ``name``: the uWSGI
    workers (the app runs there only: not the HTTP router's, nor the master's; the server
    recycles none, see the fixture, so none is missed), or nginx's workers."""
    return sum(p.cpu_seconds for p in processes.children(master) if name in p.cmdline)


def _spread(s: dict, digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def _record_throughput(t: dict) -> None:
    """tests/bench/RESULTS.md, section of benchmark 1."""
    cache, direct, a_a = t["cache_vs_static"], t["direct_vs_static"], t["a_a_static"]
    cpu = t["nginx_cpu_us_per_request"]
    ratio = cache["ratio"]["median"]
    record("bench: nginx cache front, req/s against a static file", machine_info(), COMMAND, [
        ("req/s through the cache (median of rounds)", round(cache["req_per_s"]["cache"]["median"])),
        ("req/s static file, same bytes", round(cache["req_per_s"]["static"]["median"])),
        ("req/s uWSGI direct, no cache", round(direct["req_per_s"]["direct"]["median"])),
        ("cache / static, req/s [min-max]", _spread(cache["ratio"])),
        ("direct / static, req/s [min-max]", _spread(direct["ratio"])),
        ("A/A static / static, req/s [min-max]", _spread(a_a["ratio"])),
        ("nginx worker CPU us per request: cache / static", f"{cpu['cache']['median']:.1f} / {cpu['static']['median']:.1f}"),
        ("cache / static by nginx CPU per request [min-max]", _spread(t["cache_vs_static_by_cpu"])),
        ("A/A by nginx CPU per request [min-max]", _spread(t["a_a_static_by_cpu"])),
        ("cached requests that reached the app", t["cache_requests_that_reached_the_app"]),
        ("answer body bytes", t["body_bytes"]),
        ("load", f"wrk -t1 -c16 -d3s, {ROUNDS} rounds after a warm-up, plain HTTP on 127.0.0.1"),
    ], f"cache >= {TARGET} x static file (req/s, median of the per-round ratios)", met=ratio >= TARGET)


def _record_app_cpu(cpu: dict) -> None:
    """tests/bench/RESULTS.md, section of benchmark 2."""
    revalidation = cpu["304 revalidation"]["median"]
    rendered = cpu["full answer rendered anew"]["median"]
    record("bench: nginx cache front, app CPU of a revalidation", machine_info(), COMMAND,
           [(f"uWSGI workers' CPU us per request: {name} [min-max]", _spread(s, 0)) for name, s in cpu.items()],
           "none set by the issue (measured); checked: a 304 costs the app under half a freshly "
           "rendered answer", met=revalidation < rendered / 2)


def _ratio(runs: dict, a: str, b: str) -> dict:
    return {"a": a, "b": b,
            "ratio": summary(x["req_per_s"] / y["req_per_s"] for x, y in zip(runs[a], runs[b])),
            "req_per_s": {a: summary(r["req_per_s"] for r in runs[a]),
                          b: summary(r["req_per_s"] for r in runs[b])},
            "latency_p99_ms": {a: statistics.median(r["latency_p99_us"] for r in runs[a]) / 1000,
                               b: statistics.median(r["latency_p99_us"] for r in runs[b]) / 1000},
            "bytes_per_response": {a: statistics.median(r["bytes_per_request"] for r in runs[a]),
                                   b: statistics.median(r["bytes_per_request"] for r in runs[b])}}


def _table(results: dict) -> str:
    lines = ["nginx cache front (tests/bench/test_cache_front.py)",
             f"  {results['machine']}", "  req/s, median of rounds [min-max]:"]
    throughput = results.get("throughput")
    if throughput:
        for key in ("cache_vs_static", "direct_vs_static", "a_a_static"):
            row = throughput[key]
            r = row["ratio"]
            lines.append(f"    {row['a']:>8} / {row['b']:<8} {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]"
                         f"   {row['a']}: {row['req_per_s'][row['a']]['median']:.0f} req/s,"
                         f" {row['b']}: {row['req_per_s'][row['b']]['median']:.0f} req/s"
                         + (f"   (target >= {results['target']})" if key == "cache_vs_static" else "")
                         + ("   (A/A: this run's noise)" if key == "a_a_static" else ""))
        cpu = throughput["nginx_cpu_us_per_request"]
        by_cpu, a_a = throughput["cache_vs_static_by_cpu"], throughput["a_a_static_by_cpu"]
        lines.append(f"  nginx worker CPU per request, us: cache {cpu['cache']['median']:.1f},"
                     f" static {cpu['static']['median']:.1f}, static-2 {cpu['static-2']['median']:.1f};"
                     f" requests per CPU-second cache / static {by_cpu['median']:.3f}"
                     f" [{by_cpu['min']:.3f}-{by_cpu['max']:.3f}], A/A {a_a['median']:.3f}")
    cpu = results.get("app_cpu_us_per_request")
    if cpu:
        lines.append("  uWSGI workers' CPU per request, us, median [min-max]:")
        for name, s in cpu.items():
            lines.append(f"    {name:<40} {s['median']:.0f} [{s['min']:.0f}-{s['max']:.0f}]")
    return "\n".join(lines)
