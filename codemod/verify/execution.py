"""Running one revision's ``upgrade()`` or ``downgrade()`` as Alembic does, with no ``env.py`` (the bare harness).

Each run executes the revision's source afresh (a Column object can belong to
one table only), through Alembic's ``MigrationContext`` and ``Operations``.
A run can be made to die after its k-th op with every op committed at once,
as on MySQL, to reproduce a deploy that stopped half-way.
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import sys
import traceback
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations, ops
from alembic.runtime.environment import EnvironmentContext

from codemod.guards import is_helper_name
from codemod.interrupts import carries_interrupt
from codemod.verify.database import IN_ONE_TRANSACTION, LeftTransaction

# The tables a run's ops inserted rows into, each with the lines of the revision file that called those ops.
Inserted = dict[str, set[int]]


class Crash(Exception):
    """Raised by ``OpCounter`` after the k-th op, as a deploy dies half-way."""


class OpCounter:
    """Counts the ops an ``Operations`` runs and dies after ``crash_after``; a batch block counts as one.

    It wraps the instance's ``invoke`` and ``batch_alter_table``, which the
    ``alembic.op`` proxy calls, so the migration runs exactly as under Alembic.
    """

    def __init__(
        self, operations: Operations, crash_after: int | None, inserted: Inserted | None = None, path: str = ""
    ) -> None:
        self.crash_after = crash_after
        self.done = 0
        self.inserted: Inserted = inserted if inserted is not None else {}  # what the ops insert rows into
        self._batch_depth = 0
        invoke, batch_alter_table = operations.invoke, operations.batch_alter_table

        def counted_invoke(operation: Any) -> Any:
            if tables := inserted_into(operation):
                line = line_in(path)
                for table in tables:
                    self.inserted.setdefault(table, set()).update({line} if line is not None else ())
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


_INSERT_INTO = re.compile(r"\binsert\s+(?:ignore\s+)?into\s+[`\"\[]?(\w+)", re.IGNORECASE)


def line_in(path: str) -> int | None:
    """The line of the innermost frame of the revision file ``path`` on the current stack that is not in a
    generated guard helper (those are defined in the revision file too): the op's line, or its guard's."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == path and not is_helper_name(frame.f_code.co_name):
            return frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None


def inserted_into(operation: object) -> set[str]:
    """The tables an op inserts rows into: ``bulk_insert``, and ``execute`` of an INSERT (text or construct)."""
    if isinstance(operation, ops.BulkInsertOp):
        return {operation.table.name}
    if isinstance(operation, ops.ExecuteSQLOp):
        statement = operation.sqltext
        if isinstance(statement, sa.Insert):
            return {statement.table.name}
        return set(_INSERT_INTO.findall(str(statement)))
    return set()


def load_migration(source: str, path: Path | str = "migration") -> types.ModuleType:
    """A fresh module object for ``source``, with ``path`` in its tracebacks.

    The module is executed afresh each time (new Column objects), but compiled once: verify runs the same
    source many times (re-run, crash points, downgrades), and compiling a guarded revision costs as much as
    running it on SQLite."""
    module = types.ModuleType(Path(path).stem)
    module.__file__ = str(path)
    exec(_compiled(source, str(path)), module.__dict__)
    return module


@lru_cache(maxsize=256)
def _compiled(source: str, filename: str) -> types.CodeType:
    # As Alembic imports it: none of this module's __future__ flags (postponed annotations would leave an ORM
    # model's Mapped[int] a string SQLAlchemy cannot resolve in a module not in sys.modules; arize-phoenix's).
    return compile(source, filename, "exec", dont_inherit=True)


def context_options(naming_convention: dict[str, str] | None) -> dict[str, Any]:
    """What ``env.py`` usually gives the context: a ``target_metadata`` carrying the naming convention."""
    if naming_convention is None:
        return {}
    return {"target_metadata": sa.MetaData(naming_convention=naming_convention)}


@contextmanager
def environment(x_arguments: Sequence[str] = (), *, as_sql: bool = False) -> Iterator[None]:
    """``from alembic import context`` as ``env.py`` sees it: ``get_x_argument()``, ``is_offline_mode()``."""
    config = Config()
    config.cmd_opts = argparse.Namespace(x=list(x_arguments))
    with EnvironmentContext(config, None, as_sql=as_sql):  # type: ignore[arg-type]  # no ScriptDirectory needed
        yield


