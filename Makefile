# fplaneserver: everything runs from a virtualenv in .venv made from $(PYTHON).
# A fresh machine needs only python3 (with venv) and a C compiler: uWSGI is
# built from source by pip the first time.
#
#   make test                 run the test suite (PYTEST_ARGS='-k store -x' to narrow it)
#   make run                  demo data in var/, then uWSGI on http://127.0.0.1:$(PORT)/
#   make bench                benchmarks in tests/bench (never part of `make test`)
#   make drills               fault drills in tests/drills, full size (DRILL=writer-kill: one)
#   make results              drills and benchmarks: their figures into tests/bench/RESULTS.md
#   make clean / distclean    remove generated files / and the virtualenv

PYTHON ?= python3
PORT ?= 8080
PYTEST_ARGS ?=
DRILL ?=

VENV := .venv
VPY := $(VENV)/bin/python
# Touched only after a successful install, so an interrupted pip run is retried
# and a change to the dependencies re-installs.
INSTALLED := $(VENV)/.installed
# Touched only after examples/demo.py succeeds, so a failed demo is retried.
DEMO_READY := var/.demo-ready

.DEFAULT_GOAL := help
.PHONY: help venv test run bench drills results clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

venv: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -e '.[test]'
	touch $@

test: $(INSTALLED)
	$(VPY) -m pytest $(PYTEST_ARGS)

# Order-only on the venv: a later dependency change must not re-run the demo.
$(DEMO_READY): | $(INSTALLED)
	mkdir -p var
	$(VPY) examples/demo.py --config var/config.ini
	touch $@

# exec: uWSGI replaces the recipe's shell, so Ctrl-C and SIGTERM reach its
# master directly. PATH lets uWSGI's attached daemons find the console scripts.
run: $(INSTALLED) $(DEMO_READY)
	@echo
	@echo "fplaneserver: http://127.0.0.1:$(PORT)/  (open it in a browser; Ctrl-C stops it)"
	@echo "try:  $(VENV)/bin/get_fplane --url http://127.0.0.1:$(PORT) 20180715   (writes fplane20180715.txt)"
	@echo "  or: curl 'http://127.0.0.1:$(PORT)/fplane/20180715?actual_pos=0&full_fplane=1'"
	@echo "post a status as the TCS does (the writer commits it within seconds):"
	@echo "      $(VPY) examples/demo.py status | $(VENV)/bin/update_fplane --station demo-tcs \\"
	@echo "        --password-file var/demo-tcs.password --url http://127.0.0.1:$(PORT) -"
	@echo
	FPLANE_CONFIG='$(CURDIR)/var/config.ini' FPLANE_PORT='$(PORT)' \
	PATH='$(CURDIR)/$(VENV)/bin':"$$PATH" \
	exec $(VENV)/bin/uwsgi --ini examples/uwsgi.ini

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
