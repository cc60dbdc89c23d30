"""The migration lock: concurrent ``alembic upgrade head`` processes run each revision once; ``idempotify lock-env``.

The project (``tests/lock_project``) has a chain of four revisions that each
take half a second and write a row to a log table; one builds an index in
``autocommit_block()`` (CONCURRENTLY on PostgreSQL). Its env.py holds the
recipe of ``codemod/lock.py``, sync or async by the URL's driver.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from codemod.lock import RECIPE
from codemod.verify.schema import differences, snapshot
from tests.conftest import require_dialect
from tests.databases import scratch_database
from tests.lock_race import ALEMBIC, PROJECT, REVISIONS, log_rows, project_on, upgrade_together
from tests.test_readme import fenced_blocks

PROCESSES = 5

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


def single_run(directory: Path, dialect: str) -> dict[str, object]:
    """The schema one ``alembic upgrade head`` builds, alone."""
    with scratch_database(dialect) as engine:
        project = project_on(directory, engine.url)
        subprocess.run([ALEMBIC, "upgrade", "head"], cwd=project, check=True, capture_output=True)
        return snapshot(engine)


def assert_each_revision_ran_once(project: Path, engine: sa.Engine, *options: str) -> None:
    race = upgrade_together(project, PROCESSES, *options)
    assert race.returncodes == (0,) * PROCESSES, "\n".join(race.outputs)
    assert race.runs == dict.fromkeys(REVISIONS, 1), "\n".join(race.outputs)
    assert log_rows(engine) == dict.fromkeys(REVISIONS, 1)
    assert race.waited >= 1, "no process found the lock taken: they did not run at the same time"


@pytest.mark.parametrize(("dialect", "driver", "per_migration"), CASES)
def test_concurrent_upgrades_run_each_revision_once(
    dialect: str, driver: str, per_migration: bool, tmp_path: Path
) -> None:
    require_dialect(dialect)
    expected = single_run(tmp_path / "single", dialect)
    with scratch_database(dialect) as engine:
        url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{driver}")
        project = project_on(tmp_path, url)
        options = ("-x", "transaction_per_migration=true") if per_migration else ()
        assert_each_revision_ran_once(project, engine, *options)
        assert differences(expected, snapshot(engine)) == []
