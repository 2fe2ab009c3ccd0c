# Two entry points for a fresh clone: `make demo` (a reference sweep, then its table) and
# `make test` (what CI runs). Each creates the virtual environment it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline copies of the datasets, when this checkout sits beside them; else loaders download.
export HPO_DATA_DIR ?= $(wildcard $(abspath ../shared/datasets))

.PHONY: install demo test lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,jax,dashboard,postgres]'
	touch $@

install: $(VENV)/.installed

# Assignment Q6 (hidden width 2..256) on 2,000 MNIST examples, 3 seeds per width.
demo: install
	$(VENV)/bin/hpo run sweeps/mnist-q6-width.toml --set study.name=mnist-q6-width-demo \
		--set data.limit_train=2000 --set protocol.repeats=3

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest
