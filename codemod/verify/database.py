"""Scratch databases: made fresh, copied, and always dropped; reached through any driver, sync or async.

SQLite scratch databases are files in a temporary directory; on a server (the
``--url`` given) each is a new, uniquely named database, created from an empty
template and dropped when the run ends, whatever way it ends. Nothing else on
the server is touched. An async URL (``postgresql+asyncpg``, ``mysql+aiomysql``,
``sqlite+aiosqlite``, psycopg under asyncio) is used as async applications use
it: an ``AsyncConnection`` hands its sync facade to the work through ``run_sync``.

Where DDL is transactional (PostgreSQL, and SQLite, whose driver is made to
emit BEGIN), a database can be *held*, through a sync or an async driver: every
run goes to one connection, in a savepoint of one transaction, so a scenario is
tried and rolled back instead of run on a copy (PostgreSQL's sequences set
back too). A run that leaves that transaction (commits it, or enters
``autocommit_block()``) raises ``LeftTransaction``, saying whether it
committed; so does a run that opens a connection of its own through the engine
(``sa.inspect(op.get_bind().engine)``): that connection sees only what is
committed, not what the runs before it did in the held transaction. A COMMIT or
BEGIN sent as SQL (an env.py that turns SQLite's foreign keys off between
transactions does) is not sent while verify owns the transaction: on a held
connection, or one marked as committing each statement for a crash.

PyMySQL connects without TLS unless the URL asks for it (``ssl_ca=``, ...): it
otherwise tries TLS on every server that offers it, and many fail the handshake.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from codemod.interrupts import carries_interrupt

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

PREFIX = "idempotify_scratch_"
# Set in Connection.info while a database is held: what runs on it must stay inside its transaction.
IN_ONE_TRANSACTION = "idempotify.in_one_transaction"
# Set in Connection.info while a run commits each statement as it goes (a crash): no SQL may begin a transaction.
EACH_STATEMENT_COMMITS = "idempotify.each_statement_commits"
T = TypeVar("T")


class _OnHeld(Protocol):
    """Runs ``work`` on the held connection."""

    def __call__(self, work: Callable[[sa.Connection], T]) -> T: ...


class ScratchError(Exception):
    """The scratch database cannot be made or used (bad URL, missing driver, server down, not empty)."""


class LeftTransaction(Exception):
    """A run on a held database left its transaction: ``committed``, part of it is in the database for good;
    ``every_revision``, every run would (env.py uses a connection of its own)."""

    def __init__(self, why: str, *, committed: bool = False, every_revision: bool = False) -> None:
        super().__init__(why)
        self.committed = committed
        self.every_revision = every_revision


@dataclass
class _Elsewhere:
    """What the runs on a held connection did through connections of their own (its engine reached)."""

    opened: int = 0
    committed: bool = False


class Database:
    """One database URL; ``run(work)`` calls ``work`` with a new sync ``Connection`` to it, and commits.

    Through a sync driver that is an ordinary pooled connection; through an
    async one, a connection of an async engine handed over with ``run_sync``.
    """

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self.is_async = bool(url.get_dialect().is_async)
        self._engine = None if self.is_async else _engine(url)
        self._held: sa.Connection | None = None
        self._on_held: _OnHeld | None = None  # runs work on the held connection (in run_sync, when async)
        self._elsewhere = _Elsewhere()  # while held: what connections beside the held one did
        self._scopes: list[SavepointBlock] = []  # the savepoint() blocks open on the held connection, innermost last
        # PostgreSQL's sequences as a savepoint() block set them back, and the runs there had been then: only a run
        # moves a sequence (a rollback does not), so the next block finds them so while no run has happened since.
        self._sequences_set: tuple[int, _Sequences] | None = None
        self.runs = 0  # how many runs it has had: what was read of it holds while this stays

    @property
    def engine(self) -> sa.Engine:
        """The sync engine (sync drivers only)."""
        if self._engine is None:
            raise TypeError(f"{self.url.drivername} is async: use Database.run")
        return self._engine

    def run(self, work: Callable[[sa.Connection], T], *, autocommit: bool = False) -> T:
        """``work(connection)`` on a new connection, committed afterwards (rolled back if it raises)."""
        self.runs += 1
        if self._on_held is not None:
            scope = self._usable_scope()
            return self._on_held(lambda connection: self._run_held(connection, work, keep=autocommit, scope=scope))
        return self._run_new(work, autocommit=autocommit)

    def read(self, work: Callable[[sa.Connection], T]) -> T:
        """``run`` for ``work`` that only reads: on a held database, without a savepoint of its own."""
        if self._on_held is None:
            return self.run(work)
        self._usable_scope()

        def read_held(connection: sa.Connection) -> T:
            root = connection.get_transaction()
            result = work(connection)
            _still_in(connection, root)
            return result

        return self._on_held(read_held)

    def _run_new(self, work: Callable[[sa.Connection], T], *, autocommit: bool) -> T:
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        if self._engine is None:
            return asyncio.run(self._run_async(work, options))
        with self._engine.connect() as connection:
            connection.execution_options(**options)
            result = work(connection)
            if connection.in_transaction():
                connection.commit()
            return result

    async def _run_async(self, work: Callable[[sa.Connection], T], options: dict[str, Any]) -> T:
        engine = _async_engine(self.url)
        try:
            async with engine.connect() as connection:
                await connection.execution_options(**options)
                result = await connection.run_sync(work)
                if connection.in_transaction():
                    await connection.commit()
                return result
        finally:
            await engine.dispose()

    @property
    def can_hold(self) -> bool:
        """Whether ``held()`` works here: a database with transactional DDL."""
        return self.url.get_backend_name() in ("postgresql", "sqlite")

    @property
    def is_held(self) -> bool:
        return self._held is not None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Every ``run`` inside goes to one connection, in one transaction committed at the end (rolled back when
        the block raises); each run in a savepoint of it, released when it succeeds, rolled back when it fails.
        Through an async driver the connection stays open on an event loop of its own, each run in ``run_sync``."""
        if self._engine is not None:
            with self._engine.connect() as connection, self._holding(lambda work: work(connection)):
                yield
            return
        loop = asyncio.new_event_loop()
        engine = _async_engine(self.url)
        try:
            held = loop.run_until_complete(engine.connect())
            try:
                with self._holding(lambda work: loop.run_until_complete(held.run_sync(work))):
                    yield
            finally:
                loop.run_until_complete(held.close())
        finally:
            loop.run_until_complete(engine.dispose())
            loop.close()

    @contextmanager
    def _holding(self, on_held: _OnHeld) -> Iterator[None]:
        connection = on_held(lambda held: held)
        transaction = on_held(lambda held: held.begin())
        connection.info[IN_ONE_TRANSACTION] = True
        self._held, self._on_held = connection, on_held
        try:
            with self._watching_elsewhere(connection):
                yield
        except BaseException:
            if transaction.is_active:
                on_held(lambda held: transaction.rollback())
            raise
        finally:
            self._held = self._on_held = None
            connection.info.pop(IN_ONE_TRANSACTION, None)
        on_held(lambda held: transaction.commit())

    @contextmanager
    def _watching_elsewhere(self, held: sa.Connection) -> Iterator[None]:
        """Counts the connections opened through the held one's engine while it is held (a revision that
        inspects ``op.get_bind().engine``, or connects through it), and notes whether one of them commits."""
        elsewhere = self._elsewhere = _Elsewhere()

        def opened(connection: sa.Connection) -> None:
            elsewhere.opened += 1

        def committed(connection: sa.Connection) -> None:
            if connection is not held:
                elsewhere.committed = True

        engine = held.engine
        sa.event.listen(engine, "engine_connect", opened)
        sa.event.listen(engine, "commit", committed)
        try:
            yield
        finally:
            sa.event.remove(engine, "engine_connect", opened)
            sa.event.remove(engine, "commit", committed)

    @contextmanager
    def savepoint(self) -> Iterator[SavepointBlock]:
        """What runs inside is rolled back at the end (the database must be held), PostgreSQL's sequences
        included: no rollback undoes their ``nextval``, so a row inserted after it would get another id. Unless
        the block is told to ``keep`` it: then it stays in the held transaction, sequences as they went, if the
        block ends without an exception."""
        on_held = self._on_held
        if on_held is None:
            raise TypeError("Database.savepoint needs a held database")
        known = self._sequences_set
        sequences = known[1] if known is not None and known[0] == self.runs else on_held(_sequences)
        savepoint = on_held(lambda held: held.begin_nested())
        block = SavepointBlock()
        self._scopes.append(block)
        kept = False
        try:
            yield block
            kept = block.keep and not block.failed
        finally:
            self._scopes.pop()
            if savepoint.is_active:
                on_held(lambda held: savepoint.commit() if kept else savepoint.rollback())
            if not kept:
                on_held(lambda held: _restore_sequences(held, sequences))
                self._sequences_set = (self.runs, sequences)

    def _usable_scope(self) -> SavepointBlock | None:
        """The innermost ``savepoint()`` block open, if any; an error if a run in it has failed."""
        scope = self._scopes[-1] if self._scopes else None
        if scope is not None and scope.failed:
            raise RuntimeError("a run failed in this savepoint: it must be rolled back before the database is used")
        return scope

    def _run_held(
        self, connection: sa.Connection, work: Callable[[sa.Connection], T], *, keep: bool, scope: SavepointBlock | None
    ) -> T:
        """``work`` in a savepoint; with ``keep``, what a run that raised did before it raised stays (as with
        autocommit), unless the database refused a statement (PostgreSQL then aborts the savepoint).

        Directly inside a ``savepoint()`` block, a run without ``keep`` needs no savepoint of its own: the
        block's is rolled back at its end, and a run that fails there ends the block's use of the database
        (``SavepointBlock.failed``). Two round trips fewer a run, on most runs of a revision's scenarios.

        A run that opens a connection of its own through the engine (``sa.inspect(op.get_bind().engine)``)
        raises ``LeftTransaction``, whether it succeeds or fails: that connection sees only what is committed,
        not what the runs before it in the held transaction did, as it would after ``alembic upgrade``."""
        root = connection.get_transaction()
        opened = self._elsewhere.opened
        if scope is not None and not keep:
            try:
                result = work(connection)
                if self._elsewhere.opened != opened:
                    raise self._left_for_engine()
            except BaseException as error:
                scope.failed = True
                if carries_interrupt(error):
                    raise
                _still_in(connection, root)
                if not isinstance(error, LeftTransaction) and self._elsewhere.opened != opened:
                    raise self._left_for_engine() from error
                raise
            _still_in(connection, root)
            return result
        savepoint = connection.begin_nested()
        try:
            result = work(connection)
            if self._elsewhere.opened != opened:
                raise self._left_for_engine()
        except BaseException as error:
            if carries_interrupt(error):  # Ctrl-C or SIGTERM: no finding to judge, only the way out
                raise
            _still_in(connection, root)
            alone = isinstance(error, LeftTransaction) or self._elsewhere.opened == opened
            if savepoint.is_active and keep and alone and not isinstance(error, (sa.exc.DBAPIError, LeftTransaction)):
                savepoint.commit()
            elif savepoint.is_active:
                savepoint.rollback()
            if not alone:
                raise self._left_for_engine() from error
            raise
        _still_in(connection, root)
        savepoint.commit()
        return result

    def _left_for_engine(self) -> LeftTransaction:
        why = "the revision opens a connection of its own through the engine: it sees only what is committed"
        return LeftTransaction(why, committed=self._elsewhere.committed)

    def dispose(self) -> None:
        """Close pooled connections (before a file copy, or a template copy, of this database)."""
        if self._engine is not None:
            self._engine.dispose()


