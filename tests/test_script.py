"""GET /get_fplane.sh: the curl-only client handed out with the server's own URL, run as a
user would (`curl -O <server>/get_fplane.sh && sh get_fplane.sh DATE`) under dash (Debian's
sh, no pipefail, no bash syntax) and bash, against a real uWSGI."""

import os
import subprocess

import pytest

from tests.fplane_samples import make_rows, strict_fplane_parse
from tests.support import import_rows, init_store, required_programs, test_app, write_config
from tests.test_deploy import running_uwsgi

FIRST = make_rows()


@pytest.fixture
def config(tmp_path):
    config = write_config(tmp_path)
    init_store(config)
    import_rows(config, FIRST, "20180601")
    return config


def served_from(script: str) -> str:
    lines = [line for line in script.splitlines() if line.startswith("served_from=")]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("environ, url", [
    ({"HTTP_HOST": "fplane.example.org"}, "http://fplane.example.org"),
    ({"HTTP_HOST": "fplane.example.org:443", "wsgi.url_scheme": "https"}, "https://fplane.example.org"),
    ({"HTTP_HOST": "127.0.0.1:8443", "wsgi.url_scheme": "https"}, "https://127.0.0.1:8443"),
    ({"HTTP_HOST": "[::1]:8080"}, "http://[::1]:8080"),
    ({"HTTP_HOST": "het.example.org", "SCRIPT_NAME": "/fplane"}, "http://het.example.org/fplane"),
])
def test_the_served_copy_names_the_url_the_client_used(config, environ, url):
    answer = test_app(config).get("/get_fplane.sh", extra_environ=environ)
    assert answer.headers["X-FPlane-Code"] == "100"
    assert answer.headers["Cache-Control"] == "no-store"
    assert served_from(answer.text) == f"served_from='{url}'"


@pytest.mark.parametrize("host", ["evil'$(touch /tmp/x)'", "a b", "x;rm", 'x"y', "host:80:80", "é.org",
                                  "-x.org", "x.org:`id`"])
def test_a_host_that_is_not_plain_is_refused_never_written_into_the_script(config, host):
    answer = test_app(config).get("/get_fplane.sh", extra_environ={"HTTP_HOST": host}, status=400)
    assert answer.headers["X-FPlane-Code"] == "306"
    assert "served_from" not in answer.text


def test_the_repository_copy_has_no_url(config):
    from wsgi.script import SCRIPT
    assert served_from(SCRIPT.read_text()) == "served_from=''"


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_downloaded_script_works_with_no_setup(config, tmp_path, shell):
    required_programs("curl", shell, install=f"apt-get install curl {shell}")
    env = {k: v for k, v in os.environ.items() if k != "FPLANE_URL"}
    work = tmp_path / "work"
    work.mkdir()
    with running_uwsgi(config, tmp_path / "uwsgi.log") as (base, _):
        subprocess.run(["curl", "-sSfO", f"{base}/get_fplane.sh"], cwd=work, check=True, timeout=30)
        done = subprocess.run([shell, "get_fplane.sh", "20180707"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith("wrote fplane20180707.txt (version 1,")
        served = subprocess.run(["curl", "-sSf", f"{base}/fplane/20180707?actual_pos=0&full_fplane=1"],
                                capture_output=True, text=True, check=True, timeout=30).stdout
        assert (work / "fplane20180707.txt").read_text() == served
        strict_fplane_parse(served)

        short = subprocess.run([shell, "get_fplane.sh", "-s", "-o", "-", "2018-07-07T02:27:24+05:00"],
                               cwd=work, env=env, capture_output=True, text=True, timeout=60)
        assert short.returncode == 0, short.stderr
        assert "(asked for: 2018-07-07T02:27:24+05:00)" in short.stdout
        assert "short file" in short.stdout

        refused = subprocess.run([shell, "get_fplane.sh", "20180101"], cwd=work, env=env,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1
        assert refused.stderr.startswith("302 no configuration known")
        assert sorted(p.name for p in work.iterdir()) == ["fplane20180707.txt", "get_fplane.sh"]
