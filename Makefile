# lusaug: `make run` (pipeline on the embedded phantom) and `make test` install everything first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
TEST_WORKERS ?= 2  # make test: pytest-xdist processes (one per core of the 2-core reference machine)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install run test test-fast lint data ui lock clean-venv

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## create .venv and install pinned dependencies (skipped when up to date)

data: install ## fill data/raw with the phantom if empty, and keep data.dvc in step
	@if [ ! -d data/raw ] || [ -z "$$(ls -A data/raw 2>/dev/null)" ]; then \
		$(BIN)/lusaug phantom --out data/raw && $(BIN)/dvc commit -q -f data.dvc; \
	fi

run: data ## run the whole pipeline (lusaug repro: dvc repro that keeps the previous outputs on failure)
	$(BIN)/lusaug repro

test: install ## run the test suite (TEST_WORKERS=2 processes; a test module runs whole in one)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: install ## the suite without slow tests (real dvc repro, real data)
	$(BIN)/python -m pytest -m "not slow"

lint: install ## ruff lint + format check (the rules are in pyproject.toml)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# MLflow's job runner (GenAI evaluation jobs: ~7 worker processes of ~250 MB) is of no use here
ui: install ## MLflow UI on 127.0.0.1:$(PORT) over the local store (make ui PORT=5001)
	@echo "MLflow UI: http://127.0.0.1:$(PORT) (switch the top-left toggle to 'Model training' to open experiments on their runs)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" --host 127.0.0.1 --port $(PORT)

lock: install ## re-pin requirements.lock from the current venv
	{ head -3 requirements.lock; $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock.new && mv requirements.lock.new requirements.lock

clean-venv: ## remove the virtual environment
	rm -rf $(VENV)
