"""The HTML page of ``GET /``: the focal plane at an instant, the controls, the timeline.

Pure: a PageView in, the whole HTML5 document out. The handler builds the view from
the store (instant, version, rows drawn with svgmap.render_map, history, optional
diff); nothing here reads the store or the clock.

Written for an observatory network without internet: no JavaScript, no framework, no
CDN, no external fonts, one inline <style>. The page's URL carries the whole state
(date, compare, actual_pos, full_fplane, labels) because the form is a GET form, so a link
reproduces the view. Every text from the store (station, comment) and every URL is
escaped; URLs built here are quoted with urllib.parse.

DOM contract (the browser test relies on it): ``form#view-form`` with ``input#date``,
``input#compare``, ``select#actual_pos``, ``select#full_fplane``, ``select#labels`` and
a submit button; ``p#shown-version[data-version]``; the svg inside ``figure#map`` (no
figure when no instant could be read); ``ol#timeline`` with one ``li[data-version]`` per
version (newest first), the shown one ``aria-current="true"``; ``a#download[download]``;
``ul#changes`` whose entries link to ``#seat-<IFUSLOT>``, the seat's element in the svg.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Sequence
from urllib.parse import quote, urlencode

from wsgi.dates import ACCEPTED_FORMS, format_micros
from wsgi.fplane import Row
from wsgi.store import Version
from wsgi.svgmap import DEFAULT_LABELS, LABELS, STATE_LABELS, seat_anchor, seat_state

if TYPE_CHECKING:  # wsgi.diff is only needed for the annotation; the page uses .kind / .text
    from wsgi.diff import Change

__all__ = ["PageView", "render_page", "view_url", "diff_url", "PALETTE"]


@dataclass(frozen=True)
class PageView:
    date_value: str        # the date field's value as the user typed it ("" = now)
    compare_value: str     # the compare field's value ("" = none)
    actual: bool
    full: bool
    instant: str           # ISO Z of the instant shown; "" when the date could not be read
    version: Version | None          # None: nothing to show at that instant
    svg: str               # render_map output ("" when version is None)
    download_url: str      # relative URL of the exact fplane file shown
    map_url: str           # "/map/<datestr>.svg?actual_pos=..&full_fplane=.."
    history: Sequence[Version]       # every version, valid_from order (oldest first)
    changes: tuple[Change, ...] | None   # diff compare -> shown instant, when compare given
    compare_url: str | None          # "/diff/<compare>/<date>" when compare given
    message: str           # an error or notice to show (bad date...), "" for none
    seats: Sequence[Row] = ()        # the rows drawn, also listed as a table
    labels: str = DEFAULT_LABELS     # what the seats are labelled with: a key of svgmap.LABELS


# The timeline lists at most this many versions, those nearest the one shown.
TIMELINE_LIMIT = 200

# Colours of the page, (foreground, background) pairs the tests check for 4.5:1.
PALETTE = {
    "text": ("#1a1a1a", "#ffffff"),
    "muted": ("#4d4d4d", "#ffffff"),
    "link": ("#0b57d0", "#ffffff"),
    "current": ("#1a1a1a", "#e8f0fe"),
    "current-link": ("#0b4fbd", "#e8f0fe"),
    "alert": ("#5f1410", "#fdecea"),
    "panel": ("#1a1a1a", "#f4f5f7"),
    "panel-link": ("#0b4fbd", "#f4f5f7"),
    "panel-muted": ("#4d4d4d", "#f4f5f7"),
    "button": ("#ffffff", "#0b57d0"),
}


def view_url(date: str, actual: bool, full: bool, labels: str = DEFAULT_LABELS) -> str:
    """The page's own URL for a date and toggles (':' kept readable in the query)."""
    query = urlencode([("date", date), ("actual_pos", _flag(actual)),
                       ("full_fplane", _flag(full)), ("labels", labels)], safe=":")
    return "/?" + query


def diff_url(date1: str, date2: str) -> str:
    return f"/diff/{quote(date1, safe=':')}/{quote(date2, safe=':')}"


