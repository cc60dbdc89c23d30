"""``idempotify verify`` inside an Alembic project: every revision runs through the project's own env.py.

The project (``tests/verify_project``) is an async application's: its env.py
sets a naming convention that a revision depends on, runs an async engine, and
takes a connection handed over; one revision uses ``autocommit_block()`` after
another op. Its own URL names a file that must never be created.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from codemod.cli import app
from codemod.verify import database
from codemod.verify.environment import ACCEPT_A_CONNECTION
from tests.conftest import require_dialect
from tests.databases import SERVERS
from tests.test_verify import _leftovers

PROJECT = Path(__file__).parent / "verify_project"
# The async env.py refused: asyncio.run() inside verify's event loop leaves its coroutine unawaited.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine 'run_async_migrations' was never awaited")
REVISIONS = ["r1", "r2", "r3"]
ONE_OP = {"r1", "r2"}  # one op or one batch block: nothing to stop between

# (dialect, driver): the default sync driver and an async one on each database.
DRIVERS = [
    ("sqlite", "pysqlite"),
    ("sqlite", "aiosqlite"),
    ("postgresql", "psycopg2"),
    ("postgresql", "asyncpg"),
    ("mariadb", "pymysql"),
    ("mariadb", "aiomysql"),
]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A copy of the project, its versions rewritten by idempotify; the originals beside it in ``original/``."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy)
    shutil.copytree(PROJECT / "versions", tmp_path / "original")
    assert CliRunner().invoke(app, ["-q", str(copy / "versions")]).exit_code == 0
    yield copy
    assert not (copy / "own.db").exists(), "verify ran against env.py's own URL"


def url_for(dialect: str, driver: str) -> str:
    if dialect == "sqlite":
        return f"sqlite+{driver}://"
    url = sa.engine.make_url(SERVERS[dialect])
    return url.set(drivername=f"{url.get_backend_name()}+{driver}").render_as_string(hide_password=False)


@pytest.fixture
def private_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    prefix = f"{database.PREFIX}p{uuid.uuid4().hex[:6]}_"
    monkeypatch.setattr(database, "PREFIX", prefix)
    return prefix


def verify(project: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    result = CliRunner().invoke(
        app,
        [
            "verify",
            str(project / "versions"),
            "--baseline",
            str(project.parent / "original"),
            "--format",
            "json",
            *args,
        ],
    )
    return result, json.loads(result.stdout) if result.stdout.startswith("{") else {}


def statuses(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        revision["revision"]: {name: scenario["status"] for name, scenario in revision["scenarios"].items()}
        for revision in report["revisions"]
    }


@pytest.mark.parametrize(("dialect", "driver"), DRIVERS, ids=[f"{d}+{driver}" for d, driver in DRIVERS])
def test_every_revision_runs_through_the_projects_env_py(
    project: Path, private_prefix: str, dialect: str, driver: str
) -> None:
    require_dialect(dialect)
    result, report = verify(project, "--url", url_for(dialect, driver))
    assert result.exit_code == 0, result.stdout + result.stderr
    found = statuses(report)
    assert list(found) == REVISIONS
    for revision in REVISIONS:
        expected = dict.fromkeys(found[revision], "ok")
        if revision in ONE_OP:
            expected["crash"] = "not checked"
        assert found[revision] == expected, report["revisions"][REVISIONS.index(revision)]
    assert _leftovers(dialect, private_prefix) == []


def test_without_env_py_the_naming_convention_is_missed(project: Path) -> None:
    """The project's chain depends on its env.py: the bare harness, given no convention, cannot run it."""
    _, report = verify(project, "--no-env-py")
    assert "No such constraint: 'uq_items_code'" in report["revisions"][1]["scenarios"]["equivalence"]["detail"]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_bare_harness_runs_autocommit_block_after_another_op_and_async_urls(
    project: Path, private_prefix: str, dialect: str
) -> None:
    require_dialect(dialect)
    driver = "aiosqlite" if dialect == "sqlite" else "asyncpg"
    convention = json.dumps({"uq": "uq_%(table_name)s_%(column_0_name)s"})
    result, report = verify(
        project, "--no-env-py", "--naming-convention", convention, "--url", url_for(dialect, driver)
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert {found["upgrade"] for found in statuses(report).values()} == {"ok"}
    assert statuses(report)["r3"]["crash"] == "ok"
    assert _leftovers(dialect, private_prefix) == []


# The body of do_run_migrations() after configure(): Alembic's, then two env.py's that end transactions
# themselves. Prefect's, on SQLite, commits, turns foreign keys off and begins a transaction of its own around
# run_migrations(), and ends it after, each by SQL text; another commits the connection after it.
RUN_MIGRATIONS = "    with context.begin_transaction():\n        context.run_migrations()\n"
BY_SQL = """\
    if connection.dialect.name == "sqlite":
        context.execute("COMMIT")
        context.execute("PRAGMA foreign_keys=OFF")
        context.execute("BEGIN IMMEDIATE")
    with context.begin_transaction():
        context.run_migrations()
    if connection.dialect.name == "sqlite":
        context.execute("END")
        context.execute("PRAGMA foreign_keys=ON")
        context.execute("BEGIN IMMEDIATE")
"""
OWN_TRANSACTIONS = [
    ("sqlite", "pysqlite", BY_SQL),
    ("sqlite", "aiosqlite", BY_SQL),
    ("postgresql", "asyncpg", RUN_MIGRATIONS + "    connection.commit()\n"),
]


@pytest.mark.parametrize(
    ("dialect", "driver", "body"), OWN_TRANSACTIONS, ids=["sql-pysqlite", "sql-aiosqlite", "commit-asyncpg"]
)
def test_an_env_py_that_commits_and_begins_itself_keeps_verifys_rollbacks(
    project: Path, private_prefix: str, dialect: str, driver: str, body: str
) -> None:
    require_dialect(dialect)
    env = project / "env.py"
    text = env.read_text(encoding="utf-8")
    assert RUN_MIGRATIONS in text
    env.write_text(text.replace(RUN_MIGRATIONS, body, 1), encoding="utf-8")
    result, report = verify(project, "--url", url_for(dialect, driver))
    assert result.exit_code == 0, result.stdout + result.stderr
    for revision, found in statuses(report).items():
        assert set(found.values()) <= {"ok", "not checked"}, (revision, found)
    assert _leftovers(dialect, private_prefix) == []


IGNORING_ENV = '''"""An env.py that connects to its own database, whatever it is handed."""

import sqlalchemy as sa
from alembic import context

engine = sa.create_engine("sqlite:///" + __file__.replace("env.py", "own.db"))
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
'''


def test_an_env_py_that_ignores_the_connection_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy)
    (copy / "env.py").write_text(IGNORING_ENV, encoding="utf-8")
    result = CliRunner().invoke(app, ["verify", str(copy / "versions")])
    assert result.exit_code == 2
    assert "(it configured a connection to another database)" in result.stderr
    assert ACCEPT_A_CONNECTION in result.stderr
    own = sa.create_engine(f"sqlite:///{copy / 'own.db'}")
    assert sa.inspect(own).get_table_names() == [], "a revision ran on env.py's own database"
    own.dispose()


