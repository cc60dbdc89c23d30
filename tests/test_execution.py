"""Every golden fixture, executed: the output builds what the input builds, and survives re-runs.

On each database: a fresh database with the base schema runs the input's
upgrade and downgrade; another runs the output's, each twice, and must reach
the same schemas. A third runs the input's upgrade and then the output's, as a
deploy does when the schema is ahead of ``alembic_version``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
import sqlalchemy as sa

from tests.databases import BASE, offline_sql, run_migration, snapshot
from tests.fixtures import Golden, golden_paths, read_golden

Scratch = Callable[[str], AbstractContextManager[sa.Engine]]

CASES = [
    pytest.param(golden, dialect, id=f"{golden.id}-{dialect}")
    for golden in (read_golden(path) for path in golden_paths())
    for dialect in golden.dialects
    if golden.output != golden.input
]


def _fresh(engine: sa.Engine) -> sa.Engine:
    BASE.create_all(engine)
    return engine


@pytest.mark.parametrize(("golden", "dialect"), CASES)
def test_output_builds_the_same_schema_and_reruns(golden: Golden, dialect: str, scratch: Scratch) -> None:
    with scratch(dialect) as original:
        _fresh(original)
        run_migration(original, golden.input, "upgrade")
        upgraded = snapshot(original)
        run_migration(original, golden.input, "downgrade")
        downgraded = snapshot(original)
    with scratch(dialect) as rewritten:
        _fresh(rewritten)
        run_migration(rewritten, golden.output, "upgrade")
        assert snapshot(rewritten) == upgraded
        run_migration(rewritten, golden.output, "upgrade")
        assert snapshot(rewritten) == upgraded, "a second upgrade changed the schema"
        run_migration(rewritten, golden.output, "downgrade")
        assert snapshot(rewritten) == downgraded
        run_migration(rewritten, golden.output, "downgrade")
        assert snapshot(rewritten) == downgraded, "a second downgrade changed the schema"


@pytest.mark.parametrize(("golden", "dialect"), CASES)
def test_output_completes_a_schema_already_upgraded_by_the_input(
    golden: Golden, dialect: str, scratch: Scratch
) -> None:
    with scratch(dialect) as engine:
        _fresh(engine)
        run_migration(engine, golden.input, "upgrade")
        upgraded = snapshot(engine)
        with pytest.raises(Exception):  # noqa: B017 - each dialect fails its own way
            run_migration(engine, golden.input, "upgrade")
        run_migration(engine, golden.output, "upgrade")
        assert snapshot(engine) == upgraded


def _offline(source: str, dialect: str, function: str) -> str:
    """Offline SQL, or the error Alembic raises (batch mode on SQLite cannot run offline)."""
    try:
        return offline_sql(source, dialect, function)
    except Exception as error:  # noqa: BLE001 - the original's own error is the expectation
        return f"{type(error).__name__}: {error}"


@pytest.mark.parametrize(("golden", "dialect"), CASES)
@pytest.mark.parametrize("function", ["upgrade", "downgrade"])
def test_offline_sql_is_unchanged(golden: Golden, dialect: str, function: str) -> None:
    assert _offline(golden.output, dialect, function) == _offline(golden.input, dialect, function)
