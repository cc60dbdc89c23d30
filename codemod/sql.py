"""What a SQL string in a migration does to the schema, read with sqlglot.

``read_sql`` splits a string into statements (and an ``ALTER TABLE`` into its
actions) and says of each part one of four things: it spells an Alembic op
and is guarded as that op is (``Part.op`` and ``Part.args``, named as the
op's parameters in ``codemod.specs``); it re-runs harmlessly (``safe``, with
the reason), and may be ``inert`` besides (it only reads or sets the session,
so skipping it with the rest of its string loses nothing); it is an INSERT
(``op="insert"``, guarded only as a seed of a table its function creates); or
it is left unguarded, with the reason. Nothing here knows about libcst: the
transformer turns parts into guards.

Each part also says which tables' rows it reads and writes (``Part.rows``), and
of an UPDATE, DELETE or TRUNCATE whether it changes nothing when run again on
its own result (``Rows.rerun``). Whether that holds in its function, beside what
else the function does, is ``Rows.reruns_in``'s to say.

Names are taken as the database stores them. PostgreSQL folds an unquoted
name to lower case; elsewhere, and where the dialect is not known, a name
with capitals could be stored either way, and a guard that looks it up under
the wrong spelling would skip a drop that must run. Such statements are left
unguarded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.errors import SqlglotError

# sqlglot names the dialects of the databases idempotify runs on; SQLAlchemy's names map onto them.
DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
_TRIED = ("postgres", "mysql", "sqlite")

QUERY = "its SQL is a query"
DATA_CHANGE = "its SQL changes data: it re-runs only if its WHERE makes it so"
UPDATE_RERUNS = "its SQL UPDATE sets values that do not depend on what it sets: a re-run changes nothing"
DELETE_RERUNS = "its SQL DELETE removes rows by a test a re-run finds nothing left for"
TRUNCATE_RERUNS = "its SQL TRUNCATE empties a table: a re-run finds it empty"
NOT_A_SEED = (
    "its SQL inserts rows: an INSERT is guarded only into a table its function creates (it runs while that is empty)"
)


def data_change(parts: Sequence[Part]) -> str | None:
    """The reason to give SQL that changes data (an UPDATE, DELETE or INSERT, beside statements that are safe to
    run again), or None when it does anything else."""
    changes = [part.reason for part in parts if part.reason in (DATA_CHANGE, NOT_A_SEED)]
    others = [part for part in parts if part.reason not in (DATA_CHANGE, NOT_A_SEED)]
    if not changes or any(part.op is not None or part.safe is None for part in others):
        return None
    return DATA_CHANGE if DATA_CHANGE in changes else NOT_A_SEED


@dataclass(frozen=True)
class Verbatim:
    """A constraint name as the SQL writes it, passed as ``op.f(name)`` so no naming convention renames it."""

    name: str


Value = str | Verbatim | tuple[str, ...] | None


Tables = frozenset[str] | None  # tables by bare lower-case name (schemas aside); None: any table


@dataclass(frozen=True)
class Rows:
    """What a statement does with rows: the tables it reads and writes rows of, the tables whose columns it
    renames or gives another type (or which it renames), and, for an UPDATE, DELETE or TRUNCATE that changes
    nothing when run again on its own result, why (``rerun``); ``bound`` when it takes bind parameters."""

    reads: Tables = frozenset()
    writes: Tables = frozenset()
    reshapes: Tables = frozenset()
    rerun: str | None = None
    bound: bool = False

    def reruns_in(self, others: Sequence[tuple[Rows, bool]], *, values_fixed: bool = True) -> str | None:
        """Why this statement, run again with the rest of its function, changes no row; None when it may.

        A re-run runs the whole function again: another statement there
        that writes a table this one reads gives it other rows to work on
        (``DELETE FROM t WHERE a = 'y'`` before ``UPDATE t SET a = 'y'``), and
        one that reads a table this one writes is given other rows by it
        (``UPDATE t SET b = a`` before ``UPDATE t SET a = NULL``: the second
        re-runs alike, but not the pair; a query's rows may go on, through
        Python, to another write); so does a rename or a change of
        type of a table it reads, after it (each of ``others`` comes with whether
        it runs after this one). Tables are compared, not columns. Bind
        parameters are values fixed for a run only when ``values_fixed`` (the
        call passes literals): else they may come from what the function read,
        or the clock.
        """
        if self.rerun is None or self.reads is None:
            return None
        if self.bound and not values_fixed:
            return None
        for other, after in others:
            if _meet(other.writes, self.reads) or (after and _meet(other.reshapes, self.reads)):
                return None
            if _meet(self.writes, other.reads):
                return None
        return self.rerun


def _meet(some: Tables, others: Tables) -> bool:
    if some == frozenset() or others == frozenset():
        return False
    return some is None or others is None or bool(some & others)


@dataclass(frozen=True)
class Part:
    """What one statement, or one action of an ``ALTER TABLE``, does; see the module docstring."""

    op: str | None = None
    args: Mapping[str, Value] = field(default_factory=dict)
    safe: str | None = None
    inert: bool = False
    reason: str | None = None
    query: bool = False  # reads tables (a query, INSERT ... SELECT): a re-run fails if its function dropped them
    rows: Rows | None = None  # None: what it does with rows is not known (any table, if anything)

    @property
    def row_work(self) -> Rows:
        """``rows``, or, when not known, nothing for a part that is an op or safe, any table for the rest."""
        if self.rows is not None:
            return self.rows
        if self.op is not None or self.safe is not None:
            return Rows()
        return Rows(reads=None, writes=None, reshapes=None)


class _Unsure(Exception):
    """A part whose effect cannot be told exactly: it is left unguarded with this reason."""


@lru_cache(maxsize=4096)
def read_sql(sql: str, dialect: str | None) -> tuple[Part, ...]:
    """The parts of ``sql``, parsed as ``dialect`` (a SQLAlchemy name), or as the first dialect that reads it."""
    tried = (DIALECTS[dialect],) if dialect in DIALECTS else _TRIED
    function = _function_statement(sql, tried, exact=dialect in DIALECTS)
    if function is not None:
        return (function,)
    parsed: list[exp.Expression] | None = None
    error = ""
    for name in tried:
        try:
            statements = _parse(sql, name)
        except SqlglotError as failure:
            error = error or _message(failure)
            continue
        if parsed is None or not any(isinstance(statement, exp.Command) for statement in statements):
            parsed, used = statements, name
            if not any(isinstance(statement, exp.Command) for statement in statements):
                break
    if parsed is None:
        return (Part(reason=f"its SQL could not be parsed: {error}"),)
    reader = _Reader(used, exact=dialect in DIALECTS)
    parts: list[Part] = []
    in_body = False  # sqlglot splits a trigger's BEGIN ... END body at its semicolons: skip to its END
    for statement in parsed:
        if in_body:
            in_body = not isinstance(statement, exp.EndStatement)
            continue
        try:
            parts.extend(reader.statement(statement))
        except _Unsure as unsure:
            parts.append(Part(reason=str(unsure)))
        in_body = isinstance(statement, exp.Command) and "BEGIN" in _words(statement, used, 64)
    return tuple(parts) or (Part(safe="its SQL holds no statement", inert=True),)


def _tokens(node: exp.Command, dialect: str) -> list[Token]:
    """The tokens of a statement sqlglot reads only as a command, after its first keyword."""
    try:
        return list(sqlglot.tokenize(str(node.expression), read=dialect))
    except SqlglotError:
        return []


def _words(node: exp.Command, dialect: str, count: int) -> list[str]:
    return [token.text.upper() for token in _tokens(node, dialect)[:count]]


def _message(failure: SqlglotError) -> str:
    """The parser's complaint, short: what it expected, and where."""
    errors = getattr(failure, "errors", None)
    if errors:
        first = errors[0]
        description = str(first.get("description", "")).split(" but got ")[0]
        return f"{description} (line {first.get('line')}, column {first.get('col')})"
    return str(failure).splitlines()[0]


