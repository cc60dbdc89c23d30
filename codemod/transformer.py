"""The libcst transformer that wraps each schema op statement in its guard.

It finds Alembic op calls (``op.X(...)``, and ``NAME.X(...)`` for a batch
``NAME``: bound by ``with op.batch_alter_table(...) as NAME``, by another
``with ... as NAME``, or received as a parameter), wraps each statement holding
one in ``if <guard>:``, leaves alone what an enclosing ``if`` or an earlier early
return already tests, and keeps one generated helper block per module holding
exactly the helpers the module calls. Everything it does not guard it reports,
with a reason.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import json
import re
import string
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from typing import TypeVar

import libcst as cst
import libcst.matchers as m

from codemod.effects import ROWLESS, Action, BatchPlan, Decision, Effect, SchemaObject, plan_batch, remade_by
from codemod.formatting import Style
from codemod.guards import (
    BLOCK_MARK,
    DRIFT,
    GUARD,
    LEGACY_HELPERS,
    RIDERS,
    all_of,
    any_of,
    block_header,
    edited_helpers,
    guard_literal,
    guard_test,
    guards_need,
    helper_function_sources,
    is_helper_name,
    reindent,
)
from codemod.helper_import import is_helper_import, with_helper_import
from codemod.lines import ByNode, NodeLines, Walk, called_name
from codemod.nodes import Code
from codemod.results import OpReport, Outcome
from codemod.specs import EXECUTE_SPECS, HELPER_PREFIX, METHOD_SPECS, SPECS, Check, OpSpec
from codemod.sql import DATA_CHANGE, DIALECTS, NOT_A_SEED, Part, Rows, Value, Verbatim, data_change, read_sql

SKIP_MARKER = "idempotify: skip"
_CONNECTION_SQL = "SQL run on the connection is not guarded"
_ENUM_TYPE = m.Name("ENUM") | m.Name("Enum") | m.Attribute(attr=m.Name("ENUM") | m.Name("Enum"))

# Attributes of ``op`` that are not schema operations: never reported.
NOT_OPS = frozenset(
    {
        "f",
        "get_bind",
        "get_context",
        "batch_alter_table",
        "inline_literal",
        "implementation_for",
        "register_operation",
        "invoke",
        "run_async",
        "migration_context",
        "impl",
        "schema_obj",
    }
)

# What an ORM session on the migration's connection does with rows, by method (``session.query(...)`` chains
# apart): none of it is guarded, and each call is listed with its reason.
_SESSION_WRITES = frozenset({"add", "add_all", "merge", "bulk_save_objects", "bulk_insert_mappings"})
_SESSION_CHANGES = frozenset({"delete", "bulk_update_mappings"})
_SESSION_READS = frozenset({"get", "scalar", "scalars"})
_SESSION_FLUSHES = frozenset({"commit", "flush"})
_ORM_QUERY = "its ORM query is a read"
_ORM_WRITE = "its ORM session writes rows (inserts or updates), which is not guarded"
_ORM_FLUSH = "its ORM session writes what was changed on objects it loaded, if anything was, which is not guarded"
_ORM_CHANGE = "its ORM call changes data: it re-runs only if its filter makes it so"

# SQLAlchemy's own DDL on the migration's connection: ``table.create(bind)``, ``metadata.create_all(bind=...)``.
_SCHEMA_ITEM_METHODS = {
    "create": ("bind", "checkfirst"),
    "drop": ("bind", "checkfirst"),
    "create_all": ("bind", "tables", "checkfirst"),
    "drop_all": ("bind", "tables", "checkfirst"),
}
_LOOKS_FIRST = "SQLAlchemy looks first (checkfirst): it drops only what is there"
_LOOKS_AT_TABLES = (
    "SQLAlchemy looks first, table by table (checkfirst): where DDL commits at once (MySQL, MariaDB), a table made "
    "before a crash is skipped on retry, with the indexes it had not made yet"
)
_NO_CHECKFIRST = "SQLAlchemy's create()/drop() of a table, index or sequence is not guarded: pass checkfirst=True"
_CHECKFIRST_FALSE = "checkfirst=False: SQLAlchemy makes or drops every object, there or not"

# Ops with no guard, and why; anything else Alembic offers is "no guard yet".
UNGUARDED_REASONS = {
    "execute": "raw SQL or a statement object is not guarded",
    "bulk_insert": "data change; only a seed insert into a table this function creates is guarded (while it is empty)",
}
_NodeT = TypeVar("_NodeT", bound=cst.CSTNode)
# Nodes no op or guard can be inside of (only whitespace, comments, names, literals, punctuation, operators or
# imports): the transformer has nothing to look at in them, nor, for the leaves, at them.
_NOTHING_INSIDE = frozenset(
    {
        cst.EmptyLine,
        cst.TrailingWhitespace,
        cst.ParenthesizedWhitespace,
        cst.SimpleWhitespace,
        cst.Newline,
        cst.Comment,
        cst.Name,
        cst.SimpleString,
        cst.Integer,
        cst.Float,
        cst.Comma,
        cst.Dot,
        cst.Colon,
        cst.AssignEqual,
        cst.AsName,
        cst.LeftParen,
        cst.RightParen,
        cst.LeftSquareBracket,
        cst.RightSquareBracket,
        cst.LeftCurlyBrace,
        cst.RightCurlyBrace,
        cst.Import,
        cst.ImportFrom,
        *(
            operator
            for base in (cst.BaseBinaryOp, cst.BaseBooleanOp, cst.BaseCompOp, cst.BaseUnaryOp, cst.BaseAugOp)
            for operator in base.__subclasses__()
        ),
    }
)
# Attribute names whose calls may be ops: an op call's arguments are walked only when one is in them.
_OP_LIKE = frozenset({*SPECS, *UNGUARDED_REASONS, *_SCHEMA_ITEM_METHODS})


@dataclass(frozen=True)
class _BatchTable:
    """Where a batch op's table comes from: the ``batch_alter_table`` call, or ``NAME.impl`` at run time."""

    table_name: cst.BaseExpression
    schema: cst.BaseExpression | None
    static: bool = False
    naming_convention: cst.BaseExpression | None = None


def _runtime_batch_table(name: str) -> _BatchTable:
    # A block opened by the project's own helper may pass naming_convention= (mlflow's SQLite recipe for
    # unnamed foreign keys): Alembic keeps it on the batch, so the drop's guard reads it there too.
    return _BatchTable(
        cst.parse_expression(f"{name}.impl.table_name"),
        cst.parse_expression(f"{name}.impl.schema"),
        naming_convention=cst.parse_expression(f"{name}.impl.naming_convention"),
    )


@dataclass(frozen=True)
class _OpCall:
    """An op call found in a statement, with its arguments bound to parameter names."""

    spec: OpSpec | None
    name: str
    display: str
    call: cst.Call
    args: dict[str, cst.BaseExpression] = field(default_factory=dict)
    reason: str | None = None
    safe: bool = False
    batch: _BatchTable | None = None
    parts: tuple[_OpCall, ...] = ()  # further statements of one SQL string, each guarded as its op


@dataclass
class _BatchBlock:
    """The ops of one batch block, in order, and how they are decided together (see ``codemod.effects``)."""

    calls: list[_OpCall]
    plan: BatchPlan
    only_ops: bool = True  # every statement an op (or a guard idempotify wrote around one): nothing else between
    whole: bool = True  # a ``with`` block, all of whose ops run at its end; not a function given a batch op

    def decision(self, call: cst.Call) -> tuple[Decision, list[cst.Call]] | None:
        """This block's decision for ``call`` and the calls it names, if ``call`` is one of its ops."""
        for index, found in enumerate(self.calls):
            if found.call is call and index < len(self.plan.decisions):
                decision = self.plan.decisions[index]
                return decision, [self.calls[earlier].call for earlier in decision.also_after]
        return None

    def remaker(self, call: cst.Call) -> tuple[_OpCall, list[_OpCall]] | None:
        """The later op of the block that makes again the primary key ``call`` drops (see ``Decision``), and
        the ops between the two."""
        for index, found in enumerate(self.calls):
            if found.call is call and index < len(self.plan.decisions):
                later = self.plan.decisions[index].unless_made_by
                if later is None or not self.only_ops:
                    return None
                return self.calls[later], self.calls[index + 1 : later]
        return None


@dataclass
class _IfScope:
    """An enclosing ``if`` as it is decided: whether it guards some op, and the reports of the ops it does not."""

    test: cst.BaseExpression
    covers: list[str] = field(default_factory=list)
    others: list[int] = field(default_factory=list)
    legacy: bool = False  # a guard an older idempotify wrote: replaced by the guards of the ops under it


