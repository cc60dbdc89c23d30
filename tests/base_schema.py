"""The schema every golden fixture starts from, and emptying a scratch database between fixtures.

Plain SQLAlchemy that runs on 1.4 as on 2.0: ``tests/sqlalchemy14.py`` imports it
under SQLAlchemy 1.4, where nothing of idempotify is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

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


def empty(engine: Any) -> None:
    """Drop everything in the scratch database ``engine`` reaches: cheaper than a new database."""
    engine.dispose()
    if engine.dialect.name == "sqlite":
        Path(str(engine.url.database)).unlink(missing_ok=True)
        return
    name = engine.url.database
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if engine.dialect.name == "postgresql":
            # Every schema a fixture made (CREATE SCHEMA), with the types and extensions in it.
            schemas = connection.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE left(nspname, 3) <> 'pg_' AND nspname <> 'information_schema'"
            )
            statements = [f'DROP SCHEMA "{schema}" CASCADE' for (schema,) in schemas] + ["CREATE SCHEMA public"]
        else:
            statements = [f"DROP DATABASE {name}", f"CREATE DATABASE {name}"]
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()  # on MariaDB the pooled connections were using the database dropped
