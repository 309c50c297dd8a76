"""The Atom feed of committed versions (wsgi/feed.py, contract.md section 9).

The output is read back with xml.etree and checked against RFC 4287 (4.1.1 feed,
4.1.2 entry, 3.3 dates), and with feedparser, the library pipelines subscribe with.
Comments come from stations: hostile ones must neither break the XML nor inject markup.
"""
import re
import xml.etree.ElementTree as ET

import feedparser
import pytest

from tests.fplane_samples import make_rows
from wsgi.diff import diff_rows
from wsgi.feed import ATOM_NS, FeedEntry, render_atom
from wsgi.store import Version

A = f"{{{ATOM_NS}}}"
FEED_ID = "tag:fplane.example.org,2018:feed"
BASE = "https://fplane.example.org"
# RFC 3339 date-time, upper-case T and Z as RFC 4287 3.3 asks.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")

T0 = 1530939600_000000   # 2018-07-07T05:00:00Z in µs
HOUR = 3600_000000


def version(vid, comment="", station="tcs", valid_from=None, recorded_at=None):
    valid_from = T0 + vid * 24 * HOUR if valid_from is None else valid_from
    recorded_at = valid_from + HOUR if recorded_at is None else recorded_at
    return Version(id=vid, valid_from=valid_from, recorded_at=recorded_at, station=station,
                   comment=comment, source="status", configuration_id=vid, active_ifus=50)


def entry(vid, changes=(), comment="", station="tcs", first=False):
    v = version(vid, comment, station)
    return FeedEntry(version=v, changes=tuple(changes),
                     link=f"{BASE}/fplane/{vid}?actual_pos=0&full_fplane=1",
                     diff_link=None if first else f"{BASE}/diff/{vid - 1}/{vid}")


def moves():
    """Two IFUs moved and a spectrograph replaced, as diff_rows says it."""
    old = make_rows(active={21: (315, 218, 73), 22: (9, 219, 74), 46: (8, 129, 43)}, installed={})
    new = make_rows(active={24: (315, 218, 73), 23: (9, 219, 74), 46: (25, 129, 43)},
                    installed={})
    return diff_rows(old, new)


def render(entries, **kwargs):
    args = dict(feed_id=FEED_ID, title="fplane changes", self_url=f"{BASE}/feed",
                alternate_url=f"{BASE}/", updated=T0 + 100 * HOUR, entries=entries)
    args.update(kwargs)
    return render_atom(**args)


def parse(body: bytes) -> ET.Element:
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    body.decode("utf-8")   # strict: no lone surrogates or other undecodable bytes
    return ET.fromstring(body)


def one(parent, tag):
    found = parent.findall(A + tag)
    assert len(found) == 1, f"{tag}: {len(found)} elements"
    return found[0]


def links(parent):
    return {(link.get("rel"), link.get("type")): link.get("href")
            for link in parent.findall(A + "link")}


# --------------------------------------------------------------------------
# RFC 4287 structure

def test_feed_element_per_rfc4287_4_1_1():
    root = parse(render([entry(3, moves()), entry(2), entry(1, first=True)]))
    assert root.tag == A + "feed"
    assert one(root, "id").text == FEED_ID
    assert one(root, "title").text == "fplane changes"
    assert one(root, "updated").text == "2018-07-11T09:00:00Z"
    # A feed-level author, so that every entry has one (4.1.1: MUST unless all entries do).
    assert one(one(root, "author"), "name").text == "fplaneserver"
    assert links(root) == {("self", "application/atom+xml"): f"{BASE}/feed",
                           ("alternate", "text/html"): f"{BASE}/"}
    # Every element is an Atom element: no stray namespace, no unqualified tag.
    assert all(e.tag.startswith(A) for e in root.iter())


def test_entries_per_rfc4287_4_1_2():
    entries = [entry(3, moves(), comment="IFUs swapped by the day crew"),
               entry(2, station="ops"), entry(1, first=True)]
    root = parse(render(entries))
    parsed = root.findall(A + "entry")
    assert len(parsed) == 3
    for given, e in zip(entries, parsed):
        v = given.version
        assert one(e, "id").text == f"{FEED_ID}:version:{v.id}"
        assert one(e, "title").text.startswith(f"Version {v.id} valid from ")
        assert one(e, "updated").text == one(e, "published").text
        assert RFC3339.match(one(e, "updated").text)
        assert one(one(e, "author"), "name").text == v.station
        assert links(e)[("alternate", None)] == given.link
        assert links(e).get(("related", None)) == given.diff_link
        content = one(e, "content")
        assert content.get("type") == "text"
        assert content.text
    assert [one(e, "id").text.rsplit(":", 1)[1] for e in parsed] == ["3", "2", "1"]


