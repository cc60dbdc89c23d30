"""The guards under every common driver, sync and async: one golden fixture per query path, and a whole chain.

The execution suite (``test_execution.py``) runs every golden fixture on one
driver per database, the default one (psycopg2, pymysql, sqlite3 unless
``IDEMPOTIFY_TEST_*`` says otherwise). Here a small set of them, one for each
object kind, create and drop, named and unnamed, and each catalog query a guard
makes, runs through every other driver of ``DRIVERS``: the rewritten output's
upgrade twice, then its downgrade twice, each compared with the schema the
input builds through the default driver. Async drivers run as async applications run Alembic: an
``AsyncConnection`` hands its sync facade to the migration through
``run_sync``. Per async driver, the demo project, rewritten by the idempotify
command, also goes through Alembic's commands with an async ``env.py``.

Locally a server that does not answer, or a driver that does not import, skips
with the reason; under ``CI=true`` both fail.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import cache
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import Script, ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from codemod.guards import DRIFT, GUARD, helper_functions_source, helper_names, parts_needed
from codemod.verify.execution import context_options, environment, load_migration, run_migration
from codemod.verify.schema import Snapshot, snapshot
from tests.base_schema import BASE, empty
from tests.conftest import require_dialect
from tests.databases import DRIVERS, PSYCOPG_ASYNC, SERVERS, Driver, scratch_database
from tests.fixtures import FIXTURES, Golden, read_golden

# One golden fixture per query path; each runs on the dialects it names. Its upgrade and downgrade
# give both polarities: create_index/op finds the index missing, creates it, then finds it and drops it.
MATRIX = {
    "create_table/bulk_insert": "table; the seed rows bulk_insert puts in it while it is empty; the table reflected",
    "create_table/with_indexes": "a create_table's indexes, looked for when its table is there (names, columns)",
    "create_table/enum_column": "table; PostgreSQL: enum types reused by create_table (get_enums(schema='*'))",
    "add_column/incident": "column",
    "add_column/batch": "column in a batch block (on SQLite, move and copy)",
    "create_index/op": "index by name (op.f), through get_indexes",
    "create_index/unnamed_convention": "unnamed index, named by the naming convention",
    "drop_index/without_table": "index by name in the catalog: sqlite_master, pg_indexes",
    "create_unique_constraint/op": "named unique constraint (PostgreSQL: pg_constraint by name and contype)",
    "create_unique_constraint/unnamed": "unnamed unique constraint, by its columns",
    "create_unique_constraint/naming_convention": "unique constraint named by the convention, in a batch block",
    "create_primary_key/op": "named primary key",
    "create_primary_key/unnamed": "unnamed primary key",
    "create_primary_key/batch": "primary key in a batch block",
    "create_primary_key/batch_remade_referenced": "primary key made again under its name: its columns (exact=True)",
    "create_foreign_key/op": "named foreign key (PostgreSQL: pg_constraint by name and contype)",
    "create_foreign_key/unnamed": "unnamed foreign key, by its columns and referred columns",
    "create_foreign_key/batch": "foreign key in a batch block",
    "create_check_constraint/op": "named check constraint (PostgreSQL: pg_constraint by name and contype)",
    "create_check_constraint/batch": "check constraint in a batch block",
    "create_exclude_constraint/op": "named exclude constraint (PostgreSQL: pg_constraint by name and contype)",
    "drop_constraint/op": "named unique constraint and foreign key, found before they are dropped",
    "drop_constraint/without_type": "constraint of any type (PostgreSQL: pg_constraint by name alone)",
    "create_sequence/op": "sequence",
    "create_enum/op": "PostgreSQL enum type",
    "drop_constraint/batch_naming_convention": "an unnamed foreign key named by a batch block's naming_convention=",
    "drop_index/batch": "a batch block's leftover copy (_alembic_tmp_<table>) looked for before the block",
    "execute/catalog_objects": "SQL: a view (get_view_names), a trigger (pg_trigger, information_schema...)",
    "execute/enum_values_and_extensions": "SQL: PostgreSQL enum values (pg_enum) and an extension (pg_extension)",
    "execute/constraints": "SQL: constraints looked up under the very name the SQL gives them (op.f)",
    "execute/schemas": "SQL and CreateSchema / DropSchema: schemas (get_schema_names)",
    "execute/functions": "SQL: functions (to_regprocedure by argument types, information_schema.routines)",
}
# Outside SQLite a batch block runs its ops as they are: these cases would repeat the op cases' queries there.
SQLITE_ONLY = {
    "add_column/batch",
    "create_primary_key/batch",
    "create_foreign_key/batch",
    "create_check_constraint/batch",
    "create_unique_constraint/naming_convention",
}
POSTGRESQL_ONLY = {"create_table/enum_column"}  # elsewhere the same queries as create_table/bulk_insert
# Helpers (less their prefix) that query nothing on a dialect, which has no such objects (extensions: PostgreSQL).
_NO_ENUM_TYPES = {"reuse_enum_types", "enum_type", "enum_value", "extension"}
# drop_invalid_index: only an index a failed CREATE INDEX CONCURRENTLY left (tests/test_guard_helpers.py makes one).
NO_QUERY = {
    "sqlite": {"exclusion_constraint", "sequence", "drop_invalid_index", "function", "schema", *_NO_ENUM_TYPES},
    # named_by_convention: Alembic's recipe for a foreign key the database reports unnamed, which only SQLite does.
    "postgresql": {"named_by_convention", "drop_invalid_index"},
    # schema: MariaDB's are databases, which the cases do not make on a shared server.
    "mariadb": {"exclusion_constraint", "named_by_convention", "drop_invalid_index", "schema", *_NO_ENUM_TYPES},
}


def matrix(dialect: str) -> list[Golden]:
    """The cases of MATRIX that run on ``dialect``."""
    goldens = [read_golden(FIXTURES / f"{case}.py") for case in MATRIX]
    return [
        golden
        for golden in goldens
        if dialect in golden.dialects
        and (golden.id not in SQLITE_ONLY or dialect == "sqlite")
        and (golden.id not in POSTGRESQL_ONLY or dialect == "postgresql")
    ]


def is_default(driver: Driver) -> bool:
    """Whether ``test_execution.py`` runs every golden fixture through ``driver`` already."""
    default = sa.make_url(SERVERS.get(driver.dialect, "sqlite://")).get_driver_name()
    return not driver.is_async and driver.drivername == default


CASES = [
    pytest.param(driver, golden, id=f"{driver.name}-{golden.id}")
    for driver in DRIVERS
    if not is_default(driver)
    for golden in matrix(driver.dialect)
]
ASYNC_DRIVERS = [pytest.param(driver, id=driver.name) for driver in (*DRIVERS, PSYCOPG_ASYNC) if driver.is_async]

Fresh = Callable[[str], sa.Engine]
Expected = Callable[[Golden, str], tuple[Snapshot, Snapshot]]


def require_driver(driver: Driver) -> None:
    """Skip (locally) or fail (under CI) when the driver's server is down or the driver does not import."""
    require_dialect(driver.dialect)
    for module in driver.modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            reason = f"driver {driver.name} cannot be used: {error} (make install brings it)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true and {reason}")
            pytest.skip(reason)


