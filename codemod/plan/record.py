"""Running one revision on a scratch database and recording what each of its ops did.

An op ran when Alembic's ``AbstractOperations.invoke`` was called for it: while a
revision runs, ``invoke`` is wrapped and takes the line of the revision file
it was called from (batch ops included: ``batch_op.X`` invokes too). A guard
that skipped logs on the ``alembic.runtime.migration`` logger; every message
on that logger sent from the revision file is kept, with its arguments (the
names of the objects found), whatever its words, except a drift warning.
``logging.disable`` (verify quiets env.py's INFO lines) does not hide them: the
logger's own methods are wrapped, before any level check.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.operations.base import AbstractOperations

from codemod.interrupts import carries_interrupt
from codemod.verify.database import Scratch
from codemod.verify.environment import EnvPyRefused, ProjectEnvironment
from codemod.verify.execution import inserted_into, line_in, load_migration, run_on_connection

MIGRATION_LOGGER = "alembic.runtime.migration"


@dataclass(frozen=True)
class Logged:
    """A message a guard logged while the revision ran: the revision file's line it came from, and its names."""

    line: int
    message: str
    names: tuple[str, ...]


@dataclass
class Recording:
    """What one run of a revision did: the lines of the ops that ran, what the guards logged, how it ended."""

    invoked: dict[int, str] = field(default_factory=dict)  # line -> the op's class name
    inserted: dict[int, set[str]] = field(default_factory=dict)  # line -> tables its rows go into
    logged: list[Logged] = field(default_factory=list)
    error: str | None = None  # "DuplicateColumn: column ... already exists"
    error_line: int | None = None


@contextmanager
def recording(path: str) -> Iterator[Recording]:
    """While the block runs, record the ops invoked from ``path`` and the messages logged from it."""
    found = Recording()
    invoke = AbstractOperations.invoke
    log = logging.getLogger(MIGRATION_LOGGER)

    def recorded_invoke(operations: AbstractOperations, operation: Any) -> Any:
        line = line_in(path)
        if line is not None:
            found.invoked.setdefault(line, type(operation).__name__)
            found.inserted.setdefault(line, set()).update(inserted_into(operation))
        return invoke(operations, operation)

    def listening(method: Any) -> Any:
        def logged(message: object, *args: object, **kwargs: Any) -> None:
            line = line_in(path)
            # A guard's drift warning (codemod/runtime.py) is not what an op did; plan compares objects itself.
            if line is not None and "idempotify_drift" not in kwargs.get("extra", {}):
                text = str(message) % args if args else str(message)
                # A guard's skip names its table and object in ``extra`` (codemod/runtime.py).
                names = kwargs.get("extra", {}).get("idempotify", args)
                found.logged.append(Logged(line, text, tuple(str(name) for name in names if name is not None)))
            method(message, *args, **kwargs)

        return logged

    AbstractOperations.invoke = recorded_invoke  # type: ignore[method-assign,assignment]
    log.info, log.warning = listening(log.info), listening(log.warning)  # type: ignore[method-assign]
    try:
        yield found
    finally:
        AbstractOperations.invoke = invoke  # type: ignore[method-assign]
        del log.info, log.warning


def run_recorded(
    scratch: Scratch,
    source: str,
    path: Path | str,
    project: ProjectEnvironment | None,
    naming_convention: dict[str, str] | None = None,
) -> Recording:
    """Run ``upgrade()`` of ``source`` on ``scratch`` (through env.py when there is a project); a failure of the
    revision is recorded, not raised."""
    label = str(path)

    def work(connection: sa.Connection) -> None:
        module = load_migration(source, label)
        if project is not None:
            project.run(connection, module, "upgrade")
        else:
            run_on_connection(connection, module, "upgrade", naming_convention)

    with recording(label) as found:
        try:
            scratch.database.run(work)
        except EnvPyRefused:
            raise
        except Exception as error:
            if carries_interrupt(error):
                raise
            found.error = _error_text(error)
            lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == label]
            found.error_line = lines[-1] if lines else None
    return found


def _error_text(error: BaseException) -> str:
    """The database's error, named by the driver's own class (``DuplicateColumn``): the exception SQLAlchemy
    wraps, or under an async adapter the driver's exception it wraps in turn."""
    cause: BaseException = error.orig if isinstance(error, sa.exc.DBAPIError) and error.orig is not None else error
    while isinstance(error, sa.exc.DBAPIError) and cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"
