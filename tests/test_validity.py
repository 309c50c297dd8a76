"""The validity an fplane answer announces is that of the whole answer (issue 20, item 1):
X-FPlane-Valid-From / -Until, ETag and Cache-Control, through WebTest on a real store."""

import time
from datetime import datetime, timezone

import pytest

from tests.fplane_samples import make_rows, measured_positions, swap_ifus
from tests.support import import_rows, init_store, run_admin, test_app, write_config
from wsgi import fplane
from wsgi.reading import MAX_AGE_CLOSED, MAX_AGE_OPEN, MAX_AGE_PINNED, answer_validity
from wsgi.store import PositionSet, Version

FIRST = make_rows()
SECOND = swap_ifus(FIRST, 21, 24)


def _version(valid_from, valid_until):
    return Version(1, valid_from, 0, "s", "", "", 1, 0, valid_until)


def _position_set(valid_from, valid_until):
    return PositionSet(7, valid_from, 0, "s", "", "", valid_until)


@pytest.mark.parametrize("version, position_set, actual, first_set, expected", [
    ((10, 50), None, False, None, (10, 50)),
    ((10, 50), (20, 30), False, None, (10, 50)),       # nominal: positions do not matter
    ((10, 50), (20, 30), True, None, (20, 30)),        # inside
    ((10, 50), (0, 30), True, None, (10, 30)),         # set started before the version
    ((10, 50), (20, None), True, None, (20, 50)),      # open set, closed version
    ((10, None), (20, None), True, None, (20, None)),  # both open
    ((10, None), None, True, 40, (10, 40)),            # no set yet: until the first one starts
    ((10, 30), None, True, 40, (10, 30)),
    ((10, None), None, True, None, (10, None)),        # no set at all
])
def test_answer_validity_is_the_intersection(version, position_set, actual, first_set, expected):
    validity = answer_validity(_version(*version), position_set and _position_set(*position_set),
                               actual, first_set, pinned=False)
    assert (validity.valid_from, validity.valid_until) == expected


@pytest.fixture
def app(tmp_path):
    config = write_config(tmp_path)
    init_store(config)
    import_rows(config, FIRST, "20180601")
    import_rows(config, SECOND, "20180801")
    # Measured positions from 20180615 and again from 20180701 (two sets in the first version)
    for valid_from, slots in (("20180615", [21, 22]), ("20180701", [23])):
        path = tmp_path / f"positions-{valid_from}.txt"
        path.write_text(fplane.render_fplane(make_rows(positions=measured_positions(slots)), (), full=False))
        status, out, err = run_admin(config, "import", str(path), "--valid-from", valid_from, "--positions")
        assert status == 0, err
    return test_app(config)


def _interval(response):
    return response.headers["X-FPlane-Valid-From"], response.headers["X-FPlane-Valid-Until"]


def test_nominal_answers_announce_the_versions_interval(app):
    assert _interval(app.get("/fplane/20180620")) == ("2018-06-01T05:00:00Z", "2018-08-01T05:00:00Z")


def test_measured_answers_announce_the_intersection_with_the_position_set(app):
    before_any_set = app.get("/fplane/20180605?actual_pos=1")
    assert _interval(before_any_set) == ("2018-06-01T05:00:00Z", "2018-06-15T05:00:00Z")
    first_set = app.get("/fplane/20180620?actual_pos=1")
    assert _interval(first_set) == ("2018-06-15T05:00:00Z", "2018-07-01T05:00:00Z")
    second_set_first_version = app.get("/fplane/20180710?actual_pos=1")
    assert _interval(second_set_first_version) == ("2018-07-01T05:00:00Z", "2018-08-01T05:00:00Z")
    second_set_second_version = app.get("/fplane/20180810?actual_pos=1")
    assert _interval(second_set_second_version) == ("2018-08-01T05:00:00Z", "open")
    assert second_set_second_version.headers["Cache-Control"] == f"public, max-age={MAX_AGE_OPEN}"
    assert first_set.headers["Cache-Control"] == f"public, max-age={MAX_AGE_CLOSED}"


def test_etag_names_the_answer_not_the_instant_asked_for(app):
    # Two instants of one interval: one answer, one ETag, so a cached copy revalidates.
    a = app.get("/fplane/20180620?actual_pos=1")
    b = app.get("/fplane/2018-06-25T03:00:00Z?actual_pos=1")
    assert a.headers["ETag"] == b.headers["ETag"]
    app.get("/fplane/2018-06-25T03:00:00Z?actual_pos=1", headers={"If-None-Match": a.headers["ETag"]},
            status=304)
    # Same version, next position set: a different answer, a different ETag; nominal is one.
    c = app.get("/fplane/20180710?actual_pos=1")
    assert c.headers["X-FPlane-Version"] == a.headers["X-FPlane-Version"]
    assert c.headers["ETag"] != a.headers["ETag"]
    app.get("/fplane/20180710?actual_pos=1", headers={"If-None-Match": a.headers["ETag"]}, status=200)
    assert app.get("/fplane/20180620").headers["ETag"] == app.get("/fplane/20180710").headers["ETag"]


def test_a_known_at_still_to_come_is_not_pinned(app):
    # What is recorded until 2100 is not known yet: the answer may still change.
    future = app.get("/fplane/20180620?actual_pos=1&known_at=2100-01-01")
    assert future.headers["Cache-Control"] == f"public, max-age={MAX_AGE_CLOSED}"
    now = app.get("/fplane/20180620?actual_pos=1&known_at=now")
    assert now.headers["Cache-Control"] == f"public, max-age={MAX_AGE_CLOSED}"


def test_pinned_answers_live_a_year(app):
    time.sleep(0.01)
    known_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.01)
    answer = app.get(f"/fplane/20180620?actual_pos=1&known_at={known_at}")
    assert answer.headers["Cache-Control"] == f"public, max-age={MAX_AGE_PINNED}"
    assert _interval(answer) == ("2018-06-15T05:00:00Z", "2018-07-01T05:00:00Z")
    assert answer.headers["X-FPlane-Timezone"] == "America/Chicago"