@pytest.fixture(scope="module")
def fresh() -> Iterator[Fresh]:
    """``fresh(dialect)``: the module's scratch database on ``dialect``, empty."""
    with ExitStack() as stack:
        engines: dict[str, sa.Engine] = {}

        def make(dialect: str) -> sa.Engine:
            if dialect in engines:
                empty(engines[dialect])
            else:
                engines[dialect] = stack.enter_context(scratch_database(dialect))
            return engines[dialect]

        yield make


def _label(golden: Golden) -> str:
    """The output's name in tracebacks: not the fixture's path, whose lines are the input's."""
    return f"{golden.path} (output)"


def _migrate(connection: sa.Connection, golden: Golden, source: str, function: str, path: Path | None) -> None:
    """``run_migration`` on a connection given, as an async application's ``run_sync`` gives it."""
    module = load_migration(source, path or _label(golden))
    with environment():
        context = MigrationContext.configure(connection, opts=context_options(golden.naming_convention))
        with Operations.context(context):
            getattr(module, function)()


async def _migrate_async(
    url: sa.URL, driver: Driver, golden: Golden, source: str, function: str, path: Path | None
) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        assert engine.dialect.driver == driver.drivername
        async with engine.connect() as connection:
            await connection.run_sync(_migrate, golden, source, function, path)
            await connection.commit()
    finally:
        await engine.dispose()


def run_through(
    driver: Driver, url: sa.URL, golden: Golden, source: str, function: str, path: Path | None = None
) -> None:
    """Run ``function`` of ``source`` (read from ``path``, when given) on the database at ``url`` through
    ``driver``."""
    if driver.is_async:
        asyncio.run(_migrate_async(driver.url(url), driver, golden, source, function, path))
        return
    engine = sa.create_engine(driver.url(url), poolclass=NullPool)
    try:
        assert engine.dialect.driver == driver.drivername
        label = path or _label(golden)
        run_migration(engine, source, function, path=label, naming_convention=golden.naming_convention)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def expected(fresh: Fresh) -> Expected:
    """``expected(golden, dialect)``: the schemas the input's upgrade, then its downgrade, build (default driver)."""

    @cache
    def schemas(golden: Golden, dialect: str) -> tuple[Snapshot, Snapshot]:
        engine = fresh(dialect)
        BASE.create_all(engine)
        run_migration(engine, golden.input, "upgrade", naming_convention=golden.naming_convention)
        upgraded = snapshot(engine)
        run_migration(engine, golden.input, "downgrade", naming_convention=golden.naming_convention)
        return upgraded, snapshot(engine)

    return schemas


def with_drift_check(golden: Golden) -> str:
    """The output with the drift check a shared helpers module would give it (an inline block leaves it out):
    its ``_idempotify`` cut to the parts its guards need, as in its own block, and the drift check's."""
    return golden.output + "\n\n" + helper_functions_source([GUARD, DRIFT], parts=parts_needed(golden.output))


