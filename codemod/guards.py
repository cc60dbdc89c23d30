"""The generated helper block, and the guard expressions built from a spec.

The helpers are the functions of ``codemod.runtime``, cut from its source and
copied into the migration in a generated block after its own code, so the
migration never imports idempotify. A file gets only the helpers its guards
call: the one that answers every guard, ``_idempotify``, the finders of the
kinds of object it checks, and what those call. A shared helpers module also
holds the check of drift, used by the creates of a column, index, unique
constraint or foreign key.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codemod import runtime
from codemod.specs import HELPER_PREFIX, SPECS, Check

# The first line of the generated block, ending with the fingerprint of its functions as written (see
# ``helpers_fingerprint``): a re-run that finds them changed refuses to write them over.
BLOCK_MARK = "# idempotify: generated guards"  # how the block's first line starts, in every version
BLOCK_HEADER = BLOCK_MARK + " (skips are logged); do not edit [{fingerprint}]\n"
_WRITTEN_HEADER = re.compile(r"^# idempotify: generated guards .*\[([0-9a-f]{8})\][ \t]*\r?$", re.MULTILINE)
GUARD = runtime.HELPER_PREFIX  # the function every guard calls

# Helpers a guard needs only when it passes this keyword (most files never do).
KEYWORD_HELPERS: dict[str, str] = {
    "naming_convention": "_idempotify_named_by_convention",
    "indexes": "_idempotify_lacking_indexes",
}
# Helpers that only the helper they ride with calls, when the file needs them; the block holds one only with it.
RIDERS: dict[str, str] = {
    "_idempotify_named_by_convention": "_idempotify_constraint",
    "_idempotify_index_name": "_idempotify_index",  # unnamed, long or computed names
    "_idempotify_drop_invalid_index": "_idempotify_index",  # files that build indexes concurrently
    "_idempotify_drift": GUARD,  # files that create a column, index, unique constraint or foreign key
    "_idempotify_lacking_indexes": GUARD,  # files with a create_table that makes indexes (indexes=)
}
DRIFT = "_idempotify_drift"  # in a shared helpers module only (see GuardTransformer's helper block)
# The create ops whose skip ``_idempotify_drift`` compares with what the database has.
DRIFT_CHECKED = ("add_column", "create_index", "create_unique_constraint", "create_foreign_key")
_SHORT_NAME = 30  # an index name of at most this many characters is stored as written, on every database
# Keywords of an op passed to the guard under another name.
_RENAMED = {"source_schema": "schema", "skip_without_table": "gone"}
_HELPER_CALL = re.compile(rf"\b({GUARD}\w*)\(")
# The parts of the helpers only some guards need (``# part: <name>`` in ``codemod.runtime``). In
# ``_idempotify``: a check of a column, of any other kind of object than a table or column (by its finder), a
# constraint create in a batch block (``copied=``), the drift check (with ``_idempotify_drift`` in the block).
# In the index finder: the drop of an invalid index (with its helper). In the constraint finders: the look at
# each type of constraint, at all of them (a drop without ``type_``), a batch block's naming convention, and
# a primary key's columns (``exact=``: the drop of a key its block makes again looks first at what it makes).
# In ``_idempotify`` again: the look at the indexes a create_table makes, when its table is there (``indexes=``).
PARTS = frozenset({"column", "finder", "copied", "drift", "invalid", "indexes"}) | frozenset(
    {"primary", "unique", "foreignkey", "check", "untyped", "convention", "remade"}
)
# Parts that call a helper: a block holds one exactly when it holds that helper.
_HELPER_PARTS = {
    "drift": DRIFT,
    "invalid": "_idempotify_drop_invalid_index",
    "indexes": "_idempotify_lacking_indexes",
}
# The parts a check of each kind of constraint needs, by kind, and by the ``type_`` of a drop (None: not given).
_CONSTRAINT_PARTS: dict[str | None, frozenset[str]] = {
    "primary key": frozenset({"primary"}),
    "unique constraint": frozenset({"unique"}),
    "foreign key": frozenset({"foreignkey"}),
    "check constraint": frozenset({"check"}),
    **{type_: frozenset({type_}) for type_ in ("primary", "unique", "foreignkey", "check")},
    "exclude": frozenset(),
    None: frozenset({"untyped", "unique", "foreignkey", "check"}),
}
_ANY_CONSTRAINT = frozenset({"primary", "untyped", "unique", "foreignkey", "check"})
# The parts a keyword of the guard asks for.
_KEYWORD_PARTS = {"copied": "copied", "convention": "naming_convention", "remade": "exact"}
_PART_MARK = re.compile(r"^#\s*part:\s*(\w+)\s*$")
_PART_COMMENT = re.compile(r"[ \t]*#\s*part:\s*\w+[ \t]*$", re.MULTILINE)


class _StripAnnotations(cst.CSTTransformer):
    """Type hints are for mypy on ``codemod.runtime``; the copy in a migration goes without, each signature on
    one line (``runtime`` is laid out as black lays it out: see ``Style.format_helper``)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # of the functions the visit is in

    def leave_Param(self, original_node: cst.Param, updated_node: cst.Param) -> cst.Param:
        nothing = cst.SimpleWhitespace("")
        equal = cst.AssignEqual(whitespace_before=nothing, whitespace_after=nothing)
        return updated_node.with_changes(
            annotation=None,
            equal=cst.MaybeSentinel.DEFAULT if updated_node.default is None else equal,
            comma=cst.MaybeSentinel.DEFAULT,
            whitespace_after_param=nothing,
        )

    def leave_AnnAssign(self, original_node: cst.AnnAssign, updated_node: cst.AnnAssign) -> cst.Assign | cst.AnnAssign:
        if updated_node.value is None:
            return updated_node
        return cst.Assign(targets=[cst.AssignTarget(target=updated_node.target)], value=updated_node.value)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        self.depth -= 1
        return updated_node.with_changes(
            returns=None,
            leading_lines=updated_node.leading_lines if self.depth else (),  # a nested function keeps its own
            whitespace_before_params=cst.SimpleWhitespace(""),
        )


