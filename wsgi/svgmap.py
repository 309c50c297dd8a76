"""The focal plane drawn as SVG: every seat of a configuration at its position, by state.

Pure: rows in, one ``<svg>`` element out (no XML declaration), so the same text is
inlined in the page (``GET /``) and served alone (``GET /map/<datestr>.svg``).

Drawn to scale in arcsec, north up as the file's axes: X_FP to the right, Y_FP up, so
a row at (x, y) is drawn at svg (x, -y). A VIRUS IFU is a 51" square, LRS2 a 12" x 6"
rectangle, a special fibre row a small circle, the 000 reference row a cross. The
caller passes the positions to draw (nominal, or measured ones applied with
``fplane.with_positions``); nothing here moves a seat.

Each seat is one ``<g id="seat-<IFUSLOT>" class="seat state-<state>" data-ifuslot=..
data-ifuid=.. data-specid=.. data-state=..>`` whose ``<title>`` names seat, IFU and
spectrograph (shown on hover). The visible labels are chosen by ``labels`` (LABELS):
the seat always (bold), then the IFU id, the spectrograph id (italic) or both, so that
a screenshot or a printout says which spectrograph feeds which seat. States differ by
outline style and shape as well as by colour, and every text colour keeps a contrast
of 4.5:1 or more on what it is drawn over (PALETTE is checked by the tests).

Two optional layers, each with its key in the legend: ``changed`` seats (a comparison
with another instant) get a thick rounded ring, and ``offsets`` (measured minus
nominal position, for the seats a position set measured) are drawn as arrows from the
nominal centre, magnified OFFSET_MAGNIFICATION times, on a marked seat.
"""
from __future__ import annotations

from html import escape
from typing import Collection, Iterable, Mapping

from wsgi.fplane import GRID_SLOTS, LRS2_SLOTS, REFERENCE_SLOT, Row, is_grid_slot, nominal_position

__all__ = ["SEAT_STATES", "STATE_LABELS", "PALETTE", "LABELS", "DEFAULT_LABELS",
           "OFFSET_MAGNIFICATION", "seat_state", "seat_anchor", "render_map"]

SEAT_STATES = ("active", "bundle", "empty", "lrs2", "special", "reference")

STATE_LABELS = {
    "active": "IFU with spectrograph",
    "bundle": "IFU bundle, no spectrograph",
    "empty": "empty seat",
    "lrs2": "LRS2 (056 B, 066 R)",
    "special": "other fibre (HPF, HRS)",
    "reference": "field centre (000)",
}

# state -> (fill, stroke, text colour). Text is drawn over the fill (seat squares) or,
# for LRS2 whose labels sit beside its small rectangle, over the white background.
BACKGROUND = "#ffffff"
INK = "#1a1a1a"
PALETTE = {
    "active": ("#b9e2bb", "#1b5e20", INK),
    "bundle": ("#fde3a7", "#7a4f00", INK),
    "empty": ("#ffffff", "#666666", "#4a4a4a"),
    "lrs2": ("#bcd4f6", "#0d3c8c", INK),
    "special": ("#6a1b9a", "#6a1b9a", INK),
    "reference": ("none", "#b3261e", INK),
}

# The layers' colours: each keeps 3:1 against white and against every seat fill.
CHANGED = "#c2185b"
OFFSET = "#a30000"

# labels= value -> what the seats show besides their own id, as the page offers it.
LABELS = {
    "all": "seat, IFU and spectrograph",
    "ifu": "seat and IFU",
    "spectrograph": "seat and spectrograph",
}
DEFAULT_LABELS = "all"

# Measured offsets are tenths of an arcsec (0.48" at most in the real file of
# /work/shared/fixtures): forty times that is up to 20" on a 51" seat, long enough to
# judge a direction by eye. A rare larger offset draws a longer arrow, as it should.
OFFSET_MAGNIFICATION = 40
# The legend's sample arrow, in arcsec of offset.
OFFSET_SAMPLE = 0.5

LRS2_NAMES = {56: "LRS2-B", 66: "LRS2-R"}

