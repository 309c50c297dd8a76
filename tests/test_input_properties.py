"""Properties of the readers of what clients send, beside the ones in test_dates.py,
test_fplane.py, test_hardware_status.py and test_forms.py:

- the status -> configuration builder (wsgi/hardware_status.py): a status made of a configuration
  builds that configuration back, whatever the order of its entries and however its ids
  and keys are written; the special rows come from the previous version untouched;
- the form reader (wsgi/forms.py): any form encoded as a station would encode it is read
  back field for field, byte for byte (urlencoded and multipart); any other body, content
  type or length is refused with its code (202, 212), never another exception, and never
  more than max_body bytes are read.
"""

import io
import json
import random
from urllib.parse import quote_from_bytes
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fplane_samples import LRS2_ROWS, SPECIAL_ROWS, make_rows
from wsgi import codes
from wsgi.forms import MULTIPART, URLENCODED, parse_form, read_body
from wsgi.fplane import (REFERENCE_ROW, VIRUS_SLOTS, canonical_order, nominal_position,
                         parse_fplane, render_fplane)
from wsgi.responses import CodedError
from wsgi.hardware_status import build_configuration, parse_status

TZ = ZoneInfo("America/Chicago")
TIMESTAMP = "2018-07-15T17:02:11Z"
STATIC_ROWS = canonical_order((REFERENCE_ROW, *LRS2_ROWS, *SPECIAL_ROWS))


# -- the status -> configuration builder ---------------------------------------------------

@st.composite
def seat_assignments(draw):
    """VIRUS seat -> (specid, specslot, ifuid): active seats (a spectrograph), seats with a
    bundle only (specid 0) and empty seats (left out); spectrographs and IFUs unique."""
    seats = draw(st.lists(st.sampled_from(VIRUS_SLOTS), unique=True, max_size=len(VIRUS_SLOTS)))
    ifuids = draw(st.lists(st.integers(1, 999), min_size=len(seats), max_size=len(seats), unique=True))
    specids = draw(st.lists(st.integers(1, 999), min_size=len(seats), max_size=len(seats), unique=True))
    bundle_only = draw(st.lists(st.booleans(), min_size=len(seats), max_size=len(seats)))
    specslots = draw(st.lists(st.integers(0, 999), min_size=len(seats), max_size=len(seats)))
    return {seat: (0 if alone else specid, specslot, ifuid)
            for seat, specid, specslot, ifuid, alone in zip(seats, specids, specslots, ifuids, bundle_only)}


def written(value: int, style: str):
    """An id as stations write them: zero-padded string, plain string or integer."""
    return {"padded": f"{value:03d}", "plain": str(value), "int": value}[style]


@st.composite
def statuses(draw, assignment):
    """A status of ``assignment``, entries shuffled, ids and key case as the station likes."""
    styles = st.sampled_from(["padded", "plain", "int"])
    entries = []
    for seat, (specid, specslot, ifuid) in assignment.items():
        keys = {k: draw(st.sampled_from([k, k.upper(), k.capitalize()]))
                for k in ("ifuslot", "specid", "specslot", "ifuid")}
        entries.append({keys["ifuslot"]: written(seat, draw(styles)),
                        keys["specid"]: written(specid, draw(styles)),
                        keys["specslot"]: written(specslot, draw(styles)),
                        keys["ifuid"]: written(ifuid, draw(styles))})
    random.Random(draw(st.integers(0, 2**16))).shuffle(entries)
    return {"timestamp": TIMESTAMP, "spectrographs": entries}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), seat_assignments(), st.sampled_from(["none", "static", "previous"]))
