"""Plain text for people (pure): counted words, and fixed-width tables for terminals and
`format=txt` answers.

In a table every column is as wide as its widest cell, so the columns stay aligned whatever the
values (a long station id, a valid_from with microseconds); the last column is left
unpadded, so it may hold free text. Cells are flattened to one line: a newline in a
station's comment must not forge a table row.
"""

from collections.abc import Iterable, Sequence


def one_line(text) -> str:
    return " ".join(str(text).split())


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 version', '2 versions' ('1 update waiting' needs many= for irregular words)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def render(header: Sequence[str], rows: Iterable[Sequence], right: Iterable[int] = (),
           gap: str = "  ") -> list[str]:
    """The table's lines, header first. ``right``: indexes of right-aligned (number) columns."""
    cells = [[one_line(c) for c in header]] + [[one_line(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    right = set(right)
    lines = []
    for row in cells:
        padded = [c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(row[:-1], widths))]
        lines.append(gap.join(padded + [row[-1]]).rstrip())
    return lines
