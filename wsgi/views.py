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

from webob import Response

from wsgi import codes, dates, fplane, page, svgmap, timeline
from wsgi.diff import diff_rows, summary
from wsgi.feed import FeedEntry, render_atom
from wsgi.reading import json_asked, no_configuration_message, parse_instant, single_param
from wsgi.responses import JSON, TEXT, CodedError, respond
from wsgi.store import NO_LIMIT, Store, Version, WorkerStore

HTML = "text/html; charset=utf-8"
SVG = "image/svg+xml"
ATOM = "application/atom+xml; charset=utf-8"

FEED_ENTRIES = 50
# These answers change whenever the store does: caches may keep them briefly and must
# then revalidate (cheap: the ETag turns an unchanged answer into a 304).
CACHE_CONTROL = "public, max-age=60"
_IFUID = re.compile(r"[0-9]{1,3}")


class HistoryViews:
    def __init__(self, config, store: WorkerStore):
        self._site_tz = config.timezone
        self._store = store

    # -- GET / ---------------------------------------------------------------------------

    def front_page(self, req) -> Response:
        store = self._store.get()
        params = req.GET
        date_value, compare_value = _param(params, "date"), _param(params, "compare")
        actual, full, labels = _flag(params, "actual_pos", False), _flag(params, "full_fplane", True), _labels(params)
        # Whole seconds: "now" is shown to people and becomes the download's instant.
        now = datetime.now(timezone.utc).replace(microsecond=0)
        code, message = codes.OK, ""
        try:
            instant = self._instant(date_value, now)
        except CodedError as err:
            # No instant, so no map: a drawing of "now" under a date that was not read
            # would pass for the date the person asked about.
            code, message, instant = err.code, err.message, None
        with store.snapshot():
            versions = store.history()
            version = None if instant is None else store.version_at(dates.to_micros(instant))
            svg, seats = "", ()
            if instant is not None and version is None:
                code, message = codes.NO_CONFIGURATION, no_configuration_message(store, instant)
            changes = compared = None
            if compare_value and version is not None:
                try:
                    changes, compared = self._comparison(store, version, instant, compare_value,
                                                         actual, now)
                except CodedError as err:
                    code, message = err.code, f"compare: {err.message}"
            if version is not None:
                seats, offsets = self._drawn_rows(store, version, instant, actual, full)
                svg = self._drawing(seats, version, instant, labels, offsets, changes, compared)
        # Links name the date as typed, so they read well and reproduce the view; "now"
        # becomes the instant shown, so that a download is the file that was on screen.
        shown = date_value if instant is None or (date_value and not dates.means_now(date_value)) \
            else dates.format_instant(instant)
        view = page.PageView(
            date_value=date_value, compare_value=compare_value, actual=actual, full=full,
            instant="" if instant is None else dates.format_instant(instant),
            version=version, svg=svg, history=versions, changes=changes, message=message,
            seats=seats, labels=labels,
            **_page_links(shown, compare_value if changes is not None else "", actual, full, labels))
        # A page with a message still shows the timeline: a person can pick a date from it.
        return _answer(page.render_page(view), HTML, code, cache_control="no-cache")

    def _comparison(self, store, version: Version, instant, compare_value: str, actual: bool, now):
        """(the changes from the version at ``compare_value`` to ``version``, that instant)."""
        compared = self._instant(compare_value, now)
        changes = self._changes(store, self._version_at(store, compared), version, compared,
                                instant, actual)
        return changes, compared

    # -- GET /map/<datestr>.svg ----------------------------------------------------------

    def map_svg(self, req, datestr: str) -> Response:
        """The page's drawing alone, with the same options (compare included)."""
        store = self._store.get()
        actual, full, labels = _flag(req.GET, "actual_pos", False), _flag(req.GET, "full_fplane", True), \
            _labels(req.GET)
        compare_value = _param(req.GET, "compare")
        now = datetime.now(timezone.utc)
        instant = self._instant(datestr, now)
        with store.snapshot():
            version = self._version_at(store, instant)
            rows, offsets = self._drawn_rows(store, version, instant, actual, full)
            changes = compared = None
            if compare_value:
                changes, compared = self._comparison(store, version, instant, compare_value,
                                                     actual, now)
        return _answer(self._drawing(rows, version, instant, labels, offsets, changes, compared),
                       SVG)

    def _drawn_rows(self, store, version: Version, instant, actual: bool, full: bool):
        """(the seats of the file that GET /fplane serves for the same query, the measured
        offsets {ifuslot: (dx, dy)} from nominal: None for nominal positions)."""
        rows = fplane.served_rows(store.configuration_rows(version.configuration_id), full)
        if not actual:
            return rows, None
        nominal = {r.ifuslot: (r.x, r.y) for r in rows}
        measured = {s: xy for s, xy in self._measured(store, instant).items() if s in nominal}
        offsets = {s: (x - nominal[s][0], y - nominal[s][1]) for s, (x, y) in measured.items()}
        return fplane.with_positions(rows, measured), offsets

    @staticmethod
    def _drawing(rows, version: Version, instant, labels: str, offsets, changes, compared) -> str:
        title = f"HET/VIRUS focal plane at {dates.format_instant(instant)} (version {version.id})"
        return svgmap.render_map(
            rows, title=title, labels=labels, offsets=offsets,
            changed=None if changes is None else _changed_seats(changes),
            changed_since="" if compared is None else dates.format_instant(compared))

    # -- GET /history --------------------------------------------------------------------

    def history(self, req) -> Response:
        store = self._store.get()
        now = datetime.now(timezone.utc)
        bounds = []
        for name, unbounded in (("from", -NO_LIMIT), ("to", NO_LIMIT)):
            value = _param(req.GET, name)
            bounds.append(dates.to_micros(self._instant(value, now)) if value else unbounded)
        versions = store.history(*bounds)
        if json_asked(req):
            replaced = timeline.superseded_by(versions)
            body = _json_text({"code": codes.OK, "versions": [
                timeline.version_json(v, replaced.get(v.id)) for v in versions]})
            return _answer(body, JSON)
        return _answer(timeline.history_text(versions), TEXT)

    # -- GET /diff/<d1>/<d2> -------------------------------------------------------------

    def diff(self, req, datestr1: str, datestr2: str) -> Response:
        store = self._store.get()
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

    def ifu(self, req, ifuid: str) -> Response:
        if not _IFUID.fullmatch(ifuid):
            raise CodedError(codes.NOT_FOUND, f"{ifuid[:20]!r} is not an IFU id (1 to 3 digits, e.g. 073)")
        number = int(ifuid)
        store = self._store.get()
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

    def feed(self, req) -> Response:
        store = self._store.get()
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