def test_a_status_builds_the_configuration_it_describes(data, assignment, previous_kind):
    status = data.draw(statuses(assignment))
    previous = make_rows() if previous_kind == "previous" else None
    rows = build_configuration(parse_status(json.loads(json.dumps(status)), TZ), previous,
                               STATIC_ROWS if previous_kind == "static" else (REFERENCE_ROW,))
    by_seat = {r.ifuslot: r for r in rows}
    assert len(by_seat) == len(rows) and tuple(rows) == canonical_order(rows)
    for seat in VIRUS_SLOTS:
        specid, specslot, ifuid = assignment.get(seat, (0, 0, 0))
        row = by_seat[seat]
        assert (row.specid, row.specslot, row.ifuid) == (specid, specslot, ifuid), seat
        assert row.active == (specid != 0), seat
        assert (row.x, row.y) == nominal_position(seat), seat
    # the special rows: carried over untouched (LRS2 moved to its nominal place)
    source = {r.ifuslot: r for r in (previous or (STATIC_ROWS if previous_kind == "static"
                                                  else (REFERENCE_ROW,)))}
    for seat, row in source.items():
        if seat not in VIRUS_SLOTS and seat not in (56, 66):
            assert by_seat[seat] == row, seat
    # the file it makes is read back as the same rows
    assert parse_fplane(render_fplane(rows, ["built"], full=True)).rows == tuple(rows)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), seat_assignments())
def test_how_a_status_is_written_does_not_change_what_it_builds(data, assignment):
    one, other = data.draw(statuses(assignment)), data.draw(statuses(assignment))
    assert (build_configuration(parse_status(one, TZ), None, STATIC_ROWS)
            == build_configuration(parse_status(other, TZ), None, STATIC_ROWS))


# -- the form reader -----------------------------------------------------------------------

NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
FIELDS = st.lists(st.tuples(NAMES, st.binary(max_size=60)), max_size=8)


def expected_fields(pairs) -> dict[str, list[bytes]]:
    fields: dict[str, list[bytes]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


@settings(max_examples=500, deadline=None)
@given(FIELDS, st.sampled_from(["", "; charset=utf-8"]), st.booleans())
def test_an_urlencoded_form_is_read_back_byte_for_byte(pairs, parameters, plus_for_space):
    def encode(value: bytes) -> bytes:
        text = quote_from_bytes(value, safe="" if not plus_for_space else " ")
        return (text.replace(" ", "+") if plus_for_space else text).encode("ascii")

    body = b"&".join(encode(name.encode("utf-8")) + b"=" + encode(value) for name, value in pairs)
    assert parse_form(URLENCODED + parameters, body) == expected_fields(pairs)


BOUNDARY = "----fplane-property-boundary"
MULTIPART_NAMES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                        blacklist_characters='"\\;='), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(MULTIPART_NAMES, st.binary(max_size=60)), min_size=1, max_size=6))
def test_a_multipart_form_is_read_back_byte_for_byte(pairs):
    pairs = [(name, value) for name, value in pairs if BOUNDARY.encode() not in value]
    body = b"".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                    + value + b"\r\n" for name, value in pairs) + f"--{BOUNDARY}--\r\n".encode()
    assert parse_form(f"{MULTIPART}; boundary={BOUNDARY}", body) == expected_fields(pairs)


CONTENT_TYPES = st.one_of(
    st.text(max_size=60),
    st.sampled_from([URLENCODED, MULTIPART, f"{MULTIPART}; boundary=b", f"{MULTIPART}; boundary=",
                     f'{MULTIPART}; boundary="', "MULTIPART/FORM-DATA;BOUNDARY=b", "text/plain"]))
BODIES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"--b", b"\r\n", b"--", b"Content-Disposition: form-data; name=",
                              b'"x"', b"a=b", b"&", b"%", b"%zz", b"=", b"\x00", b"\xff"]),
             max_size=40).map(b"".join))


@settings(max_examples=1000, deadline=None)
@given(CONTENT_TYPES, BODIES)
@example(f"{MULTIPART}; boundary=b", b"--b\r\n" * 40)
def test_any_body_is_read_or_refused_with_202(content_type, body):
    try:
        fields = parse_form(content_type, body)
    except CodedError as err:
        assert err.code == codes.MISSING_FIELD and err.message
        return
    assert all(isinstance(name, str) and all(isinstance(v, bytes) for v in values)
               for name, values in fields.items())


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 300).map(str)),
       st.binary(max_size=200), st.integers(1, 150))
def test_a_body_is_read_within_the_limit_or_refused(length, sent, max_body):
    environ = {"wsgi.input": io.BytesIO(sent)}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    try:
        body = read_body(environ, max_body)
    except CodedError as err:
        assert err.code in (codes.MISSING_FIELD, codes.BODY_TOO_LARGE)
        return
    assert len(body) <= max_body and sent.startswith(body)
