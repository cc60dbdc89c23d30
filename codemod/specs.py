"""The table of op kinds idempotify guards.

One row per Alembic operation: the parameters it takes in ``op.X(...)`` form
and in ``batch_op.X(...)`` form, and the checks that decide whether it must
run. Adding an op kind is adding a row here and a folder under ``fixtures/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ObjectKind(Enum):
    """A kind of schema object a guard can look up in the live database."""

    TABLE = "table"
    COLUMN = "column"
    INDEX = "index"


@dataclass(frozen=True)
class Check:
    """One condition of a guard: the object named by ``args`` must be present or absent.

    ``args`` are parameter names of the op, passed positionally to the helper in
    this order; ``schema`` is passed by keyword when the op has one.
    """

    kind: ObjectKind
    present: bool
    args: tuple[str, ...]

    @property
    def helper(self) -> str:
        """Name of the generated helper that answers this check."""
        state = "exists" if self.present else "missing"
        return f"_idempotify_{self.kind.value}_{state}"

    @property
    def subject(self) -> str:
        """The parameter naming the object itself (the last of ``args``)."""
        return self.args[-1]


@dataclass(frozen=True)
class OpSpec:
    """How one Alembic op is guarded.

    ``op_params`` and ``batch_params`` list the op's positional parameters in
    order (``batch_params`` is ``None`` when there is no batch form). In batch
    form ``table_name`` and ``schema`` come from ``op.batch_alter_table(...)``.
    ``native_flags`` are keyword arguments with which Alembic itself makes the
    op idempotent; a call that passes one as ``True`` is left alone.
    ``optional`` parameters are passed to the guard as ``None`` when omitted;
    ``description`` is the guard in words, for ``--list-ops`` and the README.
    """

    name: str
    checks: tuple[Check, ...]
    op_params: tuple[str, ...]
    batch_params: tuple[str, ...] | None
    native_flags: tuple[str, ...] = ()
    optional: frozenset[str] = frozenset()
    description: str = ""

    @property
    def forms(self) -> str:
        """The forms the op is guarded in, as the README's table writes them."""
        return "op, batch_op" if self.batch_params is not None else "op"


_TABLE = ObjectKind.TABLE
_COLUMN = ObjectKind.COLUMN
_INDEX = ObjectKind.INDEX

SPECS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            name="create_table",
            checks=(Check(_TABLE, present=False, args=("table_name",)),),
            op_params=("table_name",),
            batch_params=None,
            native_flags=("if_not_exists",),
            description="table absent; a following op.bulk_insert(t, ...) of its result goes under the same guard",
        ),
        OpSpec(
            name="drop_table",
            checks=(Check(_TABLE, present=True, args=("table_name",)),),
            op_params=("table_name",),
            batch_params=None,
            native_flags=("if_exists",),
            description="table present",
        ),
        OpSpec(
            name="add_column",
            checks=(Check(_COLUMN, present=False, args=("table_name", "column")),),
            op_params=("table_name", "column"),
            batch_params=("column",),
            native_flags=("if_not_exists",),
            description="column absent (name from the sa.Column(...) literal, else <expr>.name at run time)",
        ),
        OpSpec(
            name="drop_column",
            checks=(Check(_COLUMN, present=True, args=("table_name", "column_name")),),
            op_params=("table_name", "column_name"),
            batch_params=("column_name",),
            native_flags=("if_exists",),
            description="column present",
        ),
        OpSpec(
            name="create_index",
            checks=(Check(_INDEX, present=False, args=("table_name", "index_name")),),
            op_params=("index_name", "table_name", "columns"),
            batch_params=("index_name", "columns"),
            native_flags=("if_not_exists",),
            description="index absent",
        ),
        OpSpec(
            name="drop_index",
            checks=(Check(_INDEX, present=True, args=("table_name", "index_name")),),
            op_params=("index_name", "table_name"),
            batch_params=("index_name",),
            native_flags=("if_exists",),
            optional=frozenset({"table_name"}),
            description="index present (without a table name: looked up in the dialect's catalog)",
        ),
    )
}
