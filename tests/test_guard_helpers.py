"""The generated guard helpers, run as a migration runs them: what each answers, and what it puts right.

Each test executes the helper block as idempotify writes it into a migration,
and calls the helpers inside Alembic's ``Operations.context`` on a scratch
database, on SQLite, PostgreSQL and MariaDB, and through every driver of
``DRIVERS`` for the answers themselves (asyncpg is strict about the types of
bind parameters).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import importlib
import io
import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.ddl.impl import DefaultImpl
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from codemod import runtime
from codemod.formatting import Style
from codemod.guards import PARTS, finder_name, helper_block_source, helper_names, helpers_called, parts_needed
from codemod.runner import rewrite_source
from codemod.specs import SPECS
from codemod.verify.execution import run_migration
from codemod.verify.schema import snapshot
from tests.base_schema import BASE
from tests.conftest import require_dialect
from tests.databases import DIALECTS, DRIVERS, PSYCOPG_ASYNC, Driver, scratch_database
from tests.fixtures import Golden, golden_paths, read_golden

Scratch = Callable[[str], AbstractContextManager[sa.Engine]]
Helpers = dict[str, Any]


def _helpers() -> Helpers:
    """The namespace a migration gets from the generated block holding every helper."""
    namespace: Helpers = {}
    exec(compile(helper_block_source(helper_names()), "<idempotify helpers>", "exec"), namespace)
    return namespace


# The helpers as tests import them, and as a migration gets them: both must answer alike.
SOURCES: dict[str, Callable[[], Helpers]] = {"module": lambda: vars(runtime), "generated": _helpers}


@contextmanager
def _migration(connection: sa.Connection, **options: Any) -> Iterator[Operations]:
    """``alembic.op`` bound to ``connection``, as while a migration runs on it."""
    with Operations.context(MigrationContext.configure(connection, opts=options)) as operations:
        yield operations


def _ask(helpers: Helpers, check: str, args: tuple[Any, ...], **kwargs: Any) -> Any:
    """The guard's answer: must an op run, given ``check`` ("no column") on ``args`` (table, name, ...)."""
    if check in ("recover_batch", "reuse_enum_types"):
        return helpers[f"_idempotify_{check}"](*args, **kwargs)
    return helpers["_idempotify"](f"op.test: {check}", *args, **kwargs)


# Objects the answers below look up, beside BASE: indexes reflection leaves out or describes partly.
EXTRA_DDL = {
    "sqlite": [
        "CREATE INDEX ix_users_lower_name ON users (lower(name))",
        "CREATE UNIQUE INDEX uq_accounts_lower_name ON accounts (lower(name))",
        "CREATE INDEX ix_orders_large ON orders (amount) WHERE amount > 100",
    ],
    "postgresql": [
        "CREATE INDEX ix_users_lower_name ON users (lower(name))",
        "CREATE UNIQUE INDEX uq_accounts_lower_name ON accounts (lower(name))",
        "CREATE INDEX ix_orders_large ON orders (amount) WHERE amount > 100",
        "ALTER TABLE audit_log ADD CONSTRAINT ex_audit_log_id EXCLUDE USING btree (id WITH =)",
        "CREATE FUNCTION next_of(value integer) RETURNS integer LANGUAGE sql AS 'SELECT value + 1'",
    ],
    "mariadb": [
        "CREATE INDEX ix_orders_large ON orders (amount)",
        "CREATE FUNCTION next_of(value INT) RETURNS INT DETERMINISTIC RETURN value + 1",
    ],
}

