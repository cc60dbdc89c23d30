"""Database parametrisation (every execution test runs on SQLite, PostgreSQL and MariaDB), and a private cache.

Locally, a server that does not answer skips its tests with the reason; under
``CI=true`` an unreachable server fails them instead, so CI never passes on
skipped database tests.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
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


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """An env.py run in-process calls ``logging.config.fileConfig``: its handlers (on a stream pytest closes), its
    levels and the loggers it disables must not outlive the test that ran it."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    before = {
        name: (logger.level, logger.disabled, logger.propagate, logger.handlers[:])
        for name, logger in [("", root), *manager.loggerDict.items()]
        if isinstance(logger, logging.Logger)
    }
    yield
    for name, logger in [("", root), *manager.loggerDict.items()]:
        if not isinstance(logger, logging.Logger):
            continue
        level, disabled, propagate, handlers = before.get(name, (logging.NOTSET, False, True, []))
        logger.setLevel(level)
        logger.disabled, logger.propagate = disabled, propagate
        for handler in logger.handlers[:]:
            if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
                logger.removeHandler(handler)
