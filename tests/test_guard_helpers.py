"""The generated guard helpers, run as a migration runs them: what each answers, and what it puts right.

Each test executes the helper block as idempotify writes it into a migration,
and calls the helpers inside Alembic's ``Operations.context`` on a scratch
database, on SQLite, PostgreSQL and MariaDB, and through every driver of
``DRIVERS`` for the answers themselves (asyncpg is strict about the types of
bind parameters).
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import os
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

from codemod.guards import helper_block_source, helper_names
from codemod.verify.execution import run_migration
from codemod.verify.schema import snapshot
from tests.conftest import require_dialect
from tests.databases import BASE, DIALECTS, DRIVERS, PSYCOPG_ASYNC, Driver, scratch_database
from tests.fixtures import Golden, golden_paths, read_golden

Scratch = Callable[[str], AbstractContextManager[sa.Engine]]
Helpers = dict[str, Any]


def _helpers() -> Helpers:
    """The namespace a migration gets from the generated block holding every helper."""
    namespace: Helpers = {}
    exec(compile(helper_block_source(helper_names()), "<idempotify helpers>", "exec"), namespace)
    return namespace


@contextmanager
def _migration(connection: sa.Connection, **options: Any) -> Iterator[Operations]:
    """``alembic.op`` bound to ``connection``, as while a migration runs on it."""
    with Operations.context(MigrationContext.configure(connection, opts=options)) as operations:
        yield operations


def _call(helpers: Helpers, name: str, args: tuple[Any, ...], **kwargs: Any) -> Any:
    """``_idempotify_<name>(*args, **kwargs)``."""
    return helpers[f"_idempotify_{name}"](*args, **kwargs)


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
    ],
    "mariadb": ["CREATE INDEX ix_orders_large ON orders (amount)"],
}

EVERYWHERE = frozenset(DIALECTS)
EXPRESSION = frozenset({"sqlite", "postgresql"})  # MariaDB has no indexes on expressions
SEQUENCES = frozenset({"postgresql", "mariadb"})
POSTGRESQL = frozenset({"postgresql"})
# (helper, args, answer, where): what each helper answers on BASE plus EXTRA_DDL.
ANSWERS: list[tuple[str, tuple[Any, ...], bool, frozenset[str]]] = [
    ("table_exists", ("users",), True, EVERYWHERE),
    ("table_missing", ("users",), False, EVERYWHERE),
    ("table_missing", ("ghost",), True, EVERYWHERE),
    ("table_empty", ("users",), True, EVERYWHERE),
    ("table_empty", ("audit_log",), False, EVERYWHERE),  # one row, inserted below
    ("table_empty", ("ghost",), True, EVERYWHERE),
    ("recover_batch", ("users",), True, EVERYWHERE),
    ("column_exists", ("users", "name"), True, EVERYWHERE),
    ("column_exists", ("users", "nope"), False, EVERYWHERE),
    ("column_missing", ("users", "name"), False, EVERYWHERE),
    ("column_missing", ("users", "nope"), True, EVERYWHERE),
    ("index_exists", ("accounts", "ix_accounts_legacy_code"), True, EVERYWHERE),
    ("index_exists", (None, "ix_accounts_legacy_code"), True, EVERYWHERE),
    ("index_exists", ("accounts", "nope"), False, EVERYWHERE),
    ("index_exists", (None, "nope"), False, EVERYWHERE),
    ("index_missing", ("accounts", "ix_accounts_legacy_code"), False, EVERYWHERE),
    ("index_missing", ("accounts", "nope"), True, EVERYWHERE),
    ("index_missing", ("users", "ix_accounts_legacy_code"), True, EVERYWHERE),  # on another table
    ("index_missing", ("orders", "ix_orders_large"), False, EVERYWHERE),  # partial, on PostgreSQL and SQLite
    ("index_missing", ("users", "ix_users_lower_name"), False, EXPRESSION),
    ("index_exists", ("users", "ix_users_lower_name"), True, EXPRESSION),
    ("index_exists", (None, "ix_users_lower_name"), True, EXPRESSION),
    ("index_missing", ("accounts", "uq_accounts_lower_name"), False, EXPRESSION),
    ("index_exists", (None, "uq_accounts_lower_name"), True, EXPRESSION),
    ("unique_missing", ("uq_orders_code", "orders", ["code"]), False, EVERYWHERE),
    ("unique_missing", ("uq_orders_amount", "orders", ["amount"]), True, EVERYWHERE),
    ("unique_missing", (None, "orders", ["code"]), False, EVERYWHERE),
    # users has a primary key of another name: PostgreSQL reports its name (users_pkey), so pk_users is missing
    # (the create runs, and fails as the original does); SQLite and MariaDB report none, so any key answers.
    ("primary_key_missing", ("pk_users", "users", ["id"]), False, frozenset({"sqlite", "mariadb"})),
    ("primary_key_missing", ("pk_users", "users", ["id"]), True, POSTGRESQL),
    ("primary_key_missing", ("pk_links", "links", ["source_id", "target_id"]), True, EVERYWHERE),
    (
        "foreign_key_missing",
        ("fk_orders_user_id_users", "orders", "users", ["user_id"], ["id"]),
        False,
        EVERYWHERE,
    ),
    ("foreign_key_missing", ("fk_links_source", "links", "users", ["source_id"], ["id"]), True, EVERYWHERE),
    ("foreign_key_missing", (None, "orders", "users", ["user_id"], ["id"]), False, EVERYWHERE),
    ("check_missing", ("ck_orders_amount_positive", "orders", "amount > 0"), False, EVERYWHERE),
    ("check_missing", ("ck_orders_code", "orders", "code <> ''"), True, EVERYWHERE),
    ("exclude_missing", ("ex_audit_log_id", "audit_log"), False, POSTGRESQL),
    ("exclude_missing", ("ex_audit_log_other", "audit_log"), True, EVERYWHERE),
    ("constraint_exists", ("uq_orders_code", "orders", "unique"), True, EVERYWHERE),
    ("constraint_exists", ("uq_orders_code", "orders"), True, EVERYWHERE),
    ("constraint_exists", ("fk_orders_user_id_users", "orders", "foreignkey"), True, EVERYWHERE),
    ("constraint_exists", ("ck_orders_amount_positive", "orders", "check"), True, EVERYWHERE),
    ("constraint_exists", ("ex_audit_log_id", "audit_log"), True, POSTGRESQL),
    ("constraint_exists", ("uq_orders_code", "orders", "foreignkey"), False, EVERYWHERE),
    ("constraint_exists", ("nope", "orders", "unique"), False, EVERYWHERE),
    ("constraint_exists", ("users_pkey", "users", "primary"), True, POSTGRESQL),  # PostgreSQL's name for it
    ("constraint_exists", ("pk_other", "users", "primary"), False, POSTGRESQL),
    ("constraint_exists", ("pk_other", "users", "primary"), True, frozenset({"sqlite", "mariadb"})),  # unnamed
    ("constraint_exists", ("pk_links", "links", "primary"), False, EVERYWHERE),
    ("sequence_exists", ("legacy_seq",), True, SEQUENCES),
    ("sequence_missing", ("legacy_seq",), False, SEQUENCES),
    ("sequence_missing", ("nope_seq",), True, SEQUENCES),
    ("enum_exists", ("legacy_status",), True, POSTGRESQL),
    ("enum_missing", ("legacy_status",), False, POSTGRESQL),
    ("enum_missing", ("nope_status",), True, POSTGRESQL),
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


@pytest.mark.parametrize("driver", [pytest.param(driver, id=driver.name) for driver in (*DRIVERS, PSYCOPG_ASYNC)])
def test_every_helper_answers_right_under_every_driver(driver: Driver, scratch: Scratch) -> None:
    _require_driver(driver)
    answers = [(name, args, answer) for name, args, answer, where in ANSWERS if driver.dialect in where]

    def ask(connection: sa.Connection) -> list[tuple[str, tuple[Any, ...], Any]]:
        helpers = _helpers()
        with _migration(connection):
            return [(name, args, _call(helpers, name, args)) for name, args, _ in answers]

    with scratch(driver.dialect) as engine:
        _base(engine)
        got = _through(driver, engine.url, ask)
    assert got == answers


# Every helper that answers "must the op run?", called with arguments naming an object.
QUESTIONS = {
    "table_exists": ("users",),
    "table_missing": ("users",),
    "table_empty": ("users",),
    "recover_batch": ("users",),
    "reuse_enum_types": ("users",),
    "column_exists": ("users", "name"),
    "column_missing": ("users", "name"),
    "index_exists": ("users", "ix_users_name"),
    "index_missing": ("users", "ix_users_name"),
    "unique_missing": ("uq_users_name", "users", ["name"]),
    "primary_key_missing": ("pk_users", "users", ["id"]),
    "foreign_key_missing": ("fk_orders_user_id_users", "orders", "users", ["user_id"], ["id"]),
    "check_missing": ("ck_orders_amount_positive", "orders", "amount > 0"),
    "exclude_missing": ("ex_orders", "orders"),
    "constraint_exists": ("uq_orders_code", "orders", "unique"),
    "sequence_exists": ("legacy_seq",),
    "sequence_missing": ("legacy_seq",),
    "enum_exists": ("legacy_status",),
    "enum_missing": ("legacy_status",),
    "object_exists": ("view", "active_users"),
    "object_missing": ("trigger", "trg_users", None, "users"),
}
# Helpers that are parts of others, or give the migration something other than an answer.
NOT_QUESTIONS = {"inspector", "schema_objects", "table", "named_by_convention", "found"}


def test_every_helper_that_answers_is_asked_offline() -> None:
    helpers = {name.removeprefix("_idempotify_") for name in helper_names()}
    parts = {name for name in helpers if name.startswith("has_")} | NOT_QUESTIONS
    assert helpers - parts == set(QUESTIONS)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
@pytest.mark.parametrize("name", QUESTIONS)
def test_offline_every_helper_answers_run_and_writes_nothing(dialect: str, name: str) -> None:
    """``alembic upgrade --sql``: the SQL written is the original's, so every op runs."""
    buffer = io.StringIO()
    context = MigrationContext.configure(dialect_name=dialect, opts={"as_sql": True, "output_buffer": buffer})
    with Operations.context(context):
        assert _call(_helpers(), name, QUESTIONS[name]) is True
    assert buffer.getvalue() == ""


