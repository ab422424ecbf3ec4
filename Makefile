# Fresh machine: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration test-infra lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[service,cdk,dev]'
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser downloads are not used).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

demo: $(STAMP)
	$(BIN)/kaggle-solver run examples/breast-cancer-diagnosis --output submission.csv --time-limit 60

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy batch_agent lambdas infra_cdk
	$(BIN)/pytest -q -n 2 --dist loadfile

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest -q tests/integration

test-infra: $(STAMP)
	$(BIN)/pytest -q tests/infra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy batch_agent lambdas infra_cdk

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py ../shared/competitions --time-limit 120

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cdk.out

# --- CDK: `make synth` (CDK_ENV=dev|prod|local) writes cdk.out/ with the CLI pinned in
# package.json; no AWS account or Docker needed (the npm and PyPI registries are, for the
# CLI and the Lambda dependency layer). `make deploy` runs the same CLI against your account.
CDK_ENV ?= dev
CDK_NODE_STAMP := node_modules/.installed
CDK := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1 \
	CDK_DISABLE_CLI_TELEMETRY=true npx --no-install cdk

.PHONY: synth deploy

$(CDK_NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(CDK_NODE_STAMP)

synth: $(STAMP) $(CDK_NODE_STAMP)
	AWS_EC2_METADATA_DISABLED=true $(CDK) synth -c env=$(CDK_ENV) --no-notices --no-version-reporting --quiet -o cdk.out

deploy: $(STAMP) $(CDK_NODE_STAMP)
	$(CDK) deploy -c env=$(CDK_ENV) --no-notices

# --- The service on this machine: emulated AWS (moto) on 127.0.0.1:5000, real Lambda handlers,
# Batch jobs as local processes, the API on 127.0.0.1:8000. Competitions come from examples/ (by
# folder name = slug), then the S3 cache, then Kaggle. Ctrl-C stops everything.
.PHONY: stack bench-api

stack: $(STAMP)
	$(BIN)/kaggle-solver serve --port 8000 --aws-port 5000 --cache-dir examples

bench-api: $(STAMP)
	$(BIN)/python benchmarks/api_load.py --clients 50
	$(BIN)/python benchmarks/api_load.py --clients 200 --skip-overhead

.PHONY: bench-leaderboards
# One leaderboard sync of 20 competitions × 5,000 teams against the fake Kaggle server (~2.5 min).
bench-leaderboards: $(STAMP)
	$(BIN)/python benchmarks/leaderboard_sync.py

# --- AutoGluon and FLAML reference scores for the quality table, in their own venv: never a dependency of
# the product or of `make test`. All four shared competitions × three systems × 120 s and 600 s take about
# 2.5 hours; narrow with e.g. AUTOML_ARGS='--system flaml --time-limit 120 --only titanic-survival'.
AUTOML_VENV ?= .automl-venv
AUTOML_STAMP := $(AUTOML_VENV)/.installed
AUTOML_ARGS ?= --system autogluon-medium autogluon-best flaml --time-limit 120 600
COMPETITIONS ?= ../shared/competitions
.PHONY: bench-automl

$(AUTOML_STAMP): benchmarks/automl-requirements.txt
	$(PYTHON) -m venv $(AUTOML_VENV)
	$(AUTOML_VENV)/bin/pip install --quiet --upgrade pip
	$(AUTOML_VENV)/bin/pip install --quiet -r benchmarks/automl-requirements.txt
	touch $(AUTOML_STAMP)

bench-automl: $(STAMP) $(AUTOML_STAMP)
	$(BIN)/python benchmarks/automl_reference.py $(COMPETITIONS) \
		--automl-python $(AUTOML_VENV)/bin/python $(AUTOML_ARGS)
