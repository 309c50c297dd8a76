"""wsgi/timeline.py: the version table and an IFU's life, from plain Versions and rows."""

from dataclasses import replace

from wsgi import timeline
from wsgi.fplane import Row
from wsgi.store import Version

DAY = 86_400_000_000
T0 = 1_530_939_600_000_000  # 2018-07-07T05:00:00Z


def version(vid, day, recorded_day=None, until_day=None, comment="", station="admin", active=78):
    return Version(vid, T0 + day * DAY, T0 + (recorded_day if recorded_day is not None else day) * DAY,
                   station, comment, "", vid, active,
                   None if until_day is None else T0 + until_day * DAY)


def test_a_correction_with_the_same_valid_from_supersedes_the_earlier_record():
    versions = [version(1, 0, until_day=5), version(2, 5, until_day=9), version(4, 5, recorded_day=7, until_day=9),
                version(3, 9)]
    assert timeline.superseded_by(versions) == {2: 4}
    assert [v.id for v in timeline.effective(versions)] == [1, 4, 3]


def test_a_version_corrected_twice_points_at_the_correction_in_effect():
    versions = [version(1, 0), version(2, 0, recorded_day=1), version(3, 0, recorded_day=2)]
    assert timeline.superseded_by(versions) == {1: 3, 2: 3}
    assert [v.id for v in timeline.effective(versions)] == [3]


def test_history_table_has_one_line_per_version_and_flags_superseded_ones():
    versions = [version(1, 0, until_day=5, comment="first light"),
                version(2, 5, comment="swap\nforged line"), version(3, 5, recorded_day=6)]
    lines = timeline.history_text(versions).splitlines()
    assert lines[0].startswith("# version valid_from")
    assert len(lines) == 4
    assert lines[1].split()[:3] == ["1", "2018-07-07T05:00:00Z", "2018-07-12T05:00:00Z"]
    assert lines[1].endswith("first light")
    # A newline in a station's comment cannot forge a row.
    assert "[superseded by version 3] swap forged line" in lines[2]
    assert lines[3].split()[2] == "open"


def test_history_table_columns_stay_aligned_whatever_the_values():
    versions = [version(1, 0, until_day=5, station="tcs", comment="first light"),
                version(2, 5, station="astrometry-station-west-dome", comment="positions")]
    # An instant with microseconds is wider than a whole-second one.
    versions[1] = replace(versions[1], valid_from=versions[1].valid_from + 250_000)

    header, *rows = timeline.history_text(versions).splitlines()

    for name in ("valid_from", "valid_until", "recorded_at", "station", "comment"):
        start = header.index(name)
        assert all(row[start - 1] == " " and row[start] != " " for row in rows), (name, rows)
    assert rows[1].endswith("astrometry-station-west-dome positions")


def test_version_json_uses_the_contract_words():
    document = timeline.version_json(version(7, 1, until_day=2, comment="c", station="tcs"), 9)
    assert document == {
        "version": 7, "valid_from": "2018-07-08T05:00:00Z", "valid_until": "2018-07-09T05:00:00Z",
        "recorded_at": "2018-07-08T05:00:00Z", "station": "tcs", "comment": "c",
        "active_ifus": 78, "superseded_by": 9,
    }


def rows_with(seat, specid, specslot=200, ifuid=73, active=True):
    return (Row(0, 0.0, 0.0, 900, 900, 900), Row(seat, 0.0, 0.0, specid, specslot, ifuid, active=active))


def test_ifu_stays_merge_versions_that_place_it_alike_and_split_on_any_change():
    versions = [version(1, 0, until_day=1), version(2, 1, until_day=2), version(3, 2, until_day=3),
                version(4, 3, until_day=4), version(5, 4)]
    placements = {1: rows_with(21, 315), 2: rows_with(21, 315, ifuid=73),
                  3: rows_with(24, 315),                  # moved
                  4: (Row(0, 0.0, 0.0, 900, 900, 900),),  # taken out
                  5: rows_with(24, 0, active=False)}      # back, without a spectrograph
    stays = timeline.ifu_stays(73, versions, lambda v: placements[v.id])
    assert [(s.seat, s.specid, s.active, s.since_version) for s in stays] == [
        (21, 315, True, 1), (24, 315, True, 3), (24, 0, False, 5)]
    assert stays[0].valid_until == T0 + 2 * DAY
    assert stays[1].valid_until == T0 + 3 * DAY   # ends when version 4 took it out
    assert stays[2].valid_until is None
    text = timeline.stays_text(73, stays)
    assert text.splitlines()[0] == "# IFU 073: where it sat, and on which spectrograph, over time"
    assert text.splitlines()[2].split() == ["2018-07-07T05:00:00Z", "2018-07-09T05:00:00Z",
                                            "021", "315", "200", "active", "1"]
    assert stays[2].as_json()["valid_until"] is None and stays[2].as_json()["ifuslot"] == "024"


def test_an_ifu_never_placed_has_no_stays():
    assert timeline.ifu_stays(5, [version(1, 0)], lambda v: rows_with(21, 315)) == []