def _parse(sql: str, dialect: str) -> list[exp.Expression]:
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "falling back to parsing as a Command" is ours to report
    try:
        return [statement for statement in sqlglot.parse(sql, read=dialect) if isinstance(statement, exp.Expression)]
    finally:
        logger.setLevel(level)


_INERT = {
    exp.Select: QUERY,
    exp.Set: "its SQL sets a session variable",
    exp.Pragma: "its SQL is a PRAGMA",
    exp.Show: "its SQL is a SHOW",
    exp.Commit: "its SQL is transaction control",
    exp.Rollback: "its SQL is transaction control",
    exp.Transaction: "its SQL is transaction control",
    exp.Analyze: "its SQL refreshes statistics",
}
_REAPPLIED = {
    exp.Comment: "its SQL COMMENT ON re-applies the same comment",
    exp.Grant: "its SQL GRANT re-applies the same privileges",
    exp.Revoke: "its SQL REVOKE re-applies the same privileges",
}
_INERT_COMMANDS = {"SET": _INERT[exp.Set], "SHOW": _INERT[exp.Show], "ANALYZE": _INERT[exp.Analyze]}


class _Reader:
    def __init__(self, dialect: str, *, exact: bool) -> None:
        self.dialect = dialect
        self.exact = exact  # the dialect is the one the SQL runs on, not a guess

    def statement(self, node: exp.Expression) -> list[Part]:
        for kind, reason in _INERT.items():
            if isinstance(node, kind):
                rows = Rows(reads=_tables_read(node)) if kind is exp.Select else None
                return [Part(safe=reason, inert=True, query=kind is exp.Select, rows=rows)]
        for kind, reason in _REAPPLIED.items():
            if isinstance(node, kind):
                return [Part(safe=reason)]
        if isinstance(node, exp.Command):
            return [self._command(node)]
        if isinstance(node, exp.Create):
            return [self._create(node)]
        if isinstance(node, exp.Drop):
            return self._drop(node)
        if isinstance(node, exp.Alter):
            return self._alter(node)
        if isinstance(node, exp.Insert):
            target = node.this.this if isinstance(node.this, exp.Schema) else node.this
            if isinstance(target, exp.Table):
                selects = isinstance(node.expression, exp.Query) and node.expression.find(exp.Table) is not None
                rows = Rows(reads=_tables_read(node), writes=_tables([target]))
                args = self._table(target, "table_name")
                return [Part(op="insert", args=args, reason=NOT_A_SEED, query=selects, rows=rows)]
            return [Part(reason=NOT_A_SEED)]
        if isinstance(node, (exp.Update, exp.Delete, exp.TruncateTable)):
            return [Part(reason=DATA_CHANGE, query=True, rows=_row_change(node))]
        if isinstance(node, exp.Merge):
            return [Part(reason=DATA_CHANGE)]
        return [Part(reason=f"its SQL: no guard for {node.key.upper()} statements yet")]

    def _command(self, node: exp.Command) -> Part:
        keyword = str(node.this).upper()
        if keyword in _INERT_COMMANDS:
            return Part(safe=_INERT_COMMANDS[keyword], inert=True)
        tokens = _tokens(node, self.dialect)
        words = [token.text.upper() for token in tokens[:8]]
        if keyword == "CREATE" and words[:2] == ["OR", "REPLACE"]:
            return Part(safe="its SQL says CREATE OR REPLACE")
        after_if = words[words.index("IF") + 1 :][:2] if "IF" in words else []
        if after_if == ["NOT", "EXISTS"] or after_if[:1] == ["EXISTS"]:
            return Part(safe="its SQL says IF [NOT] EXISTS")
        names = _NameTokens(tokens, self)
        if keyword in {"CREATE", "DROP"} and words[:1] == ["EXTENSION"]:
            op = {"CREATE": "create_extension", "DROP": "drop_extension"}[keyword]
            return Part(op=op, args={"kind": "extension", "extension_name": names.name(1)})
        if keyword == "CREATE" and words[:1] == ["TRIGGER"]:
            return Part(
                op="create_trigger", args={"kind": "trigger", "trigger_name": names.name(1), **names.after("ON")}
            )
        if keyword == "ALTER" and words[:1] == ["TYPE"]:
            return self._enum_value(names)
        if keyword == "ALTER" and words[:1] == ["SEQUENCE"]:
            return self._alter_sequence(names)
        if keyword == "ALTER" and words[:1] == ["TABLE"]:
            return self._rename_constraint(names)
        what = " ".join([keyword, *words[:1]]) if words[:1] and words[0].isidentifier() else keyword
        return Part(reason=f"its SQL: no guard for {what} yet (sqlglot reads it only as a command)")

    def _enum_value(self, names: _NameTokens) -> Part:
        """``ALTER TYPE t ADD VALUE 'v'`` and ``RENAME VALUE 'a' TO 'b'`` (PostgreSQL enum types)."""
        enum, end = names.qualified(1, "enum_name")
        words = names.words(end, 2)
        args: dict[str, Value] = {"kind": "enum_value", **enum}
        if words == ["ADD", "VALUE"]:
            return Part(op="add_enum_value", args={**args, "value": names.string(end + 2)})
        if words == ["RENAME", "VALUE"] and names.words(end + 3, 1) == ["TO"]:
            renamed = {"value": names.string(end + 2), "new_value": names.string(end + 4)}
            return Part(op="rename_enum_value", args={**args, **renamed})
        return Part(reason="its SQL: no guard for this ALTER TYPE yet")

    def _alter_sequence(self, names: _NameTokens) -> Part:
        """``ALTER SEQUENCE s RENAME TO r`` is a rename; its settings (``OWNED BY``, ``INCREMENT BY``...) re-apply
        the same state, except ``RESTART``, which moves the sequence back on every run."""
        sequence, end = names.qualified(1, "sequence_name")
        words = names.words(end, len(names.tokens))
        if words[:2] == ["RENAME", "TO"]:
            return Part(op="rename_sequence", args={**sequence, "new_sequence_name": names.name(end + 2)})
        if "RESTART" in words:
            return Part(reason="its SQL restarts a sequence, which moves it back on every run")
        if words[:1] in (["OWNED"], ["INCREMENT"], ["MINVALUE"], ["MAXVALUE"], ["NO"], ["CACHE"], ["START"]):
            return Part(safe="its SQL ALTER SEQUENCE re-applies the same settings")
        return Part(reason="its SQL: no guard for this ALTER SEQUENCE yet")

    def _rename_constraint(self, names: _NameTokens) -> Part:
        """``ALTER TABLE t RENAME CONSTRAINT a TO b``, which sqlglot reads only as a command."""
        table, end = names.qualified(1, "table_name")
        if names.words(end, 2) == ["RENAME", "CONSTRAINT"] and names.words(end + 3, 1) == ["TO"]:
            renamed = {"constraint_name": Verbatim(str(names.name(end + 2)))}
            return Part(op="rename_constraint", args={**table, **renamed, "new_constraint_name": names.name(end + 4)})
        return Part(reason="its SQL: no guard for this ALTER TABLE yet (sqlglot reads it only as a command)")

    def _create(self, node: exp.Create) -> Part:
        kind = str(node.args.get("kind") or "").upper()
        if node.args.get("exists"):
            return Part(safe="its SQL says IF NOT EXISTS")
        if node.args.get("replace"):
            return Part(safe="its SQL says CREATE OR REPLACE")
        target = node.this.this if isinstance(node.this, exp.Schema) else node.this
        if kind == "TABLE" and isinstance(target, exp.Table):
            if node.args.get("properties") and node.find(exp.TemporaryProperty):
                return Part(reason="its SQL makes a temporary table, which is not guarded")
            return Part(op="create_table", args=self._table(target, "table_name"))
        if kind == "INDEX" and isinstance(target, exp.Index):
            if target.this is None:
                return Part(reason="its SQL makes an index without a name: the database names it")
            table = target.args.get("table")
            args: dict[str, Value] = {"index_name": self._name(target.this, index=True)}
            if isinstance(table, exp.Table):
                args.update(self._table(table, "table_name"))
            return Part(op="create_index", args=args)
        if kind == "SEQUENCE" and isinstance(target, exp.Table):
            return Part(op="create_sequence", args=self._table(target, "sequence_name"))
        if kind == "VIEW" and isinstance(target, exp.Table):
            if node.find(exp.MaterializedProperty):
                return Part(reason="its SQL makes a materialized view, which is not guarded")
            return Part(op="create_view", args={"kind": "view", **self._table(target, "view_name")})
        if kind == "TRIGGER" and isinstance(node.this, exp.Identifier):
            on = node.find(exp.TriggerProperties)
            table = on.args.get("table") if on is not None else None
            args = {"kind": "trigger", "trigger_name": self._name(node.this)}
            return Part(
                op="create_trigger",
                args={**args, **(self._table(table, "table_name") if isinstance(table, exp.Table) else {})},
            )
        if kind == "SCHEMA" and isinstance(target, exp.Table) and _schema_only(target):
            return Part(op="create_schema", args={"kind": "schema", "schema_name": self._name(target.args["db"])})
        if kind == "TYPE" and isinstance(target, exp.Table):
            enum = node.args.get("expression")
            if isinstance(enum, exp.DataType) and enum.this == exp.DataType.Type.ENUM:
                return Part(op="create_enum", args=self._table(target, "enum_name"))
        return Part(reason=f"its SQL: no guard for CREATE {kind} yet")

    def _drop(self, node: exp.Drop) -> list[Part]:
        kind = str(node.args.get("kind") or "").upper()
        if node.args.get("exists"):
            return [Part(safe="its SQL says IF EXISTS")]
        ops = {"TABLE": ("drop_table", "table_name"), "SEQUENCE": ("drop_sequence", "sequence_name")}
        ops |= {"TYPE": ("drop_enum", "enum_name")}
        tables = [table for table in node.args.get("tables") or () if isinstance(table, exp.Table)]
        if kind in ops:
            op, param = ops[kind]
            return [Part(op=op, args=self._table(table, param)) for table in tables]
        if kind == "SCHEMA" and all(_schema_only(table) for table in tables):
            return [
                Part(op="drop_schema", args={"kind": "schema", "schema_name": self._name(table.args["db"])})
                for table in tables
            ]
        if kind == "VIEW" and not node.args.get("materialized"):
            return [Part(op="drop_view", args={"kind": "view", **self._table(table, "view_name")}) for table in tables]
        if kind == "TRIGGER" and len(tables) == 1:
            trigger: dict[str, Value] = {"kind": "trigger", "trigger_name": self._name(tables[0].this)}
            on = node.args.get("cluster")
            if isinstance(on, exp.OnProperty) and isinstance(on.this, exp.Table):
                trigger.update(self._table(on.this, "table_name"))
            return [Part(op="drop_trigger", args=trigger)]
        if kind == "INDEX" and len(tables) == 1:
            args = self._table(tables[0], "index_name")
            on = node.args.get("cluster")  # MySQL: DROP INDEX ix ON t
            if isinstance(on, exp.OnProperty) and isinstance(on.this, exp.Table):
                args.update(self._table(on.this, "table_name"))
            elif self.dialect == "mysql":
                raise _Unsure("its SQL drops an index without naming its table")
            return [Part(op="drop_index", args=args)]
        return [Part(reason=f"its SQL: no guard for DROP {kind} yet")]

    def _alter(self, node: exp.Alter) -> list[Part]:
        kind = str(node.args.get("kind") or "").upper()
        table = node.this
        actions = node.args.get("actions") or []
        if kind == "INDEX" and isinstance(table, exp.Table) and len(actions) == 1:
            renamed = actions[0]
            if isinstance(renamed, exp.AlterRename) and isinstance(renamed.this, exp.Table):
                args = self._table(table, "index_name")
                new_name = self._name(renamed.this.this, index=True)
                return [Part(op="rename_index", args={**args, "new_index_name": new_name})]
        if kind != "TABLE" or not isinstance(table, exp.Table):
            return [Part(reason=f"its SQL: no guard for ALTER {kind} yet")]
        on_table = self._table(table, "table_name")
        if not actions:  # MySQL's table options alone (ENGINE=, AUTO_INCREMENT =): set again, they are as before
            if node.args.get("options"):
                return [Part(safe="its SQL sets table options (ENGINE, AUTO_INCREMENT, ...) again")]
            return [Part(reason="its SQL: no guard for this ALTER TABLE yet")]
        return [self._action(action, on_table) for action in actions]

    def _action(self, action: exp.Expression, on_table: dict[str, Value]) -> Part:
        if isinstance(action, exp.ColumnDef):
            if action.args.get("exists"):
                return Part(safe="its SQL says IF NOT EXISTS")
            return Part(op="add_column", args={**on_table, "column": self._name(action.this)})
        if isinstance(action, exp.Drop):
            kind = str(action.args.get("kind") or "").upper()
            if action.args.get("exists"):
                return Part(safe="its SQL says IF EXISTS")
            names = action.args.get("tables") or []
            if len(names) != 1:
                return Part(reason=f"its SQL: no guard for ALTER TABLE ... DROP {kind} yet")
            name = names[0].this
            if kind == "COLUMN":
                return Part(op="drop_column", args={**on_table, "column_name": self._name(name)})
            if kind == "INDEX":
                return Part(op="drop_index", args={**on_table, "index_name": self._name(name, index=True)})
            types = {"CONSTRAINT": None, "FOREIGN KEY": "foreignkey"}
            if kind in types:
                constraint = Verbatim(self._name(name))
                return Part(
                    op="drop_constraint", args={**on_table, "constraint_name": constraint, "type_": types[kind]}
                )
            return Part(reason=f"its SQL: no guard for ALTER TABLE ... DROP {kind} yet")
        if isinstance(action, exp.AddConstraint):
            parts = [self._constraint(constraint, on_table) for constraint in action.expressions]
            return parts[0] if len(parts) == 1 else Part(reason="its SQL adds several constraints in one ADD")
        reshaped = Rows(reshapes=frozenset({str(on_table["table_name"]).lower()}))
        if isinstance(action, exp.AlterColumn):
            if action.args.get("using"):
                return Part(
                    reason="its SQL changes a column's type USING an expression: a second run converts again",
                    rows=Rows(writes=reshaped.reshapes, reshapes=reshaped.reshapes),
                )
            retyped = reshaped if action.args.get("dtype") is not None else Rows()
            return Part(safe="its SQL ALTER COLUMN re-applies the same type, nullability or default", rows=retyped)
        if isinstance(action, exp.ModifyColumn):
            if action.args.get("rename_from") is not None:
                return Part(reason="its SQL renames a column with MySQL's CHANGE, which is not guarded", rows=reshaped)
            return Part(safe="its SQL MODIFY re-applies the same column definition", rows=reshaped)
        if isinstance(action, exp.AlterRename) and isinstance(action.this, exp.Table):
            renamed = {
                "old_table_name": on_table["table_name"],
                "new_table_name": self._name(action.this.this),
            }
            return Part(op="rename_table", args={**renamed, **_schema_of(on_table)}, rows=reshaped)
        if isinstance(action, exp.RenameColumn):
            args = {"column_name": self._name(action.this.this), "new_column_name": self._name(action.args["to"].this)}
            return Part(op="alter_column", args={**on_table, **args}, rows=reshaped)
        return Part(reason=f"its SQL: no guard for ALTER TABLE ... {action.key.upper()} yet")

    def _constraint(self, node: exp.Expression, on_table: dict[str, Value]) -> Part:
        name: Value = None
        kind = node
        if isinstance(node, exp.Constraint):
            name = Verbatim(self._name(node.this))
            kinds = node.expressions
            if len(kinds) != 1:
                return Part(reason="its SQL adds a constraint of several kinds")
            kind = kinds[0]
        table_args = {"table_name": on_table["table_name"], **_schema_of(on_table)}
        if isinstance(kind, exp.PrimaryKey):
            columns = self._names(kind.expressions)
            return Part(op="create_primary_key", args={"constraint_name": name, **table_args, "columns": columns})
        if isinstance(kind, exp.UniqueColumnConstraint) and isinstance(kind.this, exp.Schema):
            columns = self._names(kind.this.expressions)
            return Part(op="create_unique_constraint", args={"constraint_name": name, **table_args, "columns": columns})
        if name is None:
            return Part(
                reason="its SQL adds an unnamed constraint (only a primary key or unique is found by its columns)"
            )
        if isinstance(kind, exp.CheckColumnConstraint):
            condition = kind.this.sql(self.dialect)
            return Part(
                op="create_check_constraint", args={"constraint_name": name, **table_args, "condition": condition}
            )
        if isinstance(kind, exp.ForeignKey):
            reference = kind.args.get("reference")
            referred = reference.this if isinstance(reference, exp.Reference) else None
            if not isinstance(referred, exp.Schema) or not isinstance(referred.this, exp.Table):
                return Part(reason="its SQL adds a foreign key whose referred table cannot be read")
            referent = self._table(referred.this, "referent_table")
            args: dict[str, Value] = {
                "constraint_name": name,
                "source_table": on_table["table_name"],
                "referent_table": referent["referent_table"],
                "local_cols": self._names(kind.expressions),
                "remote_cols": self._names(referred.expressions),
            }
            if "schema" in on_table:
                args["source_schema"] = on_table["schema"]
            if "schema" in referent:
                args["referent_schema"] = referent["schema"]
            return Part(op="create_foreign_key", args=args)
        if isinstance(kind, exp.ExcludeColumnConstraint):
            return Part(op="create_exclude_constraint", args={"constraint_name": name, **table_args})
        return Part(reason=f"its SQL: no guard for ADD CONSTRAINT ... {kind.key.upper()} yet")

    def _table(self, table: exp.Table, param: str) -> dict[str, Value]:
        """``{param: name}``, and ``schema`` when the name is qualified."""
        if table.args.get("catalog"):
            raise _Unsure("its SQL names an object qualified by its database")
        args: dict[str, Value] = {param: self._name(table.this, index=param == "index_name")}
        if table.args.get("db"):
            args["schema"] = self._name(table.args["db"])
        return args

    def _names(self, nodes: Sequence[exp.Expression]) -> tuple[str, ...]:
        names = []
        for node in nodes:
            inner = node.this if isinstance(node, (exp.Column, exp.Ordered)) else node
            if not isinstance(inner, exp.Identifier):
                raise _Unsure("its SQL lists an expression where columns go")
            names.append(self._name(inner))
        return tuple(names)

    def _name(self, node: exp.Expression, *, index: bool = False) -> str:
        """The name as the database stores it (see the module docstring).

        PostgreSQL cuts a name longer than 63 bytes; SQLite keeps it whole. Only
        the index helpers look such a name up as the database at hand stores it.
        """
        if not isinstance(node, exp.Identifier):
            raise _Unsure(f"its SQL names an object by an expression ({node.sql(self.dialect)})")
        name = str(node.this)
        postgresql = self.exact and self.dialect == "postgres"
        if len(name.encode()) > _LONGEST and not index:
            if not postgresql:
                raise _Unsure(
                    f"its SQL names {name}, longer than {_LONGEST} bytes: PostgreSQL stores it cut short, "
                    "other databases whole (put the SQL under `if op.get_bind().dialect.name == ...`)"
                )
            name = name.encode()[:_LONGEST].decode("utf-8", "ignore")
        if name == name.lower():
            return name
        if postgresql:
            return name if node.quoted else name.lower()
        raise _Unsure(
            f"its SQL names {name}, with capitals: how the database stores it depends on the database "
            "(put the SQL under `if op.get_bind().dialect.name == ...` to say which)"
        )


