"""Output for people and machines: JSON, GitHub annotations, verbose and quiet, colour, progress."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from codemod import __version__
from codemod.cli import app
from tests.fixtures import FIXTURES, read_golden, sample_versions

INCIDENT = read_golden(FIXTURES / "add_column" / "incident.py")
ESCAPE = "\x1b["


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], env=env)


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    directory = sample_versions(tmp_path)
    (directory / "broken.py").write_text('revision = "b"\n\ndef upgrade():\n    op.drop_table(\n', encoding="utf-8")
    return directory


def test_json_report(versions: Path) -> None:
    result = run("--check", "--format", "json", versions)
    assert result.exit_code == 2
    assert result.stderr == "", "JSON mode keeps stderr clean"
    document = json.loads(result.stdout)
    assert document["version"] == __version__ and document["exit_code"] == 2
    files = {Path(entry["path"]).name: entry for entry in document["files"]}
    assert files["4f2a9c1d7e3b_add_updated_at.py"]["status"] == "changed"
    assert files["broken.py"]["status"] == "failed" and files["broken.py"]["message"].startswith("line 4")
    unguarded = [op for op in files["4c5d6e7f8a9b_alter.py"]["ops"] if op["outcome"] == "left unguarded"]
    assert unguarded and all(op["line"] > 0 and op["reason"] for op in unguarded)
    assert document["totals"]["files"] == {"changed": 1, "unchanged": 1, "skipped": 0, "failed": 1}


def test_json_report_carries_the_diff(versions: Path) -> None:
    (versions / "broken.py").unlink()
    document = json.loads(run("--diff", "--format", "json", versions).stdout)
    (changed,) = [entry for entry in document["files"] if entry["status"] == "changed"]
    assert changed["diff"].startswith("---") and "+    if _idempotify(" in changed["diff"]


def test_github_annotations(versions: Path) -> None:
    result = run("--check", "--format", "github", versions)
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    broken = versions / "broken.py"
    assert any(line.startswith(f"::error file={broken},line=4,title=idempotify%3A cannot process::") for line in lines)
    incident = versions / "4f2a9c1d7e3b_add_updated_at.py"
    assert any(line.startswith(f"::error file={incident},line=") and "op(s) to guard" in line for line in lines)
    alter = versions / "4c5d6e7f8a9b_alter.py"
    assert any(line.startswith(f"::warning file={alter},line=") for line in lines)
    assert "idempotify: files:" in result.stderr


def test_verbose_lists_every_op_and_quiet_only_errors(versions: Path) -> None:
    (versions / "broken.py").unlink()
    (versions / "env.py").write_text("from alembic import context\n", encoding="utf-8")
    verbose = run("--check", "-v", versions)
    assert f"{versions / '4f2a9c1d7e3b_add_updated_at.py'}:" in verbose.stderr
    assert ": guarded: op.add_column" in verbose.stderr
    assert f"skipped {versions / 'env.py'}" in verbose.stderr
    default = run("--check", versions)
    assert ": guarded:" not in default.stderr and f"skipped {versions / 'env.py'}" not in default.stderr
    quiet = run("--check", "--quiet", versions)
    assert quiet.exit_code == 1 and quiet.stderr == "" and quiet.stdout == ""


def test_colour_on_a_terminal_only_and_never_with_no_color(versions: Path) -> None:
    (versions / "broken.py").unlink()
    plain = run("--diff", versions)
    assert ESCAPE not in plain.stdout + plain.stderr, "not a terminal: plain text"
    coloured = run("--diff", versions, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert ESCAPE in coloured.stdout and ESCAPE in coloured.stderr
    assert "+    if _idempotify(" in _strip(coloured.stdout)
    no_color = run("--diff", versions, env={"FORCE_COLOR": "1", "NO_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert ESCAPE not in no_color.stdout + no_color.stderr, "NO_COLOR: no escape codes, even on a terminal"


def _strip(text: str) -> str:
    import re  # noqa: PLC0415

    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)


def test_progress_bar_on_a_terminal_for_long_runs(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    for index in range(60):
        (versions / f"r{index:03d}.py").write_text(INCIDENT.input.replace("4f2a9c1d7e3b", f"r{index:03d}"), "utf-8")
    hidden_cursor = "\x1b[?25l"
    assert hidden_cursor not in run("--check", "--no-cache", versions).stderr
    terminal = run("--check", "--no-cache", versions, env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert hidden_cursor in terminal.stderr, "rich draws a live progress bar"
    short = run("--check", "--no-cache", versions / "r000.py", env={"FORCE_COLOR": "1"})
    assert hidden_cursor not in short.stderr


def test_quiet_still_names_what_fails_strict(versions: Path) -> None:
    (versions / "broken.py").unlink()
    result = run("--check", "-q", "--strict", versions / "4c5d6e7f8a9b_alter.py")
    assert result.exit_code == 1
    assert ": left unguarded: op.create_table_comment" in result.stderr


def test_reported_lines_are_those_of_the_rewritten_file(tmp_path: Path) -> None:
    path = tmp_path / "0001_mixed.py"
    source = INCIDENT.input.replace(
        "def downgrade():", 'def downgrade():\n    op.execute("UPDATE players SET score = 0")'
    )
    path.write_text(source, encoding="utf-8")
    result = run(path)
    (line,) = [int(text.split(":")[1]) for text in result.stderr.splitlines() if text.startswith(f"{path}:")]
    assert path.read_text(encoding="utf-8").splitlines()[line - 1].strip().startswith("op.execute(")


def test_github_strict_and_stale_helper_blocks(versions: Path) -> None:
    (versions / "broken.py").unlink()
    strict = run("--check", "--strict", "--format", "github", versions / "4c5d6e7f8a9b_alter.py")
    assert strict.exit_code == 1 and "::error file=" in strict.stdout and "::warning" not in strict.stdout
    incident = versions / "4f2a9c1d7e3b_add_updated_at.py"
    assert run(incident).exit_code == 0
    stale = run("--check", "--line-length", "60", "--format", "github", incident)
    assert "generated helper block is out of date" in stale.stdout


def test_settings_errors_in_machine_formats(versions: Path) -> None:
    (versions.parent / "pyproject.toml").write_text("[tool.idempotify]\nbogus = 1\n", encoding="utf-8")
    document = json.loads(run("--check", "--format", "json", versions).stdout)
    assert document["exit_code"] == 2 and "unknown key(s) bogus" in document["errors"][0]
    github = run("--check", "--format", "github", versions)
    assert github.stdout.startswith("::error title=idempotify::")


def test_an_unlistable_directory_is_an_error_and_the_rest_goes_on(
    versions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (versions / "broken.py").unlink()
    (versions / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = run("--check", versions)
    assert result.exit_code == 2
    assert f"error: {versions / 'locked'}: cannot list: Permission denied" in result.stderr
    assert "Would rewrite" in result.stderr


def test_an_unexpected_failure_exits_2_not_1(versions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a worker died")

    monkeypatch.setattr("codemod.cli.process_files", crash)
    result = run("--check", versions)
    assert result.exit_code == 2
    assert "internal error" in result.stderr and "a worker died" in result.stderr


def test_an_op_inside_another_ops_arguments_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "0001_nested.py"
    path.write_text(
        'from alembic import op\nimport sqlalchemy as sa\n\nrevision = "n1"\ndown_revision = None\n\n\n'
        'def upgrade():\n    op.bulk_insert(op.create_table("t", sa.Column("id", sa.Integer)), [{"id": 1}])\n',
        encoding="utf-8",
    )
    result = run("--check", path)
    assert f"{path}:9: left unguarded: op.create_table: not a statement of its own" in result.stderr


def test_the_summary_says_the_outcome_of_each_reason() -> None:
    """The counts under the summary line hold ops already safe and ops left unguarded: each says which."""
    from codemod.output import reason_counts  # noqa: PLC0415
    from codemod.results import FileResult, OpReport, Outcome, Status  # noqa: PLC0415

    reports = [
        OpReport(1, "op.execute", Outcome.ALREADY_SAFE, "its SQL is a query"),
        OpReport(2, "op.execute", Outcome.UNGUARDED, "its SQL changes data"),
        OpReport(3, "op.execute", Outcome.UNGUARDED, "its SQL changes data"),
        OpReport(4, "op.add_column", Outcome.GUARDED),
    ]
    result = FileResult(Path("a.py"), Status.CHANGED, reports=tuple(reports))
    assert reason_counts([result]) == [
        ("left unguarded: its SQL changes data", 2),
        ("already safe: its SQL is a query", 1),
    ]
