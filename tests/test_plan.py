"""``idempotify plan`` on live databases whose schema is ahead of ``alembic_version``, on all three databases.

The live database is the demo project's, brought to a revision with Alembic, then
changed by hand: the post-mortem's ``updated_at`` added ahead of its revision,
or a revision that died half-way (its first op committed, as on MariaDB). Each
test checks the plan, and that the live database is byte-for-byte (SQLite) or
catalog-for-catalog unchanged, and that no scratch database is left.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from typer.testing import CliRunner, Result

from codemod.cli import app
from codemod.plan import live, planner
from codemod.verify import database
from tests.conftest import require_dialect
from tests.databases import DIALECTS, scratch_database
from tests.test_verify import _leftovers

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo"
HALF_APPLIED = '''"""nickname for players, filled from the name, and indexed

Revision ID: 5e2a9c1d7f55
Revises: 4d1f7b2c3e44
"""
from alembic import op
import sqlalchemy as sa

revision = "5e2a9c1d7f55"
down_revision = "4d1f7b2c3e44"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("players", sa.Column("nickname", sa.String(40), nullable=True))
    op.execute("UPDATE players SET nickname = name WHERE nickname IS NULL")
    op.create_index("ix_players_nickname", "players", ["nickname"])


def downgrade():
    op.drop_index("ix_players_nickname", table_name="players")
    op.drop_column("players", "nickname")
'''


@dataclass
class Live:
    """The demo project (its versions not rewritten) and its live database."""

    dialect: str
    folder: Path
    url: str
    engine: sa.Engine

    @property
    def versions(self) -> Path:
        return self.folder / "versions"

    def upgrade(self, revision: str) -> None:
        config = Config(str(self.folder / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        command.upgrade(config, revision)

    def execute(self, *statements: str) -> None:
        with self.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    def plan(self, *options: str) -> Result:
        arguments = ["plan", str(self.versions), "--url", self.url, "--config", str(self.folder / "alembic.ini")]
        return CliRunner().invoke(app, [*arguments, *options])


@contextmanager
def live_project(dialect: str, tmp_path: Path) -> Iterator[Live]:
    """A copy of the demo project (with a fifth revision) and an empty live database for it."""
    require_dialect(dialect)
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder)
    (folder / "versions" / "5e2a9c1d7f55_nickname.py").write_text(HALF_APPLIED, encoding="utf-8")
    if dialect == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'live.db'}")
        yield Live(dialect, folder, engine.url.render_as_string(hide_password=False), engine)
        engine.dispose()
        return
    with scratch_database(dialect) as engine:
        yield Live(dialect, folder, engine.url.render_as_string(hide_password=False), engine)
        engine.dispose()


@pytest.fixture(params=DIALECTS)
def live_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    with live_project(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def no_scratch_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Afterwards, none of the scratch databases (or SQLite scratch folders) plan made may be left."""
    prefix = f"{database.PREFIX}p{uuid.uuid4().hex[:6]}_"
    monkeypatch.setattr(database, "PREFIX", prefix)
    servers: list[database.ScratchServer] = []
    made = database.scratch_server

    @contextmanager
    def recorded(url: str | None) -> Iterator[database.ScratchServer]:
        with made(url) as server:
            servers.append(server)
            yield server

    monkeypatch.setattr(planner, "scratch_server", recorded)
    yield
    for server in servers:
        assert not server.directory.exists(), "plan left its SQLite scratch folder"
        if server.dialect != "sqlite":
            assert _leftovers(server.dialect, prefix) == [], "plan left scratch databases behind"