class GuardTransformer(cst.CSTTransformer):
    """Wraps op statements in guards; see the module docstring."""

    helpers_needed: tuple[str, ...] = ()  # the generated helpers the file's guards need (a shared module's)
    _says_concurrently = True  # the file may build an index concurrently
    _helper_block = ""  # the code of the helper block the module ends with, if any (see ``code``)
    _changed = False  # whether a node was left as another than LibCST rebuilt it (see ``on_leave``)
    _helper_def_depth = 0  # within how many generated helpers' ``def`` the visit is
    _planning_batch = False  # see _match_op
    _module = cst.Module(body=())  # the module visited (see visit_Module)
    _parsing = _module.config_for_parsing

    def __init__(self, style: Style, source: bytes | None = None) -> None:
        """``source`` is the module's bytes, used for line numbers (see ``NodeLines``)."""
        super().__init__()
        self.style = style
        self._source_bytes = source
        self._lines = NodeLines(cst.Module(body=()), None)
        self.reports: list[OpReport] = []
        self._op_names: set[str] = {"op"}
        self._batch_scopes: list[dict[str, _BatchTable]] = []
        self._ifs: list[_IfScope] = []
        self._early_exits: list[list[tuple[int, _IfScope]]] = [[]]
        self._parameters: list[set[str]] = [set()]
        self._bind_names: set[str] = set()
        self._enum_names: set[str] = set()
        self._batch_blocks: set[int] = set()
        self._batch_plans: list[_BatchBlock] = []
        self._tests: dict[int, str | None] = {}
        self._removed_tables: dict[str, set[str]] = {}
        self._removed_in_run: dict[str, set[str]] = {}
        self._loop_strings: dict[str, dict[str, set[str]]] = {}
        self._function_names: list[str] = [""]
        self._made_tables: dict[str, set[str]] = {}
        self._column_drops: dict[str, set[str]] = {}
        self._function_drops: list[bool] = [False]
        self._function_removes: list[set[str]] = [set()]
        self._function_makes: list[set[str]] = [set()]
        self._removal_risks: dict[str, _RemovalRisk] = {}
        self._work_in_run: dict[str, list[_RowWork]] = {}
        self._next_to_data: dict[int, int] = {}  # see _next_to_data_changes
        self._drops_in_run: set[str] = set()  # functions in a run (callers, callees) that drops or renames
        self._function_risks: list[_RemovalRisk | None] = [None]
        self._constants: dict[str, ast.expr] = {}
        self._dialect_blocks: dict[int, str] = {}
        self._dialects: list[str | None] = []
        self._created_tables: list[dict[str, tuple[str, str | None]]] = [{}]
        self._indents: list[str] = []
        self._legacy_bodies: set[int] = set()  # blocks under a legacy guard: they lose its indent
        self._seen_calls: dict[int, tuple[int, str, str, Outcome]] = {}
        self._helpers_called: set[str] = set()
        self._parts_needed: set[str] = set()  # of the helpers, by the guards written or found
        self._chain_calls: set[int] = set()  # calls inside a session's query chain, reported with the chain
        self._orm_loaders: set[str] = set()  # functions that may load ORM objects (and change them)
        self._loads_objects: list[bool] = [False]
        self._handled_calls: set[int] = set()
        self._sharing_a_line: set[int] = set()
        self._matched = ByNode(self._find_op)  # see _match_op
        self._effects_of_one = ByNode(self._effects_found)
        self._source: ByNode[cst.CSTNode, str] = ByNode(self._source_of)
        self._decides_in_try: dict[int, cst.BaseStatement] = {}  # by id, with the statement (see visit_Try)
        self._gates: dict[int, str] = {}  # the make of a primary key its block drops first: when it may run

    # What is walked: nodes that hold only whitespace, comments, punctuation or imports are not entered.

    def on_visit(self, node: cst.CSTNode) -> bool:
        return type(node) not in _NOTHING_INSIDE and super().on_visit(node)

    def on_leave(
        self, original_node: _NodeT, updated_node: _NodeT
    ) -> _NodeT | cst.RemovalSentinel | cst.FlattenSentinel[_NodeT]:
        if type(original_node) in _NOTHING_INSIDE:
            return updated_node
        left = super().on_leave(original_node, updated_node)
        self._changed = self._changed or left is not updated_node
        return left

    # Context: the module, aliases of alembic.op, batch blocks, enclosing ifs, depth.

    def visit_Module(self, node: cst.Module) -> None:
        self._module = node
        self._parsing = node.config_for_parsing  # a property that builds it anew on each use
        self._lines = NodeLines(node, self._source_bytes)
        # An op's own source is looked at for CONCURRENTLY only in files that hold the word (rendering each is slow).
        source = self._source_bytes or node.bytes
        self._says_concurrently = b"concurrently" in source.lower()
        self._op_names = {"op"} | set(_op_aliases(node))
        tree = self._lines.tree
        if tree is not None and BLOCK_MARK.encode() in source:  # a re-run: was its block edited?
            edited = edited_helpers(source.decode(node.encoding, errors="replace"), tree)
            if edited is not None:
                raise edited
        self._constants = _module_constants(tree)
        self._scopes: list[dict[str, ast.expr]] = [self._constants]  # names whose value is known, innermost last
        self._possible: list[_Possible] = [{}]  # names bound several times, and each value they may hold
        walk = self._lines.walk
        by_function, self._function_values, self._function_possible, removals, work = _tables_by_function(
            tree, self._constants, walk
        )
        self._work_in_run = _work_in_run(work, removals.callees(by_function))
        self._orm_loaders = _orm_loaders(tree, walk) if b"Session" in source else set()
        self._removed_tables = {name: ops["drop_table"] | ops["rename_table"] for name, ops in by_function.items()}
        self._removed_in_run = _removed_in_run(self._removed_tables, removals.callees(by_function))
        self._loop_strings = _loop_strings(tree, walk)
        self._removal_risks = _removal_risks(removals, self._loop_strings)
        marked = _marked_lines(source.decode(node.encoding, errors="replace")) if SKIP_MARKER.encode() in source else ()
        self._next_to_data = _next_to_data_changes(
            tree, walk, work, removals.callees(by_function), by_function, self._function_scope, frozenset(marked)
        )
        self._made_tables = {name: ops["create_table"] for name, ops in by_function.items()}
        self._column_drops = {name: ops["drop_column"] | ops[_RENAME_COLUMN] for name, ops in by_function.items()}
        # A query in a helper upgrade() calls fails on a re-run as one in upgrade() does, if upgrade() (or another
        # helper it calls) dropped what it reads: what a function's runs hold counts.
        dropping = {name for name in by_function if self._removed_tables.get(name) or self._column_drops.get(name)}
        together = _together(_runs(by_function, removals.callees(by_function)))
        self._drops_in_run = {name for name, others in together.items() if others & dropping}

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._helper_def_depth += is_helper_name(node.name.value)
        params = node.params
        names = {param.name.value for param in (*params.posonly_params, *params.params, *params.kwonly_params)}
        self._parameters.append(names)
        self._early_exits.append([])
        self._function_names.append(node.name.value)
        self._function_removes.append(self._removed_in_run.get(node.name.value, set()))
        self._function_makes.append(self._made_tables.get(node.name.value, set()))
        self._function_risks.append(self._removal_risks.get(node.name.value))
        self._loads_objects.append(node.name.value in self._orm_loaders)
        self._function_drops.append(node.name.value in self._drops_in_run)
        self._created_tables.append({})
        self._scopes.append(self._function_scope(node.name.value))
        self._possible.append(self._function_possible.get(node.name.value, {}))
        # A function given a batch op (``def rename_pk(batch_op): ...``, called in a batch block) holds ops that
        # also run only when that block ends: they are planned together as a block's are. Ops in a ``with`` or a
        # ``def`` of its own are planned with that.
        batch = {name for name in names if _looks_like_batch(name)}
        block = _BatchBlock([], BatchPlan())
        if batch and not self._helper_def_depth:
            nested = _statements_within(node.body, lambda statement: not isinstance(statement, cst.With))
            inner = {
                id(call)
                for statement in nested
                if isinstance(statement, (cst.With, cst.FunctionDef, cst.ClassDef))
                for call in _calls_within(statement)
            }
            block = self._batch_block(
                node.body.body if isinstance(node.body, cst.IndentedBlock) else (),
                lambda found: id(found.call) not in inner and _receiver(found.call) in batch,
            )
            block.whole = False
        self._batch_plans.append(block)

    def _function_scope(self, name: str) -> dict[str, ast.expr]:
        """The names whose value is known in function ``name``: the module's constants and its names bound once."""
        return _scope(self._constants, self._function_values.get(name, {}))

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        self._parameters.pop()
        for _, scope in self._early_exits.pop():
            self._mark_at_risk(scope)
        self._function_names.pop()
        self._function_removes.pop()
        self._function_makes.pop()
        self._function_risks.pop()
        self._loads_objects.pop()
        self._function_drops.pop()
        self._created_tables.pop()
        self._scopes.pop()
        self._possible.pop()
        self._batch_plans.pop()
        self._helper_def_depth -= is_helper_name(original_node.name.value)
        return updated_node

    def visit_Assign(self, node: cst.Assign) -> None:
        names = {target.target.value for target in node.targets if isinstance(target.target, cst.Name)}
        if self._is_bind(node.value) or self._is_session_on_bind(node.value):
            self._bind_names |= names
        if isinstance(node.value, cst.Call) and m.matches(node.value.func, _ENUM_TYPE):
            self._enum_names |= names
        if (
            len(names) == 1
            and isinstance(node.value, cst.Call)
            and m.matches(node.value.func, m.Attribute(attr=m.Name("create_table")))
        ):
            found = self._match_op(node.value)
            table = found.args.get("table_name") if found is not None and found.spec is not None else None
            if found is not None and table is not None:
                schema = found.args.get("schema")
                entry = (self._source(table), None if schema is None else self._source(schema))
                self._created_tables[-1][next(iter(names))] = entry

    def visit_With(self, node: cst.With) -> None:
        if any(isinstance(item.item, cst.Call) and called_name(item.item.func) == "suppress" for item in node.items):
            self._mark_deciding(node.body, quiet=True)  # ``with contextlib.suppress(...)``: a ``try`` that passes
        scope = {}
        for item in node.items:
            if item.asname is not None and isinstance(item.asname.name, cst.Name):
                name = item.asname.name.value
                if self._is_session_on_bind(item.item):
                    self._bind_names.add(name)
                    continue
                scope[name] = self._batch_table(item) or _runtime_batch_table(name)
        self._batch_scopes.append(scope)
        block = _BatchBlock([], BatchPlan())
        if scope and isinstance(node.body, cst.IndentedBlock):
            self._batch_blocks.add(id(node.body))
            block = self._batch_block(node.body.body, lambda found: True)
        self._batch_plans.append(block)

    def _batch_block(self, statements: Sequence[cst.BaseStatement], taken: Callable[[_OpCall], bool]) -> _BatchBlock:
        """The ops ``taken`` of ``statements``, a batch block's or those of a function that is given a batch op,
        planned together: Alembic runs them all when the block ends (see ``codemod.effects``)."""
        self._planning_batch = True
        calls = [found for statement in statements for found in self._ops_within(statement) if taken(found)]
        self._planning_batch = False
        block = _BatchBlock(calls, plan_batch([self._effects(found) for found in calls]))
        if any(decision.unless_made_by is not None for decision in block.plan.decisions):
            block.only_ops = all(self._is_op_only(statement) for statement in statements)
        return block

    def leave_With(self, original_node: cst.With, updated_node: cst.With) -> cst.With:
        scope = self._batch_scopes.pop()
        block = self._batch_plans.pop()
        guarded = any(self._tests.get(id(found.call)) is not None for found in block.calls)
        if guarded and isinstance(updated_node.body, cst.IndentedBlock):
            return updated_node.with_changes(body=self._with_batch_recovery(scope, updated_node.body))
        return updated_node

    def _with_batch_recovery(self, scope: dict[str, _BatchTable], body: cst.IndentedBlock) -> cst.IndentedBlock:
        """The block, first finishing or undoing the table copy of a batch block that died part-way (SQLite)."""
        tables = [table for table in scope.values() if table.static]
        first = body.body[0] if body.body else None
        if len(tables) != 1 or (first is not None and _is_helper_statement(first, _RECOVER_BATCH)):
            return body
        arguments = self._source(tables[0].table_name)
        if tables[0].schema is not None:
            arguments += f", schema={self._source(tables[0].schema)}"
        self._helpers_called.add(_RECOVER_BATCH)
        call = f"{_RECOVER_BATCH}({arguments})"
        if "\n" in call:  # as written, not indented anew as Code's lines after the first are
            statement = cst.parse_statement(call + self._module.default_newline, config=self._parsing)
        else:
            statement = cst.SimpleStatementLine(body=[cst.Expr(Code(call))])
        return body.with_changes(body=[statement, *body.body])

    def visit_Try(self, node: cst.Try) -> None:
        """Ops of the ``try`` body whose failure decides what runs next are marked, to be left alone."""
        if not node.handlers or all(_ends_in_raise(handler.body) for handler in node.handlers):
            return  # a failure goes on up, as the failure of an op outside a ``try`` does
        self._mark_deciding(node.body, quiet=node.orelse is None and all(_does_nothing(h.body) for h in node.handlers))

    def _mark_deciding(self, body: cst.BaseSuite, *, quiet: bool) -> None:
        """Mark the statements of ``body``, which a failure leaves for code that goes on, whose failure decides
        what runs next: all, or, when what goes on does nothing (``quiet``), all but those run last."""
        last = _run_last(body.body) if quiet and isinstance(body, cst.IndentedBlock) else set()
        for statement in _statements_within(body):
            if id(statement) not in last:
                self._decides_in_try[id(statement)] = statement

    def visit_If(self, node: cst.If) -> None:
        self._lines.visit(node)
        self._ifs.append(_IfScope(node.test, legacy=_is_legacy_guard(node)))
        if self._ifs[-1].legacy:
            self._legacy_bodies.add(id(node.body))
        dialect = _dialect_tested(node.test)
        if dialect is not None:
            self._dialect_blocks[id(node.body)] = dialect
        if node.orelse is None and _exits(node.body):
            self._early_exits[-1].append((self._line(node), _IfScope(node.test)))

    def leave_If(
        self, original_node: cst.If, updated_node: cst.If
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        scope = self._ifs.pop()
        if scope.legacy:
            return self._without_legacy_guard(updated_node)
        self._mark_at_risk(scope)
        for call in m.findall(original_node.test, m.Call(func=m.Name())):
            assert isinstance(call, cst.Call) and isinstance(call.func, cst.Name)
            if call.func.value in LEGACY_HELPERS:
                error = SyntaxError(
                    f"{call.func.value} is a guard helper of an older idempotify, in a test it did not write; "
                    "put back the original op, or the test it had, and run idempotify again"
                )
                error.lineno = self._line(original_node)
                raise error
        return updated_node

    def _without_legacy_guard(self, node: cst.If) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        """The statements under a guard an older idempotify wrote, each now guarded on its own.

        Its ``else: t = _idempotify_table(...)`` (what stands in for a skipped
        create_table's result) goes to the new guard of that create_table.
        """
        body = list(node.body.body) if isinstance(node.body, cst.IndentedBlock) else []
        if not body:
            return node
        first = body[0]
        if node.orelse is not None:
            if len(body) != 1 or not isinstance(first, cst.If) or first.orelse is not None:
                return node  # left as it was: the legacy names in it are reported when the module is left
            first = first.with_changes(orelse=node.orelse)
        if isinstance(first, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            body[0] = first.with_changes(leading_lines=[*node.leading_lines, *first.leading_lines])
        return cst.FlattenSentinel(body)

    def _mark_at_risk(self, scope: _IfScope) -> None:
        """Ops under a hand-written ``if`` (or after an early return) that tests another op's object only."""
        if not (scope.covers and scope.others):
            return
        covered = ", ".join(sorted(set(scope.covers)))
        for index in scope.others:
            report = self.reports[index]
            reason = (
                f"at risk: under a hand-written `if` that tests another object ({covered}); a deploy that dies "
                "after that object is made never runs this op on retry; guard each op on its own object"
            )
            self.reports[index] = OpReport(report.line, report.call, Outcome.UNGUARDED, reason)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        if len(node.body) > 1:  # op.a(); op.b()
            self._sharing_a_line.update(id(small.value) for small in node.body if isinstance(small, cst.Expr))

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        indent = node.indent if node.indent is not None else self._module.default_indent
        self._indents.append("" if id(node) in self._legacy_bodies else indent)
        self._dialects.append(self._dialect_blocks.get(id(node)))

    def visit_Call(self, node: cst.Call) -> bool:
        self._lines.visit(node)
        if (
            isinstance(node.func, cst.Name)
            and is_helper_name(node.func.value)
            and node.func.value not in LEGACY_HELPERS
            and not self._helper_def_depth
        ):
            # By guards already in place; the generated block is rebuilt.
            self._note_guards(self._module.code_for_node(node))
        found = self._match_op(node)
        if found is not None and self._says_concurrently and "concurrently" in self._source(node).lower():
            self._helpers_called.add(_DROP_INVALID_INDEX)  # in the block only with the index finder
        if found is not None:
            if found.safe:
                self._seen_calls[id(node)] = (self._line(node), found.display, found.reason or "", Outcome.ALREADY_SAFE)
            else:
                # An op it could guard, were it a statement of its own; else its own reason (SQL, or no guard).
                reason = found.reason if found.spec is None and found.reason is not None else _NOT_A_STATEMENT
                if found.spec is not None and id(node) in self._sharing_a_line:
                    reason = _SHARES_A_LINE
                self._seen_calls[id(node)] = (self._line(node), found.display, reason, Outcome.UNGUARDED)
        # The arguments of calls are most of a migration: skip them unless they may hold an op, or a guard.
        inside = self._lines.calls_inside(node)
        if inside is not None and not any(self._may_matter(call, in_op=found is not None) for call in inside):
            self._lines.skip_children(node)
            return False
        return True

    def _may_matter(self, call: ast.Call, *, in_op: bool) -> bool:
        """Whether Python's node for a call could be an op call, or a guard's (cheaply, erring towards yes). In an
        op's arguments, a query of a session on the connection is part of the op's statement, said with it."""
        func = call.func
        if isinstance(func, ast.Name):
            return is_helper_name(func.id) and not in_op
        if not isinstance(func, ast.Attribute):
            return False
        if func.attr in _OP_LIKE:
            return True
        names = self._op_names | self._parameters[-1] | (set() if in_op else self._bind_names)
        names |= {name for scope in self._batch_scopes for name in scope}
        return isinstance(func.value, ast.Name) and func.value.id in names

    # Rewriting: statements are guarded block by block, so a create_table and
    # the bulk_insert that fills it can share one guard.

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body = self._guard_statements(original_node.body, updated_node.body, id(original_node) in self._batch_blocks)
        self._indents.pop()
        self._dialects.pop()
        if body is None:
            return updated_node
        return updated_node.with_changes(body=body)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        for call_id, (line, display, reason, outcome) in self._seen_calls.items():
            if call_id not in self._handled_calls:
                self.reports.append(OpReport(line, display, outcome, reason))
        self.reports.sort(key=lambda report: report.line)
        return self._with_helper_block(updated_node)

    def _guard_statements(
        self, originals: Sequence[cst.BaseStatement], updated: Sequence[cst.BaseStatement], batch: bool
    ) -> list[cst.BaseStatement] | None:
        """The block's statements with guards, or None when none is needed.

        An object the block both creates and removes (drop a column and add it
        back, create a table and rename it away) cannot be guarded: whether the
        block already ran cannot be told from the schema. Its ops are left
        alone and reported; in a batch block, all of the block's ops, since
        Alembic runs them together when the block ends. The other ops of a
        batch block are decided as ``codemod.effects.plan_batch`` says.
        """
        ops = [(statement, found) for statement in originals if (found := self._op_in_statement(statement))]
        churned_blocks = [block for block in self._batch_plans if block.plan.left_alone is not None]
        left: set[int] = set()  # the calls of a churned function's plan: its other ops run at once, as any
        if churned_blocks:
            names = ", ".join(sorted({name for block in churned_blocks for name in block.plan.objects}))
            reason = f"in a batch block that drops and re-creates {names}: {_CHURN}"
            if any(block.whole for block in churned_blocks):
                self._leave_alone(ops, reason)
                return None
            left = {id(found.call) for block in churned_blocks for found in block.calls}
            self._leave_alone([(statement, found) for statement, found in ops if id(found.call) in left], reason)
            ops = [(statement, found) for statement, found in ops if id(found.call) not in left]
        # In a plain block each guard looks at the schema when its op is reached, so an index or constraint
        # dropped and made again (or made and dropped) is decided right op by op; tables and columns hold rows.
        churned = {
            key: label
            for key, label in self._churned_objects(found for _, found in ops).items()
            if key[0] not in ROWLESS
        }
        # A primary key dropped and made again under its name: the drop looks first at what the make makes.
        drops = not batch and any(found.name == "drop_constraint" for _, found in ops)
        remade = remade_by([self._effects(found) for _, found in ops]) if drops else ()
        remakers = {
            id(ops[index][1].call): (ops[later][1], [found for _, found in ops[index + 1 : later]])
            for index, later in enumerate(remade)
            if later is not None and _adjacent(originals, [statement for statement, _ in ops[index : later + 1]])
        }
        result: list[cst.BaseStatement] = []
        changed = False
        for index, original in enumerate(originals):
            found = self._op_in_statement(original)
            if found is None or id(found.call) in left:
                result.append(updated[index])
                continue
            test, report = self._decide(found, original, originals[index + 1 :])
            if test is not None and id(original) in self._decides_in_try:
                test, report = None, OpReport(report.line, report.call, Outcome.UNGUARDED, _DECIDES_IN_TRY)
            data = self._next_to_data.get(report.line)
            if test is not None and data is not None and report.outcome is Outcome.GUARDED:
                test = None
                report = OpReport(report.line, report.call, Outcome.UNGUARDED, _NEXT_TO_DATA.format(line=data))
            remaker = remakers.get(id(found.call)) or self._batch_remaker(found)
            if test is not None and remaker is not None and report.outcome is Outcome.GUARDED:
                gate = self._exactly_made(*remaker)
                if gate is not None:
                    test = all_of([gate, test])
                    self._gates[id(remaker[0].call)] = gate
            if test is not None and any(_object_key(effect) in churned for effect in self._effects(found)):
                test = None
                reason = f"its function (or the branch it is in) both creates and removes {_names(churned)}: {_CHURN}"
                report = OpReport(report.line, report.call, Outcome.UNGUARDED, reason)
            elif test is not None:
                test, report = self._in_batch(found, test, report)
            if test is not None and id(found.call) in self._gates:
                # The key its drop skips, being already the one made, is not made again: whatever else would
                # make this op run (a drop_column before it, in a batch block) the key is there.
                test = all_of([self._gates[id(found.call)], test])
            self._tests[id(found.call)] = test
            self._record(report, found)
            if test is None:
                result.append(updated[index])
                continue
            result.append(self._wrap(test, [updated[index]], self._skipped_result(found, original, originals)))
            changed = True
        return result if changed else None

    def _batch_remaker(self, found: _OpCall) -> tuple[_OpCall, list[_OpCall]] | None:
        for block in reversed(self._batch_plans):
            remaker = block.remaker(found.call)
            if remaker is not None:
                return remaker
        return None

    def _exactly_made(self, maker: _OpCall, between: Sequence[_OpCall]) -> str | None:
        """The test that the primary key ``maker`` makes is not there as it makes it (by its name and its
        columns, all a primary key is): the drop of that key before it, and ``maker`` itself, run only then.

        None when an op ``between`` the drop and the make may touch a column of
        the key (dropped first, say, to make one of them nullable or change its
        type): those must find the key gone, as in the original.
        """
        assert maker.spec is not None
        check = maker.spec.checks[0]
        columns = maker.args.get("columns")
        if any(maker.args.get(name) is None for name in check.args) or not isinstance(columns, cst.List):
            return None
        names = {_string_value(element.value) for element in columns.elements}
        if None in names:
            return None
        keys = {_string_key(name) for name in names if name is not None}
        for found in between:
            if found.spec is None:
                return None
            for effect in self._effects(found):
                target = effect.target
                if target.kind == "column" and (not target.literal or target.name is None or target.name in keys):
                    return None
        args = {**self._guard_args(maker, check), "exact": "True"}
        keywords = (*(name for name in check.keywords if name != "copied"), "exact")
        return guard_test(maker.display, [replace(check, keywords=keywords)], args)

    def _guard_args(self, found: _OpCall, check: Check) -> dict[str, str]:
        """The source of each argument ``check``'s guard passes, by the op's parameter: its positional ones
        ("None" where not given), then the keywords given (with an unnamed object's, when it is unnamed)."""
        args = {name: "None" if found.args.get(name) is None else self._source(found.args[name]) for name in check.args}
        keywords = check.keywords + (check.unnamed_keywords if _is_none(found.args.get(check.subject)) else ())
        args.update((name, self._source(found.args[name])) for name in keywords if _passed(found.args, name))
        return args

    def _is_op_only(self, statement: cst.BaseStatement) -> bool:
        """An op statement, a call of a generated helper, or an ``if`` idempotify wrote around such statements."""
        if self._op_in_statement(statement) is not None:
            return True
        if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
            small = statement.body[0]
            return (
                isinstance(small, cst.Expr)
                and isinstance(small.value, cst.Call)
                and isinstance(small.value.func, cst.Name)
                and is_helper_name(small.value.func.value)
            )
        if isinstance(statement, cst.If) and statement.orelse is None and isinstance(statement.body, cst.IndentedBlock):
            return _helpers_only(statement.test) and all(self._is_op_only(inner) for inner in statement.body.body)
        return False

    def _in_batch(self, found: _OpCall, test: str, report: OpReport) -> tuple[str | None, OpReport]:
        """The test of an op of a batch block, decided with the ops before it in the block."""
        for block in reversed(self._batch_plans):
            known = block.decision(found.call)
            if known is None:
                continue
            decision, earlier = known
            if decision.runs_always is not None:
                return None, OpReport(report.line, report.call, Outcome.ALREADY_SAFE, decision.runs_always)
            if not decision.also_after:
                return test, report
            tests = [self._tests.get(id(call)) for call in earlier]
            if any(earlier_test is None for earlier_test in tests):
                reason = (
                    "an earlier op of its batch block removes what it creates, and that op is not guarded by "
                    f"idempotify, so this one must run whenever that one does; {_BY_HAND}"
                )
                return None, OpReport(report.line, report.call, Outcome.UNGUARDED, reason)
            return any_of([*(t for t in tests if t is not None), test]), report
        return test, report

    def _record(self, report: OpReport, found: _OpCall) -> None:
        """Add the report, and tell the enclosing ``if`` statements whether they guard the op."""
        index = len(self.reports)
        self.reports.append(report)
        covering = report.outcome is Outcome.ALREADY_SAFE and report.reason == _ENCLOSING
        for scope in self._enclosing_scopes(report.line):
            if covering and found.spec is not None and self._covered_by(found, scope.test):
                scope.covers.append(self._subject_label(found))
                covering = False
            elif not (found.spec is not None and self._covered_by(found, scope.test)):
                scope.others.append(index)

    def _enclosing_scopes(self, line: int) -> list[_IfScope]:
        """The ``if`` statements around ``line``, innermost first, then the early returns before it."""
        ifs = [scope for scope in reversed(self._ifs) if not scope.legacy]
        return [*ifs, *(scope for exit_line, scope in self._early_exits[-1] if exit_line < line)]

    def _enclosing_tests(self, line: int) -> list[cst.BaseExpression]:
        return [scope.test for scope in self._enclosing_scopes(line)]

    def _covered_by(self, found: _OpCall, test: cst.BaseExpression) -> bool:
        return any(
            _already_tests(test, check, part.args)
            for part in (found, *found.parts)
            if part.spec is not None
            for check in part.spec.checks
        )

    def _subject_label(self, found: _OpCall) -> str:
        if found.spec is None:
            return found.display
        subject = found.args.get(found.spec.checks[0].subject)
        return found.display if subject is None else f"{found.spec.checks[0].kind} {self._source(subject)}"

    def _skipped_result(
        self, found: _OpCall, statement: cst.BaseStatement, block: Sequence[cst.BaseStatement]
    ) -> str | None:
        """``t = <helper>(...)``: what stands in for the op's result when the guard skips it and ``t`` is used."""
        target = _assigned_name(statement)
        spec = found.spec
        if target is None or spec is None or spec.skipped_result is None:
            return None
        later = block[list(block).index(statement) + 1 :]
        if not _uses_name(later, target):
            return None
        check = spec.checks[0]
        arguments = [self._source(found.args[name]) for name in check.args]
        arguments += [f"{name}={self._source(found.args[name])}" for name in ("schema",) if _passed(found.args, name)]
        return f"{target} = {HELPER_PREFIX}{spec.skipped_result}({', '.join(arguments)})"

    def _ops_within(self, statement: cst.BaseStatement) -> list[_OpCall]:
        found = self._op_in_statement(statement)
        if found is not None:  # the common case, without walking the statement
            return [found]
        return [found for call in _calls_within(statement) if (found := self._match_op(call))]

    def _leave_alone(self, ops: list[tuple[cst.BaseStatement, _OpCall]], reason: str) -> None:
        for statement, found in ops:
            self._handled_calls.add(id(found.call))
            self._tests[id(found.call)] = None
            self.reports.append(OpReport(self._line(statement), found.display, Outcome.UNGUARDED, reason))

    def _churned_objects(self, ops: Iterable[_OpCall]) -> dict[tuple[str, str], str]:
        """Objects that ops of one block (not a batch block) both create and remove, in either order, by label."""
        actions: dict[tuple[str, str], set[Action]] = {}
        labels: dict[tuple[str, str], str] = {}
        for found in ops:
            for effect in self._effects(found):
                key = _object_key(effect)
                if key is not None:
                    actions.setdefault(key, set()).add(effect.action)
                    labels[key] = effect.target.label
        return {key: labels[key] for key, seen in actions.items() if {Action.CREATES, Action.REMOVES} <= seen}

    def _effects(self, found: _OpCall) -> list[Effect]:
        """What the op does to the schema, for planning a batch block."""
        return [effect for part in (found, *found.parts) for effect in self._effects_of_one(part)]

    def _effects_found(self, found: _OpCall) -> list[Effect]:
        """What one op does to the schema (see ``_effects_of_one``, which tells it once)."""
        spec = found.spec
        if found.name == "insert" and "table_name" in found.args:  # rows: with its table, never churned
            rows_of = found.args["table_name"]
            label = f"table {self._source(rows_of)}"
            return [Effect(Action.CHANGES, SchemaObject(kind="table", name=self._key(rows_of), label=label))]
        if spec is None:
            return []
        table_param = spec.batch_table[0]
        table = found.args.get(table_param)
        effects = []
        for check in spec.checks:
            subject = found.args.get(check.subject)
            if subject is None or (check.only_with is not None and not _passed(found.args, check.only_with)):
                continue
            if check.creates:
                action = Action.CREATES
            elif check.removes_with is None or _passed(found.args, check.removes_with):
                action = Action.REMOVES
            else:
                action = Action.CHANGES
            constraint_type = check.constraint_type
            if check.type_param is not None:
                type_value = found.args.get(check.type_param)
                constraint_type = _string_value(type_value) if type_value is not None else None
            unnamed = _is_none(subject)
            value = _string_value(subject)  # "ix" and op.f("ix") name the same index
            on_table = check.kind in {"column", "index", "constraint"}
            target = SchemaObject(
                kind=check.kind,
                name=None if unnamed else self._key(subject),
                table=self._key(table) if on_table and table is not None else None,
                literal=unnamed or value is not None,
                type_=constraint_type,
                label=f"{check.kind} "
                + ("None" if unnamed else f'"{value}"' if value is not None else self._source(subject)),
            )
            effects.append(Effect(action, target))
            if spec.name == "drop_column" and found.batch is not None and target.table is not None:
                # The primary key the column is part of goes with it (PostgreSQL, MySQL, SQLite's copy).
                key = SchemaObject(
                    "constraint", None, target.table, literal=False, type_="primary", label="primary key"
                )
                effects.append(Effect(Action.REMOVES, key, implied=True))
        return effects

    def _decide(
        self, found: _OpCall, statement: cst.BaseStatement, later: Sequence[cst.BaseStatement]
    ) -> tuple[str | None, OpReport]:
        """The guard test for the op (None when it is left alone) and the report saying why."""
        self._handled_calls.add(id(found.call))
        line = self._line(statement)

        def left(reason: str, outcome: Outcome = Outcome.UNGUARDED) -> tuple[None, OpReport]:
            return None, OpReport(line, found.display, outcome, reason)

        if _has_skip_marker(statement):
            return left(f"skipped by `# {SKIP_MARKER}`", Outcome.SKIPPED)
        if found.name == "bulk_insert" and found.spec is None and found.reason is None:
            return self._seed_insert(found, line)
        if found.name == "insert" and found.spec is None:
            return self._seed_sql(found, line)
        if found.spec is None or found.reason is not None:
            reason = found.reason or UNGUARDED_REASONS.get(found.name, f"no guard for {found.name} yet")
            return left(reason, Outcome.ALREADY_SAFE if found.safe else Outcome.UNGUARDED)
        tests = []
        risk = self._removal_risk(found, line)
        for part in (found, *found.parts):
            test, why = self._test(part, line, statement, later)
            if test is None:
                assert why is not None
                if risk is not None and why == (_ENCLOSING, Outcome.ALREADY_SAFE):
                    return left(risk)  # its guard, from an earlier run, is no more than it was then
                return left(*why)
            tests.append(test)
        if risk is not None:
            return any_of(tests), OpReport(line, found.display, Outcome.UNGUARDED, risk)
        return any_of(tests), OpReport(line, found.display, Outcome.GUARDED)

    def _test(
        self, found: _OpCall, line: int, statement: cst.BaseStatement, later: Sequence[cst.BaseStatement]
    ) -> tuple[str | None, tuple[str, Outcome] | None]:
        """The guard test of an op with a spec, or None and why it is left alone."""
        spec = found.spec
        assert spec is not None

        def left(reason: str, outcome: Outcome = Outcome.UNGUARDED) -> tuple[None, tuple[str, Outcome]]:
            return None, (reason, outcome)

        for flag in spec.native_flags:
            value = found.args.get(flag)
            # create_table(if_not_exists=True) sends its CREATE INDEX statements without it: only a table that
            # makes no index is idempotent so; one that does is guarded as any other.
            indexed = spec.name == "create_table" and _indexes_made(found.call.args[1:], self._known_value) != []
            if value is not None and m.matches(value, m.Name("True")) and not indexed:
                return left(f"already idempotent ({flag}=True)", Outcome.ALREADY_SAFE)
        if spec.name == "alter_column" and self._changes_a_checked_type(found):
            return left(
                "changes a type whose CHECK constraint Alembic drops by name (a non-native Enum or a Boolean "
                "with create_constraint): a second run finds no constraint to drop and fails, or on MariaDB adds "
                f"the CHECK again beside the first, as the original does; {_BY_HAND}"
            )
        # In a batch block on SQLite the column and what it carries come in one CREATE TABLE of the copy, and an
        # add_column of a column the table has replaces it, its values lost: there the guard keeps them.
        plain_add = spec.name == "add_column" and found.batch is None
        carried = _carried_by_column(_bind_as_given(found.call, spec.op_params).get("column")) if plain_add else ()
        if carried:
            return left(
                f"its column carries {' and '.join(carried)}, which Alembic adds in statements of their own after "
                "the column: on a database without transactional DDL (MariaDB, MySQL) a deploy that dies between "
                "them leaves the column without them, and a guard on the column would skip the op and never add "
                f"them, where the original fails loudly; {_BY_HAND}"
            )
        checks = [check for check in spec.checks if check.only_with is None or _passed(found.args, check.only_with)]
        args: dict[str, str] = {}
        for check in checks:
            missing = next((name for name in check.args if name not in found.args and name not in spec.optional), None)
            if missing is not None:
                return left(f"cannot find its {missing} argument (passed with * or **?)")
            if _is_none(found.args.get(check.subject)) and not check.unnamed:
                return left(f"its {check.subject} is None: there is no name to look up")
            args.update(self._guard_args(found, check))
        gone = self._removes_table_of(found)
        if gone is not None:
            args["skip_without_table"] = gone
        if found.batch is not None and not _is_none(found.args.get(checks[0].subject)):
            args["copied"] = "True"  # Only the constraint creates list it among their keywords.
        if any(_already_tests(test, check, found.args) for test in self._enclosing_tests(line) for check in checks):
            return left(_ENCLOSING, Outcome.ALREADY_SAFE)
        target = _assigned_name(statement)
        if target is not None and spec.skipped_result is None and _uses_name(later, target):
            return left(f"its result {target!r} is used further down; {_BY_HAND}")
        test = guard_test(found.display, checks, args)
        # Where a later op of the block may drop an index it makes, or rename or drop the column of one, a re-run
        # would find it missing: the guard then looks at the table only, as a hand-written one would.
        indexes = _indexes_made(found.call.args[1:], self._known_value) if spec.name == "create_table" else []
        if indexes != [] and any(  # only then: most tables make no index, and a block may hold many tables
            self._may_change_indexes_of(found.args["table_name"], statement) for statement in later
        ):
            indexes = []
        if spec.name == "create_table":
            if indexes is None:
                return left(
                    "its columns or indexes are not all written out (a variable, a * spread, a name not a string): "
                    "an index it makes with CREATE INDEX after CREATE TABLE cannot be looked for when the table is "
                    f"there, after a deploy that died between them; {_BY_HAND}"
                )
            if indexes:
                test = f"{test[:-1]}, indexes=[{', '.join(indexes)}])"
        if found.name == "create_table" and self._declares_enum(found.call):
            schema = f", schema={args['schema']}" if "schema" in args else ""
            test += f" and {HELPER_PREFIX}reuse_enum_types({args['table_name']}{schema})"
        return test, None

    def _may_change_indexes_of(self, table: cst.BaseExpression, statement: cst.BaseStatement) -> bool:
        """Whether ``statement`` may drop an index of ``table``, or rename or drop a column of it: an op that
        names the table (``drop_index``, ``drop_column``, ``alter_column``, also in a batch block on it), or SQL
        that names it and drops or renames. Ops on other tables, and other SQL (a backfill), do not."""
        source = self._module.code_for_node(statement)
        value = _string_value(table)
        names = [f'"{value}"', f"'{value}'"] if value is not None else [self._source(table)]
        if any(name in source for name in names) and _CHANGES_INDEXES.search(source):
            return True
        word = re.escape(value if value is not None else self._source(table))
        # The table's name, also as a part of an index's (DROP INDEX ix_t_a).
        return bool(_SQL_CHANGES_INDEXES.search(source) and re.search(rf"(?<![^\W_]){word}(?![^\W_])", source))

    def _removes_table_of(self, found: _OpCall) -> str | None:
        """``gone=``'s value: whether the run the op is in drops or renames away the table the op works on.

        Only then may a guard skip the op when the table is missing (a re-run
        finds it gone); anywhere else the op runs, and fails as the original does.
        The run is the op's function and what it calls, or of a helper, also what
        every function calling it runs (``_removed_in_run``). A table named by a
        loop variable over literal names (``for index, table in (("ix", "t"), ...)``)
        some of which the run removes is compared with those at run time.
        """
        assert found.spec is not None
        removed = self._function_removes[-1]
        table = found.args.get(found.spec.batch_table[0])
        if not removed or table is None:
            return None
        if self._key(table) in removed:
            return "True"
        if not isinstance(table, cst.Name):
            return None
        values = self._loop_strings.get(self._function_names[-1], {}).get(table.value, set())
        named = sorted(value for value in values if _string_key(value) in removed)
        return f"{table.value} in ({''.join(f'{name!r}, ' for name in named).rstrip()})" if named else None

    def _removal_risk(self, found: _OpCall, line: int) -> str | None:
        """Why the op's guard cannot make a re-run pass, when a table it works in may be removed after it.

        A table dropped or renamed away by a name known only at run time (a loop
        over names), after the op in its function, or any table removed after a
        call of the helper function the op is in: a re-run finds the table gone,
        and the guard lets the op run and fail there, as the original does.
        """
        risk = self._function_risks[-1]
        assert found.spec is not None
        on_a_table = any("skip_without_table" in check.keywords for check in found.spec.checks)
        table = found.args.get(found.spec.batch_table[0])
        if risk is None or line >= risk.line or not on_a_table or table is None or self._removes_table_of(found):
            return None
        if risk.tables is not None and _string_value(table) is not None and self._key(table) not in risk.tables:
            return None  # a table named here, which the removals after it, all named, do not name
        return (
            f"at risk: guarded, but {risk.removal} may remove its table; a re-run after that finds the "
            f"table gone and fails here, as the original does; {_BY_HAND}"
        )

    def _seed_insert(self, found: _OpCall, line: int) -> tuple[str | None, OpReport]:
        """``op.bulk_insert(t, rows)`` with ``t`` from this function's create_table: runs while the table is empty."""
        table = found.call.args[0].value if found.call.args and found.call.args[0].keyword is None else None
        created = self._created_tables[-1].get(table.value) if isinstance(table, cst.Name) else None
        if created is None and table is not None:
            created = self._made_table_named(table)
        if created is None:
            return None, OpReport(line, found.display, Outcome.UNGUARDED, UNGUARDED_REASONS["bulk_insert"])
        return self._seed(found, line, *created)

    def _made_table_named(self, table: cst.BaseExpression) -> tuple[str, str | None] | None:
        """``sa.table("t", ...)`` or ``sa.Table("t", metadata)`` (or a name bound once to one) naming a table this
        function's create_table makes (zenml reflects it for its seed row): its name and schema, as sources."""
        node = self._python_expression(table)
        if isinstance(node, ast.Name):
            node = self._scopes[-1].get(node.id)
        if not isinstance(node, ast.Call) or not node.args or isinstance(node.args[0], ast.Starred):
            return None
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        name = node.args[0]
        if called not in {"table", "Table"} or not isinstance(name, ast.Constant) or not isinstance(name.value, str):
            return None
        if _string_key(name.value) not in self._function_makes[-1]:
            return None
        schema = next((keyword.value for keyword in node.keywords if keyword.arg == "schema"), None)
        return repr(name.value), None if schema is None else ast.unparse(schema)

    def _seed_sql(self, found: _OpCall, line: int) -> tuple[str | None, OpReport]:
        """An SQL INSERT into a table this function's create_table makes: runs while the table is empty."""
        table = found.args["table_name"]
        if self._key(table) not in self._function_makes[-1]:
            return None, OpReport(line, found.display, Outcome.UNGUARDED, str(found.reason))
        schema = found.args.get("schema")
        return self._seed(found, line, self._source(table), None if schema is None else self._source(schema))

    def _seed(self, found: _OpCall, line: int, name: str, schema: str | None) -> tuple[str | None, OpReport]:
        if any(_calls_guard(test, _SEEDED) for test in self._enclosing_tests(line)):
            return None, OpReport(line, found.display, Outcome.ALREADY_SAFE, _ENCLOSING)
        schema_argument = "" if schema is None else f", schema={schema}"
        test = f"{GUARD}({guard_literal(f'{found.display}: {_SEEDED}', [name])}, {name}{schema_argument})"
        return test, OpReport(line, found.display, Outcome.GUARDED)

    def _changes_a_checked_type(self, found: _OpCall) -> bool:
        """An alter_column from or to an Enum/Boolean that carries a CHECK constraint: not harmless to re-apply."""
        for name in ("type_", "existing_type"):
            value = found.args.get(name)
            if value is None:
                continue
            source = self._source(value)
            if re.search(r"\b(?:Enum|Boolean)\b", source) and re.search(
                r"create_constraint\s*=\s*True|native_enum\s*=\s*False", source
            ):
                return True
        return False

    def _declares_enum(self, call: cst.Call) -> bool:
        """Whether a column of this create_table may have an enum type (PostgreSQL creates those with it)."""
        source = self._lines.text(call) or self._source(call)  # the words are looked for: its layout is no matter
        names = "|".join(re.escape(name) for name in ("Enum", "ENUM", *sorted(self._enum_names)))
        return re.search(rf"\b(?:{names})\b", source) is not None

    def _key(self, expression: cst.BaseExpression) -> str:
        """What names an object, compared: a string's value (also through op.f), else the normalised source.

        Matches ``_removed_tables``' keys, which come from Python's own tree.
        """
        value = _string_value(expression)
        if value is not None:
            return _string_key(value)
        return _normalized(self._source(expression))

    def _known_value(self, expression: cst.BaseExpression) -> cst.BaseExpression | None:
        """The value of a name bound once in the function (or the module), as LibCST's node; else None."""
        if not isinstance(expression, cst.Name):
            return None
        value = self._scopes[-1].get(expression.value)
        return None if value is None else cst.parse_expression(ast.unparse(value))

    def _source_of(self, node: cst.CSTNode) -> str:
        """The code of ``node``, stripped (see ``_source``, which generates it once)."""
        return self._module.code_for_node(node).strip()

    def _note_guards(self, source: str) -> None:
        """The helpers, and the parts of them, that the guards in ``source`` need go into the block."""
        helpers, parts = guards_need(source)
        self._helpers_called.update(helpers)
        self._parts_needed.update(parts)

    def _wrap(self, test: str, statements: Sequence[cst.BaseStatement], otherwise: str | None = None) -> cst.If:
        """``if <test>:`` around ``statements``, with ``else: <otherwise>`` when given."""
        indent_width = sum(len(indent.expandtabs(8)) for indent in self._indents)
        # Code taken from a CRLF (or CR) file keeps its line ends; the header is written with "\n" (then the file's),
        # as Python reads them.
        header = self.style.if_header(test.replace("\r\n", "\n").replace("\r", "\n"), indent_width)
        self._note_guards(test)
        newline = self._module.default_newline
        formatted = header.removeprefix("if ").removesuffix(":\n    pass\n")
        parsed: cst.BaseExpression = Code(formatted.replace("\n", newline))
        if len(formatted) != len(header) - len("if :\n    pass\n"):
            # A comment in an argument, which black moves after the colon: the guard's test goes without it.
            guard = cst.parse_statement(header.replace("\n", newline), config=self._parsing)
            assert isinstance(guard, cst.If), header
            parsed = guard.test
        first, *rest = statements
        assert isinstance(first, cst.SimpleStatementLine)
        body = [first.with_changes(leading_lines=()), *rest]
        orelse = None
        if otherwise is not None:
            self._note_guards(otherwise)
            statement = cst.parse_statement(otherwise + newline, config=self._parsing)
            orelse = cst.Else(body=cst.IndentedBlock(body=[statement]))
        return cst.If(test=parsed, body=cst.IndentedBlock(body=body), orelse=orelse, leading_lines=first.leading_lines)

    # Finding op calls.

    def _op_in_statement(self, statement: cst.BaseStatement) -> _OpCall | None:
        """The op call a statement consists of: ``op.X(...)``, ``op.X(...),`` or ``t = op.X(...)``."""
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            return None
        small = statement.body[0]
        value: cst.BaseExpression | None = None
        if isinstance(small, cst.Expr):
            value = small.value
            if isinstance(value, cst.Tuple) and len(value.elements) == 1:
                value = value.elements[0].value
        elif isinstance(small, cst.Assign) and len(small.targets) == 1:
            value = small.value
        if not isinstance(value, cst.Call):
            return None
        return self._match_op(value)

    def _match_op(self, call: cst.Call) -> _OpCall | None:
        """The op ``call`` is, if any. Found once, as the call is visited (a statement's op is asked for again
        while it is guarded). A batch block's ops are also looked for before the block is visited, to plan it:
        what is found then is not kept, since names the block binds are not known yet (``conn = op.get_bind()``
        in the block makes ``conn.execute(...)`` after it an op)."""
        return self._find_op(call) if self._planning_batch else self._matched(call)

    def _find_op(self, call: cst.Call) -> _OpCall | None:
        func = call.func
        if not isinstance(func, cst.Attribute) or id(call) in self._chain_calls:
            return None
        name = func.attr.value
        if name not in {"execute", "exec_driver_sql"}:
            session = self._match_session(call, func)
            if session is not None:
                return session
        if name in {"execute", "exec_driver_sql"} and self._is_bind(func.value):
            display = f"{self._module.code_for_node(func.value)}.{name}"
            statement = call.args[0].value if call.args and not call.args[0].star else None
            return self._match_sql(call, display, statement, _CONNECTION_SQL)
        bound = _bind(call, _SCHEMA_ITEM_METHODS[name]) if name in _SCHEMA_ITEM_METHODS else {}
        if "bind" in bound and self._is_bind(bound["bind"]):
            found = self._match_enum(call, func.value, METHOD_SPECS[name]) if name in METHOD_SPECS else None
            return found or self._schema_item_call(call, func, name, bound.get("checkfirst"))
        if not isinstance(func.value, cst.Name) or name in NOT_OPS:
            return None
        receiver = func.value.value
        display = f"{receiver}.{name}"
        spec = SPECS.get(name)
        if spec is not None and (spec.via_execute is not None or spec.via_sql):
            spec = None
        if receiver in self._op_names:
            if name == "execute":
                return self._match_execute(call, display)
            if spec is None:
                return _OpCall(None, name, display, call)
            return _OpCall(spec, name, display, call, _bind(call, spec.op_params))
        batch = self._batch_lookup(receiver)
        if batch is None and receiver in self._parameters[-1] and _looks_like_batch(receiver):
            batch = _runtime_batch_table(receiver)
        if batch is None:
            if spec is not None and _looks_like_batch(receiver):
                reason = "batch op outside a `with op.batch_alter_table(...)` block: its table is unknown"
                return _OpCall(None, name, display, call, reason=reason)
            return None
        if spec is not None and spec.batch_params is not None:
            args = _bind(call, spec.batch_params)
            table_param, schema_param = spec.batch_table
            args.setdefault(table_param, batch.table_name)
            if batch.schema is not None:
                args.setdefault(schema_param, batch.schema)
            if batch.naming_convention is not None:
                args.setdefault("naming_convention", batch.naming_convention)
            return _OpCall(spec, name, display, call, args, batch=batch)
        if batch.static:
            return _OpCall(None, name, display, call)
        return None

    def _match_session(self, call: cst.Call, func: cst.Attribute) -> _OpCall | None:
        """A call on an ORM session on the migration's connection that reads or writes rows: ``session.add(x)``,
        ``session.bulk_save_objects(...)``, or a ``session.query(Model)...`` chain (said once, at its end)."""
        methods, inner, node = [func.attr.value], [], func.value
        while isinstance(node, (cst.Call, cst.Attribute)):
            if isinstance(node, cst.Call):
                inner.append(node)
                node = node.func
            else:
                methods.append(node.attr.value)
                node = node.value
        if not isinstance(node, cst.Name) or node.value not in self._bind_names:
            return None
        display = f"{node.value}.{methods[-1]}"
        if methods[-1] == "query" and inner:
            changes = {"delete", "update"} & set(methods)
            reason = _ORM_CHANGE if changes else _ORM_QUERY
        elif methods[-1] == "query" or len(methods) > 1:
            return None
        elif methods[0] in _SESSION_READS:
            reason = _ORM_QUERY
        elif methods[0] in _SESSION_FLUSHES and self._loads_objects[-1]:
            reason = _ORM_FLUSH  # what it writes is whatever was changed on them: said at the flush
        elif methods[0] in _SESSION_WRITES:
            reason = _ORM_WRITE
        elif methods[0] in _SESSION_CHANGES:
            reason = _ORM_CHANGE
        else:
            return None
        self._chain_calls.update(id(node) for node in inner)
        found = _OpCall(None, methods[-1], display, call, reason=reason, safe=reason == _ORM_QUERY)
        return self._query(found, reads=True) if found.safe else found

    def _is_bind(self, node: cst.BaseExpression) -> bool:
        """The migration's connection: ``op.get_bind()``, ``op.get_context().connection`` or ``.bind``,
        ``<connection>.connect()``, or a name assigned from one of them."""
        if isinstance(node, cst.Name):
            return node.value in self._bind_names
        if isinstance(node, cst.Attribute) and node.attr.value in {"connection", "bind"}:
            return _is_op_method(node.value, self._op_names, "get_context")
        if m.matches(node, m.Call(func=m.Attribute(attr=m.Name("connect")), args=())):
            assert isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)
            return self._is_bind(node.func.value)
        return _is_op_method(node, self._op_names, "get_bind")

    def _is_session_on_bind(self, node: cst.BaseExpression) -> bool:
        """``Session(bind=<connection>)`` (``orm.Session``, ``sqlmodel.Session``...): its ``execute`` runs SQL on the
        migration's connection, as the connection's own does (zenml's and optuna's data steps)."""
        if not isinstance(node, cst.Call) or not m.matches(
            node.func, m.Name("Session") | m.Attribute(attr=m.Name("Session"))
        ):
            return False
        bind = next((arg.value for arg in node.args if arg.keyword is not None and arg.keyword.value == "bind"), None)
        if bind is None and node.args and node.args[0].keyword is None and not node.args[0].star:
            bind = node.args[0].value
        return bind is not None and self._is_bind(bind)

    def _schema_item_call(
        self, call: cst.Call, func: cst.Attribute, name: str, checkfirst: cst.BaseExpression | None
    ) -> _OpCall:
        """``Model.__table__.create(bind)``, ``index.drop(bind)``, ``metadata.create_all(bind=bind)``: SQLAlchemy
        makes or drops the object itself, and looks first only when ``checkfirst=True`` says so (``create_all`` and
        ``drop_all`` do by default). Not guarded; listed. A drop that looks first is already safe; a create that
        does looks at each table, not at the indexes it makes after it."""
        display = f"{self._module.code_for_node(func.value).strip()}.{name}".replace("\n", " ")
        looks = name.endswith("_all") if checkfirst is None else m.matches(checkfirst, m.Name("True"))
        if looks and name.startswith("drop"):
            return _OpCall(None, name, display, call, reason=_LOOKS_FIRST, safe=True)
        if looks:
            return _OpCall(None, name, display, call, reason=_LOOKS_AT_TABLES)
        return _OpCall(None, name, display, call, reason=_CHECKFIRST_FALSE if name.endswith("_all") else _NO_CHECKFIRST)

    def _match_enum(self, call: cst.Call, enum: cst.BaseExpression, spec: OpSpec) -> _OpCall | None:
        """``ENUM(..., name=...).create(bind)`` or ``mood.drop(bind)``: an enum type made or dropped."""
        display = f"{self._module.code_for_node(enum).strip()}.{spec.via_method}".replace("\n", " ")
        args = _bind(call, spec.op_params)
        if isinstance(enum, cst.Call):
            if not m.matches(enum.func, _ENUM_TYPE):
                return None
            display = f"{self._module.code_for_node(enum.func)}(...).{spec.via_method}"
            keywords = {arg.keyword.value: arg.value for arg in enum.args if arg.keyword is not None}
            if "name" not in keywords:
                return _OpCall(None, "enum", display, call, reason="an enum without name= has no type to look up")
            args["enum_name"] = keywords["name"]
            if "schema" in keywords:
                args["schema"] = keywords["schema"]
        elif isinstance(enum, cst.Name) and enum.value in self._enum_names:
            args["enum_name"] = cst.Attribute(value=enum, attr=cst.Name("name"))
            args["schema"] = cst.Attribute(value=enum, attr=cst.Name("schema"))
        else:
            return None
        return _OpCall(spec, spec.name, display, call, args)

    def _match_execute(self, call: cst.Call, display: str) -> _OpCall:
        """``op.execute``: a sequence or schema DDL construct is guarded; SQL is read (see ``_match_sql``)."""
        statement = call.args[0].value if call.args and not call.args[0].star else None
        if isinstance(statement, cst.Call):
            construct = statement.func
            construct_name = construct.attr.value if isinstance(construct, cst.Attribute) else None
            if isinstance(construct, cst.Name):
                construct_name = construct.value
            spec = EXECUTE_SPECS.get(construct_name or "")
            if spec is not None and spec.via_sql:
                args = _bind(statement, ("schema_name",))
                if "name" in args:
                    args["schema_name"] = args.pop("name")
                return _OpCall(spec, "execute", display, call, {**args, "kind": cst.SimpleString('"schema"')})
            if spec is not None and statement.args and not statement.args[0].star:
                return _OpCall(spec, "execute", display, call, _sequence_args(statement.args[0].value))
        return self._match_sql(call, display, statement, UNGUARDED_REASONS["execute"])

    def _match_sql(self, call: cst.Call, display: str, statement: cst.BaseExpression | None, otherwise: str) -> _OpCall:
        """SQL text run by ``call``: guarded statement by statement as the ops they spell (see ``codemod.sql``).

        A string of several statements is guarded when each is guarded or only
        reads or sets the session; its test is theirs joined with ``or``, so
        it is skipped only when every statement's work is there already.
        """
        name = call.func.attr.value if isinstance(call.func, cst.Attribute) else "execute"
        node = self._python_expression(statement) if statement is not None else None
        sql = _ast_sql(node, self._scopes[-1]) if node is not None else None

        def left(reason: str, safe: bool = False) -> _OpCall:
            return _OpCall(None, name, display, call, reason=reason, safe=safe)

        if sql is None:
            built = _statement_built(node, self._scopes[-1]) if node is not None else None
            if built in _BUILT_STATEMENTS:
                reason, safe = _BUILT_STATEMENTS[built]
                return self._query(left(reason, safe), built == "select")
            template = _ast_sql(node, self._scopes[-1], holes=True) if node is not None else None
            if template is not None:
                return self._sql_template(template, left, otherwise)
            kind = self._kind_of_every_value(node) if node is not None else None
            if kind is not None:
                reason, safe = kind
                return self._query(left(reason, safe), safe)
            return left(otherwise)
        parts = self._proven_reruns(read_sql(sql, self._dialect_here()), call, sql)

        if len(parts) == 1 and parts[0].op == "insert" and parts[0].query and self._function_drops[-1]:
            # Guarded while its table is empty, it would run again whenever its source held no rows, and fail
            # on a column the function dropped since (airflow 0038_3_0_0 copies dataset rows, then drops is_orphaned).
            return left(f"its SQL inserts rows it selects, {_READS_DROPPED}")
        if len(parts) == 1 and parts[0].op == "insert":
            return _OpCall(None, "insert", display, call, self._literals(parts[0].args), reason=parts[0].reason)
        unguarded = [part for part in parts if part.safe is None and part.op in (None, "insert")]
        if unguarded:
            return left(str(unguarded[0].reason))
        ops = [
            _OpCall(SPECS[part.op], name, display, call, self._literals(part.args))
            for part in parts
            if part.op is not None
        ]
        if not ops:
            return self._already_safe(parts, left)
        rerun = [part.safe for part in parts if part.safe is not None and not part.inert]
        if rerun:
            return left(
                f"its SQL mixes statements guarded by name with one that runs every time ({rerun[0]}); {_SPLIT}"
            )
        churned = self._churned_objects(ops)
        if churned:
            return left(*self._churned_sql(ops, churned))
        first, *rest = ops
        return _OpCall(first.spec, name, display, call, first.args, parts=tuple(rest))

    def _proven_reruns(self, parts: tuple[Part, ...], call: cst.Call, sql: str) -> list[Part]:
        """``parts``, each UPDATE, DELETE or TRUNCATE among them that a re-run of its function leaves as it was
        made safe (see ``Rows.reruns_in``), beside everything else the function and the functions of its run do."""
        if not any(part.rows is not None and part.rows.rerun is not None for part in parts):
            return list(parts)
        line = self._line(call)
        function = self._function_names[-1]
        run = self._work_in_run.get(function) if function else None
        if run is None:
            return list(parts)
        # This call's own statements, as the walk of the module read them, are the parts themselves; two calls
        # of one SQL on one line cannot be told apart, and prove nothing.
        if sum(work.key == (line, sql) for work in run) != len(parts):
            return list(parts)
        others = [
            (work.rows, work.function != function or work.line >= line) for work in run if work.key != (line, sql)
        ]
        fixed = _values_fixed(self._python_expression(call), self._scopes[-1])
        proven = []
        for index, part in enumerate(parts):
            beside = [(other.row_work, later > index) for later, other in enumerate(parts) if later != index]
            reason = part.rows.reruns_in([*others, *beside], values_fixed=fixed) if part.rows is not None else None
            proven.append(part if reason is None else Part(safe=reason, query=True, rows=part.rows))
        return proven

    def _kind_of_every_value(self, node: ast.expr, depth: int = 0) -> tuple[str, bool] | None:
        """What a statement held in a name bound more than once does (see ``_values_possible``), when each value
        it may hold does the same kind of thing: changes data (the reason; it stays unguarded), or is a query
        built with SQLAlchemy (safe, with the reason). ``stmt = stmt.where(...)`` keeps what ``stmt`` was."""
        scope = self._scopes[-1]
        while isinstance(node, ast.Call) and len(node.args) == 1 and _ast_called_name(node.func) in {"text", "dedent"}:
            node = node.args[0]
        root = _chain_root(node)
        if isinstance(root, ast.Name) and root.id in self._possible[-1] and root.id not in scope:
            if depth >= _NAME_DEPTH:
                return None
            kinds: set[tuple[str, bool]] = set()
            for value in self._possible[-1][root.id]:
                values = [value]
                if isinstance(value, ast.Starred):
                    items = _ast_items(value.value, scope)
                    if items is None:
                        return None
                    values = items
                for item in values:
                    if _chained_on(item, root.id):
                        continue
                    kind = self._kind_of_every_value(item, depth + 1)
                    if kind is None:
                        return None
                    kinds.add(kind)
            if len(kinds) == 1:
                return kinds.pop()
            # Several data changes (an UPDATE, then an INSERT) are a data change; a query among them is not.
            return (DATA_CHANGE, False) if kinds and not any(safe for _, safe in kinds) else None
        built = _statement_built(node, scope)
        if built in _BUILT_STATEMENTS:
            return _BUILT_STATEMENTS[built]
        sql = _ast_sql(node, scope, holes=True)
        changes = data_change(read_sql(sql, self._dialect_here())) if sql is not None else None
        return (changes, False) if changes is not None else None

    def _sql_template(self, template: str, left: Callable[..., _OpCall], otherwise: str) -> _OpCall:
        """An f-string's SQL, its values read as names: already safe whatever they are (``DROP CONSTRAINT IF
        EXISTS {name}``, a query), or a data change, is said so; anything else keeps ``otherwise``, since
        the names a guard would check are not known before it runs."""
        parts = read_sql(template, self._dialect_here())
        if all(part.op is None and part.safe is not None for part in parts):
            return self._already_safe(parts, left, ", whatever the values put in it")
        return left(data_change(parts) or otherwise)

    def _already_safe(self, parts: Sequence[Part], left: Callable[..., _OpCall], note: str = "") -> _OpCall:
        """SQL whose every part is safe to run again, said with the first reason that is not only a read or a
        setting (``SET``, a query), unless a query in a function that drops may fail (see ``_query``)."""
        reasons = [part.safe for part in parts if not part.inert] or [part.safe for part in parts]
        return self._query(left(f"{reasons[0]}{note}", safe=True), any(part.query for part in parts))

    def _query(self, found: _OpCall, reads: bool) -> _OpCall:
        """Already safe, unless it ``reads`` tables and its function, or one run with it (a caller, a callee),
        drops or renames tables or columns, which a re-run may no longer find."""
        if not (found.safe and reads and self._function_drops[-1]):
            return found
        reason = f"{found.reason}, {_READS_DROPPED}"
        return _OpCall(None, found.name, found.display, found.call, reason=reason)

    def _churned_sql(self, ops: list[_OpCall], churned: dict[tuple[str, str], str]) -> tuple[str, bool]:
        """Why SQL that both creates and removes an object is left alone, and whether that is safe.

        Dropping an object and creating it again re-applies it on every run: safe
        when the string does nothing else. Creating then dropping leaves no trace.
        """
        keys = [[_object_key(effect) for effect in self._effects(op)] for op in ops]
        first = {key: index for index, found in reversed(list(enumerate(keys))) for key in found}
        # Re-making a table or column would lose its rows; an index, constraint, view or trigger holds none.
        removed_first = all(not _creates(ops[first[key]]) and key[0] in ROWLESS for key in churned)
        if removed_first and all(key in churned for found in keys for key in found):
            return f"its SQL drops and re-creates {_names(churned)}, so a re-run applies it again", True
        if removed_first:
            return (
                f"its SQL drops and re-creates {_names(churned)}, which runs every time, beside statements "
                f"guarded by name; {_SPLIT}",
                False,
            )
        return f"its SQL both creates and removes {_names(churned)}: {_CHURN}", False

    def _python_expression(self, expression: cst.BaseExpression) -> ast.expr | None:
        """``expression`` in Python's tree, read as ``_tables_by_function`` reads the module."""
        try:
            return ast.parse(f"({self._source(expression)})", mode="eval").body
        except SyntaxError:
            return None

    def _dialect_here(self) -> str | None:
        """The dialect the enclosing ``if ...dialect.name == "..."`` branch runs on, if any."""
        return next((dialect for dialect in reversed(self._dialects) if dialect is not None), None)

    def _literals(self, args: Mapping[str, Value]) -> dict[str, cst.BaseExpression]:
        return {key: self._literal(value) for key, value in args.items()}

    def _literal(self, value: Value) -> cst.BaseExpression:
        """A name read from SQL as an argument of the op it spells: a constraint's as ``op.f(...)``."""
        if isinstance(value, Verbatim):
            op_name = "op" if "op" in self._op_names else sorted(self._op_names)[0]
            return cst.parse_expression(f"{op_name}.f({value.name!r})")
        return cst.parse_expression(repr(list(value) if isinstance(value, tuple) else value))

    def _batch_lookup(self, name: str) -> _BatchTable | None:
        for scope in reversed(self._batch_scopes):
            if name in scope:
                return scope[name]
        return None

    def _batch_table(self, item: cst.WithItem) -> _BatchTable | None:
        call = item.item
        if not isinstance(call, cst.Call):
            return None
        func = call.func
        if not (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value in self._op_names
            and func.attr.value == "batch_alter_table"
        ):
            return None
        args = _bind(call, ("table_name", "schema"))
        table_name = args.get("table_name")
        if table_name is None:
            return None
        convention = args.get("naming_convention") if _passed(args, "naming_convention") else None
        return _BatchTable(table_name, args.get("schema"), static=True, naming_convention=convention)

    # Reports and the helper block.

    def _line(self, node: cst.Call | cst.If | cst.BaseStatement) -> int:
        """The line of a call or ``if``, or of the op call that ``node``, a statement, consists of."""
        if not isinstance(node, (cst.Call, cst.If)):
            found = self._op_in_statement(node)
            assert found is not None, "only op statements are reported"
            node = found.call
        return self._lines.line(node)

    def _with_helper_block(self, module: cst.Module) -> cst.Module:
        """The module with one generated block, after the migration's own code, holding the helpers it calls.

        A block found anywhere else (where idempotify used to put it, before
        ``upgrade()``) is taken out, so a re-run moves it to the end. With a
        shared helpers module (``style.helpers``) the block gives way to an
        import from it, and the other way round.
        """
        kept = [
            statement
            for statement in module.body
            if not (isinstance(statement, cst.FunctionDef) and is_helper_name(statement.name.value))
        ]
        used = tuple(sorted(self._helpers_called))
        self.helpers_needed = used if set(used) - RIDERS.keys() else ()
        if self.style.helpers is not None:  # from the project's shared module, by one import
            return with_helper_import(module, kept, self.style)
        kept = [statement for statement in kept if not is_helper_import(statement)]
        if not set(used) - RIDERS.keys():
            return module if len(kept) == len(module.body) else module.with_changes(body=kept)
        # The drift check stays out of a migration's own block: at about a hundred lines it would outweigh
        # the rest of it in most files, so only a shared helpers module, written once, holds it.
        inline = tuple(name for name in used if name != DRIFT)
        parts = frozenset(self._parts_needed)
        newline = self._module.default_newline
        self._helper_block = _helper_block(inline, parts, self.style, self._module.default_indent, newline)
        return module if len(kept) == len(module.body) else module.with_changes(body=kept)

    def code(self, module: cst.Module) -> bytes:
        """The bytes of ``module``, the result of this transformer's visit, with the helper block, which is
        kept out of the tree (see ``_helper_block``): after the module's statements, before its last comments.
        A module the visit left as it was is the source it was parsed from (its code, without generating it)."""
        # LibCST reads a file of old Mac line ends ("\r") as one without a line end after its last line.
        ends_a_line = module.has_trailing_newline or (self._source_bytes or b"").endswith(b"\r")
        if not self._helper_block:
            if not self._changed and self._source_bytes is not None:
                return self._source_bytes
            return module.with_changes(has_trailing_newline=ends_a_line).bytes
        code = module.with_changes(footer=(), has_trailing_newline=True).code + self._helper_block
        code += "".join(module.code_for_node(line) for line in module.footer)
        if not ends_a_line:
            code = code.removesuffix(module.default_newline)
        return code.encode(module.encoding)


@cache
def _helper_block(names: tuple[str, ...], parts: frozenset[str], style: Style, indent: str, newline: str) -> str:
    """The code of the helper block defining ``names`` (with only the ``parts`` named), after a module's last
    statement: its header line, then its functions one after another, two blank lines apart, each formatted once.

    Files often need the same helpers, and black costs milliseconds on a
    block this size, as would generating its code anew for each file from
    LibCST's nodes; the block is code, never nodes (nothing looks into it).
    """
    formatted = [_formatted_function(source, style) for source in helper_function_sources(names, parts)]
    header = block_header(formatted)
    functions = [function.strip("\n") + "\n" for function in formatted]
    if indent != "    ":
        functions = [reindent(function, indent) for function in functions]
    block = "\n\n" + header.rstrip("\n") + "\n" + "\n\n".join(functions)
    return block.replace("\n", newline)


@cache
def _formatted_function(source: str, style: Style) -> str:
    return style.format_helper(source)


def _op_aliases(module: cst.Module) -> Iterator[str]:
    """Names bound to ``alembic.op`` by the module's imports."""
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if (
                isinstance(small, cst.ImportFrom)
                and small.module is not None
                and m.matches(small.module, m.Name("alembic"))
            ):
                if isinstance(small.names, cst.ImportStar):
                    continue
                for alias in small.names:
                    if m.matches(alias.name, m.Name("op")):
                        yield _alias_name(alias) or "op"
            elif isinstance(small, cst.Import):
                for alias in small.names:
                    if m.matches(alias.name, m.Attribute(value=m.Name("alembic"), attr=m.Name("op"))):
                        name = _alias_name(alias)
                        if name is not None:
                            yield name


def _is_legacy_guard(node: cst.If) -> bool:
    """An ``if`` an older idempotify wrote: its test only calls its helpers (one per check), with and/or."""
    test: cst.BaseExpression = node.test
    parts = [test]
    calls = 0
    while parts:
        part = parts.pop()
        if isinstance(part, cst.BooleanOperation):
            parts += [part.left, part.right]
        elif isinstance(part, cst.Call) and isinstance(part.func, cst.Name) and is_helper_name(part.func.value):
            calls += part.func.value in LEGACY_HELPERS
        else:
            return False
    return calls > 0


def _calls_guard(test: cst.BaseExpression, check: str) -> bool:
    """Whether ``test`` calls the guard with ``check`` ("no column")."""
    for call in m.findall(test, m.Call(func=m.Name(GUARD))):
        guard = _string_value(call.args[0].value) if isinstance(call, cst.Call) and call.args else None
        if guard is not None and guard.rpartition(": ")[2] == check:
            return True
    return False


def _is_helper_statement(statement: cst.BaseStatement, helper: str) -> bool:
    """``helper(...)`` as a statement of its own."""
    return m.matches(statement, m.SimpleStatementLine(body=[m.Expr(value=m.Call(func=m.Name(helper)))]))


def _looks_like_batch(name: str) -> bool:
    """A name a batch op is usually given: ``batch_op``, ``batch``, ``bop`` (not ``shop``)."""
    return "batch" in name.lower() or name in {"bop", "b_op", "bo"}


def _alias_name(alias: cst.ImportAlias) -> str | None:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return None


def _bind(call: cst.Call, params: Sequence[str]) -> dict[str, cst.BaseExpression]:
    """Map the call's arguments to parameter names, a column given as ``sa.Column(...)`` by its name."""
    bound = _bind_as_given(call, params)
    column = bound.get("column")
    if column is not None:
        bound["column"] = _column_name(column)
    return bound


def _bind_as_given(call: cst.Call, params: Sequence[str]) -> dict[str, cst.BaseExpression]:
    """Map the call's arguments to parameter names; positions after a ``*`` spread are unknown."""
    bound: dict[str, cst.BaseExpression] = {}
    position = 0
    for arg in call.args:
        if arg.star == "*":
            position = len(params)
        elif arg.keyword is not None:
            bound[arg.keyword.value] = arg.value
        elif not arg.star:
            if position < len(params):
                bound[params[position]] = arg.value
            position += 1
    return bound


_COLUMN = m.Name("Column") | m.Attribute(attr=m.Name("Column"))  # sa.Column, Column


def _column_name(column: cst.BaseExpression) -> cst.BaseExpression:
    """The expression naming a column: the ``sa.Column(name, ...)`` literal's name, else ``<expr>.name``."""
    if isinstance(column, cst.Call) and m.matches(column.func, _COLUMN):
        for arg in column.args:
            if arg.keyword is not None and arg.keyword.value == "name":
                return arg.value
        if column.args and column.args[0].keyword is None and not column.args[0].star:
            return column.args[0].value
    return cst.Attribute(value=column, attr=cst.Name("name"))


def _assigned_name(statement: cst.BaseStatement) -> str | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            target = small.targets[0].target
            if isinstance(target, cst.Name):
                return target.value
    return None


def _uses_name(statements: Sequence[cst.BaseStatement], name: str) -> bool:
    return any(m.findall(statement, m.Name(name)) for statement in statements)


def _string_value(node: cst.BaseExpression) -> str | None:
    """The value of a string literal, or of ``op.f("...")`` around one; else None."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "f":
        node = node.args[0].value if len(node.args) == 1 else node
    value: str | bytes | None
    if isinstance(node, cst.SimpleString):
        value = _evaluated(node.value)
    elif isinstance(node, cst.ConcatenatedString):
        value = node.evaluated_value
    else:
        return None
    return value if isinstance(value, str) else None


@lru_cache(maxsize=4096)
def _evaluated(literal: str) -> str | bytes:
    """A string literal's value (LibCST's ``evaluated_value`` parses it anew on each use)."""
    value = ast.literal_eval(literal)
    assert isinstance(value, (str, bytes))
    return value


_BY_HAND = "guard it by hand, and mark it `# idempotify: skip`"
_READS_DROPPED = (
    f"in a function whose run drops or renames tables or columns: a re-run fails if it reads one of them; {_BY_HAND}"
)
_ENCLOSING = "already guarded by an enclosing if or an early return"
_NEXT_TO_DATA = (
    "next to a data change that does not re-run alike: a re-run that got past this op fails on it, as the "
    "original does, rather than changing the data again; make the change at line {line} (of the file as it was "
    "before idempotify) re-run alike by hand (a guard of its own, then `# idempotify: skip` on it) to have this "
    "op guarded"
)
_DECIDES_IN_TRY = (
    "in a `try` whose `except` goes on (or a `with suppress(...)`): whether it fails decides what runs next "
    "(the rest of the `try`, its `except` or `else`), and a guard that skips it would run what its failure "
    "skips; " + _BY_HAND
)
_RECOVER_BATCH = f"{HELPER_PREFIX}recover_batch"
_DROP_INVALID_INDEX = f"{HELPER_PREFIX}drop_invalid_index"
_SEEDED = "no row"  # the check of a seed insert: its table has no row yet
_NOT_A_STATEMENT = "not a statement of its own (inside an expression or a one-line block)"
_SHARES_A_LINE = "shares its line with another statement (`;`): put it on a line of its own to have it guarded"
_CHURN = f"whether it already ran cannot be told from the schema; {_BY_HAND}"
_SPLIT = "split it into one execute per statement"


# The op that names a table each of the per-function lists is about, and the parameter that names it.
# Per function, besides the ops of ``_TABLE_OPS``: what ``alter_column(..., new_column_name=...)`` (or SQL's
# ``RENAME COLUMN``) names first, the table, or the column in a batch block; a query that reads the old name fails
# on a re-run as it does on a dropped column.
_RENAME_COLUMN = "rename_column"
_TABLE_OPS = {
    "drop_table": "table_name",
    "rename_table": "old_table_name",
    "create_table": "table_name",
    "drop_column": "table_name",
}


@lru_cache(maxsize=4096)
def _string_key(value: str) -> str:
    """How a table named by a string is keyed in ``_tables_by_function``: as Python's tree dumps the literal,
    the form every other table expression there takes (``GuardTransformer._key`` matches it)."""
    return ast.dump(ast.Expression(body=ast.Constant(value=value)))


@dataclass
class _Removals:
    """Where each function removes tables: per function name, each drop_table or rename_table call's line,
    source and table (its key, as ``_string_key`` makes it, or None when it is named at run time, then with
    the name of the variable naming it, if one does); and per function of the module, where it is called by
    its plain name: the calling function's name and the line."""

    removals: dict[str, list[tuple[int, str, str | None, str | None]]] = field(default_factory=dict)
    calls: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def callees(self, functions: Iterable[str]) -> dict[str, set[str]]:
        """Per function name of ``functions``, the module's functions it calls by their plain name."""
        found: dict[str, set[str]] = {name: set() for name in functions}
        for callee, sites in self.calls.items():
            for caller, _ in sites:
                found.setdefault(caller, set()).add(callee)
        return found


