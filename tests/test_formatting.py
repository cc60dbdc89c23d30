"""``Style.if_header`` renders simple tests itself: it must agree with black on every one of them."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codemod.formatting import Style

NAMES = st.sampled_from(["t", "batch_op", "op", "schema", "None", "True", "name_1", "SomeModel"])
STRINGS = st.sampled_from(
    ['"users"', "'users'", '"it\'s"', "'say \"hi\"'", '""', "'a b'", '"x" "y"', 'f"ix_{t}"', '"ord("', "'a)b]'"]
)
NUMBERS = st.sampled_from(["0", "12", "0x1F", "1.5", "-1"])


def _atoms() -> st.SearchStrategy[str]:
    dotted = st.lists(NAMES, min_size=1, max_size=3).map(".".join)
    return st.one_of(NAMES, STRINGS, NUMBERS, dotted)


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        args = st.lists(inner, max_size=4)
        spacing = st.sampled_from([", ", ",", " , ", ",\n  "])
        trailing = st.sampled_from(["", ","])
        call = st.tuples(NAMES, spacing, args, trailing).map(
            lambda parts: f"{parts[0]}({parts[1].join(parts[2])}{parts[3] if parts[2] else ''})"
        )
        keyword = st.tuples(NAMES.filter(str.isidentifier), inner).map(lambda parts: f"f({parts[0]}={parts[1]})")
        listed = st.tuples(spacing, args).map(lambda parts: f"[{parts[0].join(parts[1])}]")
        subscript = st.tuples(st.one_of(NAMES, STRINGS, NUMBERS), inner).map(lambda parts: f"{parts[0]}[{parts[1]}]")
        parenthesised = inner.map(lambda text: f"({text})")
        return st.one_of(call, keyword, listed, subscript, parenthesised)

    return st.recursive(_atoms(), extend, max_leaves=12)


def _tests() -> st.SearchStrategy[str]:
    keyword = st.tuples(NAMES.filter(str.isidentifier), _expressions()).map("=".join)
    arguments = st.lists(st.one_of(_expressions(), keyword), min_size=1, max_size=6).map(", ".join)
    helper = st.tuples(st.sampled_from(["", "not "]), arguments).map(lambda parts: f"{parts[0]}_h({parts[1]})")
    return st.lists(helper, min_size=1, max_size=2).map(" and ".join)


@settings(max_examples=300, deadline=None)
@given(
    test=_tests(),
    line_length=st.sampled_from([40, 60, 88, 120]),
    indent=st.sampled_from([0, 4, 8, 12]),
    normalize=st.booleans(),
)
def test_if_header_agrees_with_black(test: str, line_length: int, indent: int, normalize: bool) -> None:
    style = Style(line_length=line_length, string_normalization=normalize)
    assert style.if_header(test, indent) == style.format(f"if {test}:\n    pass\n", indent)


def _guards() -> st.SearchStrategy[str]:
    """Guard calls as the transformer writes them: many plain arguments, often too many for one line."""
    words = st.text("abcxyz_", min_size=1, max_size=30)
    string = st.one_of(
        words.map(lambda word: f'"{word}"'),
        words.map(lambda word: f"'{word}, {word}'"),
        words.map(lambda word: f'"({word}) IS NOT NULL"'),  # a check constraint's SQL
        words.map(lambda word: f'f"ix_{{{word}}}"'),
        words.map(lambda word: f"f'{word}_{{t}}'"),
    )
    atom = st.one_of(string, NAMES, st.lists(string, min_size=1, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"))
    argument = st.one_of(atom, st.tuples(NAMES.filter(str.isidentifier), atom).map("=".join))
    arguments = st.lists(argument, min_size=2, max_size=7).map(", ".join)
    return st.tuples(st.sampled_from(["", "not "]), arguments).map(lambda parts: f"{parts[0]}_idempotify({parts[1]})")


@settings(max_examples=300, deadline=None)
@given(test=_guards(), line_length=st.sampled_from([40, 60, 88]), indent=st.sampled_from([0, 4, 8, 12]))
def test_if_header_splits_arguments_as_black_does(test: str, line_length: int, indent: int) -> None:
    style = Style(line_length=line_length)
    assert style.if_header(test, indent) == style.format(f"if {test}:\n    pass\n", indent)


@settings(max_examples=500, deadline=None)
@given(
    first=_guards(),
    second=_guards(),
    operator=st.sampled_from(["and", "or"]),
    line_length=st.sampled_from([40, 60, 79, 88, 100, 120]),
    indent=st.sampled_from([0, 4, 8, 12]),
)
def test_two_guards_split_as_black_does(first: str, second: str, operator: str, line_length: int, indent: int) -> None:
    """A make after a drop, a rename's two names: most tests of two checks are too long for one line."""
    style = Style(line_length=line_length)
    test = f"{first} {operator} {second}"
    assert style.if_header(test, indent) == style.format(f"if {test}:\n    pass\n", indent)


