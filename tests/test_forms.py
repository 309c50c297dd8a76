"""Decoding urlencoded form bodies (wsgi/forms.py): exactly urllib's bytes, faster."""
from urllib.parse import quote_from_bytes, unquote_to_bytes

from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsgi.forms import parse_form, unquote_plus_bytes

# Bytes rich in what breaks naive decoders: '%', hex digits, '+', and escapes of '%'.
TRICKY = st.lists(st.sampled_from([b"%", b"%25", b"%2", b"5", b"3", b"A", b"a", b"+", b"%41",
                                   b"%4", b"1", b"%e2%82%ac", b"%zz", b"x", b"%%", b"{"]),
                  max_size=30).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(TRICKY, st.binary(max_size=60)))
@example(b"%%341 %41")   # a "%" that starts no escape, then one that decodes to a hex digit
@example(b"%2541")
def test_the_same_bytes_as_urllib(text):
    assert unquote_plus_bytes(text) == unquote_to_bytes(text.replace(b"+", b" "))


@given(st.binary(max_size=200))
def test_a_quoted_value_comes_back_exactly(value):
    assert unquote_plus_bytes(quote_from_bytes(value, safe="").encode("ascii")) == value


def test_a_form_with_a_json_field():
    data = b'{"config": {"a": [1, 2]}, "commit": true}'
    body = b"station_id=tcs&password=p%2Bq&data=" + quote_from_bytes(data, safe="").encode()
    fields = parse_form("application/x-www-form-urlencoded", body)
    assert fields == {"station_id": [b"tcs"], "password": [b"p+q"], "data": [data]}
