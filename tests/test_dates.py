"""Date strings and night labels (contract section 3, domain.md "Dates and time at HET")."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgi.dates import (
    ACCEPTED_FORMS,
    DateError,
    format_instant,
    from_micros,
    night_label,
    parse_datestr,
    to_micros,
)

UTC = timezone.utc
CHICAGO = ZoneInfo("America/Chicago")
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2019, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


def parse(text, site_tz=CHICAGO, now=NOW):
    return parse_datestr(text, site_tz, now)


def parsed(text, site_tz=CHICAGO):
    """The instant as the service would write it."""
    return format_instant(parse(text, site_tz))


# --- every accepted form --------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "", "latest", "current", "now",
    "LATEST", "Now", "cUrReNt",
    "  now  ", "\tlatest\n", " ", "\r\n",
])
def test_now_words_mean_now(text):
    assert parse(text) == NOW


def test_now_is_returned_in_utc():
    now_in_chicago = datetime(2018, 7, 6, 21, 27, 24, tzinfo=CHICAGO)
    result = parse("now", now=now_in_chicago)
    assert result == now_in_chicago
    assert result.utcoffset() == timedelta(0)
    assert format_instant(result) == "2018-07-07T02:27:24Z"


def test_naive_now_is_a_programming_error_not_a_date_error():
    with pytest.raises(ValueError) as info:
        parse("now", now=datetime(2018, 7, 7))
    assert not isinstance(info.value, DateError)


ACCEPTED = [
    # text                          instant (UTC); site zone America/Chicago
    ("20180707",                    "2018-07-07T05:00:00Z"),
    ("2018-07-07",                  "2018-07-07T05:00:00Z"),
    ("20180715v012",                "2018-07-15T05:00:00Z"),
    ("20180715v000",                "2018-07-15T05:00:00Z"),
    ("20180707T02:27:24",           "2018-07-07T02:27:24Z"),
    ("20180707T02:27:24.5",         "2018-07-07T02:27:24.5Z"),
    ("20180707T022724",             "2018-07-07T02:27:24Z"),
    ("20180707T022724.0",           "2018-07-07T02:27:24Z"),
    ("20180707T022724.123456",      "2018-07-07T02:27:24.123456Z"),
    ("2018-07-07T02:27:24",         "2018-07-07T02:27:24Z"),
    ("2018-07-07T02:27:24.0",       "2018-07-07T02:27:24Z"),
    ("2018-07-07T02:27:24.25",      "2018-07-07T02:27:24.25Z"),
    ("2018-07-07T23:59:59.999999",  "2018-07-07T23:59:59.999999Z"),
    # Z: the date-only forms mean 00:00 UTC, the others are unchanged
    ("20180707Z",                   "2018-07-07T00:00:00Z"),
    ("2018-07-07Z",                 "2018-07-07T00:00:00Z"),
    ("20180715v012Z",               "2018-07-15T00:00:00Z"),
    ("20180707T02:27:24Z",          "2018-07-07T02:27:24Z"),
    ("20180707T022724.0Z",          "2018-07-07T02:27:24Z"),
    ("2018-07-07T02:27:24.5Z",      "2018-07-07T02:27:24.5Z"),
    # +05:00
    ("20180707+05:00",              "2018-07-06T19:00:00Z"),
    ("2018-07-07+05:00",            "2018-07-06T19:00:00Z"),
    ("20180715v012+05:00",          "2018-07-14T19:00:00Z"),
    ("20180707T05:00:00+05:00",     "2018-07-07T00:00:00Z"),
    ("20180707T050000+05:00",       "2018-07-07T00:00:00Z"),
    ("2018-07-07T05:00:00.5+05:00", "2018-07-07T00:00:00.5Z"),
    # -06:00
    ("20180707-06:00",              "2018-07-07T06:00:00Z"),
    ("2018-07-07-06:00",            "2018-07-07T06:00:00Z"),
    ("20180707T21:27:24-06:00",     "2018-07-08T03:27:24Z"),
    ("20180707T212724.0-06:00",     "2018-07-08T03:27:24Z"),
    ("2018-07-07T21:27:24-06:00",   "2018-07-08T03:27:24Z"),
    # other offsets
    ("2018-07-07T05:00:00+00:00",   "2018-07-07T05:00:00Z"),
    ("2018-07-07T05:00:00-00:00",   "2018-07-07T05:00:00Z"),
    ("2018-07-07T05:00:00+05:30",   "2018-07-06T23:30:00Z"),
    ("2018-07-07T05:00:00+23:59",   "2018-07-06T05:01:00Z"),
    ("2018-07-07T05:00:00-23:59",   "2018-07-08T04:59:00Z"),
    # a '+' in a query string arrives as a space (after a time only)
    ("20180707T05:00:00 05:00",     "2018-07-07T00:00:00Z"),
    ("20180707T050000.0 05:00",     "2018-07-07T00:00:00Z"),
    ("2018-07-07T05:00:00 05:00",   "2018-07-07T00:00:00Z"),
    # surrounding whitespace is not part of the date
    (" 20180707\n",                 "2018-07-07T05:00:00Z"),
    ("\t2018-07-07T02:27:24Z ",     "2018-07-07T02:27:24Z"),
    # range edges
    ("19000101",                    "1900-01-01T06:00:00Z"),
    ("99981231T23:59:59.999999Z",   "9998-12-31T23:59:59.999999Z"),
    ("20240229",                    "2024-02-29T06:00:00Z"),
]


@pytest.mark.parametrize("text, expected", ACCEPTED)
def test_accepted_forms(text, expected):
    instant = parse(text)
    assert instant.utcoffset() == timedelta(0)
    assert format_instant(instant) == expected


# --- the night rule at HET ------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("20180707", "2018-07-07T05:00:00Z"),   # CDT, UTC-5
    ("20180115", "2018-01-15T06:00:00Z"),   # CST, UTC-6
])
def test_date_means_local_midnight_at_het(text, expected):
    assert parsed(text) == expected


@pytest.mark.parametrize("text, expected, offset_hours", [
    # 2018-03-11 02:00 CST -> 03:00 CDT; 2018-11-04 02:00 CDT -> 01:00 CST.  Both
    # changes happen after midnight, so the midnight of the day itself keeps the old offset.
    ("20180310", "2018-03-10T06:00:00Z", -6),
    ("20180311", "2018-03-11T06:00:00Z", -6),
    ("20180312", "2018-03-12T05:00:00Z", -5),
    ("20181103", "2018-11-03T05:00:00Z", -5),
    ("20181104", "2018-11-04T05:00:00Z", -5),
    ("20181105", "2018-11-05T06:00:00Z", -6),
])
def test_midnights_around_dst_changes(text, expected, offset_hours):
    instant = parse(text)
    assert format_instant(instant) == expected
    assert instant.astimezone(CHICAGO).utcoffset() == timedelta(hours=offset_hours)
    assert instant.astimezone(CHICAGO).time().isoformat() == "00:00:00"
    assert night_label(instant, CHICAGO) == text


@pytest.mark.parametrize("night, hours", [
    ("20180311", 23),   # the night of the spring change is an hour short
    ("20181104", 25),   # and the autumn one an hour long
    ("20180707", 24),
])
def test_night_length_follows_dst(night, hours):
    next_night = (datetime.strptime(night, "%Y%m%d") + timedelta(days=1)).strftime("%Y%m%d")
    assert parse(next_night) - parse(night) == timedelta(hours=hours)


@pytest.mark.parametrize("instant, label", [
    # the exposure of domain.md: 02:27 UT on 7 July is 21:27 local on 6 July
    (datetime(2018, 7, 7, 2, 27, 24, tzinfo=UTC), "20180707"),
    # either side of 00:00 UTC, both in the local evening of 6 July
    (datetime(2018, 7, 6, 23, 59, 59, tzinfo=UTC), "20180707"),
    (datetime(2018, 7, 7, 0, 0, 0, tzinfo=UTC), "20180707"),
    # local noon (17:00 UTC in summer) is where one night hands over to the next
    (datetime(2018, 7, 6, 16, 59, 59, 999999, tzinfo=UTC), "20180706"),
    (datetime(2018, 7, 6, 17, 0, 0, tzinfo=UTC), "20180707"),
    (datetime(2018, 7, 7, 16, 59, 59, 999999, tzinfo=UTC), "20180707"),
    (datetime(2018, 7, 7, 17, 0, 0, tzinfo=UTC), "20180708"),
    # in winter local noon is 18:00 UTC
    (datetime(2018, 1, 15, 17, 59, 59, tzinfo=UTC), "20180115"),
    (datetime(2018, 1, 15, 18, 0, 0, tzinfo=UTC), "20180116"),
    # new year
    (datetime(2018, 12, 31, 18, 0, 0, tzinfo=UTC), "20190101"),
    # the zone of the instant itself does not matter
    (datetime(2018, 7, 6, 21, 27, 24, tzinfo=CHICAGO), "20180707"),
    (datetime(2018, 7, 7, 4, 27, 24, tzinfo=BERLIN), "20180707"),
])
def test_night_label_at_het(instant, label):
    assert night_label(instant, CHICAGO) == label


def test_exposure_belongs_to_the_night_of_its_directory():
    assert night_label(parse("20180707T022724.0"), CHICAGO) == "20180707"
    assert night_label(parse("2018-07-07T02:27:24.0"), CHICAGO) == "20180707"


def test_shot_id_is_its_night():
    assert parse("20180715v012") == parse("20180715")
    assert night_label(parse("20180715v012"), CHICAGO) == "20180715"


def all_days(year):
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


@pytest.mark.parametrize("site_tz", [CHICAGO, BERLIN, ZoneInfo("America/Havana"), UTC],
                         ids=str)
@pytest.mark.parametrize("year", [2018, 2024])
def test_night_label_round_trip_for_every_day(year, site_tz):
    # America/Havana changes its clocks at midnight (no 00:00 in March, two in November).
    days = list(all_days(year))
    assert len(days) == (366 if year == 2024 else 365)
    for day in days:
        for text in (day.strftime("%Y%m%d"), day.isoformat(), day.strftime("%Y%m%dv001")):
            instant = parse(text, site_tz)
            assert night_label(instant, site_tz) == day.strftime("%Y%m%d"), text


# --- the site zone is a parameter -----------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("20180707", "2018-07-06T22:00:00Z"),   # CEST, UTC+2
    ("20180115", "2018-01-14T23:00:00Z"),   # CET, UTC+1
    ("20180325", "2018-03-24T23:00:00Z"),   # spring change at 02:00, after midnight
    ("20180326", "2018-03-25T22:00:00Z"),
    ("20180707T022724.0", "2018-07-07T02:27:24Z"),   # instants do not depend on the zone
    ("20180707+05:00", "2018-07-06T19:00:00Z"),      # nor does an explicit offset
])
def test_other_site_zone(text, expected):
    assert parsed(text, BERLIN) == expected


def test_other_site_zone_night_label():
    assert night_label(datetime(2018, 7, 6, 21, 59, 59, tzinfo=UTC), BERLIN) == "20180707"
    assert night_label(datetime(2018, 7, 6, 9, 59, 59, tzinfo=UTC), BERLIN) == "20180706"
    assert night_label(datetime(2018, 7, 6, 10, 0, 0, tzinfo=UTC), BERLIN) == "20180707"


@pytest.mark.parametrize("text, expected", [
    # No local midnight (00:00 -> 01:00): fold=0 gives the instant the clocks jump,
    # which is the first instant of that local day.
    ("20180311", "2018-03-11T05:00:00Z"),
    # Two local midnights (01:00 -> 00:00): fold=0 gives the first.
    ("20181104", "2018-11-04T04:00:00Z"),
])
def test_midnight_missing_or_repeated_uses_fold_0(text, expected):
    assert parsed(text, ZoneInfo("America/Havana")) == expected


def test_a_day_the_zone_skipped_has_no_night():
    # Samoa jumped from 29 to 31 December 2011; the documented exception to the round trip.
    apia = ZoneInfo("Pacific/Apia")
    instant = parse("20111230", apia)
    assert format_instant(instant) == "2011-12-30T10:00:00Z"
    assert night_label(instant, apia) == "20111231"


# --- writing instants -----------------------------------------------------------------

@pytest.mark.parametrize("instant, text", [
    (datetime(2018, 7, 7, 5, 0, 0, tzinfo=UTC), "2018-07-07T05:00:00Z"),
    (datetime(2018, 7, 7, 0, 0, 0, tzinfo=CHICAGO), "2018-07-07T05:00:00Z"),
    (datetime(2018, 7, 7, 7, 0, 0, tzinfo=BERLIN), "2018-07-07T05:00:00Z"),
    (datetime(2018, 7, 7, 2, 27, 24, 500000, tzinfo=UTC), "2018-07-07T02:27:24.5Z"),
    (datetime(2018, 7, 7, 2, 27, 24, 120000, tzinfo=UTC), "2018-07-07T02:27:24.12Z"),
    (datetime(2018, 7, 7, 2, 27, 24, 1, tzinfo=UTC), "2018-07-07T02:27:24.000001Z"),
    (datetime(2018, 7, 7, 2, 27, 24, 999999, tzinfo=UTC), "2018-07-07T02:27:24.999999Z"),
    (datetime(2018, 7, 7, 0, 0, tzinfo=timezone(timedelta(hours=5))), "2018-07-06T19:00:00Z"),
    (datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00Z"),
    (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05Z"),
])
def test_format_instant(instant, text):
    assert format_instant(instant) == text


def test_format_instant_rejects_naive():
    with pytest.raises(ValueError):
        format_instant(datetime(2018, 7, 7, 5))


@pytest.mark.parametrize("instant, micros", [
    (datetime(1970, 1, 1, tzinfo=UTC), 0),
    (datetime(2018, 7, 7, 5, tzinfo=UTC), 1_530_939_600_000_000),
    (datetime(2018, 7, 7, 0, tzinfo=CHICAGO), 1_530_939_600_000_000),
    (datetime(2018, 7, 7, 2, 27, 24, 123456, tzinfo=UTC), 1_530_930_444_123_456),
    (datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -1),
    (datetime(1900, 1, 1, tzinfo=UTC), -2_208_988_800_000_000),
])
def test_micros(instant, micros):
    assert to_micros(instant) == micros
    assert from_micros(micros) == instant
    assert from_micros(micros).tzinfo is UTC


def test_to_micros_rejects_naive():
    with pytest.raises(ValueError):
        to_micros(datetime(2018, 7, 7, 5))


# --- everything else is an error ------------------------------------------------------

BAD = [
    # after a bare date a space is not a '+': it reads like a local time of day
    "20180707 05:00",
    "2018-07-07 05:00",
    "20180715v012 05:00",
    "yesterday", "today", "nowz", "now now", "latest!", "n o w",
    "2018070", "201807070", "18-07-07", "2018-7-7", "2018-07-7", "2018-07-07-",
    "20180230", "20181301", "20180001", "20180700", "20190229", "00000101",
    "20180707T24:00:00", "20180707T23:60:00", "20180707T23:59:60", "20180707T2:27:24",
    "20180707T02:27", "20180707T0227", "20180707T022724.", "20180707T022724.1234567",
    "2018-07-07T022724", "2018-07-07 02:27:24", "20180707t02:27:24", "20180707T02:27:24z",
    "2018/07/07", "2018.07.07", "2018_07_07", "../20180707", "..", "/", "20180707/",
    "20180715v12", "20180715v0123", "20180715V012", "2018-07-15v012", "v012",
    "20180707T02:27:24+5:00", "20180707T02:27:24+0500", "20180707T02:27:24+05",
    "20180707T02:27:24+24:00", "20180707T02:27:24+05:60", "20180707T02:27:24++05:00",
    "20180707T02:27:24  05:00", "20180707T02:27:24Z+05:00", "20180707 Z",
    "20180707\x00", "2018\x0007\x0007", "\x1f20180707", "20180707\x1c", "2018\n0707",
    "\u0662\u0660\u0661\u0668\u0660\u0667\u0660\u0667",     # Arabic-Indic digits
    "\uff12\uff10\uff11\uff18\uff10\uff17\uff10\uff17",     # fullwidth digits
    "\uff4e\uff4f\uff57",                                   # fullwidth "now"
    "18991231", "99991231", "99990101T00:00:00Z",
    "2" * 65, " " * 65, "now" + " " * 62,
]


@pytest.mark.parametrize("text", BAD, ids=ascii)
def test_bad_dates(text):
    with pytest.raises(DateError) as info:
        parse(text)
    message = str(info.value)
    assert ACCEPTED_FORMS in message
    assert ascii(text[:40]) in message
    assert len(message) < 400


def test_space_only_stands_for_plus_before_an_offset():
    # "20180707 " is stripped, but "20180707 " + "Z" has a space that means nothing.
    assert parsed("20180707 ") == "2018-07-07T05:00:00Z"
    with pytest.raises(DateError):
        parse("20180707 Z")


def test_bad_date_message_is_readable():
    message = str(DateError("2018/07/07"))
    assert message.startswith("invalid date '2018/07/07'")
    assert message.endswith(ACCEPTED_FORMS)
    with pytest.raises(DateError, match="invalid date '20180230'; accepted forms"):
        parse("20180230")   # no 30 February in the grammar


def test_long_input_is_truncated_in_the_message():
    message = str(pytest.raises(DateError, parse, "9" * 1000).value)
    assert "9" * 40 in message and "9" * 41 not in message
    assert "..." in message


def test_date_error_is_a_value_error():
    assert issubclass(DateError, ValueError)


@pytest.mark.parametrize("value", [None, 20180707, b"20180707"])
def test_non_text_is_a_date_error(value):
    with pytest.raises(DateError):
        parse(value)


# --- properties -----------------------------------------------------------------------

def assert_date_error_or_utc(text, site_tz=CHICAGO):
    try:
        instant = parse(text, site_tz)
    except DateError as err:
        assert ACCEPTED_FORMS in str(err)
        str(err).encode("latin-1")      # fit for an HTTP header
    else:
        assert instant.utcoffset() == timedelta(0)
        night_label(instant, site_tz)   # every accepted instant has a night
        to_micros(instant)


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_arbitrary_text_only_ever_raises_date_error(text):
    assert_date_error_or_utc(text)


# Text that looks like a date string, to reach the checks behind the regexes.
DATE_LIKE = st.from_regex(
    r"\A[ ]?[0-9]{4}-?[0-9]{2}-?[0-9]{2}(v[0-9]{3}|T[0-9]{2}:?[0-9]{2}:?[0-9]{2}(\.[0-9]{0,7})?)?"
    r"(Z|[+ -][0-9]{2}:[0-9]{2})?[ ]?\Z"
)


@settings(max_examples=500)
@given(DATE_LIKE, st.sampled_from([CHICAGO, BERLIN, ZoneInfo("Pacific/Kiritimati"), UTC]))
def test_date_like_text_only_ever_raises_date_error(text, site_tz):
    assert_date_error_or_utc(text, site_tz)


@settings(max_examples=500)
@given(st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(9997, 12, 31),
                    timezones=st.timezones()))
def test_format_and_parse_round_trip(instant):
    text = format_instant(instant)
    # Compared as instants: Python never calls an ambiguous (fold) local time equal to a
    # datetime in another zone, even when both name the same instant.
    assert to_micros(parse(text)) == to_micros(instant)
    assert format_instant(parse(text)) == text


@given(st.integers(min_value=to_micros(datetime(1, 1, 2, tzinfo=UTC)),
                   max_value=to_micros(datetime(9999, 12, 30, tzinfo=UTC))))
def test_micros_round_trip(micros):
    assert to_micros(from_micros(micros)) == micros
