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

DEB_OUT ?= dist
DEB_BUILD_TOOLS := dpkg-deb:dpkg systemd-analyze:systemd

.PHONY: run test check bench fuzz deps-test deps-bench clean prompts deb

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PIP) -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	mkdir -p var
	$(BIN)/sip-edge check --config $(CONFIG) $(DIALPLANS)
	exec $(BIN)/sip-edge run --config $(CONFIG) $(DIALPLANS)

check: $(VENV)/.installed
	$(BIN)/sip-edge check --config $(CONFIG) $(DIALPLANS)

deps-test:
	@scripts/debian-tools.sh $(DEB_TEST_TOOLS)

deps-bench: deps-test
	@scripts/debian-tools.sh $(DEB_BENCH_TOOLS)

test: $(VENV)/.installed-test deps-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
	@/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || scripts/debian-tools.sh no-such-command:python3-venv
	packaging/build-deb.sh $(DEB_OUT)

prompts:
	@scripts/debian-tools.sh $(DEB_PROMPT_TOOLS)
	scripts/make-prompts.sh config/prompts

clean:
	rm -rf $(VENV) var .pytest_cache
