"""Scratch databases: made fresh, copied, and always dropped.

SQLite scratch databases are files in a temporary directory; on a server (the
``--url`` given) each is a new, uniquely named database, created from an empty
template and dropped when the run ends, whatever way it ends. Nothing else on
the server is touched.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

PREFIX = "idempotify_scratch_"


class ScratchError(Exception):
    """The scratch database cannot be made or used (bad URL, server down, not empty)."""


@dataclass
class Scratch:
    """One scratch database."""

    name: str
    engine: sa.Engine


class ScratchServer:
    """Makes, copies and drops scratch databases on SQLite or on the server ``url`` names."""

    def __init__(self, url: str | None, directory: Path) -> None:
        self.directory = directory
        self._made: list[Scratch] = []
        self._admin: sa.Engine | None = None
        if url is None or url.startswith("sqlite"):
            self.dialect = "sqlite"
            return
        try:
            self._admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            with self._admin.connect():
                pass
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
            raise ScratchError(f"bad database URL {url!r}: {error}") from error
        except ImportError as error:
            raise ScratchError(
                f"no database driver for {_safe(url)}: {error}; install it, or name one that is installed "
                "(postgresql+psycopg2://..., mysql+pymysql://...)"
            ) from error
        except sa.exc.DBAPIError as error:
            raise ScratchError(f"cannot connect to {_safe(url)}: {error.orig}") from error
        name = self._admin.dialect.name
        self.dialect = "mariadb" if name in ("mysql", "mariadb") else name
        if self.dialect not in ("postgresql", "mariadb"):
            raise ScratchError(f"scratch databases on {name} are not supported (use SQLite, PostgreSQL or MariaDB)")

    @property
    def can_copy(self) -> bool:
        """Whether ``copy`` is cheap here (SQLite file copy, PostgreSQL template); else replay."""
        return self.dialect in ("sqlite", "postgresql")

    def create(self, template: Scratch | None = None) -> Scratch:
        """A new database: empty, or a copy of ``template`` (SQLite and PostgreSQL only)."""
        name = f"{PREFIX}{uuid.uuid4().hex[:12]}"
        if self.dialect == "sqlite":
            path = self.directory / f"{name}.db"
            if template is not None:
                template.engine.dispose()
                shutil.copyfile(self.directory / f"{template.name}.db", path)
            scratch = Scratch(name, sa.create_engine(f"sqlite:///{path}"))
        else:
            assert self._admin is not None
            if template is not None:
                template.engine.dispose()
                clause = f" TEMPLATE {template.name}"
            else:
                clause = " TEMPLATE template0" if self.dialect == "postgresql" else ""
            scratch = Scratch(name, sa.create_engine(self._admin.url.set(database=name)))
            self._made.append(scratch)  # before it exists: an interrupt during CREATE still drops it
            with self._admin.connect() as connection:
                connection.execute(sa.text(f"CREATE DATABASE {name}{clause}"))
        if scratch not in self._made:
            self._made.append(scratch)
        if template is None and sa.inspect(scratch.engine).get_table_names():
            raise ScratchError(f"the new scratch database {name} is not empty; refusing to use it")
        return scratch

    def drop(self, scratch: Scratch) -> None:
        scratch.engine.dispose()
        if self.dialect == "sqlite":
            (self.directory / f"{scratch.name}.db").unlink(missing_ok=True)
        else:
            assert self._admin is not None
            force = " WITH (FORCE)" if self.dialect == "postgresql" else ""
            with self._admin.connect() as connection:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {scratch.name}{force}"))
        self._made.remove(scratch)

    def close(self) -> None:
        """Drop every scratch database still here."""
        for scratch in list(self._made):
            self.drop(scratch)
        if self._admin is not None:
            self._admin.dispose()


@contextmanager
def scratch_server(url: str | None) -> Iterator[ScratchServer]:
    """A ``ScratchServer`` whose databases are all dropped on the way out, Ctrl-C included."""
    with tempfile.TemporaryDirectory(prefix="idempotify-verify-") as directory:
        server = ScratchServer(url, Path(directory))
        try:
            yield server
        finally:
            server.close()


def _safe(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url
