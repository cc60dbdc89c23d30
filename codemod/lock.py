"""``idempotify lock-env``: one migrator at a time, by a lock env.py takes before it runs migrations.

Alembic has no lock of its own: several processes running ``alembic upgrade``
at once each read ``alembic_version`` and each run the pending revisions. The
recipe (``RECIPE``, shown in the README) makes env.py take a session-level
advisory lock on the connection it migrates on, before ``context.configure``;
Alembic reads ``alembic_version`` after that, so a process that waited finds
the head and runs nothing. ``lock_env`` is the LibCST codemod that puts it
into an existing env.py: the recipe before its first function, and
``with migration_lock(connection):`` around each ``context.configure(connection=...)``
and the ``with context.begin_transaction():`` after it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import libcst as cst
import libcst.matchers as m
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor

# What the recipe imports: (module, name) as AddImportsVisitor takes them; None imports the module.
IMPORTS: tuple[tuple[str, str | None], ...] = (
    ("contextlib", None),
    ("itertools", None),
    ("logging", None),
    ("time", None),
    ("collections.abc", "Iterator"),
    ("sqlalchemy.engine", "Connection"),
)

RECIPE = '''\
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
'''

# Where a lock is taken already: the recipe's `with migration_lock(...)`, or a lock written by hand.
_LOCKED_BY_HAND = ("pg_advisory_lock", "pg_try_advisory_lock", "pg_advisory_xact_lock", "GET_LOCK")
_CONFIGURE = m.Call(func=m.Attribute(value=m.Name("context"), attr=m.Name("configure")))
_BEGIN_TRANSACTION = m.With(
    items=[m.WithItem(item=m.Call(func=m.Attribute(value=m.Name("context"), attr=m.Name("begin_transaction"))))]
)
_LOCK = m.With(items=[m.WithItem(item=m.Call(func=m.Name("migration_lock")))])
# A connection expression that names the same connection each time it is evaluated.
_NAMED = m.Name() | m.Attribute() | m.Subscript()
PASTE = (
    'paste the recipe of the README ("Concurrent deploys: one migrator at a time") above run_migrations_online(), '
    "and put `with migration_lock(connection):` around context.configure(connection=...) and the "
    "`with context.begin_transaction():` block after it"
)


class EnvPyNotRecognised(Exception):
    """env.py has no place lock-env knows how to lock; the message says why."""


def holds_a_lock(source: str) -> bool:
    """Whether ``source`` (an env.py) takes a migration lock already: the recipe's, or one of its own."""
    if any(name in source for name in _LOCKED_BY_HAND):
        return True
    return bool(m.findall(cst.parse_module(source), _LOCK))


def lock_env(source: str) -> str:
    """``source`` (an env.py) taking the migration lock around each online ``context.configure``; ``source``
    itself when it holds a lock already. Raises ``EnvPyNotRecognised``, or LibCST's ParserSyntaxError."""
    module = cst.parse_module(source)
    if holds_a_lock(source):
        return source
    locking = _LockAroundConfigure()
    locked = cst.MetadataWrapper(module).visit(locking)
    if locking.refusal:
        raise EnvPyNotRecognised(locking.refusal)
    if not locking.wrapped:
        raise EnvPyNotRecognised("it has no context.configure(connection=...) call (the online path)")
    if not m.findall(locked, m.FunctionDef(name=m.Name("migration_lock"))):
        locked = _with_recipe(locked)
    return locked.code


class _LockAroundConfigure(cst.CSTTransformer):
    """Wraps ``context.configure(connection=C)`` through the ``with context.begin_transaction():`` after it
    in ``with migration_lock(C):``; notes why it cannot where the block is not of that shape."""

    METADATA_DEPENDENCIES = (cst.metadata.PositionProvider,)

    def __init__(self) -> None:
        super().__init__()
        self.wrapped = 0
        self.refusal = ""

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        return updated.with_changes(body=self._wrap(original.body, updated.body))

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        return updated.with_changes(body=self._wrap(original.body, updated.body))

    def _wrap(
        self, original: Sequence[cst.BaseStatement], body: Sequence[cst.BaseStatement]
    ) -> list[cst.BaseStatement]:
        wrapped: list[cst.BaseStatement] = []
        index = 0
        while index < len(body):
            connection = _configured_connection(body[index])
            if connection is None:
                wrapped.append(body[index])
                index += 1
                continue
            line = self.get_metadata(cst.metadata.PositionProvider, original[index]).start.line
            ends = [at for at in range(index + 1, len(body)) if m.matches(body[at], _BEGIN_TRANSACTION)]
            if not m.matches(connection, _NAMED):
                self.refusal = f"line {line}: context.configure(connection=...) is given an expression, not a name"
            elif not ends:
                self.refusal = (
                    f"line {line}: context.configure(connection=...) is not followed by "
                    "`with context.begin_transaction():` in the same block"
                )
            if self.refusal:
                return list(body)
            first, end = cst.ensure_type(body[index], cst.SimpleStatementLine), ends[0]
            lock = cst.With(
                items=[cst.WithItem(cst.Call(cst.Name("migration_lock"), [cst.Arg(connection)]))],
                body=cst.IndentedBlock([first.with_changes(leading_lines=()), *body[index + 1 : end + 1]]),
                leading_lines=first.leading_lines,
            )
            wrapped.append(lock)
            self.wrapped += 1
            index = end + 1
        return wrapped


def _configured_connection(statement: cst.BaseStatement) -> cst.BaseExpression | None:
    """The connection of a ``context.configure(connection=C)`` (or ``(C, ...)``) statement; None for others."""
    if not m.matches(statement, m.SimpleStatementLine(body=[m.Expr(value=_CONFIGURE)])):
        return None
    call = cst.ensure_type(cst.ensure_type(statement, cst.SimpleStatementLine).body[0], cst.Expr).value
    arguments = cst.ensure_type(call, cst.Call).args
    named = [argument.value for argument in arguments if argument.keyword and argument.keyword.value == "connection"]
    positional = [argument.value for argument in arguments if argument.keyword is None and not argument.star]
    given = named or positional
    return given[0] if given else None


def _with_recipe(module: cst.Module) -> cst.Module:
    """``module`` with the recipe before its first function or class (or the first statement that locks), and
    the recipe's imports."""
    body = list(module.body)
    place = next(
        at
        for at, statement in enumerate(body)
        if m.matches(statement, m.FunctionDef() | m.ClassDef()) or m.findall(statement, _LOCK)
    )
    recipe = list(cst.parse_module(RECIPE).body)
    blank = cst.EmptyLine()
    following = body[place]  # the comments above it stay above the recipe, and it keeps two blank lines
    recipe[0] = recipe[0].with_changes(leading_lines=following.leading_lines or (blank, blank))
    body[place] = following.with_changes(leading_lines=(blank, blank))
    module = module.with_changes(body=[*body[:place], *recipe, *body[place:]])
    context = CodemodContext()
    for name, obj in IMPORTS:
        AddImportsVisitor.add_needed_import(context, name, obj)
    return AddImportsVisitor(context).transform_module(module)


def env_py_of(config_file: Path) -> Path:
    """The env.py of the Alembic project configured by ``config_file`` (its script_location)."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - only when no env.py is named

    from codemod.config import alembic_config  # noqa: PLC0415

    previous = Path.cwd()
    os.chdir(config_file.parent)  # a relative script_location is relative to where alembic runs: beside it
    try:
        return Path(ScriptDirectory.from_config(alembic_config(config_file)).dir).resolve() / "env.py"
    finally:
        os.chdir(previous)
