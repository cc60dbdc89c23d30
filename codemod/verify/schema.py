"""Schema snapshots: what the inspector sees, in a form that compares and explains its differences."""

from __future__ import annotations

import datetime
import json
import re
import uuid
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

Snapshot = dict[str, Any]


def snapshot(engine: sa.Engine) -> Snapshot:
    """``snapshot_of`` a new connection of ``engine``."""
    with engine.connect() as connection:
        return snapshot_of(connection)


def snapshot_of(connection: sa.Connection) -> Snapshot:
    """Tables (columns with types and nullability, keys, indexes, unique and check constraints), sequences, enums.

    Reflecting a table is the costly part, so each table's reflection is kept,
    keyed by a fingerprint of its definition read from the catalog in one
    query; a chain that grows the schema then costs a constant amount per
    revision, not one that grows with the number of tables.
    """
    inspector = sa.inspect(connection)
    dialect = connection.dialect.name
    catalog = _catalog_in_one_query(connection) if dialect == "postgresql" else _catalog(connection, inspector)
    tables: Snapshot = {}
    for table in catalog.tables:
        key = (dialect, table, catalog.fingerprints.get(table, ""))
        details = _REFLECTED.get(key) if table in catalog.fingerprints else None
        if details is None:
            with warnings.catch_warnings():
                # The expression indexes it skips are listed by name from the catalog (SQLite, below).
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression", sa.exc.SAWarning)
                details = _reflect(inspector, table)
            if len(_REFLECTED) > _KEEP:
                _REFLECTED.clear()
            _REFLECTED[key] = details
        tables[table] = details
    if catalog.sequences is not None:
        tables["sequences"] = catalog.sequences
    if catalog.enums is not None:
        tables["enums"] = catalog.enums
    if dialect == "sqlite":
        # SQLite's reflection leaves out expression indexes (with a warning): their names come from the catalog.
        query = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
        tables["indexes by name"] = [f"{table}.{name}" for table, name in connection.exec_driver_sql(query)]
    return tables


def rows_of(connection: sa.Connection, tables: Collection[str]) -> Snapshot:
    """The rows of ``tables`` (those that exist), as ``"rows of <table>"`` entries beside a snapshot's tables:
    a seed row lost by a guard is as much a difference as a lost column. Each row by column name, since a
    batch block on SQLite may move a column."""
    if not tables:
        return {}
    quote = connection.dialect.identifier_preparer.quote
    found: Snapshot = {}
    for name in sorted(set(tables) & set(sa.inspect(connection).get_table_names())):
        result = connection.execute(sa.text(f"SELECT * FROM {quote(name)}"))
        found[f"{ROWS}{name}"] = sorted(
            repr(sorted((column, _as_made(value)) for column, value in row._mapping.items())) for row in result
        )
    return found


# What a revision makes anew on every run: a uuid (uuid4(), with or without dashes), and the clock's reading.
_UUID = re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.IGNORECASE)
_TIMESTAMP = re.compile(r"\b(\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?")


def made_at_run_time(text: str) -> str:
    """``text`` with each uuid, and each timestamp of these days, said by its kind (``<uuid>``, ``<now>``).

    A seed row's ``uuid4()`` or ``datetime.now()`` differs from run to run, so between the baseline's database
    and the rewrite's, and in their ``--sql`` output; a row lost or changed otherwise still shows.
    """
    days = _these_days()
    text = _UUID.sub("<uuid>", text)
    return _TIMESTAMP.sub(lambda found: "<now>" if found.group(1) in days else found.group(0), text)