@cache
def _sources() -> dict[str, str]:
    """Each helper's source as the migration gets it, in the order ``codemod.runtime`` defines them."""
    module = cst.parse_module(Path(runtime.__file__).read_text(encoding="utf-8"))
    stripped = module.visit(_StripAnnotations())
    return {
        statement.name.value: cst.Module(body=[statement]).code.strip("\n") + "\n"
        for statement in stripped.body
        if isinstance(statement, cst.FunctionDef) and is_helper_name(statement.name.value)
    }


def _part(statement: cst.BaseStatement) -> str | None:
    """The part a statement or ``if`` branch serves, from the ``# part: <name>`` ending its (first) line."""
    if isinstance(statement, cst.If) and isinstance(statement.body, cst.IndentedBlock):
        comment = statement.body.header.comment
    elif isinstance(statement, cst.SimpleStatementLine):
        comment = statement.trailing_whitespace.comment
    else:
        return None
    found = _PART_MARK.search(comment.value) if comment is not None else None
    if found is not None and found.group(1) not in PARTS:
        raise ValueError(f"no part of the generated helpers named {found.group(1)}")
    return found.group(1) if found else None


class _CutParts(cst.CSTTransformer):
    """Leaves out the statements and ``if``/``elif`` branches of the parts not in ``parts``."""

    def __init__(self, parts: frozenset[str]) -> None:
        super().__init__()
        self.parts = parts

    def _cut(self, statement: cst.BaseStatement | cst.BaseSuite | cst.Else | None) -> bool:
        if not isinstance(statement, cst.BaseStatement):
            return False
        part = _part(statement)
        return part is not None and part not in self.parts

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        return False  # parts are marked on statements and branches, never inside a statement

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.If:
        orelse = updated_node.orelse
        while isinstance(orelse, cst.If) and self._cut(orelse):
            orelse = orelse.orelse
        return updated_node.with_changes(orelse=orelse)

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body = []
        for statement in updated_node.body:
            kept = statement
            # A cut ``if`` gives way to its ``elif`` (its ``else`` would be left without a test: none has one).
            while isinstance(kept, cst.If) and self._cut(kept) and isinstance(kept.orelse, cst.If):
                kept = kept.orelse.with_changes(leading_lines=kept.leading_lines)
            # A ``try`` whose body was all cut guards nothing: its handlers go with it.
            emptied = isinstance(kept, cst.Try) and isinstance(kept.body, cst.IndentedBlock) and not kept.body.body
            if not self._cut(kept) and not emptied:
                body.append(kept)
        return updated_node.with_changes(body=body)


