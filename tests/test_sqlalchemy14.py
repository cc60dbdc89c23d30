"""The guards under SQLAlchemy 1.4: a rewritten migration runs on the application's SQLAlchemy, often not 2.0.

Apache Superset, among others, pins SQLAlchemy below 2.0, and its whole chain,
rewritten, builds the same schema on SQLite and PostgreSQL under 1.4.54. Here
the golden fixtures of ``test_drivers.MATRIX`` (one per query path of the
guard helpers) run in a virtualenv holding SQLAlchemy 1.4 (``make install``
makes ``.venv-sqlalchemy14``; ``IDEMPOTIFY_SQLALCHEMY14_PYTHON`` names another
interpreter) through ``tests/sqlalchemy14.py``, on the default driver of each
database: upgrade twice, downgrade twice, each compared with the input's. As in
``test_drivers``, each output carries the drift check a shared helpers module
gives it, which the second upgrade's skips run.
Locally a missing virtualenv or server skips with the reason; under
``CI=true`` both fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import require_dialect
from tests.databases import DIALECTS, scratch_database
from tests.fixtures import Golden
from tests.test_drivers import matrix, with_drift_check

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(os.environ.get("IDEMPOTIFY_SQLALCHEMY14_PYTHON", ROOT / ".venv-sqlalchemy14" / "bin" / "python"))
# Cases whose input relies on SQLAlchemy 2.0: CreateSchema(if_not_exists=True), which 1.4 ignores.
NEEDS_SQLALCHEMY_2 = {"execute/schemas"}


def cases(dialect: str) -> list[Golden]:
    return [golden for golden in matrix(dialect) if golden.id not in NEEDS_SQLALCHEMY_2]


def require_python() -> None:
    if PYTHON.exists():
        return
    reason = f"no SQLAlchemy 1.4 interpreter at {PYTHON} (make install makes it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@cache
def results(dialect: str) -> tuple[str, dict[str, list[str]]]:
    """Every case of ``dialect``, run by one process under SQLAlchemy 1.4: its version, and each case's problems."""
    with scratch_database(dialect) as engine:
        url = engine.url.render_as_string(hide_password=False)
        engine.dispose()
        jobs = [
            {"id": g.id, "input": g.input, "output": with_drift_check(g), "naming_convention": g.naming_convention}
            for g in cases(dialect)
        ]
        done = subprocess.run(
            [str(PYTHON), str(ROOT / "tests" / "sqlalchemy14.py")],
            input=json.dumps({"url": url, "jobs": jobs}),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    return answer["sqlalchemy"], answer["results"]


@pytest.mark.parametrize(
    ("dialect", "case"), [pytest.param(d, g.id, id=f"{d}-{g.id}") for d in DIALECTS for g in cases(d)]
)
def test_guards_work_under_sqlalchemy_1_4(dialect: str, case: str) -> None:
    require_python()
    require_dialect(dialect)
    version, found = results(dialect)
    assert version.startswith("1.4."), f"{PYTHON} runs SQLAlchemy {version}, not 1.4"
    assert found[case] == [], "\n".join(found[case])


def test_only_cases_of_the_matrix_are_left_out() -> None:
    """A case left out for needing SQLAlchemy 2.0 is still one of the matrix (not a stale name)."""
    assert {g.id for d in DIALECTS for g in matrix(d)} >= NEEDS_SQLALCHEMY_2