def run_migration(
    engine: sa.Engine,
    source: str,
    function: str = "upgrade",
    *,
    path: Path | str = "migration",
    naming_convention: dict[str, str] | None = None,
    crash_after: int | None = None,
    x_arguments: Sequence[str] = (),
) -> int:
    """Run ``upgrade()`` or ``downgrade()`` of ``source``; return the number of ops it ran.

    Normally in one transaction. With ``crash_after=k`` every op commits at once
    (as on MySQL) and the run dies with ``Crash`` after the k-th op.
    """
    module = load_migration(source, path)
    options = {"isolation_level": "AUTOCOMMIT"} if crash_after is not None else {}
    with engine.connect().execution_options(**options) as connection:
        done = run_on_connection(connection, module, function, naming_convention, crash_after, x_arguments)
        connection.commit()
    return done


def run_on_connection(
    connection: sa.Connection,
    module: types.ModuleType,
    function: str,
    naming_convention: dict[str, str] | None = None,
    crash_after: int | None = None,
    x_arguments: Sequence[str] = (),
    inserted: Inserted | None = None,
) -> int:
    """``function`` of ``module`` on ``connection`` with no ``env.py``: the bare harness."""
    with environment(x_arguments):
        context = MigrationContext.configure(connection, opts=context_options(naming_convention))
        with context.begin_transaction():  # as env.py does; run_migrations' own per-revision block follows
            return run_in_context(context, module, function, crash_after, inserted)


def run_in_context(
    context: MigrationContext,
    module: types.ModuleType,
    function: str,
    crash_after: int | None,
    inserted: Inserted | None = None,
) -> int:
    """One revision's ``function`` in a configured context, inside the per-revision transaction
    ``MigrationContext.run_migrations`` opens (so ``autocommit_block()`` finds the transaction it commits).

    On a held connection (one transaction for many runs) ``autocommit_block()`` raises ``LeftTransaction``
    before it commits anything: such a revision is run on copies instead."""
    if context.connection is not None and context.connection.info.get(IN_ONE_TRANSACTION):
        context.autocommit_block = _leaves_the_transaction  # type: ignore[method-assign,assignment]
    with context.begin_transaction(_per_migration=True), Operations.context(context) as operations:
        counter = OpCounter(operations, crash_after, inserted, getattr(module, "__file__", ""))
        getattr(module, function)()
    return counter.done


def _leaves_the_transaction() -> Iterator[None]:
    raise LeftTransaction("the revision enters autocommit_block()")


def offline_sql(
    source: str,
    dialect: str,
    function: str = "upgrade",
    *,
    path: Path | str = "migration",
    naming_convention: dict[str, str] | None = None,
    x_arguments: Sequence[str] = (),
) -> str:
    """The SQL Alembic writes for ``source`` in offline mode (``alembic upgrade --sql``)."""
    buffer = io.StringIO()
    module = load_migration(source, path)
    with quiet_info():  # "Context impl ...", "Generating static SQL" for each of the many runs
        context = MigrationContext.configure(
            dialect_name="mysql" if dialect == "mariadb" else dialect,
            opts={"as_sql": True, "output_buffer": buffer, **context_options(naming_convention)},
        )
        with environment(x_arguments, as_sql=True), Operations.context(context):
            getattr(module, function)()
    return buffer.getvalue()


@contextmanager
def quiet_info() -> Iterator[None]:
    """No INFO lines (env.py's logging config, "Context impl ...") for each of the many runs; warnings stay."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def offline_sql_or_error(source: str, dialect: str, function: str = "upgrade", **options: Any) -> str:
    """``offline_sql``, or the error it raises as text: the same error on both sides is the same output.

    (Batch mode on SQLite, for one, cannot run offline.)
    """
    try:
        return offline_sql(source, dialect, function, **options)
    except Exception as error:
        if carries_interrupt(error):
            raise
        return f"{type(error).__name__}: {error}"


def where(error: BaseException, path: Path | str) -> str:
    """``path:line`` of the innermost frame of ``error`` in the revision file, else ``path``."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == str(path)]
    shown, _, label = str(path).partition(" (")
    with suppress(ValueError):
        shown = str(Path(shown).relative_to(Path.cwd()))
    suffix = f" ({label}" if label else ""
    return f"{shown}:{lines[-1]}{suffix}" if lines else f"{shown}{suffix}"