@cache
def _with_parts(source: str, parts: frozenset[str]) -> str:
    """A helper's ``source`` with only the parts named in ``parts``, and without the comments marking parts."""
    if "# part:" not in source:
        return source
    cut = _parsed(source).visit(_CutParts(parts)).code
    return _PART_COMMENT.sub("", cut)


@cache
def _parsed(source: str) -> cst.Module:
    """``source`` parsed once for every set of parts cut from it (LibCST's nodes are never changed in place)."""
    return cst.parse_module(source)


@cache
def _dependencies() -> dict[str, frozenset[str]]:
    """The helpers each helper calls, except those only a keyword of the guard asks for."""
    optional = set(RIDERS)
    found = {}
    for name, source in _sources().items():
        names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
        found[name] = frozenset(names & _sources().keys() - optional - {name})
    return found


def is_helper_name(name: str) -> bool:
    """True for names of functions idempotify generates."""
    return name == GUARD or name.startswith(HELPER_PREFIX)


def helper_names() -> tuple[str, ...]:
    """Every generated helper, in the order the block holds them."""
    return tuple(_sources())


def finder_name(kind: str) -> str:
    """The helper ``_idempotify`` asks whether an object of ``kind`` ("unique constraint") is there."""
    return f"{GUARD}_{kind.replace(' ', '_')}"


def helpers_called(source: str) -> set[str]:
    """The helpers a guard's source (an expression or statement) calls, with the finders of the kinds it checks
    (see ``guards_need``)."""
    return set(guards_need(source)[0])


def parts_needed(source: str) -> set[str]:
    """The parts of the helpers (see ``PARTS``) that the guards in ``source`` need (see ``guards_need``)."""
    return set(guards_need(source)[1])


def called_helpers(source: str) -> frozenset[str]:
    """The generated helpers that ``source`` (code) calls."""
    return frozenset(_HELPER_CALL.findall(source)) & _sources().keys()


@lru_cache(maxsize=4096)
def guards_need(source: str) -> tuple[frozenset[str], frozenset[str]]:
    """What the guards in ``source`` (an expression or statement) need: the helpers they call, with the finders
    of the kinds they check, and the parts of the helpers (see ``PARTS``). One walk of the source answers both.

    An index named by a literal of at most 30 characters (also through
    ``op.f``) needs no help with its name; any other index does.
    """
    called = set(called_helpers(source))
    parts: set[str] = set()
    for call in ast.walk(ast.parse(textwrap.dedent(source).strip())):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == GUARD):
            continue
        guard = call.args[0] if call.args else None
        if not (isinstance(guard, ast.Constant) and isinstance(guard.value, str)):
            parts |= PARTS  # a guard of a kind not known here: it may need any
            continue
        op, _, check = guard.value.rpartition(": ")
        kind = check.removeprefix("no ")
        keywords = {keyword.arg for keyword in call.keywords}
        if check != kind and op.rpartition(".")[2] in DRIFT_CHECKED:
            called.add("_idempotify_drift")
        if kind not in ("table", "column"):
            called.add(finder_name(kind))
        if kind == "index" and not _short_literal(call.args[2] if len(call.args) > 2 else None):
            called.add("_idempotify_index_name")
        indexes = next((keyword.value for keyword in call.keywords if keyword.arg == "indexes"), None)
        if isinstance(indexes, ast.List) and not all(_short_literal(each) for each in indexes.elts):
            called.add("_idempotify_index_name")  # a long or computed name, or columns (named by the convention)
        called.update(helper for key, helper in KEYWORD_HELPERS.items() if key in keywords)
        if kind != "table":
            parts.add("column" if kind == "column" else "finder")
        if kind == "constraint":  # a drop: of the type_ it gives (4th), if any
            type_ = call.args[3] if len(call.args) > 3 else ast.Constant(None)
            literal = isinstance(type_, ast.Constant) and isinstance(type_.value, str | None)
            parts |= _CONSTRAINT_PARTS.get(ast.literal_eval(type_), _ANY_CONSTRAINT) if literal else _ANY_CONSTRAINT
        else:
            parts |= _CONSTRAINT_PARTS.get(kind, frozenset())
        parts |= {part for part, keyword in _KEYWORD_PARTS.items() if keyword in keywords}
    return frozenset(called), frozenset(parts)