def _as_made(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return "<uuid>"
    if isinstance(value, datetime.date):  # a datetime too
        return "<now>" if value.isoformat()[:10] in _these_days() else value
    return made_at_run_time(value) if isinstance(value, str) else value


def _these_days() -> set[str]:
    """Yesterday, today and tomorrow, in UTC: the dates the clock may have given, in any time zone."""
    today = datetime.datetime.now(datetime.timezone.utc).date()
    return {(today + datetime.timedelta(days=offset)).isoformat() for offset in (-1, 0, 1)}


def schema_only(state: Snapshot) -> Snapshot:
    """``state`` without the rows ``rows_of`` added."""
    return {name: value for name, value in state.items() if not name.startswith(ROWS)}


def rows_only_of(state: Snapshot, tables: Collection[str]) -> Snapshot:
    """``state`` with the rows of ``tables`` only: as ``rows_of(tables)`` would have read them, when ``state``
    was read with the rows of more tables."""
    return {name: value for name, value in state.items() if not name.startswith(ROWS) or name[len(ROWS) :] in tables}


ROWS = "rows of "
_KEEP = 20_000
_REFLECTED: dict[tuple[str, str, str], dict[str, Any]] = {}

# PostgreSQL's fingerprint rows, as (columns, FROM and WHERE, ORDER BY): written once, read as plain queries
# (_FINGERPRINTS) and inside the one statement of _catalog_in_one_query.
_POSTGRESQL_FINGERPRINTS = [
    (
        "c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull",
        "pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() AND a.attnum > 0 AND NOT a.attisdropped",
        "c.relname, a.attnum",
    ),
    # An index as reflection sees it: its name, its key columns (attnums, named by the rows above; 0 for an
    # expression), unique or not. Read raw: pg_get_indexdef (pg_indexes) was most of a snapshot's time.
    (
        "c.relname, i.relname, x.indisunique, x.indisprimary, x.indisvalid, x.indnkeyatts, x.indkey::text",
        "pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'm', 'p') AND i.relkind IN ('i', 'I') AND n.nspname = current_schema()",
        "c.relname, i.relname",
    ),
    (
        "c.relname, o.conname, pg_get_constraintdef(o.oid)",
        "pg_constraint o JOIN pg_class c ON c.oid = o.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema()",
        "c.relname, o.conname",
    ),
]

# Catalog queries whose rows, first column the table name, change whenever anything the snapshot reflects
# changes; a table's fingerprint is its rows. Plain queries over one schema: MariaDB's information_schema
# is slow with correlated subqueries.
_FINGERPRINTS = {
    "sqlite": ["SELECT tbl_name, type, name, sql FROM sqlite_master WHERE tbl_name NOT LIKE 'sqlite_%' ORDER BY name"],
    "postgresql": [
        f"SELECT {columns} FROM {source} ORDER BY {order}" for columns, source, order in _POSTGRESQL_FINGERPRINTS
    ],
    "mysql": [
        "SELECT table_name, column_name, column_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = database() ORDER BY table_name, ordinal_position",
        "SELECT table_name, index_name, seq_in_index, column_name, non_unique FROM information_schema.statistics"
        " WHERE table_schema = database() ORDER BY table_name, index_name, seq_in_index",
        "SELECT table_name, constraint_name, column_name, referenced_table_name, referenced_column_name"
        " FROM information_schema.key_column_usage WHERE table_schema = database()"
        " ORDER BY table_name, constraint_name, ordinal_position",
        "SELECT table_name, constraint_name, check_clause FROM information_schema.check_constraints"
        " WHERE constraint_schema = database() ORDER BY table_name, constraint_name",
    ],
}


@dataclass
class _Catalog:
    """What a snapshot reads of the catalog besides each table's reflection: the tables (sorted), their
    fingerprints, the sequences and the enums (None where the dialect has none)."""

    tables: list[str]
    fingerprints: dict[str, str]
    sequences: list[str] | None
    enums: list[tuple[str, tuple[str, ...]]] | None


def _catalog(connection: sa.Connection, inspector: sa.Inspector) -> _Catalog:
    """``_Catalog`` through the inspector, and the fingerprint queries, one by one."""
    sequences = sorted(inspector.get_sequence_names()) if connection.dialect.supports_sequences else None
    enums = None
    if connection.dialect.name == "postgresql":
        found = inspector.get_enums()  # type: ignore[attr-defined]  # PostgreSQL's inspector has it
        enums = sorted((enum["name"], tuple(enum["labels"])) for enum in found)
    return _Catalog(sorted(inspector.get_table_names()), _fingerprints(connection), sequences, enums)


# PostgreSQL: ``_catalog`` in one statement, each part a JSON array (text, so that every driver reads it alike).
# The tables, sequences and enums are chosen as SQLAlchemy's inspector chooses them with no schema given
# (visible on the search path, outside pg_catalog; tables neither temporary nor foreign); the fingerprint
# rows are those of _POSTGRESQL_FINGERPRINTS, as _FINGERPRINTS reads them one query at a time.
_ONE_QUERY = """
SELECT
  (SELECT json_agg(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p') AND c.relpersistence != 't'
     AND pg_table_is_visible(c.oid) AND n.nspname != 'pg_catalog')::text,
  (SELECT json_agg(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'S' AND pg_table_is_visible(c.oid) AND n.nspname != 'pg_catalog')::text,
  (SELECT json_agg(json_build_array(
     t.typname,
     (SELECT json_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)))
   FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE t.typtype = 'e' AND pg_type_is_visible(t.oid) AND n.nspname != 'pg_catalog')::text,
""" + ",".join(
    f"\n  (SELECT json_agg(json_build_array({columns}) ORDER BY {order}) FROM {source})::text"
    for columns, source, order in _POSTGRESQL_FINGERPRINTS
)

_ONE_QUERY_PREPARED = "idempotify_catalog"
_IS_PREPARED = f"SELECT 1 FROM pg_prepared_statements WHERE name = '{_ONE_QUERY_PREPARED}'"


def _catalog_in_one_query(connection: sa.Connection) -> _Catalog:
    """``_catalog`` on PostgreSQL in one round trip instead of six (the snapshots of a revision are many).

    The statement is prepared once per connection: planning its seven subqueries took as long as running them.
    A prepared statement outlives the transactions it was prepared in, rolled back or not, and lasts as long
    as the connection, unless a migration runs ``DEALLOCATE`` or ``DISCARD ALL``: whether it is still there is
    asked each time (a cheap read of ``pg_prepared_statements``).
    """
    if connection.exec_driver_sql(_IS_PREPARED).first() is None:
        connection.exec_driver_sql(f"PREPARE {_ONE_QUERY_PREPARED} AS {_ONE_QUERY}")
    tables, sequences, enums, *fingerprinted = (
        json.loads(part) if part is not None else []
        for part in connection.exec_driver_sql(f"EXECUTE {_ONE_QUERY_PREPARED}").one()
    )
    rows: dict[str, list[str]] = {}
    for part in fingerprinted:
        for table, *values in part:
            rows.setdefault(str(table), []).append(repr(values))
    native = connection.dialect.supports_native_enum
    labelled = [(name, tuple(labels or ())) for name, labels in enums] if native else []
    return _Catalog(
        sorted(tables),
        {table: "\n".join(lines) for table, lines in rows.items()},
        sorted(sequences),
        sorted(labelled),
    )


def _fingerprints(connection: sa.Connection) -> dict[str, str]:
    """Each table's fingerprint, or nothing on a dialect without queries for them (every table is reflected)."""
    queries = _FINGERPRINTS.get("mysql" if connection.dialect.name == "mariadb" else connection.dialect.name, [])
    rows: dict[str, list[str]] = {}
    for query in queries:
        for table, *values in connection.execute(sa.text(query)):
            rows.setdefault(str(table), []).append(repr(values))
    return {table: "\n".join(lines) for table, lines in rows.items()}


def _reflect(inspector: sa.Inspector, table: str) -> dict[str, Any]:
    return {
        "columns": sorted(  # by name: batch mode on SQLite may re-add a column at the end
            (column["name"], str(column["type"]), column["nullable"]) for column in inspector.get_columns(table)
        ),
        "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
        "indexes": sorted(
            (index["name"] or "", tuple(str(c) for c in index["column_names"]), bool(index["unique"]))
            for index in inspector.get_indexes(table)
        ),
        "unique": sorted(
            tuple(str(c) for c in unique["column_names"]) for unique in inspector.get_unique_constraints(table)
        ),
        "foreign_keys": sorted(
            (
                tuple(fk["constrained_columns"]),
                fk["referred_table"],
                tuple(fk["referred_columns"]),
                # ON DELETE / ON UPDATE: a key re-created without them is another key.
                tuple(sorted((key, str(value)) for key, value in fk.get("options", {}).items() if value)),
            )
            for fk in inspector.get_foreign_keys(table)
        ),
        "checks": sorted(check["name"] or "" for check in inspector.get_check_constraints(table)),
    }


def differences(expected: Snapshot, actual: Snapshot) -> list[str]:
    """What differs between two snapshots, one line per table and aspect."""
    lines = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            lines.append(f"{name}: missing")
        elif name not in expected:
            lines.append(f"{name}: unexpected")
        elif expected[name] != actual[name]:
            if isinstance(expected[name], dict):
                for aspect in sorted(expected[name]):
                    if expected[name][aspect] != actual[name].get(aspect):
                        lines.append(
                            f"{name}.{aspect}: {_difference(expected[name][aspect], actual[name].get(aspect))}"
                        )
            else:
                lines.append(f"{name}: {_difference(expected[name], actual[name])}")
    return lines


def _difference(expected: object, actual: object) -> str:
    """``expected X, got Y``; for two long lists, only what one has and the other lacks (a table's eighty
    index names, two of them missing, said in full twice, hide the two)."""
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple) and len(expected) + len(actual) > 8:
        missing = [item for item in expected if item not in actual]
        unexpected = [item for item in actual if item not in expected]
        if missing or unexpected:
            said = [f"missing {missing}"] if missing else []
            said += [f"unexpected {unexpected}"] if unexpected else []
            return f"{'; '.join(said)} (of {len(expected)} expected)"
    return f"expected {expected}, got {actual}"
