"""A LibCST node of idempotify's own: code it wrote, kept as text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

if TYPE_CHECKING:
    from libcst._nodes.internal import CodegenState


@dataclass(frozen=True)
class Code(cst.BaseExpression):
    """An expression idempotify wrote and formatted, kept as its code: parsed into nodes only to be printed
    again, a guard's test would cost as much as the migration's own statement it guards. Its lines after the
    first are indented as the block it is in. What looks into a rewritten tree reads its code (the helpers a
    migration imports from a shared module are found so). LibCST's nodes print themselves by ``_codegen_impl``;
    the tests compare every golden file's bytes, so a change there cannot pass unseen."""

    code: str
    lpar: Sequence[cst.LeftParen] = ()
    rpar: Sequence[cst.RightParen] = ()

    def _visit_and_replace_children(self, visitor: cst.CSTVisitorT) -> Code:
        return self

    def _codegen_impl(self, state: CodegenState) -> None:
        newline = state.default_newline
        state.add_token(self.code.replace(newline, newline + "".join(state.indent_tokens)))
