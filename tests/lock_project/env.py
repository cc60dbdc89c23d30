"""Alembic's generic and async templates in one env.py, holding the migration lock (README, "Concurrent deploys").

An async URL runs through an async engine and ``run_sync``, as the async
template does; ``-x transaction_per_migration=true`` sets that option.
"""

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterator
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, make_url, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
PER_MIGRATION = context.get_x_argument(as_dictionary=True).get("transaction_per_migration") == "true"

MIGRATION_LOCK = 4_215_002  # any number no other code locks on: PostgreSQL's lock key, part of MariaDB's lock name
LOCKS = {  # (try to take, release) a lock of the session: autocommit_block() commits, which would end a transaction's
    "postgresql": (f"SELECT pg_try_advisory_lock({MIGRATION_LOCK})", f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"),
    "mysql": (
        f"SELECT GET_LOCK(CONCAT(DATABASE(), ' {MIGRATION_LOCK}'), 0)",
        f"SELECT RELEASE_LOCK(CONCAT(DATABASE(), ' {MIGRATION_LOCK}'))",
    ),
}
LOCKS["mariadb"] = LOCKS["mysql"]


@contextlib.contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """One migrator at a time: other `alembic upgrade` processes wait here, then find nothing left to run."""
    take, release = LOCKS.get(connection.dialect.name, ("", ""))
    if not take or connection.in_transaction():  # SQLite; or a caller's transaction, for the caller to serialise
        yield
        return
    for attempt in itertools.count():
        got = connection.exec_driver_sql(take).scalar()
        if got is None:
            raise RuntimeError(f"the migration lock failed: {take} returned NULL")
        if got:
            break
        connection.rollback()  # wait outside a transaction: CREATE INDEX CONCURRENTLY waits for transactions
        if attempt == 0:
            logging.getLogger("alembic.env").info("another process holds the migration lock; waiting for it")
        time.sleep(1)
    connection.commit()  # so Alembic begins its own transaction, and reads alembic_version after the lock
    try:
        yield
    finally:
        connection.exec_driver_sql(release)


def do_run_migrations(connection: Connection) -> None:
    with migration_lock(connection):
        context.configure(connection=connection, transaction_per_migration=PER_MIGRATION)
        with context.begin_transaction():
            context.run_migrations()


async def run_async_migrations(section: dict[str, str]) -> None:
    connectable = async_engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


def run_migrations_online() -> None:
    section = config.get_section(config.config_ini_section, {})
    if make_url(section["sqlalchemy.url"]).get_dialect().is_async:
        asyncio.run(run_async_migrations(section))
        return
    connectable = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        do_run_migrations(connection)


run_migrations_online()
