"""``--python PATH``: verify and plan run the chain under the project's interpreter, idempotify not installed there.

The project's environment is a virtualenv made here (no pip, so nothing but
what each test drops into its site-packages): ``myapp_only_here``, which its
env.py and a revision import, is in no other environment. Alembic, SQLAlchemy
and the rest then come from idempotify's. Commands that switch interpreters
replace their process, so they run as subprocesses.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import venv
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

import codemod
from codemod.cli import app
from codemod.interpreter import MINIMUM_PYTHON, MINIMUM_VERSIONS
from tests.bench import write_chain
from tests.conftest import require_dialect
from tests.databases import SERVERS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(codemod.__file__).resolve().parent.parent  # the idempotify under test, for the subprocesses
PROJECT = Path(__file__).parent / "verify_project"
OURS = f"{sys.version_info[0]}.{sys.version_info[1]}"
# The async env.py refused: asyncio.run() inside verify's event loop leaves its coroutine unawaited.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine 'run_async_migrations' was never awaited")

MYAPP = '''"""The application's own module: only the project's environment has it."""

import sqlalchemy as sa

CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s", "ix": "ix_%(table_name)s_%(column_0_name)s"}


class Code(sa.types.TypeDecorator[str]):
    impl = sa.String(12)
    cache_ok = True
'''
R4 = '''"""A column of the application's own type."""

import sqlalchemy as sa
from alembic import op
from myapp_only_here import Code

revision = "r4"
down_revision = "r3"


def upgrade() -> None:
    op.add_column("items", sa.Column("sku", Code()))


def downgrade() -> None:
    op.drop_column("items", "sku")
