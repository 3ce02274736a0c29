# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv with the system python3 and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev

.PHONY: demo test check lint typecheck clean

$(BIN)/.installed-$(EXTRAS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

demo: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/python -m workers.demo $(DEMO_ARGS)

test: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/ruff check nautilus_tasks engines workers tests bench
	$(BIN)/ruff format --check nautilus_tasks

typecheck: $(BIN)/.installed-$(EXTRAS)
	$(BIN)/mypy --strict nautilus_tasks

check: lint typecheck test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
