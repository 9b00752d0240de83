# kubetune — every target has a "## help" comment; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= /usr/bin/python3.11
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
KUBECONFIG  := $(CURDIR)/.cluster/kubeconfig
PYTEST_ARGS ?=

.PHONY: help setup tools cluster-up cluster-down test test-unit lint crds demo bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# DeepSpeed's setup imports torch: install torch first, then build DeepSpeed against it.
	$(PY) -m pip install -q torch
	$(PY) -m pip install -q --no-build-isolation deepspeed
	$(PY) -m pip install -q -e '.[trainer,serve,dev]'
	@touch $@

setup: $(STAMP) ## create .venv (Debian's python3.11) with kubetune editable and all extras
	@echo "venv ready: $(VENV)"

tools: ## build etcd, Kubernetes, kwok and helm from the Go module proxy (cached in ~/.cache/kubetune)
	@hack/build-tools.sh

cluster-up: tools ## start the local control plane (kubeconfig: .cluster/kubeconfig)
	@hack/cluster.sh up

cluster-down: ## stop the local control plane and every process it started
	@hack/cluster.sh down

test: setup tools ## run every test: unit, cluster (starts the local control plane if needed) and e2e
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: setup ## run only the tests that need no cluster
	$(VENV)/bin/pytest -m "not cluster" $(PYTEST_ARGS)

lint: setup ## ruff, mypy and the import-layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p kubetune
	$(VENV)/bin/mypy -p kubetune_trainer
	$(VENV)/bin/lint-imports

crds: ## regenerate crds/, the Helm chart's copy and docs/api-reference.md from the API models
	@$(PY) -m kubetune crds --output-dir crds >/dev/null
	@$(PY) -m kubetune crds --output-dir charts/kubetune/files/crds >/dev/null
	@$(PY) -m kubetune.docgen >/dev/null

demo: setup cluster-up ## the main job: operator + FineTuneJob on the local cluster, then a real local run
	@hack/demo.sh

bench: setup tools ## run the benchmarks under bench/ (results go to docs/benchmarks.md by hand)
	$(PY) bench/data_pipeline.py
	$(PY) bench/serve_cpu.py
	$(PY) bench/operator_scale.py

clean: cluster-down ## stop the cluster and remove local state (.cluster/, caches of this checkout)
	rm -rf .cluster .pytest_cache .mypy_cache .ruff_cache
