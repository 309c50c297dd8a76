"""Looking at the history: the page at /, the map, /history, /diff, /ifu and the feed.

Handlers read the store in one snapshot and hand plain data to the pure renderers
(wsgi.page, wsgi.svgmap, wsgi.diff, wsgi.feed, wsgi.history). Every answer carries a
strong ETag of its bytes, so a browser or feed reader polling an unchanged history
gets a 304.
"""

import hashlib
import json
import re
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

from wsgi import codes, dates, fplane, page, svgmap, timeline
from wsgi.diff import diff_rows, summary
from wsgi.feed import FeedEntry, render_atom
from wsgi.reading import json_asked, no_configuration_message, parse_instant, single_param
from wsgi.responses import JSON, TEXT, CodedError, Prepared
from wsgi.store import NO_LIMIT, Store, Version

HTML = "text/html; charset=utf-8"
SVG = "image/svg+xml"
ATOM = "application/atom+xml; charset=utf-8"

FEED_ENTRIES = 50
# These answers change whenever the store does: caches may keep them briefly and must
# then revalidate (cheap: the ETag turns an unchanged answer into a 304).
CACHE_CONTROL = "public, max-age=60"
_IFUID = re.compile(r"[0-9]{1,3}")


class HistoryViews:
    def __init__(self, config):
        self._site_tz = config.timezone

    # -- GET / ---------------------------------------------------------------------------

    def front_page(self, store: Store, req) -> Prepared:
        params = req.GET
        date_value = _param(params, "date")
        compare_value = _param(params, "compare")
        actual = _flag(params, "actual_pos", False)
        full = _flag(params, "full_fplane", True)
        # Whole seconds: "now" is shown to people and becomes the download's instant.
        now = datetime.now(timezone.utc).replace(microsecond=0)
        code, message = codes.OK, ""
        try:
            instant = self._instant(date_value, now)
        except CodedError as err:
            code, message, instant = err.code, err.message, now
        # Links name the date as typed, so they read well and reproduce the view; "now"
        # becomes the instant shown, so that a download is the file that was on screen.
        shown = date_value if date_value and not dates.means_now(date_value) and code == codes.OK \
            else dates.format_instant(instant)
        with store.snapshot():
            versions = store.history()
            version = store.version_at(dates.to_micros(instant))
            svg, seats = "", ()
            if version is None and code == codes.OK:
                code, message = codes.NO_CONFIGURATION, no_configuration_message(store, instant)
            elif version is not None:
                seats = self._drawn_rows(store, version, instant, actual, full)
                svg = self._drawing(seats, version, instant)
            changes = compare_url = None
            if compare_value and version is not None and code == codes.OK:
                try:
                    changes, compare_url = self._page_comparison(store, compare_value, shown,
                                                                 instant, version, actual, now)
                except CodedError as err:
                    code, message = err.code, f"compare: {err.message}"
        toggles = urlencode({"actual_pos": int(actual), "full_fplane": int(full)})
        view = page.PageView(
            date_value=date_value, compare_value=compare_value, actual=actual, full=full,
            instant=dates.format_instant(instant), version=version, svg=svg,
            download_url=f"/fplane/{quote(shown, safe=':')}?{toggles}",
            map_url=f"/map/{quote(shown, safe=':')}.svg?{toggles}",
            history=versions, changes=changes, compare_url=compare_url, message=message,
            seats=seats)
        # A page with a message still shows the timeline: a person can pick a date from it.
        return _answer(page.render_page(view), HTML, code, cache_control="no-cache")

    def _page_comparison(self, store, compare_value, shown, instant, version, actual, now):
        compare_instant = self._instant(compare_value, now)
        before = self._version_at(store, compare_instant)
        changes = self._changes(store, before, version, compare_instant, instant, actual)
        return changes, f"/diff/{quote(compare_value, safe=':')}/{quote(shown, safe=':')}" + \
            ("?actual_pos=1" if actual else "")

    # -- GET /map/<datestr>.svg ----------------------------------------------------------

    def map_svg(self, store: Store, req, datestr: str) -> Prepared:
        actual = _flag(req.GET, "actual_pos", False)
        full = _flag(req.GET, "full_fplane", True)
        instant = self._instant(datestr, datetime.now(timezone.utc))
        with store.snapshot():
            version = self._version_at(store, instant)
            rows = self._drawn_rows(store, version, instant, actual, full)
        return _answer(self._drawing(rows, version, instant), SVG)

    def _drawn_rows(self, store, version: Version, instant, actual: bool, full: bool):
        """The seats of the file that GET /fplane serves for the same query."""
        rows = fplane.served_rows(store.configuration_rows(version.configuration_id), full)
        if actual:
            rows = fplane.with_positions(rows, self._measured(store, instant))
        return rows

    @staticmethod
    def _drawing(rows, version: Version, instant) -> str:
        title = f"HET/VIRUS focal plane at {dates.format_instant(instant)} (version {version.id})"
        return svgmap.render_map(rows, title=title)

    # -- GET /history --------------------------------------------------------------------

    def history(self, store: Store, req) -> Prepared:
        now = datetime.now(timezone.utc)
        window = []
        for name, unbounded in (("from", -NO_LIMIT), ("to", NO_LIMIT)):
            value = _param(req.GET, name)
            window.append(dates.to_micros(self._instant(value, now)) if value else unbounded)
        with store.snapshot():
            versions = _valid_during(store, *window)
        if json_asked(req):
            replaced = timeline.superseded_by(versions)
            body = _json_text({"code": codes.OK, "versions": [
                timeline.version_json(v, replaced.get(v.id)) for v in versions]})
            return _answer(body, JSON)
        return _answer(timeline.history_text(versions), TEXT)

    # -- GET /diff/<d1>/<d2> -------------------------------------------------------------

    def diff(self, store: Store, req, datestr1: str, datestr2: str) -> Prepared:
        now = datetime.now(timezone.utc)
        actual = _flag(req.GET, "actual_pos", False)
        first, second = self._instant(datestr1, now), self._instant(datestr2, now)
        with store.snapshot():
            old, new = self._version_at(store, first), self._version_at(store, second)
            changes = self._changes(store, old, new, first, second, actual)
        ends = ((first, old), (second, new))
        if json_asked(req):
            return _answer(_json_text({
                "code": codes.OK,
                "from": _end_json(*ends[0]), "to": _end_json(*ends[1]),
                "positions": "measured" if actual else "nominal",
                "summary": summary(changes),
                "changes": [c.as_json() for c in changes],
            }), JSON)
        lines = [f"# what changed on the HET/VIRUS focal plane"
                 f" ({'measured' if actual else 'nominal'} positions)",
                 *(f"# {label} {dates.format_instant(instant)}: version {version.id}"
                   f" (valid_from {dates.format_micros(version.valid_from)})"
                   for label, (instant, version) in zip(("from", "to  "), ends)),
                 f"# {summary(changes)}",
                 *(c.text for c in changes)]
        return _answer("\n".join(lines) + "\n", TEXT)

    def _changes(self, store, old: Version, new: Version, old_instant, new_instant, actual: bool):
        old_positions = new_positions = None
        if actual:
            old_positions = self._measured(store, old_instant)
            new_positions = self._measured(store, new_instant)
        return diff_rows(store.configuration_rows(old.configuration_id),
                              store.configuration_rows(new.configuration_id),
                              old_positions, new_positions)

    @staticmethod
    def _measured(store, instant) -> dict:
        position_set = store.position_set_at(dates.to_micros(instant))
        return {} if position_set is None else store.positions(position_set.id)

    # -- GET /ifu/<ifuid> ----------------------------------------------------------------

    def ifu(self, store: Store, req, ifuid: str) -> Prepared:
        if not _IFUID.fullmatch(ifuid):
            raise CodedError(codes.NOT_FOUND, f"{ifuid[:20]!r} is not an IFU id (1 to 3 digits, e.g. 073)")
        number = int(ifuid)
        if number == 0 or number >= fplane.PLACEHOLDER_ID_MIN:
            # Ids the file uses for "no bundle" and for the special rows' placeholders.
            raise CodedError(codes.NOT_FOUND, f"{number:03d} is not an IFU: " + (
                "IFUID 000 means no IFU bundle in the seat" if number == 0 else
                f"IFUIDs of {fplane.PLACEHOLDER_ID_MIN} and above are placeholders of the special "
                "rows (the 000 reference row, LRS2, the HPF / HRS fibres)"))
        with store.snapshot():
            stays = timeline.ifu_stays(number, timeline.effective(store.history()),
                                      lambda v: store.configuration_rows(v.configuration_id))
        if not stays:
            raise CodedError(codes.NOT_FOUND, f"IFU {number:03d} is in no version of the focal plane")
        if json_asked(req):
            return _answer(_json_text({"code": codes.OK, "ifuid": f"{number:03d}",
                                       "stays": [s.as_json() for s in stays]}), JSON)
        return _answer(timeline.stays_text(number, stays), TEXT)

    # -- GET /feed -----------------------------------------------------------------------

    def feed(self, store: Store, req) -> Prepared:
        base = req.host_url
        with store.snapshot():
            versions = store.recently_recorded(FEED_ENTRIES)
            entries = [self._feed_entry(store, base, v) for v in versions]
            feed_id = _feed_id(store.first_recorded_at())
        body = render_atom(
            feed_id=feed_id, title="HET/VIRUS focal plane configuration changes",
            self_url=f"{base}/feed", alternate_url=f"{base}/",
            updated=versions[0].recorded_at if versions else 0, entries=entries)
        return _answer(body, ATOM)

    @staticmethod
    def _feed_entry(store, base: str, version: Version) -> FeedEntry:
        """What this commit changed: against the version in effect just before its
        valid_from, as the store knew it when the commit was recorded."""
        this = dates.format_micros(version.valid_from)
        previous = store.version_at(version.valid_from - 1, version.recorded_at)
        changes = () if previous is None else diff_rows(
            store.configuration_rows(previous.configuration_id),
            store.configuration_rows(version.configuration_id))
        return FeedEntry(
            version=version, changes=changes,
            link=f"{base}/fplane/{this}?known_at={quote(dates.format_micros(version.recorded_at), safe=':')}",
            diff_link=None if previous is None else
            f"{base}/diff/{dates.format_micros(previous.valid_from)}/{this}")

    # -- shared --------------------------------------------------------------------------

    def _instant(self, datestr: str, now: datetime) -> datetime:
        return parse_instant(datestr, self._site_tz, now)

    @staticmethod
    def _version_at(store: Store, instant: datetime) -> Version:
        version = store.version_at(dates.to_micros(instant))
        if version is None:
            raise CodedError(codes.NO_CONFIGURATION, no_configuration_message(store, instant))
        return version


