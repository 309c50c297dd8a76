"""Looking at the history through the app: /, /map, /history, /diff, /ifu, /feed, CORS.

Each test builds a real store with `fplane-admin import` and asks the very partial that
uWSGI serves (WebTest); the renderers' own details are tested in test_page, test_svgmap,
test_diff and test_feed."""

import xml.etree.ElementTree as ET

import pytest

from tests.fplane_samples import default_active, make_rows, measured_positions
from tests.support import import_rows, init_store, run_admin, test_app, write_config
from wsgi import fplane

ATOM = "{http://www.w3.org/2005/Atom}"
SVG = "{http://www.w3.org/2000/svg}"


def swapped(active, a, b):
    """The configuration after the IFUs (with their spectrographs) of seats a and b swap seats."""
    out = dict(active)
    out[a], out[b] = active[b], active[a]
    return out


FIRST = default_active()
SWAP = swapped(FIRST, 21, 25)
ANOTHER = dict(SWAP)
ANOTHER[46] = (25, *SWAP[46][1:])     # spectrograph replaced at seat 046


@pytest.fixture
def config(tmp_path):
    config = write_config(tmp_path)
    init_store(config)
    import_rows(config, make_rows(FIRST), "20180601", "--comment", "first light")
    import_rows(config, make_rows(SWAP), "20180701", "--comment", "IFU swap")
    import_rows(config, make_rows(ANOTHER), "20180801", "--comment", "spectrograph <replaced> & more")
    return config


@pytest.fixture
def app(config):
    return test_app(config)


def ifu_at(active, seat):
    return f"{active[seat][2]:03d}"


# -- /history ---------------------------------------------------------------------------

def test_history_lists_every_version_as_a_table(app):
    response = app.get("/history")
    assert response.content_type == "text/plain"
    lines = response.text.splitlines()
    assert lines[0].startswith("# version valid_from")
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert lines[1].split()[1:3] == ["2018-06-01T05:00:00Z", "2018-07-01T05:00:00Z"]
    assert lines[3].split()[2] == "open"
    assert lines[3].endswith("spectrograph <replaced> & more")


def test_history_as_json_with_from_and_to_filters(app):
    document = app.get("/history?format=json&from=20180615&to=20180715").json
    assert [v["version"] for v in document["versions"]] == [2]
    version = document["versions"][0]
    assert version["valid_from"] == "2018-07-01T05:00:00Z"
    assert version["valid_until"] == "2018-08-01T05:00:00Z"
    assert version["comment"] == "IFU swap"
    assert version["active_ifus"] == len(SWAP)
    assert version["superseded_by"] is None


def test_a_correction_shows_which_version_it_superseded(config, app):
    import_rows(config, make_rows(SWAP), "20180801", "--comment", "correction")
    versions = app.get("/history", headers={"Accept": "application/json"}).json["versions"]
    assert [(v["version"], v["superseded_by"]) for v in versions] == [(1, None), (2, None), (3, 4), (4, None)]


def test_history_with_a_bad_date_is_code_301(app):
    response = app.get("/history?from=yesterday", status=400)
    assert response.headers["X-FPlane-Code"] == "301"


# -- /diff ------------------------------------------------------------------------------

def test_diff_speaks_in_instrument_terms(app):
    text = app.get("/diff/20180615/20180715").text
    lines = text.splitlines()
    assert lines[1].startswith("# from 2018-06-15T05:00:00Z: version 1")
    assert lines[2].startswith("# to   2018-07-15T05:00:00Z: version 2")
    assert lines[3] == "# 2 IFUs moved"
    assert f"IFU {ifu_at(FIRST, 21)} moved from seat 021 to seat 025 (spectrograph {FIRST[21][0]:03d})" in lines
    assert f"IFU {ifu_at(FIRST, 25)} moved from seat 025 to seat 021 (spectrograph {FIRST[25][0]:03d})" in lines


def test_diff_as_json_across_two_versions(app):
    document = app.get("/diff/20180615/20180815?format=json").json
    assert document["from"]["version"] == 1 and document["to"]["version"] == 3
    assert document["to"]["instant"] == "2018-08-15T05:00:00Z"
    kinds = sorted(change["kind"] for change in document["changes"])
    assert kinds == ["moved", "moved", "spectrograph_replaced"]
    replaced = next(c for c in document["changes"] if c["kind"] == "spectrograph_replaced")
    assert replaced["seat"] == "046"
    assert replaced["text"] == f"spectrograph {SWAP[46][0]:03d} replaced by 025 at seat 046 (IFU {ifu_at(SWAP, 46)})"