EVERYWHERE = frozenset(DIALECTS)
EXPRESSION = frozenset({"sqlite", "postgresql"})  # MariaDB has no indexes on expressions
SEQUENCES = frozenset({"postgresql", "mariadb"})
POSTGRESQL = frozenset({"postgresql"})
FUNCTIONS = frozenset({"postgresql", "mariadb"})  # SQLite has none: its guards run the op as written
# (check, args, answer, where): what the guard answers on BASE plus EXTRA_DDL; args are (table, name, ...).
ANSWERS: list[tuple[str, tuple[Any, ...], bool, frozenset[str]]] = [
    ("table", ("users",), True, EVERYWHERE),
    ("no table", ("users",), False, EVERYWHERE),
    ("no table", ("ghost",), True, EVERYWHERE),
    ("no row", ("users",), True, EVERYWHERE),
    ("no row", ("audit_log",), False, EVERYWHERE),  # one row, inserted below
    ("no row", ("ghost",), True, EVERYWHERE),
    ("recover_batch", ("users",), True, EVERYWHERE),
    ("column", ("users", "name"), True, EVERYWHERE),
    ("column", ("users", "nope"), False, EVERYWHERE),
    ("no column", ("users", "name"), False, EVERYWHERE),
    ("no column", ("users", "nope"), True, EVERYWHERE),
    ("index", ("accounts", "ix_accounts_legacy_code"), True, EVERYWHERE),
    ("index", (None, "ix_accounts_legacy_code"), True, EVERYWHERE),
    ("index", ("accounts", "nope"), False, EVERYWHERE),
    ("index", (None, "nope"), False, EVERYWHERE),
    ("no index", ("accounts", "ix_accounts_legacy_code"), False, EVERYWHERE),
    ("no index", ("accounts", "nope"), True, EVERYWHERE),
    ("no index", ("users", "ix_accounts_legacy_code"), True, EVERYWHERE),  # on another table
    ("no index", ("orders", "ix_orders_large"), False, EVERYWHERE),  # partial, on PostgreSQL and SQLite
    ("no index", ("users", "ix_users_lower_name"), False, EXPRESSION),
    ("index", ("users", "ix_users_lower_name"), True, EXPRESSION),
    ("index", (None, "ix_users_lower_name"), True, EXPRESSION),
    ("no index", ("accounts", "uq_accounts_lower_name"), False, EXPRESSION),
    ("index", (None, "uq_accounts_lower_name"), True, EXPRESSION),
    ("no unique constraint", ("orders", "uq_orders_code", ["code"]), False, EVERYWHERE),
    ("no unique constraint", ("orders", "uq_orders_amount", ["amount"]), True, EVERYWHERE),
    ("no unique constraint", ("orders", None, ["code"]), False, EVERYWHERE),
    # users has a primary key of another name: PostgreSQL reports its name (users_pkey), so pk_users is missing
    # (the create runs, and fails as the original does); SQLite and MariaDB report none, so any key answers.
    ("no primary key", ("users", "pk_users", ["id"]), False, frozenset({"sqlite", "mariadb"})),
    ("no primary key", ("users", "pk_users", ["id"]), True, POSTGRESQL),
    ("no primary key", ("links", "pk_links", ["source_id", "target_id"]), True, EVERYWHERE),
    ("no foreign key", ("orders", "fk_orders_user_id_users", "users", ["user_id"], ["id"]), False, EVERYWHERE),
    ("no foreign key", ("links", "fk_links_source", "users", ["source_id"], ["id"]), True, EVERYWHERE),
    ("no foreign key", ("orders", None, "users", ["user_id"], ["id"]), False, EVERYWHERE),
    ("no check constraint", ("orders", "ck_orders_amount_positive", "amount > 0"), False, EVERYWHERE),
    ("no check constraint", ("orders", "ck_orders_code", "code <> ''"), True, EVERYWHERE),
    ("no exclusion constraint", ("audit_log", "ex_audit_log_id"), False, POSTGRESQL),
    ("no exclusion constraint", ("audit_log", "ex_audit_log_other"), True, EVERYWHERE),
    ("constraint", ("orders", "uq_orders_code", "unique"), True, EVERYWHERE),
    ("constraint", ("orders", "uq_orders_code"), True, EVERYWHERE),
    ("constraint", ("orders", "fk_orders_user_id_users", "foreignkey"), True, EVERYWHERE),
    ("constraint", ("orders", "ck_orders_amount_positive", "check"), True, EVERYWHERE),
    ("constraint", ("audit_log", "ex_audit_log_id"), True, POSTGRESQL),
    ("constraint", ("orders", "uq_orders_code", "foreignkey"), False, EVERYWHERE),
    ("constraint", ("orders", "nope", "unique"), False, EVERYWHERE),
    ("constraint", ("users", "users_pkey", "primary"), True, POSTGRESQL),  # PostgreSQL's name for it
    ("constraint", ("users", "pk_other", "primary"), False, POSTGRESQL),
    ("constraint", ("users", "pk_other", "primary"), True, frozenset({"sqlite", "mariadb"})),  # unnamed
    ("constraint", ("links", "pk_links", "primary"), False, EVERYWHERE),
    ("sequence", (None, "legacy_seq"), True, SEQUENCES),
    ("no sequence", (None, "legacy_seq"), False, SEQUENCES),
    ("no sequence", (None, "nope_seq"), True, SEQUENCES),
    ("enum type", (None, "legacy_status"), True, POSTGRESQL),
    ("no enum type", (None, "legacy_status"), False, POSTGRESQL),
    ("no enum type", (None, "nope_status"), True, POSTGRESQL),
    ("schema", (None, "public"), True, POSTGRESQL),
    ("schema", (None, "nope_schema"), False, EVERYWHERE),
    ("no schema", (None, "nope_schema"), True, EVERYWHERE),
    ("function", (None, "next_of", ["integer"]), True, FUNCTIONS),
    ("function", (None, "next_of", ["int4"]), True, POSTGRESQL),  # the type under another of its names
    ("function", (None, "next_of", None), True, FUNCTIONS),  # DROP FUNCTION next_of: any of that name
    ("function", (None, "next_of", ["text"]), False, POSTGRESQL),
    ("function", (None, "next_of", ["nope_type"]), False, POSTGRESQL),  # no such type: none takes it
    ("function", (None, "nope_of", None), False, FUNCTIONS),
    ("no function", (None, "next_of", ["integer"]), False, FUNCTIONS),
    ("no function", (None, "next_of", ["text"]), True, POSTGRESQL),  # another function of the same name
    ("no function", (None, "next_of", ["text"]), False, frozenset({"mariadb"})),  # one function of a name
    ("no function", (None, "nope_of", []), True, EVERYWHERE),
    # pg_catalog.lower(text) is there, but CREATE FUNCTION lower(text) makes one in the current schema.
    ("no function", (None, "lower", ["text"]), True, POSTGRESQL),
]


def _base(engine: sa.Engine) -> None:
    BASE.create_all(engine)
    with engine.begin() as connection:
        for statement in EXTRA_DDL["mariadb" if engine.dialect.name == "mysql" else engine.dialect.name]:
            connection.exec_driver_sql(statement)
        connection.execute(sa.text("INSERT INTO audit_log (id, message) VALUES (1, 'hello')"))


def _require_driver(driver: Driver) -> None:
    for module in driver.modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            reason = f"driver {driver.name} cannot be used: {error}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true and {reason}")
            pytest.skip(reason)


