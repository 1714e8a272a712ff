# onedoor: every developer and CI entry point. `make help` lists them.
# Each target creates the virtual environment on first use (uv, from uv.lock).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
export UV_PYTHON_DOWNLOADS := never
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help venv stack-up stack-down stack-status demo bench bench-engine audit-verify audit-drill test \
        test-unit test-integration test-e2e test-faults test-browser lint fmt clean \
        images images-check deploy-check tools contracts contracts-check configref

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(VENV)/.synced: pyproject.toml uv.lock
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv sync --frozen --all-extras --python $(PYTHON)
	@touch $@

venv: $(VENV)/.synced ## create/refresh the virtual environment from uv.lock

stack-up: venv ## start local Kafka + PostgreSQL (idempotent); prints connection settings
	$(PY) -m deploy.stack up

stack-down: venv ## stop local Kafka + PostgreSQL, leaving no process behind
	$(PY) -m deploy.stack down

stack-status: venv ## say what runs
	@$(PY) -m deploy.stack status

demo: venv ## the main job: stack + services, 1,000 cases over HTTP, summary (CASES=n)
	$(PY) -m deploy.demo --cases $(or $(CASES),1000)

bench: stack-up ## benchmark: raw Kafka limit, e2e cases/s, latency, replay speed, RSS (QUICK=1)
	$(PY) -m bench.bench $(if $(QUICK),--quick) $(if $(RATES),--rates $(RATES))

bench-engine: stack-up ## the consumer engine alone: CPU per batch (VARIANT=consume|tx|full RATE=n)
	$(PY) -m bench.engine --variant $(or $(VARIANT),full) --rate $(or $(RATE),20)

# The auditor's commands run as the read-only database role onedoor_auditor.
AS_AUDITOR = eval "$$($(PY) -m deploy.stack env auditor)" &&

audit-verify: venv ## onedoor-audit verify over the local stack's log (as the auditor)
	$(AS_AUDITOR) $(VENV)/bin/onedoor-audit verify

audit-drill: stack-up ## inject one fault of each kind into fresh topics; show verify finds them
	$(AS_AUDITOR) $(PY) -m deploy.audit_drill

test: stack-up ## all test tiers against the real stack
	$(PYTEST)

test-unit: venv ## unit tests only (no broker, no database)
	$(PYTEST) -m unit

test-integration: stack-up ## integration tests on the real broker and database
	$(PYTEST) -m integration

test-e2e: stack-up ## end-to-end tests over HTTP with the services running
	$(PYTEST) -m e2e

test-browser: stack-up ## the pages in headless Chromium (Debian's chromium + fonts-noto-cjk); screenshots in .data/screenshots
	$(PYTEST) -m browser

test-faults: stack-up ## fault injection: kill -9, broker and database restarts, poison records
	$(PYTEST) -m faults -s

lint: venv ## ruff + mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	MYPYPATH=docs/examples $(VENV)/bin/mypy -p civil_affairs  # the department guide's example

fmt: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

tools: .data/bin/kustomize ## the Go-built tools images-check needs (kustomize), once

.data/bin/kustomize:
	GOBIN=$(abspath .data/bin) GOFLAGS=-mod=mod go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1

images: venv ## build the container images with podman (base by mmdebstrap, service, infra test)
	$(PY) -m deploy.images build

deploy-check: venv tools ## offline validators: hadolint, kubernetes-validate --strict, compose-spec
	$(PY) -m deploy.images validate

images-check: venv tools ## build, lint and play the images (podman kube play), post cases, verify
	$(PY) -m deploy.images check $(if $(CASES),--cases $(CASES))

configref: venv ## write docs/configuration.md from the settings class
	$(PY) -m deploy.configref

contracts: venv ## write docs/asyncapi.yaml and docs/openapi.json from the code
	$(PY) -m deploy.contracts

# The AsyncAPI initiative's own parser, pinned by deploy/contracts/package-lock.json,
# installed (without install scripts) into the ignored .data/node.
NODE_DIR := .data/node
$(NODE_DIR)/node_modules/.package-lock.json: deploy/contracts/package.json deploy/contracts/package-lock.json
	mkdir -p $(NODE_DIR)
	cp deploy/contracts/package.json deploy/contracts/package-lock.json $(NODE_DIR)/
	SCARF_ANALYTICS=false npm ci --prefix $(NODE_DIR) --ignore-scripts --no-audit --no-fund

contracts-check: venv $(NODE_DIR)/node_modules/.package-lock.json ## committed contracts match the code; @asyncapi/parser validates docs/asyncapi.yaml
	$(PY) -m deploy.contracts --check
	NODE_PATH=$(NODE_DIR)/node_modules node deploy/contracts/check.cjs docs/asyncapi.yaml

clean: stack-down ## stop the stack and delete the data folder and the virtual environment
	rm -rf .data $(VENV)