'''
# What the project has that idempotify's environment has too: the project's must win.
SHADOWING = {"psutil.py": 'FROM = "the project"\n'}
# A package named as idempotify's own (PyPI has a "codemod"): idempotify's still runs.
ANOTHER_CODEMOD = {"codemod/__init__.py": 'raise ImportError("the project\'s own codemod package")\n'}
TELLS_PSUTIL = 'print("psutil from", getattr(psutil, "FROM", "idempotify\'s environment"))\n'


def make_venv(directory: Path, files: Mapping[str, str]) -> Path:
    """A virtualenv of the Python running the tests, ``files`` in its site-packages; its python."""
    venv.create(directory, with_pip=False)
    site_packages = directory / "lib" / f"python{OURS}" / "site-packages"
    assert site_packages.is_dir(), list(directory.rglob("site-packages"))
    for name, text in files.items():
        (site_packages / name).parent.mkdir(parents=True, exist_ok=True)
        (site_packages / name).write_text(text, encoding="utf-8")
    return directory / "bin" / "python"


@pytest.fixture(scope="module")
def project_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = {"myapp_only_here.py": MYAPP, **SHADOWING, **ANOTHER_CODEMOD}
    return make_venv(tmp_path_factory.mktemp("venv") / "project-venv", files)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The verify project whose env.py takes its naming convention from ``myapp_only_here``, and whose r4 uses
    its type; rewritten, its originals in ``original/``."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy)
    (copy / "versions" / "r4_sku.py").write_text(R4, encoding="utf-8")
    env = copy / "env.py"
    text = env.read_text(encoding="utf-8")
    start = text.index("target_metadata = sa.MetaData(")
    end = text.index("\n)\n", start) + 3
    imports = "import myapp_only_here\nimport psutil\n\n" + TELLS_PSUTIL
    text = text[:start] + imports + "target_metadata = sa.MetaData(naming_convention=myapp_only_here.CONVENTION)\n"
    env.write_text(text + env.read_text(encoding="utf-8")[end:], encoding="utf-8")
    shutil.copytree(copy / "versions", tmp_path / "original")
    assert CliRunner().invoke(app, ["-q", str(copy / "versions")]).exit_code == 0
    return copy


def idempotify(*arguments: str | Path, **environment: str) -> subprocess.Popen[str]:
    """The command as a user starts it, from idempotify's own environment: ``python -m codemod`` from the
    checkout, so no PYTHONPATH, which the project's interpreter would inherit, points at idempotify."""
    inherited = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return subprocess.Popen(
        [sys.executable, "-m", "codemod", *map(str, arguments)],
        cwd=ROOT,
        env={**inherited, "NO_COLOR": "1", **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*arguments: str | Path) -> tuple[int, str, str]:
    process = idempotify(*arguments)
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, stderr


def verify_command(project: Path, *options: str | Path) -> list[str | Path]:
    original = project.parent / "original"
    return ["verify", project / "versions", "--baseline", original, "--format", "json", *options]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_verify_runs_the_chain_under_the_projects_python(project: Path, project_python: Path, dialect: str) -> None:
    require_dialect(dialect)
    url = ["--url", SERVERS[dialect]] if dialect != "sqlite" else []
    code, stdout, stderr = run(*verify_command(project, "--python", project_python, *url))
    assert code == 0, stdout + stderr
    report = json.loads(stdout)
    found = {revision["revision"]: revision["scenarios"] for revision in report["revisions"]}
    assert list(found) == ["r1", "r2", "r3", "r4"]
    for revision, scenarios in found.items():
        assert {scenario["status"] for scenario in scenarios.values()} <= {"ok", "not checked"}, (revision, scenarios)
        assert scenarios["upgrade"]["status"] == scenarios["re-run"]["status"] == "ok"
    assert "psutil from the project" in stderr
    assert "psutil from idempotify's environment" not in stderr


def test_without_python_the_application_does_not_import(project: Path) -> None:
    result = CliRunner().invoke(app, [str(part) for part in verify_command(project)])
    assert result.exit_code == 2, result.output
    assert "No module named 'myapp_only_here'" in result.stdout


def test_plan_runs_under_the_projects_python(project: Path, project_python: Path, tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "live.db").close()  # a new database: every revision pending
    live = f"sqlite:///{tmp_path / 'live.db'}"
    original = project.parent / "original"
    command: list[str | Path] = ["plan", project / "versions", "--url", live, "--baseline", original]
    code, stdout, stderr = run(*command, "--python", project_python)
    assert code == 0, stdout + stderr
    assert "is at base (no alembic_version rows); 4 revisions pending" in stdout
    assert "r4_sku.py\n  13  op.add_column  run\n  original: runs\n" in stdout, stdout
    without = CliRunner().invoke(app, ["plan", str(project / "versions"), "--url", live])
    assert without.exit_code == 2
    assert "No module named 'myapp_only_here'" in without.stderr


def test_sigterm_under_the_projects_python_still_drops_the_scratch_databases(
    project_python: Path, tmp_path: Path
) -> None:
    """The command replaces its process: the signal a CI runner sends to it reaches verify itself."""
    versions = tmp_path / "versions"
    write_chain(versions, 40)
    private = tmp_path / "tmp"
    private.mkdir()
    process = idempotify("verify", versions, "--python", project_python, TMPDIR=str(private))
    assert process.stderr is not None
    first = process.stderr.readline()
    assert first.startswith("[1/40]"), first + process.stderr.read()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted; the scratch databases were dropped" in stderr
    assert not list(private.glob("idempotify-verify-*"))


def script(directory: Path, body: str) -> Path:
    path = directory / "python"
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)
    return path


NOT_PYTHONS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda directory: directory / "no" / "python", "cannot run it: No such file or directory"),
    "directory": (lambda directory: directory, "cannot run it: Permission denied"),
    "not executable": (
        lambda directory: directory / "python.txt",
        "cannot run it: Permission denied",
    ),
    "a program but not a Python": (lambda directory: script(directory, "exit 3"), "not a Python interpreter"),
}


@pytest.mark.parametrize("kind", NOT_PYTHONS)
def test_a_path_that_is_no_python_exits_2(kind: str, tmp_path: Path) -> None:
    (tmp_path / "python.txt").write_text("print('hi')\n", encoding="utf-8")
    make, message = NOT_PYTHONS[kind]
    path = make(tmp_path)
    result = CliRunner().invoke(app, ["verify", str(tmp_path), "--python", str(path)])
    assert result.exit_code == 2, result.output
    assert f"--python {path}: {message}" in result.stderr


def test_another_python_version_is_refused_with_both_versions(tmp_path: Path) -> None:
    other = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    fake = script(tmp_path, f"echo {other}")
    result = CliRunner().invoke(app, ["verify", str(tmp_path), "--python", str(fake), "--format", "json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error.startswith(f"--python {fake} is Python {other}; idempotify runs on Python {OURS}"), error
    assert f"give a Python {OURS} interpreter, or install idempotify with Python {other}" in error


def other_pythons() -> list[Path]:
    """Interpreters of another minor version found where pyenv and Debian put them."""
    found = [
        *glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python")),
        *glob.glob("/usr/bin/python[23].*"),
        *glob.glob("/usr/local/bin/python[23].*"),
    ]
    versions = {
        path: match[1]
        for path in found
        if (match := re.search(r"(\d+\.\d+)(\.\d+)?(/bin/python|$)", path)) and match[1] != OURS
    }
    return [Path(path) for path in sorted(versions) if os.access(path, os.X_OK)][:2]


@pytest.mark.parametrize("python", other_pythons() or [None], ids=str)
def test_a_real_python_of_another_version_is_refused(python: Path | None, tmp_path: Path) -> None:
    if python is None:
        pytest.skip("no Python of another minor version on this machine")
    result = CliRunner().invoke(app, ["verify", str(tmp_path), "--python", str(python)])
    assert result.exit_code == 2, result.output
    assert re.search(rf"--python {re.escape(str(python))} is Python \d+\.\d+; idempotify runs on", result.stderr)


def test_a_python_whose_extensions_would_not_load_is_refused(tmp_path: Path) -> None:
    """Same version, another build (PyPy, free-threaded): libcst's compiled parser would not load there."""
    fake = script(tmp_path, f"echo {OURS}; echo .pypy{OURS.replace('.', '')}-pp73-x86_64-linux-gnu.so")
    result = CliRunner().invoke(app, ["verify", str(tmp_path), "--python", str(fake)])
    assert result.exit_code == 2, result.output
    assert f"--python {fake} is another kind of Python {OURS}: its compiled extensions end in .pypy" in result.stderr


BROKEN: dict[str, tuple[dict[str, str], str]] = {
    # The project's copy of one of idempotify's own libraries, too old for it: idempotify cannot start.
    "its typer": (
        {"typer/__init__.py": 'raise ImportError("this typer is too old")\n'},
        "idempotify does not import there (ImportError: this typer is too old)",
    ),
    "an old alembic": (
        {"alembic/__init__.py": '__version__ = "1.13.1"\n'},
        "its alembic is 1.13.1 (",
    ),
    "a broken sqlalchemy": (
        {"sqlalchemy/__init__.py": 'raise RuntimeError("half installed")\n'},
        "sqlalchemy does not import there (RuntimeError: half installed)",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_project_environment_idempotify_cannot_run_in_exits_2(case: str, tmp_path: Path) -> None:
    files, message = BROKEN[case]
    python = make_venv(tmp_path / "venv", files)
    code, stdout, stderr = run("verify", tmp_path, "--python", python)
    assert code == 2, stdout + stderr
    assert f"--python {python}: {message}" in stderr
    assert "Traceback" not in stderr


def test_the_minimum_versions_are_pyprojects() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    dependencies = [re.split(r"\s*[#;]", dependency)[0] for dependency in project["dependencies"]]
    for name, minimum in MINIMUM_VERSIONS.items():
        assert f"{name}>={'.'.join(map(str, minimum))}" in dependencies
    assert project["requires-python"] == f">={'.'.join(map(str, MINIMUM_PYTHON))}"


def test_only_idempotifys_own_locations_are_added() -> None:
    """The project's interpreter keeps its own standard library: idempotify adds its package and site-packages."""
    from codemod.interpreter import own_locations  # noqa: PLC0415

    locations = own_locations()
    assert locations[0] == str(ROOT)
    assert not any(Path(location) == Path(sys.base_prefix) / "lib" / f"python{OURS}" for location in locations)
    assert any(location.endswith("site-packages") for location in locations)
