"""``Style.if_header`` renders simple tests itself: it must agree with black on every one of them."""

from __future__ import annotations

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
    helper = st.tuples(st.sampled_from(["", "not "]), _expressions()).map(lambda parts: f"{parts[0]}_h({parts[1]})")
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


@pytest.mark.parametrize(
    "test",
    [
        '_idempotify("op.add_column: no column", "users", "updated_at", schema=None)',
        "not _idempotify('op.drop_index: index', 'users', op.f('ix_users_email'))",
        '_idempotify("op.create_unique_constraint: no unique constraint", "dag_run",'
        ' "uq_dag_run_dag_id_execution_date_key", ["dag_id", "execution_date"])',
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
    import libcst as cst  # noqa: PLC0415

    from codemod.guards import helper_names  # noqa: PLC0415
    from codemod.transformer import _helper_block  # noqa: PLC0415

    _, block = _helper_block(helper_names(), Style(line_length=line_length), "    ", "\n")
    long_lines = [line for line in cst.Module(body=block).code.splitlines() if len(line) > line_length]
    assert long_lines == []
