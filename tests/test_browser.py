"""The page at / in a real browser: the demo history served by uWSGI, read by headless Chromium.

Uses Debian's chromium and chromium-driver (.ci/run installs them) through Selenium, with
the driver named explicitly so Selenium Manager never downloads anything. Screenshots go
to tests/artifacts/ (ignored by git) for a person to look at.
"""

import base64
import json
import re
import subprocess
import sys
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support import REPO
from tests.test_deploy import running_uwsgi
from wsgi import fplane

try:
    from selenium import webdriver
    from selenium.common.exceptions import (JavascriptException, StaleElementReferenceException,
                                            WebDriverException)
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported by the browser fixture as a failure, not a silent skip
    webdriver = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "tests" / "artifacts"
# Offline machine: without the background-networking flags Chromium keeps trying to reach
# Google (component updates, sync, QUIC probes) and logs every refusal.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
LAPTOP = (1366, 900)
PHONE = (420, 900)
WAIT = 10  # seconds for a navigation; the page answers in milliseconds
ISO_Z = "%Y-%m-%dT%H:%M:%SZ"  # instants as /history?format=json writes them
INSTALL_HINT = ("install Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver; .ci/run does it)")


# -- the service and the browser ----------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """uWSGI serving the demo history that `make run` loads."""
    root = tmp_path_factory.mktemp("browser")
    config = root / "config.ini"
    demo = subprocess.run([sys.executable, str(REPO / "examples" / "demo.py"), "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    with running_uwsgi(config, root / "uwsgi.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {INSTALL_HINT}")
    if webdriver is None:
        pytest.fail("selenium is not installed: run the tests with `make test` (test extras)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # should Selenium Manager ever run, it must not download
        try:
            driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        except WebDriverException as err:
            pytest.fail(f"Chromium did not start ({err.msg}): {INSTALL_HINT}")
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium):
    """The browser at laptop size, whatever an earlier test did to it."""
    viewport(chromium, *LAPTOP)
    return chromium


def viewport(driver, width: int, height: int, mobile: bool = False) -> None:
    # The exact viewport (a window size would include Chromium's own frame), and for the
    # phone a mobile device, so the page's <meta name="viewport"> applies as on a phone.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    return path


def full_page_screenshot(driver, name: str) -> Path:
    """The whole page, not just the viewport: a phone layout is judged top to bottom."""
    ARTIFACTS.mkdir(exist_ok=True)
    width, height = driver.execute_script(
        "const e = document.scrollingElement; return [e.scrollWidth, e.scrollHeight];")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


# -- what the server says, read without the browser ---------------------------------------

def fetch(url: str) -> tuple[dict, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(response.headers), response.read().decode()


def history(base: str) -> list[dict]:
    return json.loads(fetch(f"{base}/history?format=json")[1])["versions"]


_COMMENTED_SEAT = re.compile(r"#([0-9]{3})\t")


def file_seats(text: str) -> dict[str, tuple[str, str, bool]]:
    """Every seat of a full fplane file: IFUSLOT -> (SPECID, IFUID, listed uncommented).

    Read as a person reads the file: a row is a seat; an inactive seat is the same row
    commented out with '#' directly before its IFUSLOT."""
    seats = {}
    for line in text.splitlines():
        commented = _COMMENTED_SEAT.match(line)
        if line.startswith("#") and not commented:
            continue  # header or column names
        fields = (line[1:] if commented else line).split()
        ifuslot, specid, ifuid = fields[0], fields[3], fields[5]
        assert ifuslot not in seats, f"seat {ifuslot} twice in the served file"
        seats[ifuslot] = (specid, ifuid, not commented)
    return seats


# -- what the browser shows ---------------------------------------------------------------

def shown_version(driver) -> str | None:
    # Read in one script: an element found before a navigation would go stale mid-read.
    return driver.execute_script(
        "const p = document.getElementById('shown-version'); return p && p.dataset.version;")


def map_seats(driver) -> dict[str, dict[str, str]]:
    """The seats drawn in the inline svg: IFUSLOT -> its data-* attributes."""
    seats = driver.execute_script("""
        return Array.from(document.querySelectorAll('figure#map svg g.seat'), g => ({
            ifuslot: g.dataset.ifuslot, ifuid: g.dataset.ifuid, specid: g.dataset.specid,
            state: g.dataset.state}));""")
    by_slot = {s["ifuslot"]: s for s in seats}
    assert len(by_slot) == len(seats), "a seat is drawn twice"
    return by_slot


def assert_map_is_the_file(driver, base: str) -> dict[str, dict[str, str]]:
    """The map shows exactly the seats of the full file the page's download link gives."""
    href = driver.find_element(By.ID, "download").get_attribute("href")
    assert parse_qs(urlparse(href).query).get("full_fplane") == ["1"], href
    headers, text = fetch(href)
    assert headers["X-FPlane-Version"] == shown_version(driver)
    seats = file_seats(text)
    drawn = map_seats(driver)
    assert sorted(drawn) == sorted(seats)
    for seat, (specid, ifuid, listed) in seats.items():
        assert (drawn[seat]["specid"], drawn[seat]["ifuid"]) == (specid, ifuid), seat
        # A VIRUS seat is drawn active exactly when the file lists it uncommented.
        if int(seat) in fplane.VIRUS_SLOTS:
            assert (drawn[seat]["state"] == "active") == listed, (seat, drawn[seat])
    return drawn


def open_page(driver, url: str) -> None:
    driver.get(url)
    forms = driver.find_elements(By.ID, "view-form")
    assert forms and forms[0].is_displayed(), \
        f"{url} shows no form#view-form; it starts: {driver.page_source[:300]!r}"


# -- the tests ----------------------------------------------------------------------------

def test_the_page_shows_the_map_of_the_file_served_at_the_same_instant(base, browser):
    open_page(browser, base + "/")
    versions = history(base)
    assert shown_version(browser) == str(versions[-1]["version"])  # now: the newest version
    drawn = assert_map_is_the_file(browser, base)
    assert len(drawn) > 82  # 000, the grid, LRS2 and the special rows of a full file
    assert browser.find_element(By.CSS_SELECTOR, "figure#map svg").is_displayed()
    screenshot(browser, "browser-laptop.png")


def test_the_timeline_lists_every_version_newest_first(base, browser):
    open_page(browser, base + "/")
    versions = history(base)
    items = browser.find_elements(By.CSS_SELECTOR, "ol#timeline > li[data-version]")
    assert [li.get_attribute("data-version") for li in items] == \
        [str(v["version"]) for v in reversed(versions)]
    for li, version in zip(items, reversed(versions)):
        assert version["comment"] in li.text
        view = li.find_element(By.CSS_SELECTOR, "a.view").get_attribute("href")
        assert parse_qs(urlparse(view).query)["date"] == [version["valid_from"]]
    current = browser.find_elements(By.CSS_SELECTOR, 'ol#timeline > li[aria-current="true"]')
    assert [li.get_attribute("data-version") for li in current] == [shown_version(browser)]
    # each version but the first links to what changed since the one before
    for li, previous in zip(items, list(reversed(versions))[1:]):
        diff = li.find_element(By.CSS_SELECTOR, 'a[href*="/diff/"]').get_attribute("href")
        assert urlparse(diff).path == f"/diff/{previous['valid_from']}/{li_valid_from(li)}"
    assert not items[-1].find_elements(By.CSS_SELECTOR, 'a[href*="/diff/"]')


def li_valid_from(li) -> str:
    view = li.find_element(By.CSS_SELECTOR, "a.view").get_attribute("href")
    return parse_qs(urlparse(view).query)["date"][0]


def test_typing_an_earlier_date_shows_that_version(base, browser):
    open_page(browser, base + "/")
    versions = history(base)
    now_version, now_map = shown_version(browser), map_seats(browser)
    earlier = versions[1]  # "6 IFUs installed": seats 041-046 differ from now
    date = midway(earlier)

    field = browser.find_element(By.ID, "date")
    field.clear()
    field.send_keys(date)
    button = browser.find_element(By.CSS_SELECTOR, '#view-form button[type="submit"]')
    button.click()
    # Polled while the browser swaps documents: a script may run in the one going away.
    ignored = (JavascriptException, StaleElementReferenceException)
    WebDriverWait(browser, WAIT, ignored_exceptions=ignored).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
        and shown_version(d) not in (None, now_version))

    assert shown_version(browser) == str(earlier["version"])
    assert parse_qs(urlparse(browser.current_url).query)["date"] == [date]
    assert browser.find_element(By.ID, "date").get_attribute("value") == date
    earlier_map = assert_map_is_the_file(browser, base)
    assert earlier_map != now_map
    current = browser.find_element(By.CSS_SELECTOR, 'ol#timeline > li[aria-current="true"]')
    assert current.get_attribute("data-version") == str(earlier["version"])
    screenshot(browser, "browser-earlier-date.png")


def midway(version: dict) -> str:
    """An instant inside ``version`` (a closed one), written as the contract's ISO Z."""
    start, end = (datetime.strptime(version[k], ISO_Z).replace(tzinfo=timezone.utc)
                  for k in ("valid_from", "valid_until"))
    return (start + (end - start) / 2).strftime(ISO_Z)


def test_on_a_phone_the_page_fits_the_width_and_shows_the_map(base, browser):
    viewport(browser, *PHONE, mobile=True)
    open_page(browser, base + "/")
    width, inner = browser.execute_script(
        "return [document.scrollingElement.scrollWidth, window.innerWidth];")
    assert inner == PHONE[0]
    assert width <= inner, f"horizontal scroll on a phone: the page is {width} px wide"
    figure = browser.find_element(By.CSS_SELECTOR, "figure#map")
    svg = figure.find_element(By.TAG_NAME, "svg")
    assert svg.is_displayed()
    left, right = box(browser, figure)[:2]
    assert 0 <= left and right <= inner, f"the map's figure sticks out of the screen: {left}..{right}"
    # The whole plane scaled to the width: nothing of it hidden beyond the screen's edge.
    map_left, map_right, map_width, map_height = box(browser, svg)
    assert left <= map_left and map_right <= right, "the drawing overflows its figure"
    assert map_width >= 0.75 * inner and map_height >= 0.75 * map_width, \
        f"the map is drawn too small for a phone: {map_width}x{map_height} px"
    full_page_screenshot(browser, "browser-phone.png")


def box(driver, element) -> list[float]:
    return driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return [r.left, r.right, r.width, r.height];", element)


def test_tab_from_the_top_reaches_the_date_field_and_focus_is_visible(base, browser):
    open_page(browser, base + "/")
    field = browser.find_element(By.ID, "date")
    unfocused = focus_style(browser, field)
    # A freshly loaded page: focus is on the document, the first Tab goes to its first stop.
    for _ in range(20):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element.get_attribute("id") == "date":
            break
    else:
        pytest.fail("20 presses of Tab never reached the date field")
    assert browser.execute_script("return arguments[0].matches(':focus-visible');", field)
    assert focus_style(browser, field) != unfocused, "the focused date field looks unfocused"


def focus_style(driver, element) -> tuple:
    return tuple(driver.execute_script(
        "const s = getComputedStyle(arguments[0]);"
        "return [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow, s.borderColor];",
        element))


# -- every state of the page, as a person looks at it --------------------------------------

# The demo history (examples/demo.py): versions from 20180105, 20180212 (IFUs installed at
# seats 041-046), 20180319 (IFUs 073 and 039 swap seats 021 and 024), 20180423, 20180611;
# measured positions of the 36 active IFUs from 20180507.
STATES = {
    "now": "/",
    "compare": "/?date=20180401&compare=20180201",
    "measured": "/?date=20180601&actual_pos=1",
    "labels-ifu": "/?date=20180601&labels=ifu",
    "short-file": "/?date=20180601&full_fplane=0",
    "bad-date": "/?date=next+tuesday",
}
CHANGED_20180201_20180401 = ["021", "024", "041", "042", "043", "044", "045", "046"]
DEVICES = {"laptop": (*LAPTOP, False), "phone": (*PHONE, True), "small-phone": (375, 812, True)}


def layout_facts(driver) -> dict:
    """What a person would see wrong at a glance, measured in the browser."""
    return driver.execute_script("""
        const inner = window.innerWidth, doc = document.scrollingElement;
        const fits = e => { const r = e.getBoundingClientRect();
                            return r.left >= 0 && r.right <= inner + 0.5; };
        const clipped = e => e.scrollWidth > e.clientWidth + 1 || !fits(e);
        const svg = document.querySelector('figure#map svg');
        const heading = svg && svg.querySelector('text.heading');
        let headingInside = null;
        if (heading) {
            const s = svg.getBoundingClientRect(), h = heading.getBoundingClientRect();
            headingInside = h.left >= s.left && h.right <= s.right + 0.5 && h.width > 0;
        }
        // Gaps: the largest vertical distance between one panel and the next, in page order.
        const panels = Array.from(document.querySelectorAll(
            'header, .message, .controls, .plane, .timeline, footer'))
            .map(e => e.getBoundingClientRect()).filter(r => r.height > 0);
        let gap = 0;
        if (inner < 1024) for (let i = 1; i < panels.length; i++)
            gap = Math.max(gap, panels[i].top - panels[i - 1].bottom);
        return {
            inner: inner, pageWidth: doc.scrollWidth,
            titlesClipped: Array.from(document.querySelectorAll('h1, h2'))
                .filter(clipped).map(e => e.textContent),
            map: svg && {width: svg.getBoundingClientRect().width,
                         figure: svg.parentElement.getBoundingClientRect().width,
                         fits: fits(svg)},
            svgHeadingInside: headingInside,
            largestGap: gap,
        };
    """)


@pytest.mark.parametrize("device", list(DEVICES))
@pytest.mark.parametrize("state", list(STATES))
def test_every_page_state_fits_the_screen(base, browser, device, state):
    width, height, mobile = DEVICES[device]
    viewport(browser, width, height, mobile=mobile)
    open_page(browser, base + STATES[state])
    facts = layout_facts(browser)
    full_page_screenshot(browser, f"page-{device}-{state}.png")
    assert facts["inner"] == width
    assert facts["pageWidth"] <= width, f"horizontal scroll: the page is {facts['pageWidth']} px wide"
    assert facts["titlesClipped"] == [], f"titles clipped: {facts['titlesClipped']}"
    assert facts["largestGap"] <= 48, f"a {facts['largestGap']} px empty gap between panels"
    if state == "bad-date":
        assert facts["map"] is None
        return
    drawn = facts["map"]
    assert drawn["fits"] and drawn["width"] <= width
    # Scaled to the width available, on a phone too: the whole plane without scrolling.
    assert drawn["width"] >= 0.98 * drawn["figure"]
    assert facts["svgHeadingInside"], "the drawing's title is cut off"


def test_an_unreadable_date_says_so_and_shows_no_map(base, browser):
    for device, (width, height, mobile) in DEVICES.items():
        viewport(browser, width, height, mobile=mobile)
        open_page(browser, base + STATES["bad-date"])
        alert = browser.find_element(By.CSS_SELECTOR, '[role="alert"]')
        assert alert.is_displayed() and "next tuesday" in alert.text
        top = box(browser, alert)
        assert browser.execute_script("return arguments[0].getBoundingClientRect().top",
                                      alert) < height, "the error is below the first screen"
        assert not browser.find_elements(By.CSS_SELECTOR, "svg"), "a map under a date not read"
        assert browser.find_element(By.ID, "plane-heading").text == "No map shown"
        assert top[2] > 0
        screenshot(browser, f"bad-date-{device}-first-screen.png")


def ring_facts(driver) -> dict:
    return driver.execute_script("""
        const out = {};
        for (const g of document.querySelectorAll('figure#map svg g.seat.changed')) {
            const ring = g.querySelector('rect.ring'), seat = g.querySelector('rect');
            const style = getComputedStyle(ring);
            out[g.dataset.ifuslot] = {
                ring: ring.getBoundingClientRect().width, seat: seat.getBoundingClientRect().width,
                stroke: style.stroke, strokeWidth: parseFloat(style.strokeWidth)};
        }
        return out;""")


@pytest.mark.parametrize("device", list(DEVICES))
def test_comparing_rings_the_changed_seats_and_each_change_leads_to_its_seat(base, browser, device):
    width, height, mobile = DEVICES[device]
    viewport(browser, width, height, mobile=mobile)
    open_page(browser, base + STATES["compare"])
    rings = ring_facts(browser)
    assert sorted(rings) == CHANGED_20180201_20180401
    for seat, ring in rings.items():
        assert ring["ring"] > ring["seat"], f"seat {seat}: the ring does not surround it"
        assert ring["stroke"] == "rgb(194, 24, 91)" and ring["strokeWidth"] >= 5, (seat, ring)
    links = browser.find_elements(By.CSS_SELECTOR, "ul#changes li a")
    targets = sorted({urlparse(a.get_attribute("href")).fragment for a in links})
    assert targets and {t.removeprefix("seat-") for t in targets} <= set(CHANGED_20180201_20180401)
    # Follow one, as a person would: the page scrolls to the seat and thickens its ring.
    link = next(a for a in links if a.get_attribute("href").endswith("#seat-024"))
    browser.execute_script("arguments[0].scrollIntoView()", link)
    link.click()
    WebDriverWait(browser, WAIT).until(lambda d: urlparse(d.current_url).fragment == "seat-024")
    seat = browser.find_element(By.ID, "seat-024")
    top, bottom = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom];", seat)
    assert 0 <= top and bottom <= height, f"seat 024 is not on the screen: {top}..{bottom}"
    assert ring_facts(browser)["024"]["strokeWidth"] > rings["024"]["strokeWidth"]
    screenshot(browser, f"compare-{device}-followed-to-seat-024.png")


def test_measured_positions_mark_the_seats_and_draw_their_offsets_with_a_stated_factor(base, browser):
    open_page(browser, base + STATES["measured"])
    facts = browser.execute_script("""
        const svg = document.querySelector('figure#map svg');
        const measured = Array.from(svg.querySelectorAll('g.seat.measured'));
        return {
            measured: measured.length,
            active: svg.querySelectorAll('g.seat.state-active').length,
            // Tail to tip, in screen pixels: the line and its head together.
            arrows: measured.map(g => { const a = g.querySelector('path.offset');
                                        if (!a) return 0;
                                        const l = a.getBoundingClientRect(),
                                              h = g.querySelector('path.offset-head')
                                                   .getBoundingClientRect();
                                        return Math.max(Math.max(l.right, h.right) - Math.min(l.left, h.left),
                                                        Math.max(l.bottom, h.bottom) - Math.min(l.top, h.top)); })
                            .filter(length => length >= 4).length,
            key: svg.querySelector('[data-layer="measured"]').textContent,
            colour: measured.length && getComputedStyle(measured[0].querySelector(
                '.measured-corner')).fill};""")
    # The demo's position set measured every active IFU, each a few tenths of an arcsec off.
    assert facts["measured"] == facts["active"] == 36
    assert facts["arrows"] >= 30, "offset arrows too short to see"
    assert "\u00d7 40" in facts["key"] and "0.5 arcsec" in facts["key"]
    assert facts["colour"] == "rgb(163, 0, 0)"
    screenshot(browser, "measured-laptop-first-screen.png")


def visible_seat_texts(driver, ifuslot: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll("
        "`figure#map svg g.seat[data-ifuslot='${arguments[0]}'] text`), t => t.textContent);",
        ifuslot)


def test_spectrographs_are_labelled_without_hovering_and_the_choice_is_in_the_url(base, browser):
    open_page(browser, base + "/?date=20180601")
    seats = assert_map_is_the_file(browser, base)
    active = [s for s, seat in seats.items() if seat["state"] == "active"]
    for seat in active:
        assert visible_seat_texts(browser, seat) == \
            [seat, seats[seat]["ifuid"], seats[seat]["specid"]], seat
    # Without JavaScript: the form is a GET form, so the choice lands in the URL.
    browser.execute_script("document.getElementById('labels').value = 'ifu';")
    before = browser.current_url
    browser.find_element(By.CSS_SELECTOR, '#view-form button[type="submit"]').click()
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url != before)
    assert parse_qs(urlparse(browser.current_url).query)["labels"] == ["ifu"]
    assert visible_seat_texts(browser, active[0]) == [active[0], seats[active[0]]["ifuid"]]
    timeline_link = browser.find_element(By.CSS_SELECTOR, "ol#timeline a.view")
    assert parse_qs(urlparse(timeline_link.get_attribute("href")).query)["labels"] == ["ifu"]


def test_a_printout_shows_the_drawing_across_the_page_with_its_key(base, browser):
    open_page(browser, base + STATES["compare"])
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        facts = browser.execute_script("""
            const shown = sel => { const e = document.querySelector(sel);
                                   return !!e && e.getBoundingClientRect().height > 0; };
            const svg = document.querySelector('figure#map svg').getBoundingClientRect();
            const changes = document.getElementById('changes').getBoundingClientRect();
            return {form: shown('#view-form'), timeline: shown('ol#timeline'),
                    key: shown('figure#map svg .legend'), changes: changes.height > 0,
                    mapFirst: svg.top < changes.top,
                    width: svg.width, page: document.documentElement.clientWidth};""")
        full_page_screenshot(browser, "print-laptop-compare.png")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    # On paper: the drawing first and across the page, its key, then the list of changes.
    assert not facts["form"] and not facts["timeline"]
    assert facts["key"] and facts["changes"] and facts["mapFirst"]
    assert facts["width"] >= 0.9 * facts["page"]
