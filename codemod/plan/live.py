"""The live database, read strictly read-only, and a copy of it on a scratch database.

Reading: one connection in one read-only transaction (PostgreSQL ``START
TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY``, MariaDB ``SET
SESSION TRANSACTION READ ONLY`` then ``START TRANSACTION READ ONLY``, SQLite
the file opened with ``mode=ro``), ended with a rollback. It reads the version
table, the schema and the rows of small tables: catalog queries and SELECTs,
so no lock stronger than ACCESS SHARE, no DDL, no write, ever.

The schema is copied with the server's own dump: ``pg_dump --schema-only``
(on the read transaction's exported snapshot) on PostgreSQL, ``SHOW CREATE
TABLE`` on MariaDB, ``sqlite_master`` on SQLite. Without ``pg_dump``, or when
it fails, SQLAlchemy reflection and ``create_all`` stand in, which carry no
triggers, functions, views or domains. Rows are copied for tables of at most
``ROW_LIMIT`` rows whose foreign keys point only at tables copied in full, so
seed-insert guards decide as on the live database; what the copy cannot carry
is listed in ``LiveCopy.not_carried``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.util import await_only

from codemod.verify.database import Database, Scratch

APPLICATION_NAME = "idempotify plan"
VERSION_TABLE = "alembic_version"
ROW_LIMIT = 1000


class LiveError(Exception):
    """The live database cannot be read (bad URL, missing driver, unreachable, not a supported kind)."""


def before_read_ends(connection: sa.Connection) -> None:
    """Called on the live connection right before its read transaction ends (tests check its locks here)."""


@dataclass
class LiveCopy:
    """What was read from the live database, enough to rebuild its schema and small tables elsewhere."""

    dialect: str
    heads: tuple[str, ...]
    method: str  # how the schema was read: pg_dump, SHOW CREATE TABLE, sqlite_master or reflection
    schema: list[str] = field(default_factory=list)  # statements run before the rows
    constraints: list[str] = field(default_factory=list)  # statements run after them (pg_dump's post-data)
    metadata: sa.MetaData | None = None  # the reflection path's tables
    sequences: dict[str, int] = field(default_factory=dict)  # PostgreSQL: each sequence's last value
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rows_not_copied: list[str] = field(default_factory=list)
    not_carried: list[str] = field(default_factory=list)


def read_live(url: str) -> LiveCopy:
    """Read the live database at ``url`` in one read-only transaction."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as error:
        raise LiveError(f"bad database URL {url!r}: {error}") from error
    if parsed.get_backend_name() == "sqlite":
        parsed = _sqlite_read_only(parsed)
    try:
        database = Database(parsed)
    except ImportError as error:
        raise LiveError(f"no database driver for {_shown(parsed)}: {error}; install it") from error
    try:
        return database.run(lambda connection: _read(connection, parsed), autocommit=True)
    except ImportError as error:
        raise LiveError(f"no database driver for {_shown(parsed)}: {error}; install it") from error
    except sa.exc.DBAPIError as error:
        raise LiveError(f"cannot read {_shown(parsed)}: {str(error.orig).strip()}") from error
    finally:
        database.dispose()


def _sqlite_read_only(url: sa.URL) -> sa.URL:
    """The SQLite file opened read-only (``file:...?mode=ro``): the driver cannot write it, nor make a journal."""
    if not url.database or url.database == ":memory:":
        raise LiveError("an in-memory SQLite database has nothing to plan against; name its file")
    path = Path(url.database).resolve()
    if not path.is_file():
        raise LiveError(f"{path}: no such SQLite database file")
    return url.set(database=f"file:{path}", query={**url.query, "mode": "ro", "uri": "true"})


