# Two commands for users: `make demo` and `make test`. Both create .venv and install robustlit
# with all extras on first use; later runs only reinstall when pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.robustlit-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	# peer library for the reference tests and benchmarks; it pins requests~=2.25, so no deps
	$(BIN)/python -m pip install --quiet --no-deps "torchattacks==3.5.1"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/robustlit demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
