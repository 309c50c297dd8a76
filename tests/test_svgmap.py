"""The focal plane drawing (wsgi/svgmap.py): seats where the file puts them, by state.

The SVG is parsed with xml.etree (it is served alone as image/svg+xml, so it must be
well-formed XML) and checked the way a person reads the map: each seat at its X_FP /
-Y_FP, to scale, labelled with seat and IFU, the spectrograph on hover, a legend.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from tests.fplane_samples import (
    SPECIAL_ROWS,
    default_active,
    default_installed,
    grid_position,
    make_rows,
    measured_positions,
)
from wsgi.fplane import GRID_SLOTS, REFERENCE_ROW, VIRUS_SLOTS, Row, with_positions
from wsgi.svgmap import (BACKGROUND, CHANGED, OFFSET, OFFSET_MAGNIFICATION, PALETTE, SEAT_STATES,
                         render_map, seat_state)

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def seats(root: ET.Element) -> dict[int, ET.Element]:
    groups = [g for g in root.iter(SVG + "g") if "seat" in g.get("class", "").split()]
    by_slot = {int(g.get("data-ifuslot")): g for g in groups}
    assert len(by_slot) == len(groups), "a seat is drawn twice"
    return by_slot


def texts(group: ET.Element) -> list[str]:
    return [t.text for t in group.iter(SVG + "text")]


def title(group: ET.Element) -> str:
    return group.find(SVG + "title").text


def rect_centre(group: ET.Element) -> tuple[float, float, float, float]:
    rect = group.find(SVG + "rect")
    x, y, w, h = (float(rect.get(a)) for a in ("x", "y", "width", "height"))
    return x + w / 2, y + h / 2, w, h


def view_box(root: ET.Element) -> tuple[float, float, float, float]:
    left, top, width, height = map(float, root.get("viewBox").split())
    return left, top, left + width, top + height


# --------------------------------------------------------------------------
# States

def test_every_row_of_a_configuration_has_its_state():
    active, installed = default_active(), default_installed()
    for row in make_rows():
        state = seat_state(row)
        if row.ifuslot == 0:
            assert state == "reference"
        elif row.ifuslot in (56, 66):
            assert state == "lrs2"
        elif row.ifuslot not in GRID_SLOTS:
            assert state == "special"
        elif row.ifuslot in active:
            assert state == "active"
        elif row.ifuslot in installed:
            assert state == "bundle"
        else:
            assert state == "empty"
        assert state in SEAT_STATES


def test_bundle_means_an_installed_ifu_without_spectrograph():
    assert seat_state(Row(13, -450.0, 150.0, 0, 241, 43, active=False)) == "bundle"
    assert seat_state(Row(13, -450.0, 150.0, 0, 0, 0, active=False)) == "empty"
    assert seat_state(Row(13, -450.0, 150.0, 315, 218, 73)) == "active"
    assert seat_state(Row(620, 5.0, 5.0, 920, 920, 920)) == "special"  # a site-added bundle


# --------------------------------------------------------------------------
# The document

def test_one_svg_element_without_xml_declaration_and_accessible_name():
    svg = render_map(make_rows(), title="Focal plane at 2018-07-07T05:00:00Z")
    assert svg.startswith("<svg ")
    assert "<?xml" not in svg
    root = parse(svg)
    assert root.tag == SVG + "svg"
    assert root.get("role") == "img"
    assert root[0].tag == SVG + "title"
    assert root[0].text == "Focal plane at 2018-07-07T05:00:00Z"
    assert root[0].get("id") in root.get("aria-labelledby").split()
    assert root.get("width") and root.get("height")


def test_one_seat_group_per_row_with_the_data_attributes():
    rows = make_rows()
    drawn = seats(parse(render_map(rows, title="t")))
    assert sorted(drawn) == sorted(r.ifuslot for r in rows)
    for row in rows:
        g = drawn[row.ifuslot]
        state = seat_state(row)
        assert g.get("class") == f"seat state-{state}"
        assert g.get("id") == f"seat-{row.ifuslot:03d}"
        assert g.get("data-state") == state
        assert g.get("data-ifuslot") == f"{row.ifuslot:03d}"
        assert g.get("data-ifuid") == f"{row.ifuid:03d}"
        assert g.get("data-specid") == f"{row.specid:03d}"
        assert title(g).startswith(f"seat {row.ifuslot:03d}")


@pytest.mark.parametrize("measured", [False, True], ids=["nominal", "measured"])
def test_ifus_are_51_arcsec_squares_centred_on_x_and_minus_y(measured):
    rows = make_rows()
    if measured:
        rows = with_positions(rows, measured_positions(VIRUS_SLOTS))
    by_slot = {r.ifuslot: r for r in rows}
    drawn = seats(parse(render_map(rows, title="t")))
    moved = 0
    for slot in VIRUS_SLOTS:
        row = by_slot[slot]
        cx, cy, w, h = rect_centre(drawn[slot])
        assert (w, h) == (51.0, 51.0)
        assert cx == pytest.approx(row.x, abs=0.05)
        assert cy == pytest.approx(-row.y, abs=0.05)
        moved += (row.x, row.y) != grid_position(slot)
    assert moved > 40 if measured else moved == 0


def test_a_measured_offset_is_drawn_as_given():
    row = Row(21, -350.0 + 2.37, 350.0 - 1.12, 315, 218, 73)
    cx, cy, _, _ = rect_centre(seats(parse(render_map([row], title="t")))[21])
    assert (cx, cy) == (pytest.approx(-347.63, abs=0.005), pytest.approx(-348.88, abs=0.005))


def test_lrs2_special_fibres_and_the_field_centre():
    rows = make_rows()
    drawn = seats(parse(render_map(rows, title="t")))
    cx, cy, w, h = rect_centre(drawn[56])
    assert (cx, cy, w, h) == (-50.0, 150.0, 12.0, 6.0)
    assert texts(drawn[56]) == ["056", "LRS2-B"]
    assert texts(drawn[66]) == ["066", "LRS2-R"]
    for special in SPECIAL_ROWS:
        g = drawn[special.ifuslot]
        circle = g.find(SVG + "circle")
        assert float(circle.get("cx")) == pytest.approx(special.x, abs=0.005)
        assert float(circle.get("cy")) == pytest.approx(-special.y, abs=0.005)
        assert float(circle.get("r")) <= 3
        # Real special fibres are a few arcsec apart: their seat is named on hover only.
        assert texts(g) == []
        assert f"seat {special.ifuslot:03d}" in title(g)
    cross = drawn[0].find(SVG + "path").get("d")
    assert cross == "M-10 0H10M0 -10V10"


# --------------------------------------------------------------------------
# Labels

def test_seats_show_seat_ifu_and_spectrograph_and_the_title_says_which_is_which():
    rows = [REFERENCE_ROW, Row(21, -350.0, 350.0, 315, 218, 73),
            Row(13, -450.0, 150.0, 0, 241, 43, active=False),
            Row(14, -450.0, 50.0, 0, 0, 0, active=False)]
    drawn = seats(parse(render_map(rows, title="t")))   # the default: all three
    assert texts(drawn[21]) == ["021", "073", "315"]
    assert [t.get("class") for t in drawn[21].iter(SVG + "text")] == ["slot", "ifu", "spec"]
    assert title(drawn[21]) == "seat 021, IFU 073, spectrograph 315 (slot 218)"
    assert texts(drawn[13]) == ["013", "043"]          # no spectrograph: no third line
    assert title(drawn[13]) == "seat 013, IFU 043, no spectrograph (slot 241)"
    assert texts(drawn[14]) == ["014"]
    assert title(drawn[14]) == "seat 014, empty"


@pytest.mark.parametrize("labels, lines", [("all", ["slot", "ifu", "spec"]),
                                           ("ifu", ["slot", "ifu"]),
                                           ("spectrograph", ["slot", "spec"])])
def test_the_labels_option_chooses_the_lines_and_the_key_names_them(labels, lines):
    rows = make_rows()
    root = parse(render_map(rows, title="t", labels=labels))
    drawn = seats(root)
    checked = 0
    for row in rows:
        if seat_state(row) != "active":
            continue
        g = drawn[row.ifuslot]
        values = {"slot": f"{row.ifuslot:03d}", "ifu": f"{row.ifuid:03d}",
                  "spec": f"{row.specid:03d}"}
        assert texts(g) == [values[line] for line in lines]
        # Every line inside the 51" square, none on top of another.
        ys = [float(t.get("y")) + row.y for t in g.iter(SVG + "text")]
        assert ys == sorted(ys) and min(b - a for a, b in zip(ys, ys[1:])) >= 14
        assert -25.5 + 14 <= ys[0] and ys[-1] <= 25.5 - 3
        assert f"spectrograph {row.specid:03d}" in title(g)   # on hover whatever is shown
        checked += 1
    assert checked > 50
    key = next(t for t in root.iter(SVG + "text") if t.get("class") == "legend-text label-key")
    assert ("IFU (IFUID)" in key.text) == ("ifu" in lines)
    assert ("spectrograph (SPECID)" in key.text) == ("spec" in lines)
    assert "seat (IFUSLOT)" in key.text


def test_an_unknown_labels_option_is_refused():
    with pytest.raises(ValueError, match="labels"):
        render_map(make_rows(), title="t", labels="specid")


# --------------------------------------------------------------------------
# Layers: the changed seats, the measured offsets

def rings(root: ET.Element) -> dict[int, ET.Element]:
    return {slot: ring for slot, g in seats(root).items()
            for ring in g.iter(SVG + "rect") if ring.get("class") == "ring"}


def legend_layers(root: ET.Element) -> dict[str, str]:
    return {g.get("data-layer"): " ".join("".join(g.itertext()).split())
            for g in root.iter(SVG + "g") if g.get("data-layer")}


def test_changed_seats_are_ringed_named_by_id_and_counted_in_the_key():
    root = parse(render_map(make_rows(), title="t", changed={21, 24, 56, 641},
                            changed_since="2018-02-12T06:00:00Z"))
    ringed = rings(root)
    assert sorted(ringed) == [21, 24, 56]      # 641 is not drawn
    x, y, w, h = (float(ringed[21].get(a)) for a in ("x", "y", "width", "height"))
    cx, cy, sw, sh = rect_centre(seats(root)[21])
    assert (x + w / 2, y + h / 2) == (cx, cy) and w > sw + 8 and h > sh + 8   # around the seat
    assert "changed" in seats(root)[21].get("class").split()
    assert "changed" not in seats(root)[22].get("class").split()
    assert seats(root)[21].get("id") == "seat-021"
    assert legend_layers(root) == {"changed": "changed since 2018-02-12T06:00:00Z (3 seats)"}


def test_no_comparison_no_ring_and_no_key_but_an_empty_one_says_so():
    plain = parse(render_map(make_rows(), title="t"))
    assert rings(plain) == {} and legend_layers(plain) == {}
    nothing = parse(render_map(make_rows(), title="t", changed=set(), changed_since="x"))
    assert rings(nothing) == {}
    assert legend_layers(nothing) == {"changed": "changed since x (0 seats)"}


def arrow(g: ET.Element) -> tuple[float, float, float, float] | None:
    """(tail x, tail y, tip x, tip y) of a seat's offset arrow."""
    line = next((p for p in g.iter(SVG + "path") if p.get("class") == "offset"), None)
    head = next((p for p in g.iter(SVG + "path") if p.get("class") == "offset-head"), None)
    if line is None:
        return None
    x0, y0 = map(float, re.match(r"M(\S+) (\S+)L", line.get("d")).groups())
    x1, y1 = map(float, re.match(r"M(\S+) (\S+)L", head.get("d")).groups())
    return x0, y0, x1, y1


