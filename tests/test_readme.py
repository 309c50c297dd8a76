"""The README's samples cannot drift: each command shown after `$ ` runs, as written, against
the demo that `make run` serves (examples/demo.py, uWSGI from examples/uwsgi.ini), and its
output must be the lines the README shows under it.

In a sample, a line `...` stands for any number of lines and `...` within a line for any
text (a time stamp, a pid). Commands run in a directory where `.venv`, `examples` and `var`
are this checkout's venv, its examples and the demo site, so relative paths work as in a
checkout after `make run`; the README's URL http://127.0.0.1:8080 is the test's uWSGI.
"""

import difflib
import functools
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import REPO, required_programs
from tests.test_deploy import running_uwsgi

README = REPO / "README"
README_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Sample:
    line: int                  # where the command is in the README
    command: str
    expected: tuple[str, ...]


def readme_samples(text: str) -> list[Sample]:
    """Every `    $ command` line of an indented block, with the block's lines up to the
    next command or the end of the block."""
    samples, current = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("    $ "):
            current = Sample(number, line[len("    $ "):], ())
            samples.append(current)
        elif current is not None and line.startswith("    "):
            samples[-1] = current = Sample(current.line, current.command,
                                           current.expected + (line[4:],))
        else:
            current = None
    return samples


SAMPLES = readme_samples(README.read_text(encoding="utf-8"))


def line_matches(pattern: str, line: str) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("...")), line) is not None


def output_matches(expected, actual) -> bool:
    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i] == "...":
            return match(i + 1, j) or (j < len(actual) and match(i, j + 1))
        return j < len(actual) and line_matches(expected[i], actual[j]) and match(i + 1, j + 1)
    return match(0, 0)


def test_the_matching_rules():
    assert output_matches(("a", "...", "d"), ["a", "b", "c", "d"])
    assert output_matches(("a", "...", "b"), ["a", "b"])
    assert not output_matches(("a", "d"), ["a", "b", "d"])
    assert output_matches(("x (recorded ...)",), ["x (recorded 2026-01-01T00:00:00Z)"])
    assert not output_matches(("x (recorded ...)",), ["y (recorded now)"])
    assert not output_matches(("a",), ["a", "extra"])


def test_the_readme_has_its_samples():
    commands = [s.command for s in SAMPLES]
    assert "curl 'http://127.0.0.1:8080/fplane/20180715?actual_pos=0&full_fplane=1'" in commands
    assert all(s.expected for s in SAMPLES), "a sample command without the output it gives"
    assert len(SAMPLES) >= 5


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo site of `make run`, served by uWSGI (with its writer), and a directory to
    run the README's commands in."""
    required_programs("curl", install="apt-get install curl")
    root = tmp_path_factory.mktemp("readme")
    var = root / "var"
    var.mkdir()
    subprocess.run([sys.executable, str(REPO / "examples" / "demo.py"), "--config",
                    str(var / "config.ini")], check=True, capture_output=True, timeout=300)
    work = root / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (work / "examples").symlink_to(REPO / "examples")
    (work / "var").symlink_to(var)
    # curl writing into a pipe shows a progress meter that it leaves out on a terminal.
    (work / ".curlrc").write_text("--silent\n--show-error\n")
    with running_uwsgi(var / "config.ini", root / "uwsgi.log") as (base, _):
        wait_until_healthy(base)
        yield base, work


def wait_until_healthy(base: str) -> None:
    """Until the writer's first heartbeat: the /health sample shows a healthy service."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("sample", SAMPLES, ids=[f"line{s.line}" for s in SAMPLES])
def test_a_readme_sample_is_what_the_demo_answers(demo, sample):
    base, work = demo
    env = {k: v for k, v in os.environ.items() if k not in ("FPLANE_URL", "FPLANE_CONFIG")}
    env["CURL_HOME"] = str(work)
    run = subprocess.run(["bash", "-c", sample.command.replace(README_URL, base)], cwd=work,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=60)
    actual = run.stdout.splitlines()

    if not output_matches(sample.expected, actual):
        diff = "\n".join(difflib.unified_diff(list(sample.expected), actual, "README", "demo",
                                              lineterm=""))
        pytest.fail(f"README line {sample.line}: `{sample.command}` gives other output than the "
                    f"README shows (`...` matches anything):\n{diff}")