def _through(driver: Driver, url: sa.URL, work: Callable[[sa.Connection], Any]) -> Any:
    """``work(connection)`` on the database at ``url`` through ``driver``; async ones through ``run_sync``."""
    if not driver.is_async:
        engine = sa.create_engine(driver.url(url), poolclass=NullPool)
        try:
            assert engine.dialect.driver == driver.drivername
            with engine.connect() as connection:
                result = work(connection)
                connection.commit()
                return result
        finally:
            engine.dispose()

    async def run() -> Any:
        engine = create_async_engine(driver.url(url), poolclass=NullPool)
        try:
            assert engine.dialect.driver == driver.drivername
            async with engine.connect() as connection:
                result = await connection.run_sync(work)
                await connection.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("driver", [pytest.param(driver, id=driver.name) for driver in (*DRIVERS, PSYCOPG_ASYNC)])
def test_every_helper_answers_right_under_every_driver(driver: Driver, source: str, scratch: Scratch) -> None:
    _require_driver(driver)
    answers = [(name, args, answer) for name, args, answer, where in ANSWERS if driver.dialect in where]

    def ask(connection: sa.Connection) -> list[tuple[str, tuple[Any, ...], Any]]:
        helpers = SOURCES[source]()
        with _migration(connection):
            return [(name, args, _ask(helpers, name, args)) for name, args, _ in answers]

    with scratch(driver.dialect) as engine:
        _base(engine)
        got = _through(driver, engine.url, ask)
    assert got == answers


# Every check a guard makes, and the helpers that give the migration something else, on an object.
QUESTIONS = {
    "table": ("users",),
    "no table": ("users",),
    "no row": ("users",),
    "recover_batch": ("users",),
    "reuse_enum_types": ("users",),
    "column": ("users", "name"),
    "no column": ("users", "name"),
    "index": ("users", "ix_users_name"),
    "no index": ("users", "ix_users_name"),
    "no unique constraint": ("users", "uq_users_name", ["name"]),
    "no primary key": ("users", "pk_users", ["id"]),
    "no foreign key": ("orders", "fk_orders_user_id_users", "users", ["user_id"], ["id"]),
    "no check constraint": ("orders", "ck_orders_amount_positive", "amount > 0"),
    "no exclusion constraint": ("orders", "ex_orders"),
    "constraint": ("orders", "uq_orders_code", "unique"),
    "sequence": (None, "legacy_seq"),
    "no sequence": (None, "legacy_seq"),
    "enum type": (None, "legacy_status"),
    "no enum type": (None, "legacy_status"),
    "view": (None, "active_users"),
    "no view": (None, "active_users"),
    "trigger": ("users", "trg_users"),
    "no trigger": ("users", "trg_users"),
    "schema": (None, "public"),
    "no schema": (None, "public"),
    "function": (None, "next_of", ["integer"]),
    "no function": (None, "next_of", ["integer"]),
    "extension": (None, "hstore"),
    "no extension": (None, "hstore"),
    "enum value": (None, "new", "legacy_status"),
    "no enum value": (None, "new", "legacy_status"),
}