@dataclass(frozen=True)
class _RemovalRisk:
    """Ops in a table before ``line`` of their function may see the table removed after them by ``removal``:
    one of the tables keyed in ``tables``, or any table when ``tables`` is None."""

    line: int
    removal: str
    tables: frozenset[str] | None


def _union(sets: list[frozenset[str] | None]) -> frozenset[str] | None:
    """All of ``sets``, or None (any table) when one of them is."""
    return None if None in sets else frozenset().union(*(found for found in sets if found is not None))


def _removal_risks(found: _Removals, loops: dict[str, dict[str, set[str]]]) -> dict[str, _RemovalRisk]:
    """Per function, where a table may be removed after its ops (see ``GuardTransformer._removal_risk``): in the
    function itself, by a removal of a table named at run time (a loop variable over literal names names those
    tables); in a helper function, by any removal after a call of it (then the whole helper is at risk)."""

    def tables(function: str, removal: Sequence[object]) -> frozenset[str] | None:
        key, variable = removal[2], removal[3]
        if key is not None:
            assert isinstance(key, str)
            return frozenset({key})
        names = loops.get(function, {}).get(variable if isinstance(variable, str) else "")
        return None if not names else frozenset(_string_key(name) for name in names)

    risks: dict[str, _RemovalRisk] = {}
    for name, removals in found.removals.items():
        at_run_time = [(removal, tables(name, removal)) for removal in removals if removal[2] is None]
        if at_run_time:
            (line, source, *_), _ = max(at_run_time, key=lambda pair: pair[0][0])
            known = _union([keys for _, keys in at_run_time])
            risks[name] = _RemovalRisk(line, f"`{source}` on line {line}, after it,", known)
    for callee, calls in found.calls.items():
        later = [
            (caller, line, *removal)
            for caller, line in calls
            for removal in found.removals.get(caller, ())
            if removal[0] > line and callee not in {"upgrade", "downgrade"}
        ]
        if later:
            caller, line, at, source, *_ = later[0]
            named = _union([tables(calling, removal) for calling, _, *removal in later])
            removal = f"`{source}` in {caller}() on line {at}, after the call on line {line},"
            risks[callee] = _RemovalRisk(sys.maxsize, removal, named)
    return risks


