"""codemod.lines: line numbers, text and walks of a module's nodes without LibCST's position metadata."""

from __future__ import annotations

import ast

import libcst as cst

from codemod.lines import ByNode, NodeLines

SOURCE = """def upgrade():
    op.create_table(
        "café",
        sa.Column("kind", sa.Enum("a", "b", name="kind")),
    )
    (op.drop_table("old"))
""".encode()


class _Calls(cst.CSTVisitor):
    def __init__(self, lines: NodeLines) -> None:
        super().__init__()
        self.lines = lines
        self.calls: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        self.lines.visit(node)
        self.calls.append(node)


def _visited(source: bytes) -> tuple[NodeLines, list[cst.Call]]:
    module = cst.parse_module(source)
    lines = NodeLines(module, source)
    visitor = _Calls(lines)
    module.visit(visitor)
    return lines, visitor.calls


def test_a_call_s_text_is_the_source_s_and_its_line_is_known() -> None:
    lines, calls = _visited(SOURCE)
    create_table = calls[0]
    # as written, with the indent of its lines after the first (LibCST's code for it takes that off)
    expected = 'op.create_table(\n        "café",\n        sa.Column("kind", sa.Enum("a", "b", name="kind")),\n    )'
    assert lines.text(create_table) == expected
    assert lines.line(create_table) == 2
    assert lines.line(calls[-1]) == 6


def test_no_text_for_a_call_in_parentheses_of_its_own_nor_once_the_pairing_failed() -> None:
    lines, calls = _visited(SOURCE)
    drop_table = calls[-1]
    assert drop_table.lpar  # LibCST holds the parentheses on the call: its code is more than Python's span
    assert lines.text(drop_table) is None
    lines.visit(cst.Call(func=cst.Name("not_in_the_source")))  # no such call: the pairing is no longer trusted
    assert lines.text(calls[0]) is None
    assert lines.line(calls[0]) == 2  # from LibCST's positions instead


def test_by_node_computes_once_per_node_by_identity() -> None:
    seen: list[ast.AST] = []

    def compute(node: ast.AST) -> int:
        seen.append(node)
        return len(seen)

    by_node: ByNode[ast.AST, int] = ByNode(compute)
    first, second = ast.Name("a"), ast.Name("a")  # equal, not the same node
    assert [by_node(first), by_node(first), by_node(second), by_node(first)] == [1, 1, 2, 1]
    assert seen == [first, second]
