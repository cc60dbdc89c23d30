"""Whose fault a failure is, read off the op of the revision file it failed at.

An op inside an ``if`` that calls one of the generated ``_idempotify_*`` helpers,
or a failure inside such a helper, is the rewrite's (``guard``). An op the
rewrite reports as left unguarded is expected to fail on a re-run
(``unguarded``, with the rewrite's reason), also where it keeps a guard but
reports the op at risk. A run that changes only rows is
blamed on the ops that inserted into those tables as it ran. Anything else is
``other``.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping, Sequence
from functools import cache
from typing import TypeGuard

from codemod.formatting import Style
from codemod.guards import is_helper_name
from codemod.results import Outcome
from codemod.runner import rewrite_source
from codemod.verify.schema import ROWS


def op_cause(source: str, line: int | None, *, in_guard: bool = False) -> tuple[str, str]:
    """``(cause, explanation)`` for a failure at ``line`` of ``source``; the explanation names the op."""
    if in_guard:
        return "guard", " [a guard helper fails: the rewrite's defect]"
    if line is None:
        return "other", ""
    statement = _statement_at(source, line)
    if statement is None:
        return "other", ""
    op = ast.get_source_segment(source, statement) or ""
    shown = op.splitlines()[0].strip() if op else ""
    end = statement.end_lineno or statement.lineno
    # First what the rewrite says of the op: one it guards but reports at risk is expected to fail too.
    for report_line, reason in _unguarded(source):
        if statement.lineno <= report_line <= end:
            return "unguarded", f" [op `{shown}`, left unguarded by the rewrite: {reason}]"
    if any(first <= statement.lineno and end <= last for first, last in _guarded_spans(source)):
        return "guard", f" [op `{shown}`, guarded by the rewrite: the rewrite's defect]"
    return "other", f" [at `{shown}`]" if shown else ""


def rows_cause(
    source: str, diff: Sequence[str], inserted: Mapping[str, Collection[int]]
) -> tuple[str, int | None, str]:
    """``(cause, line, explanation)`` for a run of ``source`` that left the differences ``diff``, its ops having
    inserted into the tables of ``inserted`` from those lines: when every difference is in the rows of such a
    table, the cause of those ops (``guard`` if one is guarded, ``unguarded`` only if the rewrite left them all
    unguarded, with its reasons), at the first line of those blamed; otherwise ``other``, with no line."""
    tables = set()
    for difference in diff:
        if not difference.startswith(ROWS):
            return "other", None, ""
        tables.add(difference.removeprefix(ROWS).partition(": ")[0])
    if not all(inserted.get(table) for table in tables):
        return "other", None, ""
    found = [(line, *op_cause(source, line)) for line in sorted(set().union(*(inserted[table] for table in tables)))]
    for cause in ("guard", "other", "unguarded"):
        blamed = [(line, why) for line, found_cause, why in found if found_cause == cause]
        if blamed:
            return cause, blamed[0][0], "".join(dict.fromkeys(why for _, why in blamed))
    return "other", None, ""


def line_naming(source: str, tables: Collection[str]) -> int | None:
    """The line of ``upgrade()`` where a schema difference in ``tables`` most likely comes from.

    The original and the rewritten file differ by their guards, so an op whose
    guard names one of the tables comes first (the op, not its guard: a batch
    op names its table only in the guard); else the first line naming one of
    them in a string (an op's table argument).
    """
    upgrade = next(
        (node for node in _parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"), None
    )
    if upgrade is None:
        return None

    def names_one(node: ast.AST) -> TypeGuard[ast.Constant]:
        return isinstance(node, ast.Constant) and node.value in tables

    guarded = [
        statement.body[0].lineno
        for statement in ast.walk(upgrade)
        if isinstance(statement, ast.If)
        for call in _guard_calls(statement.test)
        if any(names_one(inner) for inner in ast.walk(call))
    ]
    if guarded:
        return min(guarded)
    in_guards = {id(inner) for call in _guard_calls(upgrade) for inner in ast.walk(call)}
    lines = [node.lineno for node in ast.walk(upgrade) if names_one(node) and id(node) not in in_guards]
    return min(lines, default=None)


def _guard_calls(node: ast.AST) -> list[ast.Call]:
    """The calls of generated guard helpers in ``node``."""
    return [
        call
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and is_helper_name(call.func.id)
    ]


def _statement_at(source: str, line: int) -> ast.stmt | None:
    """The innermost simple statement spanning ``line``, else a ``with`` block starting there (a batch block
    runs its ops as it ends)."""
    found: ast.stmt | None = None
    compound = (ast.If, ast.With, ast.FunctionDef, ast.For, ast.While, ast.Try)
    statements = [node for node in ast.walk(_parse(source)) if isinstance(node, ast.stmt)]
    for node in statements:
        spans = node.lineno <= line <= (node.end_lineno or node.lineno)
        if spans and not isinstance(node, compound) and (found is None or node.lineno >= found.lineno):
            found = node
    if found is None:
        found = next((node for node in statements if isinstance(node, ast.With) and node.lineno == line), None)
    return found


@cache
def _parse(source: str) -> ast.Module:
    return ast.parse(source)


@cache
def _guarded_spans(source: str) -> tuple[tuple[int, int], ...]:
    """The line spans of ``if`` bodies whose test calls a generated guard helper."""
    spans = []
    for node in ast.walk(_parse(source)):
        if isinstance(node, ast.If) and _guard_calls(node.test):
            spans.append((node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno))
    return tuple(spans)


@cache
def _unguarded(source: str) -> tuple[tuple[int, str], ...]:
    """The ops the rewrite leaves unguarded in ``source``, by line, with its reason."""
    try:
        _, reports = rewrite_source(source.encode(), Style())
    except Exception:  # noqa: BLE001 - a file the rewrite cannot read has no unguarded ops to name
        return ()
    return tuple((report.line, report.reason) for report in reports if report.outcome is Outcome.UNGUARDED)
