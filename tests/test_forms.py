"""Decoding urlencoded form bodies (wsgi/forms.py): the exact bytes sent."""
from urllib.parse import quote_from_bytes

from hypothesis import given
from hypothesis import strategies as st

from wsgi.forms import parse_form, unquote_plus_bytes

@given(st.binary(max_size=200))
def test_a_quoted_value_comes_back_exactly(value):
    assert unquote_plus_bytes(quote_from_bytes(value, safe="").encode("ascii")) == value


def test_a_form_with_a_json_field():
    data = b'{"config": {"a": [1, 2]}, "commit": true}'
    body = b"station_id=tcs&password=p%2Bq&data=" + quote_from_bytes(data, safe="").encode()
    fields = parse_form("application/x-www-form-urlencoded", body)
    assert fields == {"station_id": [b"tcs"], "password": [b"p+q"], "data": [data]}