def checksum(live_db: Live) -> str:
    """The live database's catalog and alembic_version (SQLite: the file's bytes)."""
    if live_db.dialect == "sqlite":
        assert live_db.engine.url.database is not None
        return hashlib.sha256(Path(live_db.engine.url.database).read_bytes()).hexdigest()
    queries = {
        "postgresql": [
            "SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            " WHERE n.nspname = 'public' ORDER BY 1, 3",
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY 1",
            "SELECT * FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name",
        ],
        "mariadb": [
            "SELECT * FROM information_schema.columns WHERE table_schema = database() ORDER BY table_name, column_name",
            "SELECT * FROM information_schema.statistics WHERE table_schema = database()"
            " ORDER BY table_name, index_name, seq_in_index",
            "SELECT * FROM information_schema.table_constraints WHERE table_schema = database() ORDER BY 3, 5",
        ],
    }[live_db.dialect]
    digest = hashlib.sha256()
    with live_db.engine.connect() as connection:
        for query in queries:
            digest.update(repr(connection.exec_driver_sql(query).all()).encode())
        if live_db.dialect == "mariadb":
            for table in sorted(sa.inspect(connection).get_table_names()):
                digest.update(connection.exec_driver_sql(f"SHOW CREATE TABLE `{table}`").one()[1].encode())
        digest.update(repr(connection.exec_driver_sql("SELECT * FROM alembic_version").all()).encode())
    return digest.hexdigest()


@pytest.fixture
def read_only_checked(monkeypatch: pytest.MonkeyPatch) -> Callable[[Live], AbstractContextManager[None]]:
    """The live database is unchanged by what runs in the block; on PostgreSQL, plan's read transaction, seen
    from another connection right before it ends, holds no lock stronger than ACCESS SHARE and no
    transaction id (a transaction gets one at its first write)."""

    @contextmanager
    def checked(live_db: Live) -> Iterator[None]:
        seen: list[list[Any]] = []
        if live_db.dialect == "postgresql":
            name = live_db.engine.url.database

            def locks(connection: sa.Connection) -> None:
                query = sa.text(
                    "SELECT l.locktype, l.mode, c.relname FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " LEFT JOIN pg_class c ON c.oid = l.relation"
                    " WHERE a.application_name = :name AND a.datname = :database AND l.locktype <> 'virtualxid'"
                )
                with live_db.engine.connect() as other:
                    seen.append(list(other.execute(query, {"name": live.APPLICATION_NAME, "database": name})))

            monkeypatch.setattr(live, "before_read_ends", locks)
        before = checksum(live_db)
        yield
        assert checksum(live_db) == before, "plan changed the live database"
        if live_db.dialect == "postgresql":
            assert len(seen) == 1, "plan's read transaction was not seen"
            modes = {(locktype, mode) for locktype, mode, _ in seen[0]}
            assert ("relation", "AccessShareLock") in modes, seen  # it did read tables: the check sees its locks
            assert modes == {("relation", "AccessShareLock")}, seen

    return checked


def run_plan(live_db: Live, checked: Callable[[Live], AbstractContextManager[None]], *options: str) -> Result:
    with checked(live_db):
        return live_db.plan(*options)


def revision_of(report: dict[str, Any], revision: str) -> dict[str, Any]:
    return next(found for found in report["revisions"] if found["revision"] == revision)


DUPLICATE = {
    "sqlite": "OperationalError: duplicate column name: updated_at",
    "postgresql": 'DuplicateColumn: column "updated_at" of relation "player_wellness_state" already exists',
    "mariadb": "OperationalError: (1060, \"Duplicate column name 'updated_at'\")",
}


