"""tests/bench/RESULTS.md: the latest figures of every drill and benchmark, written by the
commands that measure them (never by hand).

    from tests.results import machine_info, record
    record("drill: writer-kill", machine_info(), "make drills DRILL=writer-kill",
           {"updates": 2000, "lost": 0, "duplicated": 0}, "0 lost, 0 duplicated", met=True)

Each call rewrites its own section and keeps every other one as it is, so drills and
benchmarks run at different times (or by different people) add up to one file. The file
is replaced atomically (temporary file, fsync, rename) under an flock, so a reader never
sees half of it and two commands finishing together do not drop each other's section.
"""

import fcntl
import os
import platform
import re
import time
from contextlib import contextmanager
from pathlib import Path

from wsgi.files import write_atomically

RESULTS = Path(__file__).resolve().parent / "bench" / "RESULTS.md"

HEADER = """\
# Results of the drills and benchmarks

Written by the commands that measure them (`make drills`, `make bench`, `make results`)
through tests/results.py; do not edit by hand. Each section holds the latest run of one
drill or benchmark: the machine, when, the command, the figures, the target and whether
it was met.
"""

_SECTION = re.compile(r"<!-- section: (?P<name>[^>]*?) -->\n(?P<body>.*?)<!-- end: (?P=name) -->\n",
                      re.DOTALL)


def machine_info() -> dict:
    """What the figures were measured on: cores, memory, CPU model, system, Python."""
    memory = cpu = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cores": usable, "memory": memory or "unknown", "cpu": cpu or platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            # a shared machine: how busy it was when the figures were taken
            "load": f"{os.getloadavg()[0]:.1f}"}


def record(section: str, machine: dict, command: str, figures, target: str, met: bool,
           path: Path = RESULTS) -> Path:
    """Rewrite ``section`` of the results file with one run's figures; keep the others.

    ``figures``: a dict (or a list of pairs) of name -> value, in the order to show them."""
    if "-->" in section or "\n" in section:
        raise ValueError(f"a section name is one line without '-->': {section!r}")
    items = list(figures.items() if isinstance(figures, dict) else figures)
    body = _render(section, machine, command, items, target, met)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        sections = read_sections(path)
        sections[section] = body
        text = HEADER + "".join(
            f"\n<!-- section: {name} -->\n{sections[name]}<!-- end: {name} -->\n"
            for name in sorted(sections))
        write_atomically(path, text.encode("utf-8"))
    return path


def read_sections(path: Path = RESULTS) -> dict[str, str]:
    """name -> the section's text, as the file has them now ({} when there is no file)."""
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        return {}
    return {m["name"]: m["body"] for m in _SECTION.finditer(text)}


def _render(section, machine, command, items, target, met) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    lines = [f"## {section}", "",
             f"- date: {when}",
             f"- machine: {machine.get('cores')} cores, {machine.get('memory')} memory; "
             f"{machine.get('cpu')}; {machine.get('system')}; Python {machine.get('python')}; "
             f"load average {machine.get('load')} (1 min) at the end",
             f"- command: `{command}`",
             f"- target: {target}",
             f"- met: {'yes' if met else 'NO'}",
             "", "| figure | value |", "|---|---|"]
    lines += [f"| {_cell(name)} | {_cell(_format(value))} |" for name, value in items]
    return "\n".join(lines) + "\n\n"


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@contextmanager
def _locked(path: Path):
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
