"""One shared helpers module (``[tool.idempotify] helpers`` / ``--helpers``): what it holds, where it may go, and
that ``alembic upgrade head`` (the real script, in its own process) runs migrations that import from it."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from codemod.cache import ResultCache
from codemod.cli import app
from codemod.formatting import Style
from codemod.guards import helper_names
from codemod.runner import process_files, rewrite_source
from codemod.shared_helpers import HEADER, imported_helpers_module
from tests.conftest import require_dialect
from tests.databases import DIALECTS, SERVERS

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo"
BIN = Path(sys.executable).parent
MODULE = "myapp.migration_helpers"
ADD_COLUMN = "versions/3c9e6a0b1d33_add_updated_at.py"
BATCH = "versions/4d1f7b2c3e44_drop_legacy_score.py"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo project (``prepend_sys_path = .``) with a package ``myapp``; the working directory; no PYTHONPATH."""
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder)
    (folder / "myapp").mkdir()
    (folder / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("ALEMBIC_CONFIG", raising=False)
    return folder


@pytest.fixture
def own_myapp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For a command that imports this test's ``myapp`` in-process (plan): no other test's, before or after."""
    monkeypatch.setattr(sys, "path", sys.path[:])
    for name in [name for name in sys.modules if name.partition(".")[0] == "myapp"]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [name for name in sys.modules if name.partition(".")[0] == "myapp"]:
        del sys.modules[name]


def settings(project: Path, helpers: str = MODULE) -> None:
    (project / "pyproject.toml").write_text(f'[tool.idempotify]\nhelpers = "{helpers}"\n', encoding="utf-8")


def tree(project: Path) -> dict[str, bytes]:
    """Every file of the project a rewrite may touch: the revisions and the helpers module."""
    files = sorted([*project.glob("versions/*.py"), *project.glob("myapp/*.py")])
    return {path.relative_to(project).as_posix(): path.read_bytes() for path in files}


def module_file(project: Path) -> Path:
    return project / "myapp" / "migration_helpers.py"


def defined(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_bytes()).body if isinstance(node, ast.FunctionDef)}


def without_prepend_sys_path(project: Path) -> None:
    ini = project / "alembic.ini"
    lines = ini.read_text(encoding="utf-8").splitlines(keepends=True)
    ini.write_text("".join(line for line in lines if not line.startswith("prepend_sys_path")), encoding="utf-8")


def write_url(project: Path, url: str) -> None:
    ini = project / "alembic.ini"
    lines = ini.read_text(encoding="utf-8").splitlines(keepends=True)
    url = url.replace("%", "%%")
    ini.write_text(
        "".join(f"sqlalchemy.url = {url}\n" if line.startswith("sqlalchemy.url") else line for line in lines),
        encoding="utf-8",
    )


def alembic(project: Path, *args: str) -> str:
    """``alembic ARGS`` as a deploy runs it: the console script, in the project, with no PYTHONPATH."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "ALEMBIC_CONFIG")}
    result = subprocess.run(
        [str(BIN / "alembic"), *args], cwd=project, env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"alembic {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stderr


def test_the_migrations_import_their_helpers_from_one_module(project: Path) -> None:
    settings(project)
    result = run()
    assert result.exit_code == 0, result.stderr
    assert f"Created {Path('myapp', 'migration_helpers.py')}: the helpers the migrations import" in result.stderr
    module = module_file(project)
    assert module.read_text(encoding="utf-8").startswith(HEADER)
    for revision in sorted(project.glob("versions/*.py")):
        source = revision.read_text(encoding="utf-8")
        assert "def _idempotify" not in source, f"{revision.name} still holds a helper block"
        assert f"from {MODULE} import _idempotify" in source, revision.name
    assert "from myapp.migration_helpers import _idempotify, _idempotify_recover_batch\n" in (
        (project / BATCH).read_text(encoding="utf-8")
    )
    # the batch revision's guards look up an index, through the finder that only the module holds
    assert {"_idempotify", "_idempotify_index", "_idempotify_recover_batch"} <= defined(module)


def test_the_diff_holds_only_guard_lines_and_one_import(project: Path) -> None:
    settings(project)
    result = run("--diff", ADD_COLUMN)
    assert result.exit_code == 1, result.stderr
    start, module = result.stdout.index(f"--- {ADD_COLUMN}"), result.stdout.index("--- /dev/null")
    assert start < module, "the module's diff comes after the migrations'"
    migration = result.stdout[start:module]
    assert [line for line in migration.splitlines() if line.startswith("+") and not line.startswith("+++")] == [
        "+from myapp.migration_helpers import _idempotify",
        '+    if _idempotify("op.add_column: no column", "player_wellness_state", "updated_at"):',
        "+        op.add_column('player_wellness_state', sa.Column('updated_at', sa.DateTime(), nullable=True))",
        '+    if _idempotify("op.drop_column: column", "player_wellness_state", "updated_at"):',
        "+        op.drop_column('player_wellness_state', 'updated_at')",
    ]
    assert result.stdout[module:].startswith(f"--- /dev/null\n+++ {Path('myapp', 'migration_helpers.py')}\n")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_alembic_upgrade_head_runs_them_and_runs_them_again(
    project: Path, dialect: str, scratch: Callable[[str], AbstractContextManager[sa.Engine]]
) -> None:
    settings(project)
    assert run().exit_code == 0
    local = sa.create_engine(f"sqlite:///{project / 'deploy.db'}")
    with scratch(dialect) if dialect != "sqlite" else nullcontext(local) as engine:
        write_url(project, engine.url.render_as_string(hide_password=False))
        alembic(project, "upgrade", "head")
        alembic(project, "stamp", "2b7d4c8e0a22")  # the last two revisions' version bumps were lost
        log = alembic(project, "upgrade", "head")
        assert "skipped op.add_column(player_wellness_state.updated_at): column exists" in log
        assert "index is absent" in log  # the batch revision's drop_index, checked by the module's index finder
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "4d1f7b2c3e44"
            columns = {column["name"] for column in sa.inspect(connection).get_columns("player_wellness_state")}
        assert "updated_at" in columns and "legacy_score" not in columns
        alembic(project, "downgrade", "base")
    local.dispose()


def test_a_module_alembic_cannot_import_is_refused(project: Path) -> None:
    without_prepend_sys_path(project)
    settings(project)
    before = tree(project)
    result = run()
    assert result.exit_code == 2
    assert f"helpers module {MODULE} cannot be imported the way Alembic imports the migrations" in result.stderr
    assert "sets no prepend_sys_path and PYTHONPATH is not set" in result.stderr
    assert tree(project) == before and not module_file(project).exists()


def test_the_working_directory_counts_when_pythonpath_names_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_prepend_sys_path(project)
    monkeypatch.setenv("PYTHONPATH", str(project))
    result = run("--helpers", MODULE)
    assert result.exit_code == 0, result.stderr
    assert module_file(project).is_file()


def test_a_package_not_on_alembics_path_is_refused(project: Path) -> None:
    before = tree(project)
    result = run("--helpers", "elsewhere.migration_helpers")
    assert result.exit_code == 2
    assert "cannot be imported the way Alembic imports the migrations: no package elsewhere" in result.stderr
    assert "searched prepend_sys_path of alembic.ini (.), then PYTHONPATH (not set)" in result.stderr
    assert tree(project) == before


def test_a_module_idempotify_did_not_write_is_left_alone(project: Path) -> None:
    module_file(project).write_text("def mine():\n    pass\n", encoding="utf-8")
    before = tree(project)
    result = run("--helpers", MODULE)
    assert result.exit_code == 2
    assert "exists and idempotify did not write it" in result.stderr
    assert tree(project) == before


def test_a_module_in_a_versions_directory_is_refused(project: Path) -> None:
    result = run("--helpers", "versions.migration_helpers")
    assert result.exit_code == 2
    assert f"{Path('versions', 'migration_helpers.py')} is in a versions directory" in result.stderr
    assert not (project / "versions" / "migration_helpers.py").exists()


def test_not_a_module_name(project: Path) -> None:
    bad = run("--helpers", "my-app.helpers")
    assert bad.exit_code == 2 and "--helpers 'my-app.helpers' is not a module name" in bad.stderr
    settings(project, "3 helpers")
    result = run()
    assert result.exit_code == 2
    assert "[tool.idempotify] helpers must be a module name (package.module)" in result.stderr


def test_a_second_run_changes_nothing(project: Path) -> None:
    settings(project)
    assert run().exit_code == 0
    rewritten = tree(project)
    result = run("--check")
    assert result.exit_code == 0, result.stderr
    assert run().exit_code == 0
    assert tree(project) == rewritten


def test_switching_between_a_block_per_file_and_the_module(project: Path, tmp_path: Path) -> None:
    inline = tmp_path / "inline"
    shutil.copytree(DEMO / "versions", inline)
    assert run(inline).exit_code == 0
    settings(project)
    assert run().exit_code == 0
    shared = tree(project)
    (project / "pyproject.toml").unlink()
    assert run().exit_code == 0
    for revision in inline.glob("*.py"):  # each file holds its block again, and imports nothing from the module
        assert (project / "versions" / revision.name).read_bytes() == revision.read_bytes()
    settings(project)
    result = run()
    assert result.exit_code == 0, result.stderr
    assert tree(project) == shared


def test_the_module_grows_and_never_loses_a_helper(project: Path) -> None:
    settings(project)
    assert run(ADD_COLUMN).exit_code == 0
    assert defined(module_file(project)) == {"_idempotify", "_idempotify_drift", "_idempotify_guarded_op"}
    result = run(BATCH)
    assert result.exit_code == 0, result.stderr
    assert f"Rewrote {Path('myapp', 'migration_helpers.py')}" in result.stderr
    grown = defined(module_file(project))
    assert {"_idempotify", "_idempotify_index", "_idempotify_recover_batch"} <= grown
    result = run(ADD_COLUMN)  # one file needs less: the others still need what the module holds
    assert result.exit_code == 0 and "migration_helpers" not in result.stderr
    assert defined(module_file(project)) == grown


def test_check_writes_nothing(project: Path) -> None:
    settings(project)
    before = tree(project)
    result = run("--check")
    assert result.exit_code == 1
    assert f"Would create {Path('myapp', 'migration_helpers.py')}" in result.stderr
    assert tree(project) == before and not module_file(project).exists()


def test_the_diff_applies_with_git_apply(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings(project)
    subprocess.run(["git", "init", "-q", "."], cwd=project, check=True)
    result = run("--diff")
    assert result.exit_code == 1
    (tmp_path / "shared.patch").write_text(result.stdout, encoding="utf-8")
    subprocess.run(["git", "apply", "-p0", str(tmp_path / "shared.patch")], cwd=project, check=True)
    applied = tree(project)
    rewritten = tmp_path / "rewritten"
    shutil.copytree(project, rewritten, ignore=shutil.ignore_patterns(".git"))
    monkeypatch.chdir(rewritten)
    assert run().exit_code == 0
    assert tree(rewritten) == applied
    monkeypatch.chdir(project)
    assert run("--check").exit_code == 0


def test_the_cache_keys_on_the_setting(tmp_path: Path, project: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    revision = project / ADD_COLUMN
    (inline,) = process_files([(revision, Style())], cache=cache)
    (shared,) = process_files([(revision, Style(helpers=MODULE))], cache=cache)
    assert inline.rewritten is not None and shared.rewritten is not None
    assert b"def _idempotify" in inline.rewritten and inline.helpers == ()
    assert b"from myapp.migration_helpers import _idempotify\n" in shared.rewritten
    assert shared.helpers == ("_idempotify", "_idempotify_drift")  # the drift check of its add_column
    (warm,) = process_files([(revision, Style(helpers=MODULE))], cache=cache)
    assert warm == shared


def test_a_warm_check_still_knows_what_the_module_needs(project: Path) -> None:
    settings(project)
    assert run().exit_code == 0  # fills the cache
    module_file(project).unlink()
    result = run("--check")
    assert result.exit_code == 1
    assert f"Would create {Path('myapp', 'migration_helpers.py')}" in result.stderr


def test_the_module_is_self_contained(project: Path) -> None:
    settings(project)
    assert run("--helpers", MODULE).exit_code == 0
    module = ast.parse(module_file(project).read_bytes())
    assert all(isinstance(node, ast.FunctionDef) for node in module.body)
    assert defined(module_file(project)) <= set(helper_names())
    allowed = ("sqlalchemy", "alembic", *sys.stdlib_module_names)
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] in allowed for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] in allowed
    # -I: no site-packages, no PYTHONPATH; importing the module needs nothing (its functions import what they use)
    code = f"import sys; sys.path.insert(0, '.'); import {MODULE}"
    imported = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=project, capture_output=True, text=True, check=False
    )
    assert imported.returncode == 0, imported.stderr


def test_a_migration_that_imports_its_helpers_is_recognised_as_rewritten(project: Path) -> None:
    """What plan goes by: such a file is already rewritten, and is rewritten again with the same module."""
    settings(project)
    assert run().exit_code == 0
    source = (project / ADD_COLUMN).read_text(encoding="utf-8")
    assert imported_helpers_module(source) == MODULE
    assert imported_helpers_module((DEMO / ADD_COLUMN).read_text(encoding="utf-8")) is None


def test_blacks_result_is_stable(project: Path) -> None:
    settings(project)
    assert run().exit_code == 0
    formatted = subprocess.run([str(BIN / "black"), "-q", "."], cwd=project, check=False)
    assert formatted.returncode == 0
    result = run("--check")
    assert result.exit_code == 0, result.stderr


def test_github_and_json_name_the_module(project: Path) -> None:
    settings(project)
    github = run("--check", "--format", "github")
    assert github.exit_code == 1
    assert "::error file=myapp/migration_helpers.py,title=idempotify%3A helpers module out of date::" in github.stdout
    document = json.loads(run("--diff", "--format", "json").stdout)
    (module,) = [entry for entry in document["files"] if entry["path"] == str(Path("myapp", "migration_helpers.py"))]
    assert module["status"] == "changed" and module["diff"].startswith("--- /dev/null\n")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.usefixtures("own_myapp")
def test_plan_takes_a_chain_that_imports_its_helpers_as_rewritten(
    project: Path,
    dialect: str,
    tmp_path: Path,
    scratch: Callable[[str], AbstractContextManager[sa.Engine]],
) -> None:
    local = sa.create_engine(f"sqlite:///{tmp_path / 'live.db'}")
    with scratch(dialect) if dialect != "sqlite" else nullcontext(local) as engine:
        url = engine.url.render_as_string(hide_password=False)
        write_url(project, url)
        alembic(project, "upgrade", "2b7d4c8e0a22")
        with engine.begin() as connection:  # the post-mortem's column, added by hand ahead of its revision
            connection.exec_driver_sql("ALTER TABLE player_wellness_state ADD COLUMN updated_at VARCHAR(20)")
        shutil.copytree(project / "versions", tmp_path / "old_versions")
        assert run("--helpers", MODULE).exit_code == 0
        result = run("plan", "versions", "--url", url, "--format", "json", "--baseline", tmp_path / "old_versions")
        report = json.loads(result.stdout)
        added = next(found for found in report["revisions"] if found["revision"] == "3c9e6a0b1d33")
        assert added["rewritten_in_memory"] is False, "the file on disk, which imports the module, was not run"
        assert [op["action"] for op in added["ops"]] == ["skip (exists)"]
        assert added["original"]["status"] == "fails"
    local.dispose()


@pytest.mark.usefixtures("own_myapp")
@pytest.mark.parametrize("dialect", DIALECTS)
def test_verify_proves_a_chain_that_imports_its_helpers(project: Path, dialect: str, tmp_path: Path) -> None:
    if dialect != "sqlite":
        require_dialect(dialect)
    shutil.copytree(project / "versions", tmp_path / "old_versions")
    assert run("--helpers", MODULE).exit_code == 0
    server = ["--url", SERVERS[dialect]] if dialect != "sqlite" else []
    result = run("verify", "versions", "--baseline", tmp_path / "old_versions", *server)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "all 4 revisions hold" in result.stdout


def test_a_long_import_is_wrapped_as_black_does_and_line_endings_are_kept() -> None:
    source = (DEMO / "versions" / "2b7d4c8e0a22_wellness_state.py").read_bytes().replace(b"\n", b"\r\n")
    style = Style(line_length=40, helpers="myproject.database.migration_helpers")
    needed: set[str] = set()
    rewritten, _ = rewrite_source(source, style, needed)
    wrapped = (
        b"from myproject.database.migration_helpers import (\r\n    _idempotify,\r\n    _idempotify_table,\r\n)\r\n"
    )
    assert wrapped in rewritten
    assert b"\n" not in rewritten.replace(b"\r\n", b"")
    assert {"_idempotify", "_idempotify_table", "_idempotify_row", "_idempotify_index"} <= needed
    assert rewrite_source(rewritten, style)[0] == rewritten
