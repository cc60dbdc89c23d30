"""Drift: a create skipped because an object of its name exists says how that object differs, on all three databases.

Each test writes a one-revision Alembic project whose revision is the rewritten
form of a migration, prepares the database by hand, and runs ``alembic
upgrade`` (Alembic's command API, in-process) with the deploy log captured. A
difference is one WARNING after the skip's INFO line, naming both definitions;
the same object, an op that runs, and offline SQL say nothing more.
"""

from __future__ import annotations

import ast
import inspect
import logging
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from codemod import runtime
from codemod.formatting import Style
from codemod.guards import DRIFT_CHECKED, helper_functions_source, helper_names, helpers_called
from codemod.plan.record import MIGRATION_LOGGER, Logged, recording
from codemod.runner import rewrite_source
from tests.databases import DIALECTS, Driver
from tests.test_drivers import ASYNC_DRIVERS, ASYNC_ENV, require_driver

Scratch = Callable[[str], AbstractContextManager[sa.Engine]]
# SQLite adds and drops constraints only by copying the table (a batch block), where a guard lets the op re-apply.
ALTERS_CONSTRAINTS = ("postgresql", "mariadb")

ENV_PY = """\
from alembic import context
import sqlalchemy as sa

url = context.config.get_main_option("sqlalchemy.url")
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with sa.create_engine(url, poolclass=sa.pool.NullPool).connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
"""

REVISION = '''\
"""drift

Revision ID: d1f7a0c0e001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "d1f7a0c0e001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
{body}


def downgrade():
    pass
'''