def test_diff_of_an_instant_with_itself_is_empty(app):
    document = app.get("/diff/20180701/20180702?format=json").json
    assert document["changes"] == [] and document["summary"] == "no change"


def test_diff_with_measured_positions_reports_how_far_seats_moved(config, app):
    measured = measured_positions([32])
    path = config.parent / "positions.txt"
    path.write_text(fplane.render_fplane(make_rows(ANOTHER, positions=measured), [], full=True))
    status, _, err = run_admin(config, "import", str(path), "--valid-from", "20180810", "--positions")
    assert status == 0, err
    nominal = app.get("/diff/20180805/20180815?format=json").json
    assert nominal["changes"] == []
    measured_diff = app.get("/diff/20180805/20180815?format=json&actual_pos=1").json
    assert [c["kind"] for c in measured_diff["changes"]] == ["position_changed"]
    assert measured_diff["changes"][0]["seat"] == "032"


def test_diff_before_the_history_starts_is_code_302(app):
    response = app.get("/diff/20170101/20180701", status=404)
    assert response.headers["X-FPlane-Code"] == "302"
    assert "the history starts at 2018-06-01T05:00:00Z" in response.text


# -- /ifu -------------------------------------------------------------------------------

def test_ifu_timeline_follows_the_bundle_from_seat_to_seat(app):
    ifuid = ifu_at(FIRST, 21)
    document = app.get(f"/ifu/{ifuid}?format=json").json
    assert document["ifuid"] == ifuid
    assert [(s["ifuslot"], s["valid_from"], s["valid_until"]) for s in document["stays"]] == [
        ("021", "2018-06-01T05:00:00Z", "2018-07-01T05:00:00Z"),
        ("025", "2018-07-01T05:00:00Z", None),
    ]
    # Leading zeros are optional in the URL, as people type ids.
    assert app.get(f"/ifu/{int(ifuid)}").text.splitlines()[0] == f"# IFU {ifuid}: where it sat, and on which spectrograph, over time"


@pytest.mark.parametrize("ifuid", ["998x", "1000", "", "../etc"])
def test_ifu_that_is_not_an_id_is_code_303(app, ifuid):
    response = app.get(f"/ifu/{ifuid}", status=404)
    assert response.headers["X-FPlane-Code"] == "303"


def test_ifu_never_in_the_focal_plane_is_code_303(app):
    response = app.get("/ifu/777", status=404)
    assert "IFU 777 is in no version" in response.text


# -- /feed ------------------------------------------------------------------------------

def test_feed_has_one_entry_per_version_newest_first_with_its_diff(app):
    response = app.get("/feed", headers={"Host": "fplane.example.org"})
    assert response.content_type == "application/atom+xml"
    root = ET.fromstring(response.body)
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 3
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert titles[0].startswith("Version 3") and titles[2].startswith("Version 1")
    assert f"IFU {ifu_at(FIRST, 21)} moved from seat 021 to seat 025" in entries[1].findtext(f"{ATOM}content")
    links = {link.get("rel"): link.get("href") for link in entries[1].findall(f"{ATOM}link")}
    assert links["alternate"].startswith("http://fplane.example.org/fplane/2018-07-01T05:00:00Z?known_at=")
    assert links["related"] == "http://fplane.example.org/diff/2018-06-01T05:00:00Z/2018-07-01T05:00:00Z"


def test_feed_ids_do_not_depend_on_the_host_it_is_read_through(app):
    ids = [[e.text for e in ET.fromstring(app.get("/feed", headers={"Host": host}).body).iter(f"{ATOM}id")]
           for host in ("fplane.example.org", "127.0.0.1:8080")]
    assert ids[0] == ids[1] and len(set(ids[0])) == 4


def test_an_unchanged_feed_is_a_304_for_a_polling_reader(config, app):
    etag = app.get("/feed").headers["ETag"]
    app.get("/feed", headers={"If-None-Match": etag}, status=304)
    import_rows(config, make_rows(FIRST), "20180901", "--comment", "back to the start")
    assert app.get("/feed", headers={"If-None-Match": etag}, status=200).headers["ETag"] != etag


# -- /map -------------------------------------------------------------------------------

def seats(svg_bytes) -> dict[str, ET.Element]:
    root = ET.fromstring(svg_bytes)
    return {g.get("data-ifuslot"): g for g in root.iter(f"{SVG}g") if "seat" in g.get("class", "").split()}


def test_map_draws_every_seat_of_the_full_file(app):
    response = app.get("/map/20180715.svg")
    assert response.content_type == "image/svg+xml"
    drawn = seats(response.body)
    served = [line.split("\t")[0].lstrip("#") for line in app.get("/fplane/20180715").text.splitlines()
              if line[:1].isdigit() or line[1:2].isdigit()]
    assert sorted(drawn) == sorted(served)
    assert drawn["025"].get("data-ifuid") == ifu_at(FIRST, 21)