class _NameTokens:
    """Names read from the tokens of a statement sqlglot reads only as a command."""

    def __init__(self, tokens: Sequence[Token], reader: _Reader) -> None:
        self.tokens = tokens
        self.reader = reader

    def words(self, start: int, count: int) -> list[str]:
        return [token.text.upper() for token in self.tokens[start : start + count]]

    def name(self, index: int) -> str:
        """The name at ``index``, past an ``IF [NOT] EXISTS``."""
        while self.words(index, 1) in (["IF"], ["NOT"], ["EXISTS"]):
            index += 1
        if index >= len(self.tokens) or self.tokens[index].token_type not in _NAME_TOKENS:
            raise _Unsure("its SQL names an object where it cannot be read")
        token = self.tokens[index]
        return self.reader._name(exp.Identifier(this=token.text, quoted=token.token_type == TokenType.IDENTIFIER))

    def qualified(self, index: int, param: str) -> tuple[dict[str, Value], int]:
        """``{param: name}``, and ``schema`` for ``schema.name``, at ``index``; and the index after the name."""
        if self.words(index + 1, 1) == ["."]:
            return {param: self.name(index + 2), "schema": self.name(index)}, index + 3
        return {param: self.name(index)}, index + 1

    def after(self, keyword: str) -> dict[str, Value]:
        """``{"table_name": ...}`` for the name after the first ``keyword`` (``ON t``), and its schema."""
        words = self.words(0, len(self.tokens))
        if keyword not in words:
            raise _Unsure(f"its SQL has no {keyword} where a table was expected")
        return self.qualified(words.index(keyword) + 1, "table_name")[0]

    def string(self, index: int) -> str:
        if index >= len(self.tokens) or self.tokens[index].token_type != TokenType.STRING:
            raise _Unsure("its SQL has no quoted value where one was expected")
        return self.tokens[index].text


