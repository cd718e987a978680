# sip-edge: `make run` starts the daemon on the example config, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
CONFIG ?= config/edge.toml
DIALPLANS ?= dialplans
DEB_TEST_TOOLS := sipp:sip-tester redis-server:redis-server redis-cli:redis-tools secsipidx:secsipidx chromium:chromium chromedriver:chromium-driver
DEB_BENCH_TOOLS := kamailio:kamailio
DEB_PROMPT_TOOLS := espeak-ng:espeak-ng sox:sox

# The hot path compiled by setup.py (edge/build.py COMPILED_MODULES): gcc and the Python headers build it; an
# editable install keeps the extensions in the tree, so editing one of these sources rebuilds them.
DEB_COMPILE_TOOLS := gcc:gcc
COMPILED_SRC := $(shell sed -n '/^COMPILED_MODULES = (/,/^)/s/^ *"\([a-z_.]*\)",.*/\1/p' edge/build.py | tr . / | sed 's/$$/.py/')
BUILD_LABEL = $(BIN)/python -c 'from edge.build import build_info; print("sip-edge build:", build_info().label)'
# After the compiled suite, the parser/core tests once more on the .py source (SIP_EDGE_PURE=1).
PURE_TESTS ?= tests/test_build.py tests/sip tests/call

DEB_OUT ?= dist
DEB_BUILD_TOOLS := dpkg-deb:dpkg systemd-analyze:systemd

.PHONY: run test check bench fuzz deps-build deps-test deps-bench clean prompts deb

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

INSTALL_INPUTS := $(BIN)/python pyproject.toml constraints.txt setup.py edge/build.py $(COMPILED_SRC)

$(VENV)/.installed: $(INSTALL_INPUTS) | deps-build
	$(PIP) -e .
	@$(BUILD_LABEL)
	touch $@

# The test extra in one install, so a fresh venv compiles the hot path once; it serves `make run` too.
$(VENV)/.installed-test: $(INSTALL_INPUTS) | deps-build
	$(PIP) -e '.[test]'
	@$(BUILD_LABEL)
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PIP) -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	mkdir -p var
	$(BIN)/sip-edge check --config $(CONFIG) $(DIALPLANS)
	exec $(BIN)/sip-edge run --config $(CONFIG) $(DIALPLANS)

check: $(VENV)/.installed
	$(BIN)/sip-edge check --config $(CONFIG) $(DIALPLANS)

# gcc and the Python headers (python3-dev) for the compiled hot path; without them the install is pure Python.
deps-build:
	@scripts/debian-tools.sh $(DEB_COMPILE_TOOLS)
	@$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		|| scripts/debian-tools.sh no-such-command:python3-dev

deps-test:
	@scripts/debian-tools.sh $(DEB_TEST_TOOLS)

deps-bench: deps-test
	@scripts/debian-tools.sh $(DEB_BENCH_TOOLS)

test: $(VENV)/.installed-test deps-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(if $(PURE_TESTS),SIP_EDGE_PURE=1 $(BIN)/python -m pytest -q -m "not compiled_build" $(PURE_TESTS))

# Generated (hypothesis) and mutated (torture vectors, e2e scenario messages) SIP through the parser, the
# stream framer and the proxy core; stops at FUZZ_COUNT messages or FUZZ_SECONDS, whichever comes first.
FUZZ_COUNT ?= 1000000
FUZZ_SECONDS ?= 3600
fuzz: $(VENV)/.installed-test
	mkdir -p var
	$(BIN)/python -m tests.sip.fuzz_campaign --count $(FUZZ_COUNT) --seconds $(FUZZ_SECONDS) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

bench: $(VENV)/.installed-bench deps-bench
	$(BIN)/python -m benchmarks.run $(if $(COMPARE),--compare $(COMPARE)) $(BENCH_ARGS)

# The Debian package (FHS layout, own venv under /usr/lib/sip-edge): see packaging/build-deb.sh.
deb:
	@scripts/debian-tools.sh $(DEB_BUILD_TOOLS)
	@$(MAKE) --no-print-directory deps-build PYTHON=/usr/bin/python3
	@/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || scripts/debian-tools.sh no-such-command:python3-venv
	packaging/build-deb.sh $(DEB_OUT)

prompts:
	@scripts/debian-tools.sh $(DEB_PROMPT_TOOLS)
	scripts/make-prompts.sh config/prompts

clean:
	rm -rf $(VENV) var .pytest_cache
