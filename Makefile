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

demo: $(STAMP)
	$(BIN)/kaggle-solver run examples/breast-cancer-diagnosis --output submission.csv --time-limit 60

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy batch_agent lambdas infra_cdk
	$(BIN)/pytest -q

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

test-infra: $(STAMP)
	$(BIN)/pytest -q tests/infra

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy batch_agent lambdas infra_cdk

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py ../shared/competitions --time-limit 120

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cdk.out
