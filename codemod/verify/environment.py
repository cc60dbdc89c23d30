"""Running a revision through the project's own ``env.py``, as ``alembic upgrade`` runs it.

verify hands its scratch connection to ``env.py`` as
``config.attributes["connection"]`` (Alembic's cookbook recipe for sharing a
connection), so the naming convention and ``target_metadata``,
``transaction_per_migration``, custom ``configure()`` options, ``-x`` arguments
and async engines are the project's. The revision itself is not taken from the
``ScriptDirectory``: ``env.py``'s ``run_migrations()`` calls back here and the
source verify chose (the file on disk, its baseline, stopped after k ops) runs
in the context ``env.py`` configured, inside the per-revision transaction Alembic
opens. The version table is left alone (``dont_mutate``).

An ``env.py`` that configures a connection to another database would run the
chain on the database its own URL names: verify refuses it before any revision
runs, with the two lines that make it accept a connection. One that builds its
own engine from ``sqlalchemy.url`` (Alembic's generic template) reaches the
scratch database, since verify sets that option: it runs, but its connection
is not verify's, so a crash stopped after k ops does not commit each op.
"""

from __future__ import annotations

import argparse
import os
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from codemod.config import alembic_config
from codemod.interrupts import carries_interrupt
from codemod.verify.database import IN_ONE_TRANSACTION, LeftTransaction
from codemod.verify.execution import Inserted, quiet_info, run_in_context

# The two lines, first in env.py's run_migrations_online(); do_run_migrations(connection) is the body that
# calls context.configure(connection=connection, ...) and context.run_migrations() (Alembic's async template
# has it; in the generic one, move the body of `with connectable.connect() as connection:` into it).
ACCEPT_A_CONNECTION = """\
    if (connection := config.attributes.get("connection")) is not None:
        return do_run_migrations(connection)"""


class EnvPyRefused(Exception):
    """The project's env.py does not use the connection handed over; nothing was run."""


class ProjectEnvironment:
    """The Alembic project at ``config_file`` (alembic.ini, or a pyproject.toml with ``[tool.alembic]``)."""

    def __init__(self, config_file: Path, x_arguments: Sequence[str] = ()) -> None:
        self.config_file = config_file.resolve()
        self.folder = self.config_file.parent
        self.config = alembic_config(self.config_file)
        self.config.cmd_opts = argparse.Namespace(x=list(x_arguments))
        with self._inside():
            self.script = ScriptDirectory.from_config(self.config)
        self.env_py = Path(self.script.dir).resolve() / "env.py"
        self.naming_convention: dict[str, str] | None = None  # read off target_metadata, for offline runs
        self._env_py_code: types.CodeType | None = None

    @contextmanager
    def _inside(self) -> Iterator[None]:
        """In the project's folder, as ``alembic`` runs from beside its configuration."""
        previous = Path.cwd()
        os.chdir(self.folder)
        try:
            yield
        finally:
            os.chdir(previous)

    def run(
        self,
        connection: sa.Connection,
        module: types.ModuleType,
        function: str,
        crash_after: int | None = None,
        inserted: Inserted | None = None,
    ) -> int:
        """``function`` of ``module`` on ``connection``, through env.py; the number of ops it ran."""
        done: list[int] = []
        configured: list[bool] = []

        def work(heads: Any, context: MigrationContext) -> list[Any]:
            done.append(run_in_context(context, module, function, crash_after, inserted))
            return []

        def configure(*args: Any, **options: Any) -> None:
            given = args[0] if args else options.pop("connection", None)
            if given is not connection and not _same_database(given, connection):
                raise EnvPyRefused(self.refusal("it configured a connection to another database"))
            if given is not connection and connection.info.get(IN_ONE_TRANSACTION):
                raise LeftTransaction("env.py runs the revision on a connection of its own", every_revision=True)
            configured.append(True)
            self._remember(options.get("target_metadata"))
            original_configure(given, *args[1:], **{**options, "dont_mutate": True})
            # work() ignores the heads run_migrations() reads first: verify chooses the revision, and the
            # version table is left alone. Not read, they cost a query of the catalog on every run.
            environment.get_context().get_current_heads = _no_heads  # type: ignore[method-assign]

        self.config.attributes["connection"] = connection
        url = connection.engine.url.render_as_string(hide_password=False)
        self.config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # its own URL is never used
        try:
            environment = EnvironmentContext(self.config, self.script, fn=work, as_sql=False)
            original_configure = environment.configure
            environment.configure = configure  # type: ignore[method-assign]  # the proxy env.py calls takes it
            with self._inside(), quiet_info(), environment:
                self._run_env_py()
        except (EnvPyRefused, LeftTransaction):
            raise
        except Exception as error:
            if configured or carries_interrupt(error):
                raise
            why = f"it failed before it configured one: {type(error).__name__}: {error}"
            raise EnvPyRefused(self.refusal(why)) from error
        finally:
            self.config.attributes.pop("connection", None)
        if not done:
            raise EnvPyRefused(self.refusal("it did not call context.run_migrations() with it"))
        return done[0]

    def _run_env_py(self) -> None:
        """``ScriptDirectory.run_env()``: env.py run as a new module, compiled once for the chain's many runs
        rather than on every one (as Alembic's loader does where no bytecode is written)."""
        if not self.env_py.is_file():  # only a compiled env.py: Alembic finds it
            self.script.run_env()
            return
        if self._env_py_code is None:
            self._env_py_code = compile(self.env_py.read_bytes(), str(self.env_py), "exec", dont_inherit=True)
        module = types.ModuleType("env_py")
        module.__file__ = str(self.env_py)
        exec(self._env_py_code, module.__dict__)

    def refusal(self, why: str) -> str:
        return (
            f"{self.env_py} does not run on the connection verify hands over ({why}); verify never runs "
            "against the database env.py names itself. Make run_migrations_online() start with these two lines,\n"
            "do_run_migrations(connection) being what calls context.configure(connection=connection, ...) and\n"
            f"context.run_migrations():\n{ACCEPT_A_CONNECTION}\n"
            "(or verify without the project's env.py: --no-env-py)"
        )

    def _remember(self, metadata: object) -> None:
        if self.naming_convention is None and isinstance(metadata, sa.MetaData):
            self.naming_convention = {
                str(key): value for key, value in metadata.naming_convention.items() if isinstance(value, str)
            }


def _no_heads() -> tuple[str, ...]:
    return ()


def _same_database(given: object, handed: sa.Connection) -> bool:
    """Whether env.py's own connection goes to the scratch database: it built its engine from
    ``sqlalchemy.url``, which verify sets to the scratch database (Alembic's generic template does)."""
    if not isinstance(given, sa.Connection):
        return False
    ours, theirs = handed.engine.url, given.engine.url
    place = ("host", "port", "database")
    return ours.get_backend_name() == theirs.get_backend_name() and all(
        getattr(ours, part) == getattr(theirs, part) for part in place
    )
