"""Fault drills: the real service (examples/uwsgi.ini under uWSGI, its attached
fplane-writer) put through a fault, and what it promised checked afterwards.

    make drills                        all of them, full size; figures into tests/bench/RESULTS.md
    make drills DRILL=writer-kill      one (writer-kill, worker-kill, disk-full, db-lock,
                                       bad-spool-file, restart)
    .venv/bin/python -m tests.drills --small writer-kill    a few iterations, nothing recorded

Each drill prints its figures and exits non-zero when anything was lost or duplicated or
any other promise broken; tests/test_drills.py runs the small version of each in
`make test`.
"""
