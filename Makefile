# Two commands: `make run` (the app with a demo campaign) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test system venv lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing pulls a multi-GB CUDA build in its place.
	$(VENV)/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

run: venv
	scripts/run.sh

# The machine first (system packages and services, or the exact commands to run without root),
# then the venv, then the suite.
test:
	scripts/setup_system.sh
	$(MAKE) --no-print-directory venv
	scripts/test.sh

system:
	scripts/setup_system.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf var/test var/test-smoke
