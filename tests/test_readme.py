"""The README cannot drift from the code: its op table is the spec table, and every command in it is run.

Each ```console block runs in a fresh copy of the demo project (``fixtures/demo``,
plus ``old_versions/``, a copy of its revisions from before idempotify, and a
``myapp.models`` module with a naming convention), command after command.
Output shown under a command must be exactly the output (``...`` ends a
partial one). A block whose first line names a file (``# pytest.ini``) is written into
the sandbox for the console blocks after it in its section. A command exits 0;
``--check``, ``--diff`` and ``plan`` may exit 1; ``# exits N`` after a command says
it must exit N.
Commands against PostgreSQL or MariaDB run where the server answers (always
under CI). The two commands of "The two commands" are the Makefile's:
``make demo`` is run here, ``make test`` is what CI runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from codemod.specs import SPECS
from tests.conftest import require_dialect

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
MODELS = 'import sqlalchemy as sa\n\nmetadata = sa.MetaData(naming_convention={"ix": "ix_%(column_0_label)s"})\n'


@dataclass
class Command:
    line: int
    text: str
    output: list[str] = field(default_factory=list)
    exits: int | None = None  # from a `# exits N` comment: the exit code the command must have


def fenced_blocks() -> list[tuple[str, int, list[str]]]:
    """Every fenced block of the README: (language, line of its first content line, its lines)."""
    blocks: list[tuple[str, int, list[str]]] = []
    current: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```") and current is None:
            current = (line[3:].strip(), number + 1, [])
        elif line == "```" and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, "an unclosed fence in README.md"
    return blocks


def console_blocks() -> list[list[Command]]:
    blocks: list[list[Command]] = []
    for language, first, lines in fenced_blocks():
        if language != "console":
            continue
        block: list[Command] = []
        for number, line in enumerate(lines, first):
            if line.startswith("$ "):
                text, _, comment = line[2:].partition("  #")
                exits = re.fullmatch(r"\s*exits (\d+)\s*", comment)
                block.append(Command(number, text.strip(), exits=int(exits[1]) if exits else None))
            else:
                assert block, f"README.md:{number}: output before any command"
                block[-1].output.append(line)
        blocks.append(block)
    return blocks


BLOCKS = console_blocks()


def test_op_table_matches_the_specs() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| op | forms | runs only when |") :].split("\n\n", 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    documented = {cells[0].strip(): (cells[1].strip(), cells[2].strip()) for cells in rows}
    expected = {spec.name: (spec.forms, spec.description) for spec in SPECS.values()}
    assert documented == expected


def sandbox(directory: Path) -> Path:
    project = directory / "demo"
    shutil.copytree(ROOT / "fixtures" / "demo", project)
    shutil.copytree(project / "versions", project / "old_versions")
    (project / "myapp").mkdir()
    (project / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    (project / "myapp" / "models.py").write_text(MODELS, encoding="utf-8")
    return project


def dialect_of(command: str) -> str | None:
    found = re.search(r"--url (postgresql|mysql)", command)
    return None if found is None else {"postgresql": "postgresql", "mysql": "mariadb"}[found[1]]


def files_shown_before(line: int) -> dict[str, str]:
    """The files shown in the section of the console block at ``line``, before it: each a block whose first
    line names it (``# pytest.ini``), for its commands to find in the sandbox."""
    text = README.read_text(encoding="utf-8").splitlines()
    headings = [number for number, heading in enumerate(text[:line], 1) if heading.startswith("## ")]
    section = max(headings, default=0)
    return {
        lines[0][2:]: "\n".join(lines) + "\n"
        for _, first, lines in fenced_blocks()
        if section < first < line and re.fullmatch(r"# [\w./-]+\.(py|ini|toml|cfg)", lines[0])
    }


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{block[0].line}" for block in BLOCKS])
def test_console_block(block: list[Command], tmp_path: Path) -> None:
    project = sandbox(tmp_path)
    for name, text in files_shown_before(block[0].line).items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(project),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    for command in block:
        dialect = dialect_of(command.text)
        if dialect is not None:
            require_dialect(dialect)
        result = subprocess.run(
            shlex.split(command.text),
            cwd=project,
            # pytest pads its lines to the terminal: 80 columns, as the README shows them.
            env={**environment, "COLUMNS": "80"} if command.text.startswith("pytest") else environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        where = f"README.md:{command.line}: `{command.text}`"
        may_find = ("--check", "--diff", "idempotify plan")  # exit 1: changes needed, or a deploy that fails
        allowed = {0, 1} if any(option in command.text for option in may_find) else {0}
        if command.exits is not None:
            allowed = {command.exits}
        assert result.returncode in allowed, f"{where} exited {result.returncode}:\n{result.stdout}"
        if command.output:
            actual = result.stdout.splitlines()
            if command.output[-1] == "...":
                expected = command.output[:-1]
                assert actual[: len(expected)] == expected, f"{where} printed:\n{result.stdout}"
            else:
                assert actual == command.output, f"{where} printed:\n{result.stdout}"


def test_every_command_in_the_readme_is_in_a_console_block() -> None:
    """Commands shown elsewhere (plain blocks) would escape the test above; only the two commands may."""
    commands = [
        line.split("#")[0].strip()
        for language, _, lines in fenced_blocks()
        if language in ("", "sh", "bash", "shell")
        for line in lines
        if re.match(r"(idempotify|make|alembic|pre-commit|python)\b", line)
    ]
    assert commands == ["make demo", "make test"]


def test_the_two_commands(tmp_path: Path) -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().endswith("make test"), ".ci/run runs the README's test command"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\ndemo: install\n\tbash tests/demo.sh\n" in makefile
    demo = subprocess.run(
        ["bash", str(ROOT / "tests" / "demo.sh")], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Done: every re-run of the rewritten chain went through" in demo.stdout