def test_measured_offsets_are_arrows_from_nominal_magnified_by_the_stated_factor():
    measured = measured_positions(VIRUS_SLOTS)
    nominal = make_rows()
    offsets = {r.ifuslot: (measured[r.ifuslot][0] - r.x, measured[r.ifuslot][1] - r.y)
               for r in nominal if r.ifuslot in measured}
    root = parse(render_map(with_positions(nominal, measured), title="t", offsets=offsets))
    drawn = seats(root)
    checked = 0
    for row in nominal:
        g = drawn[row.ifuslot]
        if row.ifuslot not in offsets:
            assert "measured" not in g.get("class").split() and arrow(g) is None
            continue
        assert "measured" in g.get("class").split()
        corners = [p for p in g.iter(SVG + "path") if p.get("class") == "measured-corner"]
        assert len(corners) == 1
        dx, dy = offsets[row.ifuslot]
        drawn_arrow = arrow(g)
        if math.hypot(dx, dy) * OFFSET_MAGNIFICATION < 1:
            continue   # a dot at nominal, nothing to point
        x0, y0, x1, y1 = drawn_arrow
        assert (x0, y0) == (pytest.approx(row.x, abs=0.01), pytest.approx(-row.y, abs=0.01))
        assert x1 - x0 == pytest.approx(dx * OFFSET_MAGNIFICATION, abs=0.02)
        assert y1 - y0 == pytest.approx(-dy * OFFSET_MAGNIFICATION, abs=0.02)   # Y_FP up
        assert f"measured {dx:.2f}".rstrip("0").rstrip(".") in title(g)
        checked += 1
    assert checked > 40
    key = legend_layers(root)["measured"]
    assert f"\u00d7 {OFFSET_MAGNIFICATION}" in key and f"measured seats ({len(offsets)})" in key
    sample = next(g for g in root.iter(SVG + "g") if g.get("data-layer") == "measured")
    x0, _, x1, _ = arrow(sample)
    assert x1 - x0 == pytest.approx(0.5 * OFFSET_MAGNIFICATION) and "sample 0.5 arcsec" in key


