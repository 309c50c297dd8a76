"""Is the venv's uWSGI built for the venv's Python? `make venv` runs this after pip.

    .venv/bin/python examples/check_uwsgi.py [UWSGI]      (default: uwsgi beside this python)

pip may install a uWSGI wheel from its cache that was built against another CPython of the
same minor version (pyenv's beside Debian's): the wheel's name matches, but the uwsgi binary
embeds the other interpreter, and the service then fails at start-up on `import math`. So
run a probe inside uWSGI itself (--pyrun) and compare its interpreter with this one.
Exit 0 when they are the same; 1, with what differs, when not (make venv then rebuilds
uWSGI from source with pip's cache off).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

MARK = "FPLANE-EMBEDDED-PYTHON"
PROBE = f"import math, sys\nprint({MARK!r}, sys.version.replace(' ', '_'), sys.base_prefix, flush=True)\n"


def this_python() -> str:
    return f"{sys.version.replace(' ', '_')} {sys.base_prefix}"


def embedded_python(uwsgi: str) -> str | None:
    """What the probe printed inside uWSGI: version and base prefix, or None (it failed)."""
    with tempfile.TemporaryDirectory() as directory:
        probe = Path(directory) / "probe.py"
        probe.write_text(PROBE)
        try:
            done = subprocess.run([uwsgi, "--pyrun", str(probe)], cwd=directory, capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
    # uWSGI sends the script's standard output to its log, standard error, unless a terminal.
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith(MARK + " "):
            return line.removeprefix(MARK + " ").strip()
    return None


def main(argv) -> int:
    uwsgi = argv[1] if len(argv) > 1 else str(Path(sys.executable).parent / "uwsgi")
    embedded = embedded_python(uwsgi)
    if embedded == this_python():
        return 0
    print(f"check_uwsgi: {uwsgi} does not run this venv's Python\n"
          f"  venv:  {this_python()}\n"
          f"  uWSGI: {embedded or 'no answer (its embedded Python could not even import math)'}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
