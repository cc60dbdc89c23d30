"""Schema snapshots: what the inspector sees, in a form that compares and explains its differences."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

Snapshot = dict[str, Any]


def snapshot(engine: sa.Engine) -> Snapshot:
    """Tables (columns with types and nullability, keys, indexes, unique and check constraints), sequences, enums."""
    with engine.connect() as connection:
        return _snapshot(sa.inspect(connection))


def _snapshot(inspector: sa.Inspector) -> Snapshot:
    tables: Snapshot = {}
    for table in sorted(inspector.get_table_names()):
        tables[table] = {
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
    if inspector.bind.dialect.supports_sequences:
        tables["sequences"] = sorted(inspector.get_sequence_names())
    if inspector.bind.dialect.name == "postgresql":
        enums = inspector.get_enums()  # type: ignore[attr-defined]  # PostgreSQL's inspector has it
        tables["enums"] = sorted((enum["name"], tuple(enum["labels"])) for enum in enums)
    return tables


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
