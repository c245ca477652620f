# Fresh machine: `make test` and `make demo` each build the virtual environment they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo
# A short CPU run that learns the sample's task (see tests/test_train.py's learning test).
DEMO_TRAIN ?= --epochs 1 --batch-size 2 --lr 1e-3 --bn-windows 16

.PHONY: test demo venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# The whole pipeline on a generated sample (random trunk weights: a smoke run, not a model),
# scored next to a centre-bias baseline. A few minutes on 2 CPU cores.
demo: $(VENV)/.installed
	rm -rf $(DEMO)
	$(BIN)/sal3d make-sample $(DEMO)/data
	$(BIN)/sal3d extract $(DEMO)/data $(DEMO)/features.zarr --weights random
	$(BIN)/sal3d train-decoder $(DEMO)/features.zarr $(DEMO)/run $(DEMO_TRAIN)
	$(BIN)/sal3d predict $(DEMO)/features.zarr $(DEMO)/run/best.pt $(DEMO)/predictions --split val --overlay --overlay-video
	@echo "== 3DSAL decoder (demo run) on the sample's val videos"
	$(BIN)/sal3d evaluate $(DEMO)/predictions $(DEMO)/data --split val --json $(DEMO)/scores.json
	@echo "== centre-bias baseline on the same videos"
	$(BIN)/sal3d evaluate $(DEMO)/center-bias $(DEMO)/data --split val --baseline center --json $(DEMO)/center-bias.json
	$(BIN)/sal3d report $(DEMO)/run --scores $(DEMO)/scores.json --scores $(DEMO)/center-bias.json --predictions $(DEMO)/predictions
	@echo "demo: saliency PNGs in $(DEMO)/predictions/<video>/, overlays in $(DEMO)/predictions/overlays/ (<video>/ and <video>.mp4),"
	@echo "      scores in $(DEMO)/scores.json and $(DEMO)/center-bias.json, the run in $(DEMO)/run/, all of it in $(DEMO)/run/report.html"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
