"""The whole HTTP API fuzzed from /openapi.json against the running service: uWSGI with
examples/uwsgi.ini on a free loopback port, the writer beside it, the document fetched
from the service itself.

tests/test_openapi.py fuzzes the app in-process (WebTest); this one sends the requests
over HTTP through uWSGI's routers, where headers, paths and bodies are parsed by other
code. Every answer must carry an X-FPlane-Code and be no 5xx but a 503 with code 401 (an
unavailable store), besides what the document says of it.
"""

import json
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings

from tests.support import add_station, import_rows, init_store, write_config
from tests.test_deploy import running_uwsgi
from tests.test_openapi import FIRST, FUZZ_EXAMPLES, SECOND, fuzzed_operations
from wsgi import codes


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi-uwsgi")
    # The fuzzer posts wrong passwords by the hundred: no lockout here (test_guessing.py).
    config = write_config(tmp, Server={"max_failed_logins": "1000000"})
    init_store(config)
    import_rows(config, FIRST, "20180601", "--comment", "first light")
    import_rows(config, SECOND, "20180801", "--comment", "IFU swap")
    add_station(config, "ops", "config;positions")
    with running_uwsgi(config, tmp / "uwsgi.log") as (base, _):
        with urllib.request.urlopen(base + "/openapi.json") as response:
            document = json.load(response)
        yield base, document


def coded_and_no_server_error(ctx, response, case):
    # schemathesis keeps the headers as a plain dict (name -> list of values): look the
    # name up case-insensitively, as HTTP reads it
    found = [v for name, v in response.headers.items() if name.lower() == "x-fplane-code"]
    code = (found[0][0] if isinstance(found[0], list) else found[0]) if found else None
    assert code is not None and code.isdigit() and int(code) in codes.CODES, (
        f"no X-FPlane-Code: HTTP {response.status_code} {response.text[:200]!r}")
    assert response.status_code < 500 or (response.status_code, int(code)) == (503, codes.UNAVAILABLE), (
        f"HTTP {response.status_code} code {code}: {response.text[:200]!r}")


@pytest.mark.parametrize("path, method, constrained", fuzzed_operations())
def test_fuzzed_requests_under_uwsgi(service, path, method, constrained):
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi import checks

    base, document = service
    operation = schemathesis.openapi.from_dict(document)[path][method.upper()]
    common = [coded_and_no_server_error, checks.status_code_conformance,
              checks.content_type_conformance, checks.response_headers_conformance,
              checks.response_schema_conformance]
    modes = {GenerationMode.POSITIVE: common}
    if constrained:
        modes[GenerationMode.NEGATIVE] = [*common, checks.negative_data_rejection]
    for mode, mode_checks in modes.items():
        @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            case.validate_response(case.call(base_url=base, timeout=30), checks=mode_checks)

        fuzz()