def _feed_id(first_recorded_at: int | None) -> str:
    """A feed id that stays the same whatever host name the feed is read through (a reader
    seeing a new id would show every entry again as new), unique to this store: a tag URI
    (RFC 4151) naming the store by the moment its first version was recorded."""
    if first_recorded_at is None:
        return "tag:fplaneserver,2026:empty"
    return f"tag:fplaneserver,{dates.format_micros(first_recorded_at)[:10]}:store-{first_recorded_at}"


def _page_links(shown: str, compared: str, actual: bool, full: bool, labels: str) -> dict:
    """The page's links for the date ``shown``: the file drawn, the drawing alone (with the
    comparison when the page shows one), and the /diff of the comparison."""
    date = quote(shown, safe=":")
    toggles = {"actual_pos": int(actual), "full_fplane": int(full)}
    drawing = {**toggles, "labels": labels, **({"compare": compared} if compared else {})}
    return {
        "download_url": f"/fplane/{date}?{urlencode(toggles)}",
        "map_url": f"/map/{date}.svg?{urlencode(drawing, safe=':')}",
        "compare_url": None if not compared else
        f"/diff/{quote(compared, safe=':')}/{date}" + ("?actual_pos=1" if actual else ""),
    }


def _param(params, name: str) -> str:
    """A text parameter, "" when absent. Not stripped: parse_datestr forgives exactly the
    blanks it should, and no others."""
    return single_param(params, name, None, default="")


def _labels(params) -> str:
    return single_param(params, "labels", tuple(svgmap.LABELS), default=svgmap.DEFAULT_LABELS)


def _changed_seats(changes) -> frozenset[int]:
    """Every seat a change concerns: a moved IFU's old seat as well as its new one."""
    seats = set()
    for change in changes:
        if change.seat is not None:
            seats.add(change.seat)
        seats.update(int(value) for key, value in change.fields if key == "from_seat")
    return frozenset(seats)


def _flag(params, name: str, default: bool) -> bool:
    # The same rule as /fplane's (reading.parse_query): given means 0 or 1.
    return single_param(params, name, ("0", "1"), default="1" if default else "0") == "1"


def _end_json(instant: datetime, version: Version) -> dict:
    return {"instant": dates.format_instant(instant), **timeline.version_json(version)}


def _json_text(document) -> str:
    return json.dumps(document, indent=1) + "\n"


def _answer(body, content_type: str, code: int = codes.OK,
            cache_control: str = CACHE_CONTROL) -> Response:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return respond(code, data, content_type, cache_control=cache_control, headers=[("Vary", "Accept")],
                   etag='"' + hashlib.sha256(data).hexdigest()[:32] + '"' if code == codes.OK else None)
