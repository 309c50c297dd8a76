"""WSGI entry point of the fplaneserver web app (uWSGI: examples/uwsgi.ini).

The config file is $FPLANE_CONFIG, or config.ini at the repository root.
"""
import os
import sys
from functools import partial

from wsgi.app import application as fplane_application, load_service
from wsgi.config import ConfigError

configfile = os.environ.get('FPLANE_CONFIG') or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config.ini')

# Read config.ini now, in the uWSGI master: a bad file stops start-up with one line
# (need-app) instead of failing on the first request, and the workers forked from the
# master inherit the parsed configuration.
try:
    load_service(configfile)
except ConfigError as err:
    sys.exit(f'fplaneserver: {err}')

# partial, as HiSPARC's datastore does: the config path is bound once, when the
# server loads this file, while `application` keeps the plain WSGI signature
# (environ, start_response) that any server, and WebTest in the tests, can call.
application = partial(fplane_application, configfile=configfile)