def _loop_strings(tree: ast.Module | None, walk: Walk) -> dict[str, dict[str, set[str]]]:
    """Per function name, the strings each ``for`` variable takes from a literal sequence: ``for name in ("a",
    "b")``, ``for index, table in (("ix", "t"), ...)``."""
    found: dict[str, dict[str, set[str]]] = {}
    for function in walk(tree) if tree is not None else ():
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        names = found.setdefault(function.name, {})
        for loop in walk(function):
            if not isinstance(loop, (ast.For, ast.AsyncFor)) or not isinstance(loop.iter, (ast.Tuple, ast.List)):
                continue
            unpacked = isinstance(loop.target, ast.Tuple)
            targets = loop.target.elts if isinstance(loop.target, ast.Tuple) else [loop.target]
            for item in loop.iter.elts:
                values = item.elts if unpacked and isinstance(item, (ast.Tuple, ast.List)) else [item]
                if len(values) != len(targets):
                    continue
                for target, value in zip(targets, values, strict=True):
                    string = value.value if isinstance(value, ast.Constant) else None
                    if isinstance(target, ast.Name) and isinstance(string, str):
                        names.setdefault(target.id, set()).add(string)
    return found


def _removed_in_run(removed: dict[str, set[str]], calls: dict[str, set[str]]) -> dict[str, set[str]]:
    """Per function name, the tables a run of it is known to remove: those it and the functions it calls
    (transitively) drop or rename away, and, for a function others call, also those every caller's run removes
    (a helper dropping indexes called from a downgrade that then drops their tables). A helper called from both
    upgrade() and downgrade() gets only what both remove."""
    reach = {name: set(tables) for name, tables in removed.items()}
    changed = True
    while changed:
        changed = False
        for name, callees in calls.items():
            more = set().union(*(reach.get(callee, set()) for callee in callees)) - reach.setdefault(name, set())
            if more:
                reach[name] |= more
                changed = True
    callers: dict[str, set[str]] = {}
    for name, callees in calls.items():
        for callee in callees - {name}:
            callers.setdefault(callee, set()).add(name)
    run = {name: set(tables) for name, tables in reach.items()}
    changed = True
    while changed:
        changed = False
        for name, by in callers.items():
            shared = set.intersection(*(run.get(caller, set()) for caller in by)) - run.setdefault(name, set())
            if shared:
                run[name] |= shared
                changed = True
    return run