VIRUS_HALF = 25.5              # a VIRUS IFU is 51" x 51"
LRS2_HALF = (6.0, 3.0)         # 12" x 6"
SPECIAL_RADIUS = 2.5
CROSS_HALF = 10.0
MARGIN = 15.0
HEADER_HEIGHT = 36.0
LEGEND_ROW = 30.0
# Below an LRS2 rectangle: its seat and its name, one line each.
LRS2_LABEL_DEPTH = 36.0
# A changed seat's ring lies this far outside the seat's own outline.
RING_GAP = 5.0
# Where a layer's key text starts: right of its swatch (the sample arrow is 20" long).
LAYER_TEXT_X = 40.0

# Measured positions differ from nominal by less than this (about 2.4" at most in real files).
POSITION_SLACK = 2.5
# The grid with every seat at nominal position, widened by the slack: the least a map
# shows, so that maps of different dates, nominal or measured, line up.
_GRID_REACH = VIRUS_HALF + POSITION_SLACK + RING_GAP
_GRID_BOX = (
    min(nominal_position(s)[0] for s in GRID_SLOTS) - _GRID_REACH,
    min(-nominal_position(s)[1] for s in GRID_SLOTS) - _GRID_REACH,
    max(nominal_position(s)[0] for s in GRID_SLOTS) + _GRID_REACH,
    max(-nominal_position(s)[1] for s in GRID_SLOTS) + _GRID_REACH,
)

# Document order: specials and the cross after the squares, so nothing hides them.
_DRAW_RANK = {state: i for i, state in enumerate(SEAT_STATES)}

_FONT = 'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif'


def seat_state(row: Row) -> str:
    """One of SEAT_STATES."""
    if row.ifuslot == REFERENCE_SLOT:
        return "reference"
    if row.ifuslot in LRS2_SLOTS:
        return "lrs2"
    if not is_grid_slot(row.ifuslot):
        return "special"
    if row.active:
        return "active"
    return "bundle" if row.ifuid != 0 else "empty"


def seat_anchor(ifuslot: int) -> str:
    """The id of a seat's element: the page links its list of changes to it."""
    return f"seat-{ifuslot:03d}"


def render_map(rows: Iterable[Row], *, title: str, labels: str = DEFAULT_LABELS,
               changed: Collection[int] | None = None, changed_since: str = "",
               offsets: Mapping[int, tuple[float, float]] | None = None) -> str:
    """The whole drawing: title band, the plane, the legend below it.

    ``labels``: a key of LABELS. ``changed``: the seats that changed since the instant
    named ``changed_since`` (None: no comparison, no key). ``offsets``: {ifuslot: (dx,
    dy)} measured minus nominal, in arcsec, for the measured seats (None: nominal
    positions drawn, no key; empty: measured positions asked, none known).
    """
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, not {labels!r}")
    rows = sorted(rows, key=lambda r: (_DRAW_RANK[seat_state(r)], r.ifuslot))
    drawn = {r.ifuslot for r in rows}
    changed_drawn = None if changed is None else frozenset(changed) & drawn
    # The 000 row is the origin the others are measured from, never a measurement.
    offsets_drawn = None if offsets is None else {
        s: d for s, d in offsets.items() if s in drawn and s != REFERENCE_SLOT}
    left, top, right, bottom = _plane_box(rows, offsets_drawn or {})
    width = right - left
    legend_top = bottom + MARGIN
    layers = _layer_keys(changed_drawn, changed_since, offsets_drawn)
    legend_height = (3 + len(layers) + 2) * LEGEND_ROW + MARGIN
    box_top = top - HEADER_HEIGHT
    height = legend_top + legend_height - box_top
    counts = {state: 0 for state in SEAT_STATES}
    for r in rows:
        counts[seat_state(r)] += 1
    view_box = f"{_n(left)} {_n(box_top)} {_n(width)} {_n(height)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fpmap" viewBox="{view_box}"'
        f' width="{_n(width)}" height="{_n(height)}" role="img"'
        f' aria-labelledby="fpmap-title fpmap-desc">',
        f'<title id="fpmap-title">{escape(title)}</title>',
        f'<desc id="fpmap-desc">{escape(_description(counts, layers))}</desc>',
        f"<style>{_STYLE}</style>",
        f'<rect class="background" x="{_n(left)}" y="{_n(box_top)}" width="{_n(width)}"'
        f' height="{_n(height)}"/>',
        f'<text class="heading" x="{_n(left + MARGIN)}" y="{_n(box_top + 24)}">'
        f"{escape(title)}</text>",
        '<g class="seats">',
        *(_seat(r, labels, r.ifuslot in (changed_drawn or ()),
                (offsets_drawn or {}).get(r.ifuslot)) for r in rows),
        "</g>",
        _legend(left, right, legend_top, counts, labels, layers),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def _layer_keys(changed, changed_since: str, offsets) -> list[tuple[str, str]]:
    """(layer, key text) for each layer drawn: one legend line each."""
    keys = []
    if changed is not None:
        since = f" since {changed_since}" if changed_since else ""
        keys.append(("changed", f"changed{since} ({len(changed)} seat{_s(len(changed))})"))
    if offsets is not None:
        if offsets:
            keys.append(("measured", f"measured seat{_s(len(offsets))} ({len(offsets)});"
                                     " arrow: offset from"
                                     f" nominal \u00d7 {OFFSET_MAGNIFICATION}, sample"
                                     f" {OFFSET_SAMPLE} arcsec"))
        else:
            keys.append(("unmeasured", "no measured positions at this instant:"
                                       " every seat is at its nominal position"))
    return keys