def test_every_check_a_guard_makes_is_asked_offline() -> None:
    checks = {check.check for spec in SPECS.values() for check in spec.checks} | {"no row"}
    assert set(QUESTIONS) == checks | {"recover_batch", "reuse_enum_types"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("name", QUESTIONS)
def test_offline_every_helper_answers_run_and_writes_nothing(
    dialect: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``alembic upgrade --sql``: the SQL written is the original's, so every op runs, and nothing is logged."""
    buffer = io.StringIO()
    context = MigrationContext.configure(dialect_name=dialect, opts={"as_sql": True, "output_buffer": buffer})
    with Operations.context(context), caplog.at_level(logging.DEBUG, logger="alembic"):
        assert _ask(_helpers(), name, QUESTIONS[name]) is True
    assert buffer.getvalue() == ""
    assert caplog.records == []


# The checks of ops on a table's columns, indexes and constraints, on a table that is not there.
ON_A_TABLE = {
    "column": ("ghost", "c"),
    "no column": ("ghost", "c"),
    "index": ("ghost", "ix_ghost_c"),
    "no index": ("ghost", "ix_ghost_c"),
    "no unique constraint": ("ghost", "uq_ghost_c", ["c"]),
    "no primary key": ("ghost", "pk_ghost", ["c"]),
    "no foreign key": ("ghost", "fk_ghost_c_users", "users", ["c"], ["id"]),
    "no check constraint": ("ghost", "ck_ghost_c", "c > 0"),
    "no exclusion constraint": ("ghost", "ex_ghost_c"),
    "constraint": ("ghost", "uq_ghost_c", "unique"),
    "no trigger": ("ghost", "trg_ghost"),
}


@pytest.fixture(scope="module")
def base_databases() -> Iterator[Callable[[str], sa.Engine]]:
    """``base(dialect)``: one database per dialect with BASE and EXTRA_DDL, for the tests that only read."""
    with ExitStack() as stack:
        made: dict[str, sa.Engine] = {}

        def base(dialect: str) -> sa.Engine:
            require_dialect(dialect)
            if dialect not in made:
                made[dialect] = stack.enter_context(scratch_database(dialect))
                _base(made[dialect])
            return made[dialect]

        yield base


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", ON_A_TABLE)
@pytest.mark.parametrize("gone", [False, True])
def test_without_its_table_an_op_runs_unless_the_function_removes_the_table(
    dialect: str, name: str, gone: bool, base_databases: Callable[[str], sa.Engine]
) -> None:
    """Run, the op fails as the original does; skipped only where a re-run finds the table dropped on purpose."""
    with base_databases(dialect).connect() as connection, _migration(connection):
        answer = _ask(_helpers(), name, ON_A_TABLE[name], gone=gone)
    assert answer is (not gone)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_skip_without_table_changes_nothing_when_the_table_is_there(
    dialect: str, base_databases: Callable[[str], sa.Engine]
) -> None:
    answers = [(name, args, answer) for name, args, answer, where in ANSWERS if dialect in where and name in ON_A_TABLE]
    with base_databases(dialect).connect() as connection, _migration(connection):
        helpers = _helpers()
        got = [(name, args, _ask(helpers, name, args, gone=True)) for name, args, _ in answers]
    assert got == answers


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_primary_key_swapped_for_another_is_swapped_once(dialect: str, scratch: Scratch) -> None:
    """drop_constraint asks for the key of its name; create_primary_key for any key (a table has one)."""
    with scratch(dialect) as engine:
        with engine.begin() as connection:
            sa.Table(
                "parent",
                sa.MetaData(),
                sa.Column("id", sa.Integer, nullable=False),
                sa.Column("code", sa.String(20), nullable=False),
                sa.PrimaryKeyConstraint("code", name="pk_parent_old"),
            ).create(connection)
        for _ in range(2):
            with engine.connect() as connection, _migration(connection) as op:
                helpers = _helpers()
                old = ("parent", "pk_parent_old", "primary")
                with op.batch_alter_table("parent") as batch_op:
                    if _ask(helpers, "constraint", old):
                        batch_op.drop_constraint("pk_parent_old", type_="primary")
                    if _ask(helpers, "constraint", old) or _ask(
                        helpers, "no primary key", ("parent", "pk_parent_new", ["id"])
                    ):
                        batch_op.create_primary_key("pk_parent_new", ["id"])
                connection.commit()
            key = sa.inspect(engine).get_pk_constraint("parent")
            assert key["constrained_columns"] == ["id"]
            assert key["name"] == (None if dialect == "mariadb" else "pk_parent_new")  # MariaDB names none


def _catalog_indexes(connection: sa.Connection) -> set[str]:
    """Every index name the catalog has, expression indexes included (reflection leaves those out)."""
    query = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index'",
        "postgresql": "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()",
    }.get(
        connection.dialect.name, "SELECT index_name FROM information_schema.statistics WHERE table_schema = database()"
    )
    return {str(name) for (name,) in connection.exec_driver_sql(query)}


INDEX_GOLDENS = [
    pytest.param(golden, dialect, id=f"{golden.id}-{dialect}")
    for golden in (read_golden(path) for path in golden_paths())
    if golden.path.parent.name in ("create_index", "drop_index") and golden.output != golden.input
    for dialect in golden.dialects
]


@pytest.mark.parametrize(("golden", "dialect"), INDEX_GOLDENS)
def test_index_goldens_build_the_same_indexes_as_the_catalog_lists_them(
    golden: Golden, dialect: str, scratch: Scratch
) -> None:
    """The execution suite compares reflected schemas, and SQLite's reflection leaves expression indexes out."""

    def indexes_after(engine: sa.Engine, source: str, function: str) -> set[str]:
        run_migration(engine, source, function, naming_convention=golden.naming_convention)
        with engine.connect() as connection:
            return _catalog_indexes(connection)

    with scratch(dialect) as engine:
        BASE.create_all(engine)
        expected = [indexes_after(engine, golden.input, function) for function in ("upgrade", "downgrade")]
    with scratch(dialect) as engine:
        BASE.create_all(engine)
        for function, indexes in zip(("upgrade", "downgrade"), expected, strict=True):
            assert indexes_after(engine, golden.output, function) == indexes, f"first {function}"
            assert indexes_after(engine, golden.output, function) == indexes, f"second {function}"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_index_of_that_name_on_another_table_does_not_skip_the_create(dialect: str, scratch: Scratch) -> None:
    """MariaDB names indexes per table: the create succeeds. Elsewhere it fails, as the original's does."""
    with scratch(dialect) as engine:
        BASE.create_all(engine)
        with engine.connect() as connection, _migration(connection) as op:
            helpers = _helpers()
            op.create_index("ix_shared", "users", ["name"])
            assert _ask(helpers, "no index", ("accounts", "ix_shared")) is True
            assert _ask(helpers, "index", ("accounts", "ix_shared")) is False
            if dialect == "mariadb":
                op.create_index("ix_shared", "accounts", ["name"])
                assert _ask(helpers, "no index", ("accounts", "ix_shared")) is False
            else:
                with pytest.raises(sa.exc.DBAPIError, match="already exists"):
                    op.create_index("ix_shared", "accounts", ["name"])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_index_is_found_by_name_in_another_schema(dialect: str, scratch: Scratch) -> None:
    """SQLite: an attached database; PostgreSQL: a schema; MariaDB: another database."""
    with scratch(dialect) as engine, scratch(dialect) as other:
        schema = "other" if dialect != "mariadb" else str(other.url.database)
        with engine.connect() as connection, _migration(connection) as op:
            if dialect == "sqlite":
                connection.exec_driver_sql(f"ATTACH DATABASE '{other.url.database}' AS other")
            elif dialect == "postgresql":
                connection.exec_driver_sql("CREATE SCHEMA other")
            op.create_table(
                "t", sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Integer), schema=schema
            )
            helpers = _helpers()
            assert _ask(helpers, "no index", ("t", "ix_t_v"), schema=schema) is True
            op.create_index("ix_t_v", "t", ["v"], schema=schema)
            assert _ask(helpers, "no index", ("t", "ix_t_v"), schema=schema) is False
            assert _ask(helpers, "index", ("t", "ix_t_v"), schema=schema) is True
            assert _ask(helpers, "index", (None, "ix_t_v"), schema=schema) is True
            assert _ask(helpers, "index", (None, "ix_t_v")) is False  # not in the default schema
            assert _ask(helpers, "no index", ("t", "ix_t_v"), schema=schema, gone=True) is False