def _orm_loaders(tree: ast.Module | None, walk: Walk) -> set[str]:
    """The functions that load ORM objects, which code may change and a session's commit or flush then writes:
    they call ``.query(...)``, ``.get(...)`` or ``.scalars(...)`` on something (read loosely, so as to list more)."""
    if tree is None:
        return set()
    return {
        function.name
        for function in walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        and any(
            isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in _LOADERS
            for call in walk(function)
        )
    }


_LOADERS = frozenset({"query", "get", "scalars"})


def _tables_by_function(
    tree: ast.Module | None, constants: dict[str, ast.expr], walk: Walk
) -> tuple[
    dict[str, dict[str, set[str]]],
    dict[str, dict[str, ast.expr | None]],
    dict[str, _Possible],
    _Removals,
    dict[str, list[_RowWork]],
]:
    """Per function name and op of ``_TABLE_OPS``, the tables (normalised source) its calls of the op name;
    per function name, its names bound once, by a plain assignment (see ``_values_bound_once``), and its
    names bound several times, with every value they may hold (see ``_values_possible``); where
    functions remove tables and call each other (``_Removals``); and per function name, what its calls do
    with rows (see ``_row_work``).

    SQL strings count too: ``op.execute("DROP TABLE t")`` drops ``t``, and so does
    ``sql = "DROP TABLE t"`` then ``op.execute(sql)``. One walk of each function
    answers every op.
    """
    found: dict[str, dict[str, set[str]]] = {}
    values: dict[str, dict[str, ast.expr | None]] = {}
    possible: dict[str, _Possible] = {}
    removals = _Removals()
    work: dict[str, list[_RowWork]] = {}
    if tree is None:
        return found, values, possible, removals, work
    # The generated helpers are left out: what they do with rows is nothing the migration asked for (a batch
    # copy finished, a leftover dropped), and a re-run must judge the migration as the first run did.
    functions = [
        node
        for node in walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not is_helper_name(node.name)
    ]
    helpers = {function.name for function in functions}
    known = _known_names(tree, walk)
    for function in functions:
        tables = found.setdefault(function.name, {op: set() for op in (*_TABLE_OPS, _RENAME_COLUMN)})
        nodes = walk(function)
        # Two functions of one name: neither's values can be told apart, so none is used.
        values[function.name] = {} if function.name in values else _values_bound_once(function, nodes)
        possible[function.name] = {} if function.name in possible else _values_possible(function, nodes)
        scope = _scope(constants, values[function.name])
        batches = _batch_tables(nodes)
        rows = work.setdefault(function.name, [])
        unknown = _unknown_code(function, nodes, helpers, known)
        if unknown is not None:
            rows.append(_RowWork(function.name, unknown, _ANY_ROWS))
        for call in nodes:
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in helpers:
                removals.calls.setdefault(call.func.id, []).append((function.name, call.lineno))
            if isinstance(call, ast.Call):
                rows.extend(_row_work(call, function.name, scope, batches, possible[function.name]))
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            if call.func.attr in {"execute", "exec_driver_sql"} and call.args:
                sql = _ast_sql(call.args[0], scope)
                _sql_tables(read_sql(sql, None) if sql is not None else (), tables)
            if call.func.attr == "alter_column" and any(each.arg == "new_column_name" for each in call.keywords):
                tables[_RENAME_COLUMN].add(ast.dump(call.args[0]) if call.args else "")
            parameter = _TABLE_OPS.get(call.func.attr)
            if parameter is None:
                continue
            keywords = {keyword.arg: keyword.value for keyword in call.keywords}
            table = call.args[0] if call.args else keywords.get(parameter)
            if isinstance(table, ast.Call) and isinstance(table.func, ast.Attribute) and table.func.attr == "f":
                table = table.args[0] if len(table.args) == 1 else table  # op.f("t") is "t"
            if isinstance(table, ast.Constant) and isinstance(table.value, str):
                table = ast.Constant(value=table.value)
            if table is not None and not isinstance(table, ast.Starred):
                tables[call.func.attr].add(ast.dump(ast.Expression(body=table)))
            if call.func.attr in {"drop_table", "rename_table"}:
                value = scope.get(table.id) if isinstance(table, ast.Name) else table
                constant = value.value if isinstance(value, ast.Constant) else None
                key = _string_key(constant) if isinstance(constant, str) else None
                source = f"{ast.unparse(call.func)}({'' if table is None else ast.unparse(table)}, ...)"
                variable = table.id if isinstance(table, ast.Name) else None
                removals.removals.setdefault(function.name, []).append((call.lineno, source, key, variable))
    return found, values, possible, removals, work


