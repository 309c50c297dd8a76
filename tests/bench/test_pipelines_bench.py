"""Pipelines in bulk (issue 20): get_fplane --batch over 100,000 instants against uWSGI, from
its cache, from a snapshot, and 16 batch clients at once.

Targets: 100,000 instants over a 20-version history cost at most (versions touched + 1)
full downloads and under 10 s; a second run makes no full download; the same from a
snapshot under 10 s with answers identical to the server's; 16 clients at once: no errors,
and the app's request count near the number of distinct answers.

Measured side by side in this run: the reference is what a pipeline without the cache
does, one GET per instant (timed over REFERENCE_SAMPLE instants and given per instant); the
A/A noise is the same warm-cache batch run twice. Every figure is wall time and the CPU
time of the client process(es) (getrusage of the children). Figures go to
tests/artifacts/bench_pipelines.json and tests/bench/RESULTS.md.
"""

import json
import random
import resource
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.bench import harness
from tests.bench.store_builder import BENCH_SPAN_HOURS, BENCH_START, build_store
from tests.results import machine_info, record
from tests.support import REPO, run_admin, write_config

VERSIONS = 20
INSTANTS = 100_000
CLIENTS = 16
REFERENCE_SAMPLE = 500
TARGET_S = 10.0
ARTIFACT = REPO / "tests" / "artifacts" / "bench_pipelines.json"
GET_FPLANE = [sys.executable, "-m", "wsgi.client"]
COMMAND = "make bench PYTEST_ARGS='-k pipelines'"

RESULTS: dict = {}

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench_pipelines")
    (base / "data").mkdir()
    config = write_config(base, General={"data_dir": "data"})
    build_store(base / "data" / "fplane.sqlite", VERSIONS)
    status, _, err = run_admin(config, "init")
    assert status == 0, err
    rng = random.Random(20)
    span_s = BENCH_SPAN_HOURS * 3600
    instants = [datetime.fromtimestamp(BENCH_START.timestamp() + rng.uniform(3600, span_s), timezone.utc)
                for _ in range(INSTANTS)]
    batch = base / "batch.txt"
    batch.write_text("".join(t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "\n" for t in instants))
    server = harness.Server("fplane", harness.UWSGI_INI, base, harness.server_env(config),
                            probe="/health").start()
    try:
        yield base, server, batch
    finally:
        server.stop()
        harness.check_server_log(server)
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_text(json.dumps(RESULTS, indent=1) + "\n")
        print("\n" + json.dumps(RESULTS, indent=1))


def fplane_log(base: Path) -> list[str]:
    return [line for line in (base / "log" / "fplaneserver.log").read_text().splitlines()
            if " GET /fplane/" in line]