@dataclass
class SavepointBlock:
    """A ``Database.savepoint()`` block: ``failed`` once a run in it has raised (nothing more may run in it);
    ``keep``, set inside it, keeps what ran in it."""

    failed: bool = False
    keep: bool = False


@dataclass
class Scratch:
    """One scratch database."""

    name: str
    database: Database

    @property
    def engine(self) -> sa.Engine:
        return self.database.engine


class ScratchServer:
    """Makes, copies and drops scratch databases on SQLite or on the server ``url`` names."""

    def __init__(self, url: str | None, directory: Path) -> None:
        self.directory = directory
        self._made: list[Scratch] = []
        self._admin: Database | None = None
        self._dropper: ThreadPoolExecutor | None = None
        self._dropping: list[tuple[str, Future[Any]]] = []
        self._definitions: dict[tuple[str, int], list[_Definition] | None] = {}  # MariaDB: by database, runs
        self._spares: list[str] = []  # MariaDB: databases dropped by verify, kept to be made into copies
        self._keep_spares = True  # until close()
        try:
            self.url = sa.engine.make_url(url or "sqlite://")
            if self.url.get_backend_name() == "sqlite":
                self.dialect = "sqlite"
                self._connect(self.url.set(database=str(directory / "driver-check.db"))).dispose()
                (directory / "driver-check.db").unlink(missing_ok=True)
                return
            self._admin = self._connect(self.url)
            name = self._admin.run(lambda connection: connection.dialect.name)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
            raise ScratchError(f"bad database URL {_safe(url)!r}: {error}") from error
        self.dialect = "mariadb" if name in ("mysql", "mariadb") else name
        if self.dialect not in ("postgresql", "mariadb"):
            raise ScratchError(f"scratch databases on {name} are not supported (use SQLite, PostgreSQL or MariaDB)")
        if self.dialect == "mariadb" and not sa.event.contains(sa.Engine, "before_cursor_execute", _note_ddl):
            sa.event.listen(sa.Engine, "before_cursor_execute", _note_ddl)

    def _connect(self, url: sa.URL) -> Database:
        """Connect once: a missing driver or a server that does not answer is said here, before any work."""
        try:
            database = Database(url)
            database.run(lambda connection: None)
        except ImportError as error:
            raise ScratchError(
                f"no database driver for {_safe(str(self.url))}: {error}; install it "
                "(pip install 'idempotify[postgresql]' or 'idempotify[mysql]'), or name one that is installed"
            ) from error
        except ValueError as error:  # SQLAlchemy's asyncio extension without greenlet
            raise ScratchError(f"cannot use {_safe(str(self.url))}: {error}") from error
        except sa.exc.DBAPIError as error:
            raise ScratchError(f"cannot connect to {_safe(str(self.url))}: {error.orig}") from error
        return database

    def can_copy(self, state: Scratch) -> bool:
        """Whether ``create(template=state)`` can copy ``state``: a SQLite file copy, a PostgreSQL template, or
        on MariaDB a copy of its tables (not of views, triggers or routines: those are rebuilt by replay)."""
        return self.dialect != "mariadb" or self._definitions_of(state) is not None

    def create(self, template: Scratch | None = None) -> Scratch:
        """A new database: empty, or a copy of ``template`` (on MariaDB, when ``can_copy(template)``).

        On MariaDB a copy is made of a database verify dropped, where there is one (see ``drop``): creating
        each table costs a file and its sync, so the tables it already holds as ``template`` holds them stay.
        """
        while template is not None and self.dialect == "mariadb" and self._spares:
            reused = self._copy_into_spare(template)
            if reused is not None:
                return reused
        name = f"{PREFIX}{uuid.uuid4().hex[:12]}"
        if self.dialect == "sqlite":
            path = self.directory / f"{name}.db"
            if template is not None:
                template.database.dispose()
                shutil.copyfile(self.directory / f"{template.name}.db", path)
            scratch = Scratch(name, Database(self.url.set(database=str(path))))
        else:
            assert self._admin is not None
            if template is not None and self.dialect == "postgresql":
                template.database.dispose()
                clause = f" TEMPLATE {template.name}"
            else:
                clause = " TEMPLATE template0" if self.dialect == "postgresql" else ""
            scratch = Scratch(name, Database(self.url.set(database=name)))
            self._made.append(scratch)  # before it exists: an interrupt during CREATE still drops it
            statement = sa.text(f"CREATE DATABASE {name}{clause}")
            self._admin.run(lambda connection: connection.execute(statement), autocommit=True)
            if self.dialect == "mariadb":
                _ALTERED[name] = []
            if template is not None and self.dialect == "mariadb":
                source, definitions = template.name, self._definitions_of(template)
                if definitions is None:
                    raise ScratchError(f"{source} holds views, triggers or others: it cannot be copied")
                scratch.database.run(lambda connection: _copy_tables(connection, source, definitions))
                _ALTERED[name] = []
        if scratch not in self._made:
            self._made.append(scratch)
        if template is None and scratch.database.run(lambda connection: sa.inspect(connection).get_table_names()):
            raise ScratchError(f"the new scratch database {name} is not empty; refusing to use it")
        return scratch

    def _copy_into_spare(self, template: Scratch) -> Scratch | None:
        """A copy of ``template`` made of the last spare database, or None when that one cannot be (it holds views,
        triggers, routines or events): it is dropped."""
        name = self._spares.pop()
        scratch = Scratch(name, Database(self.url.set(database=name)))
        self._made.append(scratch)
        definitions = self._definitions_of(template)
        if definitions is None:
            raise ScratchError(f"{template.name} holds views, triggers or others: it cannot be copied")
        altered = _ALTERED.get(name, ["(not known)"])  # a statement that may have changed any table
        source = template.name
        if any(_ALTERS_DATABASE.search(statement) for statement in altered):
            self._drop_now(scratch)  # its own defaults (character set, collation) are not the copied database's
            return None
        if scratch.database.run(lambda connection: _copy_tables(connection, source, definitions, altered)):
            _ALTERED[name] = []
            return scratch
        self._drop_now(scratch)
        return None

    def _definitions_of(self, state: Scratch) -> list[_Definition] | None:
        """``_definitions`` of ``state``, read again only once it has run something since: the copies of one
        state (before a revision, one per crash point) share one reading."""
        key = (state.name, state.database.runs)
        if key not in self._definitions:
            if len(self._definitions) >= 8:  # the states of one revision are enough
                del self._definitions[next(iter(self._definitions))]
            name = state.name
            definitions = state.database.run(lambda connection: _definitions(connection, name))
            self._definitions[(state.name, state.database.runs)] = definitions
        return self._definitions[(state.name, state.database.runs)]

    def drop(self, scratch: Scratch) -> None:
        """Drop ``scratch``: at once on SQLite; on a server in the background, ``close`` waiting for it.

        PostgreSQL's DROP DATABASE waits for a checkpoint (0.7 s here); drops
        made side by side share one, so they go to a pool of threads.
        """
        scratch.database.dispose()
        self._made.remove(scratch)
        for key in [key for key in self._definitions if key[0] == scratch.name]:
            del self._definitions[key]  # its name may come back, as a spare: what was read of it is gone
        if self.dialect == "sqlite":
            (self.directory / f"{scratch.name}.db").unlink(missing_ok=True)
            return
        if self.dialect == "mariadb" and self._keep_spares and len(self._spares) < _SPARES:
            self._spares.append(scratch.name)  # dropped in close(), unless made into a copy before
            return
        self._drop_now(scratch)

    def _drop_now(self, scratch: Scratch) -> None:
        """DROP DATABASE ``scratch``, in the background."""
        scratch.database.dispose()
        if scratch in self._made:
            self._made.remove(scratch)
        _ALTERED.pop(scratch.name, None)
        admin = self._admin
        assert admin is not None
        force = " WITH (FORCE)" if self.dialect == "postgresql" else ""
        statement = sa.text(f"DROP DATABASE IF EXISTS {scratch.name}{force}")
        if self._dropper is None:
            self._dropper = ThreadPoolExecutor(max_workers=8, thread_name_prefix="idempotify-drop")
        drop = self._dropper.submit(admin.run, lambda connection: connection.execute(statement), autocommit=True)
        self._dropping.append((scratch.name, drop))

    def close(self) -> None:
        """Drop every scratch database still here, spares included, and wait until every drop is done."""
        self._keep_spares = False
        for scratch in list(self._made):
            self.drop(scratch)
        while self._spares:
            name = self._spares.pop()
            self._drop_now(Scratch(name, Database(self.url.set(database=name))))
        if self._dropper is not None:
            self._dropper.shutdown(wait=True)
        failed = [(name, drop.exception()) for name, drop in self._dropping if drop.exception() is not None]
        if self._admin is not None:
            self._admin.dispose()
        if failed:
            names = ", ".join(f"{name} ({error})" for name, error in failed)
            raise ScratchError(f"could not drop the scratch databases {names}; drop them by hand")


