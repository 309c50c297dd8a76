"""The focal plane drawn as SVG: every seat of a configuration at its position, by state.

Pure: rows in, one ``<svg>`` element out (no XML declaration), so the same text is
inlined in the page (``GET /``) and served alone (``GET /map/<datestr>.svg``).

Drawn to scale in arcsec, north up as the file's axes: X_FP to the right, Y_FP up, so
a row at (x, y) is drawn at svg (x, -y). A VIRUS IFU is a 51" square, LRS2 a 12" x 6"
rectangle, a special fibre row a small circle, the 000 reference row a cross. The
caller passes the positions to draw (nominal, or measured ones applied with
``fplane.with_positions``); nothing here moves a seat.

Each seat is one ``<g class="seat state-<state>" data-ifuslot=.. data-ifuid=..
data-specid=.. data-state=..>`` whose ``<title>`` names seat, IFU and spectrograph
(shown on hover); the visible labels are the seat (bold) and the IFU id, because the
spectrograph id would not fit a legible third line. States differ by outline style and
shape as well as by colour, and every text colour keeps a contrast of 4.5:1 or more
on what it is drawn over (PALETTE is checked by the tests).
"""
from __future__ import annotations

from html import escape
from typing import Iterable

from wsgi.fplane import GRID_SLOTS, LRS2_SLOTS, REFERENCE_SLOT, Row, is_grid_slot, nominal_position

__all__ = ["SEAT_STATES", "STATE_LABELS", "PALETTE", "seat_state", "render_map"]

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

# Measured positions differ from nominal by less than this (about 2.4" at most in real files).
POSITION_SLACK = 2.5
# The grid with every seat at nominal position, widened by the slack: the least a map
# shows, so that maps of different dates, nominal or measured, line up.
_GRID_REACH = VIRUS_HALF + POSITION_SLACK
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


def render_map(rows: Iterable[Row], *, title: str) -> str:
    """The whole drawing: title band, the plane, the legend below it."""
    rows = sorted(rows, key=lambda r: (_DRAW_RANK[seat_state(r)], r.ifuslot))
    left, top, right, bottom = _plane_box(rows)
    width = right - left
    legend_top = bottom + MARGIN
    legend_height = 3 * LEGEND_ROW + 2 * LEGEND_ROW + MARGIN
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
        f'<desc id="fpmap-desc">{escape(_description(counts))}</desc>',
        f"<style>{_STYLE}</style>",
        f'<rect class="background" x="{_n(left)}" y="{_n(box_top)}" width="{_n(width)}"'
        f' height="{_n(height)}"/>',
        f'<text class="heading" x="{_n(left + MARGIN)}" y="{_n(box_top + 24)}">'
        f"{escape(title)}</text>",
        '<g class="seats">',
        *(_seat(r) for r in rows),
        "</g>",
        _legend(left, right, legend_top, counts),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


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


def _plane_box(rows: list[Row]) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in svg coordinates: every row and the full grid, plus a margin."""
    left, top, right, bottom = _GRID_BOX
    for r in rows:
        state = seat_state(r)
        hx, hy = _half_size(state)
        below = LRS2_LABEL_DEPTH if state == "lrs2" else 0.0
        left, right = min(left, r.x - hx), max(right, r.x + hx)
        top, bottom = min(top, -r.y - hy), max(bottom, -r.y + hy + below)
    return (left - MARGIN, top - MARGIN, right + MARGIN, bottom + MARGIN)


def _n(value: float) -> str:
    """Compact number: 2 decimals at most (well below any measured offset), no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# --------------------------------------------------------------------------
# Seats

def _seat(row: Row) -> str:
    state = seat_state(row)
    cx, cy = row.x, -row.y
    head = (f'<g class="seat state-{state}" data-ifuslot="{row.ifuslot:03d}"'
            f' data-ifuid="{row.ifuid:03d}" data-specid="{row.specid:03d}"'
            f' data-state="{state}"><title>{escape(_seat_title(row, state))}</title>')
    return head + _seat_shape(row, state, cx, cy) + "</g>"


def _seat_shape(row: Row, state: str, cx: float, cy: float) -> str:
    slot = f"{row.ifuslot:03d}"
    if state == "reference":
        return _cross(cx, cy)
    if state == "special":
        # Real special fibres sit a few arcsec apart: text would overlap, so the seat
        # is named in the title only.
        return f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(SPECIAL_RADIUS)}"/>'
    if state == "lrs2":
        hx, hy = LRS2_HALF
        name = LRS2_NAMES.get(row.ifuslot, "LRS2")
        return (_rect(cx, cy, hx, hy)
                + _text("slot", cx, cy + hy + 16, slot)
                + _text("ifu", cx, cy + hy + 32, name))
    square = _rect(cx, cy, VIRUS_HALF, VIRUS_HALF)
    if state == "empty":
        return square + _text("slot", cx, cy + 6, slot)
    return (square + _text("slot", cx, cy - 4, slot)
            + _text("ifu", cx, cy + 16, f"{row.ifuid:03d}"))


def _cross(cx: float, cy: float) -> str:
    return (f'<path d="M{_n(cx - CROSS_HALF)} {_n(cy)}H{_n(cx + CROSS_HALF)}'
            f'M{_n(cx)} {_n(cy - CROSS_HALF)}V{_n(cy + CROSS_HALF)}"/>')


def _rect(cx: float, cy: float, hx: float, hy: float) -> str:
    return (f'<rect x="{_n(cx - hx)}" y="{_n(cy - hy)}" width="{_n(2 * hx)}"'
            f' height="{_n(2 * hy)}"/>')


def _text(css_class: str, x: float, y: float, text: str) -> str:
    return f'<text class="{css_class}" x="{_n(x)}" y="{_n(y)}">{escape(text)}</text>'


def _seat_title(row: Row, state: str) -> str:
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


def _description(counts: dict[str, int]) -> str:
    listed = "; ".join(f"{STATE_LABELS[s]}: {counts[s]}" for s in SEAT_STATES if counts[s])
    return ("Focal plane seats drawn to scale, X_FP to the right and Y_FP up, in arcsec. "
            + (listed or "no seats") + ".")


# --------------------------------------------------------------------------
# Legend: one sample of each state, with its count, a key to the labels and a scale bar

def _legend(left: float, right: float, top: float, counts: dict[str, int]) -> str:
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
    parts.append(
        f'<text class="legend-text" x="0" y="{_n(y + 17)}">Bold: seat (IFUSLOT); below it:'
        " IFU (IFUID). Hover a seat for its spectrograph (SPECID).</text>")
    y += LEGEND_ROW
    parts.append(
        f'<g class="scale"><path d="M0 {_n(y + 12)}H100M0 {_n(y + 6)}V{_n(y + 18)}'
        f'M100 {_n(y + 6)}V{_n(y + 18)}"/><text class="legend-text" x="112" y="{_n(y + 17)}">'
        "100 arcsec; X_FP to the right, Y_FP up</text></g>")
    parts.append("</g>")
    return "".join(parts)


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
)
