# fplaneserver: everything runs from a virtualenv in .venv made from $(PYTHON).
# A fresh machine needs only python3 (with venv) and a C compiler: uWSGI is
# built from source by pip the first time.
#
#   make test                 run the test suite (PYTEST_ARGS='-k store -x' to narrow it)
#   make run                  demo data in var/, then uWSGI on http://127.0.0.1:$(PORT)/ (PORT=9000 for another)
#   make run-cached           the same behind nginx's cache: https://127.0.0.1:$(CACHED_PORT)/
#   make bench                benchmarks in tests/bench (never part of `make test`)
#   make drills               fault drills in tests/drills, full size (DRILL=writer-kill: one)
#   make results              drills and benchmarks: their figures into tests/bench/RESULTS.md
#   make clean / distclean    remove generated files / and the virtualenv

PYTHON ?= python3
PORT ?= 8080
# make run's demo site (config.ini, store, logs); a test points it at a temporary directory.
VAR ?= var
# make run-cached: nginx on CACHED_PORT (HTTPS) and CACHED_HTTP_PORT (reads over plain HTTP),
# talking to uWSGI's uwsgi-protocol socket on CACHED_APP_PORT; uWSGI's own router stays on PORT.
# (Not UWSGI_*: uWSGI reads every UWSGI_* environment variable as an option, and make exports
# the variables given on its command line.)
CACHED_PORT ?= 8443
CACHED_HTTP_PORT ?= 8088
CACHED_APP_PORT ?= 8081
PYTEST_ARGS ?=
DRILL ?=

VENV := .venv
VPY := $(VENV)/bin/python
# Touched only after a successful install, so an interrupted pip run is retried
# and a change to the dependencies re-installs. INSTALLED: the package with the test
# extras (make test, make venv); RUN_INSTALLED: what running needs, no test tools (make run).
INSTALLED := $(VENV)/.installed
RUN_INSTALLED := $(VENV)/.installed-run
# Touched only after examples/demo.py succeeds, so a failed demo is retried.
DEMO_READY := $(VAR)/.demo-ready
REQUEST_LOG := $(VAR)/log/fplaneserver.log

.DEFAULT_GOAL := help
.PHONY: help venv test run run-cached port-free bench drills results clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

venv: $(INSTALLED)

# After pip: uWSGI must embed this venv's Python. pip may take a uWSGI wheel from its cache
# that was built for another CPython of the same version (pyenv's beside Debian's), which
# then fails at start-up on `import math`; examples/check_uwsgi.py asks uWSGI itself and,
# if it differs, uWSGI is rebuilt from source with pip's cache off.
define check_uwsgi
	@$(VPY) examples/check_uwsgi.py || { \
	    echo "make: uWSGI was built for another Python (a wheel from pip's cache); rebuilding it from source for $(VENV)"; \
	    $(VPY) -m pip install --no-cache-dir --force-reinstall --no-deps --no-binary uWSGI \
	        "uWSGI==$$($(VPY) -c 'import importlib.metadata as m; print(m.version("uWSGI"))')" && \
	    $(VPY) examples/check_uwsgi.py && echo "make: uWSGI now runs $(VENV)'s Python"; }
endef

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -e '.[test]'
	$(check_uwsgi)
	touch $@ $(RUN_INSTALLED)

$(RUN_INSTALLED): setup.cfg pyproject.toml
	@echo "make: installing fplaneserver into $(VENV) (the first time pip builds uWSGI from source: minutes)"
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -e .
	$(check_uwsgi)
	touch $@

test: $(INSTALLED)
	$(VPY) -m pytest $(PYTEST_ARGS)

# Order-only on the venv: a later dependency change must not re-run the demo.
$(DEMO_READY): | $(RUN_INSTALLED)
	mkdir -p $(VAR)
	$(VPY) examples/demo.py --config $(VAR)/config.ini
	touch $@

# Before anything is installed or built: a busy port is one line (make's own, from $(error)).
# Something answering a connection on it means it is taken (by an earlier make run, say).
port_problem = $(shell $(PYTHON) -c 'import socket, sys; p = sys.argv[1]; print( \
    f"PORT={p} is not a port number" if not (p.isdigit() and 0 < int(p) < 65536) else \
    f"port {p} on 127.0.0.1 is in use" if socket.socket().connect_ex(("127.0.0.1", int(p))) == 0 \
    else "")' '$(PORT)')
