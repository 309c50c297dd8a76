"""The fault drills of tests/drills in their small size (a few iterations each): the real
service under uWSGI, the real writer, real signals and mounts (root, or a user namespace of their own). `make drills` runs them at
full size and records their figures in tests/bench/RESULTS.md.

The six run side by side (each its own service on its own port, in its own directory):
they spend most of their time waiting for uWSGI to start, a writer to be restarted or a
lock to be held, so together they take about as long as the longest alone."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.drills.runner import DRILLS, MOUNTS, can_mount, run_drill
from tests.support import unavailable


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    runnable = [name for name in DRILLS if name not in MOUNTS or can_mount() is None]
    with ThreadPoolExecutor(len(runnable)) as pool:
        futures = {name: pool.submit(run_drill, name, True, tmp_path_factory.mktemp(name))
                   for name in runnable}
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(DRILLS))
def test_drill_small(name, outcomes):
    if name not in outcomes:
        unavailable(f"the {name} drill mounts a size-limited tmpfs: {can_mount()}")
    outcome = outcomes[name]
    assert outcome.met, "\n".join(outcome.problems) + f"\nfigures: {outcome.figures}"
    assert outcome.figures.get("lost") == 0 and outcome.figures.get("duplicated") == 0