def _sql_tables(parts: Iterable[Part], tables: dict[str, set[str]]) -> None:
    """Add the tables that SQL's ``parts`` name with an op of ``_TABLE_OPS``, or rename a column of, to ``tables``."""
    for part in parts:
        name = part.args.get(_TABLE_OPS.get(part.op or "", ""))
        if isinstance(name, str) and part.op is not None:
            tables[part.op].add(_string_key(name))
        if part.op == "alter_column" and part.args.get("new_column_name"):
            tables[_RENAME_COLUMN].add(_string_key(str(part.args.get("table_name"))))


def _known_names(tree: ast.Module, walk: Walk) -> frozenset[str]:
    """The names the module may call whose work with rows is seen here: builtins, the standard library's,
    SQLAlchemy's and Alembic's, the module's own classes, functions and names. Not what it imports from anywhere
    else (the project's own helpers, ``from migration_utils import merge_kinds``, pandas...), nor a name of its own
    made from one of those."""
    known: set[str] = set(dir(builtins))
    foreign: set[str] = set()
    for node in walk(tree):
        if isinstance(node, ast.Import):
            modules = [(alias.name, alias.asname or alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [("." if node.level else node.module or "", alias.asname or alias.name) for alias in node.names]
        else:
            continue
        for module, name in modules:
            root = module.split(".")[0]
            seen = root in sys.stdlib_module_names or root in {"sqlalchemy", "alembic", "__future__"}
            (known if seen else foreign).add(name)
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            known.add(statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            mentions = (
                {node.id for node in ast.walk(statement.value) if isinstance(node, ast.Name)}
                if statement.value
                else set()
            )
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            named = {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}
            (foreign if mentions & foreign else known).update(named)
    return frozenset(known - foreign)


def _unknown_code(
    function: ast.FunctionDef | ast.AsyncFunctionDef, nodes: list[ast.AST], helpers: set[str], known: frozenset[str]
) -> int | None:
    """The line of the first call in ``function`` of code whose work with rows is not seen here, if any: a name
    imported from the project or another library (``merge_kinds(bind)``, ``utils.merge(...)``), or not defined in
    the module (``from utils import *``), ``df.to_sql``, a function held in a variable (``for step in (_merge,):
    step()``), or a function of the module passed as a value rather than called by name. What such code writes may
    be any table."""
    local = {arg.arg for arg in ast.walk(function.args) if isinstance(arg, ast.arg)}
    local |= {node.id for node in nodes if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
    lines = []
    for node in nodes:
        if isinstance(node, ast.Call):
            root = node.func
            while isinstance(root, (ast.Attribute, ast.Call, ast.Subscript)):
                root = root.func if isinstance(root, ast.Call) else root.value
            held = isinstance(node.func, ast.Name) and node.func.id in local - helpers
            unseen = isinstance(root, ast.Name) and root.id not in known | local and not is_helper_name(root.id)
            if held or unseen or (isinstance(node.func, ast.Attribute) and node.func.attr == "to_sql"):
                lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in helpers and id(node) not in called:
            lines.append(node.lineno)  # a function of the module, passed on to be called somewhere else
    return min(lines, default=None)


@dataclass(frozen=True)
class _RowWork:
    """What one call of a function does with rows (``codemod.sql.Rows``), for ``Rows.reruns_in``: ``key`` is
    its line and SQL when it runs SQL idempotify reads (the call ``_match_sql`` judges is known by it)."""

    function: str
    line: int
    rows: Rows
    key: tuple[int, str] | None = None
    read: bool = False  # SQL idempotify read, or a bulk_insert: what it writes is known


_ANY_ROWS = Rows(reads=None, writes=None, reshapes=None)
# Calls that make an ORM session: what it writes (objects added, or loaded and changed, then committed) is unknown.
_SESSION_MAKERS = frozenset({"Session", "sessionmaker", "scoped_session"})
_ORM_BULK = frozenset({"add_all", "bulk_save_objects", "bulk_insert_mappings", "bulk_update_mappings"})
# Statements run by execute that write no rows: DDL constructs, as EXECUTE_SPECS names them.
_ROWLESS_CONSTRUCTS = frozenset({*EXECUTE_SPECS, "CreateTable", "DropTable", "CreateIndex", "DropIndex"})


def _row_work(
    call: ast.Call,
    function: str,
    scope: dict[str, ast.expr],
    batches: dict[str, str | None],
    possible: _Possible | None = None,
) -> list[_RowWork]:
    """What ``call`` does with rows, if anything: SQL it runs (what sqlglot reads of it; SQL or a statement it
    cannot read may write any table), ``bulk_insert``, an ORM session made, and an ``alter_column`` that renames
    a column or changes its type, or a ``rename_table`` (``batches``: a batch op's table, by the name of the
    batch)."""
    line = call.lineno
    name = _ast_called_name(call.func)
    if name in _SESSION_MAKERS or name in _ORM_BULK or (name in {"update", "delete"} and _on_query(call)):
        return [_RowWork(function, line, Rows(writes=None))]
    if not isinstance(call.func, ast.Attribute):
        return []
    if name in {"execute", "exec_driver_sql"} and call.args:
        statement = call.args[0]
        sql = _ast_sql(statement, scope)
        if sql is not None:
            return [_RowWork(function, line, part.row_work, (line, sql), read=True) for part in read_sql(sql, None)]
        template = _ast_sql(statement, scope, holes=True)
        if template is not None:  # a value put in may name the table: any table
            rows = [part.row_work for part in read_sql(template, None)]
            unknown = Rows(
                reads=None,
                writes=None if any(row.writes != frozenset() for row in rows) else frozenset(),
                reshapes=None if any(row.reshapes != frozenset() for row in rows) else frozenset(),
            )
            return [_RowWork(function, line, unknown)]
        constructed = _ast_called_name(statement.func) if isinstance(statement, ast.Call) else None
        if constructed in _ROWLESS_CONSTRUCTS:
            return []
        if _statement_built(statement, scope) == "select":  # read here: what it reads may be written elsewhere
            return [_RowWork(function, line, Rows(reads=None))]
        return [_RowWork(function, line, _ANY_ROWS)]
    if name == "bulk_insert":
        table = _ast_table_named(call.args[0], scope) if call.args else None
        values = (possible or {}).get(call.args[0].id, ()) if call.args and isinstance(call.args[0], ast.Name) else ()
        named = {_ast_table_named(value, scope) for value in values}
        if table is None and len(named) == 1:  # bound several times, each time to the same table
            table = named.pop()
        writes = None if table is None else frozenset({table.lower()})
        return [_RowWork(function, line, Rows(writes=writes), read=True)]
    keywords = {keyword.arg for keyword in call.keywords}
    if name == "rename_table" or (name == "alter_column" and keywords & {"type_", "new_column_name"}):
        receiver = call.func.value
        if isinstance(receiver, ast.Name) and receiver.id in batches:
            table = batches[receiver.id]
        else:
            first = (
                call.args[0]
                if call.args
                else next(
                    (keyword.value for keyword in call.keywords if keyword.arg in {"table_name", "old_table_name"}),
                    None,
                )
            )
            table = _ast_string(first, scope)
        return [_RowWork(function, line, Rows(reshapes=None if table is None else frozenset({table.lower()})))]
    return []


def _on_query(call: ast.Call) -> bool:
    """``<...>.query(...)....update(...)`` or ``.delete()``: an ORM query's rows changed."""
    node: ast.expr = call.func
    while isinstance(node, (ast.Call, ast.Attribute)):
        node = node.func if isinstance(node, ast.Call) else node.value
        if isinstance(node, ast.Attribute) and node.attr == "query":
            return True
    return False


def _ast_string(node: ast.expr | None, scope: dict[str, ast.expr]) -> str | None:
    """The string ``node`` holds: a literal, ``op.f("...")``, or a name of ``scope`` holding one."""
    if isinstance(node, ast.Call) and _ast_called_name(node.func) == "f" and len(node.args) == 1:
        node = node.args[0]
    if isinstance(node, ast.Name):
        node = scope.get(node.id)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# Calls whose first argument names the table they give: sa.table, sa.Table, op.create_table, and the helper that
# reflects the table in place of a create_table skipped (in idempotify's own output).
_NAMING_A_TABLE = frozenset({"table", "Table", "create_table", f"{HELPER_PREFIX}table"})


def _ast_table_named(node: ast.expr, scope: dict[str, ast.expr]) -> str | None:
    """The table ``sa.table("t", ...)``, ``sa.Table("t", ...)`` or ``op.create_table("t", ...)`` names, also through
    a name of ``scope``."""
    if isinstance(node, ast.Name):
        node = scope.get(node.id, node)
    if isinstance(node, ast.Call) and _ast_called_name(node.func) in _NAMING_A_TABLE and node.args:
        return _ast_string(node.args[0], scope)
    return None


def _batch_tables(nodes: list[ast.AST]) -> dict[str, str | None]:
    """The table of each ``with op.batch_alter_table("t") as name`` of a function, by name (None when its table
    is not a string, or the name is given to several)."""
    tables: dict[str, str | None] = {}
    for node in nodes:
        for item in node.items if isinstance(node, (ast.With, ast.AsyncWith)) else ():
            target, opened = item.optional_vars, item.context_expr
            if not isinstance(target, ast.Name) or not isinstance(opened, ast.Call):
                continue
            if _ast_called_name(opened.func) != "batch_alter_table":
                continue
            first = opened.args[0] if opened.args else None
            table = _ast_string(first, {})
            tables[target.id] = table if tables.get(target.id, table) == table else None
    return tables


def _next_to_data_changes(
    tree: ast.Module | None,
    walk: Walk,
    work: dict[str, list[_RowWork]],
    calls: dict[str, set[str]],
    by_function: dict[str, dict[str, set[str]]],
    scope_of: Callable[[str], dict[str, ast.expr]],
    marked: frozenset[int] = frozenset(),
) -> dict[int, int]:
    """The lines of the ops left unguarded beside a function's first data change that does not re-run alike,
    each with the line of that change (its own, or the call of a function whose run makes one).

    A re-run of a revision whose data change already ran would make it
    again: the original fails before, on the first op it finds done. Its
    ops before the change that may run last (those of the nearest statement
    holding ops) are left unguarded, so a re-run that got past them fails
    there as the original does, while one after a deploy that died before
    them still goes through. With no op before the change, the ops of the
    nearest statement after it are: the original too makes the change again
    and fails on the op.
    """
    changes = {name: _data_change_lines(entries, by_function.get(name, {})) for name, entries in work.items()}
    # a function whose run (it and the functions it calls) makes a data change
    changing = {name for name, run in _runs(work, calls).items() if any(changes[other] for other in run)}
    found: dict[int, int] = {}
    for function in walk(tree) if tree is not None else ():
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or is_helper_name(function.name):
            continue
        points = list(changes.get(function.name, ()))
        points += [
            node.lineno
            for node in walk(function)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in changing
        ]
        if marked:  # a data change marked `# idempotify: skip` is guarded by hand: it counts no more
            simple = [node for node in walk(function) if isinstance(node, ast.stmt) and not hasattr(node, "body")]
            points = [point for point in points if not _marked_at(point, simple, marked)]
        spans = [(statement.lineno, statement.end_lineno or statement.lineno) for statement in function.body]
        # Work is kept by function name: two functions of one name (a nested ``def step()`` in upgrade() and in
        # downgrade()) share it, so only the lines inside this one count.
        points = [point for point in points if any(first <= point <= last for first, last in spans)]
        if not points:
            continue
        line = min(points)
        scope = scope_of(function.name)
        ops = [sorted(_loud_op_lines(statement, scope)) for statement in function.body]
        at = next(index for index, (first, last) in enumerate(spans) if first <= line <= last)
        before = [found_line for found_line in ops[at] if found_line < line]
        before = before or next((lines for lines in reversed(ops[:at]) if lines), [])
        after = [found_line for found_line in ops[at] if found_line > line]
        after = after or next((lines for lines in ops[at + 1 :] if lines), [])
        found.update(dict.fromkeys(before or after, line))
    return found


def _data_change_lines(entries: list[_RowWork], functions: dict[str, set[str]]) -> list[int]:
    """The lines of ``entries`` known to write rows (SQL idempotify read, a bulk_insert) and not to re-run
    alike; a seed insert, into a table the function creates, is guarded (it runs while the table is empty) and
    is left out. What is not read (a statement object, an ORM session, code not seen here) is listed on its own
    and not counted: the rule holds for the data changes idempotify can tell."""
    made = functions.get("create_table", set())
    lines = []
    for entry in entries:
        writes = entry.rows.writes
        if not entry.read or writes == frozenset() or entry.rows == _ANY_ROWS:
            continue  # no rows written, or what it does is not known (SQL not read, a statement object, ORM)
        if writes is not None and {_string_key(table) for table in writes} <= made:
            continue
        others = [(other.rows, other.line > entry.line) for other in entries if other is not entry]
        if entry.rows.bound or entry.rows.reruns_in(others) is None:
            lines.append(entry.line)
    return lines


def _marked_lines(source: str) -> set[int]:
    """The lines a `# idempotify: skip` marks: its own, or the next when it is a comment line of its own."""
    found = set()
    for number, line in enumerate(source.splitlines(), 1):
        if SKIP_MARKER in line:
            found.add(number + 1 if line.lstrip().startswith("#") else number)
    return found


def _marked_at(line: int, statements: list[ast.stmt], marked: frozenset[int]) -> bool:
    """Whether the innermost simple statement holding ``line`` is marked (on any of its lines)."""
    holding = [node for node in statements if node.lineno <= line <= (node.end_lineno or node.lineno)]
    if not holding:
        return False
    inner = min(holding, key=lambda node: (node.end_lineno or node.lineno) - node.lineno)
    return any(inner.lineno <= number <= (inner.end_lineno or inner.lineno) for number in marked)


# What SQL does that fails when done (its op, as read_sql gives it; an alter_column only when it renames).
_LOUD_SQL = frozenset(
    {
        "add_column",
        "drop_column",
        "create_table",
        "drop_table",
        "rename_table",
        "create_index",
        "drop_index",
        "create_unique_constraint",
        "create_foreign_key",
        "create_check_constraint",
        "create_primary_key",
        "drop_constraint",
    }
)


def _loud_sql(call: ast.Call, scope: dict[str, ast.expr]) -> bool:
    """Whether ``call`` runs SQL idempotify reads whose every statement is DDL that fails when done."""
    sql = _ast_sql(call.args[0], scope) if call.args else None
    parts = read_sql(sql, None) if sql is not None else ()
    return bool(parts) and all(
        part.safe is None
        and (part.op in _LOUD_SQL or (part.op == "alter_column" and bool(part.args.get("new_column_name"))))
        for part in parts
    )


def _loud_op_lines(statement: ast.stmt, scope: dict[str, ast.expr]) -> set[int]:
    """The lines of the op calls in ``statement`` that fail when what they do is done (not ``execute``, but of
    SQL that is such DDL only (``scope``: the names whose values are known), nor
    one told ``if_exists``/``if_not_exists``, nor an ``alter_column`` that renames nothing, nor a create of an
    object named None, nor one under an ``if``); of a ``with`` block's, the last."""
    lines = set()
    for call in _outside_ifs(statement):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
            continue
        if call.func.attr in {"execute", "exec_driver_sql"} and _loud_sql(call, scope):
            lines.add(call.lineno)
            continue
        if call.func.attr not in SPECS or call.func.attr in {"execute", "bulk_insert"}:
            continue
        keywords = {keyword.arg for keyword in call.keywords}
        if keywords & {"if_exists", "if_not_exists"}:
            continue
        if call.func.attr == "alter_column" and "new_column_name" not in keywords:
            continue  # a type, nullability or default set again
        first = call.args[0] if call.args else None
        if call.func.attr.startswith("create_") and isinstance(first, ast.Constant) and first.value is None:
            continue  # an unnamed constraint or index: made again beside the first, where names are not required
        if isinstance(call.func.value, ast.Name):
            lines.add(call.lineno)
    if isinstance(statement, (ast.With, ast.AsyncWith)) and lines:
        return {max(lines)}  # a batch block's ops run together at its end: its last fails the block
    return lines


def _outside_ifs(statement: ast.stmt) -> Iterator[ast.AST]:
    """The nodes of ``statement`` not under an ``if``, nor in a function or class it defines: an op under an
    ``if`` may not run (a dialect branch), or be guarded by a test of the project's own, and then fails nothing
    done; one in a nested ``def`` runs where that is called."""
    pending: list[ast.AST] = [statement]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.If, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield node
        pending.extend(ast.iter_child_nodes(node))


def _runs(names: Iterable[str], calls: dict[str, set[str]]) -> dict[str, set[str]]:
    """Per function of ``names``, its run: it and the functions of ``names`` it calls, transitively."""
    runs = {name: {name} for name in names}
    changed = True
    while changed:
        changed = False
        for reached in runs.values():
            more = set().union(*(calls.get(callee, set()) for callee in reached)) & runs.keys()
            if more - reached:
                reached.update(more)
                changed = True
    return runs


def _together(runs: dict[str, set[str]]) -> dict[str, set[str]]:
    """Per function, the functions of every run it is part of (a function others call is part of each of
    their runs)."""
    together: dict[str, set[str]] = {name: set() for name in runs}
    for reached in runs.values():
        for name in reached:
            together[name] |= reached
    return together


def _work_in_run(work: dict[str, list[_RowWork]], calls: dict[str, set[str]]) -> dict[str, list[_RowWork]]:
    """Per function name, what is done with rows in every run it is part of (see ``_runs``, ``_together``)."""
    together = _together(_runs(work, calls))
    return {name: [entry for other in sorted(names) for entry in work[other]] for name, names in together.items()}


def _values_fixed(call: ast.expr | None, scope: dict[str, ast.expr]) -> bool:
    """Whether every value bound to a statement's parameters by ``call`` (``execute(sql, {...})``, ``.bindparams(...)``,
    also on a statement kept in a name) is a literal: fixed, where a value from Python may come from what the
    function read, or from the clock."""
    if not isinstance(call, ast.Call):
        return False
    given: list[ast.expr] = [*call.args[1:], *(keyword.value for keyword in call.keywords)]
    statement = call.args[0] if call.args else None
    for _ in range(_NAME_DEPTH):
        if isinstance(statement, ast.Name):
            statement = scope.get(statement.id)
    for node in ast.walk(statement) if statement is not None else ():
        if isinstance(node, ast.Call) and _ast_called_name(node.func) == "bindparams":
            given += [*node.args, *(keyword.value for keyword in node.keywords)]
    try:
        values = [ast.literal_eval(value) for value in given]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    # A list of parameter sets runs the statement once per set (executemany): one set's result is another's input.
    return not any(isinstance(value, (list, tuple, set)) for value in values)


def _values_bound_once(
    function: ast.FunctionDef | ast.AsyncFunctionDef, nodes: list[ast.AST]
) -> dict[str, ast.expr | None]:
    """The names ``function`` binds exactly once, by ``name = value``, with their value: a statement or its SQL
    kept in a variable (``query = sa.select(...)``, ``sql = "CREATE INDEX ..."``) before it is run.

    Any other binding of the name anywhere in the function (a parameter, its own or a
    nested function's or lambda's, a loop or ``with`` target, ``+=``, an import, a
    nested function's name) makes it unknown.
    """
    bound: Counter[str] = Counter(arg.arg for arg in nodes if isinstance(arg, ast.arg))
    assigned: dict[str, ast.expr] = {}
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound[node.id] += 1
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)):
            bound.update([node.name] if node.name and node is not function else [])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update({name: 2 for name in node.names})
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
    # None: a name the function binds otherwise, which hides a module constant of that name.
    return {name: assigned.get(name) if count == 1 else None for name, count in bound.items()}


# Per name a function binds only by assignment or as a loop target: each value it may hold. A value
# ``ast.Starred(iterable)`` stands for each item of ``iterable``, which a ``for name in iterable:`` binds in turn.
_Possible = dict[str, tuple[ast.expr, ...]]


def _values_possible(function: ast.FunctionDef | ast.AsyncFunctionDef, nodes: list[ast.AST]) -> _Possible:
    """The names ``function`` (nested functions included) binds only by ``name = value``
    or as the target of a ``for``, with each value they may hold: ``stmt = text("UPDATE ...")`` run, then
    ``stmt = text("DELETE ...")`` run. A name bound any other way anywhere in it is left out."""
    values: dict[str, list[ast.expr]] = {}
    other: set[str] = {node.arg for node in nodes if isinstance(node, ast.arg)}  # its parameters, and lambdas'...
    known: set[int] = set()  # the targets read here, by id
    for node in nodes:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values.setdefault(node.targets[0].id, []).append(node.value)
            known.add(id(node.targets[0]))
        elif isinstance(node, (ast.For, ast.AsyncFor)) and isinstance(node.target, ast.Name):
            values.setdefault(node.target.id, []).append(ast.Starred(value=node.iter, ctx=ast.Load()))
            known.add(id(node.target))
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)) and id(node) not in known:
            other.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            other.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ExceptHandler)):
            other.update([node.name] if node.name and node is not function else [])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            other.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            other.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            other.add(node.rest)
    return {name: tuple(found) for name, found in values.items() if name not in other}