@pytest.mark.usefixtures("no_scratch_left")
def test_schema_ahead_of_alembic_version(
    live_database: Live, read_only_checked: Callable[[Live], AbstractContextManager[None]]
) -> None:
    """The post-mortem: updated_at added by hand (as text) before its revision ran."""
    live_database.upgrade("2b7d4c8e0a22")
    live_database.execute("ALTER TABLE player_wellness_state ADD COLUMN updated_at VARCHAR(20)")
    result = run_plan(live_database, read_only_checked, "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["heads"] == ["2b7d4c8e0a22"]
    assert [found["revision"] for found in report["revisions"]] == ["3c9e6a0b1d33", "4d1f7b2c3e44", "5e2a9c1d7f55"]
    added = revision_of(report, "3c9e6a0b1d33")
    assert added["original"] == {
        "status": "fails",
        "error": DUPLICATE[live_database.dialect],
        "path": str(live_database.versions / "3c9e6a0b1d33_add_updated_at.py"),
        "line": 20,
        "op": "op.add_column",
    }
    [op] = added["ops"]
    assert (op["line"], op["op"], op["action"]) == (20, "op.add_column", "skip (exists)")
    assert "player_wellness_state" in op["detail"] and "updated_at" in op["detail"]
    [drift] = op["drift"]
    assert drift.startswith("column player_wellness_state.updated_at: the chain makes ")
    assert "VARCHAR(20) NULL" in drift.split("the database has ")[1]
    later = revision_of(report, "4d1f7b2c3e44")
    assert [(op["line"], op["action"]) for op in later["ops"]] == [(21, "run"), (22, "run")]
    assert later["original"]["status"] == "not reached"
    assert (
        report["copy"]["method"]
        == {
            "sqlite": "sqlite_master",
            "postgresql": "pg_dump",
            "mariadb": "SHOW CREATE TABLE",
        }[live_database.dialect]
    )


@pytest.mark.usefixtures("no_scratch_left")
def test_half_applied_revision(
    live_database: Live, read_only_checked: Callable[[Live], AbstractContextManager[None]]
) -> None:
    """A deploy died after the first op of 5e2a9c1d7f55 (each DDL commits at once on MariaDB): the column is
    there, the index and the version bump are not."""
    live_database.upgrade("4d1f7b2c3e44")
    live_database.execute("ALTER TABLE players ADD COLUMN nickname VARCHAR(40)")
    result = run_plan(live_database, read_only_checked)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("5e2a9c1d7f55 ")))
    assert lines[start + 1 :] == [
        "  16  op.add_column    skip (exists)  skipped op.add_column(players.nickname): column exists",
        "  17  op.execute       run",  # already safe: its UPDATE sets values that do not depend on what it sets
        "  18  op.create_index  run",
        f"  original: fails at line 16 (op.add_column): {duplicate(live_database.dialect, 'players', 'nickname')}",
        "the original chain fails at 5e2a9c1d7f55; the rewritten chain runs",
    ]


def duplicate(dialect: str, table: str, column: str) -> str:
    return DUPLICATE[dialect].replace("player_wellness_state", table).replace("updated_at", column)


@pytest.mark.usefixtures("no_scratch_left")
def test_a_clean_deploy_exits_0(
    live_database: Live, read_only_checked: Callable[[Live], AbstractContextManager[None]]
) -> None:
    live_database.upgrade("2b7d4c8e0a22")
    result = run_plan(live_database, read_only_checked, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {found["original"]["status"] for found in report["revisions"]} == {"runs"}
    actions = [op["action"] for found in report["revisions"] for op in found["ops"]]
    assert actions == ["run"] * 6


@pytest.mark.usefixtures("no_scratch_left")
def test_nothing_pending(live_database: Live) -> None:
    live_database.upgrade("head")
    result = live_database.plan()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"idempotify plan: {sa.engine.make_url(live_database.url).render_as_string()} is at 5e2a9c1d7f55; "
        "nothing pending"
    ]


@pytest.mark.usefixtures("no_scratch_left")
def test_seed_rows_are_copied(
    live_database: Live, read_only_checked: Callable[[Live], AbstractContextManager[None]]
) -> None:
    """The lookup table made and filled by hand before its revision: the copy has its rows, so the seed insert's
    guard skips it as it will on the live database."""
    live_database.upgrade("1a0c5e2f9b11")
    live_database.execute(
        "CREATE TABLE wellness_statuses (code VARCHAR(16) PRIMARY KEY, label VARCHAR(40) NOT NULL)",
        "INSERT INTO wellness_statuses (code, label) VALUES ('fit', 'Fit'), ('injured', 'Injured')",
    )
    result = run_plan(live_database, read_only_checked, "--format", "json")
    report = json.loads(result.stdout)
    seeded = revision_of(report, "2b7d4c8e0a22")
    assert [(op["op"], op["action"], op["detail"]) for op in seeded["ops"][:2]] == [
        ("op.create_table", "skip (exists)", "skipped op.create_table(wellness_statuses): table exists"),
        ("op.bulk_insert", "skip (exists)", "skipped op.bulk_insert(wellness_statuses): row exists"),
    ]
    assert seeded["original"]["status"] == "fails"
    assert seeded["original"]["op"] == "op.create_table"
    assert result.exit_code == 1