def _s(count: int) -> str:
    return "" if count == 1 else "s"


# --------------------------------------------------------------------------
# Geometry

def _half_size(state: str) -> tuple[float, float]:
    if state == "lrs2":
        return LRS2_HALF
    if state == "special":
        return (SPECIAL_RADIUS, SPECIAL_RADIUS)
    if state == "reference":
        return (CROSS_HALF, CROSS_HALF)
    return (VIRUS_HALF, VIRUS_HALF)


def _plane_box(rows: list[Row], offsets) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in svg coordinates: every row and the full grid, plus a
    margin; a changed seat's ring and an offset arrow's tip are inside it too."""
    left, top, right, bottom = _GRID_BOX
    for r in rows:
        state = seat_state(r)
        hx, hy = _half_size(state)
        hx, hy = hx + RING_GAP, hy + RING_GAP
        below = LRS2_LABEL_DEPTH if state == "lrs2" else 0.0
        left, right = min(left, r.x - hx), max(right, r.x + hx)
        top, bottom = min(top, -r.y - hy), max(bottom, -r.y + hy + below)
        if r.ifuslot in offsets:
            _, (x1, y1) = _arrow_ends(r, offsets[r.ifuslot])
            left, right = min(left, x1), max(right, x1)
            top, bottom = min(top, y1), max(bottom, y1)
    return (left - MARGIN, top - MARGIN, right + MARGIN, bottom + MARGIN)


def _n(value: float) -> str:
    """Compact number: 2 decimals at most (well below any measured offset), no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# --------------------------------------------------------------------------
# Seats

def _seat(row: Row, labels: str, changed: bool, offset: tuple[float, float] | None) -> str:
    state = seat_state(row)
    cx, cy = row.x, -row.y
    classes = f"seat state-{state}" + (" changed" if changed else "") + \
        (" measured" if offset is not None else "")
    head = (f'<g id="{seat_anchor(row.ifuslot)}" class="{classes}"'
            f' data-ifuslot="{row.ifuslot:03d}"'
            f' data-ifuid="{row.ifuid:03d}" data-specid="{row.specid:03d}"'
            f' data-state="{state}"><title>{escape(_seat_title(row, state, offset))}</title>')
    shape, texts = _seat_shape(row, state, cx, cy, labels)
    # The arrow over the labels: it is what measured positions are asked for (drawn
    # under them, the digits hid most of it); a thin white casing keeps the two apart.
    arrow = "" if offset is None else _measured_mark(row, state, offset)
    ring = _ring(state, cx, cy) if changed else ""
    return head + shape + texts + arrow + ring + "</g>"


