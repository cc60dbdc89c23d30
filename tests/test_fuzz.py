"""Property-based: random migrations over a small random schema, rewritten and executed.

Each example is a valid migration on a fresh database: a random sequence of
the core ops (tables, columns, indexes), in op and batch form, and batch
blocks that drop an index, unique constraint or primary key and create one in
its place (under a new name, or the same one; a primary key also on another
column), with names as literals, ``op.f()``,
module constants and loop variables. On SQLite (and on PostgreSQL and MariaDB
under ``CI=true``) the rewrite must build the same schema, survive a re-run
unchanged, and complete the original after a crash after any of its ops.
``make fuzz`` runs many more examples (``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codemod.formatting import Style
from codemod.runner import rewrite_source
from codemod.verify.execution import Crash, run_migration
from codemod.verify.schema import snapshot
from tests.conftest import require_dialect
from tests.databases import scratch_database

settings.register_profile("default", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DIALECTS = ["sqlite"] + (["postgresql", "mariadb"] if os.environ.get("CI", "").lower() == "true" else [])


BASE = "from alembic import op\nimport sqlalchemy as sa\n\n\ndef upgrade():\n" + "".join(
    # A named primary key without AUTO_INCREMENT, which MariaDB would not let a swap drop.
    f"    op.create_table('b{i}', sa.Column('id', sa.Integer, autoincrement=False, nullable=False),"
    f" sa.Column('c0', sa.String(20)), sa.Column('c1', sa.Integer, nullable=False),"
    f" sa.PrimaryKeyConstraint('id', name='pk_b{i}'), sa.UniqueConstraint('c1', name='uq_b{i}_c1'))\n"
    f"    op.create_index('ix_b{i}_c0', 'b{i}', ['c0'])\n"
    for i in (1, 2)
)


@dataclass
class Model:
    """The schema the generated ops build. Only objects of the base schema are dropped: an object a
    migration both creates and drops cannot be guarded (idempotify reports it), so it is not generated."""

    tables: dict[str, list[str]] = field(default_factory=lambda: {"b1": ["id", "c0", "c1"], "b2": ["id", "c0", "c1"]})
    indexes: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"ix_b1_c0": ("b1", "c0"), "ix_b2_c0": ("b2", "c0")}
    )
    uniques: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"uq_b1_c1": ("b1", "c1"), "uq_b2_c1": ("b2", "c1")}
    )
    primary_keys: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"pk_b1": ("b1", "id"), "pk_b2": ("b2", "id")}
    )
    base: set[str] = field(
        default_factory=lambda: {
            *("b1", "b2", "c0", "c1", "ix_b1_c0", "ix_b2_c0", "uq_b1_c1", "uq_b2_c1", "pk_b1", "pk_b2")
        }
    )
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def _name(draw: st.DrawFn, value: str, constants: dict[str, str], receiver: str = "op") -> str:
    style = draw(st.sampled_from(["literal", "f", "constant"]))
    if style == "f":
        return f"{receiver}.f({value!r})"
    if style == "constant":
        constant = f"NAME_{len(constants)}"
        constants[constant] = value
        return constant
    return repr(value)


def _table_op(draw: st.DrawFn, model: Model, constants: dict[str, str]) -> str | None:
    """``op.create_table`` of a new table, or ``op.drop_table`` of an untouched base table."""
    droppable = [
        t
        for t in model.base & set(model.tables)
        if not any(where[0] == t for where in (*model.indexes.values(), *model.uniques.values()))
    ]
    drop: bool = bool(droppable) and draw(st.booleans())
    if drop:
        table = draw(st.sampled_from(sorted(droppable)))
        del model.tables[table]
        return f"op.drop_table({_name(draw, table, constants)})"
    table = model.fresh("t")
    model.tables[table] = ["id", "c0"]
    return (
        f"op.create_table({_name(draw, table, constants)}, sa.Column('id', sa.Integer, primary_key=True),"
        " sa.Column('c0', sa.String(20)))"
    )


def _table_level_op(draw: st.DrawFn, model: Model, constants: dict[str, str], kind: str, batch: bool) -> str | None:
    """A column or index op on one table, in op form or ``batch_op`` form."""
    table = draw(st.sampled_from(sorted(model.tables)))
    receiver = "batch_op" if batch else "op"
    table_arg = "" if batch else f"{_name(draw, table, constants)}, "
    keys = (*model.indexes.values(), *model.uniques.values(), *model.primary_keys.values())
    indexed = {column for where, column in keys if where == table}
    if kind == "add_column":
        column = model.fresh("n")
        model.tables[table].append(column)
        if draw(st.booleans()):  # through a loop variable
            statement = f"for name in ({column!r},):\n    {receiver}.add_column({table_arg}sa.Column(name, sa.Integer))"
        else:
            statement = f"{receiver}.add_column({table_arg}sa.Column({column!r}, sa.Integer))"
    elif kind == "drop_column":
        droppable = [c for c in model.tables[table] if c in model.base and c not in indexed]
        if not droppable:
            return None
        column = draw(st.sampled_from(droppable))
        model.tables[table].remove(column)
        statement = f"{receiver}.drop_column({table_arg}{column!r})"
    elif kind == "create_index":
        if len(model.tables[table]) < 2:
            return None
        column = draw(st.sampled_from(model.tables[table][1:]))
        name = model.fresh("ix_")
        model.indexes[name] = (table, column)
        statement = f"{receiver}.create_index({_name(draw, name, constants, receiver)}, {table_arg}[{column!r}])"
    else:
        names = [name for name, where in model.indexes.items() if where[0] == table and name in model.base]
        if not names:
            return None
        name = draw(st.sampled_from(names))
        del model.indexes[name]
        keyword = "" if batch else f", table_name={_name(draw, table, constants)}"
        statement = f"{receiver}.drop_index({_name(draw, name, constants, receiver)}{keyword})"
    if batch:
        return f"with op.batch_alter_table({_name(draw, table, constants)}) as batch_op:\n" + _indent(statement)
    return statement


def _batch_swap(draw: st.DrawFn, model: Model, constants: dict[str, str]) -> str | None:
    """A batch block that drops an index, unique constraint or primary key of the base schema and creates one in
    its place, under a new name or the same one (decided together either way: the create runs whenever the drop
    does); a primary key on its own column or on another (a swap)."""
    table = draw(st.sampled_from(sorted(model.tables)))
    kind = draw(st.sampled_from(["index", "unique", "primary"]))
    objects = {"index": model.indexes, "unique": model.uniques, "primary": model.primary_keys}[kind]
    names = [name for name, where in objects.items() if where[0] == table and name in model.base]
    candidates = ("id", "c1") if kind == "primary" else ("c0", "c1")  # c0 is nullable: no primary key on it
    columns = [column for column in candidates if column in model.tables[table]]
    if not names or not columns:
        return None
    old = draw(st.sampled_from(names))
    del objects[old]
    model.base.discard(old)  # dropped here: a later op must not drop it again
    new = old if draw(st.booleans()) else model.fresh({"index": "ix_", "unique": "uq_", "primary": "pk_"}[kind])
    column = draw(st.sampled_from(columns))
    objects[new] = (table, column)
    if kind == "index":
        drop = f"batch_op.drop_index({_name(draw, old, constants, 'batch_op')})"
        create = f"batch_op.create_index({_name(draw, new, constants, 'batch_op')}, [{column!r}])"
    elif kind == "unique":
        drop = f"batch_op.drop_constraint({_name(draw, old, constants, 'batch_op')}, type_='unique')"
        create = f"batch_op.create_unique_constraint({_name(draw, new, constants, 'batch_op')}, [{column!r}])"
    else:
        drop = f"batch_op.drop_constraint({_name(draw, old, constants, 'batch_op')}, type_='primary')"
        create = f"batch_op.create_primary_key({_name(draw, new, constants, 'batch_op')}, [{column!r}])"
    return f"with op.batch_alter_table({_name(draw, table, constants)}) as batch_op:\n    {drop}\n    {create}"


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


@st.composite
def migrations(draw: st.DrawFn) -> str:
    model = Model()
    constants: dict[str, str] = {}
    statements: list[str] = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["table", "add_column", "drop_column", "create_index", "drop_index", "swap"]))
        if kind == "table":
            statement = _table_op(draw, model, constants)
        elif kind == "swap":
            statement = _batch_swap(draw, model, constants)
        else:
            statement = _table_level_op(draw, model, constants, kind, batch=draw(st.booleans()))
        if statement is not None:
            statements.append(_indent(statement))
    header = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
    return (
        "from alembic import op\nimport sqlalchemy as sa\n\nrevision = 'fuzz'\ndown_revision = None\n"
        f"{header}\n\ndef upgrade():\n" + "\n".join(statements or ["    pass"]) + "\n\n\ndef downgrade():\n    pass\n"
    )


@pytest.mark.parametrize("dialect", DIALECTS)
@given(source=migrations())
def test_random_migrations_rewrite_into_equivalent_rerunnable_ones(dialect: str, source: str) -> None:
    require_dialect(dialect)
    rewritten = rewrite_source(source.encode(), Style())[0].decode()
    assert rewrite_source(rewritten.encode(), Style())[0].decode() == rewritten
    with scratch_database(dialect) as engine:
        run_migration(engine, BASE)
        ops = run_migration(engine, source)
        expected = snapshot(engine)
        run_migration(engine, rewritten)
        assert snapshot(engine) == expected, "a re-run changed the schema"
    for crash_after in range(1, ops):
        with scratch_database(dialect) as engine:
            run_migration(engine, BASE)
            with pytest.raises(Crash):
                run_migration(engine, source, crash_after=crash_after)
            run_migration(engine, rewritten)
            assert snapshot(engine) == expected, f"after a crash after op {crash_after} of {ops}"
    with scratch_database(dialect) as engine:
        run_migration(engine, BASE)
        run_migration(engine, rewritten)
        assert snapshot(engine) == expected, "the rewrite builds another schema"
