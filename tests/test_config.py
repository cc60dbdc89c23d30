"""``[tool.idempotify]`` settings and finding the versions directories from the Alembic configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from codemod.cli import app
from tests.fixtures import FIXTURES, read_golden

INCIDENT = read_golden(FIXTURES / "add_column" / "incident.py")
UNGUARDED = read_golden(FIXTURES / "no_change" / "unsupported_ops.py")
DEMO = FIXTURES / "demo"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project: pyproject.toml (filled in by each test) and versions/ with the incident migration."""
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions / "4f2a9c1d7e3b_add_updated_at.py").write_text(INCIDENT.input, encoding="utf-8")
    return tmp_path


def settings(project: Path, body: str) -> None:
    (project / "pyproject.toml").write_text(f"[tool.idempotify]\n{body}\n", encoding="utf-8")


def longest_line(path: Path) -> int:
    return max(len(line) for line in path.read_text(encoding="utf-8").splitlines() if "_idempotify_" in line)


def test_line_length_from_settings_and_the_flag_overrides_it(project: Path) -> None:
    settings(project, "line-length = 40")
    revision = project / "migrations" / "versions" / "4f2a9c1d7e3b_add_updated_at.py"
    assert run(revision).exit_code == 0
    assert longest_line(revision) <= 40
    revision.write_text(INCIDENT.input, encoding="utf-8")
    assert run("--line-length", "120", revision).exit_code == 0
    assert longest_line(revision) > 40


def test_settings_are_found_from_a_subdirectory_path(project: Path) -> None:
    settings(project, 'exclude = ["migrations/versions/*"]')
    result = run("--check", project / "migrations" / "versions")
    assert result.exit_code == 2, "every file excluded: the directory has no revision files left"
    assert "no Alembic revision files below it" in result.stderr


def test_exclude_applies_to_files_named_on_the_command_line(project: Path) -> None:
    settings(project, 'exclude = ["*_add_updated_at.py"]')
    revision = project / "migrations" / "versions" / "4f2a9c1d7e3b_add_updated_at.py"
    result = run("--check", "-v", revision)
    assert result.exit_code == 0, result.stderr
    assert f"excluded {revision}" in result.stderr


def test_include_limits_the_files(project: Path) -> None:
    versions = project / "migrations" / "versions"
    (versions / "9a9a9a9a9a9a_other.py").write_text(INCIDENT.input.replace("4f2a9c1d7e3b", "9a9a9a9a9a9a"), "utf-8")
    settings(project, 'include = ["*/9a9a*"]')
    result = run("--check", versions)
    assert result.exit_code == 1
    assert "9a9a9a9a9a9a_other.py" in result.stderr and "4f2a9c1d7e3b" not in result.stderr


def test_strict_from_settings_and_no_strict_overrides_it(project: Path) -> None:
    revision = project / "migrations" / "versions" / "4c5d6e7f8a9b_alter.py"
    (project / "migrations" / "versions" / "4f2a9c1d7e3b_add_updated_at.py").unlink()
    revision.write_text(UNGUARDED.input, encoding="utf-8")
    assert run("--check", revision).exit_code == 0
    settings(project, "strict = true")
    assert run("--check", revision).exit_code == 1
    assert run("--check", "--no-strict", revision).exit_code == 0


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("line-lenght = 100", "unknown key(s) line-lenght"),
        ("line-length = 10", "line-length must be an integer >= 40"),
        ('strict = "yes"', "strict must be true or false"),
        ("exclude = [1]", "exclude must be a list of glob patterns"),
        ("[broken", "invalid TOML"),
    ],
)
def test_bad_settings_name_the_file(project: Path, body: str, complaint: str) -> None:
    settings(project, body)
    revision = project / "migrations" / "versions" / "4f2a9c1d7e3b_add_updated_at.py"
    before = revision.read_bytes()
    result = run(revision)
    assert result.exit_code == 2
    assert str(project / "pyproject.toml") in result.stderr and complaint in result.stderr
    assert revision.read_bytes() == before


def test_no_path_uses_the_versions_directory_of_alembic_ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(DEMO, tmp_path / "demo")
    monkeypatch.chdir(tmp_path / "demo")
    result = run("--check")
    assert result.exit_code == 1, result.stderr
    assert "no PATH given; using versions from alembic.ini" in result.stderr
    assert "Would rewrite" in result.stderr and "3c9e6a0b1d33_add_updated_at.py" in result.stderr


def test_no_path_from_a_subdirectory_and_from_tool_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(DEMO / "versions", tmp_path / "db" / "versions")
    (tmp_path / "pyproject.toml").write_text('[tool.alembic]\nscript_location = "%(here)s/db"\n', encoding="utf-8")
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    result = run("--check")
    assert result.exit_code == 1, result.stderr
    assert f"using {tmp_path / 'db' / 'versions'} from {tmp_path / 'pyproject.toml'}" in result.stderr


def test_no_path_and_no_alembic_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("--check")
    assert result.exit_code == 2
    assert "no PATH given, and no alembic.ini or pyproject.toml with [tool.alembic]" in result.stderr


def test_verify_without_versions_uses_alembic_ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(DEMO, tmp_path / "demo")
    monkeypatch.chdir(tmp_path / "demo")
    assert run().exit_code == 0, "rewriting the demo's versions/ in place"
    result = run("verify", "--baseline", DEMO / "versions")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "all 4 revisions hold" in result.stdout
    assert "no PATH given; using versions from alembic.ini" in result.stderr
