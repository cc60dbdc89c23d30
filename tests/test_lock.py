"""The migration lock: concurrent ``alembic upgrade head`` processes run each revision once; ``idempotify lock-env``.

The project (``tests/lock_project``) has a chain of four revisions that each
take half a second and write a row to a log table; one builds an index in
``autocommit_block()`` (CONCURRENTLY on PostgreSQL). Its env.py holds the
recipe of ``codemod/lock.py``, sync or async by the URL's driver.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from codemod.cli import app
from codemod.lock import RECIPE
from codemod.verify.schema import Snapshot, differences, snapshot
from tests.conftest import require_dialect
from tests.databases import SERVERS, scratch_database
from tests.lock_race import ALEMBIC, PROJECT, REVISIONS, log_rows, project_on, upgrade_together
from tests.test_readme import fenced_blocks

PROCESSES = 5
IDEMPOTIFY = str(Path(sys.executable).parent / "idempotify")

# (dialect, driver, transaction_per_migration): each database's default driver with either transaction layout,
# and an async driver (env.py's run_sync path).
CASES = [
    ("postgresql", "psycopg2", False),
    ("postgresql", "psycopg2", True),
    ("postgresql", "asyncpg", False),
    ("mariadb", "pymysql", False),
    ("mariadb", "pymysql", True),
    ("mariadb", "aiomysql", False),
]


def test_the_project_and_the_readme_hold_the_recipe_as_lock_env_writes_it() -> None:
    assert RECIPE in (PROJECT / "env.py").read_text(encoding="utf-8")
    python = ["\n".join(lines) + "\n" for language, _, lines in fenced_blocks() if language == "python"]
    assert any(RECIPE in block for block in python), "README.md shows the recipe of codemod/lock.py"


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Snapshot]:
    """The schema one ``alembic upgrade head`` builds alone, on each database (built once per module)."""

    @functools.cache
    def build(dialect: str) -> Snapshot:
        with scratch_database(dialect) as engine:
            project = project_on(tmp_path_factory.mktemp(dialect), engine.url)
            subprocess.run([ALEMBIC, "upgrade", "head"], cwd=project, check=True, capture_output=True)
            return snapshot(engine)

    return build


def assert_each_revision_ran_once(project: Path, engine: sa.Engine, *options: str) -> None:
    race = upgrade_together(project, PROCESSES, *options)
    assert race.returncodes == (0,) * PROCESSES, "\n".join(race.outputs)
    assert race.runs == dict.fromkeys(REVISIONS, 1), "\n".join(race.outputs)
    assert log_rows(engine) == dict.fromkeys(REVISIONS, 1)
    assert race.waited >= 1, "no process found the lock taken: they did not run at the same time"


@pytest.mark.parametrize(("dialect", "driver", "per_migration"), CASES)
def test_concurrent_upgrades_run_each_revision_once(
    dialect: str, driver: str, per_migration: bool, single_run: Callable[[str], Snapshot], tmp_path: Path
) -> None:
    require_dialect(dialect)
    expected = single_run(dialect)
    with scratch_database(dialect) as engine:
        url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{driver}")
        project = project_on(tmp_path, url)
        options = ("-x", "transaction_per_migration=true") if per_migration else ()
        assert_each_revision_ran_once(project, engine, *options)
        assert differences(expected, snapshot(engine)) == []


def alembic_init(directory: Path, template: str) -> Path:
    """The env.py ``alembic init -t template`` writes (a project in ``directory``), and its alembic.ini beside."""
    directory.mkdir(exist_ok=True)
    subprocess.run([ALEMBIC, "init", "-t", template, "migrations"], cwd=directory, check=True, capture_output=True)
    return directory / "migrations" / "env.py"


def lock(*args: str) -> Result:
    return CliRunner().invoke(app, ["lock-env", *args])


@pytest.mark.parametrize("template", ["generic", "async"])
def test_lock_env_locks_the_templates_once(template: str, tmp_path: Path) -> None:
    env_py = alembic_init(tmp_path, template)
    original = env_py.read_bytes()
    assert lock("--check", str(env_py)).exit_code == 1
    assert env_py.read_bytes() == original
    result = lock(str(env_py))
    assert result.exit_code == 0, result.output
    locked = env_py.read_text(encoding="utf-8")
    compile(locked, str(env_py), "exec")
    assert RECIPE in locked
    assert locked.count("with migration_lock(connection):") == 1
    assert lock(str(env_py)).exit_code == 0
    assert env_py.read_text(encoding="utf-8") == locked, "a second run changes nothing"
    checked = lock("--check", str(env_py))
    assert (checked.exit_code, "takes a migration lock already" in checked.output) == (0, True)


def test_lock_env_diff_is_a_patch_git_applies(tmp_path: Path) -> None:
    env_py = alembic_init(tmp_path, "generic")
    original = env_py.read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)  # no ENV_PY: the project's, from its alembic.ini
        diff = lock("--diff")
    assert diff.exit_code == 1
    assert env_py.read_bytes() == original
    patch_file = tmp_path / "lock.patch"
    patch_file.write_text(diff.stdout, encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "apply", "-p0", "lock.patch"], cwd=tmp_path, check=True)
    applied = env_py.read_bytes()
    env_py.write_bytes(original)
    assert lock(str(env_py)).exit_code == 0
    assert applied == env_py.read_bytes()


def test_lock_env_locks_a_connection_handed_over_in_config_attributes(tmp_path: Path) -> None:
    env_py = tmp_path / "env.py"
    shutil.copyfile(Path(__file__).parent / "verify_project" / "env.py", env_py)
    assert lock(str(env_py)).exit_code == 0
    locked = env_py.read_text(encoding="utf-8")
    assert "    with migration_lock(connection):\n        context.configure(connection=connection," in locked
    assert 'if (connection := config.attributes.get("connection")) is not None:' in locked


def test_lock_env_locks_each_connection_of_the_cookbook_env_py(tmp_path: Path) -> None:
    """Alembic's cookbook "Sharing a Connection": one configure on the connection handed over, one on its own."""
    env_py = tmp_path / "env.py"
    shutil.copyfile(Path(__file__).parent / "lock_env" / "cookbook_env.py", env_py)
    assert lock(str(env_py)).exit_code == 0
    locked = env_py.read_text(encoding="utf-8")
    assert "            with migration_lock(connection):\n                context.configure(" in locked
    assert "        with migration_lock(connectable):\n            context.configure(" in locked
    compile(locked, str(env_py), "exec")


