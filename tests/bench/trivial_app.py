"""The baseline of the GET benchmark: a trivial WSGI app answering every request with a
constant body of $FPLANE_BENCH_BODY_SIZE bytes (the size of the fplane response it is
compared with), status 200, Content-Type and Content-Length.

Served by a copy of examples/uwsgi.ini whose only change is the wsgi-file line
(tests/bench/test_get_throughput.py), so it pays exactly the uWSGI costs the fplane app pays.
"""
import os

_SIZE = int(os.environ["FPLANE_BENCH_BODY_SIZE"])
# Text like an fplane file: lines of tab-separated columns, ending with a newline.
_LINE = b"013\t-450.000\t 150.000\t012\t101\t001\t0.000\t1.000\n"
BODY = (_LINE * (_SIZE // len(_LINE) + 1))[:_SIZE - 1] + b"\n"
HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))]
assert len(BODY) == _SIZE


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