def _function_statement(sql: str, tried: Sequence[str], *, exact: bool) -> Part | None:
    """``CREATE [OR REPLACE] FUNCTION`` or ``DROP FUNCTION [IF EXISTS]``, alone in ``sql``, read from its tokens
    (sqlglot parses some of these only as commands, and some not at all: ``DROP FUNCTION f(value text)``);
    None for any other SQL. A function is looked up by its name and its argument types (PostgreSQL has
    several functions of one name), read as described in ``_argument_types``."""
    for dialect in tried:
        try:
            tokens = list(sqlglot.tokenize(sql, read=dialect))
        except SqlglotError:
            continue
        while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
            tokens.pop()
        words = [token.text.upper() for token in tokens[:5]]
        if words[:2] not in (["CREATE", "FUNCTION"], ["DROP", "FUNCTION"], ["CREATE", "OR"]):
            return None
        if any(token.token_type == TokenType.SEMICOLON for token in tokens):
            return None  # several statements, or a body of several (MySQL's BEGIN ... END): read as usual
        if words[:4] == ["CREATE", "OR", "REPLACE", "FUNCTION"]:
            return Part(safe="its SQL says CREATE OR REPLACE")
        if words[:2] == ["CREATE", "OR"]:
            return None
        if words[:4] == ["DROP", "FUNCTION", "IF", "EXISTS"]:
            return Part(safe="its SQL says IF EXISTS")
        if words[:5] == ["CREATE", "FUNCTION", "IF", "NOT", "EXISTS"]:  # MariaDB
            return Part(safe="its SQL says IF NOT EXISTS")
        try:
            return _function(tokens, _Reader(dialect, exact=exact))
        except _Unsure as unsure:
            return Part(reason=str(unsure))
    return None