def render_page(view: PageView) -> str:
    """The whole HTML document."""
    title = f"Focal plane at {view.instant}" if view.instant else "Focal plane: date not read"
    if view.version is not None:
        title += f", version {view.version.id}"
    body = [
        '<a class="skip" href="#main">Skip to the focal plane</a>',
        "<header>",
        "<h1>HET/VIRUS focal plane</h1>",
        '<nav aria-label="Other views"><ul>'
        '<li>Version history (<a href="/history">text</a>,'
        ' <a href="/history?format=json">JSON</a>)</li>'
        '<li><a href="/feed">Atom feed of changes</a></li>'
        "</ul></nav>",
        "</header>",
        '<main id="main">',
        _message(view.message),
        '<div class="layout">',
        _controls(view),
        _plane(view),
        _timeline(view),
        "</div>",
        "</main>",
        _footer(),
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)} - fplaneserver</title>",
        '<link rel="alternate" type="application/atom+xml" href="/feed"'
        ' title="Focal plane changes">',
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        *(part for part in body if part),
        "</body>",
        "</html>",
    ]) + "\n"


# --------------------------------------------------------------------------
# Parts

def _footer() -> str:
    # Pipelines and scripts use the URLs, not this page: say where they are.
    return "\n".join([
        '<footer class="help">',
        "<p>For pipelines: <code>GET /fplane/&lt;datestr&gt;?actual_pos=0|1&amp;full_fplane=0|1</code>"
        " returns the fplane file valid then; see also"
        ' <a href="/?format=txt">the API in plain text</a>,'
        ' <a href="/openapi.json">its OpenAPI description</a> and'
        ' <a href="/sys">the service\'s own state</a>.</p>',
        "</footer>",
    ])


def _message(message: str) -> str:
    if not message:
        return ""
    return f'<div class="message" role="alert"><p>{escape(message)}</p></div>'


def _controls(view: PageView) -> str:
    return "\n".join([
        '<section class="controls" aria-labelledby="controls-heading">',
        '<h2 id="controls-heading">Choose the view</h2>',
        '<form id="view-form" action="/" method="get">',
        '<div class="field"><label for="date">Date</label>',
        f'<input id="date" name="date" type="text" value="{escape(view.date_value)}"'
        ' placeholder="now" autocomplete="off" spellcheck="false"'
        ' aria-describedby="date-help">',
        '<p id="date-help" class="help">Empty for now; 20180707 (00:00 site time),'
        " 20180715v012, 2018-07-07T05:00:00Z ...</p></div>",
        '<div class="field"><label for="compare">Compare with</label>',
        f'<input id="compare" name="compare" type="text" value="{escape(view.compare_value)}"'
        ' autocomplete="off" spellcheck="false" aria-describedby="compare-help">',
        '<p id="compare-help" class="help">An earlier date: lists what changed from it'
        " to the date above. Empty for none.</p></div>",
        '<div class="field"><label for="actual_pos">Positions</label>',
        _select("actual_pos", view.actual,
                (("0", "nominal (grid)"), ("1", "measured (astrometry)"))),
        "</div>",
        '<div class="field"><label for="full_fplane">File</label>',
        _select("full_fplane", view.full,
                (("1", "full: every seat, LRS2, fibres"), ("0", "short: active IFUs only"))),
        "</div>",
        '<div class="field"><label for="labels">Labels on the seats</label>',
        _choice("labels", view.labels, tuple(LABELS.items())),
        "</div>",
        '<button type="submit">Show</button>',
        f'<details><summary>All date forms</summary><p class="help">'
        f"{escape(ACCEPTED_FORMS)}</p></details>",
        "</form>",
        _changes(view),
        "</section>",
    ])


def _select(name: str, value: bool, options: tuple[tuple[str, str], ...]) -> str:
    return _choice(name, _flag(value), options)


def _choice(name: str, chosen: str, options: tuple[tuple[str, str], ...]) -> str:
    rendered = "".join(
        f'<option value="{v}"{" selected" if v == chosen else ""}>{escape(text)}</option>'
        for v, text in options)
    return f'<select id="{name}" name="{name}">{rendered}</select>'