def _seat_shape(row: Row, state: str, cx: float, cy: float, labels: str) -> tuple[str, str]:
    """(the seat's outline, its labels)."""
    slot = f"{row.ifuslot:03d}"
    if state == "reference":
        return _cross(cx, cy), ""
    if state == "special":
        # Real special fibres sit a few arcsec apart: text would overlap, so the seat
        # is named in the title only.
        return f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(SPECIAL_RADIUS)}"/>', ""
    if state == "lrs2":
        hx, hy = LRS2_HALF
        name = LRS2_NAMES.get(row.ifuslot, "LRS2")
        return (_rect(cx, cy, hx, hy),
                _text("slot", cx, cy + hy + 16, slot) + _text("ifu", cx, cy + hy + 32, name))
    square = _rect(cx, cy, VIRUS_HALF, VIRUS_HALF)
    lines = [("slot", slot)]
    if labels in ("all", "ifu") and row.ifuid:
        lines.append(("ifu", f"{row.ifuid:03d}"))
    if labels in ("all", "spectrograph") and row.specid:
        lines.append(("spec", f"{row.specid:03d}"))
    # Baselines (from the centre) that keep 1, 2 or 3 lines centred in the 51" square.
    baselines = {1: (6,), 2: (-4, 16), 3: (-9, 7, 22)}[len(lines)]
    return square, "".join(_text(css, cx, cy + dy, label)
                           for (css, label), dy in zip(lines, baselines))


def _ring(state: str, cx: float, cy: float) -> str:
    """The mark of a changed seat: a rounded frame around its outline."""
    hx, hy = _half_size(state)
    hx, hy = hx + RING_GAP, hy + RING_GAP
    return (f'<rect class="ring" x="{_n(cx - hx)}" y="{_n(cy - hy)}" width="{_n(2 * hx)}"'
            f' height="{_n(2 * hy)}" rx="{_n(RING_GAP + 2)}"/>')


def _arrow_ends(row: Row, offset: tuple[float, float]):
    """Tail (the nominal centre) and tip of a seat's offset arrow, in svg coordinates."""
    dx, dy = offset
    x0, y0 = row.x - dx, -(row.y - dy)
    return (x0, y0), (x0 + dx * OFFSET_MAGNIFICATION, y0 - dy * OFFSET_MAGNIFICATION)


def _measured_mark(row: Row, state: str, offset: tuple[float, float]) -> str:
    """A measured seat: a dot at its nominal centre, the arrow to where it was measured
    (magnified), and a filled corner so that the seat reads as measured at a glance."""
    (x0, y0), tip = _arrow_ends(row, offset)
    hx, hy = _half_size(state)
    corner_x, corner_y = row.x - hx, -row.y - hy
    corner = (f'<path class="measured-corner" d="M{_n(corner_x)} {_n(corner_y)}'
              f'h12l-12 12z"/>') if state in ("active", "bundle", "empty") else ""
    return corner + _arrow((x0, y0), tip)


def _arrow(tail: tuple[float, float], tip: tuple[float, float]) -> str:
    x0, y0 = tail
    x1, y1 = tip
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    dot = f'<circle class="offset-tail" cx="{_n(x0)}" cy="{_n(y0)}" r="2"/>'
    if length < 1:   # nothing to point: the dot alone says "measured, at nominal"
        return dot
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    head = min(7.0, length)
    bx, by = x1 - ux * head, y1 - uy * head
    wx, wy = -uy * head * 0.5, ux * head * 0.5
    line = f'd="M{_n(x0)} {_n(y0)}L{_n(bx)} {_n(by)}"'
    return (dot + f'<path class="offset-casing" {line}/><path class="offset" {line}/>'
            f'<path class="offset-head" d="M{_n(x1)} {_n(y1)}L{_n(bx + wx)} {_n(by + wy)}'
            f'L{_n(bx - wx)} {_n(by - wy)}z"/>')


def _cross(cx: float, cy: float) -> str:
    return (f'<path d="M{_n(cx - CROSS_HALF)} {_n(cy)}H{_n(cx + CROSS_HALF)}'
            f'M{_n(cx)} {_n(cy - CROSS_HALF)}V{_n(cy + CROSS_HALF)}"/>')


