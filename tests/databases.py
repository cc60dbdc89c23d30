"""The databases the tests run migrations on, and the base schema golden fixtures start from.

Scratch databases and running migrations are idempotify's own (``codemod.verify``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from codemod.verify.database import scratch_server

DIALECTS = ("sqlite", "postgresql", "mariadb")
SERVERS = {
    "postgresql": os.environ.get("IDEMPOTIFY_TEST_POSTGRESQL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("IDEMPOTIFY_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


@dataclass(frozen=True)
class Driver:
    """A DB-API driver the guards must work under (``tests/test_drivers.py``)."""

    name: str  # as its users call it
    dialect: str  # one of DIALECTS
    drivername: str  # SQLAlchemy's name for it, after the ``+`` in a URL
    modules: tuple[str, ...]  # what must import for it to work
    is_async: bool = False  # used through create_async_engine

    def url(self, url: sa.URL) -> sa.URL:
        """``url`` (a database on this driver's dialect), reached through this driver."""
        return url.set(drivername=f"{url.get_backend_name()}+{self.drivername}")


DRIVERS = (
    Driver("psycopg2", "postgresql", "psycopg2", ("psycopg2",)),
    Driver("psycopg", "postgresql", "psycopg", ("psycopg",)),
    Driver("asyncpg", "postgresql", "asyncpg", ("asyncpg", "greenlet"), is_async=True),
    Driver("pymysql", "mariadb", "pymysql", ("pymysql",)),
    Driver("mysqlclient", "mariadb", "mysqldb", ("MySQLdb",)),
    Driver("aiomysql", "mariadb", "aiomysql", ("aiomysql", "greenlet"), is_async=True),
    Driver("sqlite3", "sqlite", "pysqlite", ("sqlite3",)),
    Driver("aiosqlite", "sqlite", "aiosqlite", ("aiosqlite", "greenlet"), is_async=True),
)

# psycopg 3 under asyncio (create_async_engine picks its async connection): it binds parameters as the sync one
# does, so it runs the whole async chain but not the matrix of every guard.
PSYCOPG_ASYNC = Driver("psycopg-async", "postgresql", "psycopg", ("psycopg", "greenlet"), is_async=True)


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
def scratch_database(dialect: str) -> Iterator[sa.Engine]:
    """A new, empty database on ``dialect``, dropped when the block ends."""
    with scratch_server(SERVERS.get(dialect)) as server:
        yield server.create().engine