def _short_literal(node: ast.expr | None) -> bool:
    """A string literal (or ``op.f`` of one) short enough to be stored as written."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "f" and node.args:
        node = node.args[0]
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) <= _SHORT_NAME


def helper_block_source(
    used: Iterable[str], format_function: Callable[[str], str] = str, parts: Iterable[str] = PARTS
) -> str:
    """Source of the generated block holding the helpers ``used`` and what they call.

    Helpers come in a fixed order, so the block is the same whenever the same
    helpers are used: a second run of idempotify leaves it byte-for-byte alone.
    Each function's source goes through ``format_function`` (black) on its own.
    The helpers hold only the ``parts`` named (see ``PARTS``): by default, all.
    """
    functions = _formatted(used, format_function, parts)
    return block_header(functions) + _one_after_another(functions)


def block_header(functions: Iterable[str]) -> str:
    """The block's first line, for the helper functions whose sources are ``functions``, one function each:
    the fingerprint ``helpers_fingerprint`` finds in the block, fed one function at a time, each parsed once."""
    digest = hashlib.sha256()
    for function in functions:
        digest.update(_tree_dump(function))
    return BLOCK_HEADER.format(fingerprint=digest.hexdigest()[:8])


@cache
def _tree_dump(function: str) -> bytes:
    return ast.dump(ast.parse(function).body[0]).encode()


def helpers_fingerprint(statements: Iterable[ast.stmt]) -> str:
    """Eight hex digits that change with any change to the code of the helper functions among ``statements``
    (Python's tree of each, in order), and not with their layout or comments: a project's formatter may
    re-wrap the block, while an edit by hand is found."""
    digest = hashlib.sha256()
    for statement in statements:
        if isinstance(statement, ast.FunctionDef) and is_helper_name(statement.name):
            digest.update(ast.dump(statement).encode())
    return digest.hexdigest()[:8]


def edited_helpers(source: str, tree: ast.Module) -> SyntaxError | None:
    """The error to refuse ``source`` with when the helper block it holds was changed since idempotify wrote
    it (its header's fingerprint is no longer that of its functions), else None. A block without a
    fingerprint (written before idempotify put one in) cannot be told from an edited one: it is rewritten."""
    written = _WRITTEN_HEADER.search(source)
    if written is None:
        return None
    found = helpers_fingerprint(tree.body)
    if found == written.group(1):
        return None
    error = SyntaxError(
        f"the generated guard helpers below this line were changed by hand (fingerprint {written.group(1)}, "
        f"now {found}), and a rewrite would write them over; move the change out of them, or delete the "
        "block with this line to have it written anew, and run idempotify again"
    )
    error.lineno = source.count("\n", 0, written.start()) + 1
    return error


def helper_functions_source(
    used: Iterable[str], format_function: Callable[[str], str] = str, parts: Iterable[str] = PARTS
) -> str:
    """The functions of ``helper_block_source`` without its header (a shared helpers module has its own)."""
    return _one_after_another(_formatted(used, format_function, parts))


def _formatted(used: Iterable[str], format_function: Callable[[str], str], parts: Iterable[str]) -> list[str]:
    return [format_function(source) for source in helper_function_sources(used, parts)]


def _one_after_another(functions: Iterable[str]) -> str:
    return "\n\n\n".join(function.strip("\n") for function in functions) + "\n"


def helper_function_sources(used: Iterable[str], parts: Iterable[str] = PARTS) -> list[str]:
    """The source of each function ``helper_functions_source`` holds, in its order, before formatting."""
    sources, dependencies = _sources(), _dependencies()
    wanted: set[str] = set()
    used = list(used)

    def add(pending: list[str]) -> None:
        while pending:
            name = pending.pop()
            if name not in wanted:
                if name not in sources:
                    raise ValueError(f"no generated helper named {name}")
                wanted.add(name)
                pending.extend(dependencies[name])

    add([name for name in used if name not in RIDERS])
    # A rider may bring in the helper another rides with (_idempotify_lacking_indexes, _idempotify_index).
    while ready := [name for name in used if RIDERS.get(name) in wanted and name not in wanted]:
        add(ready)
    kept = (
        frozenset(parts)
        .difference(_HELPER_PARTS)
        .union(part for part, helper in _HELPER_PARTS.items() if helper in wanted)
    )
    return [_with_parts(source, kept) for name, source in sources.items() if name in wanted]


def reindent(source: str, indent: str) -> str:
    """``source`` indented with ``indent`` per level instead of four spaces."""
    lines = []
    for line in source.split("\n"):
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // 4
        lines.append(indent * depth + line[depth * 4 :])
    return "\n".join(lines)


def guard_call(call: str, check: Check, args: Mapping[str, str]) -> str:
    """``_idempotify("op.add_column: no column", "t", "c")``: the guard for one check of op ``call``.

    ``args`` maps parameter names to the source of the expressions the op was
    called with: the table the object is on, its name, then what else its
    finder takes, positionally; keywords by name (``gone`` for
    ``skip_without_table``).
    """
    table_param = _table_param(check)
    guard = guard_literal(f"{call}: {check.check}", args.values())
    positional = [guard, args.get(table_param, "None") if table_param else "None"]
    rest = [] if check.kind == "table" else [args[check.subject]]
    rest += [args.get(name, "None") for name in check.args if name not in (check.subject, table_param, "kind")]
    while rest and rest[-1] == "None":
        rest.pop()
    keywords = check.keywords + (check.unnamed_keywords if args.get(check.subject) == "None" else ())
    named = [f"{_RENAMED.get(name, name)}={args[name]}" for name in keywords if name in args and name != table_param]
    return f"{GUARD}({', '.join([*positional, *rest, *named])})"


def guard_literal(text: str, sources: Iterable[str]) -> str:
    """``text`` as a string literal, in single quotes where the op's own ``sources`` use them (black may keep them)."""
    literal = json.dumps(text)
    if any(source.startswith("'") for source in sources):
        literal = "'" + literal[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
    return literal


def _table_param(check: Check) -> str | None:
    """The op's parameter naming the table the checked object is, or is on; None for objects on none."""
    if check.kind == "table":
        return check.subject
    if check.kind in ("sequence", "enum"):
        return None
    return "source_table" if "source_table" in check.args else "table_name"


def guard_test(call: str, checks: Iterable[Check], args: Mapping[str, str]) -> str:
    """The ``if`` test for op ``call``: its checks joined with ``and``, as source.

    Checks whose ``only_with`` parameter is absent are dropped.
    """
    calls = [guard_call(call, check, args) for check in checks if check.only_with is None or check.only_with in args]
    return " and ".join(calls)


class _Quiet(cst.CSTTransformer):
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        named = {arg.keyword.value for arg in updated_node.args if arg.keyword is not None}
        if not m.matches(updated_node.func, m.Name(GUARD)) or "quiet" in named:
            return updated_node
        quiet = cst.Arg(keyword=cst.Name("quiet"), value=cst.Name("True"))
        return updated_node.with_changes(args=[*updated_node.args, quiet])


def all_of(tests: Iterable[str]) -> str:
    """The tests joined with ``and``; all but the last say nothing when they answer skip (the last one's
    skip is logged; an earlier one's is said by the op it is about)."""
    *earlier, last = tests
    joined = [_quiet(test) for test in earlier]
    expression = cst.parse_expression(last)
    bracketed = isinstance(expression, cst.BooleanOperation) and isinstance(expression.operator, cst.Or)
    return " and ".join([*joined, f"({last})" if bracketed else last])


def _quiet(test: str) -> str:
    expression = cst.parse_expression(test).visit(_Quiet())
    assert isinstance(expression, cst.BaseExpression)
    return cst.Module(body=()).code_for_node(expression)


def any_of(tests: Iterable[str]) -> str:
    """The tests joined with ``or``; all but the last say nothing when they answer skip.

    With ``or``, one check answering "skip" does not skip the op: another may
    still run it. Only when the last answers "skip" too is the op skipped, and
    that one says so in the log.
    """
    *earlier, last = tests
    return " or ".join([*(_quiet(test) for test in earlier), last])


# Guards an older idempotify wrote call one helper per check, by these names.
LEGACY_HELPERS = frozenset(
    {check.helper for spec in SPECS.values() for check in spec.checks} | {f"{HELPER_PREFIX}table_empty"}
)