@pytest.mark.parametrize(
    "test",
    [
        '_idempotify("op.add_column: no column", "users", "updated_at", schema=None)',
        "not _idempotify('op.drop_index: index', 'users', op.f('ix_users_email'))",
        '_idempotify("op.create_unique_constraint: no unique constraint", "dag_run",'
        ' "uq_dag_run_dag_id_execution_date_key", ["dag_id", "execution_date"])',
        '_idempotify("batch_op.create_foreign_key: no foreign key", "task_reschedule", "task_reschedule_ti_fkey",'
        ' "task_instance", ["ti_id"], ["id"], copied=True)',
        '_idempotify("batch_op.drop_constraint: constraint", foreign, name or f"fk_{foreign}_datasource_name",'
        ' "foreignkey", naming_convention=conv)',
        '_idempotify("op.create_index: no index", "a, b", "ix_with_a_comma_in_the_table_name_and_a_long_name_too")',
        '_idempotify("op.alter_column: column", "t", "a")'
        ' and _idempotify("op.alter_column: no column", "t", "b_with_a_long_name_to_split")',
    ],
)
def test_if_header_on_real_guards(test: str) -> None:
    for style in (Style(), Style(line_length=40), Style(string_normalization=False)):
        assert style.if_header(test, 8) == style.format(f"if {test}:\n    pass\n", 8)


@pytest.mark.parametrize("line_length", [79, 88, 120])
def test_the_generated_helpers_fit_the_line_length(line_length: int) -> None:
    """Black cannot split strings and docstrings: the helpers' own are short enough for PEP 8's 79."""
    from codemod.guards import PARTS, helper_names  # noqa: PLC0415
    from codemod.transformer import _helper_block  # noqa: PLC0415

    block = _helper_block(helper_names(), PARTS, Style(line_length=line_length), "    ", "\n")
    long_lines = [line for line in block.splitlines() if len(line) > line_length]
    assert long_lines == []


def _helpers_cut_every_way() -> list[Any]:  # pytest.param's type is pytest's own
    from codemod.guards import _sources  # noqa: PLC0415

    cases = []
    for name, source in _sources().items():
        own = sorted(set(re.findall(r"#\s*part:\s*(\w+)", source)))
        for size in range(len(own) + 1):
            cases += [
                pytest.param(name, frozenset(kept), id=f"{name}[{'+'.join(kept)}]")
                for kept in itertools.combinations(own, size)
            ]
    return cases


@pytest.mark.parametrize(("name", "parts"), _helpers_cut_every_way())
def test_with_black_s_defaults_each_helper_is_its_own_formatting(name: str, parts: frozenset[str]) -> None:
    """What lets ``Style.format_helper`` skip black: each helper, cut to any set of its parts, is as black
    formats it with its defaults."""
    from codemod.guards import _sources, _with_parts  # noqa: PLC0415

    source = _with_parts(_sources()[name], parts)
    assert Style().format(source) == source
    assert Style().format_helper(source) is source


def test_at_another_line_length_a_helper_s_tuple_is_joined_where_it_fits() -> None:
    """Black splits a tuple at 88 with a trailing comma, which would keep it split at any line length: the
    helpers are formatted without it elsewhere, as they were written."""
    from codemod.guards import _sources  # noqa: PLC0415

    joined = 'key = (getattr(impl, "schema", None) or default, getattr(impl, "name", None))'
    source = _sources()["_idempotify_reuse_enum_types"]
    assert joined not in source
    assert joined in Style(line_length=120).format_helper(source)
    assert joined not in Style(line_length=79).format_helper(source)


def test_a_one_item_tuple_keeps_its_comma() -> None:
    source = "def f():\n    x = (\n        a,\n    )\n    y = (\n        b,\n        c,\n    )\n"
    assert Style(line_length=120).format_helper(source) == "def f():\n    x = (a,)\n    y = (b, c)\n"
