"""Every golden fixture: the rewrite is the expected output, a second pass changes nothing, the output compiles."""

from __future__ import annotations

import libcst as cst
import pytest

from codemod.formatting import Style
from codemod.guards import BLOCK_MARK, helper_names
from codemod.runner import rewrite_source
from codemod.specs import SPECS
from tests.fixtures import Golden, golden_paths, read_golden

GOLDENS = [read_golden(path) for path in golden_paths()]


def _rewrite(source: str) -> str:
    output, _ = rewrite_source(source.encode("utf-8"), Style())
    return output.decode("utf-8")


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda golden: golden.id)
def test_rewrite_matches_golden(golden: Golden) -> None:
    assert _rewrite(golden.input) == golden.output, "run `make goldens` and review the diff"


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda golden: golden.id)
def test_second_pass_changes_nothing(golden: Golden) -> None:
    assert _rewrite(golden.output) == golden.output


@pytest.mark.parametrize(
    "golden", [golden for golden in GOLDENS if BLOCK_MARK not in golden.output], ids=lambda golden: golden.id
)
def test_a_module_left_as_it_was_is_its_source_not_code_generated_anew(
    golden: Golden, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generating a module's code costs about a tenth of a rewrite: a module that needs no guard, and no
    helper block, is handed back as the bytes read."""

    def generated(_: cst.Module) -> str:
        raise AssertionError("the module's code was generated")

    helper_names()  # the helpers' own code, generated once per process, first
    monkeypatch.setattr(cst.Module, "code", property(generated))
    monkeypatch.setattr(cst.Module, "bytes", property(generated))
    source = golden.output.encode("utf-8")
    assert rewrite_source(source, Style())[0] == source


@pytest.mark.parametrize(
    "source",
    [
        b'revision = "a"\rdown_revision = None\r\r\rdef upgrade():\r    pass\r',  # old Mac newlines
        b'revision = "a"\ndown_revision = None\n\n\n\x0cdef upgrade():\n    pass\n',  # a form feed
        b'revision = "a"\ndown_revision = None\n\n\ndef upgrade():\n    pass\n\n\n  \n\n',
    ],
    ids=["cr", "form-feed", "blank-lines-at-the-end"],
)
def test_a_module_that_needs_nothing_keeps_even_the_bytes_libcst_would_print_otherwise(source: bytes) -> None:
    assert rewrite_source(source, Style()) == (source, [])


@pytest.mark.parametrize("line_length", [79, 120])
@pytest.mark.parametrize("golden", GOLDENS, ids=lambda golden: golden.id)
def test_second_pass_changes_nothing_at_another_line_length(golden: Golden, line_length: int) -> None:
    """A guard's arguments are laid out anew at the project's line length: a second pass must still know them
    for the op's own (an argument over lines, ``a(...)\n or "b"``, joined on one line at 120)."""
    style = Style(line_length=line_length)
    once, _ = rewrite_source(golden.input.encode("utf-8"), style)
    assert rewrite_source(once, style)[0] == once


def test_a_name_over_lines_that_the_guard_joins_is_known_on_a_second_pass() -> None:
    """Superset's f231d82b9b26 at line length 120: the second pass wrapped the guarded drop in a second guard."""
    source = b"""revision = "a"
down_revision = None

from alembic import op


def upgrade():
    insp = None
    with op.batch_alter_table("tables") as batch_op:
        batch_op.drop_constraint(
            generic_find_uq_constraint_name("tables", {"column", "datasource_id"}, insp)
            or "uq_tables_column",
            type_="unique",
        )
"""
    style = Style(line_length=120)
    once, _ = rewrite_source(source, style)
    assert b'insp) or "uq_tables_column",' in once  # the guard's argument, on one line
    assert rewrite_source(once, style)[0] == once


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda golden: golden.id)
def test_output_compiles(golden: Golden) -> None:
    compile(golden.output, str(golden.path), "exec")


# Op kinds only SQL spells have no folder of their own: their cases are SQL strings in fixtures/execute/.
SPELLED_IN_SQL = {
    "rename_index": "ALTER INDEX",
    "create_schema": "CREATE SCHEMA",
    "drop_schema": "DROP SCHEMA",
    "create_view": "CREATE VIEW",
    "drop_view": "DROP VIEW",
    "create_trigger": "CREATE TRIGGER",
    "drop_trigger": "DROP TRIGGER",
    "create_function": "CREATE FUNCTION",
    "drop_function": "DROP FUNCTION",
    "create_extension": "CREATE EXTENSION",
    "drop_extension": "DROP EXTENSION",
    "add_enum_value": "ADD VALUE",
    "rename_enum_value": "RENAME VALUE",
    "rename_sequence": "ALTER SEQUENCE legacy_seq RENAME",
    "rename_constraint": "RENAME CONSTRAINT",
}


def test_every_op_kind_only_sql_spells_has_an_sql_case_that_changes() -> None:
    assert set(SPELLED_IN_SQL) == {name for name, spec in SPECS.items() if spec.via_sql}
    cases = "".join(golden.input for golden in GOLDENS if golden.path.parent.name == "execute")
    assert {name for name, spelling in SPELLED_IN_SQL.items() if spelling not in cases} == set()


def test_every_op_kind_has_three_cases_that_change() -> None:
    changing = {name: 0 for name, spec in SPECS.items() if not spec.via_sql}
    for golden in GOLDENS:
        if golden.path.parent.name in changing and golden.output != golden.input:
            changing[golden.path.parent.name] += 1
    assert {name: count for name, count in changing.items() if count < 3} == {}


def test_there_are_no_change_cases() -> None:
    assert any(golden.output == golden.input for golden in GOLDENS)
