"""The one import line of a migration that takes its helpers from the project's shared helpers module.

With ``[tool.idempotify] helpers = "package.module"`` a migration holds no
generated block; it imports the helpers its guards call
(``from package.module import _idempotify``), in one statement idempotify owns:
an import of generated helpers only, replaced where it stands (any module
name: the setting may have changed), else put after the file's last import
before its first function.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import libcst as cst
import libcst.matchers as m

from codemod.formatting import Style
from codemod.guards import called_helpers, helper_names, reindent
from codemod.nodes import Code


def is_helper_import(statement: cst.BaseStatement) -> bool:
    """``from X import _idempotify, ...``: an import of generated helpers only, none renamed."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    node = statement.body[0]
    if not isinstance(node, cst.ImportFrom) or isinstance(node.names, cst.ImportStar) or node.relative:
        return False
    known = set(helper_names())
    return all(
        alias.asname is None and isinstance(alias.name, cst.Name) and alias.name.value in known for alias in node.names
    )


class _HelperNames(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: set[str] = set()
        self._known = set(helper_names())

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self._known:
            self.found.add(node.value)

    def visit_Code(self, node: Code) -> None:  # a guard written here
        self.found |= called_helpers(node.code)


def with_helper_import(module: cst.Module, body: Sequence[cst.BaseStatement], style: Style) -> cst.Module:
    """``module`` with ``body`` (its statements, without a generated block) importing the helpers it calls.

    ``style.helpers`` names the module they come from. A file that calls none
    loses the import; an import already as it would be written keeps its bytes.
    """
    assert style.helpers is not None
    statements = list(body)
    existing = [index for index, statement in enumerate(statements) if is_helper_import(statement)]
    collector = _HelperNames()
    for index, statement in enumerate(statements):
        if index not in existing:
            statement.visit(collector)
    kept = [statement for index, statement in enumerate(statements) if index not in existing[1:]]
    if not collector.found:
        return module.with_changes(body=[statement for statement in kept if not is_helper_import(statement)])
    line = _import_line(tuple(sorted(collector.found)), style, module.default_indent, module.default_newline)
    if existing:
        position = existing[0]
        old = kept[position]
        assert isinstance(old, cst.SimpleStatementLine)
        if module.code_for_node(old.with_changes(leading_lines=())) == module.code_for_node(line):
            return module.with_changes(body=kept)
        kept[position] = line.with_changes(leading_lines=old.leading_lines)
    else:
        kept.insert(_after_imports(kept), line)
    return module.with_changes(body=kept)


def _after_imports(body: Sequence[cst.BaseStatement]) -> int:
    """Where a new import goes: after the last import before the first compound statement (a ``def``)."""
    position = 0
    for index, statement in enumerate(body):
        if not isinstance(statement, cst.SimpleStatementLine):
            break
        if index == 0 and m.matches(statement, m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])):
            position = 1  # the module docstring
        elif any(isinstance(small, (cst.Import, cst.ImportFrom)) for small in statement.body):
            position = index + 1
    return position


@cache
def _import_line(names: tuple[str, ...], style: Style, indent: str, newline: str) -> cst.SimpleStatementLine:
    """``from <style.helpers> import <names>``, formatted as black would at the project's line length."""
    source = f"from {style.helpers} import {', '.join(names)}\n"
    if len(source) > style.line_length + 1:
        source = style.format(source)
    if indent != "    ":
        source = reindent(source, indent)
    config = cst.PartialParserConfig(default_indent=indent, default_newline=newline)
    parsed = cst.parse_module(source.replace("\n", newline), config=config)
    (statement,) = parsed.body
    assert isinstance(statement, cst.SimpleStatementLine)
    return statement