def _rect(cx: float, cy: float, hx: float, hy: float) -> str:
    return (f'<rect x="{_n(cx - hx)}" y="{_n(cy - hy)}" width="{_n(2 * hx)}"'
            f' height="{_n(2 * hy)}"/>')


def _text(css_class: str, x: float, y: float, text: str) -> str:
    return f'<text class="{css_class}" x="{_n(x)}" y="{_n(y)}">{escape(text)}</text>'


def _seat_title(row: Row, state: str, offset: tuple[float, float] | None = None) -> str:
    title = _seat_identity(row, state)
    if offset is not None:
        dx, dy = offset
        title += (f"; measured {_n(dx)}, {_n(dy)} arcsec (X, Y) from nominal,"
                  f" at X {_n(row.x)}, Y {_n(row.y)}")
    return title


def _seat_identity(row: Row, state: str) -> str:
    seat = f"seat {row.ifuslot:03d}"
    ifu = f"IFU {row.ifuid:03d}"
    spectrograph = f"spectrograph {row.specid:03d} (slot {row.specslot:03d})"
    if state == "reference":
        return f"{seat}, field centre (reference row)"
    if state == "empty":
        return f"{seat}, empty"
    if state == "active":
        return f"{seat}, {ifu}, {spectrograph}"
    if state == "bundle":
        if row.specid:
            return f"{seat}, {ifu}, {spectrograph}, inactive"
        slot = f" (slot {row.specslot:03d})" if row.specslot else ""
        return f"{seat}, {ifu}, no spectrograph{slot}"
    if state == "lrs2":
        return f"{seat}, {LRS2_NAMES.get(row.ifuslot, 'LRS2')}, {ifu}, {spectrograph}"
    return (f"{seat}, special fibre row, {ifu}, {spectrograph},"
            f" at X {_n(row.x)}, Y {_n(row.y)} arcsec")


def _description(counts: dict[str, int], layers: list[tuple[str, str]]) -> str:
    listed = "; ".join(f"{STATE_LABELS[s]}: {counts[s]}" for s in SEAT_STATES if counts[s])
    return ("Focal plane seats drawn to scale, X_FP to the right and Y_FP up, in arcsec. "
            + (listed or "no seats") + "." + "".join(f" {key}." for _, key in layers))


# --------------------------------------------------------------------------
# Legend: one sample of each state, with its count, a key to the labels and a scale bar

def _legend(left: float, right: float, top: float, counts: dict[str, int], labels: str,
            layers: list[tuple[str, str]]) -> str:
    column_width = (right - left) / 2
    parts = [f'<g class="legend" transform="translate({_n(left + MARGIN)} {_n(top)})">']
    for i, state in enumerate(SEAT_STATES):
        column, line = divmod(i, 3)
        x, y = column * column_width, line * LEGEND_ROW
        parts.append(
            f'<g class="legend-entry state-{state}" data-state="{state}">'
            + _legend_swatch(state, x + 12, y + 12)
            + f'<text class="legend-text" x="{_n(x + 34)}" y="{_n(y + 17)}">'
            + escape(f"{STATE_LABELS[state]} ({counts[state]})") + "</text></g>")
    y = 3 * LEGEND_ROW
    for layer, key in layers:
        parts.append(f'<g class="legend-entry layer-{layer}" data-layer="{layer}">'
                     + _layer_swatch(layer, 12, y + 12)
                     + f'<text class="legend-text" x="{_n(LAYER_TEXT_X)}" y="{_n(y + 17)}">'
                     + escape(key) + "</text></g>")
        y += LEGEND_ROW
    parts.append(f'<text class="legend-text label-key" x="0" y="{_n(y + 17)}">'
                 f"{escape(_label_key(labels))}</text>")
    y += LEGEND_ROW
    parts.append(
        f'<g class="scale"><path d="M0 {_n(y + 12)}H100M0 {_n(y + 6)}V{_n(y + 18)}'
        f'M100 {_n(y + 6)}V{_n(y + 18)}"/><text class="legend-text" x="112" y="{_n(y + 17)}">'
        "100 arcsec; X_FP to the right, Y_FP up</text></g>")
    parts.append("</g>")
    return "".join(parts)