def _changes(view: PageView) -> str:
    if view.changes is None:
        return ""
    heading = (f"Changes from {view.compare_value or 'the compared date'}"
               f" to {view.date_value or 'now'}")
    parts = ['<section class="changes" aria-labelledby="changes-heading">',
             f'<h2 id="changes-heading">{escape(heading)}</h2>']
    if view.changes:
        drawn = {row.ifuslot for row in view.seats}
        parts.append('<p class="help">Ringed on the map; each entry leads to its seat.</p>')
        parts.append('<ul id="changes">')
        parts.extend(f'<li class="change kind-{escape(str(change.kind))}">'
                     f"{_change_text(change, drawn)}</li>" for change in view.changes)
        parts.append("</ul>")
    else:
        parts.append('<p id="changes">No change.</p>')
    if view.compare_url:
        parts.append(f'<p><a href="{escape(view.compare_url)}">This comparison as text</a></p>')
    parts.append("</section>")
    return "\n".join(parts)


def _change_text(change: Change, drawn: set[int]) -> str:
    # Linked only to a seat the map draws (the short file leaves out inactive seats).
    if change.seat is None or change.seat not in drawn:
        return escape(change.text)
    return f'<a href="#{seat_anchor(change.seat)}">{escape(change.text)}</a>'


def _plane(view: PageView) -> str:
    version = view.version
    positions = "measured positions" if view.actual else "nominal positions"
    file_kind = "full file" if view.full else "short file"
    if not view.instant:
        return "\n".join([
            '<section class="plane" aria-labelledby="plane-heading">',
            '<h2 id="plane-heading">No map shown</h2>',
            '<p id="shown-version" data-version="">The date above could not be read, so no'
            " instant is shown. Correct it, or open a version from the list.</p>",
            "</section>"])
    parts = ['<section class="plane" aria-labelledby="plane-heading">',
             f'<h2 id="plane-heading">At {_time(view.instant)}'
             f' <span class="muted">({positions}, {file_kind})</span></h2>']
    if version is None:
        parts.append('<p id="shown-version" data-version="">No configuration is known'
                     f" for {_time(view.instant)}.</p>")
        parts.append("</section>")
        return "\n".join(parts)
    until = ("until further notice" if version.valid_until is None
             else f"until {_time(format_micros(version.valid_until))}")
    comment = (f' <span class="comment">{escape(version.comment)}</span>'
               if version.comment else "")
    parts.append(
        f'<p id="shown-version" data-version="{version.id}">Version {version.id}:'
        f" valid from {_time(format_micros(version.valid_from))} {until},"
        f' recorded {_time(format_micros(version.recorded_at))} by'
        f' <span class="station">{escape(version.station)}</span>,'
        f" {_ifus(version.active_ifus)}.{comment}</p>")
    parts.append('<figure id="map">')
    parts.append(view.svg)
    parts.append(f"<figcaption>Each square is one IFU seat, to scale in arcsec, labelled"
                 f" with {escape(LABELS.get(view.labels, view.labels))} (the key is below"
                 " the drawing). On a small screen, open the drawing alone and zoom in."
                 "</figcaption>")
    parts.append("</figure>")
    parts.append(_seat_table(view.seats))
    parts.append(
        '<ul class="downloads">'
        f'<li><a id="download" href="{escape(view.download_url)}" download>'
        f"Download this fplane file ({escape(file_kind)}, {escape(positions)})</a></li>"
        f'<li><a href="{escape(view.map_url)}">This drawing alone (SVG)</a></li>'
        "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def _seat_table(rows: Sequence[Row]) -> str:
    """The drawing's content as a table: the spectrographs without pointing at seats (a
    phone, a keyboard, a screen reader), and every seat in a form one can search."""
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{r.ifuslot:03d}</td><td>{r.ifuid:03d}</td><td>{r.specid:03d}</td>"
        f"<td>{r.specslot:03d}</td><td>{r.x:.3f}</td><td>{r.y:.3f}</td>"
        f"<td>{escape(STATE_LABELS[seat_state(r)])}</td></tr>" for r in rows)
    return ('<details id="seat-table"><summary>Every seat as a table</summary>'
            '<div class="table-scroll"><table><thead><tr><th scope="col">IFUSLOT</th>'
            '<th scope="col">IFUID</th><th scope="col">SPECID</th><th scope="col">SPECSLOT</th>'
            '<th scope="col">X_FP</th><th scope="col">Y_FP</th><th scope="col">state</th>'
            f"</tr></thead><tbody>{body}</tbody></table></div></details>")