def test_an_index_left_invalid_by_a_failed_concurrent_build_is_rebuilt(scratch: Scratch) -> None:
    """PostgreSQL: the invalid index blocks the original create_index; the guard drops it so the create runs."""
    with scratch("postgresql") as engine:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("CREATE TABLE t (id integer PRIMARY KEY, v integer)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1, 7), (2, 7)")
            with pytest.raises(sa.exc.IntegrityError):
                connection.exec_driver_sql("CREATE UNIQUE INDEX CONCURRENTLY ix_t_v ON t (v)")
        validity = "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = 'ix_t_v'::regclass"
        with engine.connect() as connection:
            assert connection.exec_driver_sql(validity).one() == (False, True)
            with _migration(connection) as op, pytest.raises(sa.exc.ProgrammingError, match="already exists"):
                op.create_index("ix_t_v", "t", ["v"])  # the original op, unguarded
        with engine.connect() as connection:
            # A file that builds no index concurrently has no drop of invalid ones: its create runs as written.
            without_drop: Helpers = {}
            guard = '_idempotify("op.create_index: no index", "t", "ix_t_v")'
            exec(helper_block_source(helpers_called(guard), parts=parts_needed(guard)), without_drop)
            assert "_idempotify_drop_invalid_index" not in without_drop
            with _migration(connection):
                assert _ask(without_drop, "no index", ("t", "ix_t_v")) is True
            assert connection.exec_driver_sql(validity).one() == (False, True)
        with engine.connect() as connection:
            with _migration(connection) as op:
                helpers = _helpers()
                assert _ask(helpers, "index", ("t", "ix_t_v")) is True  # a drop_index runs
                if _ask(helpers, "no index", ("t", "ix_t_v")):
                    op.create_index("ix_t_v", "t", ["v"])
                assert _ask(helpers, "no index", ("t", "ix_t_v")) is False
            connection.commit()
            assert connection.exec_driver_sql(validity).one() == (True, False)


def test_a_unique_index_on_duplicates_still_fails_after_its_invalid_leftover_is_dropped(scratch: Scratch) -> None:
    """The guard clears the way; the create then fails on the duplicates exactly as the original would."""
    with (
        scratch("postgresql") as engine,
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
    ):
        connection.exec_driver_sql("CREATE TABLE t (id integer PRIMARY KEY, v integer)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1, 7), (2, 7)")
        with pytest.raises(sa.exc.IntegrityError):
            connection.exec_driver_sql("CREATE UNIQUE INDEX CONCURRENTLY ix_t_v ON t (v)")
        with _migration(connection) as op:
            assert _ask(_helpers(), "no index", ("t", "ix_t_v")) is True
            with pytest.raises(sa.exc.IntegrityError, match="duplicate"):
                op.create_index("ix_t_v", "t", ["v"], unique=True)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_seed_insert_runs_while_the_table_is_empty(dialect: str, scratch: Scratch) -> None:
    """A deploy that died between CREATE TABLE and the insert gets its rows on retry, and only once."""
    with scratch(dialect) as engine, engine.connect() as connection, _migration(connection) as op:
        helpers = _helpers()
        assert _ask(helpers, "no row", ("seeds",)) is True  # missing: the insert fails as written
        seeds = op.create_table("seeds", sa.Column("id", sa.Integer, primary_key=True))
        for _ in range(2):
            if _ask(helpers, "no row", ("seeds",)):
                op.bulk_insert(seeds, [{"id": 1}, {"id": 2}])
        assert _ask(helpers, "no row", ("seeds",)) is False
        assert connection.execute(sa.select(sa.func.count()).select_from(seeds)).scalar() == 2
        with pytest.raises(sa.exc.DBAPIError):
            op.bulk_insert(sa.table("ghost", sa.column("id")), [{"id": 1}])


# A batch block that recreates its table, as on SQLite; it runs on PostgreSQL and MariaDB with recreate="always".
def _batch(op: Operations, helpers: Helpers, table: str) -> None:
    if helpers["_idempotify_recover_batch"](table):
        with op.batch_alter_table(table, recreate="always") as batch_op:
            if _ask(helpers, "no column", (table, "extra")):
                batch_op.add_column(sa.Column("extra", sa.Integer))
            if _ask(helpers, "no index", (table, f"ix_{table[:20]}_extra")):
                batch_op.create_index(f"ix_{table[:20]}_extra", ["extra"])


def _batch_table(engine: sa.Engine, table: str) -> None:
    with engine.begin() as connection:
        sa.Table(
            table,
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50)),
        ).create(connection)
        connection.execute(sa.text(f"INSERT INTO {table} (id, name) VALUES (1, 'a'), (2, 'b')"))


def _rows(engine: sa.Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(f"SELECT id, name FROM {table} ORDER BY id"))]


class Died(BaseException):
    """The process died here: no ``except`` in Alembic cleans up after it."""


@contextmanager
def _dying_at(method: str) -> Iterator[None]:
    """Alembic's migration implementation dies when the batch copy calls ``method`` (drop_table, rename_table)."""
    original = getattr(DefaultImpl, method)

    def die(self: DefaultImpl, *args: Any, **kwargs: Any) -> Any:
        raise Died(method)

    setattr(DefaultImpl, method, die)
    try:
        yield
    finally:
        setattr(DefaultImpl, method, original)


