"""Schema snapshots: what the inspector sees, in a form that compares and explains its differences."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

Snapshot = dict[str, Any]


def snapshot(engine: sa.Engine) -> Snapshot:
    """Tables (columns with types and nullability, keys, indexes, unique and check constraints), sequences, enums.

    Reflecting a table is the costly part, so each table's reflection is kept,
    keyed by a fingerprint of its definition read from the catalog in one
    query; a chain that grows the schema then costs a constant amount per
    revision, not one that grows with the number of tables.
    """
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        dialect = connection.dialect.name
        fingerprints = _fingerprints(connection)
        tables: Snapshot = {}
        for table in sorted(inspector.get_table_names()):
            key = (dialect, table, fingerprints.get(table, ""))
            details = _REFLECTED.get(key) if table in fingerprints else None
            if details is None:
                details = _reflect(inspector, table)
                if len(_REFLECTED) > _KEEP:
                    _REFLECTED.clear()
                _REFLECTED[key] = details
            tables[table] = details
        if connection.dialect.supports_sequences:
            tables["sequences"] = sorted(inspector.get_sequence_names())
        if dialect == "postgresql":
            enums = inspector.get_enums()  # type: ignore[attr-defined]  # PostgreSQL's inspector has it
            tables["enums"] = sorted((enum["name"], tuple(enum["labels"])) for enum in enums)
    return tables


_KEEP = 20_000
_REFLECTED: dict[tuple[str, str, str], dict[str, Any]] = {}

# One row per table: its name and a text that changes whenever anything the snapshot reflects changes.
_FINGERPRINTS = {
    "sqlite": [
        "SELECT tbl_name, group_concat(type || ':' || name || ':' || coalesce(sql, ''), char(10))"
        " FROM sqlite_master WHERE tbl_name NOT LIKE 'sqlite_%' GROUP BY tbl_name"
    ],
    "postgresql": [
        "SELECT c.relname, concat_ws('|',"
        " (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull,"
        "  ',' ORDER BY a.attnum) FROM pg_attribute a"
        "  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),"
        " (SELECT string_agg(pg_get_indexdef(i.indexrelid), ',' ORDER BY 1) FROM pg_index i WHERE i.indrelid = c.oid),"
        " (SELECT string_agg(o.conname || ' ' || pg_get_constraintdef(o.oid), ',' ORDER BY 1)"
        "  FROM pg_constraint o WHERE o.conrelid = c.oid))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
    ],
    "mysql": [
        "SET SESSION group_concat_max_len = 16777216",
        "SELECT t.table_name, concat_ws('|',"
        " (SELECT group_concat(concat_ws(' ', column_name, column_type, is_nullable) ORDER BY ordinal_position)"
        "  FROM information_schema.columns c WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name),"
        " (SELECT group_concat(concat_ws(' ', index_name, seq_in_index, column_name, non_unique)"
        "  ORDER BY index_name, seq_in_index) FROM information_schema.statistics s"
        "  WHERE s.table_schema = t.table_schema AND s.table_name = t.table_name),"
        " (SELECT group_concat(concat_ws(' ', constraint_name, column_name, referenced_table_name,"
        "  referenced_column_name) ORDER BY constraint_name, ordinal_position)"
        "  FROM information_schema.key_column_usage k"
        "  WHERE k.table_schema = t.table_schema AND k.table_name = t.table_name),"
        " (SELECT group_concat(concat_ws(' ', constraint_name, check_clause) ORDER BY constraint_name)"
        "  FROM information_schema.check_constraints x"
        "  WHERE x.constraint_schema = t.table_schema AND x.table_name = t.table_name))"
        " FROM information_schema.tables t WHERE t.table_schema = database() AND t.table_type = 'BASE TABLE'",
    ],
}


def _fingerprints(connection: sa.Connection) -> dict[str, str]:
    """Each table's fingerprint, or nothing on a dialect without a query for them (every table is reflected)."""
    queries = _FINGERPRINTS.get("mysql" if connection.dialect.name == "mariadb" else connection.dialect.name, [])
    result = None
    for query in queries:
        result = connection.execute(sa.text(query))
    return {} if result is None else {str(name): str(fingerprint) for name, fingerprint in result}


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
            (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
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
                            f"{name}.{aspect}: expected {expected[name][aspect]}, got {actual[name].get(aspect)}"
                        )
            else:
                lines.append(f"{name}: expected {expected[name]}, got {actual[name]}")
    return lines