# The helpers for ops on a table's columns, indexes and constraints, called on a table that is not there.
ON_A_TABLE = {
    "column_exists": ("ghost", "c"),
    "column_missing": ("ghost", "c"),
    "index_exists": ("ghost", "ix_ghost_c"),
    "index_missing": ("ghost", "ix_ghost_c"),
    "unique_missing": ("uq_ghost_c", "ghost", ["c"]),
    "primary_key_missing": ("pk_ghost", "ghost", ["c"]),
    "foreign_key_missing": ("fk_ghost_c_users", "ghost", "users", ["c"], ["id"]),
    "check_missing": ("ck_ghost_c", "ghost", "c > 0"),
    "exclude_missing": ("ex_ghost_c", "ghost"),
    "constraint_exists": ("uq_ghost_c", "ghost", "unique"),
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
@pytest.mark.parametrize("skip_without_table", [False, True])
def test_without_its_table_an_op_runs_unless_the_function_removes_the_table(
    dialect: str, name: str, skip_without_table: bool, base_databases: Callable[[str], sa.Engine]
) -> None:
    """Run, the op fails as the original does; skipped only where a re-run finds the table dropped on purpose."""
    with base_databases(dialect).connect() as connection, _migration(connection):
        answer = _call(_helpers(), name, ON_A_TABLE[name], skip_without_table=skip_without_table)
    assert answer is (not skip_without_table)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_skip_without_table_changes_nothing_when_the_table_is_there(
    dialect: str, base_databases: Callable[[str], sa.Engine]
) -> None:
    answers = [(name, args, answer) for name, args, answer, where in ANSWERS if dialect in where and name in ON_A_TABLE]
    with base_databases(dialect).connect() as connection, _migration(connection):
        helpers = _helpers()
        got = [(name, args, _call(helpers, name, args, skip_without_table=True)) for name, args, _ in answers]
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
                exists, missing = (
                    _helpers()["_idempotify_constraint_exists"],
                    _helpers()["_idempotify_primary_key_missing"],
                )
                with op.batch_alter_table("parent") as batch_op:
                    if exists("pk_parent_old", "parent", "primary"):
                        batch_op.drop_constraint("pk_parent_old", type_="primary")
                    if exists("pk_parent_old", "parent", "primary") or missing("pk_parent_new", "parent", ["id"]):
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
            assert helpers["_idempotify_index_missing"]("accounts", "ix_shared") is True
            assert helpers["_idempotify_index_exists"]("accounts", "ix_shared") is False
            if dialect == "mariadb":
                op.create_index("ix_shared", "accounts", ["name"])
                assert helpers["_idempotify_index_missing"]("accounts", "ix_shared") is False
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
            assert helpers["_idempotify_index_missing"]("t", "ix_t_v", schema=schema) is True
            op.create_index("ix_t_v", "t", ["v"], schema=schema)
            assert helpers["_idempotify_index_missing"]("t", "ix_t_v", schema=schema) is False
            assert helpers["_idempotify_index_exists"]("t", "ix_t_v", schema=schema) is True
            assert helpers["_idempotify_index_exists"](None, "ix_t_v", schema=schema) is True
            assert helpers["_idempotify_index_exists"](None, "ix_t_v") is False  # not in the default schema
            assert helpers["_idempotify_index_missing"]("t", "ix_t_v", schema=schema, skip_without_table=True) is False


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
            with _migration(connection) as op:
                helpers = _helpers()
                assert helpers["_idempotify_index_exists"]("t", "ix_t_v") is True  # a drop_index runs
                if helpers["_idempotify_index_missing"]("t", "ix_t_v"):
                    op.create_index("ix_t_v", "t", ["v"])
                assert helpers["_idempotify_index_missing"]("t", "ix_t_v") is False
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
            assert _helpers()["_idempotify_index_missing"]("t", "ix_t_v") is True
            with pytest.raises(sa.exc.IntegrityError, match="duplicate"):
                op.create_index("ix_t_v", "t", ["v"], unique=True)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_seed_insert_runs_while_the_table_is_empty(dialect: str, scratch: Scratch) -> None:
    """A deploy that died between CREATE TABLE and the insert gets its rows on retry, and only once."""
    with scratch(dialect) as engine, engine.connect() as connection, _migration(connection) as op:
        helpers = _helpers()
        assert helpers["_idempotify_table_empty"]("seeds") is True  # missing: the insert fails as written
        seeds = op.create_table("seeds", sa.Column("id", sa.Integer, primary_key=True))
        for _ in range(2):
            if helpers["_idempotify_table_empty"]("seeds"):
                op.bulk_insert(seeds, [{"id": 1}, {"id": 2}])
        assert helpers["_idempotify_table_empty"]("seeds") is False
        assert connection.execute(sa.select(sa.func.count()).select_from(seeds)).scalar() == 2
        with pytest.raises(sa.exc.DBAPIError):
            op.bulk_insert(sa.table("ghost", sa.column("id")), [{"id": 1}])


# A batch block that recreates its table, as on SQLite; it runs on PostgreSQL and MariaDB with recreate="always".
def _batch(op: Operations, helpers: Helpers, table: str) -> None:
    if helpers["_idempotify_recover_batch"](table):
        with op.batch_alter_table(table, recreate="always") as batch_op:
            if helpers["_idempotify_column_missing"](table, "extra"):
                batch_op.add_column(sa.Column("extra", sa.Integer))
            if helpers["_idempotify_index_missing"](table, f"ix_{table[:20]}_extra"):
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
        action = f"dropped {leftover}:" if crash_at == "drop_table" else f"renamed {leftover} to {table}:"
        assert said[0].startswith(f"idempotify: {action}")


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
            f"idempotify: left {leftover} and things as they are: a batch block died before replacing the table"
            " with its copy, after moving the table's named constraints to the copy; put them right by hand"
        ]
        assert sa.inspect(engine).get_pk_constraint(leftover)["constrained_columns"] == ["id"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_guard_that_skips_says_what_it_found_and_one_that_runs_says_nothing(
    dialect: str, scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    """The deploy log (Alembic's logger, at INFO) names the object a skipped op found; a run adds nothing."""
    helpers = _helpers()
    with scratch(dialect) as engine, engine.connect() as connection, _migration(connection):
        _base(engine)
        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            answers = [
                _call(helpers, "column_missing", ("users", "name")),
                _call(helpers, "table_missing", ("users",)),
                _call(helpers, "index_exists", ("users", "ix_users_nope")),
                _call(helpers, "column_missing", ("users", "nickname")),
                _call(helpers, "table_exists", ("users",)),
            ]
    assert answers == [False, False, False, True, True]
    assert _idempotify_said(caplog) == [
        "idempotify: column users.name exists",
        "idempotify: table users exists",
        "idempotify: index ix_users_nope is absent",
    ]
    assert all(record.levelno == logging.INFO for record in caplog.records if "idempotify" in record.getMessage())
