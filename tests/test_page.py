"""The page of GET / (wsgi/page.py): what a person sees and the DOM the browser test uses.

The HTML is read back with html.parser into an element tree (every end tag must close
the element it opened, so unbalanced markup fails here), the inline SVG with xml.etree.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from tests.fplane_samples import make_rows
from tests.test_svgmap import contrast
from wsgi.dates import format_micros
from wsgi.page import PALETTE, TIMELINE_LIMIT, PageView, diff_url, render_page, view_url
from wsgi.diff import Change
from wsgi.store import Version
from wsgi.svgmap import LABELS, render_map

HOUR = 3600 * 10**6
START = 1530939600 * 10**6  # 2018-07-07T05:00:00Z

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


class _Tree(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = ET.Element("document")
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = ET.SubElement(self.stack[-1], tag, {k: v or "" for k, v in attrs})
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):  # <rect .../> in the inline svg
        ET.SubElement(self.stack[-1], tag, {k: v or "" for k, v in attrs})

    def handle_endtag(self, tag):
        assert tag not in VOID, f"</{tag}>"
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        parent = self.stack[-1]
        if len(parent):
            parent[-1].tail = (parent[-1].tail or "") + data
        else:
            parent.text = (parent.text or "") + data


def parse(html: str) -> ET.Element:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    return tree.root


def text(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def by_id(root: ET.Element, element_id: str) -> ET.Element | None:
    return root.find(f".//*[@id='{element_id}']")


def versions(count: int, **changes) -> list[Version]:
    """`count` versions a day apart, valid_until filled in as Store.history() does."""
    out = []
    for i in range(count):
        valid_from = START + i * 24 * HOUR
        out.append(Version(i + 1, valid_from, valid_from + HOUR, f"station{i % 2}",
                           f"change number {i}", "status", i + 1, 70 - i,
                           None if i == count - 1 else valid_from + 24 * HOUR))
    return out


def make_view(history=None, shown=1, **fields) -> PageView:
    history = versions(4) if history is None else history
    version = history[shown] if shown is not None else None
    instant = format_micros(version.valid_from) if version else "2000-01-01T06:00:00Z"
    view = PageView(
        date_value="20180708", compare_value="", actual=False, full=True, instant=instant,
        version=version,
        svg=render_map(make_rows(), title=f"Focal plane at {instant}") if version else "",
        download_url="/fplane/20180708?actual_pos=0&full_fplane=1",
        map_url="/map/20180708.svg?actual_pos=0&full_fplane=1",
        history=history, changes=None, compare_url=None, message="")
    return replace(view, **fields)


def iso(version: Version) -> str:
    return format_micros(version.valid_from)


# --------------------------------------------------------------------------
# The document

def test_valid_html5_skeleton():
    html = render_page(make_view())
    assert html.startswith("<!DOCTYPE html>\n")
    root = parse(html)
    page = root.find("html")
    assert page.get("lang") == "en"
    head = page.find("head")
    assert head.find("meta[@charset='utf-8']") is not None
    viewport = head.find("meta[@name='viewport']").get("content")
    assert "width=device-width" in viewport
    assert "2018-07-08T05:00:00Z" in head.find("title").text
    feed = head.find("link[@rel='alternate']")
    assert (feed.get("type"), feed.get("href")) == ("application/atom+xml", "/feed")
    assert len(root.findall(".//h1")) == 1
    assert len(root.findall(".//main")) == 1


def test_no_script_no_external_urls():
    html = render_page(make_view(message="x", changes=(), compare_value="20180707",
                                 compare_url="/diff/20180707/20180708"))
    assert re.findall(r"https?://[^\"'\s<]*", html) == ["http://www.w3.org/2000/svg"]
    assert "<script" not in html
    assert "@import" not in html and "url(" not in html
    assert "@media" in html  # the one query that stacks the layout on a phone
    assert ":focus-visible" in html


@pytest.mark.parametrize("name", list(PALETTE))
def test_page_colours_have_contrast_of_4_5(name):
    foreground, background = PALETTE[name]
    assert contrast(foreground, background) >= 4.5


# --------------------------------------------------------------------------
# The form

def test_form_carries_the_state_and_keeps_the_values():
    view = make_view(date_value="2018-07-08T05:00:00Z", compare_value="20180707",
                     actual=True, full=False, labels="spectrograph")
    root = parse(render_page(view))
    form = by_id(root, "view-form")
    assert (form.tag, form.get("action"), form.get("method")) == ("form", "/", "get")
    assert form.find(".//input[@id='date']").get("name") == "date"
    assert form.find(".//input[@id='date']").get("value") == "2018-07-08T05:00:00Z"
    assert form.find(".//input[@id='compare']").get("name") == "compare"
    assert form.find(".//input[@id='compare']").get("value") == "20180707"
    for name, chosen in (("actual_pos", "1"), ("full_fplane", "0")):
        select = form.find(f".//select[@id='{name}']")
        assert select.get("name") == name
        selected = [o.get("value") for o in select.iter("option") if "selected" in o.attrib]
        assert selected == [chosen]
        assert {o.get("value") for o in select.iter("option")} == {"0", "1"}
    labels = form.find(".//select[@id='labels']")
    assert labels.get("name") == "labels"
    assert [o.get("value") for o in labels.iter("option")] == list(LABELS)
    assert [o.get("value") for o in labels.iter("option") if "selected" in o.attrib] == \
        ["spectrograph"]
    assert form.find(".//button[@type='submit']") is not None


def test_every_control_has_a_label():
    root = parse(render_page(make_view()))
    labels = {label.get("for") for label in root.iter("label")}
    controls = [*root.iter("input"), *root.iter("select")]
    assert len(controls) == 5
    assert all(control.get("id") in labels for control in controls)


def test_hostile_field_values_are_escaped():
    hostile = '"><script>alert(1)</script>'
    html = render_page(make_view(date_value=hostile, compare_value=hostile))
    assert "<script>" not in html
    root = parse(html)
    assert by_id(root, "date").get("value") == hostile
    assert by_id(root, "compare").get("value") == hostile


# --------------------------------------------------------------------------
# The version shown and the map

def test_shown_version_names_it():
    history = versions(4)
    root = parse(render_page(make_view(history, shown=1)))
    shown = by_id(root, "shown-version")
    assert shown.tag == "p" and shown.get("data-version") == "2"
    words = text(shown)
    assert iso(history[1]) in words and iso(history[2]) in words
    assert "station1" in words and "change number 1" in words and "69 active IFUs" in words


def test_map_is_the_inline_svg_in_figure_map():
    view = make_view()
    html = render_page(view)
    figure = by_id(parse(html), "map")
    assert figure.tag == "figure"
    svg = figure.find(".//svg")
    assert svg is not None and svg.get("role") == "img"
    assert view.svg.strip() in html
    inline = ET.fromstring(html[html.index("<svg"):html.index("</svg>") + len("</svg>")])
    assert len([g for g in inline.iter("{http://www.w3.org/2000/svg}g")
                if g.get("data-ifuslot")]) == len(make_rows())
    # Scaled to the width of its column, on a phone too: no sideways scrolling.
    assert "#map svg{display:block;width:100%;height:auto}" in html
    assert "min-width" not in html[html.index("#map svg"):].split("}")[0]
    assert "seat, IFU and spectrograph" in text(figure.find("figcaption"))


def test_download_and_other_links():
    view = make_view(download_url="/fplane/2018-07-08T05:00:00Z?actual_pos=1&full_fplane=0",
                     map_url="/map/2018-07-08T05:00:00Z.svg?actual_pos=1&full_fplane=0")
    html = render_page(view)
    assert "?actual_pos=1&amp;full_fplane=0" in html  # & escaped in attributes
    root = parse(html)
    download = by_id(root, "download")
    assert download.tag == "a" and "download" in download.attrib
    assert download.get("href") == view.download_url
    hrefs = {a.get("href") for a in root.iter("a")}
    assert {view.map_url, "/history", "/history?format=json", "/feed"} <= hrefs


def test_the_version_history_link_offers_both_forms():
    nav = parse(render_page(make_view())).find(".//header/nav")
    links = {a.text: a.get("href") for a in nav.iter("a")}
    assert links["text"] == "/history" and links["JSON"] == "/history?format=json"
    assert "Version history (text, JSON)" in text(nav)


def test_nothing_to_show():
    root = parse(render_page(make_view(shown=None, message="no configuration known")))
    shown = by_id(root, "shown-version")
    assert shown.get("data-version") == ""
    assert "No configuration" in text(shown)
    assert root.find(".//svg") is None
    assert by_id(root, "download") is None
    assert len(by_id(root, "timeline").findall("li")) == 4


def test_a_date_that_could_not_be_read_shows_the_error_and_no_map():
    message = "'next tuesday' is not a date; accepted forms: ..."
    html = render_page(make_view(shown=None, instant="", svg="", date_value="next tuesday",
                                 message=message))
    root = parse(html)
    alerts = [e for e in root.iter() if e.get("role") == "alert"]
    assert [text(a) for a in alerts] == [message]
    assert root.find(".//svg") is None and by_id(root, "map") is None
    assert by_id(root, "download") is None
    assert text(by_id(root, "plane-heading")) == "No map shown"
    assert "could not be read" in text(by_id(root, "shown-version"))
    assert "date not read" in text(root.find(".//title"))
    assert by_id(root, "date").get("value") == "next tuesday"   # to correct it
    assert len(by_id(root, "timeline").findall("li")) == 4     # or to pick a version


# --------------------------------------------------------------------------
# The timeline

def test_timeline_lists_every_version_newest_first_with_links():
    history = versions(4)
    root = parse(render_page(make_view(history, actual=True, full=False, labels="ifu")))
    timeline = by_id(root, "timeline")
    assert timeline.tag == "ol"
    items = timeline.findall("li")
    assert [li.get("data-version") for li in items] == ["4", "3", "2", "1"]
    by_version = {int(li.get("data-version")): li for li in items}
    for i, version in enumerate(history):
        li = by_version[version.id]
        view = li.find("a[@class='view']")
        # The toggles of the page are kept in the link.
        assert view.get("href") == \
            f"/?date={iso(version)}&actual_pos=1&full_fplane=0&labels=ifu"
        words = text(li)
        assert iso(version) in words and version.station in words
        assert version.comment in words and f"{version.active_ifus} active IFUs" in words
        diff = li.find("a[@class='diff']")
        if i == 0:
            assert diff is None
        else:
            assert diff.get("href") == f"/diff/{iso(history[i - 1])}/{iso(version)}"


def test_only_the_shown_version_is_current():
    root = parse(render_page(make_view(versions(5), shown=2)))
    current = [li.get("data-version") for li in by_id(root, "timeline").findall("li")
               if li.get("aria-current") == "true"]
    assert current == ["3"]


def test_a_correction_compares_with_the_instant_before_its_own():
    history = versions(3)
    correction = replace(history[1], id=4, recorded_at=history[1].recorded_at + HOUR,
                         comment="corrected")
    history = [history[0], history[1], correction, history[2]]
    root = parse(render_page(make_view(history, shown=2)))
    items = {li.get("data-version"): li for li in by_id(root, "timeline").findall("li")}
    expected = f"/diff/{iso(history[0])}/{iso(history[1])}"
    assert items["4"].find("a[@class='diff']").get("href") == expected
    assert items["2"].find("a[@class='diff']").get("href") == expected
    assert "corrected by version 4" in text(items["2"])
    assert items["4"].get("aria-current") == "true"


def test_station_and_comment_text_is_escaped_everywhere():
    station = '<script>alert("s")</script>'
    comment = "\"'><img src=x onerror=alert(1)> & more"
    history = [replace(v, station=station, comment=comment) for v in versions(3)]
    html = render_page(make_view(history, shown=1))
    assert "<script>" not in html and "<img" not in html
    root = parse(html)
    assert station in text(by_id(root, "shown-version"))
    assert comment in text(by_id(root, "shown-version"))
    for li in by_id(root, "timeline").findall("li"):
        assert station in text(li) and comment in text(li)


def test_a_long_timeline_scrolls_in_its_own_list():
    history = versions(TIMELINE_LIMIT)
    html = render_page(make_view(history, shown=TIMELINE_LIMIT - 1))
    root = parse(html)
    assert len(by_id(root, "timeline").findall("li")) == TIMELINE_LIMIT
    assert f"all {TIMELINE_LIMIT} versions" not in html
    assert re.search(r"#timeline\{[^}]*overflow-y:auto", html)


# --------------------------------------------------------------------------
# Messages and the comparison

def test_message_is_shown_in_an_alert():
    message = 'invalid date "<b>" ; accepted forms: ...'
    root = parse(render_page(make_view(message=message)))
    alerts = [e for e in root.iter() if e.get("role") == "alert"]
    assert len(alerts) == 1 and text(alerts[0]) == message
    assert not [e for e in parse(render_page(make_view())).iter() if e.get("role") == "alert"]


def test_changes_are_listed_with_a_link_to_the_comparison_and_each_to_its_seat():
    changes = (Change("moved", 24, "IFU 073 moved from seat 021 to seat 024"),
               Change("deactivated", 46, "seat 046 lost its spectrograph <008>"),
               Change("special_removed", 640, "special row 640 removed"))
    view = make_view(compare_value="20180707", changes=changes,
                     compare_url="/diff/20180707/20180708", seats=make_rows())
    html = render_page(view)
    root = parse(html)
    items = by_id(root, "changes").findall("li")
    assert [text(li) for li in items] == [c.text for c in changes]
    assert items[0].get("class") == "change kind-moved"
    assert [li.find("a").get("href") if li.find("a") is not None else None for li in items] == \
        ["#seat-024", "#seat-046", None]   # seat 640 is not drawn: nothing to lead to
    # ...and each target is the seat's element in the inline drawing.
    inline = ET.fromstring(html[html.index("<svg"):html.index("</svg>") + len("</svg>")])
    ids = {g.get("id"): g.get("data-ifuslot") for g in inline.iter("{http://www.w3.org/2000/svg}g")
           if g.get("id")}
    assert ids["seat-024"] == "024" and ids["seat-046"] == "046"
    assert "/diff/20180707/20180708" in {a.get("href") for a in root.iter("a")}


def test_no_change_and_no_comparison():
    root = parse(render_page(make_view(compare_value="20180708", changes=(),
                                       compare_url="/diff/20180708/20180708")))
    assert text(by_id(root, "changes")) == "No change."
    assert by_id(parse(render_page(make_view())), "changes") is None


# --------------------------------------------------------------------------
# URLs

def test_view_and_diff_urls_are_quoted():
    assert view_url("2018-07-07T05:00:00Z", False, True) == \
        "/?date=2018-07-07T05:00:00Z&actual_pos=0&full_fplane=1&labels=all"
    assert view_url("2018-07-07T05:00:00+05:00&x=1", True, False, "ifu") == \
        "/?date=2018-07-07T05:00:00%2B05:00%26x%3D1&actual_pos=1&full_fplane=0&labels=ifu"
    assert diff_url("2018-07-07T05:00:00Z", "a/b c") == "/diff/2018-07-07T05:00:00Z/a%2Fb%20c"


def test_a_long_history_lists_the_versions_nearest_the_shown_one_and_links_the_rest():
    history = versions(1000)
    html = render_page(make_view(history=history, shown=10))
    listed = [int(v) for v in re.findall(r'<li data-version="(\d+)"', html)]
    assert len(listed) == TIMELINE_LIMIT
    assert listed == sorted(listed, reverse=True) and 11 in listed and listed[-1] == 1
    assert '<a href="/history">all 1000 versions</a>' in html
    # The last entry of a window in the middle still links the diff with its predecessor.
    middle = render_page(make_view(history=history, shown=500))
    oldest = re.findall(r'<li data-version="(\d+)".*?</li>', middle)[-1]
    assert oldest == str(501 - TIMELINE_LIMIT // 2)
    entry = middle[middle.index(f'<li data-version="{oldest}"'):]
    entry = entry[:entry.index("</li>")]
    previous = format_micros(history[int(oldest) - 2].valid_from)
    assert f'class="diff" href="/diff/{previous}/' in entry