@pytest.mark.usefixtures("no_scratch_left")
def test_rows_of_large_tables_are_not_copied_and_their_decisions_are_approximate(
    live_database: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_database.upgrade("1a0c5e2f9b11")
    live_database.execute(
        "CREATE TABLE wellness_statuses (code VARCHAR(16) PRIMARY KEY, label VARCHAR(40) NOT NULL)",
        "INSERT INTO wellness_statuses (code, label) VALUES ('fit', 'Fit'), ('injured', 'Injured')",
    )
    monkeypatch.setattr(live, "ROW_LIMIT", 1)
    report = json.loads(live_database.plan("--format", "json").stdout)
    assert report["copy"]["rows_not_copied"] == ["wellness_statuses"]
    [_, insert, *_] = revision_of(report, "2b7d4c8e0a22")["ops"]
    assert (insert["op"], insert["action"]) == ("op.bulk_insert", "run")
    assert insert["approximate"].startswith("rows of wellness_statuses not copied")


@pytest.mark.usefixtures("no_scratch_left")
def test_already_rewritten_files_take_their_original_from_the_baseline(
    live_database: Live, read_only_checked: Callable[[Live], AbstractContextManager[None]], tmp_path: Path
) -> None:
    live_database.upgrade("2b7d4c8e0a22")
    live_database.execute("ALTER TABLE player_wellness_state ADD COLUMN updated_at VARCHAR(20)")
    shutil.copytree(live_database.versions, tmp_path / "old_versions")
    assert CliRunner().invoke(app, ["-q", str(live_database.versions)]).exit_code == 0
    result = run_plan(live_database, read_only_checked, "--format", "json")
    report = json.loads(result.stdout)
    added = revision_of(report, "3c9e6a0b1d33")
    assert added["rewritten_in_memory"] is False
    assert added["original"]["status"] == "not known"
    [op] = added["ops"]
    assert (op["action"], op["line"]) == ("skip (exists)", op["rewritten_line"])
    assert result.exit_code == 1  # the drift
    with_baseline = live_database.plan("--format", "json", "--baseline", str(tmp_path / "old_versions"))
    original = revision_of(json.loads(with_baseline.stdout), "3c9e6a0b1d33")["original"]
    assert (original["status"], original["line"], original["op"]) == ("fails", 20, "op.add_column")
    assert original["path"] == str(tmp_path / "old_versions" / "3c9e6a0b1d33_add_updated_at.py")


@pytest.mark.usefixtures("no_scratch_left")
def test_postgresql_without_pg_dump_reflects_the_schema(
    read_only_checked: Callable[[Live], AbstractContextManager[None]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("codemod.plan.live.shutil.which", lambda name: None)
    with live_project("postgresql", tmp_path) as live_db:
        live_db.upgrade("2b7d4c8e0a22")
        live_db.execute("ALTER TABLE player_wellness_state ADD COLUMN updated_at VARCHAR(20)")
        result = run_plan(live_db, read_only_checked, "--format", "json")
    report = json.loads(result.stdout)
    assert report["copy"]["method"] == "reflection"
    assert report["copy"]["not_carried"] == [
        "triggers, functions, views and domains (no pg_dump on PATH: the schema is reflected)"
    ]
    added = revision_of(report, "3c9e6a0b1d33")
    assert added["ops"][0]["action"] == "skip (exists)"
    assert added["original"]["error"] == DUPLICATE["postgresql"]
    assert [op["action"] for op in revision_of(report, "4d1f7b2c3e44")["ops"]] == ["run", "run"]


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Live]:
    with live_project("sqlite", tmp_path) as found:
        yield found


def test_text_and_github_formats(sqlite_database: Live) -> None:
    """The formats are the same on every database: SQLite's run is the quickest."""
    live_database = sqlite_database
    live_database.upgrade("2b7d4c8e0a22")
    live_database.execute("ALTER TABLE player_wellness_state ADD COLUMN updated_at VARCHAR(20)")
    text = live_database.plan()
    assert text.exit_code == 1
    assert text.stdout.splitlines()[2:6] == [
        "",
        f"3c9e6a0b1d33 {live_database.versions / '3c9e6a0b1d33_add_updated_at.py'} (rewritten in memory; lines are "
        "the file's)",
        "  20  op.add_column  skip (exists)  skipped op.add_column(player_wellness_state.updated_at): column exists",
        "      drift: column player_wellness_state.updated_at: the chain makes DATETIME NULL; the database has "
        "VARCHAR(20) NULL",
    ]
    github = live_database.plan("--format", "github")
    assert github.exit_code == 1
    path = live_database.versions / "3c9e6a0b1d33_add_updated_at.py"
    assert github.stdout.splitlines()[:2] == [
        f"::error file={path},line=20,title=idempotify plan%3A the original fails here::3c9e6a0b1d33: "
        "op.add_column: OperationalError: duplicate column name: updated_at",
        f"::error file={path},line=20,title=idempotify plan%3A drift::op.add_column is skipped: column "
        "player_wellness_state.updated_at: the chain makes DATETIME NULL; the database has VARCHAR(20) NULL",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+psycopg2://postgres@127.0.0.1:1/test",
            "cannot read postgresql+psycopg2://postgres@127.0.0.1:1/test",
        ),
        ("postgresql+pg8000://postgres@127.0.0.1/test", "no database driver for postgresql+pg8000"),
        ("sqlite:///no/such/file.db", "no such SQLite database file"),
        ("not a url", "bad database URL"),
    ],
)
def test_a_database_plan_cannot_read_exits_2(url: str, message: str, tmp_path: Path) -> None:
    shutil.copytree(DEMO, tmp_path / "demo")
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "demo" / "versions"), "--url", url])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_a_database_at_a_revision_the_chain_does_not_have_exits_2(tmp_path: Path) -> None:
    shutil.copytree(DEMO, tmp_path / "demo")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'live.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('ffffffffffff')")
    engine.dispose()
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "demo" / "versions"), "--url", str(engine.url)])
    assert result.exit_code == 2, result.output
    assert "the database is at revision ffffffffffff, which" in result.stderr


