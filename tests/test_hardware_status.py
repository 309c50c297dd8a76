"""The update side: hardware status -> new configuration (wsgi/hardware_status.py).

Reads like contract.md section 5 and domain.md "Special rows" / "The update side":
statuses are built here from tests.fplane_samples configurations, the way the TCS
would describe them.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fplane_samples import (
    LRS2_ROWS,
    SPECIAL_ROWS,
    SPECIAL_SLOTS,
    entry,
    grid_position,
    make_rows,
    measured_positions,
)
from tests.fplane_samples import status_from_rows as _status_from_rows
from wsgi import codes
from wsgi.fplane import (
    ALWAYS_EMPTY_SLOTS,
    GRID_SLOTS,
    REFERENCE_ROW,
    VIRUS_SLOTS,
    Row,
    canonical_order,
    parse_fplane,
    parse_static_rows,
    render_fplane,
    render_row,
)
from wsgi.hardware_status import (
    MAX_POSITION_OFFSET,
    HardwareStatus,
    SeatEntry,
    UpdateError,
    build_configuration,
    check_timestamp,
    deactivated_fraction,
    decode_update,
    hold_reason,
    new_hardware,
    parse_status,
    positions_from_update,
    PositionsUpdate,
    merged_positions,
)

TZ = ZoneInfo("America/Chicago")
UTC = timezone.utc
TIMESTAMP = "2018-07-15T17:02:11Z"
TIMESTAMP_DT = datetime(2018, 7, 15, 17, 2, 11, tzinfo=UTC)
STATIC_ROWS = canonical_order((REFERENCE_ROW, *LRS2_ROWS, *SPECIAL_ROWS))
FIXTURES = Path("/work/shared/fixtures/fplane")


# --------------------------------------------------------------------------
# Statuses as the TCS would post them

def status_from_rows(rows, timestamp=TIMESTAMP) -> dict:
    return _status_from_rows(rows, timestamp)


def status(*entries, timestamp=TIMESTAMP) -> dict:
    return {"timestamp": timestamp, "spectrographs": list(entries)}


def build(status_dict, previous=None, static=STATIC_ROWS) -> tuple[Row, ...]:
    return build_configuration(parse_status(status_dict, TZ), previous, static)


def by_seat(rows) -> dict[int, Row]:
    return {r.ifuslot: r for r in rows}


def problems_of(status_dict) -> tuple[str, ...]:
    with pytest.raises(UpdateError) as info:
        parse_status(status_dict, TZ)
    assert info.value.code == codes.INVALID_DATA
    return info.value.problems


def update_text(config=None, commit=True, **extra) -> str:
    data = {"config": status(entry(21, 315, 218, 73)) if config is None else config,
            "commit": commit, **extra}
    return json.dumps(data)


# --------------------------------------------------------------------------
# Building the configuration

def test_round_trip_rebuilds_the_configuration_with_specials_carried_over():
    rows = make_rows()
    assert build(status_from_rows(rows), previous=rows) == rows
    # No previous version: the specials come from the site's static rows.
    assert build(status_from_rows(rows), previous=None) == rows


def test_round_trip_through_the_posted_json_text():
    rows = make_rows()
    data = decode_update(json.dumps({"config": status_from_rows(rows), "commit": False}))
    assert data["commit"] is False
    assert build(data["config"], previous=rows) == rows


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="no fixture directory")
@pytest.mark.parametrize("name", ["full_commented.txt", "full_uncommented.txt"])
def test_a_status_derived_from_a_real_full_file_rebuilds_it(name):
    text = (FIXTURES / name).read_text(encoding="utf-8")
    real = parse_fplane(text).rows
    static, problems = parse_static_rows(
        "".join(render_row(r) + "\n" for r in real if r.ifuslot not in VIRUS_SLOTS
                and r.ifuslot not in ALWAYS_EMPTY_SLOTS))
    assert problems == ()
    assert build(status_from_rows(real), previous=real) == real
    assert build(status_from_rows(real), previous=None, static=static) == real
    if name == "full_commented.txt":
        rebuilt = render_fplane(build(status_from_rows(real), previous=real), [], full=True)
        assert rebuilt.split("\n")[1:] == [l for l in text.split("\n") if not l.startswith("# ")]


def test_a_seat_listed_with_specid_000_keeps_its_bundle_inactive():
    rows = build(status(entry(13, 0, 241, 43), entry(21, 315, 218, 73)))
    seats = by_seat(rows)
    assert seats[13] == Row(13, -450.0, 150.0, 0, 241, 43, active=False)
    assert seats[21] == Row(21, -350.0, 350.0, 315, 218, 73, active=True)
    assert render_fplane(rows, [], full=True).split("\n")[2:4] == [
        "#013\t-450.000\t 150.000\t000\t241\t043\t0.000\t1.000",
        "#014\t-450.000\t  50.000\t000\t000\t000\t0.000\t1.000",
    ]


@pytest.mark.parametrize("listed", [[], [entry(14, 0, 0, 0)]], ids=["unlisted", "listed empty"])
def test_an_unlisted_or_empty_seat_is_empty_and_inactive(listed):
    seats = by_seat(build(status(entry(21, 315, 218, 73), *listed)))
    assert seats[14] == Row(14, -450.0, 50.0, 0, 0, 0, active=False)


def test_every_grid_seat_is_present_in_canonical_order():
    rows = build(status())
    assert rows == canonical_order(rows)
    assert {r.ifuslot for r in rows} == {0, *GRID_SLOTS, *SPECIAL_SLOTS}
    assert not any(r.active for r in rows if r.ifuslot in VIRUS_SLOTS)
    for s in ALWAYS_EMPTY_SLOTS:
        assert by_seat(rows)[s] == Row(s, *grid_position(s), 0, 0, 0, active=False)


def test_grid_positions_are_nominal_even_when_the_previous_version_was_measured():
    previous = make_rows(positions=measured_positions(GRID_SLOTS))
    rows = build(status_from_rows(previous), previous=previous)
    assert rows == make_rows()


def test_lrs2_specials_and_000_are_carried_over_from_the_previous_version():
    odd_reference = Row(0, 0.0, 0.0, 900, 900, 901, 0.0, 1.0)
    previous = (odd_reference,
                Row(56, -50.2, -150.1, 997, 996, 995),      # LRS2-B with new ids, measured
                Row(66, 50.0, -150.0, 0, 0, 999, active=False),  # LRS2-R switched off
                Row(620, 1.5, 2.5, 914, 914, 914),          # a bundle the site added
                *(r for r in make_rows(specials=()) if r.ifuslot in VIRUS_SLOTS))
    seats = by_seat(build(status_from_rows(previous), previous=previous))
    assert seats[0] == odd_reference
    assert seats[56] == Row(56, -50.0, -150.0, 997, 996, 995)   # ids carried, nominal position
    assert seats[66] == Row(66, 50.0, -150.0, 0, 0, 999, active=False)
    assert seats[620] == Row(620, 1.5, 2.5, 914, 914, 914)
    assert not set(SPECIAL_SLOTS) & set(seats)   # only the previous version counts


@pytest.mark.parametrize("previous", [None, ()], ids=["None", "empty"])
def test_without_a_previous_version_the_static_rows_are_used(previous):
    seats = by_seat(build(status(), previous=previous))
    for r in (*LRS2_ROWS, *SPECIAL_ROWS):
        assert seats[r.ifuslot] == r


def test_the_000_row_falls_back_to_the_static_one_then_to_the_standard_one():
    static_ref = Row(0, 0.0, 0.0, 900, 900, 900, 0.0, 1.0)
    previous = make_rows(reference=False)
    assert by_seat(build(status(), previous, (static_ref,)))[0] is static_ref
    assert by_seat(build(status(), previous, ()))[0] == REFERENCE_ROW
    rows = build(status(), None, ())
    assert {r.ifuslot for r in rows} == {0, *GRID_SLOTS}   # LRS2 empty: the source has none
    assert by_seat(rows)[56] == Row(56, -50.0, -150.0, 0, 0, 0, active=False)


# --------------------------------------------------------------------------
# Reading a status: the forms ids and keys come in

@pytest.mark.parametrize("spectrograph", [
    {"specid": "315", "specslot": "218", "ifuslot": "021", "ifuid": "073"},
    {"specid": 315, "specslot": 218, "ifuslot": 21, "ifuid": 73},
    {"specid": "315", "specslot": "218", "ifuslot": "21", "ifuid": "73"},
    {"SPECID": "315", "SPECSLOT": "218", "IFUSLOT": "021", "IFUID": "073"},
    {"SpecId": 315, "specSlot": "218", "IfuSlot": 21, "ifuID": "073"},
    {"specid": "315", "specslot": "218", "ifuslot": "021", "ifuid": "073",
     "muxid": "M12", "cntlid": 7, "comment": {"any": ["thing"]}},
], ids=["padded strings", "integers", "unpadded strings", "UPPERCASE keys", "mixed case",
        "unknown keys"])
def test_ids_and_keys_in_any_documented_form(spectrograph):
    raw = {"TIMESTAMP": TIMESTAMP, "Spectrographs": [spectrograph, entry(13, 0, 241, 43)],
           "site": "HET"}
    parsed = parse_status(raw, TZ)
    assert parsed == HardwareStatus(TIMESTAMP_DT, (SeatEntry(21, 315, 218, 73),
                                                   SeatEntry(13, 0, 241, 43)), raw)
    assert parsed.raw is raw   # archived as posted, unknown keys included


@pytest.mark.parametrize("timestamp, expected", [
    ("2018-07-15T17:02:11Z", TIMESTAMP_DT),
    ("2018-07-15T17:02:11", TIMESTAMP_DT),                # FITS DATE-OBS: UTC
    ("20180715T170211.5", TIMESTAMP_DT + timedelta(microseconds=500_000)),
    ("2018-07-15T12:02:11-05:00", TIMESTAMP_DT),
    ("20180715", datetime(2018, 7, 15, 5, 0, tzinfo=UTC)),  # a bare date: site midnight
])
def test_timestamp_forms(timestamp, expected):
    parsed = parse_status(status(timestamp=timestamp), TZ)
    assert parsed.timestamp == expected and parsed.timestamp.tzinfo == UTC


# --------------------------------------------------------------------------
# Malformed statuses: every problem is listed, each naming its entry

GOOD = entry(21, 315, 218, 73)


def with_(base: dict, **changes) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if value is ...:
            del out[key]
        else:
            out[key] = value
    return out


MALFORMED = [
    ("not an object", ["spectrographs"],
     ["config (the hardware status) must be an object, not an array"]),
    ("null", None, ["must be an object, not null"]),
    ("no timestamp", {"spectrographs": [GOOD]}, ["timestamp is missing"]),
    ("timestamp a number", status(GOOD, timestamp=1531674131),
     ["timestamp must be a string such as '2018-07-15T17:02:11Z', not 1531674131"]),
    ("timestamp garbage", status(GOOD, timestamp="yesterday"),
     ["timestamp: invalid date 'yesterday'"]),
    ("timestamp 'now'", status(GOOD, timestamp="now"), ["timestamp 'now' is not an instant"]),
    ("no spectrographs", {"timestamp": TIMESTAMP}, ["spectrographs is missing"]),
    ("spectrographs an object", {"timestamp": TIMESTAMP, "spectrographs": {"021": GOOD}},
     ["spectrographs must be a list, not an object"]),
    ("entry not an object", status(GOOD, "021 315 218 073"),
     ["spectrographs[1]: must be an object with ifuslot, specid, specslot and ifuid, "
      "not a string"]),
    ("ifuid missing", status(with_(GOOD, ifuid=...)),
     ["spectrographs[0] (seat 021): ifuid is missing"]),
    ("ifuslot missing", status(GOOD, with_(entry(22, 316, 247, 52), ifuslot=...)),
     ["spectrographs[1]: ifuslot is missing"]),
    ("letters in an id", status(GOOD, entry(22, 316, 247, 52) | {"ifuid": "x7"}),
     ["spectrographs[1] (seat 022): ifuid 'x7' is not an id of 1-3 digits"]),
    ("4 digits", status(with_(GOOD, specid="0315")),
     ["spectrographs[0] (seat 021): specid '0315' is not an id of 1-3 digits"]),
    ("negative", status(with_(GOOD, specslot=-1)),
     ["spectrographs[0] (seat 021): specslot -1 is not an id of 1-3 digits"]),
    ("1000", status(with_(GOOD, ifuid=1000)),
     ["spectrographs[0] (seat 021): ifuid 1000 is not an id of 1-3 digits"]),
    ("a float", status(with_(GOOD, specid=315.0)),
     ["spectrographs[0] (seat 021): specid 315.0 is not an id"]),
    ("a boolean", status(with_(GOOD, specid=True)),
     ["spectrographs[0] (seat 021): specid true is not an id"]),
    ("null id", status(with_(GOOD, specslot=None)),
     ["spectrographs[0] (seat 021): specslot null is not an id"]),
    ("spaces", status(with_(GOOD, ifuslot=" 21")),
     ["spectrographs[0]: ifuslot ' 21' is not an id of 1-3 digits"]),
    ("non-ASCII digits", status(with_(GOOD, ifuid="\u0667\u0663")),
     ["spectrographs[0] (seat 021): ifuid '\\u0667\\u0663' is not an id"]),
    ("key given twice", status(GOOD | {"SPECID": "316"}),
     ["spectrographs[0] (seat 021): keys 'specid' and 'SPECID' are both given"]),
    ("a huge integer", status(with_(GOOD, ifuid=10 ** 5000)),
     ["ifuid a very large number is not an id"]),
]


@pytest.mark.parametrize("status_dict, fragments",
                         [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_statuses(status_dict, fragments):
    problems = problems_of(status_dict)
    assert len(problems) == len(fragments), problems
    for problem, fragment in zip(problems, fragments):
        assert fragment in problem


def test_four_different_problems_are_all_reported():
    problems = problems_of({
        "timestamp": "2018-13-45T25:00:00Z",
        "spectrographs": [
            entry(21, 315, 218, 73),
            entry(56, 998, 998, 998),                  # LRS2 is not part of a status
            entry(22, 316, 247, 52) | {"specslot": "2x7"},
            entry(23, 313, 255, 73),                   # IFU 073 again
        ]})
    assert len(problems) == 4, problems
    assert problems[0].startswith("timestamp: invalid date '2018-13-45T25:00:00Z'")
    assert problems[1].startswith("spectrographs[1] (seat 056): seat 056 cannot hold IFU 998 "
                                  "and spectrograph 998 and spectrograph slot 998: it holds "
                                  "LRS2-B")
    assert problems[2] == "spectrographs[2] (seat 022): specslot '2x7' is not an id of 1-3 digits"
    assert problems[3] == ("spectrographs[3] (seat 023): IFU 073 is listed twice (also "
                           "spectrographs[0], seat 021)")
    with pytest.raises(UpdateError) as info:
        parse_status({"spectrographs": 3}, TZ)
    assert str(info.value) == "the hardware status is invalid: 2 problems"


@pytest.mark.parametrize("second, expected", [
    (entry(21, 316, 247, 52),
     "spectrographs[1] (seat 021): seat 021 is listed twice (also spectrographs[0])"),
    (entry(22, 316, 247, 73),
     "spectrographs[1] (seat 022): IFU 073 is listed twice (also spectrographs[0], seat 021)"),
    (entry(22, 315, 247, 52),
     "spectrographs[1] (seat 022): active spectrograph 315 is listed twice (also "
     "spectrographs[0], seat 021)"),
    (entry(22, 0, 247, 73),   # a bundle is a bundle, with or without a spectrograph
     "spectrographs[1] (seat 022): IFU 073 is listed twice (also spectrographs[0], seat 021)"),
], ids=["seat", "IFU", "active spectrograph", "IFU on an inactive seat"])
def test_duplicates(second, expected):
    assert problems_of(status(entry(21, 315, 218, 73), second)) == (expected,)


def test_000_ids_may_repeat():
    parsed = parse_status(status(entry(13, 0, 241, 43), entry(14, 0, 221, 77),
                                 entry(15, 0, 0, 0), entry(16, 0, 0, 0)), TZ)
    assert len(parsed.entries) == 4


@pytest.mark.parametrize("seat, fragment", [
    (56, "seat 056 cannot hold IFU 003 and spectrograph 001 and spectrograph slot 002: it "
         "holds LRS2-B"),
    (66, "seat 066 cannot hold IFU 003 and spectrograph 001 and spectrograph slot 002: it "
         "holds LRS2-R"),
    (54, "seat 054 cannot hold IFU 003 and spectrograph 001 and spectrograph slot 002: the "
         "central seats 054, 055, 064, 065 are always empty; list it with ids 000"),
    (65, "seat 065 cannot hold IFU 003 and spectrograph 001 and spectrograph slot 002: the "
         "central seats"),
    (600, "unknown seat 600: not a VIRUS seat of the IFU grid (special rows are carried over"),
    (0, "unknown seat 000: the reference row"),
    (17, "unknown seat 017: not a VIRUS seat"),
    (999, "unknown seat 999"),
])
def test_non_virus_seats_are_unknown(seat, fragment):
    problems = problems_of(status(entry(21, 315, 218, 73), entry(seat, 1, 2, 3)))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"spectrographs[1] (seat {seat:03d}): {fragment}")


@pytest.mark.parametrize("hardware, named", [
    ((0, 0, 7), "IFU 007"), ((12, 0, 0), "spectrograph 012"), ((0, 5, 0), "spectrograph slot 005"),
])
@pytest.mark.parametrize("seat", ALWAYS_EMPTY_SLOTS)
def test_hardware_on_a_central_seat_is_refused_with_the_reason(seat, hardware, named):
    problems = problems_of(status(entry(21, 315, 218, 73), entry(seat, *hardware)))
    assert problems == (f"spectrographs[1] (seat {seat:03d}): seat {seat:03d} cannot hold "
                        f"{named}: the central seats 054, 055, 064, 065 are always empty; "
                        f"list it with ids 000 (empty) or leave it out",)


def test_the_central_and_lrs2_seats_listed_with_ids_000_are_accepted_and_change_nothing():
    # As the real full file lists them ("#054 ... 000 000 000"): a TCS that copies it must
    # not be refused.  LRS2 stays as the previous version had it.
    previous = make_rows()
    listed = status_from_rows(previous)
    listed["spectrographs"] += [entry(s, 0, 0, 0) for s in ALWAYS_EMPTY_SLOTS + (56, 66)]
    parsed = parse_status(listed, TZ)
    assert {e.ifuslot for e in parsed.entries}.isdisjoint(ALWAYS_EMPTY_SLOTS + (56, 66))
    assert build(listed, previous=previous) == build(status_from_rows(previous), previous=previous)
    assert problems_of(status(entry(54, 0, 0, 0), entry(54, 0, 0, 0))) == (
        "spectrographs[1] (seat 054): seat 054 is listed twice (also spectrographs[0])",)


def test_problem_lists_are_capped_for_hostile_payloads():
    problems = problems_of(status(*(["x"] * 5000)))
    assert len(problems) == 1001
    assert problems[-1] == "... and 4000 more problems"


# --------------------------------------------------------------------------
# Decoding the posted data

def decode_error(text, **kwargs) -> UpdateError:
    with pytest.raises(UpdateError) as info:
        decode_update(text, **kwargs)
    return info.value


def test_decode_update_returns_the_object():
    data = decode_update(update_text(valid_from="20180716", extra={"note": 1}))
    assert data == {"config": status(entry(21, 315, 218, 73)), "commit": True,
                    "valid_from": "20180716", "extra": {"note": 1}}
    assert decode_update('{"Config": {}, "COMMIT": false}') == {"config": {}, "commit": False}
    assert decode_update('\ufeff{"config": {}, "commit": true, "valid_from": null}')["commit"]
    assert decode_update(b'{"config": "\xc3\xa9", "commit": true}')["config"] == "\u00e9"
    # Brackets inside strings are text, not structure.
    assert decode_update(json.dumps({"config": "[" * 100, "commit": True}),
                         max_depth=2)["config"] == "[" * 100


@pytest.mark.parametrize("text, code, fragment", [
    ("", 208, "data is not valid JSON: Expecting value at line 1 column 1"),
    ("config=1&commit=true", 208, "data is not valid JSON"),
    ('{"config": {}, "commit": true', 208, "data is not valid JSON"),
    ("{'config': {}, 'commit': true}", 208, "data is not valid JSON"),
    (b'{"config": "\xff"}', 208, "data is not valid UTF-8 (invalid start byte at byte 12)"),
    ('{"config": {"x": NaN}, "commit": true}', 209, "NaN is not a number JSON allows"),
    ('{"config": {"x": -Infinity}, "commit": true}', 209, "-Infinity is not a number JSON allows"),
    ('{"config": {"x": 1e400}, "commit": true}', 209, "number '1e400' is out of range"),
    ('{"config": {"x": %s}, "commit": true}' % ("9" * 5000), 209,
     "integer of 5000 digits is out of range"),
    ('[{"config": {}, "commit": true}]', 209,
     'data must be a JSON object {"config": ..., "commit": true|false}, not an array'),
    ('"config"', 209, "not a string"),
    ("null", 209, "not null"),
    ('{"config": {}, "commit": true, "commit": false}', 209, "key 'commit' appears twice"),
    ('{"config": {"a": 1, "a": 2}, "commit": true}', 209, "key 'a' appears twice"),
    ('{"config": {}, "commit": true, "Commit": false}', 209,
     "keys 'commit' and 'Commit' are both given"),
    ('{"config": {}}', 209, "commit is missing (true to store, false for a dry run)"),
    ('{"config": {}, "commit": "yes"}', 209, "commit must be true or false, not 'yes'"),
    ('{"config": {}, "commit": 1}', 209, "commit must be true or false, not 1"),
    ('{"commit": true}', 209, "config is missing (the hardware status)"),
    ('{"config": {}, "commit": true, "valid_from": 20180716}', 209,
     "valid_from must be a date string"),
])
def test_decode_update_refuses(text, code, fragment):
    err = decode_error(text)
    assert err.code == code
    assert fragment in str(err) or any(fragment in p for p in err.problems), \
        (str(err), err.problems)


def test_decode_update_lists_every_problem():
    err = decode_error('{"config": {"x": NaN, "y": [1e999], "x": 2}, "commit": "no"}')
    assert err.problems == ("NaN is not a number JSON allows",
                            "number '1e999' is out of range",
                            "key 'x' appears twice in one object",
                            "commit must be true or false, not 'no'")
    assert str(err) == "data is invalid: 4 problems"


@pytest.mark.parametrize("text", [
    "[" * 10_000 + "]" * 10_000,
    '{"config": ' * 10_000,
    '{"a":' * 100_000 + "1" + "}" * 100_000,
], ids=["arrays", "unclosed objects", "100,000 objects"])
def test_deep_nesting_is_refused_quickly_without_recursion(text):
    started = time.perf_counter()
    err = decode_error(text)
    assert time.perf_counter() - started < 1.0
    assert err.code == 209
    assert err.problems == ("data nests deeper than 16 levels of arrays and objects (an update "
                            "needs at most 4)",)


def test_nesting_at_the_limit_is_fine():
    assert decode_update('{"config": %s, "commit": true}' % ("[" * 15 + "]" * 15))
    assert decode_error('{"config": %s, "commit": true}' % ("[" * 16 + "]" * 16)).code == 209


@pytest.mark.parametrize("text", [
    json.dumps({"config": [0] * 1_000_000, "commit": True}),
    json.dumps({"config": {str(i): i for i in range(20_000)}, "commit": True}),
], ids=["a million array elements", "20,000 members"])
def test_huge_item_counts_are_refused_quickly(text):
    started = time.perf_counter()
    err = decode_error(text)
    assert time.perf_counter() - started < 1.0
    assert err.code == 209
    assert "data has more than 10000 items" in err.problems[0]


def test_a_status_as_a_tcs_writes_it_may_repeat_000():
    """Every VIRUS seat listed, two with a bundle but no spectrograph (SPECID 000) and two
    listed empty (all 000): 000 may repeat."""
    rows = make_rows(active={s: (i + 1, i + 101, i + 201) for i, s in enumerate(VIRUS_SLOTS)})
    status = status_from_rows(rows)
    for seat in status["spectrographs"][:2]:
        seat["specid"] = "000"
    for seat in status["spectrographs"][2:4]:
        seat.update(specid="000", specslot="000", ifuid="000")
    assert len(parse_status(status, UTC).entries) == len(VIRUS_SLOTS)


def test_a_realistic_status_is_well_within_the_limits():
    rows = make_rows(active={s: (i + 1, i + 101, i + 201) for i, s in enumerate(VIRUS_SLOTS)})
    assert decode_update(json.dumps({"config": status_from_rows(rows), "commit": True}))


def test_decode_update_for_positions():
    text = json.dumps({"positions": [{"ifuslot": "021", "x": -349.8, "y": 350.2}],
                       "commit": True})
    data = decode_update(text, payload="positions")
    assert positions_from_update(data) == PositionsUpdate({21: (-349.8, 350.2)})
    err = decode_error('{"commit": true}', payload="positions")
    assert err.problems == ("positions is missing (the positions)",)


# --------------------------------------------------------------------------
# The time stamp: [Update] max_age (6 h) and max_future (10 min)

NOW = datetime(2018, 7, 15, 17, 0, 0, tzinfo=UTC)
MAX_AGE, MAX_FUTURE = 21600, 600


@pytest.mark.parametrize("offset", [
    timedelta(0),
    -timedelta(seconds=MAX_AGE),                              # exactly at the age limit
    -timedelta(seconds=MAX_AGE) + timedelta(microseconds=1),
    timedelta(seconds=MAX_FUTURE),                            # exactly at the future limit
    timedelta(seconds=MAX_FUTURE) - timedelta(microseconds=1),
])
def test_timestamps_within_the_limits_are_accepted(offset):
    check_timestamp(NOW + offset, NOW, MAX_AGE, MAX_FUTURE)
    check_timestamp(NOW + offset, NOW, timedelta(hours=6), timedelta(minutes=10))


@pytest.mark.parametrize("offset, code, message", [
    (-timedelta(seconds=MAX_AGE, microseconds=1), 210,
     "hardware status is 6 h 1 s old (timestamp 2018-07-15T10:59:59.999999Z, now "
     "2018-07-15T17:00:00Z); the limit is [Update] max_age = 21600 s (6 h)"),
    (-timedelta(hours=7, minutes=2), 210,
     "hardware status is 7 h 2 min old (timestamp 2018-07-15T09:58:00Z, now "
     "2018-07-15T17:00:00Z); the limit is [Update] max_age = 21600 s (6 h)"),
    (-timedelta(days=400), 210, "hardware status is 400 d old"),
    (timedelta(seconds=MAX_FUTURE, microseconds=1), 211,
     "hardware status time stamp is 10 min 1 s in the future (timestamp "
     "2018-07-15T17:10:00.000001Z, now 2018-07-15T17:00:00Z); the limit is [Update] "
     "max_future = 600 s (10 min); is a clock wrong?"),
    (timedelta(hours=1, seconds=5), 211, "hardware status time stamp is 1 h 5 s in the future"),
])
def test_timestamps_beyond_the_limits_are_refused(offset, code, message):
    with pytest.raises(UpdateError) as info:
        check_timestamp(NOW + offset, NOW, MAX_AGE, MAX_FUTURE)
    assert info.value.code == code
    assert str(info.value).startswith(message)


def test_max_future_zero_accepts_only_the_past():
    check_timestamp(NOW, NOW, MAX_AGE, 0)
    with pytest.raises(UpdateError) as info:
        check_timestamp(NOW + timedelta(seconds=1), NOW, MAX_AGE, 0)
    assert "the limit is [Update] max_future = 0 s (0 s)" in str(info.value)


# --------------------------------------------------------------------------
# Suspicious updates and new hardware

ALL_ACTIVE = make_rows(active={s: (i + 1, i + 101, i + 201) for i, s in enumerate(VIRUS_SLOTS)},
                       installed={})


def switch_off(rows, seats) -> tuple[Row, ...]:
    return tuple(Row(r.ifuslot, r.x, r.y, 0, r.specslot, r.ifuid, active=False)
                 if r.ifuslot in seats else r for r in rows)


@pytest.mark.parametrize("n_off, fraction, suspicious", [
    (0, 0.0, False),
    (1, 1 / 78, False),
    (38, 38 / 78, False),    # 48.7 %
    (39, 0.5, True),         # half
    (78, 1.0, True),
])
def test_switching_off_half_or_more_of_the_active_ifus_is_suspicious(n_off, fraction, suspicious):
    new = switch_off(ALL_ACTIVE, VIRUS_SLOTS[:n_off])
    assert deactivated_fraction(ALL_ACTIVE, new) == pytest.approx(fraction)
    assert bool(hold_reason(ALL_ACTIVE, new)) is suspicious


def test_suspicion_edge_cases():
    two = make_rows(active={21: (315, 218, 73), 22: (316, 247, 52)}, installed={})
    assert bool(hold_reason(two, switch_off(two, {21}))) is True       # 1 of 2 is half
    assert bool(hold_reason(None, switch_off(ALL_ACTIVE, VIRUS_SLOTS))) is False
    nothing_active = make_rows(active={}, installed={})
    assert deactivated_fraction(nothing_active, nothing_active) == 0.0
    assert bool(hold_reason(nothing_active, nothing_active)) is False
    # An IFU moved to another seat is still active.
    moved = make_rows(active={23: (315, 218, 73), 22: (316, 247, 52)}, installed={})
    assert deactivated_fraction(two, moved) == 0.0
    # LRS2 and specials do not count.
    assert deactivated_fraction(make_rows(active={}, installed={}),
                                make_rows(active={}, installed={}, lrs2=False, specials=())) == 0.0


def test_new_hardware_names_new_spectrographs_and_ifus():
    previous = make_rows()
    active = {r.ifuslot: (r.specid, r.specslot, r.ifuid)
              for r in previous if r.active and r.ifuslot in VIRUS_SLOTS}
    installed = {r.ifuslot: (r.specslot, r.ifuid)
                 for r in previous if not r.active and r.ifuid and r.ifuslot in VIRUS_SLOTS}
    assert not any(r.specid == 25 or r.ifuid in (81, 82) for r in previous)
    active[93] = (25, 150, 82)        # a new spectrograph with a new IFU
    del active[13]
    installed[13] = (241, 81)         # a new IFU, no spectrograph yet
    new = build(status_from_rows(make_rows(active=active, installed=installed)), previous)
    assert new_hardware(previous, new) == [
        "IFU 081 appears (seat 013)",
        "spectrograph 025 appears (seat 093)",
        "IFU 082 appears (seat 093)",
    ]
    assert new_hardware(previous, previous) == []
    assert new_hardware(None, new) == []
    # Moving known hardware around, or switching it off, is no news.
    swapped = dict(active)
    swapped[21], swapped[22] = active[22], active[21]
    del swapped[23]
    assert new_hardware(new, build(status_from_rows(make_rows(active=swapped,
                                                              installed=installed)), new)) == []


def test_new_hardware_exact_list():
    previous = make_rows(active={21: (315, 218, 73)}, installed={})
    new = build(status(entry(21, 315, 218, 73), entry(93, 25, 219, 81), entry(13, 0, 241, 43)),
                previous)
    assert new_hardware(previous, new) == [
        "IFU 043 appears (seat 013)",
        "spectrograph 025 appears (seat 093)",
        "IFU 081 appears (seat 093)",
    ]


# --------------------------------------------------------------------------
# Measured positions

def test_positions_from_update():
    data = {"positions": [{"ifuslot": "021", "x": -349.8, "y": 350.2},
                          {"IFUSLOT": 56, "X": -50, "Y": -150.475},   # LRS2 may be measured
                          {"ifuslot": "054", "x": -50.0, "y": 50.0}]}
    assert positions_from_update(data) == PositionsUpdate(
        {21: (-349.8, 350.2), 56: (-50.0, -150.475), 54: (-50.0, 50.0)}, frozenset(), False)
    assert isinstance(positions_from_update(data).measured[56][0], float)


def test_positions_may_reset_seats_or_be_the_whole_set():
    data = {"positions": [pos(21, x=-349.9)], "Reset": ["022", 23], "complete": False}
    assert positions_from_update(data) == PositionsUpdate({21: (-349.9, 350.0)},
                                                          frozenset({22, 23}), False)
    assert positions_from_update({"positions": [], "complete": True}) == PositionsUpdate(
        {}, frozenset(), True)
    assert positions_from_update({"positions": [], "reset": ["021"]}).reset == {21}


def test_a_post_keeps_the_last_measurement_of_every_seat_it_does_not_list_or_reset():
    last = {21: (-349.9, 350.1), 22: (-349.8, 250.2), 23: (-350.2, 149.9)}
    assert merged_positions(last, PositionsUpdate({21: (-350.1, 350.0)})) == {
        21: (-350.1, 350.0), 22: (-349.8, 250.2), 23: (-350.2, 149.9)}
    assert merged_positions(last, PositionsUpdate({24: (-350.1, 50.0)}, frozenset({22}))) == {
        21: (-349.9, 350.1), 23: (-350.2, 149.9), 24: (-350.1, 50.0)}
    assert merged_positions(last, PositionsUpdate({24: (-350.1, 50.0)}, complete=True)) == {
        24: (-350.1, 50.0)}
    assert merged_positions({}, PositionsUpdate({21: (-350.1, 350.0)})) == {21: (-350.1, 350.0)}


def pos(seat, x=None, y=None):
    nx, ny = grid_position(seat)
    return {"ifuslot": f"{seat:03d}", "x": nx if x is None else x, "y": ny if y is None else y}


@pytest.mark.parametrize("data, problems", [
    ({}, ['positions is missing (a list of {"ifuslot", "x", "y"})']),
    ({"positions": {"021": [1, 2]}}, ["positions must be a list, not an object"]),
    ({"positions": []}, ["positions is empty: nothing to store"]),
    ({"positions": [pos(21)], "reset": "022"}, ['reset must be a list of seats such as']),
    ({"positions": [pos(21)], "reset": ["600", "x", True]},
     ["reset[0]: unknown seat 600: not a seat of the IFU grid",
      "reset[1]: 'x' is not an id of 1-3 digits", "reset[2]: true is not an id"]),
    ({"positions": [pos(21), pos(22)], "reset": ["022", "021"]},
     ["reset lists 021, 022, also measured in positions: measure a seat or reset it"]),
    ({"positions": [pos(21)], "complete": "yes"}, ["complete must be true or false, not 'yes'"]),
    ({"positions": [pos(21), [21, 1, 2]]},
     ["positions[1]: must be an object with ifuslot, x and y, not an array"]),
    ({"positions": [pos(600)]}, ["positions[0] (seat 600): unknown seat 600: not a seat of "
                                 "the IFU grid"]),
    ({"positions": [{"x": 1.0, "y": 2.0}]}, ["positions[0]: ifuslot is missing"]),
    ({"positions": [pos(21, x="-349.8")]},
     ["positions[0] (seat 021): x '-349.8' is not a finite number (arcsec)"]),
    ({"positions": [pos(21, y=float("nan"))]},
     ["positions[0] (seat 021): y nan is not a finite number (arcsec)"]),
    ({"positions": [pos(21, x=True)]},
     ["positions[0] (seat 021): x true is not a finite number (arcsec)"]),
    ({"positions": [pos(21, x=10 ** 400)]},
     ["positions[0] (seat 021): x a very large number is not a finite number (arcsec)"]),
    ({"positions": [pos(21, x=-350 + MAX_POSITION_OFFSET + 0.01)]},
     ["positions[0] (seat 021): (-339.99, 350) is 10.0 arcsec from the seat's nominal centre "
      "(-350, 350); at most 10 is plausible"]),
    ({"positions": [{"ifuslot": "021", "x": -349.0}]}, ["positions[0] (seat 021): y is missing"]),
    ({"positions": [pos(21), pos(22), pos(21, x=-349.9)]},
     ["positions[2] (seat 021): seat 021 is listed twice (also positions[0])"]),
    ({"positions": [pos(21, x="a"), pos(17), {"ifuslot": "x"}]},
     ["positions[0] (seat 021): x 'a' is not a finite number",
      "positions[1] (seat 017): unknown seat 017",
      "positions[2]: ifuslot 'x' is not an id of 1-3 digits",
      "positions[2]: x is missing",
      "positions[2]: y is missing"]),
    ([1, 2], ["data must be an object with positions, not an array"]),
])
def test_positions_from_update_refuses(data, problems):
    with pytest.raises(UpdateError) as info:
        positions_from_update(data)
    assert info.value.code == 209
    assert len(info.value.problems) == len(problems), info.value.problems
    for got, fragment in zip(info.value.problems, problems):
        assert got.startswith(fragment), got


def test_positions_exactly_at_the_offset_limit_are_accepted():
    assert positions_from_update({"positions": [pos(21, x=-340.0)]}).measured == {
        21: (-340.0, 350.0)}


# --------------------------------------------------------------------------
# Nothing but UpdateError, whatever is posted

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
id_like = (st.integers(-5, 1200) | st.sampled_from(["021", "13", "000", "x7", "", " 1", "0315"])
           | json_values)
entry_like = st.dictionaries(
    st.sampled_from(["ifuslot", "specid", "specslot", "ifuid", "IFUSLOT", "SpecId", "muxid"]),
    id_like, max_size=6) | json_values
status_like = st.fixed_dictionaries(
    {"timestamp": (st.sampled_from([TIMESTAMP, "20180715", "now", "2018-02-30", "", 5])
                   | json_values),
     "spectrographs": st.lists(entry_like, max_size=8) | json_values},
    optional={"SPECTROGRAPHS": json_values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, status_like))
def test_parse_status_raises_nothing_but_update_error(value):
    try:
        parsed = parse_status(value, TZ)
    except UpdateError as exc:
        assert exc.code == 209 and exc.problems
        assert all(isinstance(p, str) and p.isascii() for p in exc.problems)
        return
    rows = build_configuration(parsed, None, STATIC_ROWS)
    assert len({r.ifuslot for r in rows}) == len(rows)
    render_fplane(rows, [], full=True)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), json_values.map(json.dumps),
                 st.binary(max_size=40)))
def test_decode_update_raises_nothing_but_update_error(text):
    try:
        data = decode_update(text)
    except UpdateError as exc:
        assert exc.code in (208, 209)
        return
    assert isinstance(data, dict) and isinstance(data["commit"], bool)


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, st.fixed_dictionaries(
    {"positions": st.lists(st.dictionaries(st.sampled_from(["ifuslot", "x", "y", "X"]),
                                           id_like | st.floats(-600, 600), max_size=4),
                           max_size=5)})))
def test_positions_from_update_raises_nothing_but_update_error(value):
    try:
        positions_from_update(value)
    except UpdateError as exc:
        assert exc.code == 209 and exc.problems
