# The two commands of the README. Everything else is done by the lab's CLI.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.hwlab-installed

.PHONY: demo test test-sustained

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $(STAMP)

TEST_STAMP := $(VENV)/.hwlab-test-installed
$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -e '.[test,ray]'
	$(PIP) install -q -e bench/hwlab_sim  # the simulated-farm plug-in runtime (tests and bench only)
	VENV=$(VENV) bash scripts/install-web-deps.sh
	bash scripts/setup-lite-opt.sh .venv-lite || echo "paddle_lite_opt unavailable: the Paddle Lite conversion tests will skip"
	touch $(TEST_STAMP)

# Real Paddle Inference on this machine: build the demo models, run the demo campaign, write the report.
demo: $(STAMP)
	$(VENV)/bin/lab models build mobilenet_v1
	$(VENV)/bin/lab run campaigns/demo.yaml --fresh --no-progress
	$(VENV)/bin/lab report --campaign demo -o reports/demo/index.html

# The whole test suite, with the Debian packages it starts (sshd, chromium, busybox, shellcheck).
# The 5-minute sustained run (issue 18, marker `sustained`) is out of it: CI runs it after, as test-sustained.
# The emulated ARM boards are built (or taken from ~/.cache/hwlab/boards) before the suite, not inside it.
test: $(TEST_STAMP)
	bash scripts/install-test-deps.sh
	bash scripts/boards/build-arm64.sh
	bash scripts/boards/build-armhf.sh
	bash scripts/run-tests.sh -m "not sustained"

test-sustained: $(TEST_STAMP)
	bash scripts/install-test-deps.sh
	bash scripts/run-tests.sh -m sustained