def _still_in(connection: sa.Connection, root: sa.RootTransaction | None) -> None:
    if root is None or not root.is_active or connection.get_transaction() is not root:
        raise LeftTransaction("the revision committed the transaction it was run in", committed=True)


# A sequence's state, as setval takes it back: its last value and whether nextval has returned it. pg_sequences
# alone does not say: its last_value is NULL whenever is_called is false, as after RESTART WITH 1000; each
# sequence's own row does, read here for all of them in one statement (query_to_xml runs the query per row).
_Sequences = dict[tuple[str, str], tuple[int, bool]]
_SEQUENCES = sa.text(
    "SELECT s.schemaname, s.sequencename,"
    " (xpath('/row/last_value/text()', r.x))[1]::text::bigint, (xpath('/row/is_called/text()', r.x))[1]::text"
    " FROM pg_sequences s, LATERAL (SELECT query_to_xml(format('SELECT last_value, is_called FROM %I.%I',"
    " s.schemaname, s.sequencename), false, true, '') AS x) r"
)


def _sequences(connection: sa.Connection) -> _Sequences:
    """The state of every sequence of a PostgreSQL database (none elsewhere)."""
    if connection.dialect.name != "postgresql":
        return {}
    return {(schema, name): (last, called == "true") for schema, name, last, called in connection.execute(_SEQUENCES)}