def _function(tokens: list[Token], reader: _Reader) -> Part:
    names = _NameTokens(tokens, reader)
    function, end = names.qualified(2, "function_name")
    creates = tokens[0].text.upper() == "CREATE"
    mysql = reader.exact and reader.dialect == "mysql"  # one function of a name: its arguments tell no more
    arguments: tuple[str, ...] | None = None
    if end < len(tokens) and tokens[end].token_type == TokenType.L_PAREN:
        close = _closing(tokens, end)
        arguments = None if mysql else _argument_types(tokens[end + 1 : close])
        end = close + 1
    elif creates:
        raise _Unsure("its SQL makes a function whose arguments cannot be read")
    rest = names.words(end, len(tokens))
    if not creates and rest not in ([], ["CASCADE"], ["RESTRICT"]):
        raise _Unsure("its SQL drops several functions, or one it names in a way that cannot be read")
    args: dict[str, Value] = {"kind": "function", **function, "arguments": arguments}
    return Part(op="create_function" if creates else "drop_function", args=args)


def _closing(tokens: Sequence[Token], start: int) -> int:
    """The index of the ``)`` that closes the ``(`` at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[index].token_type, 0)
        if depth == 0:
            return index
    raise _Unsure("its SQL has a ( without its )")


# Types of more than one word, which an argument may have without a name.
_TYPES_OF_WORDS = frozenset(
    {
        "double precision",
        "character varying",
        "char varying",
        "bit varying",
        "national character",
        "national character varying",
        "timestamp with time zone",
        "timestamp without time zone",
        "time with time zone",
        "time without time zone",
    }
)
# The first words of those types (and of INTERVAL's fields): as an argument's first word, its name or its type?
_FIRST_OF_TYPES = frozenset({words.split()[0] for words in _TYPES_OF_WORDS} | {"interval"})
# An argument's words (its name and type), then a length or precision and ``[]``, as tokens joined by spaces.
_ARGUMENT = re.compile(
    r"^(?P<words>[a-z_][a-z0-9_$]*(?: [a-z_][a-z0-9_$]*)*)(?P<rest>(?: \( \d+(?: , \d+)? \))?(?: \[ \])*)$"
)


def _argument_types(tokens: Sequence[Token]) -> tuple[str, ...]:
    """The types of a function's input arguments, as PostgreSQL reads them (``to_regprocedure``): each argument
    ``[IN | INOUT] [name] type [DEFAULT ...]`` (an ``OUT`` one is left out), of a type of plain words, with
    a length or precision and ``[]``; anything else (``VARIADIC``, a quoted or qualified type, a type the
    words could be read two ways) is left unguarded."""
    arguments: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(token.token_type, 0)
        if token.token_type == TokenType.COMMA and depth == 0:
            arguments.append([])
        else:
            arguments[-1].append(token)
    types = []
    for argument in arguments if tokens else []:
        words = [token.text for token in argument]
        for index, word in enumerate(words):
            if word.upper() == "DEFAULT" or word == "=":
                words = words[:index]
                break
        modes = [word.upper() for word in words[:2] if word.upper() in {"IN", "OUT", "INOUT", "VARIADIC"}]
        if "VARIADIC" in modes or len(modes) > 1 or any(t.token_type == TokenType.IDENTIFIER for t in argument):
            raise _Unsure("its SQL makes or drops a function with an argument whose type cannot be read")
        if modes == ["OUT"]:
            continue
        words = [word for word in words if word.upper() not in {"IN", "INOUT"}]
        found = _ARGUMENT.match(" ".join(words).lower())
        if found is None:
            raise _Unsure("its SQL makes or drops a function with an argument whose type cannot be read")
        named = found["words"].split()
        if " ".join(named) in _TYPES_OF_WORDS or len(named) == 1:
            types.append(found["words"] + found["rest"].replace(" ", ""))
        elif (len(named) == 2 and named[0] not in _FIRST_OF_TYPES) or " ".join(named[1:]) in _TYPES_OF_WORDS:
            types.append(" ".join(named[1:]) + found["rest"].replace(" ", ""))
        else:
            raise _Unsure("its SQL makes or drops a function with an argument whose type cannot be read")
    return tuple(types)


_LONGEST = 63  # bytes of a name PostgreSQL keeps

_NAME_TOKENS = frozenset({TokenType.VAR, TokenType.IDENTIFIER})


def _schema_only(table: exp.Table) -> bool:
    """A schema's name, as sqlglot reads ``CREATE SCHEMA s`` (a table name with only its ``db`` part)."""
    return table.this is None and table.args.get("catalog") is None and isinstance(table.args.get("db"), exp.Identifier)