def test_measured_positions_asked_but_none_known_says_so_in_the_key():
    root = parse(render_map(make_rows(), title="t", offsets={}))
    assert "no measured positions" in legend_layers(root)["unmeasured"]
    assert not [g for g in seats(root).values() if "measured" in g.get("class").split()]


def test_label_fonts_are_readable_at_the_plane_scale():
    svg = render_map(make_rows(), title="t")
    sizes = [int(s) for s in re.findall(r"font-size:(\d+)px", svg)]
    assert sizes and min(sizes) >= 14


# --------------------------------------------------------------------------
# Legend and extent

def test_legend_has_an_entry_with_the_count_for_each_state():
    rows = make_rows()
    root = parse(render_map(rows, title="t"))
    entries = {g.get("data-state"): g for g in root.iter(SVG + "g")
               if "legend-entry" in g.get("class", "").split()}
    assert list(entries) == list(SEAT_STATES)
    active = sum(seat_state(r) == "active" for r in rows)
    assert f"({active})" in "".join(entries["active"].itertext())
    assert "(1)" in "".join(entries["reference"].itertext())


def test_view_box_keeps_the_full_grid_so_maps_line_up():
    few = render_map([REFERENCE_ROW, Row(21, -350.0, 350.0, 315, 218, 73)], title="a")
    full = render_map(make_rows(), title="b")
    # Measured positions (up to 2.4" off nominal) do not shift the drawing either.
    edge = {s: (x - 2.4, y + 2.4) for s, (x, y) in ((s, grid_position(s)) for s in GRID_SLOTS)}
    measured = render_map(with_positions(make_rows(), edge), title="c")
    assert parse(few).get("viewBox") == parse(full).get("viewBox") == parse(measured).get("viewBox")
    left, top, right, bottom = view_box(parse(few))
    assert left < -475.5 and right > 475.5 and top < -475.5 and bottom > 475.5