def test_map_of_the_short_file_draws_only_active_ifus(app):
    drawn = seats(app.get("/map/20180715.svg?full_fplane=0").body)
    assert sorted(drawn) == sorted(["000"] + [f"{s:03d}" for s in SWAP])


def test_map_with_a_bad_date_or_before_the_history_is_coded(app):
    assert app.get("/map/junk.svg", status=400).headers["X-FPlane-Code"] == "301"
    assert app.get("/map/20000101.svg", status=404).headers["X-FPlane-Code"] == "302"


# -- / ----------------------------------------------------------------------------------

def test_page_shows_the_version_at_the_date_and_the_changes_since_another(app):
    response = app.get("/?date=20180715&compare=20180615")
    assert response.content_type == "text/html"
    html = response.text
    assert 'id="shown-version" data-version="2"' in html
    assert html.count('<li data-version="') == 3
    assert f"IFU {ifu_at(FIRST, 21)} moved from seat 021 to seat 025" in html
    assert 'href="/diff/20180615/20180715"' in html
    assert 'href="/fplane/20180715?actual_pos=0&amp;full_fplane=1"' in html
    assert "spectrograph &lt;replaced&gt; &amp; more" in html


def test_page_without_a_date_offers_the_file_of_the_instant_shown(app):
    html = app.get("/").text
    assert 'id="shown-version" data-version="3"' in html
    # "now" moves: the download names the instant that was drawn.
    assert 'id="download" href="/fplane/20' in html and "Z?actual_pos=0" in html


def test_page_with_a_bad_date_says_so_and_still_lists_the_versions(app):
    response = app.get("/?date=next+tuesday", status=400)
    assert response.headers["X-FPlane-Code"] == "301"
    assert 'role="alert"' in response.text
    assert response.text.count('<li data-version="') == 3


def test_page_before_the_history_starts_is_a_404_page(app):
    response = app.get("/?date=20000101", status=404)
    assert response.headers["X-FPlane-Code"] == "302"
    assert 'data-version=""' in response.text


def test_page_with_a_bad_date_draws_no_map_of_another_instant(app):
    html = app.get("/?date=next+tuesday&compare=20180615", status=400).text
    assert "next tuesday" in html[html.index('role="alert"'):]
    assert "<svg" not in html and 'id="download"' not in html and "No map shown" in html


def inline_map(html: str):
    return ET.fromstring(html[html.index("<svg"):html.index("</svg>") + len("</svg>")])


def test_page_comparing_two_instants_rings_the_changed_seats_and_links_each_change_to_its_seat(app):
    html = app.get("/?date=20180715&compare=20180615").text
    drawn = seats(ET.tostring(inline_map(html)))
    changed = sorted(slot for slot, g in drawn.items() if "changed" in g.get("class").split())
    assert changed == ["021", "025"]                 # the two seats of the swap
    assert 'href="#seat-021"' in html and 'href="#seat-025"' in html
    assert drawn["021"].get("id") == "seat-021"
    assert "changed since 2018-06-15T05:00:00Z (2 seats)" in html
    # The drawing alone shows the same, from the link under the map.
    link = html[html.index('href="/map/'):].split('"')[1].replace("&amp;", "&")
    assert "compare=20180615" in link and "labels=all" in link
    alone = seats(app.get(link).body)
    assert sorted(s for s, g in alone.items() if "changed" in g.get("class").split()) == changed


def test_page_with_measured_positions_marks_the_measured_seats_with_their_offsets(config, app):
    measured = measured_positions([32, 33])
    path = config.parent / "positions.txt"
    # A short file, as astrometry writes it: the active seats, each at its measured position.
    path.write_text(fplane.render_fplane(make_rows(ANOTHER, positions=measured), [], full=False))
    status, _, err = run_admin(config, "import", str(path), "--valid-from", "20180810", "--positions")
    assert status == 0, err
    html = app.get("/?date=20180815&actual_pos=1").text
    drawn = seats(ET.tostring(inline_map(html)))
    marked = sorted(slot for slot, g in drawn.items() if "measured" in g.get("class").split())
    assert marked == sorted(f"{s:03d}" for s in ANOTHER)
    arrows = sorted(slot for slot, g in drawn.items()
                    if any(p.get("class") == "offset" for p in g.iter(f"{SVG}path")))
    assert arrows == ["032"]     # the others were measured where they should be
    assert "arrow: offset from nominal \u00d7 40" in html
    # Nominal positions, or measured ones before any were taken: nothing marked, and said so.
    nominal = seats(ET.tostring(inline_map(app.get("/?date=20180815").text)))
    assert not [g for g in nominal.values() if "measured" in g.get("class").split()]
    assert "no measured positions at this instant" in app.get("/?date=20180715&actual_pos=1").text