def test_a_rewritten_chain_that_fails_is_said(sqlite_database: Live) -> None:
    """SQL that no guard checks fails on the live schema (a column it reads dropped by hand): both chains fail there."""
    sqlite_database.upgrade("4d1f7b2c3e44")
    sqlite_database.execute("ALTER TABLE players DROP COLUMN name")
    result = sqlite_database.plan("--format", "json")
    assert result.exit_code == 1, result.output
    nickname = revision_of(json.loads(result.stdout), "5e2a9c1d7f55")
    assert [(op["op"], op["action"]) for op in nickname["ops"]] == [
        ("op.add_column", "run"),
        ("op.execute", "fails"),
        ("op.create_index", "not reached"),
    ]
    assert nickname["rewritten_error"] == "OperationalError: no such column: name"
    assert (nickname["original"]["status"], nickname["original"]["line"]) == ("fails", 17)


@pytest.mark.usefixtures("no_scratch_left")
@pytest.mark.parametrize(
    ("dialect", "driver"), [("sqlite", "aiosqlite"), ("postgresql", "asyncpg"), ("mariadb", "aiomysql")]
)
def test_async_drivers(
    dialect: str, driver: str, tmp_path: Path, read_only_checked: Callable[[Live], AbstractContextManager[None]]
) -> None:
    """An async URL reads the live database and makes the copies through an async engine, as verify does."""
    with live_project(dialect, tmp_path) as live_db:
        live_db.upgrade("2b7d4c8e0a22")
        live_db.execute("ALTER TABLE player_wellness_state ADD COLUMN updated_at VARCHAR(20)")
        url = sa.engine.make_url(live_db.url)
        live_db.url = url.set(drivername=f"{url.get_backend_name()}+{driver}").render_as_string(hide_password=False)
        result = run_plan(live_db, read_only_checked, "--format", "json")
    assert result.exit_code == 1, result.output
    added = revision_of(json.loads(result.stdout), "3c9e6a0b1d33")
    assert added["ops"][0]["action"] == "skip (exists)"
    assert added["ops"][0]["drift"]
    expected = DUPLICATE[dialect].replace("DuplicateColumn:", "DuplicateColumnError:")  # asyncpg's own class
    assert added["original"]["error"] == expected
