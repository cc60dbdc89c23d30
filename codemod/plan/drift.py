"""Drift: how an object a guard found differs from the one the skipped op would have made.

The object is named by the guard's own log arguments (table, column, index or
constraint names), not by its words. It is described, through the inspector,
on two databases at the chain's head: the copy of the live database after the
rewritten chain ran on it, and a fresh database that ran the whole rewritten
chain from the base (what the ops make when nothing is there). Comparing at
the head rather than right after the op is what makes one fresh run enough;
a later revision that changes the object changes it on both.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

Description = dict[str, str]


def describe(connection: sa.Connection, names: Iterable[str]) -> Description:
    """What the database has of the objects ``names`` names: columns (type, nullability) when a table and one
    of its columns are named, indexes (table, columns, uniqueness), unique constraints (columns), foreign keys
    (columns and target), and a table's columns when only the table is named."""
    inspector = sa.inspect(connection)
    wanted = set(names)
    tables = sorted(inspector.get_table_names())
    named_tables = [table for table in tables if table in wanted]
    found: Description = {}
    # An index or constraint may come with no table name (an index's guard names the index only).
    for table in named_tables or tables:
        columns = {column["name"]: column for column in inspector.get_columns(table)}
        for name in sorted(wanted & columns.keys()):
            found[f"column {table}.{name}"] = _column(columns[name])
        for index in inspector.get_indexes(table):
            if index["name"] in wanted:
                unique = " unique" if index["unique"] else ""
                found[f"index {index['name']}"] = f"on {table}({_names(index['column_names'])}){unique}"
        for constraint in inspector.get_unique_constraints(table):
            if constraint["name"] in wanted:
                found[f"unique constraint {constraint['name']}"] = f"on {table}({_names(constraint['column_names'])})"
        for key in inspector.get_foreign_keys(table):
            if key["name"] in wanted:
                target = f"{key['referred_table']}({_names(key['referred_columns'])})"
                found[f"foreign key {key['name']}"] = f"{table}({_names(key['constrained_columns'])}) -> {target}"
        if table in wanted and not wanted & columns.keys() and len(wanted) == 1:
            found[f"table {table}"] = ", ".join(f"{name} {_column(column)}" for name, column in columns.items())
    return found


def drift(expected: Description, existing: Description) -> list[str]:
    """One line per object that differs: what the chain makes, what the database has."""
    return [
        f"{key}: the chain makes {expected.get(key, 'nothing')}; the database has {existing.get(key, 'nothing')}"
        for key in sorted(expected.keys() | existing.keys())
        if expected.get(key) != existing.get(key)
    ]


def _column(column: sa.engine.interfaces.ReflectedColumn) -> str:
    return f"{column['type']} {'NULL' if column['nullable'] else 'NOT NULL'}"


def _names(names: Iterable[str | None]) -> str:
    return ", ".join(str(name) for name in names)
