"""The table of op kinds idempotify guards.

One row per Alembic operation: the parameters it takes in ``op.X(...)`` form
and in ``batch_op.X(...)`` form, and the checks that decide whether it must
run. Adding an op kind is adding a row here (and a finder in ``runtime.py``,
if it checks a new kind of object) and a folder under ``fixtures/``.
"""

from __future__ import annotations

from dataclasses import dataclass

HELPER_PREFIX = "_idempotify_"
# What the checked object is called in a guard and in the deploy log, where its helper's name says it shorter.
_LABELS = {
    "unique": "unique constraint",
    "primary_key": "primary key",
    "foreign_key": "foreign key",
    "check": "check constraint",
    "exclude": "exclusion constraint",
    "enum": "enum type",
}


@dataclass(frozen=True)
class Check:
    """One condition of a guard, answered by a generated helper.

    ``args`` are parameter names of the op, passed positionally to the helper
    in this order; ``keywords`` are passed by keyword when the op has them.
    ``subject`` is the parameter naming the object: an enclosing ``if`` that
    mentions it already guards the op. ``only_with`` makes the check apply only
    when that parameter is passed; ``unnamed`` allows a ``None`` subject (the
    helper then names it by the naming convention, or matches it by its
    columns), and ``unnamed_keywords`` are passed only then. An ``_exists``
    check is taken to remove its object (a drop), except that with
    ``removes_with`` it does only when that parameter is passed (an
    ``alter_column`` renames its column only with ``new_column_name``).
    ``constraint_type`` is the type of constraint checked (``primary``,
    ``unique``, ``foreignkey``, ``check``, ``exclude``), or ``type_param`` the
    parameter that gives it; a check on a column, index or constraint takes
    ``skip_without_table`` when the migration function removes its table.
    ``object_kind`` names the kind for the catalog checks of objects that
    only SQL makes (views, triggers, extensions, enum values), whose helper
    takes the kind as its first argument.
    """

    helper_suffix: str
    args: tuple[str, ...]
    subject: str
    keywords: tuple[str, ...] = ("schema",)
    only_with: str | None = None
    unnamed: bool = False
    unnamed_keywords: tuple[str, ...] = ()
    removes_with: str | None = None
    constraint_type: str | None = None
    type_param: str | None = None
    object_kind: str | None = None

    @property
    def helper(self) -> str:
        """Name of the helper an older idempotify wrote guards of this check with."""
        return HELPER_PREFIX + self.helper_suffix

    @property
    def check(self) -> str:
        """What makes the op run, as a guard says it: ``no column`` (it creates one), ``column`` (it needs one)."""
        if self.object_kind is not None:
            label = self.object_kind.replace("_", " ")
        else:
            kind = self.helper_suffix.rsplit("_", 1)[0]
            label = _LABELS.get(kind, kind)
        return f"no {label}" if self.creates else label

    @property
    def creates(self) -> bool:
        """True when the op runs only while the object is absent (it creates it)."""
        return self.helper_suffix.endswith("_missing")

    @property
    def kind(self) -> str:
        """The kind of object checked: table, column, index, sequence, or constraint."""
        if self.object_kind is not None:
            return self.object_kind
        kind = self.helper_suffix.rsplit("_", 1)[0]
        return kind if kind in {"table", "column", "index", "sequence", "enum"} else "constraint"


@dataclass(frozen=True)
class OpSpec:
    """How one Alembic op is guarded.

    ``op_params`` and ``batch_params`` list the op's positional parameters in
    order (``batch_params`` is ``None`` when there is no batch form). In batch
    form ``batch_table`` names the parameters that ``op.batch_alter_table(...)``
    supplies (its table name and schema). ``native_flags`` are keyword
    arguments with which Alembic itself makes the op idempotent; a call that
    passes one as ``True`` is left alone. ``optional`` parameters are passed to
    the guard as ``None`` when omitted. ``via_execute`` names the DDL construct
    for ops written as ``op.execute(Construct(...))``; ``via_method`` the method
    for ops written as ``enum.create(bind)``. ``description`` is the
    guard in words, for ``--list-ops`` and the README.
    """

    name: str
    checks: tuple[Check, ...]
    op_params: tuple[str, ...]
    batch_params: tuple[str, ...] | None
    batch_table: tuple[str, str] = ("table_name", "schema")
    native_flags: tuple[str, ...] = ()
    optional: frozenset[str] = frozenset()
    via_execute: str | None = None
    via_method: str | None = None
    via_sql: bool = False
    skipped_result: str | None = None
    description: str = ""

    @property
    def forms(self) -> str:
        """The forms the op is guarded in, as the README's table writes them."""
        if self.via_execute is not None:
            return f"op.execute({self.via_execute}(...))" + (", SQL" if self.via_sql else "")
        if self.via_method is not None:
            return f"<enum>.{self.via_method}(bind)"
        if self.via_sql:
            return "SQL"
        return "op, batch_op" if self.batch_params is not None else "op"


