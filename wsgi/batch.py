"""get_fplane --batch / --fits: the fplane file of many instants, one file per distinct answer.

Each input (a line of the batch, or a FITS file) is resolved on its own: a bad date, an
instant before the history, an unreadable FITS file make that line's row an error and the
others go on. An instant inside the validity of an answer already met in this run reuses
it without asking anyone (that is what the validity means); otherwise the client answers
(cache, server or snapshot: wsgi/client.py). The first input that meets an answer writes
its file, so the file is the answer exactly as served for that input.

The table, tab-separated with a header line: input, instant, version, file, source.
"""

import sys
from datetime import datetime, timezone
from pathlib import Path

from wsgi import dates
from wsgi.client import PROG, Failed, FplaneAnswer, FplaneClient, write_file
from wsgi.fits_header import FitsError, exposure_instant_of

TABLE_HEADER = ("input", "instant", "version", "file", "source")


def batch_inputs(args):
    """(input as shown in the table, its datestr or a FitsError) for each input."""
    if args.batch is not None:
        stream = sys.stdin if args.batch == "-" else None
        try:
            lines = (stream.read() if stream else Path(args.batch).read_text(encoding="utf-8")).splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise Failed(f"{PROG}: cannot read {args.batch}: {getattr(err, 'strerror', None) or err}") from None
        for line in lines:
            text = line.strip()
            if text and not text.startswith("#"):
                yield text, text
    for name in args.fits or ():
        try:
            yield name, exposure_instant_of(name)
        except FitsError as err:
            yield name, err


def answer_file_name(answer: FplaneAnswer, actual: bool) -> str:
    """By version; with measured positions several answers share one, so also by start."""
    if not actual:
        return f"fplane_v{answer.version}.txt"
    start = dates.from_micros(answer.valid_from_micros).strftime("%Y%m%dT%H%M%SZ")
    return f"fplane_v{answer.version}_{start}.txt"


def run_batch(client: FplaneClient, args) -> int:
    directory = Path(args.output or ".")
    if args.output == "-" or not directory.is_dir():
        print(f"{PROG}: -o with --batch / --fits names a directory: {args.output!r} is not one",
              file=sys.stderr)
        return 2
    rows, failed = resolve_all(client, batch_inputs(args), directory, actual=args.actual,
                               full=not args.short, known_at=args.known_at)
    table = "".join("\t".join(_cell(c) for c in row) + "\n" for row in [TABLE_HEADER, *rows])
    if args.table:
        write_file(Path(args.table), table.encode("utf-8"))
    else:
        sys.stdout.write(table)
        sys.stdout.flush()
    if failed:
        print(f"{PROG}: {failed} of {len(rows)} inputs failed (see the table)", file=sys.stderr)
    return 1 if failed else 0


def resolve_all(client: FplaneClient, inputs, directory: Path, *, actual: bool, full: bool,
                known_at: str | None):
    """(table rows, number failed). Answer files are written into ``directory``."""
    met: list[tuple[FplaneAnswer, str]] = []   # distinct answers of this run, and their files
    last = None
    rows, failed = [], 0
    now = datetime.now(timezone.utc)
    for shown, datestr in inputs:
        if isinstance(datestr, FitsError):
            rows.append((shown, "-", "-", "-", f"error: {datestr}"))
            failed += 1
            continue
        try:
            t = client.instant(datestr, now)
            hit = last if last is not None and t is not None and last[0].holds(t) else \
                next((m for m in met if t is not None and m[0].holds(t)), None)
            if hit is None:
                answer = client.answer(datestr, actual=actual, full=full, known_at=known_at)
                t = client.instant(datestr, now)
                hit = next((m for m in met if m[0].valid_from_micros == answer.valid_from_micros
                            and m[0].version == answer.version), None)
                if hit is None:
                    path = directory / answer_file_name(answer, actual)
                    write_file(path, answer.text.encode("utf-8"))
                    hit = (answer, str(path))
                    met.append(hit)
            last = hit
            answer, path = hit
            rows.append((shown, "-" if t is None else dates.format_micros(t), str(answer.version),
                         path, answer.source))
        except Failed as err:
            rows.append((shown, "-", "-", "-", f"error: {err}"))
            failed += 1
    return rows, failed


def _cell(text: str) -> str:
    # One row per line, one cell per tab, whatever a file name or a message holds.
    return text.replace("\t", " ").replace("\n", " ")