def test_an_async_env_py_without_the_two_lines_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy)
    env = copy / "env.py"
    text = env.read_text(encoding="utf-8")
    without = "\n".join(
        line for line in text.splitlines() if "connection := " not in line and "return do_run" not in line
    )
    assert without != text
    env.write_text(without + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["verify", str(copy / "versions"), "--url", "sqlite+aiosqlite://"])
    assert result.exit_code == 2
    assert "does not run on the connection verify hands over" in result.stderr
    assert not (copy / "own.db").exists()


def test_a_missing_driver_exits_2(project: Path) -> None:
    result = CliRunner().invoke(
        app, ["verify", str(project / "versions"), "--url", "postgresql+pg8000://u@127.0.0.1/x"]
    )
    assert result.exit_code == 2
    assert "no database driver for postgresql+pg8000://u@127.0.0.1/x: No module named 'pg8000'" in result.stderr


def test_config_names_the_project_whose_env_py_runs_the_chain(tmp_path: Path) -> None:
    """The versions live elsewhere (a copy): without --config the bare harness runs them, with it the env.py."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy)
    (copy / "env.py").write_text(IGNORING_ENV, encoding="utf-8")
    versions = tmp_path / "elsewhere" / "versions"
    shutil.copytree(PROJECT / "versions", versions)
    convention = json.dumps({"uq": "uq_%(table_name)s_%(column_0_name)s"})
    bare = CliRunner().invoke(app, ["verify", str(versions), "--naming-convention", convention])
    assert "does not run on the connection" not in bare.stderr
    through = CliRunner().invoke(app, ["verify", str(versions), "--config", str(copy / "alembic.ini")])
    assert through.exit_code == 2
    assert "(it configured a connection to another database)" in through.stderr


def test_without_versions_the_project_here_runs_them_past_a_nearer_alembic_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow ships an alembic.ini beside its env.py that names its script location from the site's root: found
    from the working directory's alembic.ini, the versions run through that project, not the nearer file."""
    site = tmp_path / "site"
    migrations = site / "app" / "migrations"
    shutil.copytree(PROJECT, migrations)
    ini = "[alembic]\nscript_location = app/migrations\nsqlalchemy.url = sqlite+aiosqlite:///%(here)s/own.db\n"
    for folder in (site, migrations):
        (folder / "alembic.ini").write_text(ini, encoding="utf-8")
    shutil.copytree(PROJECT / "versions", tmp_path / "original")
    assert CliRunner().invoke(app, ["-q", str(migrations / "versions")]).exit_code == 0
    monkeypatch.chdir(site)
    result = CliRunner().invoke(app, ["verify", "--baseline", str(tmp_path / "original"), "--format", "json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert [revision["revision"] for revision in json.loads(result.stdout)["revisions"]] == REVISIONS
    assert not (site / "own.db").exists(), "verify ran against env.py's own URL"