port-free:
	$(if $(port_problem),$(error make run: $(port_problem); choose another: make run PORT=9000))

# In the foreground: the request log (every request, every commit of the writer), followed
# from the log file; uWSGI's own start-up lines go to $(VAR)/log/uwsgi.log, shown only if
# it fails. PATH lets uWSGI's attached daemon find fplane-writer. Ctrl-C stops it all.
run: port-free $(RUN_INSTALLED) $(DEMO_READY)
	@echo
	@echo "fplaneserver: http://127.0.0.1:$(PORT)/  (open it in a browser; Ctrl-C stops it)"
	@echo "try:  $(VENV)/bin/get_fplane --url http://127.0.0.1:$(PORT) 20180715   (writes fplane20180715.txt)"
	@echo "  or: curl 'http://127.0.0.1:$(PORT)/fplane/20180715?actual_pos=0&full_fplane=1'"
	@echo "post a status as the TCS does (the writer commits it within seconds):"
	@echo "      $(VPY) examples/demo.py status | $(VENV)/bin/update_fplane --station demo-tcs \\"
	@echo "        --password-file $(VAR)/demo-tcs.password --url http://127.0.0.1:$(PORT) -"
	@echo "manage it (history, stations, held updates; README \"fplane-admin\"):"
	@echo "      $(VENV)/bin/fplane-admin -c $(VAR)/config.ini history"
	@echo "requests as they come (also in $(REQUEST_LOG)):"
	@echo
	@mkdir -p '$(VAR)/log' && touch '$(REQUEST_LOG)'
	@tail -n 0 -F '$(REQUEST_LOG)' 2>/dev/null & follower=$$!; \
	FPLANE_CONFIG='$(abspath $(VAR))/config.ini' FPLANE_PORT='$(PORT)' \
	PATH='$(CURDIR)/$(VENV)/bin':"$$PATH" \
	$(VENV)/bin/uwsgi --ini examples/uwsgi.ini --logto '$(VAR)/log/uwsgi.log'; status=$$?; \
	kill $$follower 2>/dev/null; \
	if [ $$status -ne 0 ]; then echo "uWSGI stopped (exit status $$status); the end of $(VAR)/log/uwsgi.log:"; \
	    tail -n 20 '$(VAR)/log/uwsgi.log'; fi; exit $$status

# uWSGI (with its writer) and nginx's cache in front (examples/nginx.conf, written for the
# local paths into var/nginx with a throwaway self-signed TLS pair; nginx runs as you, no
# /etc touched). Ctrl-C stops both; if uWSGI dies, nginx serves what it has cached.
run-cached: $(RUN_INSTALLED) $(DEMO_READY)
	PATH='$(CURDIR)/$(VENV)/bin':"$$PATH" \
	exec $(VPY) examples/run_cached.py --config $(VAR)/config.ini --dir $(VAR)/nginx \
	    --port $(CACHED_PORT) --http-port $(CACHED_HTTP_PORT) --uwsgi-port $(CACHED_APP_PORT) --direct-port $(PORT)

bench: $(INSTALLED)
	$(VPY) -m pytest tests/bench -p no:cacheprovider -s $(PYTEST_ARGS)

# Each drill prints its figures, records them in tests/bench/RESULTS.md and fails the
# target when anything was lost (tests/drills/__init__.py says what each one does).
drills: $(INSTALLED)
	$(VPY) -m tests.drills $(DRILL)

# Every figure of RESULTS.md measured anew: the drills, then the benchmarks (both run
# even when the first fails; the target fails if either did).
results: $(INSTALLED)
	status=0; $(MAKE) drills || status=1; $(MAKE) bench || status=1; exit $$status

clean:
	rm -rf var build dist *.egg-info .pytest_cache .hypothesis tests/artifacts
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o \
		\( -name __pycache__ -type d -exec rm -rf {} + \)

distclean: clean
	rm -rf $(VENV)