def _timeline(view: PageView) -> str:
    history = list(view.history)
    shown = view.version.id if view.version is not None else None
    start, end = _window(history, shown)
    previous_valid_from = _previous_valid_froms(history)
    items = []
    for i in range(start, end):
        version = history[i]
        iso = format_micros(version.valid_from)
        previous = previous_valid_from[i]
        corrected_by = (history[i + 1].id if i + 1 < len(history)
                        and history[i + 1].valid_from == version.valid_from else None)
        current = ' aria-current="true" class="current"' if version.id == shown else ""
        entry = [f'<li data-version="{version.id}"{current}>',
                 f'<a class="view" href="{escape(view_url(iso, view.actual, view.full, view.labels))}">'
                 f"{_time(iso)}</a>",
                 f' <span class="meta">version {version.id},'
                 f' <span class="station">{escape(version.station)}</span>,'
                 f" {_ifus(version.active_ifus)}</span>"]
        if version.id == shown:
            entry.append(' <strong class="badge">shown</strong>')
        if corrected_by is not None:
            entry.append(f' <span class="note">corrected by version {corrected_by}</span>')
        if version.comment:
            entry.append(f' <span class="comment">{escape(version.comment)}</span>')
        if previous is not None:
            prev_iso = format_micros(previous)
            entry.append(f' <a class="diff" href="{escape(diff_url(prev_iso, iso))}">what'
                         f' changed<span class="vh"> from {prev_iso} to {iso}</span></a>')
        entry.append("</li>")
        items.append("".join(entry))
    items.reverse()  # newest first: the recent versions are the ones people look for
    count = len(history)
    window_note = "" if end - start == count else (
        f'<p class="help">Showing the {end - start} versions nearest the one shown;'
        f' <a href="/history">all {count} versions</a>.</p>')
    return "\n".join([
        '<section class="timeline" aria-labelledby="timeline-heading">',
        f'<h2 id="timeline-heading">Versions ({count})</h2>',
        '<p class="help">Newest first; times are UTC. Each date opens that view;'
        " \u201cwhat changed\u201d compares it with the version before.</p>",
        window_note,
        f'<ol id="timeline" reversed>{"".join(items)}</ol>' if items
        else '<ol id="timeline"></ol><p>No versions recorded yet.</p>',
        "</section>",
    ])


