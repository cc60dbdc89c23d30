"""Rewritten golden fixtures run under SQLAlchemy 1.4, which many applications still use (``test_sqlalchemy14.py``).

Run by the test under the interpreter of a virtualenv holding SQLAlchemy 1.4,
Alembic and the drivers (``make install`` makes ``.venv-sqlalchemy14``): nothing
of idempotify is imported here, as nothing of it is in a rewritten migration.
Reads ``{"url": ..., "jobs": [{"id", "input", "output", "naming_convention"}]}``
on stdin. For each job, on the emptied database at ``url``: the base schema,
the input's upgrade and downgrade, each reflected; then the same on the output,
its upgrade twice and its downgrade twice, each compared with the input's.
Writes ``{"sqlalchemy": version, "results": {id: [problem, ...]}}`` on stdout.
"""

from __future__ import annotations

import json
import sys
import traceback
import types
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.base_schema import BASE, empty

STEPS = [
    ("upgrade", "upgrade"),
    ("second upgrade", "upgrade"),
    ("downgrade", "downgrade"),
    ("second downgrade", "downgrade"),
]


def reflected(engine: Any) -> dict[str, Any]:
    """What the database holds, as the guards' kinds of object: tables, columns, keys, indexes, constraints."""
    inspector = sa.inspect(engine)
    found: dict[str, Any] = {}
    for schema in [None, *sorted(set(inspector.get_schema_names()) - {inspector.default_schema_name})]:
        if engine.dialect.name == "mysql" and schema is not None:
            continue  # MariaDB's schemas are the server's other databases
        for table in inspector.get_table_names(schema=schema):
            columns = inspector.get_columns(table, schema=schema)
            try:
                checks = sorted(c["name"] or "" for c in inspector.get_check_constraints(table, schema=schema))
            except NotImplementedError:
                checks = []
            found[f"{schema}.{table}"] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in columns],
                "primary key": inspector.get_pk_constraint(table, schema=schema).get("constrained_columns"),
                "foreign keys": sorted(
                    (k["name"] or "", k["constrained_columns"], k["referred_table"], k["referred_columns"])
                    for k in inspector.get_foreign_keys(table, schema=schema)
                ),
                "indexes": sorted(
                    (i["name"] or "", [str(c) for c in i["column_names"]], bool(i["unique"]))
                    for i in inspector.get_indexes(table, schema=schema)
                ),
                "unique constraints": sorted(
                    (u["name"] or "", u["column_names"]) for u in inspector.get_unique_constraints(table, schema=schema)
                ),
                "check constraints": checks,
            }
        found[f"{schema} views"] = sorted(inspector.get_view_names(schema=schema))
    if engine.dialect.name == "postgresql":
        found["enum types"] = sorted(e["name"] for e in inspector.get_enums(schema="*"))
        found["sequences"] = sorted(inspector.get_sequence_names())
    as_lists: dict[str, Any] = json.loads(json.dumps(found))  # tuples as lists, as they compare after a round trip
    return as_lists


def run(engine: Any, source: str, function: str, naming_convention: dict[str, str] | None) -> None:
    """``function`` of the migration ``source``, in one transaction, as Alembic's ``env.py`` runs it."""
    module = types.ModuleType("migration")
    exec(compile(source, "migration", "exec"), module.__dict__)
    options = {"target_metadata": sa.MetaData(naming_convention=naming_convention)} if naming_convention else {}
    with engine.connect() as connection, connection.begin():
        context = MigrationContext.configure(connection, opts=options)
        with Operations.context(context):
            getattr(module, function)()


def check(engine: Any, job: dict[str, Any]) -> list[str]:
    """What went wrong with the job's output, compared with its input: nothing, when the guards hold."""
    schemas = {}
    empty(engine)
    BASE.create_all(engine)
    for function in ("upgrade", "downgrade"):
        run(engine, job["input"], function, job["naming_convention"])
        schemas[function] = reflected(engine)
    empty(engine)
    BASE.create_all(engine)
    problems: list[str] = []
    for step, function in STEPS:
        try:
            run(engine, job["output"], function, job["naming_convention"])
        except Exception:  # noqa: BLE001 - reported to the test, which fails on it
            return [*problems, f"{step} failed:\n{traceback.format_exc()}"]
        if reflected(engine) != schemas[function]:
            problems.append(f"{step}: the schema differs from the input's {function}")
    return problems


def main() -> None:
    request = json.load(sys.stdin)
    engine = sa.create_engine(request["url"], poolclass=NullPool)
    results = {}
    for job in request["jobs"]:
        try:
            results[job["id"]] = check(engine, job)
        except Exception:  # noqa: BLE001 - the input itself failed: reported, and the test fails
            results[job["id"]] = [f"the input failed:\n{traceback.format_exc()}"]
    json.dump({"sqlalchemy": sa.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
