"""Running drills: one work directory each, figures printed and (for a full run) recorded
in tests/bench/RESULTS.md."""

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.drills.service import DrillFailure
from tests.results import machine_info, record

# drill name -> module in tests/drills
DRILLS = {
    "writer-kill": "writer_kill",
    "worker-kill": "worker_kill",
    "disk-full": "disk_full",
    "db-lock": "db_lock",
    "bad-spool-file": "bad_spool_file",
    "restart": "restart",
}

# Drills that mount size-limited file systems. Root mounts them directly; anyone else runs
# the drill in a user and mount namespace of its own (unshare --map-root-user --mount),
# where the kernel lets an unprivileged user mount a tmpfs, seen by that drill alone.
MOUNTS = {"disk-full"}
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


@dataclass
class Outcome:
    """What a drill found: its figures, the target in words and every broken promise."""
    figures: dict = field(default_factory=dict)
    target: str = ""
    problems: list = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    @property
    def met(self) -> bool:
        return not self.problems


def run_drill(name: str, small: bool = False, workdir: Path | None = None) -> Outcome:
    """Run one drill in ``workdir`` (a fresh temporary directory when None)."""
    module = importlib.import_module(f"tests.drills.{DRILLS[name]}")
    own = workdir is None
    directory = Path(tempfile.mkdtemp(prefix=f"fplane-drill-{name}-")) if own else Path(workdir)
    outcome = Outcome(target=module.TARGET)
    started = time.monotonic()
    try:
        if name in MOUNTS and os.geteuid() != 0:
            _run_in_namespace(name, small, directory, outcome)
        else:
            module.drill(directory, outcome, small=small)
    except DrillFailure as err:
        outcome.problems.append(f"the drill could not go on: {err}")
    except Exception:
        outcome.problems.append(f"the drill broke down:\n{traceback.format_exc()}")
    finally:
        outcome.figures["drill_seconds"] = round(time.monotonic() - started, 1)
    if own and outcome.met:
        shutil.rmtree(directory, ignore_errors=True)
    elif not outcome.met:
        outcome.figures["work_directory"] = str(directory)   # logs and spool, to look at
    return outcome


def can_mount() -> str | None:
    """None when this user can run the drills in MOUNTS, else why not."""
    if os.geteuid() == 0:
        return None
    if shutil.which("unshare") is None:
        return "mounting a tmpfs needs root, or unshare (util-linux) for a user namespace"
    tried = subprocess.run(UNSHARE + ["true"], capture_output=True, text=True)
    if tried.returncode != 0:
        return (f"mounting a tmpfs needs root, or user namespaces, which this machine refuses "
                f"({tried.stderr.strip() or 'unshare failed'})")
    return None


def _run_in_namespace(name: str, small: bool, directory: Path, outcome: Outcome) -> None:
    """The drill in a child process run as root of a new user namespace; its outcome comes
    back as JSON and is merged into ``outcome``."""
    why_not = can_mount()
    if why_not:
        raise DrillFailure(why_not)
    result = directory / "outcome.json"
    command = UNSHARE + [sys.executable, "-m", "tests.drills", "--workdir", str(directory),
                         "--outcome", str(result), *(["--small"] if small else []), name]
    child = subprocess.run(command, cwd=Path(__file__).resolve().parents[2])
    if not result.exists():
        raise DrillFailure(f"the drill in its user namespace wrote no outcome (exit status "
                           f"{child.returncode})")
    found = json.loads(result.read_text())
    outcome.figures.update(found["figures"])
    outcome.figures["namespace"] = "a user and mount namespace (unshare), not root"
    outcome.problems.extend(found["problems"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.drills", description=__doc__)
    parser.add_argument("drills", nargs="*", metavar="DRILL",
                        help=f"which (default: all): {', '.join(DRILLS)}")
    parser.add_argument("--small", action="store_true",
                        help="a few iterations (as make test runs them); nothing recorded")
    # for a drill run in a namespace of its own (_run_in_namespace): where, and where to
    # leave the outcome instead of recording it
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--outcome", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # SIGTERM (a stopped make, a CI timeout) unwinds like Ctrl-C: every drill's finally
    # blocks stop its uWSGI and writer and unmount its file systems.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unknown = [d for d in args.drills if d not in DRILLS]
    if unknown:
        parser.error(f"no drill {', '.join(unknown)}; there are {', '.join(DRILLS)}")
    failed = []
    for name in args.drills or list(DRILLS):
        print(f"== drill {name}{' (small)' if args.small else ''}", flush=True)
        try:
            outcome = run_drill(name, small=args.small, workdir=args.workdir)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        if args.outcome:
            args.outcome.write_text(json.dumps(asdict(outcome), default=str))
            return 0 if outcome.met else 1
        for key, value in outcome.figures.items():
            print(f"   {key}: {value}")
        for problem in outcome.problems:
            print(f"   PROBLEM: {problem}")
        print(f"   target: {outcome.target}; met: {'yes' if outcome.met else 'NO'}", flush=True)
        if not args.small:
            command = f"make drills DRILL={name}"
            figures = {k: v for k, v in outcome.figures.items() if k != "work_directory"}
            if outcome.problems:
                figures["problems"] = "; ".join(outcome.problems)[:500]
            path = record(f"drill: {name}", machine_info(), command, figures, outcome.target,
                          outcome.met)
            print(f"   recorded in {path}")
        if not outcome.met:
            failed.append(name)
    if failed:
        print(f"drills that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