def _restore_sequences(connection: sa.Connection, before: _Sequences) -> None:
    """Set back each sequence of ``before`` still there that has moved since: ``setval``, which no rollback
    undoes either."""
    if not before:
        return
    quote = connection.dialect.identifier_preparer.quote
    for key, state in _sequences(connection).items():
        if key in before and before[key] != state:
            value, called = before[key]
            connection.execute(
                sa.text("SELECT setval(CAST(:sequence AS regclass), :value, :called)"),
                {"sequence": f"{quote(key[0])}.{quote(key[1])}", "value": value, "called": called},
            )


# A transaction begun or ended by SQL text (not by the driver): not sent while verify owns the transaction.
_TRANSACTION_CONTROL = re.compile(
    r"\s*(begin|commit|end|start\s+transaction)(\s+(work|transaction|deferred|immediate|exclusive))?\s*;?\s*",
    re.IGNORECASE,
)


def _engine(url: sa.URL) -> sa.Engine:
    """A sync engine for verify's runs: see ``_prepared``. PyMySQL skips TLS unless the URL asks for it."""
    options: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        options["poolclass"] = NullPool  # every connection made fresh, as _prepared sets it up
    if url.get_driver_name() == "pymysql" and not any(key.startswith("ssl") for key in url.query):
        options["connect_args"] = {"ssl_disabled": True}
    return _prepared(sa.create_engine(url, **options))


