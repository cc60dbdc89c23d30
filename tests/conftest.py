"""Database parametrisation (every execution test runs on SQLite, PostgreSQL and MariaDB), and a private cache.

Locally, a server that does not answer skips its tests with the reason; under
``CI=true`` an unreachable server fails them instead, so CI never passes on
skipped database tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.databases import scratch_database, server_unreachable


@cache
def _unreachable(dialect: str) -> str | None:
    return server_unreachable(dialect)


def require_dialect(dialect: str) -> None:
    """Skip (locally) or fail (under CI) when the server for ``dialect`` is down."""
    reason = _unreachable(dialect)
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture
def scratch() -> Callable[[str], AbstractContextManager[sa.Engine]]:
    """Make scratch databases: ``with scratch("postgresql") as engine: ...``."""

    def make(dialect: str) -> AbstractContextManager[sa.Engine]:
        require_dialect(dialect)
        return scratch_database(dialect)

    return make


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has a cache of its own, empty: never the user's, and never an answer from another test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