BATCH_CRASHES = {
    # Alembic creates _alembic_tmp_<table>, copies the rows, drops the table, renames the copy (batch.py _create).
    "drop_table": "both the table and the copy are left: the copy is dropped",
    "rename_table": "only the copy is left: it is renamed to the table",
}


def _die_in_batch(engine: sa.Engine, table: str, crash_at: str) -> str:
    """Run the batch block until Alembic calls ``crash_at``, each statement committed; the leftover's name."""
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        _migration(connection) as op,
        _dying_at(crash_at),
        pytest.raises(Died),
    ):
        _batch(op, _helpers(), table)
    leftover = f"_alembic_tmp_{table}"[:50]
    assert leftover in sa.inspect(engine).get_table_names()
    with (
        engine.connect() as connection,
        _migration(connection) as op,
        pytest.raises((sa.exc.DBAPIError, sa.exc.NoSuchTableError)),
        op.batch_alter_table(table, recreate="always") as batch_op,
    ):
        batch_op.add_column(sa.Column("extra", sa.Integer))  # the original block, run again, fails
    return leftover


def _idempotify_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("idempotify:")]


@pytest.mark.parametrize(
    ("dialect", "crash_at"),
    [
        (dialect, crash_at)
        for dialect in DIALECTS
        for crash_at in BATCH_CRASHES
        if (dialect, crash_at) != ("postgresql", "drop_table")
    ],
)
@pytest.mark.parametrize("table", ["things", "a_table_whose_name_makes_the_copy_name_longer_than_fifty"])
def test_a_batch_block_that_died_part_way_is_completed_without_losing_rows(
    dialect: str, crash_at: str, table: str, scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    with scratch(dialect) as engine:
        _batch_table(engine, table)
        with engine.connect() as connection, _migration(connection) as op:
            _batch(op, _helpers(), table)
            connection.commit()
        expected = snapshot(engine)
    with scratch(dialect) as engine:
        _batch_table(engine, table)
        leftover = _die_in_batch(engine, table, crash_at)
        with caplog.at_level(logging.WARNING, logger="alembic"):
            for _ in range(2):
                with engine.connect() as connection, _migration(connection) as op:
                    _batch(op, _helpers(), table)
                    connection.commit()
        assert snapshot(engine) == expected
        assert _rows(engine, table) == [(1, "a"), (2, "b")]
        said = _idempotify_said(caplog)
        assert len(said) == 1, said  # once: the second run finds nothing left over
        action = f"dropped {leftover}, an unfinished copy" if crash_at == "drop_table" else f"renamed {leftover} to it"
        assert said[0].startswith(f"idempotify: a batch block on {table} died part-way: {action}")


def test_a_batch_copy_that_holds_the_tables_constraints_is_left_to_fail(
    scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL: Alembic moved the primary key to the copy; dropping the copy would lose it without a word."""
    with scratch("postgresql") as engine:
        _batch_table(engine, "things")
        leftover = _die_in_batch(engine, "things", "drop_table")
        assert sa.inspect(engine).get_pk_constraint("things")["constrained_columns"] == []
        with (
            caplog.at_level(logging.WARNING, logger="alembic"),
            engine.connect() as connection,
            _migration(connection) as op,
            pytest.raises(sa.exc.ProgrammingError, match=f'relation "{leftover}" already exists'),
        ):
            _batch(op, _helpers(), "things")
        assert _idempotify_said(caplog) == [
            f"idempotify: a batch block on things died part-way: left {leftover}, which holds its constraints:"
            " fix by hand"
        ]
        assert sa.inspect(engine).get_pk_constraint(leftover)["constrained_columns"] == ["id"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_skipped_op_logs_one_info_line_naming_it_and_an_op_that_runs_logs_nothing(
    dialect: str, scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    """The deploy log (Alembic's logger, as ``alembic upgrade`` prints it): the op as written, its object, why."""
    with scratch(dialect) as engine:
        BASE.create_all(engine)
        for run in range(2):
            with (
                engine.connect() as connection,
                _migration(connection) as op,
                caplog.at_level(logging.INFO, logger="alembic"),
            ):
                guard = _helpers()["_idempotify"]
                caplog.clear()
                if guard("op.add_column: no column", "player_wellness_state", "updated_at"):
                    op.add_column("player_wellness_state", sa.Column("updated_at", sa.DateTime()))
                if guard("op.create_table: no table", "audit_log"):
                    op.create_table("audit_log", sa.Column("id", sa.Integer, primary_key=True))
                if guard("batch_op.drop_column: column", "users", "nickname", gone=True):
                    op.drop_column("users", "nickname")
                connection.commit()
            logged = [(record.name, record.levelname, record.getMessage()) for record in caplog.records]
            skipped_on_every_run = [
                ("alembic.runtime.migration", "INFO", "skipped op.create_table(audit_log): table exists"),
                ("alembic.runtime.migration", "INFO", "skipped batch_op.drop_column(users.nickname): column is absent"),
            ]
            if run == 0:  # add_column ran: nothing said of it
                assert logged == skipped_on_every_run
            else:
                column = (
                    "alembic.runtime.migration",
                    "INFO",
                    "skipped op.add_column(player_wellness_state.updated_at): column exists",
                )
                assert logged == [column, *skipped_on_every_run]


def test_a_skip_for_a_missing_table_says_so(scratch: Scratch, caplog: pytest.LogCaptureFixture) -> None:
    with (
        scratch("sqlite") as engine,
        engine.connect() as connection,
        _migration(connection),
        caplog.at_level(logging.INFO, logger="alembic"),
    ):
        assert _ask(vars(runtime), "index", ("ghost", "ix_ghost_c"), gone=True) is False
    assert [record.getMessage() for record in caplog.records] == ["skipped op.test(ghost.ix_ghost_c): table is absent"]


# What the copy in a migration may use besides its own names: Python's builtins and the other helpers; it may import
# sqlalchemy, alembic and Python's standard library (the drift check reads the migration's source with ast).
_ALLOWED_IMPORTS = ("sqlalchemy", "alembic", *sys.stdlib_module_names)


def _free_names(function: ast.FunctionDef) -> set[str]:
    """Names ``function`` reads that it does not bind itself (parameters, assignments, imports, loops)."""
    bound = {arg.arg for arg in ast.walk(function.args) if isinstance(arg, ast.arg)}
    read: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.arg)):
            bound.add(node.name if isinstance(node, ast.FunctionDef) else node.arg)
    return read - bound


@pytest.mark.parametrize("name", helper_names())
def test_every_generated_helper_is_self_contained(name: str) -> None:
    """Its copy imports only sqlalchemy, alembic and the standard library, inside it, and names nothing of
    idempotify but other helpers."""
    tree = ast.parse(helper_block_source([name]))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert len(functions) == len(tree.body), "the block holds only functions"
    for function in functions.values():
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] in _ALLOWED_IMPORTS for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] in _ALLOWED_IMPORTS
        assert _free_names(function) - set(dir(builtins)) - set(helper_names()) == set(), function.name
        assert function.returns is None and all(
            arg.annotation is None for arg in ast.walk(function.args) if isinstance(arg, ast.arg)
        )