def _window(history: list[Version], shown: int | None) -> tuple[int, int]:
    """The TIMELINE_LIMIT entries nearest the shown version (the newest when none is shown):
    a store with years of daily versions must not make a page of megabytes."""
    centre = next((i for i, v in enumerate(history) if v.id == shown), len(history) - 1)
    start = max(0, min(centre - TIMELINE_LIMIT // 2, len(history) - TIMELINE_LIMIT))
    return start, min(len(history), start + TIMELINE_LIMIT)


def _previous_valid_froms(history: list[Version]) -> list[int | None]:
    """For each entry, the latest valid_from before its own (a correction shares its
    valid_from, and the diff from an instant to itself would say nothing); one pass."""
    previous, before, run_from = [], None, None
    for version in history:
        if version.valid_from != run_from:
            before, run_from = run_from, version.valid_from
        previous.append(before)
    return previous


def _time(iso: str) -> str:
    return f'<time datetime="{escape(iso)}">{escape(iso)}</time>'


def _ifus(count: int) -> str:
    return f"{count} active IFU{'' if count == 1 else 's'}"


def _flag(value: bool) -> str:
    return "1" if value else "0"


_C = PALETTE  # short name for the style sheet below

_STYLE = f"""
:root{{color-scheme:light;--ink:{_C['text'][0]};--muted:{_C['muted'][0]};\
--link:{_C['link'][0]};--focus:#0b57d0}}
*,*::before,*::after{{box-sizing:border-box}}
body{{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",\
Arial,sans-serif;color:var(--ink);background:{_C['text'][1]}}}
a{{color:var(--link)}}
a:hover{{text-decoration-thickness:2px}}
:focus-visible{{outline:3px solid var(--focus);outline-offset:2px}}
.skip{{position:absolute;left:-999px;top:0;padding:.5rem 1rem;background:#fff}}
.skip:focus{{left:.5rem;z-index:1}}
header{{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 2rem;\
padding:.75rem 1rem;border-bottom:1px solid #c4c7cc}}
h1{{font-size:1.5rem;margin:0}}
h2{{font-size:1.15rem;margin:0 0 .5rem}}
nav ul,.downloads{{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem 1.25rem}}
main,footer{{padding:1rem;max-width:100rem;margin:0 auto}}
.layout{{display:grid;gap:1.5rem;grid-template-columns:minmax(0,1fr)}}
.controls,.timeline{{background:{_C['panel'][1]};border-radius:6px;padding:1rem}}
.controls a,.timeline a{{color:{_C['panel-link'][0]}}}
.field{{margin-bottom:.75rem}}
label{{display:block;font-weight:600}}
input,select,button{{font:inherit;max-width:100%}}
input,select{{width:100%;padding:.4rem .5rem;border:1px solid #6b6b6b;border-radius:4px;\
background:#fff;color:var(--ink)}}
button{{padding:.5rem 1.5rem;border:0;border-radius:4px;color:{_C['button'][0]};\
background:{_C['button'][1]};cursor:pointer}}
button:hover{{background:#0842a0}}
.help,.muted,.meta,.note{{color:var(--muted)}}
.help{{font-size:.9rem;margin:.25rem 0 0}}
details{{margin-top:1rem;font-size:.9rem}}
.message{{border:2px solid #b3261e;border-radius:6px;background:{_C['alert'][1]};\
color:{_C['alert'][0]};padding:.25rem 1rem;margin-bottom:1rem}}
.changes{{margin-top:1.5rem}}
.changes ul{{padding-left:1.25rem}}
#map{{margin:0}}
#map svg{{display:block;width:100%;height:auto}}
.table-scroll{{overflow-x:auto}}
#seat-table table{{border-collapse:collapse;font-variant-numeric:tabular-nums}}
#seat-table th,#seat-table td{{padding:.15rem .6rem;text-align:left;border-bottom:1px solid #ccc}}
figcaption{{font-size:.9rem;color:var(--muted);margin:.5rem 0}}
.comment{{display:block;overflow-wrap:anywhere;white-space:pre-line}}
#timeline{{margin:0;padding:0;list-style:none;max-height:70vh;overflow-y:auto}}
#timeline li{{padding:.4rem .5rem;border-bottom:1px solid #d5d8dc}}
#timeline li.current{{background:{_C['current'][1]};color:{_C['current'][0]}}}
#timeline li.current .meta{{color:{_C['current'][0]}}}
#timeline li.current a{{color:{_C['current-link'][0]}}}
time{{white-space:nowrap}}
.diff{{white-space:nowrap}}
.badge{{font-size:.85rem}}
.vh{{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);\
white-space:nowrap}}
@media print{{
.skip,#controls-heading,#view-form,.timeline,footer,.downloads,#seat-table,header nav{{display:none}}
.layout{{display:flex;flex-direction:column}}
.plane{{order:-1}}
main{{max-width:none;padding:0}}
.controls{{background:none;padding:0}}
#map{{break-inside:avoid}}
}}
@media screen and (min-width:64rem){{
.layout{{grid-template-columns:minmax(17rem,24rem) minmax(0,1fr);\
grid-template-areas:"controls plane" "timeline plane";align-items:start}}
.controls{{grid-area:controls}}
.plane{{grid-area:plane}}
.timeline{{grid-area:timeline}}
}}
"""