def _scope(constants: dict[str, ast.expr], values: dict[str, ast.expr | None]) -> dict[str, ast.expr]:
    """The names whose value is known inside a function: module constants it does not rebind, its own values."""
    return {name: value for name, value in {**constants, **values}.items() if value is not None}


def _module_constants(tree: ast.Module | None) -> dict[str, ast.expr]:
    """Module-level ``NAME = ...`` assigned once, for SQL kept in a constant."""
    found: dict[str, ast.expr] = {}
    seen: set[str] = set()
    for statement in tree.body if tree is not None else ():
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name):
                if target.id in seen:
                    found.pop(target.id, None)
                else:
                    found[target.id] = statement.value
                seen.add(target.id)
    return found


def _ast_sql(node: ast.expr, scope: dict[str, ast.expr], depth: int = 0, *, holes: bool = False) -> str | None:
    """The SQL a string expression holds, read from Python's tree: a literal (concatenated), ``text(...)``,
    ``dedent(...)``, or a name of ``scope`` (module constants, a function's values) holding one of them.

    With ``holes``, an f-string too, each value it puts in written as a name (``idempotify_value_1``).
    """
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SAME_SQL:
        return _ast_sql(node.func.value, scope, depth, holes=holes)
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        name = _ast_called_name(node.func)
        if name in {"text", "dedent"}:
            return _ast_sql(node.args[0], scope, depth, holes=holes)
    if isinstance(node, ast.Name) and node.id in scope and depth < _NAME_DEPTH:
        return _ast_sql(scope[node.id], scope, depth + 1, holes=holes)
    if holes:
        return _ast_template(node, scope, depth)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _ast_template(node: ast.expr, scope: dict[str, ast.expr], depth: int) -> str | None:
    """The SQL of an f-string, ``"...".format(...)`` or ``"..." % ...``, each value put in written as a name
    (``idempotify_value_1``); a plain string's SQL as it is."""
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else f"idempotify_value_{index}"
            for index, part in enumerate(node.values)
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        template = _ast_sql(node.func.value, scope, depth)
        if template is None:
            return None
        try:
            fields = list(string.Formatter().parse(template))
        except ValueError:
            return None
        return "".join(
            text + ("" if field is None else f"idempotify_value_{index}")
            for index, (text, field, _, _) in enumerate(fields)
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        template = _ast_sql(node.left, scope, depth)
        if template is None:
            return None
        counter = itertools.count(1)
        return _PERCENT_FIELD.sub(
            lambda found: "%" if found.group() == "%%" else f"idempotify_value_{next(counter)}", template
        )
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# Calls on a ``text(...)`` clause that bind values or say what it returns, leaving its SQL as it is.
_SAME_SQL = frozenset({"bindparams", "columns", "execution_options"})
# A ``%`` conversion of printf-style formatting (``%s``, ``%(name)s``, ``%05d``), or an escaped ``%%``.
_PERCENT_FIELD = re.compile(r"%%|%(\([^)]*\))?[#0 +-]*(\*|\d+)?(\.(\*|\d+))?[diouxXeEfFgGcrsa]")


# How many names in a row are followed to a value (``sql = QUERY``, ``QUERY = "..."``); a cycle stops there.
_NAME_DEPTH = 3


def _ast_called_name(func: ast.expr) -> str | None:
    """``f`` of ``f(...)`` or ``module.f(...)``."""
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


# Statements built with SQLAlchemy, by the call they start from: what they do, and whether that is safe.
_BUILT_STATEMENTS = {
    "select": ("its statement is a query", True),
    "update": ("its statement changes data: it re-runs only if its WHERE makes it so", False),
    "delete": ("its statement changes data: it re-runs only if its WHERE makes it so", False),
    "insert": ("its statement inserts rows, which is not guarded", False),
}
# The reasons an op is left unguarded because it changes data (reported, never guarded, by design); a reason
# may go on after one of them (", whatever the values put in it").
DATA_CHANGE_REASONS = (
    DATA_CHANGE,
    NOT_A_SEED,
    UNGUARDED_REASONS["bulk_insert"],
    _ORM_WRITE,
    _ORM_CHANGE,
    _ORM_FLUSH,
    *dict.fromkeys(reason for reason, safe in _BUILT_STATEMENTS.values() if not safe),
)


def _statement_built(node: ast.expr, scope: dict[str, ast.expr], depth: int = 0) -> str | None:
    """``select`` for ``sa.select(...).where(...)``, ``table.select()``, or a name of ``scope`` holding one
    (``query = sa.select(...)``, then ``connection.execute(query.limit(10))``): the call its chain starts from."""
    found = None
    while isinstance(node, ast.Call):
        name = _ast_called_name(node.func)
        found = name if name in _BUILT_STATEMENTS else found
        if not isinstance(node.func, ast.Attribute):
            break
        node = node.func.value
    if found is None and isinstance(node, ast.Name) and node.id in scope and depth < _NAME_DEPTH:
        return _statement_built(scope[node.id], scope, depth + 1)
    return found


def _chain_root(node: ast.expr) -> ast.expr | None:
    """``stmt`` of ``stmt.where(...).limit(10)``: what a chain of method calls starts from; None when one of them
    builds a statement of its own (``t.update()``)."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in _BUILT_STATEMENTS:
            return None
        node = node.func.value
    return node


def _chained_on(node: ast.expr, name: str) -> bool:
    """``stmt.where(...)`` when ``name`` is ``stmt``: a value built from the name's own earlier value."""
    root = _chain_root(node)
    return node is not root and isinstance(root, ast.Name) and root.id == name


def _ast_items(node: ast.expr, scope: dict[str, ast.expr]) -> list[ast.expr] | None:
    """The items of a list, tuple or set written out, or of a name of ``scope`` holding one; else None."""
    if isinstance(node, ast.Name) and node.id in scope:
        node = scope[node.id]
    if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return None
    return None if any(isinstance(item, ast.Starred) for item in node.elts) else list(node.elts)


def _creates(found: _OpCall) -> bool:
    return found.spec is not None and found.spec.checks[0].creates


def _dialect_tested(test: cst.BaseExpression) -> str | None:
    """The dialect an ``if`` runs its body on: ``<...dialect...> == "postgresql"`` (or ``in ("mysql", "mariadb")``,
    names of one kind of database), as a key of ``codemod.sql.DIALECTS``; None for anything else."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return None
    target = test.comparisons[0]
    left = cst.Module(body=()).code_for_node(test.left)
    if "dialect" not in left and "name" not in left:
        return None
    values: list[str | None] = []
    if isinstance(target.operator, cst.Equal):
        values = [_string_value(target.comparator)]
    elif isinstance(target.operator, cst.In) and isinstance(target.comparator, (cst.Tuple, cst.List, cst.Set)):
        values = [_string_value(element.value) for element in target.comparator.elements]
    if not values or not all(value in DIALECTS for value in values):
        return None
    return values[0] if len({DIALECTS[str(value)] for value in values}) == 1 else None


def _indexes_made(
    args: Sequence[cst.Arg], known: Callable[[cst.BaseExpression], cst.BaseExpression | None]
) -> list[str] | None:
    """The indexes a create_table given ``args`` (after its table's name) makes in statements of their own, as
    the guard's ``indexes=`` lists them: an ``Index`` by its name (a string, or an f-string of names), else by
    its columns, and a
    ``Column(..., index=True)`` by its column; None when some argument cannot be read (then any of them may
    make one). ``*columns`` is read through ``known``: the list a name is bound to, when it is bound once."""
    made = []
    for arg in args:
        value = arg.value
        if arg.keyword is not None:
            continue
        if arg.star == "*" and isinstance(known(value), cst.List | cst.Tuple):
            listed = known(value)
            assert isinstance(listed, cst.List | cst.Tuple)
            spread = [cst.Arg(element.value) for element in listed.elements if isinstance(element, cst.Element)]
            inner = _indexes_made(spread, known) if len(spread) == len(listed.elements) else None
            if inner is None:
                return None
            made += inner
            continue
        if isinstance(value, cst.Name) and not arg.star:
            value = known(value) or value  # message = sa.Column(...), bound once, then given by its name
        if arg.star or not isinstance(value, cst.Call):
            return None
        called = called_name(value.func)
        given = _bind_as_given(value, ("name",))
        if called == "Column":
            index = given.get("index")
            index = known(index) or index if isinstance(index, cst.Name) and index.value not in _CONSTANTS else index
            if index is None or m.matches(index, m.Name("False") | m.Name("None")):
                continue
            if not m.matches(index, m.Name("True")):
                return None  # index=<expression>: whether it makes one is known at run time only
            name = _string_value(given["name"]) if "name" in given else None
            if name is None:
                return None
            made.append(json.dumps([name]))
        elif called == "Index":
            name = _string_value(given["name"]) if "name" in given else None
            columns = [_string_value(each.value) for each in value.args[1:] if each.keyword is None and not each.star]
            if name is not None:
                made.append(json.dumps(name))
            elif isinstance(given.get("name"), cst.FormattedString) and not m.findall(given["name"], m.Call()):
                # f"index_{Model.__tablename__}_uuid": the guard repeats it (names and attributes only).
                made.append(cst.Module(body=()).code_for_node(given["name"]))
            elif "name" in given and _is_none(given["name"]) and columns and None not in columns:
                made.append(json.dumps(columns))
            else:
                return None
        elif called not in _MADE_IN_CREATE_TABLE:
            return None
    return made


# What a create_table's CREATE TABLE itself makes: no statement of its own follows for these.
_MADE_IN_CREATE_TABLE = frozenset(
    {
        "PrimaryKeyConstraint",
        "ForeignKeyConstraint",
        "UniqueConstraint",
        "CheckConstraint",
        "ExcludeConstraint",
        "Computed",
        "Identity",
    }
)
_CONSTANTS = frozenset({"True", "False", "None"})
# Ops that may drop an index a create_table made, or rename or drop its column; and SQL that may.
_CHANGES_INDEXES = re.compile(r"\b(?:drop_index|drop_column|alter_column)\(")
_SQL_CHANGES_INDEXES = re.compile(r"(?i)\b(?:drop\s+index|drop\s+column|rename)\b")


def _carried_by_column(column: cst.BaseExpression | None) -> tuple[str, ...]:
    """What a ``Column(...)`` passed to add_column makes besides the column by statements of their own: its
    foreign keys (given as arguments), its index and unique constraint (``index=``, ``unique=`` not False)."""
    if not (isinstance(column, cst.Call) and m.matches(column.func, _COLUMN)):
        return ()
    carried = []
    for arg in column.args:
        if arg.keyword is None and isinstance(arg.value, cst.Call):
            # A column's CHECK goes inline in ADD COLUMN; its foreign key is an ADD CONSTRAINT of its own.
            if called_name(arg.value.func) == "ForeignKey" and "a foreign key" not in carried:
                carried.append("a foreign key")
        elif (
            arg.keyword is not None
            and arg.keyword.value in ("index", "unique")
            and not m.matches(arg.value, m.Name("False") | m.Name("None"))
        ):
            carried.append("an index" if arg.keyword.value == "index" else "a unique constraint")
    return tuple(carried)


def _helpers_only(test: cst.BaseExpression) -> bool:
    """A test made of generated helper calls joined with ``and``/``or``/``not``: one idempotify wrote."""
    if isinstance(test, cst.BooleanOperation):
        return _helpers_only(test.left) and _helpers_only(test.right)
    if isinstance(test, cst.UnaryOperation):
        return _helpers_only(test.expression)
    return isinstance(test, cst.Call) and isinstance(test.func, cst.Name) and is_helper_name(test.func.value)


def _adjacent(statements: Sequence[cst.BaseStatement], run: Sequence[cst.BaseStatement]) -> bool:
    """Whether ``run`` stands in ``statements`` one right after the other, nothing else between."""
    start = next((index for index, statement in enumerate(statements) if statement is run[0]), None)
    return start is not None and all(
        start + offset < len(statements) and statements[start + offset] is statement
        for offset, statement in enumerate(run)
    )


def _object_key(effect: Effect) -> tuple[str, str] | None:
    """The object an effect is on, as the churn check of a plain block compares them; None when unnamed."""
    target = effect.target
    return None if target.name is None else (target.kind, target.name)


def _names(objects: dict[tuple[str, str], str]) -> str:
    return ", ".join(sorted(set(objects.values())))


def _normalized(source: str) -> str:
    """An expression's source with formatting and quoting normalised away. In parentheses: an argument's source
    may go over lines (``a\n    or b``), as only the brackets of the call it is in allow."""
    try:
        return ast.dump(ast.parse(f"(\n{source.strip()}\n)", mode="eval"))
    except SyntaxError:
        return source


def _mentions(test: cst.BaseExpression, subject: cst.BaseExpression) -> bool:
    """True when ``test`` refers to the object ``subject`` names (same string, or same expression)."""
    wanted = _string_value(subject)
    if wanted is not None:
        strings = m.findall(test, m.SimpleString() | m.ConcatenatedString())
        return any(_string_value(node) == wanted for node in strings if isinstance(node, cst.BaseExpression))
    empty = cst.Module(body=())
    expected = _normalized(empty.code_for_node(subject))
    return any(
        isinstance(node, type(subject)) and _normalized(empty.code_for_node(node)) == expected for node in _walk(test)
    )


def _already_tests(test: cst.BaseExpression, check: Check, args: dict[str, cst.BaseExpression]) -> bool:
    """True when ``test`` already checks what ``check`` would: it mentions the subject.

    An unnamed subject (``None``) is only recognised in a call to the same helper.
    """
    subject = args.get(check.subject)
    if subject is None:
        return False
    if _is_none(subject):
        return _calls_guard(test, check.check)
    return _mentions(test, subject)


def _is_none(node: cst.BaseExpression | None) -> bool:
    return node is not None and m.matches(node, m.Name("None"))


def _passed(args: dict[str, cst.BaseExpression], name: str) -> bool:
    return name in args and not _is_none(args[name])


def _is_op_method(node: cst.BaseExpression, op_names: set[str], method: str) -> bool:
    """True for ``op.<method>(...)`` with ``op`` any name bound to alembic.op."""
    return m.matches(
        node,
        m.Call(func=m.Attribute(value=m.OneOf(*map(m.Name, op_names)), attr=m.Name(method))),
    )


def _exits(body: cst.BaseSuite) -> bool:
    """True for a block that only returns or raises (an early exit)."""
    statements = body.body if isinstance(body, cst.SimpleStatementSuite) else None
    if isinstance(body, cst.IndentedBlock):
        if len(body.body) != 1 or not isinstance(body.body[0], cst.SimpleStatementLine):
            return False
        statements = body.body[0].body
    return bool(statements) and all(isinstance(small, (cst.Return, cst.Raise)) for small in statements or ())


def _has_skip_marker(statement: cst.BaseStatement) -> bool:
    """True when the statement's own line or the comment line above it says ``# idempotify: skip``."""
    if not isinstance(statement, cst.SimpleStatementLine):
        return False
    comments = [statement.trailing_whitespace.comment]
    if statement.leading_lines:
        comments.append(statement.leading_lines[-1].comment)
    return any(comment is not None and SKIP_MARKER in comment.value for comment in comments)


def _sequence_args(sequence: cst.BaseExpression) -> dict[str, cst.BaseExpression]:
    """The name and schema of ``sa.Sequence("name", schema=...)``, else ``<expr>.name`` and ``<expr>.schema``."""
    if isinstance(sequence, cst.Call) and m.matches(
        sequence.func, m.Name("Sequence") | m.Attribute(attr=m.Name("Sequence"))
    ):
        args = _bind(sequence, ("sequence_name",))
        if "name" in args:
            args["sequence_name"] = args.pop("name")
        return args
    return {
        "sequence_name": cst.Attribute(value=sequence, attr=cst.Name("name")),
        "schema": cst.Attribute(value=sequence, attr=cst.Name("schema")),
    }


class _CallCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)


def _ends_in_raise(body: cst.BaseSuite) -> bool:
    """Whether an ``except`` body ends by raising (again or anew)."""
    last: cst.CSTNode | None = body.body[-1] if body.body else None
    if isinstance(last, cst.SimpleStatementLine):
        last = last.body[-1]
    return isinstance(last, cst.Raise)


def _does_nothing(body: cst.BaseSuite) -> bool:
    """Whether an ``except`` body only passes (``pass``, ``...``, a string), on its line or on lines of its own:
    a failure and a skip then differ in nothing but what follows the failing statement."""
    if isinstance(body, cst.SimpleStatementSuite):
        smalls: list[cst.BaseSmallStatement | None] = list(body.body)
    else:
        smalls = [
            small
            for statement in body.body
            for small in (statement.body if isinstance(statement, cst.SimpleStatementLine) else [None])
        ]
    return all(
        isinstance(small, cst.Pass)
        or (isinstance(small, cst.Expr) and isinstance(small.value, (cst.Ellipsis, cst.SimpleString)))
        for small in smalls
    )


def _run_last(statements: Sequence[cst.BaseStatement]) -> set[int]:
    """The ids of the statements among ``statements`` (and within them) after which nothing more of them runs:
    the last one, or the last of each branch of a last ``if``, or of a last ``with`` block."""
    if not statements:
        return set()
    last = statements[-1]
    found = {id(last)}
    if isinstance(last, cst.If):
        found |= _run_last(last.body.body if isinstance(last.body, cst.IndentedBlock) else ())
        orelse = last.orelse
        if isinstance(orelse, cst.If):
            found |= _run_last([orelse])
        elif isinstance(orelse, cst.Else) and isinstance(orelse.body, cst.IndentedBlock):
            found |= _run_last(orelse.body.body)
    elif isinstance(last, cst.With) and isinstance(last.body, cst.IndentedBlock):
        found |= _run_last(last.body.body)
    return found


def _statements_within(
    node: cst.CSTNode, within: Callable[[cst.BaseStatement], bool] = lambda statement: True
) -> list[cst.BaseStatement]:
    """The statements within ``node``, at any depth, but not those in a ``def`` or ``class``, nor those in a
    statement ``within`` says no to (which is listed)."""
    found: list[cst.BaseStatement] = []
    for child in node.children:
        if isinstance(child, cst.BaseStatement):
            found.append(child)
            if isinstance(child, (cst.FunctionDef, cst.ClassDef)) or not within(child):
                continue
        if not isinstance(child, cst.BaseExpression):
            found += _statements_within(child, within)
    return found


def _receiver(call: cst.Call) -> str | None:
    """The name a method is called on: ``batch_op`` in ``batch_op.drop_column(...)``."""
    func = call.func
    return func.value.value if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) else None


def _calls_within(node: cst.CSTNode) -> list[cst.Call]:
    """Every call in ``node``, in source order (``m.findall`` is several times slower)."""
    collector = _CallCollector()
    node.visit(collector)
    return collector.calls


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    yield node
    for child in node.children:
        yield from _walk(child)
