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


def run_migration(engine: sa.Engine, source: str, function: str = "upgrade") -> None:
    """Run ``upgrade()`` or ``downgrade()`` of ``source`` in one transaction, as Alembic does."""
    module = load_migration(source)
    with engine.begin() as connection:
        context = MigrationContext.configure(connection)
        with Operations.context(context):
            getattr(module, function)()


def offline_sql(source: str, dialect: str, function: str = "upgrade") -> str:
    """The SQL Alembic writes for ``source`` in offline mode (``alembic upgrade --sql``)."""
    buffer = io.StringIO()
    module = load_migration(source)
    context = MigrationContext.configure(
        dialect_name="mysql" if dialect == "mariadb" else dialect,
        opts={"as_sql": True, "output_buffer": buffer},
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
        }
    return tables
