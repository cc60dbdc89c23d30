"""Line numbers for reports, without paying for LibCST's PositionProvider on every file.

The PositionProvider re-generates the whole module while tracking the position
of every node, which costs about twice as much as parsing it. Reports only
need the lines of calls and ``if`` statements, and Python's own parser has
them: sorted by where they start, the ``Call`` and ``If`` nodes of ``ast`` come
in the order a LibCST visitor meets them. ``NodeLines`` pairs the two as the
visitor goes, checks that each pair is the same call (same kind, same called
name), and on the first disagreement, or a file ``ast`` cannot parse, falls
back to the PositionProvider, so a line is never guessed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Generic, TypeVar

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

_Node = cst.Call | cst.If
_In = TypeVar("_In")
_Out = TypeVar("_Out")


def _ast_label(node: ast.AST) -> str:
    """``if``, or ``call NAME`` with the name called (``x`` for ``x()`` and ``a.x()``)."""
    if isinstance(node, ast.If):
        return "if"
    assert isinstance(node, ast.Call)
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return f"call {name}"


def _cst_label(node: _Node) -> str:
    """The label ``_ast_label`` gives the same node."""
    if isinstance(node, cst.If):
        return "if"
    return f"call {called_name(node.func)}"


def called_name(func: cst.BaseExpression) -> str:
    """The name a call calls: ``x`` for ``x()`` and ``a.x()``; "" for anything else."""
    return func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""


class ByNode(Generic[_In, _Out]):
    """``compute`` of a node, computed once per node (by identity). Each value is kept with its node, so that
    the node's id cannot be another's while it is asked for."""

    def __init__(self, compute: Callable[[_In], _Out]) -> None:
        self._compute = compute
        self._known: dict[int, tuple[_In, _Out]] = {}

    def __call__(self, node: _In) -> _Out:
        known = self._known.get(id(node))
        if known is None:
            known = self._known[id(node)] = (node, self._compute(node))
        return known[1]


Walk = ByNode[ast.AST, list[ast.AST]]  # ``ast.walk`` of each node asked for, listed once


class NodeLines:
    """Start lines of a module's ``Call`` and ``If`` nodes; ``visit`` each as a LibCST visitor meets it.

    ``tree`` is Python's own tree of the module (None when it was not parsed),
    for questions a cheap look at the whole module answers.
    """

    def __init__(self, module: cst.Module, source: bytes | None) -> None:
        self._module = module
        self._fallback: dict[int, int] | None = None
        self._expected: list[ast.Call | ast.If] | None = None
        self._next = 0
        self._paired: dict[int, ast.Call | ast.If] = {}  # by id of the LibCST node visited, Python's node
        self._source_lines: list[bytes] = []
        self.tree: ast.Module | None = None
        # ``ast.walk`` of the module and of each function: the questions asked of a whole module walk them
        # several times over
        self.walk: Walk = ByNode(lambda node: list(ast.walk(node)))
        if source is not None:
            try:
                tree = ast.parse(source)
            except (SyntaxError, ValueError):
                pass
            else:
                self.tree = tree
                if module.encoding.lower().replace("_", "-") in ("utf-8", "utf8"):  # ast's offsets count UTF-8
                    self._source_lines = source.splitlines(keepends=True)
                nodes = [node for node in self.walk(tree) if isinstance(node, (ast.Call, ast.If))]
                nodes.sort(key=lambda n: (n.lineno, n.col_offset, -(n.end_lineno or 0), -(n.end_col_offset or 0)))
                self._expected = nodes

    def visit(self, node: _Node) -> None:
        """Learn the line of ``node``, the next Call or If in source order."""
        if self._expected is None:
            return
        expected = self._expected[self._next] if self._next < len(self._expected) else None
        if expected is None or _ast_label(expected) != _cst_label(node):
            self._expected = None
            return
        self._next += 1
        self._paired[id(node)] = expected

    def text(self, node: cst.Call) -> str | None:
        """The text of ``node``, a visited call of the original module without parentheses of its own, as the
        source holds it: the code LibCST would generate for it, at a fraction of the cost, but for the indent of
        its lines after the first (which LibCST takes off). None when not known."""
        found = self._paired.get(id(node)) if self._expected is not None and not node.lpar else None
        if found is None or not self._source_lines or found.end_lineno is None or found.end_col_offset is None:
            return None
        lines = self._source_lines[found.lineno - 1 : found.end_lineno]
        if len(lines) == 1:
            return lines[0][found.col_offset : found.end_col_offset].decode()
        return b"".join([lines[0][found.col_offset :], *lines[1:-1], lines[-1][: found.end_col_offset]]).decode()

    def calls_inside(self, node: _Node) -> list[ast.Call] | None:
        """The calls inside ``node``, just visited (Python's nodes); None when the pairing is not known."""
        if self._expected is None or id(node) not in self._paired:
            return None
        return [found for found in self._expected[self._next : self._inside_end(node)] if isinstance(found, ast.Call)]

    def skip_children(self, node: _Node) -> None:
        """``node``, just visited, will not have its children visited: pass over the calls inside it."""
        if self._expected is not None and id(node) in self._paired:
            self._next = self._inside_end(node)

    def _inside_end(self, node: _Node) -> int:
        assert self._expected is not None
        inside = self._expected[self._next - 1]
        end = (inside.end_lineno or inside.lineno, inside.end_col_offset or 0)
        index = self._next
        while index < len(self._expected) and (self._expected[index].lineno, self._expected[index].col_offset) < end:
            index += 1
        return index

    def line(self, node: _Node) -> int:
        """The line ``node`` (a visited Call or If of the original module) starts on."""
        known = self._paired.get(id(node)) if self._expected is not None else None
        if known is not None:
            return known.lineno
        if self._fallback is None:
            positions = MetadataWrapper(self._module, unsafe_skip_copy=True).resolve(PositionProvider)
            self._fallback = {id(found): code_range.start.line for found, code_range in positions.items()}
        return self._fallback[id(node)]