_CONSTRAINT = ("constraint_name", "table_name", "columns")
_ON_TABLE = ("schema", "skip_without_table")
# A constraint a batch block adds: when Alembic copies the table (always on SQLite), the copy replaces a
# constraint of the same name, so the op re-applies rather than fails, and its guard lets it run there.
_IN_A_COPY = (*_ON_TABLE, "copied")

SPECS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            name="create_table",
            checks=(Check("table_missing", ("table_name",), subject="table_name"),),
            op_params=("table_name",),
            batch_params=None,
            native_flags=("if_not_exists",),
            skipped_result="table",
            description="table absent, or there without an index it makes by CREATE INDEX (Index(...), index=True): "
            "then it runs, and fails as unguarded, with a warning; on PostgreSQL, enum types its columns declare "
            "that exist already are reused; op.bulk_insert(t, ...) of its result runs while the table is empty",
        ),
        OpSpec(
            name="drop_table",
            checks=(Check("table_exists", ("table_name",), subject="table_name"),),
            op_params=("table_name",),
            batch_params=None,
            native_flags=("if_exists",),
            description="table present",
        ),
        OpSpec(
            name="rename_table",
            checks=(
                Check("table_exists", ("old_table_name",), subject="old_table_name"),
                Check("table_missing", ("new_table_name",), subject="new_table_name"),
            ),
            op_params=("old_table_name", "new_table_name"),
            batch_params=None,
            description="old table present and new table absent",
        ),
        OpSpec(
            name="rename_index",
            checks=(
                Check("index_exists", ("table_name", "index_name"), subject="index_name"),
                Check("index_missing", ("table_name", "new_index_name"), subject="new_index_name"),
            ),
            op_params=("index_name", "new_index_name", "table_name"),
            batch_params=None,
            optional=frozenset({"table_name"}),
            via_sql=True,
            description="old index present and new index absent (ALTER INDEX ... RENAME TO ..., in SQL only)",
        ),
        OpSpec(
            name="rename_sequence",
            checks=(
                Check("sequence_exists", ("sequence_name",), subject="sequence_name"),
                Check("sequence_missing", ("new_sequence_name",), subject="new_sequence_name"),
            ),
            op_params=("sequence_name", "new_sequence_name"),
            batch_params=None,
            via_sql=True,
            description="old sequence present and new sequence absent (ALTER SEQUENCE ... RENAME TO ..., in SQL only)",
        ),
        OpSpec(
            name="rename_constraint",
            # Only the old name is looked up: a constraint's kind is not spelled, and a rename of one that is gone
            # has nothing left to do.
            checks=(Check("constraint_exists", ("constraint_name", "table_name"), subject="constraint_name"),),
            op_params=("constraint_name", "new_constraint_name", "table_name"),
            batch_params=None,
            via_sql=True,
            description="a constraint of the old name is present (ALTER TABLE ... RENAME CONSTRAINT, in SQL only)",
        ),
        OpSpec(
            name="add_column",
            checks=(Check("column_missing", ("table_name", "column"), subject="column", keywords=_ON_TABLE),),
            op_params=("table_name", "column"),
            batch_params=("column",),
            native_flags=("if_not_exists",),
            description="column absent (name from the sa.Column(...) literal, else <expr>.name at run time)",
        ),
        OpSpec(
            name="drop_column",
            checks=(Check("column_exists", ("table_name", "column_name"), subject="column_name", keywords=_ON_TABLE),),
            op_params=("table_name", "column_name"),
            batch_params=("column_name",),
            native_flags=("if_exists",),
            description="column present",
        ),
        OpSpec(
            name="alter_column",
            checks=(
                Check(
                    "column_exists",
                    ("table_name", "column_name"),
                    subject="column_name",
                    keywords=_ON_TABLE,
                    removes_with="new_column_name",
                ),
                Check(
                    "column_missing",
                    ("table_name", "new_column_name"),
                    subject="new_column_name",
                    keywords=_ON_TABLE,
                    only_with="new_column_name",
                ),
            ),
            op_params=("table_name", "column_name"),
            batch_params=("column_name",),
            description=(
                "column present (and, with new_column_name=N, N absent); "
                "re-applying a type, nullable, default or comment is harmless"
            ),
        ),
        OpSpec(
            name="create_index",
            checks=(
                Check(
                    "index_missing",
                    ("table_name", "index_name"),
                    subject="index_name",
                    keywords=_ON_TABLE,
                    unnamed=True,
                    # A naming convention may name a unique index apart (indico: "ix_%(unique_index)s...").
                    unnamed_keywords=("columns", "unique"),
                ),
            ),
            op_params=("index_name", "table_name", "columns"),
            batch_params=("index_name", "columns"),
            native_flags=("if_not_exists",),
            description="index absent (unnamed: named by the naming convention)",
        ),
        OpSpec(
            name="drop_index",
            checks=(Check("index_exists", ("table_name", "index_name"), subject="index_name", keywords=_ON_TABLE),),
            op_params=("index_name", "table_name"),
            batch_params=("index_name",),
            native_flags=("if_exists",),
            optional=frozenset({"table_name"}),
            description="index present (without a table name: looked up in the dialect's catalog)",
        ),
        OpSpec(
            name="create_unique_constraint",
            checks=(
                Check(
                    "unique_missing",
                    _CONSTRAINT,
                    subject="constraint_name",
                    keywords=_IN_A_COPY,
                    unnamed=True,
                    constraint_type="unique",
                ),
            ),
            op_params=_CONSTRAINT,
            batch_params=("constraint_name", "columns"),
            description="no unique constraint of that name (as Alembic names it); unnamed: none on the same columns",
        ),
        OpSpec(
            name="create_primary_key",
            checks=(
                Check(
                    "primary_key_missing",
                    _CONSTRAINT,
                    subject="constraint_name",
                    keywords=_IN_A_COPY,
                    unnamed=True,
                    constraint_type="primary",
                ),
            ),
            op_params=_CONSTRAINT,
            batch_params=("constraint_name", "columns"),
            description="the table has no primary key",
        ),
        OpSpec(
            name="create_foreign_key",
            checks=(
                Check(
                    "foreign_key_missing",
                    ("constraint_name", "source_table", "referent_table", "local_cols", "remote_cols"),
                    subject="constraint_name",
                    keywords=("source_schema", "referent_schema", "skip_without_table", "copied"),
                    unnamed=True,
                    constraint_type="foreignkey",
                ),
            ),
            op_params=("constraint_name", "source_table", "referent_table", "local_cols", "remote_cols"),
            batch_params=("constraint_name", "referent_table", "local_cols", "remote_cols"),
            batch_table=("source_table", "source_schema"),
            description=(
                "no foreign key of that name (as Alembic names it); "
                "unnamed: none with the same local and referred columns"
            ),
        ),
        OpSpec(
            name="create_check_constraint",
            checks=(
                Check(
                    "check_missing",
                    ("constraint_name", "table_name", "condition"),
                    subject="constraint_name",
                    keywords=_IN_A_COPY,
                    constraint_type="check",
                ),
            ),
            op_params=("constraint_name", "table_name", "condition"),
            batch_params=("constraint_name", "condition"),
            description="no check constraint of that name (as Alembic names it, naming convention included)",
        ),
        OpSpec(
            name="create_exclude_constraint",
            checks=(
                Check(
                    "exclude_missing",
                    ("constraint_name", "table_name"),
                    subject="constraint_name",
                    keywords=_ON_TABLE,
                    constraint_type="exclude",
                ),
            ),
            op_params=("constraint_name", "table_name"),
            batch_params=("constraint_name",),
            description="no exclusion constraint of that name (PostgreSQL)",
        ),
        OpSpec(
            name="drop_constraint",
            checks=(
                Check(
                    "constraint_exists",
                    ("constraint_name", "table_name", "type_"),
                    subject="constraint_name",
                    keywords=(*_ON_TABLE, "naming_convention"),
                    type_param="type_",
                ),
            ),
            op_params=("constraint_name", "table_name", "type_"),
            batch_params=("constraint_name", "type_"),
            native_flags=("if_exists",),
            optional=frozenset({"type_"}),
            description="a constraint of that name (as Alembic names it, of type_ where given) is present",
        ),
        OpSpec(
            name="create_sequence",
            checks=(Check("sequence_missing", ("sequence_name",), subject="sequence_name"),),
            op_params=("sequence_name",),
            batch_params=None,
            via_execute="CreateSequence",
            description="sequence absent",
        ),
        OpSpec(
            name="drop_sequence",
            checks=(Check("sequence_exists", ("sequence_name",), subject="sequence_name"),),
            op_params=("sequence_name",),
            batch_params=None,
            via_execute="DropSequence",
            description="sequence present",
        ),
        OpSpec(
            name="create_enum",
            checks=(Check("enum_missing", ("enum_name",), subject="enum_name"),),
            op_params=("bind",),
            batch_params=None,
            native_flags=("checkfirst",),
            via_method="create",
            description="enum type absent (PostgreSQL; elsewhere there is no type and the call runs as written)",
        ),
        OpSpec(
            name="drop_enum",
            checks=(Check("enum_exists", ("enum_name",), subject="enum_name"),),
            op_params=("bind",),
            batch_params=None,
            native_flags=("checkfirst",),
            via_method="drop",
            description="enum type present (PostgreSQL; elsewhere the call runs as written)",
        ),
    )
}


