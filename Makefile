# The two commands the README promises: `make demo` and `make test`.
# Both set up .venv on first use; nothing needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# SQLAlchemy 1.4, which many applications still run their migrations on: tests/test_sqlalchemy14.py runs the
# guards under it. Only the tests need it.
SA14 := .venv-sqlalchemy14
SA14_STAMP := $(SA14)/.installed

.PHONY: install mysql-client-library demo test lint typecheck pytest goldens bench corpus fuzz clean

install: $(STAMP) $(SA14_STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory mysql-client-library
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SA14_STAMP):
	$(PYTHON) -m venv $(SA14)
	$(SA14)/bin/python -m pip install --quiet 'sqlalchemy>=1.4,<2' 'alembic>=1.16' psycopg2-binary pymysql
	touch $(SA14_STAMP)

# mysqlclient, a dev dependency (the driver matrix), compiles against the MariaDB or MySQL client library,
# which it finds with pkg-config (or MYSQLCLIENT_CFLAGS and MYSQLCLIENT_LDFLAGS). When neither is there,
# install pkg-config and libmariadb-dev with apt-get if this user can (root, or sudo without a password).
mysql-client-library:
	@if pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null \
	    || [ -n "$${MYSQLCLIENT_CFLAGS:-}" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi; \
	if [ "$$sudo" = none ] || ! command -v apt-get >/dev/null; then \
	    echo "mysqlclient (a dev dependency) needs pkg-config and the MariaDB or MySQL client library, and they" >&2; \
	    echo "cannot be installed from here. Install them, then run make again:" >&2; \
	    echo "  Debian/Ubuntu: sudo apt-get install pkg-config libmariadb-dev" >&2; \
	    echo "  Fedora/RHEL:   sudo dnf install pkgconf-pkg-config mariadb-connector-c-devel" >&2; \
	    echo "  macOS:         brew install pkg-config mariadb-connector-c" >&2; \
	    echo "(or set MYSQLCLIENT_CFLAGS and MYSQLCLIENT_LDFLAGS, as mysqlclient's README says)" >&2; \
	    exit 1; \
	fi; \
	echo "installing pkg-config and libmariadb-dev with apt-get (mysqlclient builds against them)"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq pkg-config libmariadb-dev

demo: install
	bash tests/demo.sh

test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check codemod idempotify tests
	$(BIN)/ruff format --check codemod idempotify tests
	$(BIN)/black --quiet --check --line-length 88 codemod/runtime.py  # see Style.format_helper

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
	rm -rf $(VENV) $(SA14) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