def test_entry_says_what_changed_in_instrument_terms():
    root = parse(render([entry(12, moves(), comment="swapped 021 and 024")]))
    e = one(root, "entry")
    assert one(e, "title").text == ("Version 12 valid from 2018-07-19T05:00:00Z: 2 IFUs moved, "
                                    "1 spectrograph replaced")
    assert one(e, "updated").text == "2018-07-19T06:00:00Z"
    assert one(e, "summary").text == "swapped 021 and 024"
    assert one(e, "content").text.split("\n") == [
        "IFU 074 moved from seat 022 to seat 023 (spectrograph 009)",
        "IFU 073 moved from seat 021 to seat 024 (spectrograph 315)",
        "spectrograph 008 replaced by 025 at seat 046 (IFU 043)",
    ]
    assert [(c.get("term"), c.get("label")) for c in e.findall(A + "category")] == [
        ("moved", "moved"), ("spectrograph_replaced", "spectrograph replaced")]


def test_first_version_and_unchanged_configuration():
    first = entry(1, first=True)
    same = entry(2)
    root = parse(render([same, first]))
    e_same, e_first = root.findall(A + "entry")
    assert one(e_first, "title").text == "Version 1 valid from 2018-07-08T05:00:00Z: first version"
    assert one(e_first, "content").text == "first version"
    assert ("related", None) not in links(e_first)
    assert one(e_same, "title").text.endswith(": no change")
    assert one(e_same, "content").text == "no change in the configuration"
    assert e_same.findall(A + "category") == []
    # No comment: no summary (optional for inline text content, RFC 4287 4.1.2).
    assert e_same.findall(A + "summary") == []


def test_first_version_with_its_installations_listed():
    installed = diff_rows((), make_rows(active={21: (315, 218, 73)}, installed={}))
    e = one(parse(render([entry(1, installed, first=True)])), "entry")
    lines = one(e, "content").text.split("\n")
    assert lines[:2] == ["first version", "IFU 073 installed at seat 021 (spectrograph 315)"]
    assert one(e, "title").text.endswith(": first version")


def test_empty_feed_is_still_a_valid_feed():
    root = parse(render([]))
    assert root.findall(A + "entry") == []
    assert one(root, "id").text == FEED_ID


# --------------------------------------------------------------------------
# What stations write

HOSTILE = [
    '<script>alert("x")</script>',
    "R&D: 1 < 2 && 3 > 2 ]]> &amp; &#0; &unknown;",
    "<![CDATA[ not cdata ]]>",
    "<?xml-stylesheet href='evil.xsl'?>",
    "quote ' and \" in text",
]


@pytest.mark.parametrize("comment", HOSTILE)
def test_hostile_comments_are_text_not_markup(comment):
    body = render([entry(2, comment=comment, station=comment)])
    assert b"<script" not in body and b"<![CDATA[" not in body and b"<?xml-stylesheet" not in body
    e = one(parse(body), "entry")
    assert one(e, "summary").text == comment
    assert one(one(e, "author"), "name").text == comment
    assert len(e) == len(one(parse(render([entry(2, comment="plain")])), "entry"))


def test_control_characters_are_replaced_so_the_feed_stays_xml():
    comment = "a\x00b\x01c\x08d\x0be\x0cf\x1bg\x7fh\ud800i\ufffej\tk\nl"
    body = render([entry(2, comment=comment, station="tcs\x00")], title="t\x1f")
    root = parse(body)
    assert one(one(root, "entry"), "summary").text == (
        "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\ufffdg\x7fh\ufffdi\ufffdj\tk\nl")
    assert one(one(one(root, "entry"), "author"), "name").text == "tcs\ufffd"
    assert one(root, "title").text == "t\ufffd"


def test_unicode_and_hostile_urls_round_trip():
    comment = "Spektrograph getauscht – Ω ✓ 望遠鏡"
    e = entry(2, comment=comment)
    e = FeedEntry(e.version, e.changes, link=f'{BASE}/fplane/x?a=1&b="2"<', diff_link=e.diff_link)
    body = render([e])
    assert comment.encode("utf-8") in body
    parsed = one(parse(body), "entry")
    assert one(parsed, "summary").text == comment
    assert links(parsed)[("alternate", None)] == f'{BASE}/fplane/x?a=1&b="2"<'


def test_a_whitespace_only_comment_is_no_comment():
    assert one(parse(render([entry(2, comment="  \n ")])), "entry").findall(A + "summary") == []


# --------------------------------------------------------------------------
# Read by the library pipelines use

def test_feedparser_reads_it_cleanly():
    body = render([entry(3, moves(), comment="swap <b>bold</b> & co"), entry(2, station="ops"),
                   entry(1, first=True)])
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "fplane changes"
    assert parsed.feed.id == FEED_ID
    assert [e.id for e in parsed.entries] == [f"{FEED_ID}:version:{i}" for i in (3, 2, 1)]
    first = parsed.entries[0]
    assert first.title.endswith("2 IFUs moved, 1 spectrograph replaced")
    assert first.author == "tcs"
    assert parsed.entries[1].author == "ops"
    assert first.link == f"{BASE}/fplane/3?actual_pos=0&full_fplane=1"
    assert first.published_parsed[:6] == (2018, 7, 10, 6, 0, 0)
    assert first.content[0].type == "text/plain"
    assert "IFU 073 moved from seat 021 to seat 024" in first.content[0].value
    assert [t.term for t in first.tags] == ["moved", "spectrograph_replaced"]