def timed(commands: list[list[str]], cwd: Path) -> dict:
    """Run the commands at once; wall and children's CPU seconds, exit statuses."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    processes = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for c in commands]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "exit": [p.returncode for p in processes], "stderr": [e.decode()[-500:] for e in errors]}


def batch_command(batch: Path, out: Path, table: Path, *source) -> list[str]:
    out.mkdir(exist_ok=True)
    return [*GET_FPLANE, *source, "--batch", str(batch), "-o", str(out), "--table", str(table)]


def table(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


def test_batch_against_the_server_then_its_cache_then_a_snapshot(site):
    base, server, batch = site
    cache = base / "cache"
    source = ("-u", server.base, "--cache-dir", str(cache))

    logged = len(fplane_log(base))
    cold = timed([batch_command(batch, base / "cold", base / "cold.tsv", *source)], base)
    cold_requests = fplane_log(base)[logged:]
    rows = table(base / "cold.tsv")
    touched = len({r[2] for r in rows})
    downloads = sum(" 100 200 " in line for line in cold_requests)

    warm = []
    for name in ("warm_a", "warm_b"):   # the same run twice: the A/A noise
        logged = len(fplane_log(base))
        warm.append(timed([batch_command(batch, base / name, base / f"{name}.tsv", *source)], base))
        warm[-1]["requests"] = len(fplane_log(base)) - logged
        warm[-1]["full_downloads"] = sum(" 100 200 " in line for line in fplane_log(base)[logged:])

    snapshot = base / "snapshot.sqlite"
    with urllib.request.urlopen(server.base + "/snapshot", timeout=60) as response:
        snapshot.write_bytes(response.read())
    offline = timed([batch_command(batch, base / "snap", base / "snap.tsv", "--snapshot", str(snapshot))], base)
    snap_rows = table(base / "snap.tsv")
    same_answers = [(r[1], r[2], Path(r[3]).name) for r in rows] == \
                   [(r[1], r[2], Path(r[3]).name) for r in snap_rows]
    same_files = all((base / "snap" / p.name).read_bytes() == p.read_bytes()
                     for p in (base / "cold").iterdir())

    # The reference: one GET per instant, as a pipeline without the cache does.
    sample = batch.read_text().splitlines()[:REFERENCE_SAMPLE]
    started, cpu0 = time.perf_counter(), time.process_time()
    for line in sample:
        with urllib.request.urlopen(f"{server.base}/fplane/{line}?actual_pos=0&full_fplane=1",
                                    timeout=10) as response:
            response.read()
    reference = {"wall_s_per_instant": (time.perf_counter() - started) / len(sample),
                 "cpu_s_per_instant": (time.process_time() - cpu0) / len(sample)}

    RESULTS["batch"] = {
        "instants": INSTANTS, "versions": VERSIONS, "versions_touched": touched,
        "cold": {**cold, "requests": len(cold_requests), "full_downloads": downloads,
                 "cpu_us_per_instant": round(cold["cpu_s"] / INSTANTS * 1e6, 2)},
        "warm_a": warm[0], "warm_b": warm[1],
        "aa_noise_wall": round(abs(warm[0]["wall_s"] - warm[1]["wall_s"]) / min(w["wall_s"] for w in warm), 3),
        "aa_noise_cpu": round(abs(warm[0]["cpu_s"] - warm[1]["cpu_s"]) / min(w["cpu_s"] for w in warm), 3),
        "snapshot": {**offline, "bytes": snapshot.stat().st_size, "same_answers_as_server": same_answers,
                     "same_files_as_server": same_files,
                     "cpu_us_per_instant": round(offline["cpu_s"] / INSTANTS * 1e6, 2)},
        "reference_one_get_per_instant": {
            "sample": len(sample),
            "wall_ms_per_instant": round(reference["wall_s_per_instant"] * 1e3, 3),
            "client_cpu_us_per_instant": round(reference["cpu_s_per_instant"] * 1e6, 1),
            "extrapolated_wall_s_for_batch": round(reference["wall_s_per_instant"] * INSTANTS, 1)},
    }
    ran = cold["exit"] == [0] and all(w["exit"] == [0] for w in warm) and offline["exit"] == [0]
    record(f"bench: pipelines, a batch of {INSTANTS:,} instants", machine_info(), COMMAND, {
        "versions in the store / touched": f"{VERSIONS} / {touched}",
        "cold: full downloads": downloads,
        "cold: wall s": cold["wall_s"],
        "cold: client CPU µs per instant": round(cold["cpu_s"] / INSTANTS * 1e6, 2),
        "warm (run twice): full downloads": [w["full_downloads"] for w in warm],
        "warm: wall s": [w["wall_s"] for w in warm],
        "A/A noise (the two warm runs), wall": RESULTS["batch"]["aa_noise_wall"],
        "snapshot, no server: wall s": offline["wall_s"],
        "snapshot: answers and files identical to the server's": same_answers and same_files,
        "reference, one GET per instant: wall ms per instant": round(reference["wall_s_per_instant"] * 1e3, 3),
        "reference extrapolated to the batch: wall s": round(reference["wall_s_per_instant"] * INSTANTS, 1),
    }, f"at most versions touched + 1 full downloads and < {TARGET_S:g} s; a second run none; "
       f"from a snapshot < {TARGET_S:g} s with the server's answers",
        ran and downloads <= touched + 1 and cold["wall_s"] < TARGET_S
        and all(w["full_downloads"] == 0 for w in warm) and offline["wall_s"] < TARGET_S
        and same_answers and same_files)
    assert ran, (cold["stderr"], offline["stderr"])
    assert downloads <= touched + 1
    assert cold["wall_s"] < TARGET_S
    assert all(w["full_downloads"] == 0 for w in warm)
    assert offline["wall_s"] < TARGET_S
    assert same_answers and same_files


@pytest.mark.parametrize("shared", [False, True], ids=["own-caches", "one-shared-cache"])
def test_sixteen_batch_clients_at_once(site, shared):
    base, server, batch = site
    run = base / f"clients-{'shared' if shared else 'own'}"
    run.mkdir()
    commands = [batch_command(batch, run / f"out{i}", run / f"t{i}.tsv", "-u", server.base,
                              "--cache-dir", str(run / ("cache" if shared else f"cache{i}")))
                for i in range(CLIENTS)]
    logged = len(fplane_log(base))
    figures = timed(commands, base)
    requests = fplane_log(base)[logged:]
    tables = [table(run / f"t{i}.tsv") for i in range(CLIENTS)]
    distinct = len({r[2] for r in tables[0]})
    figures.update(requests=len(requests), distinct_answers=distinct,
                   requests_per_distinct_answer=round(len(requests) / distinct, 2),
                   requests_per_client_per_distinct_answer=round(len(requests) / distinct / CLIENTS, 2),
                   non_ok=sum(" 100 200 " not in line and " 100 304 " not in line for line in requests))
    figures.pop("stderr")
    RESULTS[f"clients_{CLIENTS}_{'shared_cache' if shared else 'own_caches'}"] = figures
    agree = all([r[1:3] for r in t] == [r[1:3] for r in tables[0]] for t in tables)
    record(f"bench: pipelines, {CLIENTS} batch clients at once, "
           f"{'one shared cache' if shared else 'a cache each'}", machine_info(), COMMAND, {
        "clients": CLIENTS, "instants each": INSTANTS,
        "wall s": figures["wall_s"], "clients' CPU s": figures["cpu_s"],
        "errors (exit status not 0, answers not 100)":
            sum(e != 0 for e in figures["exit"]) + figures["non_ok"],
        "every client's table the same": agree,
        "requests the app logged": len(requests), "distinct answers": distinct,
        "requests per distinct answer": figures["requests_per_distinct_answer"],
    }, "no errors; each client asks each distinct answer at most once",
        figures["exit"] == [0] * CLIENTS and figures["non_ok"] == 0 and agree
        and len(requests) <= CLIENTS * distinct)
    assert figures["exit"] == [0] * CLIENTS and figures["non_ok"] == 0
    assert agree
    # each client asks each distinct answer at most once (a shared cache saves some of it)
    assert len(requests) <= CLIENTS * distinct