def _label_key(labels: str) -> str:
    lines = ["bold: seat (IFUSLOT)"]
    if labels in ("all", "ifu"):
        lines.append("IFU (IFUID)")
    if labels in ("all", "spectrograph"):
        lines.append("italic: spectrograph (SPECID)")
    hover = "" if labels == "all" else " Hover a seat for the rest."
    return "Labels, top to bottom: " + "; ".join(lines) + "." + hover


def _layer_swatch(layer: str, cx: float, cy: float) -> str:
    if layer == "changed":
        return (f'<rect class="ring" x="{_n(cx - 11)}" y="{_n(cy - 11)}" width="22" height="22"'
                f' rx="5"/>')
    if layer == "measured":
        length = OFFSET_SAMPLE * OFFSET_MAGNIFICATION
        return (f'<path class="measured-corner" d="M{_n(cx - 11)} {_n(cy - 11)}h12l-12 12z"/>'
                + _arrow((cx - 6, cy + 4), (cx - 6 + length, cy + 4)))
    return ""


def _legend_swatch(state: str, cx: float, cy: float) -> str:
    if state == "reference":
        return _cross(cx, cy)
    if state == "special":
        return f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="4"/>'
    if state == "lrs2":
        return _rect(cx, cy, *LRS2_HALF)
    return _rect(cx, cy, 10, 10)


def _state_rules() -> str:
    rules = []
    for state, (fill, stroke, ink) in PALETTE.items():
        rules.append(f".fpmap .state-{state} rect,.fpmap .state-{state} circle"
                     f"{{fill:{fill};stroke:{stroke}}}")
        rules.append(f".fpmap .state-{state} text{{fill:{ink}}}")
    return "".join(rules)


# Every selector starts with .fpmap: a <style> inside inline SVG applies to the whole
# HTML page, so it must not touch anything but the map.
_STYLE = (
    f".fpmap text{{font-family:{_FONT};fill:{INK}}}"
    f".fpmap .background{{fill:{BACKGROUND}}}"
    ".fpmap .heading{font-size:18px;font-weight:700}"
    ".fpmap .seat rect,.fpmap .legend rect{stroke-width:2}"
    ".fpmap .seat:hover rect{stroke-width:4}"
    + _state_rules()
    + ".fpmap .state-bundle rect{stroke-dasharray:7 4}"
    ".fpmap .state-empty rect{stroke-dasharray:2 3;stroke-width:1.5}"
    ".fpmap .state-lrs2 rect{stroke-width:1.5}"
    ".fpmap .state-reference path,.fpmap .scale path{fill:none;stroke-width:2}"
    f".fpmap .state-reference path{{stroke:{PALETTE['reference'][1]}}}"
    f".fpmap .scale path{{stroke:{INK}}}"
    ".fpmap .slot{font-size:16px;font-weight:700;text-anchor:middle}"
    ".fpmap .ifu{font-size:14px;text-anchor:middle}"
    ".fpmap .legend-text{font-size:15px}"
    ".fpmap .spec{font-size:14px;font-style:italic;text-anchor:middle}"
    # After the state rules, so that a ring keeps its own colour inside a seat's group.
    + f".fpmap .seat rect.ring,.fpmap .legend rect.ring{{fill:none;stroke:{CHANGED};"
    "stroke-width:5;stroke-dasharray:none}"
    ".fpmap .seat:target rect.ring{stroke-width:9}"
    # A link to a seat scrolls it into view with its ring and a neighbour row above it.
    ".fpmap .seat{scroll-margin:6rem}"
    f".fpmap .offset{{fill:none;stroke:{OFFSET};stroke-width:2}}"
    f".fpmap .offset-casing{{fill:none;stroke:{BACKGROUND};stroke-width:4}}"
    f".fpmap .offset-head,.fpmap circle.offset-tail{{fill:{OFFSET};stroke:{BACKGROUND};"
    "stroke-width:1.5;paint-order:stroke}"
    f".fpmap .measured-corner{{fill:{OFFSET};stroke:none}}"
)
