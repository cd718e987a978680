# sip-edge: `make run` starts the daemon on the example config, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
CONFIG ?= config/edge.toml
DIALPLANS ?= dialplans
DEB_TEST_TOOLS := sipp:sip-tester redis-server:redis-server secsipidx:secsipidx chromium:chromium chromedriver:chromium-driver
DEB_BENCH_TOOLS := kamailio:kamailio
DEB_PROMPT_TOOLS := espeak-ng:espeak-ng sox:sox

DEB_OUT ?= dist
DEB_BUILD_TOOLS := dpkg-deb:dpkg systemd-analyze:systemd

.PHONY: run test check bench deps-test deps-bench clean prompts deb

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
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

bench: $(VENV)/.installed-test deps-bench
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
