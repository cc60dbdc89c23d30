"""Scratch databases on SQLite, PostgreSQL and MariaDB, and running migrations on them.

Each scratch database is new and uniquely named; it is dropped afterwards.
Migrations run through Alembic's ``MigrationContext`` and ``Operations``, as
Alembic itself runs them, with no ``env.py``.
"""

from __future__ import annotations

import io
import os
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

DIALECTS = ("sqlite", "postgresql", "mariadb")
SERVERS = {
    "postgresql": os.environ.get("IDEMPOTIFY_TEST_POSTGRESQL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("IDEMPOTIFY_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}

# The schema every golden fixture starts from: the tables its ops alter.
BASE = sa.MetaData()
sa.Table("users", BASE, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
sa.Table(
    "player_wellness_state",
    BASE,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("player_id", sa.Integer, nullable=False),
)
sa.Table(
    "accounts",
    BASE,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("legacy_code", sa.String(20)),
    sa.Index("ix_accounts_legacy_code", "legacy_code"),
)
sa.Table("audit_log", BASE, sa.Column("id", sa.Integer, primary_key=True), sa.Column("message", sa.String(200)))
sa.Table(
    "orders",
    BASE,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", name="fk_orders_user_id_users")),
    sa.Column("code", sa.String(20)),
    sa.Column("amount", sa.Integer),
    sa.UniqueConstraint("code", name="uq_orders_code"),
    sa.CheckConstraint("amount > 0", name="ck_orders_amount_positive"),
)
sa.Table(
    "links",
    BASE,
    sa.Column("source_id", sa.Integer, nullable=False),
    sa.Column("target_id", sa.Integer, nullable=False),
)
sa.Sequence("legacy_seq", metadata=BASE)
sa.Enum("new", "old", name="legacy_status", metadata=BASE)
sa.Enum("a", name="other_status", metadata=BASE)


def server_unreachable(dialect: str) -> str | None:
    """Why the server for ``dialect`` cannot be used, or None when it answers."""
    if dialect == "sqlite":
        return None
    engine = sa.create_engine(SERVERS[dialect])
    try:
        with engine.connect():
            return None
    except sa.exc.OperationalError as error:
        return f"{dialect} server at {engine.url.render_as_string(hide_password=True)} is not reachable: {error.orig}"
    finally:
        engine.dispose()


@contextmanager
def scratch_database(dialect: str, directory: Path) -> Iterator[sa.Engine]:
    """A new, empty database on ``dialect``, dropped when the block ends."""
    if dialect == "sqlite":
        engine = sa.create_engine(f"sqlite:///{directory / f'scratch-{uuid.uuid4().hex}.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    name = f"idempotify_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(SERVERS[dialect], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    engine = sa.create_engine(admin.url.set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            force = " WITH (FORCE)" if dialect == "postgresql" else ""
            connection.execute(sa.text(f"DROP DATABASE {name}{force}"))
        admin.dispose()


def load_migration(source: str, name: str = "migration") -> types.ModuleType:
    """A fresh module object for ``source``: Column objects are never shared between runs."""
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


class Crash(Exception):
    """Raised by ``OpCounter`` after the k-th op, as a deploy dies half-way."""


class OpCounter:
    """Counts the ops an ``Operations`` runs and dies after ``crash_after``; a batch block counts as one.

    It wraps the instance's ``invoke`` and ``batch_alter_table``, which the
    ``alembic.op`` proxy calls, so the migration runs exactly as under Alembic.
    """

    def __init__(self, operations: Operations, crash_after: int | None) -> None:
        self.crash_after = crash_after
        self.done = 0
        self._batch_depth = 0
        invoke, batch_alter_table = operations.invoke, operations.batch_alter_table

        def counted_invoke(operation: Any) -> Any:
            result = invoke(operation)
            if self._batch_depth == 0:
                self._count()
            return result

        @contextmanager
        def counted_batch(*args: Any, **kw: Any) -> Iterator[Any]:
            self._batch_depth += 1
            try:
                with batch_alter_table(*args, **kw) as batch_op:
                    yield batch_op
            finally:
                self._batch_depth -= 1
            self._count()

        operations.invoke = counted_invoke  # type: ignore[method-assign]
        operations.batch_alter_table = counted_batch  # type: ignore[method-assign]

    def _count(self) -> None:
        self.done += 1
        if self.crash_after is not None and self.done >= self.crash_after:
            raise Crash(f"stopped after op {self.done}")


def _context_options(naming_convention: dict[str, str] | None) -> dict[str, Any]:
    if naming_convention is None:
        return {}
    return {"target_metadata": sa.MetaData(naming_convention=naming_convention)}


def run_migration(
    engine: sa.Engine,
    source: str,
    function: str = "upgrade",
    *,
    naming_convention: dict[str, str] | None = None,
    crash_after: int | None = None,
) -> int:
    """Run ``upgrade()`` or ``downgrade()`` of ``source`` as Alembic does; return the number of ops run.

    Normally in one transaction. With ``crash_after=k`` every op commits at once
    (as on MySQL) and the run dies with ``Crash`` after the k-th op.
    """
    module = load_migration(source)
    options = {"isolation_level": "AUTOCOMMIT"} if crash_after is not None else {}
    with engine.connect().execution_options(**options) as connection:
        context = MigrationContext.configure(connection, opts=_context_options(naming_convention))
        with Operations.context(context) as operations:
            counter = OpCounter(operations, crash_after)
            getattr(module, function)()
        connection.commit()
    return counter.done


def offline_sql(
    source: str, dialect: str, function: str = "upgrade", *, naming_convention: dict[str, str] | None = None
) -> str:
    """The SQL Alembic writes for ``source`` in offline mode (``alembic upgrade --sql``)."""
    buffer = io.StringIO()
    module = load_migration(source)
    context = MigrationContext.configure(
        dialect_name="mysql" if dialect == "mariadb" else dialect,
        opts={"as_sql": True, "output_buffer": buffer, **_context_options(naming_convention)},
    )
    with Operations.context(context):
        getattr(module, function)()
    return buffer.getvalue()


def snapshot(engine: sa.Engine) -> dict[str, Any]:
    """The schema as the inspector sees it: tables, columns, keys and indexes, in a comparable form."""
    inspector = sa.inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        tables[table] = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"]) for column in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (index["name"] or "", tuple(str(c) for c in index["column_names"]), bool(index["unique"]))
                for index in inspector.get_indexes(table)
            ),
            "unique": sorted(
                tuple(str(c) for c in unique["column_names"]) for unique in inspector.get_unique_constraints(table)
            ),
            "foreign_keys": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                for fk in inspector.get_foreign_keys(table)
            ),
            "checks": sorted(check["name"] or "" for check in inspector.get_check_constraints(table)),
        }
    if inspector.bind.dialect.supports_sequences:
        tables["sequences"] = sorted(inspector.get_sequence_names())
    if inspector.bind.dialect.name == "postgresql":
        tables["enums"] = sorted((enum["name"], tuple(enum["labels"])) for enum in inspector.get_enums())
    return tables
