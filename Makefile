# Setup and everyday commands. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp is compiled on install. A -march=native build can emit AMX instructions that
# virtual machines advertise but do not allow (SIGILL); build for AVX2 instead on x86_64.
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF
endif
# llama-server (the `server` local runtime) is built from the llama.cpp source that this
# pinned llama-cpp-python ships, with the same flags, once per machine (cached).
LLAMA_CPP_PYTHON := 0.3.36
SERVER_CACHE := $(or $(SCALE_CACHE_DIR),$(HOME)/.cache/scale-dspy)/llama-server-$(LLAMA_CPP_PYTHON)-$(shell echo "$(CMAKE_ARGS)" | cksum | cut -d' ' -f1)
PROBLEM ?= A shop sells pens at 3 dollars each. How much do 4 pens cost?

.PHONY: demo test lint setup setup-qwen server check-install ui-shot

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

$(BIN)/llama-server: | $(BIN)/.installed
	@if [ ! -x "$(SERVER_CACHE)/llama-server" ]; then \
	  echo "building llama-server from llama-cpp-python $(LLAMA_CPP_PYTHON)'s llama.cpp (once, several minutes)"; \
	  tmp=$$(mktemp -d) && \
	  $(BIN)/pip download --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $$tmp && \
	  tar xzf $$tmp/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz -C $$tmp && \
	  cmake -S $$tmp/llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp -B $$tmp/build \
	    -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF \
	    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF > $$tmp/cmake.log && \
	  cmake --build $$tmp/build --target llama-server -j $$(nproc) > $$tmp/build.log && \
	  mkdir -p "$(SERVER_CACHE)" && cp $$tmp/build/bin/llama-server "$(SERVER_CACHE)/" && \
	  rm -rf $$tmp; \
	fi
	cp "$(SERVER_CACHE)/llama-server" $@

setup: $(BIN)/.installed $(BIN)/llama-server
setup-qwen: $(BIN)/.installed-qwen $(BIN)/llama-server
server: $(BIN)/llama-server

demo: setup-qwen
	$(BIN)/scale solve "$(PROBLEM)"

test: setup
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

# A regular (non-editable) install imports the same way from the checkout (CI runs this).
check-install: setup
	$(BIN)/pip install --quiet --no-deps --force-reinstall .
	$(BIN)/python -m pytest -q -p no:randomly tests/test_program.py tests/test_program_files.py; \
	  status=$$?; $(BIN)/pip install --quiet --no-deps -e .; exit $$status

# Screenshots of the MLflow UI (runs and one trace) from a store of a real run, into docs/.
# Needs Debian's chromium (apt-get install chromium).
STORE ?= sqlite:///bench/mlflow-round2.db
EXPERIMENT ?= round2-gsm8k
ui-shot: $(BIN)/.installed
	$(BIN)/python bench/ui_shot.py --store $(STORE) --experiment $(EXPERIMENT) --out docs
