"""``[tool.idempotify]`` settings and finding the versions directories from the Alembic configuration."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from codemod.cli import app
from codemod.config import Config, load_config
from tests.fixtures import FIXTURES, read_golden
from tests.test_hooks import readme_block

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
    return max(len(line) for line in path.read_text(encoding="utf-8").splitlines() if "_idempotify" in line)


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
    versions = project / "migrations" / "versions"
    result = run("--check", versions)
    assert result.exit_code == 0, "excluding every file is a choice, not an error"
    assert f"nothing to do in {versions}: every file below it is excluded by {project / 'pyproject.toml'}" in (
        result.stderr
    )


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
        (
            "line-lenght = 100",
            "unknown key(s) line-lenght; known: exclude, helpers, include, jobs, line-length, naming-convention, "
            "strict",
        ),
        ("line-length = 10", "line-length must be an integer >= 40"),
        ("jobs = 0", "jobs must be an integer >= 1"),
        ("naming-convention = 3", "naming-convention must be module:attribute or a table"),
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


def test_the_readme_shows_every_setting_and_they_load(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(readme_block("toml", "[tool.idempotify]\n"), encoding="utf-8")
    config = load_config(tmp_path)
    assert config.source == tmp_path / "pyproject.toml"
    unset = [setting.name for setting in dataclasses.fields(Config) if getattr(config, setting.name) == setting.default]
    assert unset == [], "a setting the README's example does not show"


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


@pytest.mark.parametrize(
    ("black", "expected"),
    [("line_length = 40", None), ('line-length = "x"', "[tool.black] line-length must be a positive integer")],
)
def test_tool_black_keys_either_spelling_and_bad_values(project: Path, black: str, expected: str | None) -> None:
    (project / "pyproject.toml").write_text(f"[tool.black]\n{black}\n", encoding="utf-8")
    revision = project / "migrations" / "versions" / "4f2a9c1d7e3b_add_updated_at.py"
    result = run(revision)
    if expected is None:
        assert result.exit_code == 0 and longest_line(revision) <= 40
    else:
        assert result.exit_code == 2
        assert f"{project / 'pyproject.toml'}: {expected}" in result.stderr
        assert revision.read_text(encoding="utf-8") == INCIDENT.input


def test_alembic_config_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(DEMO, tmp_path / "demo")
    (tmp_path / "demo" / "alembic.ini").rename(tmp_path / "demo" / "other.ini")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALEMBIC_CONFIG", str(tmp_path / "demo" / "other.ini"))
    result = run("--check")
    assert result.exit_code == 1
    assert "using demo/versions from demo/other.ini" in result.stderr


def test_the_file_that_sets_script_location_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(DEMO / "versions", tmp_path / "db" / "versions")
    (tmp_path / "alembic.ini").write_text("[alembic]\nsqlalchemy.url = sqlite://\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[tool.alembic]\nscript_location = "%(here)s/db"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert "using db/versions from pyproject.toml" in run("--check").stderr


def test_verify_reads_several_version_locations_and_imports_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "demo"
    shutil.copytree(DEMO, project)
    (project / "other").mkdir()
    (project / "versions" / "4d1f7b2c3e44_drop_legacy_score.py").rename(project / "other" / "4d1f7b2c3e44.py")
    ini = project / "alembic.ini"
    ini.write_text(
        ini.read_text(encoding="utf-8").replace(
            "path_separator = os\n", "path_separator = space\nversion_locations = %(here)s/versions %(here)s/other\n"
        ),
        encoding="utf-8",
    )
    (project / "conventions.py").write_text('NAMES = {"ix": "ix_%(column_0_label)s"}\n', encoding="utf-8")
    settings(project, 'naming-convention = "conventions:NAMES"')
    monkeypatch.chdir(project)
    monkeypatch.setattr("sys.path", [entry for entry in __import__("sys").path if entry not in ("", str(project))])
    assert run().exit_code == 0
    result = run("verify", "--format", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert [revision["path"] for revision in document["revisions"]][-1] == "other/4d1f7b2c3e44.py"


def test_verify_errors_in_machine_formats(tmp_path: Path) -> None:
    document = json.loads(run("verify", tmp_path / "missing", "--format", "json").stdout)
    assert document == {"ok": False, "error": f"{tmp_path / 'missing'}: no such directory"}
    github = run("verify", tmp_path / "missing", "--format", "github")
    assert github.exit_code == 2
    assert github.stdout.startswith("::error title=idempotify::")


def test_line_length_setting_keeps_the_black_string_normalisation(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        "[tool.black]\nskip-string-normalization = true\n[tool.idempotify]\nline-length = 100\n", encoding="utf-8"
    )
    revision = project / "migrations" / "versions" / "4f2a9c1d7e3b_add_updated_at.py"
    assert run(revision).exit_code == 0
    guard = "if _idempotify('op.add_column: no column', 'player_wellness_state', 'updated_at'):"
    assert guard in revision.read_text("utf-8")