def _async_engine(url: sa.URL) -> AsyncEngine:
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 - only for async URLs

    engine = create_async_engine(url, poolclass=NullPool)
    _prepared(engine.sync_engine)
    return engine


def _prepared(engine: sa.Engine) -> sa.Engine:
    """Transactions that hold what verify runs. SQLite's drivers begin no transaction before DDL (nor one a
    SAVEPOINT can live in), so BEGIN is emitted here (SQLAlchemy's recipe for pysqlite and aiosqlite), unless
    the connection commits each statement. A COMMIT, END or BEGIN sent as SQL is replaced by ``SELECT 1`` where
    verify owns the transaction: a held connection, or one marked ``EACH_STATEMENT_COMMITS`` (a crash)."""
    sqlite = engine.url.get_backend_name() == "sqlite"

    def autocommit(connection: sa.Connection) -> bool:
        return connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"

    if sqlite:

        @sa.event.listens_for(engine, "connect")
        def no_implicit_transactions(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def begin(connection: sa.Connection) -> None:
            if not autocommit(connection):
                cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                cursor.execute("BEGIN")  # past SQLAlchemy's events: not the SQL that keep_the_transaction drops
                cursor.close()

    @sa.event.listens_for(engine, "before_cursor_execute", retval=True)
    def keep_the_transaction(
        connection: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        owned = connection.info.get(IN_ONE_TRANSACTION) or connection.info.get(EACH_STATEMENT_COMMITS)
        if owned and not parameters and _TRANSACTION_CONTROL.fullmatch(statement):
            return "SELECT 1", parameters
        return statement, parameters

    return engine


# A MariaDB table or sequence to copy: its name, the CREATE statement to make it with, whether it holds rows, and
# its definition as SHOW CREATE gives it.
_Definition = tuple[str, str, bool, str]
# How many databases dropped by verify are kept on MariaDB to be made into copies: the copies of a revision.
_SPARES = 8
# MariaDB: the database name -> each statement since its last copy that may have changed a table (DDL), as sent.
_ALTERED: dict[str, list[str]] = {}
# What is neither DDL nor able to change a table's definition (rows aside); anything else is noted in _ALTERED.
_NOT_DDL = re.compile(
    r"[\s(]*(select|show|desc|describe|explain|set(?!\s+statement\b)|insert|update|delete|replace|begin|commit"
    r"|rollback|savepoint"
    r"|release|start\s+transaction|xa|with|values|do)\b",
    re.IGNORECASE,
)
# A statement that changes the database's own defaults, which a copy made of a dropped database would keep.
_ALTERS_DATABASE = re.compile(r"\balter\s+(database|schema)\b", re.IGNORECASE)
# Statements that name every table they change (the rest, CALL or EXECUTE, may change any table).
_NAMES_ITS_TABLES = re.compile(r"\s*(create|alter|drop|rename|truncate|optimize|repair|analyze)\b", re.IGNORECASE)
# Routines and events of a MariaDB database (they, its views and its triggers are not copied).
_ROUTINES_OR_EVENTS = sa.text(
    "SELECT (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = :name)"
    " + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = :name)"
)


def _holds_others(connection: sa.Connection, database: str, views: bool = True) -> bool:
    """Whether the MariaDB ``database`` holds views (unless ``views`` is False: the caller has listed them),
    triggers, routines or events. SHOW is much faster there than information_schema.views and .triggers."""
    listing = f"SHOW FULL TABLES FROM `{database}` WHERE Table_type = 'VIEW'"
    if views and connection.execute(sa.text(listing)).first():
        return True
    if connection.execute(sa.text(f"SHOW TRIGGERS FROM `{database}`")).first():
        return True
    return bool(connection.execute(_ROUTINES_OR_EVENTS, {"name": database}).scalar())


def _note_ddl(
    connection: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """Note in ``_ALTERED`` a statement that may change a table of a MariaDB scratch database (any engine's)."""
    altered = _ALTERED.get(str(connection.engine.url.database))
    if altered is not None and not _NOT_DDL.match(statement):
        altered.append(statement)


def _definitions(connection: sa.Connection, source: str) -> list[_Definition] | None:
    """What ``_copy_tables`` copies of the MariaDB database ``source``: each table and sequence as ``SHOW
    CREATE`` gives it (keys, foreign keys, AUTO_INCREMENT), and whether the table holds rows, asked of all
    tables in one query per hundred of them. None when it holds views, triggers, routines or events, not copied,
    or a foreign key a copy would not name as it is named (``_implicit_indexes_made_again``)."""
    if _holds_others(connection, source):
        return None
    listed = connection.execute(
        sa.text("SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = :name"),
        {"name": source},
    )
    definitions = []
    for table, kind in sorted(listed):
        sequence = kind == "SEQUENCE"
        shown = _show_create(connection, source, str(table), sequence)
        statement = _without_foreign_key_indexes(shown)
        remade = statement if sequence else _implicit_indexes_made_again(connection, source, str(table), statement)
        if remade is None:
            return None
        definitions.append((str(table), remade, not sequence, shown))
    filled = _filled(connection, source, [name for name, _, is_table, _ in definitions if is_table])
    return [(name, statement, name in filled, shown) for name, statement, _, shown in definitions]


def _show_create(connection: sa.Connection, database: str, table: str, sequence: bool = False) -> str:
    shown = connection.execute(sa.text(f"SHOW CREATE {'SEQUENCE' if sequence else 'TABLE'} `{database}`.`{table}`"))
    return str(shown.one()[1])


def _filled(connection: sa.Connection, database: str, tables: list[str]) -> set[str]:
    """Those of ``tables`` that hold rows, asked in one query per hundred of them."""
    filled: set[str] = set()
    for start in range(0, len(tables), 100):
        chunk = tables[start : start + 100]
        probes = ", ".join(f"(SELECT 1 FROM `{database}`.`{name}` LIMIT 1)" for name in chunk)
        row = connection.execute(sa.text(f"SELECT {probes}")).one()
        filled.update(name for name, found in zip(chunk, row, strict=True) if found is not None)
    return filled


_KEY = re.compile(r"^\s*KEY `((?:[^`]|``)+)` (\(.*\)),?$")
_FOREIGN_KEY = re.compile(r"^\s*CONSTRAINT `((?:[^`]|``)+)` FOREIGN KEY (\(.*?\)) REFERENCES ")


def _without_foreign_key_indexes(statement: str) -> str:
    """``statement`` (``SHOW CREATE TABLE``) without the index InnoDB made for a foreign key by itself.

    Such an index is named after its key and goes with it: a revision that drops the key and adds another
    on the column gets an index under the new key's name, where an index created by hand stays. SHOW CREATE
    lists both alike; created from it, the copy's index would be one made by hand, and the copy would
    then end elsewhere than the database it copies. Left out, the copy's key makes it again, as the
    original's did. (An index InnoDB named after the column, for a key created without a name, is told
    from one made by hand by ``_implicit_indexes_made_again``.)
    """
    lines = statement.split("\n")
    keys = {(found.group(1), found.group(2)) for line in lines if (found := _FOREIGN_KEY.match(line))}
    kept = [line for line in lines if not ((found := _KEY.match(line)) and (found.group(1), found.group(2)) in keys)]
    return "\n".join(kept) if len(kept) < len(lines) else statement


_NAMED_KEY = re.compile(r"^(\s*)CONSTRAINT `(?:[^`]|``)+` (FOREIGN KEY .*)$")
_PROBE = "idempotify_probe"


def _implicit_indexes_made_again(connection: sa.Connection, source: str, table: str, statement: str) -> str | None:
    """``statement`` (``SHOW CREATE TABLE`` of ``source``.``table``) made to create again, as InnoDB made them,
    the indexes it made by itself for foreign keys created without a name; None when that cannot be done.

    Such a key is named ``<table>_ibfk_<n>`` and its index after its first column; InnoDB drops that index
    when an index that can serve the key is made, where it keeps one made by hand. SHOW CREATE lists both
    alike: a probe (an empty temporary copy, given an index on the key's columns) tells them apart, as InnoDB
    drops only its own. Those are left out and their keys written without a name, so InnoDB makes them again
    (numbering such keys 1, 2, ... as written): None when that would not give the keys their names."""
    lines = statement.split("\n")
    keys = [(number, found) for number, line in enumerate(lines) if (found := _FOREIGN_KEY.match(line))]
    named_by_innodb = re.compile(rf"{re.escape(table)}_ibfk_\d+")
    candidates: dict[int, tuple[str, str, int]] = {}  # line of an index -> its name, its columns, its key's line
    for number, line in enumerate(lines):
        if (index := _KEY.match(line)) is None:
            continue
        name, columns = index.group(1), index.group(2)
        for key_line, key in keys:
            if key.group(2) == columns and columns.startswith(f"(`{name}`") and named_by_innodb.fullmatch(key.group(1)):
                candidates[number] = (name, columns, key_line)
    if not candidates:
        return statement
    try:
        kept = _indexes_kept(connection, source, table, [columns for _, columns, _ in candidates.values()])
    except sa.exc.DBAPIError:  # a table no temporary table can copy: the database is not copied
        return None
    implicit = {
        number: key_line for number, (name, _, key_line) in candidates.items() if name.replace("``", "`") not in kept
    }
    if not implicit:
        return statement
    names = [key.group(1) for key_line, key in keys if key_line in implicit.values()]
    numbered = [f"{table}_ibfk_{n}" for n in range(1, len(names) + 1)]
    if names != numbered or ({key.group(1) for _, key in keys} - set(names)) & set(numbered):
        return None
    written = []
    for number, line in enumerate(lines):
        if number in implicit.values() and (unnamed := _NAMED_KEY.match(line)):
            written.append(unnamed.group(1) + unnamed.group(2))
        elif number not in implicit:
            written.append(line)
    return "\n".join(written)


def _indexes_kept(connection: sa.Connection, source: str, table: str, columns: list[str]) -> set[str]:
    """The names of the indexes an empty copy of ``source``.``table`` keeps when given an index on each of
    ``columns``: all but those InnoDB made for a foreign key by itself, which it drops then."""
    probe = f"`{_PROBE}`"
    added = ", ".join(f"ADD INDEX `{_PROBE}_{n}` {each}" for n, each in enumerate(columns))
    try:
        for statement in (f"CREATE TEMPORARY TABLE {probe} LIKE `{source}`.`{table}`", f"ALTER TABLE {probe} {added}"):
            connection.execute(sa.text(statement.replace(":", "\\:")))
        return {str(row[2]) for row in connection.execute(sa.text(f"SHOW INDEX FROM {probe}"))}
    finally:
        connection.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS {probe}"))


def _copy_tables(
    connection: sa.Connection, source: str, definitions: list[_Definition], altered: list[str] | None = None
) -> bool:
    """Make the database ``connection`` uses hold ``definitions`` of the MariaDB database ``source``, rows too.

    A database used before (``altered``: the statements since its last copy that may have changed a table, one
    whose history is not known holding a statement of unknown kind; None for a new database) keeps each table
    that provably holds what the source's does: both empty, the same ``SHOW CREATE`` (AUTO_INCREMENT included),
    and named by no statement since its last copy (which could have changed what SHOW CREATE does not show:
    whether InnoDB made an index for a foreign key itself, see ``_without_foreign_key_indexes``). Every other
    table and sequence it holds is dropped, and made again as a new copy's is. False, with nothing done, when
    it holds views, triggers, routines or events.
    """
    kept: set[str] = set()
    listed: list[tuple[str, str]] = []
    own = str(connection.engine.url.database)
    if altered is not None:
        listed = [(str(name), str(kind)) for name, kind in connection.execute(sa.text("SHOW FULL TABLES"))]
        if any(kind == "VIEW" for _, kind in listed) or _holds_others(connection, own, views=False):
            return False
    connection.execute(sa.text("SET SESSION foreign_key_checks = 0"))
    if listed:
        wanted = {name: shown for name, _, filled, shown in definitions if not filled}
        names = "|".join(re.escape(name) for name, _ in listed)
        named = re.compile(rf"(?<![\w$])({names})(?![\w$])", re.IGNORECASE)  # quoted, or a word of its own
        touched = {found.group(1).lower() for statement in altered or () for found in named.finditer(statement)}
        if any(not _NAMES_ITS_TABLES.match(statement) for statement in altered or ()):
            touched = {name.lower() for name, _ in listed}
        same = [
            name
            for name, kind in listed
            if kind == "BASE TABLE"
            and name in wanted
            and name.lower() not in touched
            and _show_create(connection, own, name) == wanted[name]
        ]
        kept = set(same) - _filled(connection, own, same)
        dropped = [(name, kind == "SEQUENCE") for name, kind in listed if name not in kept]
        for kind, sequences in (("SEQUENCE", True), ("TABLE", False)):  # each kind in one statement
            if listing := ", ".join(f"`{name}`" for name, sequence in dropped if sequence == sequences):
                connection.execute(sa.text(f"DROP {kind} {listing}"))
    for table, statement, filled, _ in definitions:
        if table in kept:
            continue
        connection.execute(sa.text(statement.replace(":", "\\:")))
        if filled:
            connection.execute(sa.text(f"INSERT INTO `{table}` SELECT * FROM `{source}`.`{table}`"))
    connection.execute(sa.text("SET SESSION foreign_key_checks = 1"))
    return True


@contextmanager
def scratch_server(url: str | None) -> Iterator[ScratchServer]:
    """A ``ScratchServer`` whose databases are all dropped on the way out, Ctrl-C included."""
    with tempfile.TemporaryDirectory(prefix="idempotify-verify-") as directory:
        server = ScratchServer(url, Path(directory))
        try:
            yield server
        finally:
            server.close()


def _safe(url: str | None) -> str:
    if url is None:
        return "sqlite://"
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url