def _valid_during(store: Store, start: int, end: int) -> list[Version]:
    """Every version valid at some moment of [start, end): those starting inside it, and the
    one already valid at ``start`` (with any corrections of it). Call inside store.snapshot()."""
    if start >= end:
        return []
    valid_at_start = store.version_at(start) if start > -NO_LIMIT else None
    return store.history(start if valid_at_start is None else valid_at_start.valid_from,
                         end - 1 if end < NO_LIMIT else NO_LIMIT)


def _feed_id(first_recorded_at: int | None) -> str:
    """A feed id that stays the same whatever host name the feed is read through (a reader
    seeing a new id would show every entry again as new), unique to this store: a tag URI
    (RFC 4151) naming the store by the moment its first version was recorded."""
    if first_recorded_at is None:
        return "tag:fplaneserver,2026:empty"
    return f"tag:fplaneserver,{dates.format_micros(first_recorded_at)[:10]}:store-{first_recorded_at}"


def _param(params, name: str) -> str:
    """A text parameter, "" when absent. Not stripped: parse_datestr forgives exactly the
    blanks it should, and no others."""
    return single_param(params, name, None, default="")


def _flag(params, name: str, default: bool) -> bool:
    # The same rule as /fplane's (reading.parse_query): given means 0 or 1.
    return single_param(params, name, ("0", "1"), default="1" if default else "0") == "1"


def _end_json(instant: datetime, version: Version) -> dict:
    return {"instant": dates.format_instant(instant), **timeline.version_json(version)}


def _json_text(document) -> str:
    return json.dumps(document, indent=1) + "\n"


def _answer(body, content_type: str, code: int = codes.OK,
            cache_control: str = CACHE_CONTROL) -> Prepared:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return Prepared(
        codes.http_status_line(code),
        [("Content-Type", content_type), ("X-FPlane-Code", str(code)),
         ("Cache-Control", cache_control), ("Vary", "Accept")],
        data, code=code,
        etag='"' + hashlib.sha256(data).hexdigest()[:32] + '"' if code == codes.OK else None,
    )