def _schema_of(args: Mapping[str, Value]) -> dict[str, Value]:
    return {"schema": args["schema"]} if "schema" in args else {}


# What an UPDATE's values and a WHERE may hold and still give the same answer on every run: columns, literals,
# bind parameters, operators, and functions of their arguments alone. Anything else (now(), random(), a sequence,
# a function sqlglot does not know) may not.
_DETERMINISTIC = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Placeholder,
    exp.Star,
    exp.Paren,
    exp.Tuple,
    exp.Alias,
    exp.TableAlias,
    exp.Table,
    exp.Subquery,
    exp.Select,
    exp.From,
    exp.Where,
    exp.Join,
    exp.Group,
    exp.Having,
    exp.Distinct,
    exp.Connector,  # AND, OR
    exp.Predicate,  # comparisons, IS, IN, LIKE, BETWEEN, EXISTS
    exp.Not,
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.DPipe,
    exp.Case,
    exp.If,
    exp.Coalesce,
    exp.Nullif,
    exp.Lower,
    exp.Upper,
    exp.Trim,
    exp.Replace,
    exp.Substring,
    exp.Concat,
    exp.ConcatWs,
    exp.Length,
    exp.Greatest,
    exp.Least,
    exp.Cast,
    exp.TryCast,
    exp.DataType,
    exp.DataTypeParam,
    exp.JSONExtract,
    exp.JSONExtractScalar,
    exp.JSONBExtract,
    exp.JSONBExtractScalar,
    exp.JSONPath,
    exp.JSONPathPart,
    exp.Count,
    exp.Max,
    exp.Min,
)