def _read(connection: sa.Connection, url: sa.URL) -> LiveCopy:
    dialect = "mariadb" if connection.dialect.name in ("mysql", "mariadb") else connection.dialect.name
    if dialect not in ("sqlite", "postgresql", "mariadb"):
        raise LiveError(f"plan supports SQLite, PostgreSQL and MariaDB, not {connection.dialect.name}")
    _begin_read_only(connection, dialect)
    try:
        inspector = sa.inspect(connection)
        heads: tuple[str, ...] = ()
        if inspector.has_table(VERSION_TABLE):
            query = sa.text(f"SELECT version_num FROM {VERSION_TABLE}")
            heads = tuple(sorted(row[0] for row in connection.execute(query)))
        copy = LiveCopy(dialect, heads, "")
        if dialect == "sqlite":
            _sqlite_schema(connection, copy)
        elif dialect == "mariadb":
            _mariadb_schema(connection, copy)
        elif not _pg_dump(connection, url, copy):
            _reflected_schema(connection, copy)
        _rows(connection, inspector, copy)
        before_read_ends(connection)
    finally:
        connection.exec_driver_sql("ROLLBACK")
    return copy


def _begin_read_only(connection: sa.Connection, dialect: str) -> None:
    """Open the read-only transaction (the connection is in autocommit mode: the statements are the transaction)."""
    if dialect == "sqlite":
        connection.exec_driver_sql("BEGIN")  # one consistent read of a file the driver opened read-only
        return
    if dialect == "postgresql":
        connection.exec_driver_sql(f"SET application_name = '{APPLICATION_NAME}'")
        connection.exec_driver_sql("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        read_only = connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
    else:
        connection.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        connection.exec_driver_sql("START TRANSACTION READ ONLY")
        read_only = str(connection.exec_driver_sql("SELECT @@session.tx_read_only").scalar()) == "1"
    if not read_only:
        raise LiveError("the server did not make the transaction read-only; nothing was read")


def _sqlite_schema(connection: sa.Connection, copy: LiveCopy) -> None:
    copy.method = "sqlite_master"
    order = "CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid"
    query = f"SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY {order}"
    copy.schema = [row[0] for row in connection.exec_driver_sql(query)]


def _mariadb_schema(connection: sa.Connection, copy: LiveCopy) -> None:
    copy.method = "SHOW CREATE TABLE"
    listed = connection.execute(
        sa.text("SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = database()")
    )
    for table, kind in sorted(listed):
        if kind == "VIEW":
            continue
        what = "SEQUENCE" if kind == "SEQUENCE" else "TABLE"
        copy.schema.append(connection.exec_driver_sql(f"SHOW CREATE {what} `{table}`").one()[1])
    counted = connection.execute(
        sa.text(
            "SELECT (SELECT COUNT(*) FROM information_schema.views WHERE table_schema = database()),"
            " (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = database()),"
            " (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = database())"
        )
    ).one()
    for count, kind in zip(counted, ("views", "triggers", "routines"), strict=True):
        if count:
            copy.not_carried.append(f"{count} {kind} (SHOW CREATE TABLE copies tables and sequences only)")


def _pg_dump(connection: sa.Connection, url: sa.URL, copy: LiveCopy) -> bool:
    """The schema as ``pg_dump`` writes it, on this transaction's snapshot; False (and why) when it cannot."""
    program = shutil.which("pg_dump")
    if program is None:
        copy.not_carried.append("triggers, functions, views and domains (no pg_dump on PATH: the schema is reflected)")
        return False
    snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
    target = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    sections = []
    for section in ("pre-data", "post-data"):
        done = subprocess.run(
            [program, "--schema-only", "--no-owner", "--no-privileges", f"--section={section}",
             f"--snapshot={snapshot}", "--dbname", target],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PGAPPNAME": f"{APPLICATION_NAME} (pg_dump)"},
        )  # fmt: skip
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            copy.not_carried.append(f"triggers, functions, views and domains (pg_dump failed: {why}; reflected)")
            return False
        # psql meta-commands (\restrict in newer pg_dump) are not SQL
        sections.append("\n".join(line for line in done.stdout.splitlines() if not line.startswith("\\")))
    copy.method = "pg_dump"
    copy.schema, copy.constraints = [sections[0]], [sections[1]]
    # Each sequence read as a relation (ACCESS SHARE): pg_sequences' last_value takes ROW EXCLUSIVE on it.
    listed = connection.exec_driver_sql(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    )
    for (name,) in listed.all():
        value, called = connection.exec_driver_sql(f"SELECT last_value, is_called FROM {name}").one()
        if called:
            copy.sequences[str(name)] = int(value)
    return True


def _reflected_schema(connection: sa.Connection, copy: LiveCopy) -> None:
    copy.method = "reflection"
    copy.metadata = sa.MetaData()
    copy.metadata.reflect(connection)
    for name in sa.inspect(connection).get_sequence_names():
        sa.Sequence(name, metadata=copy.metadata)


def _rows(connection: sa.Connection, inspector: sa.Inspector, copy: LiveCopy) -> None:
    """The rows of every table of at most ``ROW_LIMIT`` rows whose foreign keys point at tables copied in full."""
    quote = connection.dialect.identifier_preparer.quote
    small: dict[str, list[dict[str, Any]]] = {}
    for table in inspector.get_table_names():
        query = f"SELECT * FROM {quote(table)}"
        found = [dict(row._mapping) for row in connection.exec_driver_sql(query).fetchmany(ROW_LIMIT + 1)]
        if len(found) <= ROW_LIMIT:
            small[table] = found
        else:
            copy.rows_not_copied.append(table)
    referred = {table: {fk["referred_table"] for fk in inspector.get_foreign_keys(table)} for table in small}
    changed = True
    while changed:  # a table referring to one not copied in full keeps its rows out too
        changed = False
        for table in list(small):
            if not referred[table] <= set(small) | {table}:
                del small[table]
                copy.rows_not_copied.append(table)
                changed = True
    copy.rows = small
    copy.rows_not_copied.sort()


def copy_into(scratch: Scratch, copy: LiveCopy) -> None:
    """Build the live database's schema and small tables' rows on the (empty) scratch database: the schema,
    the rows, then the constraints (pg_dump's post-data section: indexes, keys, triggers)."""

    def schema(connection: sa.Connection) -> None:
        _no_foreign_key_checks(connection)
        for script in copy.schema:
            _execute_script(connection, script)
        if copy.metadata is not None:
            copy.metadata.create_all(connection)

    def rows(connection: sa.Connection) -> None:
        _no_foreign_key_checks(connection)
        tables = sa.MetaData()
        tables.reflect(connection, only=[name for name, found in copy.rows.items() if found])
        for name, found in copy.rows.items():
            if found:
                connection.execute(tables.tables[name].insert(), found)

    def constraints(connection: sa.Connection) -> None:
        for script in copy.constraints:
            _execute_script(connection, script)
        for sequence, value in copy.sequences.items():
            connection.execute(sa.text("SELECT setval(:name, :value)"), {"name": sequence, "value": value})

    for phase in (schema, rows, constraints):
        scratch.database.run(phase)


def _no_foreign_key_checks(connection: sa.Connection) -> None:
    """On MariaDB, tables are created in name order and rows inserted in any: no foreign key checks meanwhile."""
    if connection.dialect.name in ("mysql", "mariadb"):
        connection.exec_driver_sql("SET SESSION foreign_key_checks = 0")


def _execute_script(connection: sa.Connection, script: str) -> None:
    """A statement, or pg_dump's script of them, run as the driver's own text (no bound parameters); the
    search_path pg_dump's script empties is put back (the connection goes back to the pool)."""
    postgresql = connection.dialect.name == "postgresql"
    search_path = connection.exec_driver_sql("SHOW search_path").scalar() if postgresql else None
    if connection.dialect.driver == "asyncpg":  # its cursor prepares statements: one at a time
        await_only(connection.connection.driver_connection.execute(script))  # type: ignore[union-attr]
    else:
        cursor = connection.connection.cursor()
        try:
            cursor.execute(script)
        finally:
            cursor.close()
    if postgresql:
        connection.execute(sa.text("SELECT pg_catalog.set_config('search_path', :path, false)"), {"path": search_path})


def _shown(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)
