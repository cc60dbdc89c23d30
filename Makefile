# The two commands the README promises: `make demo` and `make test`.
# Both set up .venv on first use; nothing needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest goldens bench corpus fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	bash tests/demo.sh

test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check codemod tests
	$(BIN)/ruff format --check codemod tests

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

goldens: install
	$(BIN)/python -m tests.goldens

bench: install
	$(BIN)/python -m tests.bench

fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/test_fuzz.py

# Downloads pinned public wheels into ~/.cache/idempotify-corpus (never into the repository).
corpus: install
	$(BIN)/python -m tests.corpus

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
