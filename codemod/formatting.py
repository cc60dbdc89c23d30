"""Formatting of the code idempotify writes, and only that code.

New ``if`` lines and the helper block go through black with the target
project's settings (``[tool.black]`` in the nearest ``pyproject.toml``), so
they look like the project's own code; nothing the user wrote is reformatted.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from codemod.config import ConfigError, nearest_tool_table

DEFAULT_LINE_LENGTH = 88


@dataclass(frozen=True)
class Style:
    """The settings of the project a migration belongs to that shape the code idempotify writes into it.

    ``helpers`` names the project's shared helpers module (``package.module``):
    the migration imports its helpers from there instead of holding them.
    """

    line_length: int = DEFAULT_LINE_LENGTH
    string_normalization: bool = True
    helpers: str | None = None

    def format(self, source: str, indent_width: int = 0) -> str:
        """Format ``source`` as black would at ``indent_width`` columns of indentation."""
        import black  # noqa: PLC0415 - deferred: only files that change need it

        mode = black.Mode(
            line_length=max(self.line_length - indent_width, 20),
            string_normalization=self.string_normalization,
        )
        return black.format_str(source, mode=mode)

    def format_helper(self, source: str) -> str:
        """A generated helper function's ``source`` (see ``codemod.guards``) formatted as black would.

        ``codemod.runtime`` is laid out as black lays it out with its defaults
        (``make lint`` checks it), and its helpers, cut to any set of their
        parts, stay so (a test checks every one): with black's defaults, the
        source is its own formatting, and black, about 20 ms a helper, is
        not run.
        """
        if self.line_length == DEFAULT_LINE_LENGTH and self.string_normalization:
            return source
        return self.format(_without_split_tuple_commas(source))

    def if_header(self, test: str, indent_width: int = 0) -> str:
        """``if <test>:`` followed by a ``pass`` body, formatted as black would.

        Most tests are one helper call with names and plain strings for
        arguments; those are rendered here, the way black renders them (black
        costs milliseconds a call), when they fit on one line or when black
        would only move the arguments to a line of their own. The rest go to
        black; a test compares the two on every header the fixtures produce.
        """
        simple = _black_stable(test, string_normalization=self.string_normalization)
        width = max(self.line_length - indent_width, 20)
        if simple is not None and len(simple) + 4 <= width:
            return f"if {simple}:\n    pass\n"
        call = _one_call(simple)
        if call is not None and len(call[0]) + 4 <= width:
            head, arguments = call
            body = _call_body(arguments, width)
            if body is not None:
                return f"if {head}(\n{body}):\n    pass\n"
        two = _two_calls(simple)
        if two is not None:
            header = _two_calls_header(*two, width)
            if header is not None:
                return header + "    pass\n"
        return self.format(f"if {test}:\n    pass\n", indent_width)


def _call_body(arguments: str, width: int) -> str | None:
    """The lines black gives the ``arguments`` of a call it splits after "(", one level in, or None when it
    would split them further: on a line of their own, else one a line with a trailing comma."""
    if len(arguments) + 4 <= width:
        return f"    {arguments}\n"
    each = _arguments(arguments)
    if len(each) > 1 and all(len(argument) + 5 <= width for argument in each):
        return "".join(f"    {argument},\n" for argument in each)
    return None


def _two_calls_header(first: str, operator: str, second: str, width: int) -> str | None:
    """``if first and second:`` (or ``or``), two calls too long for one line, as black splits it, or None.

    Black splits at the last call's brackets when the line up to them fits
    (``if a(x) and b(`` / its arguments / ``):``); else, when the line from the
    first call's closing bracket on fits, at the first call's brackets (``if
    a(`` / its arguments / ``) and b(y):``); else at both.
    """
    first_call, second_call = _one_call(first), _one_call(second)
    if first_call is None or second_call is None or not first_call[1] or not second_call[1]:
        return None
    (head, arguments), (second_head, second_arguments) = first_call, second_call
    opened, closed = f"if {head}(", f") {operator} {second}:"
    body, second_body = _call_body(arguments, width), _call_body(second_arguments, width)
    if len(up_to_last := f"if {first} {operator} {second_head}(") <= width:
        return None if second_body is None else f"{up_to_last}\n{second_body}):\n"
    if body is None or len(opened) > width:
        return None
    if len(closed) <= width:
        return f"{opened}\n{body}{closed}\n"
    between = f") {operator} {second_head}("
    if second_body is None or len(between) > width:
        return None
    return f"{opened}\n{body}{between}\n{second_body}):\n"


def _two_calls(test: str | None) -> tuple[str, str, str] | None:
    """``(first, "and", second)`` when ``test`` (as ``_black_stable`` prints it) is two operands joined by one
    ``and`` or ``or`` outside brackets and strings; None otherwise."""
    if test is None:
        return None
    found = [
        (index, operator)
        for index, character, depth in _outside_strings(test)
        if depth == 0 and character == " "
        for operator in ("and", "or")
        if test.startswith(f"{operator} ", index + 1)
    ]
    if len(found) != 1:
        return None
    index, operator = found[0]
    return test[:index], operator, test[index + len(operator) + 2 :]


_CALLED = re.compile(r"(?:not )?[A-Za-z_]\w*\(")


def _without_split_tuple_commas(source: str) -> str:
    """``source`` without the trailing comma of a tuple split one item a line: black put it in at 88, where the
    tuple does not fit one line (``codemod.runtime`` is laid out so), and would keep the tuple split at any
    line length; without it, black joins the tuple where it fits, as the tuple was written. Where the comma
    makes the tuple (one item), it stays."""
    lines = source.split("\n")
    tree = None
    for index, line in enumerate(lines):
        if line.endswith("= ("):  # a tuple assigned, on lines of its own up to the ")" at the line's indent
            closing = line[: len(line) - len(line.lstrip())] + ")"
            end = next((after for after in range(index + 1, len(lines)) if lines[after] == closing), None)
            if end is None or not lines[end - 1].endswith(","):
                continue
            tree = tree or ast.dump(ast.parse(source))
            without = [*lines[: end - 1], lines[end - 1][:-1], *lines[end:]]
            if ast.dump(ast.parse("\n".join(without))) == tree:
                lines = without
    return "\n".join(lines)


def _one_call(test: str | None) -> tuple[str, str] | None:
    """``(head, arguments)`` when ``test`` is one call of a name, maybe negated: black splits it after "("."""
    start = _CALLED.match(test or "")
    if test is None or start is None or not test.endswith(")"):
        return None
    for index, _, depth in _outside_strings(test, start.end() - 1):
        if depth == 0 and index != len(test) - 1:
            return None  # the first call closes before the end: more follows it
    return test[: start.end() - 1], test[start.end() : -1]


def _arguments(arguments: str) -> list[str]:
    """The arguments of a call, split at its own commas: ``a, f(b, c), "d,e"`` gives three."""
    found: list[str] = []
    start = 0
    for index, character, depth in _outside_strings(arguments):
        if character == "," and depth == 0:
            found.append(arguments[start:index].strip())
            start = index + 1
    found.append(arguments[start:].strip())
    return found


def _outside_strings(code: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """Each character of ``code`` from ``start`` that is not in a string, with its index, and the depth of
    brackets after it. Strings are plain ones (see ``_black_string``): a quote ends at the next of its kind."""
    depth, quote = 0, ""
    for index in range(start, len(code)):
        character = code[index]
        if quote:
            quote = "" if character == quote else quote
            continue
        if character in "'\"":
            quote = character
            continue
        depth += (character in "([") - (character in ")]")
        yield index, character, depth


_NO_SPACE_BEFORE = frozenset({")", "]", ",", ".", "="})
_NO_SPACE_AFTER = frozenset({"(", "[", ".", "="})
_OPERATORS = frozenset(keyword.kwlist) - {"None", "True", "False"}
_ALLOWED_OPS = frozenset({"(", ")", "[", "]", ",", ".", "="})


def _black_stable(expression: str, *, string_normalization: bool) -> str | None:
    """``expression`` on one line exactly as black prints it, or None when it is not simple enough to tell.

    Simple means: ASCII; names, ``not`` and ``and``; decimal integers; plain
    one-line strings without escapes or prefixes; calls, subscripts and lists
    of those, with keyword arguments; no comments, no trailing commas, no
    parentheses other than a call's.
    """
    if not expression.isascii():
        return None
    try:
        tokens = [
            token
            for token in tokenize.generate_tokens(io.StringIO(expression).readline)
            if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER)
        ]
    except (tokenize.TokenError, SyntaxError):
        return None
    pieces: list[str] = []
    previous = ""
    previous_literal = False  # a string or number: "a"[0] is a subscript, as after a name
    for index, token in enumerate(tokens):
        text: str | None = token.string
        following = tokens[index + 1].string if index + 1 < len(tokens) else ""
        after_operand = (
            previous_literal or (previous.isidentifier() and previous not in _OPERATORS) or previous in (")", "]")
        )
        if token.type == tokenize.STRING:
            text = _black_string(token.string, string_normalization=string_normalization)
        elif token.type == tokenize.NUMBER:
            text = text if token.string.isdigit() else None
        elif token.type == tokenize.OP:
            if token.string not in _ALLOWED_OPS or (token.string == "(" and not after_operand):
                return None  # an operator, or a parenthesised expression whose parentheses black may drop
            if token.string == "," and following in (")", "]"):
                return None  # a magic trailing comma: black splits the call over lines
        elif token.type != tokenize.NAME:
            return None
        if text is None:
            return None
        attached = text in _NO_SPACE_BEFORE or (text in ("(", "[") and after_operand)
        if pieces and not attached and previous not in _NO_SPACE_AFTER:
            pieces.append(" ")
        pieces.append(text)
        previous = text
        previous_literal = token.type in (tokenize.STRING, tokenize.NUMBER)
    return "".join(pieces)


def _black_string(text: str, *, string_normalization: bool) -> str | None:
    """A plain string literal as black prints it, or None for escapes, triple quotes and prefixes other than
    ``f`` on a string black leaves as it is (double quotes, or any when it does not normalize them)."""
    if text.startswith("f") and (text[1:2] == '"' or not string_normalization):
        text = text[1:]
        prefix = "f"
    else:
        prefix = ""
    if "\\" in text or len(text) < 2 or text[0] not in "'\"" or text.startswith(("'''", '"""')):
        return None
    body = text[1:-1]
    if text[0] == "'" and string_normalization:
        return None if '"' in body else f'"{body}"'
    return prefix + text


def style_for(path: Path) -> Style:
    """The style of the project holding ``path``, from the nearest ``[tool.black]``."""
    return _style_for_directory(path.resolve().parent)


@cache
def _style_for_directory(directory: Path) -> Style:
    found = nearest_tool_table(directory, "black")
    if found is None:
        return Style()
    pyproject, black_config = found
    # black reads its keys with "-" or "_" alike.
    settings = {str(key).replace("_", "-"): value for key, value in black_config.items()}
    line_length = settings.get("line-length", DEFAULT_LINE_LENGTH)
    skip_normalization = settings.get("skip-string-normalization", False)
    if not isinstance(line_length, int) or isinstance(line_length, bool) or line_length < 1:
        raise ConfigError(f"{pyproject}: [tool.black] line-length must be a positive integer, not {line_length!r}")
    if not isinstance(skip_normalization, bool):
        raise ConfigError(f"{pyproject}: [tool.black] skip-string-normalization must be true or false")
    return Style(line_length=line_length, string_normalization=not skip_normalization)