def _deterministic(nodes: Sequence[exp.Expression | None]) -> bool:
    """Whether each of ``nodes`` gives the same answer on every run over the same rows (see ``_DETERMINISTIC``,
    ``_NOT_COLUMNS`` and ``_MOMENTS``)."""
    for node in nodes:
        for inner in node.walk() if node is not None else ():
            if not isinstance(inner, _DETERMINISTIC):
                return False
            bare = isinstance(inner, exp.Column) and not inner.table and not _quoted(inner)
            if bare and inner.name.upper() in _NOT_COLUMNS:
                return False
            if isinstance(inner, exp.Literal) and inner.is_string and inner.name.strip().lower() in _MOMENTS:
                return False
    return True


def _quoted(column: exp.Column) -> bool:
    name = column.this
    return isinstance(name, exp.Identifier) and bool(name.quoted)


# Words sqlglot reads as a column where a database reads a value of the moment: ``DEFAULT`` (a column's default,
# which may be now()), MySQL's ``UTC_TIMESTAMP`` or ``SYSDATE``, the current user or schema...
_NOT_COLUMNS = frozenset(
    {
        "DEFAULT",
        "LOCALTIME",
        "LOCALTIMESTAMP",
        "CURRENT_TIME",
        "CURRENT_DATE",
        "CURRENT_TIMESTAMP",
        "CURRENT_USER",
        "CURRENT_ROLE",
        "CURRENT_SCHEMA",
        "CURRENT_CATALOG",
        "SESSION_USER",
        "SYSTEM_USER",
        "USER",
        "SYSDATE",
        "UTC_DATE",
        "UTC_TIME",
        "UTC_TIMESTAMP",
    }
)
# Strings PostgreSQL reads as the time of the moment where a date or time goes ('now'::timestamp, or set into one).
_MOMENTS = frozenset({"now", "today", "tomorrow", "yesterday"})


