"""The code holds no unused import or variable and no name defined twice (pyflakes): each
is a leftover a reader would otherwise have to puzzle over. Two definitions of one
function, the second silently winning, once came out of a merge this way."""

import io

from pyflakes.api import checkRecursive
from pyflakes.reporter import Reporter

from tests.support import REPO


def test_pyflakes_finds_nothing():
    out = io.StringIO()
    found = checkRecursive([str(REPO / d) for d in ("wsgi", "writer", "tests", "examples")],
                           Reporter(out, out))
    assert found == 0, out.getvalue()
