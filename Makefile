# driftloop: two commands do everything on a fresh machine with Python 3.11+.
#   make demo   install, start the embedded broker, run the loop, show what happened
#   make test   install, run the whole suite (unit, integration over the real broker)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Extra pip arguments, e.g. a CPU-only index for torch on machines that need one.
PIP_ARGS ?=
PYTEST_ARGS ?=
# Tests run in 3 pytest-xdist workers, one test file per worker (the suite mostly waits
# on brokers and child processes, so 3 workers fit 2 cores); XDIST=0 runs them serially.
XDIST ?= 3
PYTEST := $(BIN)/python -m pytest -n $(XDIST) --dist loadfile

.PHONY: install browser promtool demo test test-unit test-integration soak lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c constraints.txt -e '.[dev]'
	@touch $(STAMP)
	@echo "installed driftloop into $(VENV)"

install: $(STAMP)

# Debian's Chromium for the HTML report's browser test (skipped, with its reason, when
# it cannot be installed; CI requires it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null) \
	      || echo "chromium could not be installed: the browser test will skip"; \
	  else echo "chromium not installed (needs root and apt-get): the browser test will skip"; fi; }

# promtool for the alert-rule unit tests (deploy/prometheus/alerts_test.yml): the one
# static binary taken from Debian's prometheus package into the venv, no daemon installed
# (skipped, with its reason, when it cannot be installed; CI requires it).
promtool: install
	@command -v promtool >/dev/null 2>&1 || [ -x $(BIN)/promtool ] || { \
	  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then \
	    tmp=$$(mktemp -d); \
	    { [ "$$(id -u)" != 0 ] || apt-get update -qq; } \
	      && (cd $$tmp && apt-get download -qq prometheus >/dev/null 2>&1) \
	      && dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/root \
	      && install -m 0755 $$tmp/root/usr/bin/promtool $(BIN)/promtool \
	      || echo "promtool could not be installed: the alert-rule tests will skip"; \
	    rm -rf $$tmp; \
	  else echo "promtool not installed (needs apt-get and dpkg-deb): the alert-rule tests will skip"; fi; }

demo: install
	$(BIN)/python -m services.demo.run

test: install browser promtool
	$(PYTEST) --durations=25 $(PYTEST_ARGS)

test-unit: install promtool
	$(PYTEST) -m "not integration and not chaos" $(PYTEST_ARGS)

# Soaks: long fuzz budgets, the multiclass and regression example loops, kills with the
# product's session timeout, the drift, shadow and online kill -9 runs, the services over a
# broker kill -9, the one-process trace chain, the child-process training errors (about 25
# minutes).
soak: install browser
	$(PYTEST) -m soak $(PYTEST_ARGS)

test-integration: install
	$(PYTEST) -m "integration or chaos" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .driftloop .pytest_cache feature_repo/data
