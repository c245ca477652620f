# Fresh machine: `make test` and `make demo` each build the virtual environment they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: test demo venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# The whole pipeline on a generated sample (random trunk weights: a smoke run, not a model).
demo: $(VENV)/.installed
	$(BIN)/sal3d make-sample $(DEMO)/data
	$(BIN)/sal3d extract $(DEMO)/data $(DEMO)/features.zarr --weights random

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