@pytest.mark.parametrize("labels, lines", [("all", 3), ("ifu", 2), ("spectrograph", 2)])
def test_labels_choose_what_the_seats_show_on_the_page_and_the_drawing_alone(app, labels, lines):
    specid = f"{SWAP[21][0]:03d}"
    html = app.get(f"/?date=20180715&labels={labels}").text
    for svg in (ET.tostring(inline_map(html)), app.get(f"/map/20180715.svg?labels={labels}").body):
        texts = [t.text for t in seats(svg)["021"].iter(f"{SVG}text")]
        assert len(texts) == lines and (specid in texts) == (labels != "ifu")
    assert f"labels={labels}" in html[html.index('id="timeline"'):]   # kept by the links


def test_an_unknown_labels_value_is_a_coded_bad_parameter(app):
    for path in ("/?labels=specid", "/map/20180715.svg?labels=specid"):
        response = app.get(path, status=400)
        assert response.headers["X-FPlane-Code"] == "306" and "labels must be" in response.text


def test_the_plain_text_index_is_still_there_for_terminals(app):
    assert app.get("/?format=txt").text.startswith("100 fplaneserver")


# -- CORS -------------------------------------------------------------------------------

@pytest.fixture
def cors_app(tmp_path):
    config = write_config(tmp_path, Server={"cors_origins": "https://dash.example.org http://localhost:3000"})
    init_store(config)
    import_rows(config, make_rows(FIRST), "20180601")
    return test_app(config)


def test_get_from_an_allowed_origin_may_read_the_answer_and_its_codes(cors_app):
    response = cors_app.get("/fplane/20180701", headers={"Origin": "https://dash.example.org"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example.org"
    assert "X-FPlane-Code" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers.getall("Vary")
    # The cached answer for a second origin names that origin, not the first.
    again = cors_app.get("/fplane/20180701", headers={"Origin": "http://localhost:3000"})
    assert again.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


def test_get_from_another_origin_is_not_shared(cors_app):
    response = cors_app.get("/fplane/20180701", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_allows_reading_only(cors_app):
    preflight = cors_app.options("/fplane/latest", headers={
        "Origin": "https://dash.example.org", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "If-None-Match"})
    assert preflight.status_int == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://dash.example.org"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert preflight.headers["Access-Control-Allow-Headers"] == "if-none-match"
    for method in ("POST", "PUT", "DELETE"):
        refused = cors_app.options("/fplane", headers={
            "Origin": "https://dash.example.org", "Access-Control-Request-Method": method})
        assert "Access-Control-Allow-Origin" not in refused.headers
        assert "Access-Control-Allow-Methods" not in refused.headers


def test_posts_never_carry_cors_headers(cors_app):
    response = cors_app.post("/fplane", {"station_id": "x"}, headers={"Origin": "https://dash.example.org"},
                             expect_errors=True)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_without_cors_origins_nothing_is_shared(app):
    response = app.get("/fplane/20180701", headers={"Origin": "https://dash.example.org"})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = app.options("/history", headers={"Origin": "https://dash.example.org",
                                                 "Access-Control-Request-Method": "GET"})
    assert preflight.status_int == 204 and "Access-Control-Allow-Origin" not in preflight.headers
    assert preflight.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_page_lists_every_drawn_seat_in_a_table_with_its_spectrograph(app):
    html = app.get("/?date=20180715").text
    table = html[html.index('<details id="seat-table">'):html.index("</details>", html.index('id="seat-table"'))]
    specid, specslot, ifuid = SWAP[21]
    assert (f"<tr><td>021</td><td>{ifuid:03d}</td><td>{specid:03d}</td><td>{specslot:03d}</td>"
            in table)
    assert table.count("<tr>") == 1 + len(seats(app.get("/map/20180715.svg").body))


@pytest.mark.parametrize("path", ["/history?format=%ff", "/?date=%ff", "/ifu/073?format=%ff",
                                  "/diff/20180601/20180701?actual_pos=%ff", "/map/20180701.svg?x=%ff"])
def test_a_query_that_is_not_utf8_is_code_306_not_an_internal_error(app, path):
    response = app.get(path, status=400)
    assert response.headers["X-FPlane-Code"] == "306"
    assert "not valid UTF-8" in response.text