def _tables(nodes: Sequence[exp.Expression]) -> Tables:
    """The tables ``nodes`` name, by bare lower-case name; None (any table) when one is not named plainly."""
    names = set()
    for node in nodes:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            return None
        names.add(node.name.lower())
    return frozenset(names)


def _tables_read(node: exp.Expression) -> Tables:
    """Every table ``node`` names, its target among them."""
    return _tables(list(node.find_all(exp.Table)))


def _columns(nodes: Sequence[exp.Expression | None]) -> set[str]:
    """The names of the columns ``nodes`` refer to, lower case, whatever table they are of."""
    return {column.name.lower() for node in nodes if node is not None for column in node.find_all(exp.Column)}


def _row_change(node: exp.Update | exp.Delete | exp.TruncateTable) -> Rows:
    """What an UPDATE, DELETE or TRUNCATE reads and writes, and why it changes nothing run again on its own
    result, when it does (see ``_reruns``)."""
    if isinstance(node, exp.TruncateTable):
        written = _tables(node.expressions)
        plain = not any(node.args.get(name) for name in ("is_database", "option", "partition", "cluster"))
        return Rows(reads=written, writes=written, rerun=TRUNCATE_RERUNS if written is not None and plain else None)
    targets = node.args.get("tables") or [node.this]
    written = _tables(targets)
    bound = node.find(exp.Placeholder) is not None
    # Through foreign keys (ON DELETE CASCADE or SET NULL, ON UPDATE CASCADE), a DELETE or an UPDATE also writes
    # the tables that refer to its own: which ones is not known here, so it writes any table.
    reads = _tables_read(node)
    reruns = written is not None and reads is not None and _reruns(node, written)
    rerun = (UPDATE_RERUNS if isinstance(node, exp.Update) else DELETE_RERUNS) if reruns else None
    return Rows(reads=reads, writes=None, rerun=rerun, bound=bound)


def _reruns(node: exp.Update | exp.Delete, written: frozenset[str]) -> bool:
    """Whether the statement, run again on its own result, finds the same rows and sets them to the same values.

    A DELETE whose test gives the same answer on every run, and reads no row
    of the table it deletes from, finds on a second run only rows the first
    kept. An UPDATE that besides sets values read from no column it sets sets
    each row the first run set to what it already holds; its WHERE may read
    what it sets, unless rows of other tables are joined in (FROM, JOIN,
    USING): which of them a row meets would then change with what it set.
    A WITH, ORDER BY, LIMIT or RETURNING is not looked into.
    """
    allowed = {"this", "expressions", "from_", "where", "using", "tables", "cluster"}
    if any(value for name, value in node.args.items() if name not in allowed):
        return False
    target = node.this
    if not isinstance(target, exp.Table):
        return False
    joined = [node.args.get("from_"), *(node.args.get("using") or ()), *(target.args.get("joins") or ())]
    joined = [found for found in joined if found is not None]
    where = node.args.get("where")
    if not _deterministic([where, *joined]):
        return False
    # What the statement reads beyond its target's own row: subqueries and joined tables, none of them its target.
    beyond = [where, *joined]
    if isinstance(node, exp.Update):
        values = []
        assigned = set()
        names = {"", target.name.lower(), target.alias.lower()}  # a column of another table joined in: not here
        for assignment in node.expressions:
            column = assignment.this if isinstance(assignment, exp.EQ) else None
            if not isinstance(column, exp.Column) or column.table.lower() not in names:
                return False
            assigned.add(column.name.lower())
            values.append(assignment.expression)
        if not _deterministic(values) or _columns(values) & assigned:
            return False
        if joined and _columns([where, *joined]) & assigned:
            return False
        beyond += values
    read_beyond = {table.name.lower() for found in beyond if found is not None for table in found.find_all(exp.Table)}
    return not read_beyond & (written | {target.name.lower()})