def test_view_box_includes_every_row_and_the_legend_below():
    far = Row(640, 800.0, -700.0, 930, 930, 930)
    root = parse(render_map([*make_rows(), far], title="t"))
    left, top, right, bottom = view_box(root)
    assert right > 800 + 2.5 and bottom > 700 + 2.5
    legend = next(g for g in root.iter(SVG + "g") if g.get("class") == "legend")
    legend_top = float(re.search(r"translate\(\S+ (\S+)\)", legend.get("transform"))[1])
    assert 700 < legend_top < bottom


def test_empty_configuration_still_draws_the_plane():
    root = parse(render_map([], title="nothing"))
    assert seats(root) == {}
    left, _, right, _ = view_box(root)
    assert left < -475.5 and right > 475.5


# --------------------------------------------------------------------------
# Safety, size, contrast

def test_title_text_is_escaped():
    hostile = 'Plane <script>alert("x")</script> & \'quotes\''
    svg = render_map(make_rows(), title=hostile)
    assert "<script>" not in svg
    root = parse(svg)
    assert root[0].text == hostile


def test_no_external_references_and_compact_numbers():
    svg = render_map(with_positions(make_rows(), measured_positions(VIRUS_SLOTS)), title="t")
    assert re.findall(r"https?://[^\"']*", svg) == ["http://www.w3.org/2000/svg"]
    assert "href" not in svg and "@import" not in svg and "url(" not in svg
    assert not re.search(r"\d\.\d{3,}", svg)
    assert len(svg) < 60_000


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("state", SEAT_STATES)
def test_text_contrast_is_at_least_4_5_and_outlines_3(state):
    fill, stroke, ink = PALETTE[state]
    # Seat labels sit on the square's fill; LRS2 labels, the legend and the title on white.
    on = fill if state in ("active", "bundle", "empty") else BACKGROUND
    assert contrast(ink, on) >= 4.5
    assert contrast(ink, BACKGROUND) >= 4.5
    assert contrast(stroke, BACKGROUND) >= 3


@pytest.mark.parametrize("layer", [CHANGED, OFFSET])
def test_layer_colours_stand_out_from_white_and_every_seat_fill(layer):
    for fill in [BACKGROUND, *(PALETTE[s][0] for s in ("active", "bundle", "empty", "lrs2"))]:
        assert contrast(layer, fill) >= 3, fill