# Blocks whose helpers hold parts (``# part: <name>``): the guard and the index finder, each with and without
# the helper a part of it calls, and the constraint finders.
CUT_BLOCKS = [
    ("_idempotify",),
    ("_idempotify", "_idempotify_drift"),
    ("_idempotify", "_idempotify_lacking_indexes"),
    ("_idempotify_index",),
    ("_idempotify_index", "_idempotify_drop_invalid_index"),
    ("_idempotify_constraint", "_idempotify_named_by_convention"),
]


def _parts_of(used: tuple[str, ...]) -> list[str]:
    """The parts that make a difference to the block holding the helpers ``used``."""
    return sorted(
        part for part in PARTS if helper_block_source(used, parts=PARTS - {part}) != helper_block_source(used)
    )


@pytest.mark.parametrize(
    ("used", "parts"),
    [
        (used, frozenset(cut))
        for used in CUT_BLOCKS
        for size in range(len(_parts_of(used)) + 1)
        for cut in itertools.combinations(_parts_of(used), size)
    ],
    ids=lambda value: "+".join(sorted(value)) or "none",
)
def test_every_cut_of_the_helpers_to_some_parts_is_self_contained(used: tuple[str, ...], parts: frozenset[str]) -> None:
    """A migration's helpers hold only the parts its guards need: each cut compiles, names no other helper than
    those beside it, keeps no mark of the parts, and each part it leaves out makes it shorter."""
    source = helper_block_source(used, parts=parts)
    functions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    for function in functions:
        beside = {function.name for function in functions} | {"_idempotify_index_name"}  # in files that need it
        assert _free_names(function) - set(dir(builtins)) - beside == set()
    assert "part:" not in source
    for part in set(_parts_of(used)) - parts:
        longer = helper_block_source(used, parts=parts | {part})
        assert len(longer.splitlines()) > len(source.splitlines()), part


def _guard_source(check: str, args: tuple[Any, ...], keywords: dict[str, Any]) -> str:
    arguments = [repr(f"op.test: {check}"), *map(repr, args), *(f"{key}={value!r}" for key, value in keywords.items())]
    return f"_idempotify({', '.join(arguments)})"


