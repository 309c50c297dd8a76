"""The helper every test needing a program pip cannot install goes through."""

import pytest

from tests.support import required_programs

ABSENT = "/nonexistent/fplane-no-such-program"


def test_a_missing_program_skips_outside_ci_with_the_install_hint(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"fplane-no-such-program missing: apt-get install it"):
        required_programs("sh", ABSENT, install="apt-get install it")


def test_a_missing_program_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"missing: apt-get install it \(CI=true"):
        required_programs(ABSENT, install="apt-get install it")


def test_present_programs_are_found_by_name_or_path(monkeypatch):
    monkeypatch.setenv("CI", "true")
    sh, = required_programs("sh", install="-")
    assert required_programs(sh, install="-") == [sh]
