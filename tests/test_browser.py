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

from tests.support import REPO, required_programs
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
LAPTOP = (1280, 900)
PHONE = (375, 812)
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
    required_programs(str(CHROMIUM), str(CHROMEDRIVER), install=INSTALL_HINT)
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
    # The map may scroll inside its figure, but the figure itself stays on the screen.
    assert 0 <= left and right <= inner, f"the map's figure sticks out of the screen: {left}..{right}"
    map_width, map_height = box(browser, svg)[2:]
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