def _metadata(*columns: sa.Column[Any], extra: tuple[Any, ...] = ()) -> sa.MetaData:
    """``players`` with ``columns`` besides id, name and code; ``teams`` and ``leagues`` for foreign keys."""
    metadata = sa.MetaData()
    sa.Table("teams", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("leagues", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "players",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
        sa.Column("code", sa.String(20)),
        sa.Column("team_id", sa.Integer),
        *columns,
        *extra,
    )
    return metadata


class Project:
    """A one-revision Alembic project on a database, its revision rewritten by idempotify."""

    def __init__(
        self, folder: Path, engine: sa.Engine, body: str, env: str = ENV_PY, url: sa.URL | None = None
    ) -> None:
        self.engine = engine
        self.original = REVISION.format(body=textwrap.indent(textwrap.dedent(body).strip(), "    "))
        # The drift check lives in a shared helpers module (an inline block leaves it out); a name of its own
        # per project, as Python caches an imported module by name.
        self.helpers = f"drift_helpers_{uuid.uuid4().hex[:12]}"
        rewritten, _ = rewrite_source(self.original.encode("utf-8"), Style(helpers=self.helpers))
        self.source = rewritten.decode("utf-8")
        assert "_idempotify(" in self.source, "the revision was not rewritten"
        (folder / "versions").mkdir(parents=True)
        (folder / "env.py").write_text(env, encoding="utf-8")
        (folder / f"{self.helpers}.py").write_text(helper_functions_source(helper_names()), encoding="utf-8")
        self.revision = folder / "versions" / "d1f7a0c0e001_drift.py"
        self.revision.write_text(self.source, encoding="utf-8")
        self.config = Config()
        self.config.set_main_option("script_location", str(folder))
        self.config.set_main_option("prepend_sys_path", str(folder))
        self.config.set_main_option("path_separator", "os")
        rendered = (url or engine.url).render_as_string(hide_password=False)
        self.config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))

    def upgrade(self, caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
        """``alembic upgrade head``: what idempotify logged, as (level, message)."""
        caplog.clear()
        try:
            with caplog.at_level(logging.INFO, logger="alembic"):
                command.upgrade(self.config, "head")
        finally:
            sys.modules.pop(self.helpers, None)
        return _said(caplog)


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """The records of idempotify's guards (their skips and drift warnings) and every warning."""
    return [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.levelno >= logging.WARNING or hasattr(record, "idempotify")
    ]


@pytest.fixture
def project(scratch: Scratch, tmp_path: Path) -> Iterator[Callable[..., AbstractContextManager[Project]]]:
    @contextmanager
    def make(dialect: str, body: str, metadata: sa.MetaData, driver: Driver | None = None) -> Iterator[Project]:
        with scratch(dialect) as engine:
            metadata.create_all(engine)
            if driver is None:
                yield Project(tmp_path / "project", engine, body)
            else:
                yield Project(tmp_path / "project", engine, body, ASYNC_ENV, driver.url(engine.url))

    yield make


def _type(engine: sa.Engine, type_: sa.types.TypeEngine[Any]) -> str:
    return str(type_.compile(dialect=engine.dialect))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_column_of_another_type_is_warned_with_both_types_after_its_skip(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    metadata = _metadata(sa.Column("updated_at", sa.String(20)))
    body = 'op.add_column("players", sa.Column("updated_at", sa.DateTime(), nullable=False))'
    with project(dialect, body, metadata) as made:
        said = made.upgrade(caplog)
        reflected = {column["name"]: column["type"] for column in sa.inspect(made.engine).get_columns("players")}
        has, makes = _type(made.engine, reflected["updated_at"]), _type(made.engine, sa.DateTime())
    assert said == [
        ("INFO", "skipped op.add_column(players.updated_at): column exists"),
        (
            "WARNING",
            f"op.add_column(players.updated_at) skipped; the column differs: the database has {has} NULL,"
            f" the op makes {makes} NOT NULL",
        ),
    ]


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
def test_a_column_of_another_type_is_warned_under_an_async_driver(
    driver: Driver, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    """The migration runs in ``run_sync``'s greenlet: the guard's caller, the op's frame, is still on its stack."""
    require_driver(driver)
    metadata = _metadata(sa.Column("updated_at", sa.Integer()))
    body = 'op.add_column("players", sa.Column("updated_at", sa.DateTime(), nullable=True))'
    with project(driver.dialect, body, metadata, driver) as made:
        said = made.upgrade(caplog)
    assert [level for level, _ in said] == ["INFO", "WARNING"], said
    assert "the column differs" in said[1][1]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_inline_block_has_no_drift_check_and_its_skip_says_only_that(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    """Without a shared helpers module the check is left out (it would outweigh the block): the skip is logged,
    and nothing else is said or fails."""
    metadata = _metadata(sa.Column("updated_at", sa.Integer()))
    body = 'op.add_column("players", sa.Column("updated_at", sa.Text()))'
    with project(dialect, body, metadata) as made:
        inline, _ = rewrite_source(made.original.encode("utf-8"), Style())
        assert b"def _idempotify(" in inline
        assert b"def _idempotify_drift(" not in inline
        made.revision.write_bytes(inline)
        said = made.upgrade(caplog)
    assert said == [("INFO", "skipped op.add_column(players.updated_at): column exists")]


# What reflection reports differs from what was declared (a length, BOOLEAN as TINYINT on MariaDB, an enum as
# VARCHAR on SQLite, DATETIME as TIMESTAMP on PostgreSQL): the same column, declared so, says nothing.
SAME_COLUMN: dict[str, tuple[Callable[[], sa.types.TypeEngine[Any]], str]] = {
    "same type": (sa.DateTime, "sa.DateTime()"),
    "other length": (lambda: sa.String(20), "sa.String(40)"),
    "text and string": (sa.Text, "sa.String(40)"),
    "boolean": (sa.Boolean, "sa.Boolean()"),
    "enum": (lambda: sa.Enum("a", "b", name="ab"), 'sa.Enum("a", "b", name="ab")'),
    "timestamp": (sa.TIMESTAMP, "sa.DateTime()"),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", SAME_COLUMN)
def test_a_column_of_the_same_type_class_and_nullability_logs_its_skip_only(
    dialect: str, case: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    existing, declared = SAME_COLUMN[case]
    body = f'op.add_column("players", sa.Column("updated_at", {declared}))'
    with project(dialect, body, _metadata(sa.Column("updated_at", existing()))) as made:
        said = made.upgrade(caplog)
    assert said == [("INFO", "skipped op.add_column(players.updated_at): column exists")]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_ops_that_run_log_nothing_and_a_rerun_of_what_they_made_warns_of_nothing(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    """Every type class the comparison knows, and more, as each database reflects what the op made."""
    types = [
        "sa.Integer()", "sa.BigInteger()", "sa.SmallInteger()", "sa.Boolean()", "sa.String(20)", "sa.Text()",
        "sa.Unicode(10)", "sa.JSON()", "sa.Uuid()", "sa.Numeric(10, 2)",
        "sa.Float()", "sa.DateTime()", "sa.DateTime(timezone=True)", "sa.Date()", "sa.Time()", "sa.Interval()",
        "sa.LargeBinary()", "sa.PickleType()",
    ]  # fmt: skip
    body = [f'op.add_column("players", sa.Column("c{i}", {t}, nullable={i % 2 == 0}))' for i, t in enumerate(types)]
    body += [
        'op.add_column("players", sa.Column("d", sa.Integer(), nullable=False, server_default="0"))',
        'op.create_index("ix_players_name", "players", ["name", "code"])',
        'op.create_index("ix_players_code", "players", ["code"], unique=True)',
    ]
    if dialect in ALTERS_CONSTRAINTS:
        body += [
            'op.create_unique_constraint("uq_players_name", "players", ["name", "team_id"])',
            'op.create_foreign_key("fk_players_team_id", "players", "teams", ["team_id"], ["id"])',
        ]
    with project(dialect, "\n".join(body), _metadata()) as made:
        assert made.upgrade(caplog) == []
        command.stamp(made.config, "base")
        said = made.upgrade(caplog)
    assert [level for level, _ in said] == ["INFO"] * len(body), said


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_column_the_migration_alters_further_on_is_not_compared(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    """Added NULL, filled, made NOT NULL: on a re-run the column differs from the add_column by the migration's hand."""
    body = """
        op.add_column("players", sa.Column("score", sa.Integer(), nullable=True))
        op.execute("UPDATE players SET score = 0")
        with op.batch_alter_table("players") as batch_op:
            batch_op.alter_column("score", existing_type=sa.Integer(), nullable=False)
    """
    with project(dialect, body, _metadata()) as made:
        made.upgrade(caplog)
        command.stamp(made.config, "base")
        said = made.upgrade(caplog)
    assert said == [("INFO", "skipped op.add_column(players.score): column exists")]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_index_on_other_columns_or_of_other_uniqueness_is_warned(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    metadata = _metadata(extra=(sa.Index("ix_players_name", "name"),))
    body = 'op.create_index("ix_players_name", "players", ["name", "code"], unique=True)'
    with project(dialect, body, metadata) as made:
        said = made.upgrade(caplog)
    assert said == [
        ("INFO", "skipped op.create_index(players.ix_players_name): index exists"),
        (
            "WARNING",
            "op.create_index(players.ix_players_name) skipped; the index differs: the database has (name),"
            " the op makes UNIQUE (name, code)",
        ),
    ]


@pytest.mark.parametrize("dialect", ALTERS_CONSTRAINTS)
def test_a_foreign_key_to_another_table_is_warned(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    metadata = _metadata(extra=(sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_players_team_id"),))
    body = 'op.create_foreign_key("fk_players_team_id", "players", "leagues", ["team_id"], ["id"])'
    with project(dialect, body, metadata) as made:
        said = made.upgrade(caplog)
    assert said == [
        ("INFO", "skipped op.create_foreign_key(players.fk_players_team_id): foreign key exists"),
        (
            "WARNING",
            "op.create_foreign_key(players.fk_players_team_id) skipped; the foreign key differs:"
            " the database has (team_id) REFERENCES teams(id), the op makes (team_id) REFERENCES leagues(id)",
        ),
    ]


@pytest.mark.parametrize("dialect", ALTERS_CONSTRAINTS)
def test_a_unique_constraint_on_other_columns_is_warned(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    metadata = _metadata(extra=(sa.UniqueConstraint("code", name="uq_players_code"),))
    body = 'op.create_unique_constraint("uq_players_code", "players", ["code", "name"])'
    with project(dialect, body, metadata) as made:
        said = made.upgrade(caplog)
    assert said == [
        ("INFO", "skipped op.create_unique_constraint(players.uq_players_code): unique constraint exists"),
        (
            "WARNING",
            "op.create_unique_constraint(players.uq_players_code) skipped; the unique constraint differs:"
            " the database has (code), the op makes (code, name)",
        ),
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_batch_column_of_another_type_is_warned(
    dialect: str, project: Callable[..., AbstractContextManager[Project]], caplog: pytest.LogCaptureFixture
) -> None:
    """In a batch block the op's arguments are the batch form's (no table): the column is still found."""
    body = """
        with op.batch_alter_table("players") as batch_op:
            batch_op.add_column(sa.Column("team_id", sa.String(10), nullable=True))
    """
    with project(dialect, body, _metadata()) as made:
        said = made.upgrade(caplog)
        reflected = {column["name"]: column["type"] for column in sa.inspect(made.engine).get_columns("players")}
        has, makes = _type(made.engine, reflected["team_id"]), _type(made.engine, sa.String(10))
    assert said == [
        ("INFO", "skipped batch_op.add_column(players.team_id): column exists"),
        (
            "WARNING",
            f"batch_op.add_column(players.team_id) skipped; the column differs: the database has {has} NULL,"
            f" the op makes {makes} NULL",
        ),
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_offline_sql_is_the_originals_and_nothing_is_logged(
    dialect: str,
    project: Callable[..., AbstractContextManager[Project]],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    metadata = _metadata(sa.Column("updated_at", sa.String(20)))
    body = 'op.add_column("players", sa.Column("updated_at", sa.DateTime(), nullable=False))'
    with project(dialect, body, metadata) as made:
        sql = {}
        for name, source in (("original", made.original), ("rewritten", made.source)):
            made.revision.write_text(source, encoding="utf-8")
            capsys.readouterr()
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="alembic"):
                command.upgrade(made.config, "head", sql=True)
            sql[name] = capsys.readouterr().out
            assert _said(caplog) == []
    assert "ALTER TABLE players ADD" in sql["original"]
    assert sql["rewritten"] == sql["original"]


def test_the_drift_helper_checks_the_ops_it_is_written_for() -> None:
    """``codemod.guards`` writes it into files by op name; ``_idempotify_drift`` checks the ops it names."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(runtime._idempotify_drift)))
    named = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    assert set(DRIFT_CHECKED) <= named


def test_only_files_that_create_a_column_index_unique_constraint_or_foreign_key_get_the_drift_helper() -> None:
    drift = "_idempotify_drift"
    for method in DRIFT_CHECKED:
        assert drift in helpers_called(f'_idempotify("op.{method}: no x", "t", "n")'), method
    assert drift not in helpers_called('_idempotify("op.create_table: no table", "t")')
    assert drift not in helpers_called('_idempotify("op.drop_column: column", "t", "c")')
    assert drift not in helpers_called('_idempotify("op.alter_column: no column", "t", "c")')


def test_plan_records_the_skip_and_not_the_drift_warning() -> None:
    """``idempotify plan`` reads what an op did from the guards' log lines; a drift warning is not one (plan
    compares the objects itself)."""
    path = "/project/versions/d1f7a0c0e001_drift.py"
    revision = (
        'log.info("skipped %s(%s): %s", "op.add_column", "t.c", "column exists", extra={"idempotify": ("t", "c")})\n'
        'log.warning("op.add_column(t.c) skipped; the column differs: ...", extra={"idempotify_drift": 1})\n'
    )
    with recording(path) as found:
        exec(compile(revision, path, "exec"), {"log": logging.getLogger(MIGRATION_LOGGER)})
    assert found.logged == [Logged(1, "skipped op.add_column(t.c): column exists", ("t", "c"))]
