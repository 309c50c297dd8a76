"""The Atom 1.0 feed (RFC 4287) of committed configuration versions.

A pure renderer: the caller picks the versions, diffs each against the one before
and names the URLs; this module only writes them as a valid feed, one entry per
version, in the order given (newest first, as feed readers expect).

Everything written comes through ElementTree, which escapes markup; what it does
not do is keep out the characters XML 1.0 forbids (most C0 controls, lone
surrogates, U+FFFE / U+FFFF).  A station's comment may hold any of them, and a
single one makes the whole feed unreadable, so they are replaced before writing.
"""

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from wsgi import diff, store
from wsgi.dates import format_micros

__all__ = ["ATOM_NS", "FeedEntry", "entry_content", "entry_title", "render_atom"]

ATOM_NS = "http://www.w3.org/2005/Atom"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
FEED_AUTHOR = "fplaneserver"

# XML 1.0 "Char": #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class FeedEntry:
    version: store.Version
    changes: tuple[diff.Change, ...]   # against the previous version in valid_from order
    link: str                          # absolute URL of the fplane file valid from this version
    diff_link: str | None              # absolute URL of /diff/<prev>/<this>; None for the first


def render_atom(*, feed_id: str, title: str, self_url: str, alternate_url: str,
                updated: int, entries: Sequence[FeedEntry]) -> bytes:
    """The feed document: UTF-8 bytes with an XML declaration.  ``updated`` is in µs."""
    # Tags are written unqualified under a default xmlns: ElementTree's own
    # default_namespace option refuses the unqualified attributes Atom uses (rel, href).
    feed = ET.Element("feed", {"xmlns": ATOM_NS, f"{{{_XML_NS}}}lang": "en"})
    _text(feed, "id", feed_id)
    _text(feed, "title", title)
    _text(feed, "updated", format_micros(updated))
    # A feed-level author covers every entry (RFC 4287 4.1.1); entries name their station.
    _author(feed, FEED_AUTHOR)
    _link(feed, "self", self_url, "application/atom+xml")
    _link(feed, "alternate", alternate_url, "text/html")
    _text(feed, "generator", "fplaneserver")
    for entry in entries:
        feed.append(_entry(feed_id, entry))
    ET.indent(feed, space=" ")   # whitespace between elements only; texts are untouched
    body = ET.tostring(feed, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode("utf-8")


def entry_title(entry: FeedEntry) -> str:
    v = entry.version
    what = "first version" if entry.diff_link is None else diff.summary(entry.changes)
    return f"Version {v.id} valid from {format_micros(v.valid_from)}: {what}"


def entry_content(entry: FeedEntry) -> str:
    """One line per change; says so when there is nothing else to say."""
    lines = [c.text for c in entry.changes]
    if entry.diff_link is None:
        lines.insert(0, "first version")
    elif not lines:
        lines.append("no change in the configuration")
    return "\n".join(lines)


def _entry(feed_id: str, entry: FeedEntry) -> ET.Element:
    v = entry.version
    element = ET.Element("entry")
    _text(element, "id", f"{feed_id}:version:{v.id}")
    _text(element, "title", entry_title(entry))
    _text(element, "updated", format_micros(v.recorded_at))
    _text(element, "published", format_micros(v.recorded_at))
    _author(element, v.station or "unknown station")
    # No type on entry links: it is only advisory, and readers (feedparser among
    # them) take an entry's link only from an alternate link that may be HTML.
    _link(element, "alternate", entry.link)
    if entry.diff_link is not None:
        _link(element, "related", entry.diff_link)
    # One category per kind of change, so a reader can filter ("moved", "deactivated").
    kinds = {c.kind for c in entry.changes}
    for kind in [k for k in diff.KINDS if k in kinds] + sorted(kinds - set(diff.KINDS)):
        ET.SubElement(element, "category",
                      {"term": _xml_safe(kind), "label": _xml_safe(kind.replace("_", " "))})
    if (v.comment or "").strip():
        _text(element, "summary", v.comment)
    _text(element, "content", entry_content(entry)).set("type", "text")
    return element


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = _xml_safe(text)
    return element


def _author(parent: ET.Element, name: str) -> None:
    _text(ET.SubElement(parent, "author"), "name", name)


def _link(parent: ET.Element, rel: str, href: str, media_type: str | None = None) -> None:
    attributes = {"rel": rel, "href": _xml_safe(href)}
    if media_type:
        attributes["type"] = media_type
    ET.SubElement(parent, "link", attributes)


def _xml_safe(text: str) -> str:
    return _NOT_XML_CHAR.sub("\ufffd", str(text))
