# The two commands a user runs: `make run` and `make test` (both create .venv when needed).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed
# Run the project's tools (dvc, medcls, mlflow, prefect) from the virtual environment.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint format ui prefect-ui serve deploy serve-model clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

## run: install, run the pipeline (DVC) on the default data, score a demo inbox (Prefect), say where to look
run: $(INSTALLED)
	dvc repro
	medcls demo-inbox
	python -m flows.scoring
	@echo
	@medcls summary

## test: lint and the test suite
test: $(INSTALLED) lint
	python -m pytest

lint: $(INSTALLED)
	ruff check .
	ruff format --check .
	lint-imports --no-cache

format: $(INSTALLED)
	ruff check --fix .
	ruff format .

## ui: the MLflow UI on http://127.0.0.1:5000 (compare runs, see the registry)
ui: $(INSTALLED)
	mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

## prefect-ui: a local Prefect server and UI on http://127.0.0.1:4200
prefect-ui: $(INSTALLED)
	prefect server start

## serve: run the scheduled deployments (retraining, scoring) from this machine
serve: $(INSTALLED)
	python -m flows serve

## deploy: deploy them to the Prefect work pool `medcls` instead (POOL=name for another)
deploy: $(INSTALLED)
	python -m flows deploy --pool $(or $(POOL),medcls)

## serve-model: the production model over HTTP on http://127.0.0.1:5001/invocations
serve-model: $(INSTALLED)
	MLFLOW_TRACKING_URI=sqlite:///mlruns/mlflow.db mlflow models serve -m "models:/$$(python -c 'from medcls.config import load_params; print(load_params().registry.model_name)')@production" --env-manager local --host 127.0.0.1 --port 5001

## clean: remove pipeline outputs (data/raw etc.); DVC's cache and the MLflow store are kept
clean:
	rm -rf data/raw data/processed models reports outputs dvc_plots
