"""What every test shares."""

import pytest

from wsgi.app import close_services


@pytest.fixture(autouse=True)
def _services_closed():
    """Each test's services (built by application() for its config file) are closed after
    it, so that the suite's open files stay few: a non-root shell's limit is often 1024."""
    yield
    close_services()