def _catalog_check(helper: str, kind: str, subject: str, on: tuple[str, ...]) -> Check:
    return Check(helper, ("kind", subject), subject=subject, keywords=("schema", *on), object_kind=kind)


def _catalog_spec(
    name: str, kind: str, subject: str, on: tuple[str, ...], description: str, via_execute: str | None = None
) -> OpSpec:
    """An op SQL spells (``CREATE VIEW v``...): its object checked in the catalog, by kind; ``via_execute`` names
    the construct that spells it too (``op.execute(CreateSchema("s"))``), whose ``if_[not_]exists`` says
    it is idempotent already."""
    helper = "object_missing" if name.startswith(("create_", "add_")) else "object_exists"
    return OpSpec(
        name=name,
        checks=(_catalog_check(helper, kind, subject, on),),
        op_params=("kind", subject, *on),
        batch_params=None,
        optional=frozenset(on),
        via_sql=True,
        via_execute=via_execute,
        native_flags=(("if_not_exists",) if helper == "object_missing" else ("if_exists",)) if via_execute else (),
        description=description,
    )


_ON_ENUM = ("enum_name",)
SPECS.update(
    (spec.name, spec)
    for spec in (
        _catalog_spec("create_schema", "schema", "schema_name", (), "schema absent", "CreateSchema"),
        _catalog_spec("drop_schema", "schema", "schema_name", (), "schema present", "DropSchema"),
        _catalog_spec("create_view", "view", "view_name", (), "view absent"),
        _catalog_spec("drop_view", "view", "view_name", (), "view present"),
        _catalog_spec("create_trigger", "trigger", "trigger_name", ("table_name",), "trigger absent (on its table)"),
        _catalog_spec("drop_trigger", "trigger", "trigger_name", ("table_name",), "trigger present"),
        _catalog_spec(
            "create_function",
            "function",
            "function_name",
            ("arguments",),
            "no function of that name and argument types (PostgreSQL; MySQL: of that name)",
        ),
        _catalog_spec(
            "drop_function", "function", "function_name", ("arguments",), "function present (as for create_function)"
        ),
        _catalog_spec("create_extension", "extension", "extension_name", (), "extension absent (PostgreSQL)"),
        _catalog_spec("drop_extension", "extension", "extension_name", (), "extension present (PostgreSQL)"),
        _catalog_spec(
            "add_enum_value", "enum_value", "value", _ON_ENUM, "the enum type has no such value (PostgreSQL)"
        ),
        OpSpec(
            name="rename_enum_value",
            checks=(
                _catalog_check("object_exists", "enum_value", "value", _ON_ENUM),
                _catalog_check("object_missing", "enum_value", "new_value", _ON_ENUM),
            ),
            op_params=("kind", "value", "new_value", "enum_name"),
            batch_params=None,
            via_sql=True,
            description="old value present and new value absent (PostgreSQL)",
        ),
    )
)

EXECUTE_SPECS: dict[str, OpSpec] = {spec.via_execute: spec for spec in SPECS.values() if spec.via_execute}
METHOD_SPECS: dict[str, OpSpec] = {spec.via_method: spec for spec in SPECS.values() if spec.via_method}