@pytest.mark.parametrize(("driver", "golden"), CASES)
def test_guards_work_under_the_driver(
    driver: Driver, golden: Golden, fresh: Fresh, expected: Expected, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each step twice; the second upgrade's skips run the drift check's queries through the driver too (from a
    file, where it reads the op), and it finds nothing to warn of."""
    require_driver(driver)
    upgraded, downgraded = expected(golden, driver.dialect)
    engine = fresh(driver.dialect)
    BASE.create_all(engine)
    path = tmp_path / "migration.py"
    path.write_text(with_drift_check(golden), encoding="utf-8")
    for step, function, schema in [
        ("upgrade", "upgrade", upgraded),
        ("second upgrade", "upgrade", upgraded),
        ("downgrade", "downgrade", downgraded),
        ("second downgrade", "downgrade", downgraded),
    ]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alembic"):
            run_through(driver, engine.url, golden, with_drift_check(golden), function, path)
        assert snapshot(engine) == schema, f"the {step} through {driver.name} built another schema"
        assert [record.getMessage() for record in caplog.records] == [], f"the {step} warned"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mariadb"])
def test_the_matrix_runs_every_guard_helper(dialect: str) -> None:
    """A new helper, or a case dropped from MATRIX, cannot leave a query path out of the matrix."""
    used = {
        name.removeprefix("_idempotify_")
        for golden in matrix(dialect)
        for name in helper_names()
        if f"def {name}(" in with_drift_check(golden)
    }
    every = {name.removeprefix("_idempotify_") for name in helper_names()}
    assert every - NO_QUERY[dialect] - used == set()


# An async application's env.py, as Alembic's "async" template writes it.
ASYNC_ENV = '''"""Alembic environment of an async application."""

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import async_engine_from_config

config = context.config
target_metadata = None


def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations():
    connectable = async_engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


asyncio.run(run_async_migrations())
'''


@pytest.fixture(scope="module")
def original_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo project (Alembic writes bytecode next to the revisions it loads)."""
    project = tmp_path_factory.mktemp("demo") / "original"
    shutil.copytree(FIXTURES / "demo", project)
    return project


@pytest.fixture(scope="module")
def rewritten_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project, its versions rewritten by the idempotify command, its env.py an async one."""
    project = tmp_path_factory.mktemp("demo") / "rewritten"
    shutil.copytree(FIXTURES / "demo", project)
    environment = {**os.environ, "XDG_CACHE_HOME": str(project.parent / "cache")}
    subprocess.run([sys.executable, "-m", "codemod", str(project / "versions")], check=True, env=environment)
    (project / "env.py").write_text(ASYNC_ENV, encoding="utf-8")
    return project


def alembic_config(project: Path, url: sa.URL) -> Config:
    """What ``alembic`` reads from ``project/alembic.ini``, ``sqlalchemy.url`` the scratch database's."""
    config = Config()
    config.set_main_option("script_location", str(project))
    config.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


@pytest.fixture(scope="module")
def original_chain(fresh: Fresh, original_demo: Path) -> Callable[[str], tuple[Snapshot, Snapshot]]:
    """The schemas after the original chain's ``upgrade head``, then ``downgrade base`` (its env.py, default driver)."""

    @cache
    def schemas(dialect: str) -> tuple[Snapshot, Snapshot]:
        engine = fresh(dialect)
        config = alembic_config(original_demo, engine.url)
        command.upgrade(config, "head")
        upgraded = snapshot(engine)
        command.downgrade(config, "base")
        return upgraded, snapshot(engine)

    return schemas


def _previous(revision: Script) -> str:
    """The revision before ``revision`` in the demo's linear chain, or "base"."""
    assert not isinstance(revision.down_revision, (list, tuple)), "the demo chain has no merges"
    return revision.down_revision or "base"


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
def test_rewritten_chain_runs_through_an_async_env(
    driver: Driver, fresh: Fresh, original_chain: Callable[[str], tuple[Snapshot, Snapshot]], rewritten_demo: Path
) -> None:
    """``upgrade head`` and ``downgrade base`` build what the original chain builds, also when each revision
    runs again on its own result, as a retried deploy that lost its version bump does."""
    require_driver(driver)
    upgraded, downgraded = original_chain(driver.dialect)
    engine = fresh(driver.dialect)
    config = alembic_config(rewritten_demo, driver.url(engine.url))
    command.upgrade(config, "head")
    assert snapshot(engine) == upgraded
    command.downgrade(config, "base")
    assert snapshot(engine) == downgraded
    revisions = list(ScriptDirectory.from_config(config).walk_revisions())  # head first
    for revision in reversed(revisions):
        command.upgrade(config, revision.revision)
        command.stamp(config, _previous(revision))
        command.upgrade(config, revision.revision)
    assert snapshot(engine) == upgraded, "upgrading each revision again changed the schema"
    for revision in revisions:
        command.downgrade(config, _previous(revision))
        command.stamp(config, revision.revision)
        command.downgrade(config, _previous(revision))
    assert snapshot(engine) == downgraded, "downgrading each revision again changed the schema"
