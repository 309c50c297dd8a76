"""tests/results.py: each command rewrites its own section of RESULTS.md and keeps the others."""

import subprocess
import sys

from tests.results import machine_info, read_sections, record
from tests.support import REPO


def test_a_section_is_rewritten_and_the_others_kept(tmp_path):
    path = tmp_path / "RESULTS.md"
    machine = machine_info()
    record("drill: b", machine, "make drills DRILL=b", {"lost": 0}, "0 lost", True, path=path)
    record("drill: a", machine, "make drills DRILL=a", [("lost", 3), ("p99 ms", 12.5)],
           "0 lost", False, path=path)
    record("drill: b", machine, "make drills DRILL=b", {"lost": 1}, "0 lost", False, path=path)

    sections = read_sections(path)
    assert list(sections) == ["drill: a", "drill: b"]
    assert "| lost | 3 |" in sections["drill: a"] and "| p99 ms | 12.5 |" in sections["drill: a"]
    assert "- met: NO" in sections["drill: a"]
    assert "| lost | 1 |" in sections["drill: b"] and "| lost | 0 |" not in sections["drill: b"]
    text = path.read_text()
    assert f"- machine: {machine['cores']} cores, {machine['memory']} memory" in text
    assert "- command: `make drills DRILL=b`" in text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_commands_finishing_together_keep_every_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    script = ("import sys; from tests.results import machine_info, record\n"
              "for i in range(20):\n"
              "    record(f'{sys.argv[1]} {i}', machine_info(), 'x', {'n': i}, 't', True, "
              "path=sys.argv[2])\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, f"w{n}", str(path)], cwd=REPO)
               for n in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0] * 4
    assert len(read_sections(path)) == 80