def test_lock_env_outside_a_project_names_what_it_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = lock()
    assert result.exit_code == 2
    assert f"no ENV_PY given, and no alembic.ini or pyproject.toml with [tool.alembic] in {tmp_path}" in result.output


def test_an_env_py_lock_env_does_not_recognise_is_left_untouched(tmp_path: Path) -> None:
    env_py = alembic_init(tmp_path, "generic")
    source = env_py.read_text(encoding="utf-8")
    unusual = source.replace("        with context.begin_transaction():\n", "        if True:\n")
    env_py.write_text(unusual, encoding="utf-8")
    result = lock(str(env_py))
    line = unusual.splitlines().index("        context.configure(") + 1
    assert result.exit_code == 1
    assert f"{env_py}: not changed" in result.output
    assert f"line {line}: context.configure(connection=...) is not followed by" in result.output
    assert "paste the recipe of the README" in result.output
    assert env_py.read_text(encoding="utf-8") == unusual


# (template, dialect, driver): the generic template on a sync driver, the async one on an async driver.
RUNS = [
    ("generic", "sqlite", "pysqlite"),
    ("async", "sqlite", "aiosqlite"),
    ("generic", "postgresql", "psycopg2"),
    ("async", "postgresql", "asyncpg"),
    ("generic", "mariadb", "pymysql"),
]


@pytest.mark.parametrize(("template", "dialect", "driver"), RUNS)
def test_a_locked_template_runs_the_chain(template: str, dialect: str, driver: str, tmp_path: Path) -> None:
    require_dialect(dialect)
    env_py = alembic_init(tmp_path / "init", template)
    assert lock(str(env_py)).exit_code == 0
    with scratch_database(dialect) as engine:
        url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{driver}")
        project = project_on(tmp_path, url, env_py)
        run = subprocess.run([ALEMBIC, "upgrade", "head"], cwd=project, capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        assert log_rows(engine) == dict.fromkeys(REVISIONS, 1)


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_concurrent_upgrades_through_an_env_py_lock_env_rewrote(dialect: str, tmp_path: Path) -> None:
    require_dialect(dialect)
    env_py = alembic_init(tmp_path / "init", "generic")
    assert lock(str(env_py)).exit_code == 0
    with scratch_database(dialect) as engine:
        assert_each_revision_ran_once(project_on(tmp_path, engine.url, env_py), engine)


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_verify_runs_through_an_env_py_lock_env_rewrote(dialect: str, tmp_path: Path) -> None:
    """verify hands env.py its scratch connection; the lock taken on it changes no verdict."""
    require_dialect(dialect)
    project = tmp_path / "project"
    shutil.copytree(Path(__file__).parent / "verify_project", project)
    shutil.copytree(project / "versions", tmp_path / "original")
    assert lock(str(project / "env.py")).exit_code == 0
    assert CliRunner().invoke(app, ["-q", str(project / "versions")]).exit_code == 0
    url = SERVERS[dialect]
    command = [IDEMPOTIFY, "verify", "versions", "--baseline", str(tmp_path / "original"), "--url", url]
    run = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all 3 revisions hold" in run.stdout


def test_an_env_py_that_does_not_parse_is_an_error_and_left_untouched(tmp_path: Path) -> None:
    env_py = tmp_path / "env.py"
    env_py.write_text("def run_migrations_online(:\n", encoding="utf-8")
    result = lock("--check", str(env_py))
    assert result.exit_code == 2
    assert f"{env_py}: cannot parse" in result.output
    assert env_py.read_text(encoding="utf-8") == "def run_migrations_online(:\n"