@pytest.mark.parametrize(
    "keywords",
    [{}, {"copied": True}, {"gone": True}, {"quiet": True}, {"naming_convention": {"uq": "uq_%(table_name)s_code"}}],
    ids=str,
)
def test_the_block_of_a_file_of_one_guard_answers_and_logs_as_the_whole_guard(
    keywords: dict[str, Any], scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each check, in the block a file holding only that guard gets (``_idempotify`` cut to the parts it
    needs), answers and logs as ``codemod.runtime`` does, also without its table."""
    asked = [(check, args) for check, args, _, where in ANSWERS if "sqlite" in where and check != "recover_batch"]
    asked += [("no column", ("ghost", "c")), ("column", ("ghost", "c")), ("no index", ("ghost", "ix_ghost"))]
    asked += [("constraint", ("keyed", "pk_keyed")), ("constraint", ("keyed", "pk_keyed", "primary"))]
    with scratch("sqlite") as engine:
        _base(engine)
        with engine.begin() as connection:  # a primary key SQLite reports by name: a drop without type_ finds it
            connection.exec_driver_sql("CREATE TABLE keyed (id INTEGER, CONSTRAINT pk_keyed PRIMARY KEY (id))")
        with engine.connect() as connection, _migration(connection), caplog.at_level(logging.INFO, "alembic"):
            for check, args in asked:
                guard = _guard_source(check, args, keywords)
                namespace: Helpers = {}
                exec(helper_block_source(helpers_called(guard), parts=parts_needed(guard)), namespace)
                answers = []
                for helpers in (namespace, vars(runtime)):
                    caplog.clear()
                    answer = helpers["_idempotify"](f"op.test: {check}", *args, **keywords)
                    answers.append((answer, [record.getMessage() for record in caplog.records]))
                assert answers[0] == answers[1], guard


def test_every_kind_a_guard_checks_has_its_finder_in_the_block() -> None:
    """``_idempotify`` looks a finder up by the kind's name: the block of a guard on that kind holds it."""
    for spec in SPECS.values():
        for check in spec.checks:
            kind = check.check.removeprefix("no ")
            guard = f'_idempotify("op.{spec.name}: {check.check}", "t", "n")'
            namespace: Helpers = {}
            exec(helper_block_source(helpers_called(guard)), namespace)
            if kind not in ("table", "column"):
                assert callable(namespace[finder_name(kind)]), check.check


def test_a_block_of_the_core_alone_answers_on_sqlite_in_an_empty_namespace(scratch: Scratch) -> None:
    """The block most files get, run as the migration runs it: nothing of idempotify is there to lean on."""
    namespace: Helpers = {}
    exec(compile(helper_block_source(["_idempotify"]), "<migration>", "exec"), namespace)
    assert [name for name in namespace if name != "__builtins__"] == ["_idempotify"]
    with scratch("sqlite") as engine, engine.connect() as connection, _migration(connection) as op:
        assert namespace["_idempotify"]("op.create_table: no table", "t") is True
        op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))
        assert namespace["_idempotify"]("op.create_table: no table", "t") is False
        assert namespace["_idempotify"]("op.add_column: no column", "t", "id") is False
        assert namespace["_idempotify"]("op.drop_column: column", "t", "v") is False


GUARDED_GOLDENS = [golden for golden in (read_golden(path) for path in golden_paths()) if golden.output != golden.input]


@pytest.mark.parametrize("golden", GUARDED_GOLDENS, ids=lambda golden: golden.id)
def test_every_guard_in_a_golden_finds_its_finder_in_the_file(golden: Golden) -> None:
    """``_idempotify`` looks its finder up at run time: a kind whose finder is missing would fail there, not here."""
    tree = ast.parse(golden.output)
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_idempotify":
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str)
            kind = first.value.rpartition(": ")[2].removeprefix("no ")
            assert kind in ("table", "column") or finder_name(kind) in defined, (first.value, golden.id)


@pytest.mark.parametrize(
    ("name", "needs_help"),
    [('"ix_t_a"', False), ('op.f("ix_t_a")', False), (f'"{"i" * 31}"', True), ("name", True), ("None", True)],
)
def test_an_index_gets_help_with_its_name_unless_a_short_literal_names_it(name: str, needs_help: bool) -> None:
    """Stored as written: a literal of at most 30 characters; others are named, or cut, as the database stores them."""
    called = helpers_called(f'_idempotify("op.create_index: no index", "t", {name})')
    assert ("_idempotify_index_name" in called) is needs_help
    assert "_idempotify_index" in called


def test_a_rider_comes_only_with_the_helper_it_rides_with() -> None:
    """A file that builds an index concurrently but guards no index gets no invalid-index drop."""
    rider = "_idempotify_drop_invalid_index"
    assert f"def {rider}(" not in helper_block_source(["_idempotify", rider])
    assert f"def {rider}(" in helper_block_source(["_idempotify", "_idempotify_index", rider])


def test_a_constraint_drop_needs_the_look_at_its_type_or_at_every_type() -> None:
    """The constraint finders keep the look at the type a drop names; without one, or one known only at run time,
    at all of them."""

    def parts(type_: str) -> set[str]:
        return parts_needed(f'_idempotify("op.drop_constraint: constraint", "t", "n"{type_})') - {"finder"}

    assert parts(', "foreignkey"') == {"foreignkey"}
    assert parts("") == {"untyped", "unique", "foreignkey", "check"}
    assert parts(', kinds["t"]') == {"primary", "untyped", "unique", "foreignkey", "check"}
    assert parts(', "foreignkey", naming_convention=conv') == {"foreignkey", "convention"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_unnamed_unique_index_is_looked_up_as_the_convention_names_a_unique_one(
    dialect: str, scratch: Scratch
) -> None:
    """indico's convention names a unique index apart ("ix_%(unique_index)s..."). The guard of an unnamed unique
    index, told only its columns, looked for the plain index of those columns (there, from index=True), and skipped
    the create: the rewritten chain lacked the index the original makes (indico 9d00917b2fa8, tried as a new user
    would)."""
    convention: dict[str, Any] = {
        "ix": "ix_%(unique_index)s%(table_name)s_%(column_0_name)s",
        "unique_index": lambda index, _: "uq_" if index.unique else "",
    }
    source = (
        "from alembic import op\nimport sqlalchemy as sa\n\n\ndef upgrade():\n"
        "    op.create_table('t', sa.Column('id', sa.Integer, primary_key=True),"
        " sa.Column('a', sa.Integer, index=True))\n"
        "    op.create_index(None, 't', ['a'], unique=True)\n"
    )
    output = rewrite_source(source.encode(), Style())[0].decode()
    assert output.count("unique=True") == 2  # the op's, and the guard's
    with scratch(dialect) as engine:
        for _ in range(2):  # the second run finds both indexes and skips
            run_migration(engine, output, naming_convention=convention)
            indexes = {index["name"]: index["unique"] for index in sa.inspect(engine).get_indexes("t")}
            assert indexes == {"ix_t_a": False, "ix_uq_t_a": True}
