"""The README cannot drift from the code: its op table is the spec table."""

from __future__ import annotations

from pathlib import Path

from codemod.specs import SPECS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_op_table_matches_the_specs() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| op | forms | runs only when |") :].split("\n\n", 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    documented = {cells[0].strip(): (cells[1].strip(), cells[2].strip()) for cells in rows}
    expected = {spec.name: (spec.forms, spec.description) for spec in SPECS.values()}
    assert documented == expected
