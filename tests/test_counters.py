"""wsgi/counters.py: request counters that forked workers share without losing increments.

The same counters under real uWSGI workers are tested in test_system.py."""

import os
import json

from wsgi.counters import RequestCounters


def _fork(work) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            work()
            status = 0
        finally:
            os._exit(status)
    return pid


def _reap(pids) -> None:
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_counters_of_forked_workers_add_up_without_losing_increments():
    mine = {"slot": None}  # each child sets its own slot, as uwsgi.worker_id() would say
    counters = RequestCounters(slots=5, worker_slot=lambda: mine["slot"])
    start_reading, start_writing = os.pipe()
    each = 20_000

    def work(slot):
        def run():
            mine["slot"] = slot
            os.read(start_reading, 1)  # all start together, so they really run side by side
            for i in range(each):
                if i % 4:
                    counters.record(100, "200 OK")
                else:
                    counters.record(303, "404 Not Found")
        return run

    pids = [_fork(work(slot)) for slot in (1, 2, 3, 4)]
    os.write(start_writing, b"go!!")
    _reap(pids)

    counts = counters.snapshot()
    assert counts.requests == 4 * each
    assert counts.by_code == {"100": 3 * each, "303": each}
    assert counts.by_status == {"200": 3 * each, "404": each}
    assert sorted(s.pid for s in counts.slots) == sorted(pids)
    assert all(s.requests == each and s.processes == 1 and s.maxrss_kib > 0 for s in counts.slots)
    assert counts.scope == "all workers"


def test_a_process_without_a_slot_of_its_own_counts_alone_and_says_so():
    counters = RequestCounters(slots=2, worker_slot=lambda: None)
    reading, writing = os.pipe()

    def child():
        counters.record(100, "200 OK")
        counts = counters.snapshot()
        os.write(writing, json.dumps([counts.scope, counts.requests]).encode())

    _reap([_fork(child)])
    assert json.loads(os.read(reading, 1000)) == ["this process", 1]
    assert counters.snapshot().requests == 0  # nothing leaked into the shared map


def test_counters_made_in_each_worker_say_they_are_per_worker():
    # lazy-apps = true: every worker builds its own Service, so its counters are its own
    counters = RequestCounters(worker_slot=lambda: None, worker_count=4)
    counters.record(100, "200 OK")
    counts = counters.snapshot()
    assert counts.scope == "this worker" and "lazy-apps" in counts.scope_note
    assert counts.requests == 1


def test_a_code_or_status_without_a_counter_of_its_own_is_counted_as_other():
    # Counted in its own worker's slot, not spilled into the next slot's counters.
    mine = {"slot": None}
    counters = RequestCounters(slots=3, worker_slot=lambda: mine["slot"])

    def run():
        mine["slot"] = 1
        counters.record(999, "599 Something New")
        counters.record(100, "200 OK")
        counters.record(999, "599 Something New")

    _reap([_fork(run)])
    counts = counters.snapshot()
    assert counts.by_code == {"100": 1, "other": 2}
    assert counts.by_status == {"200": 1, "other": 2}
    assert [(s.slot, s.requests) for s in counts.slots] == [(1, 3)]
