"""``idempotify verify`` on SQLite, PostgreSQL and MariaDB: it names the revisions that fail, passes
idempotify's output, catches a wrong guard, and leaves no scratch database behind."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from codemod.cli import app
from codemod.verify import database
from codemod.verify.chain import load_chain
from codemod.verify.database import scratch_server
from codemod.verify.execution import offline_sql
from codemod.verify.scenarios import ChainVerifier
from tests.bench import write_chain
from tests.conftest import require_dialect
from tests.databases import DIALECTS, SERVERS
from tests.fixtures import FIXTURES

DEMO = FIXTURES / "demo" / "versions"
REVISIONS = ["1a0c5e2f9b11", "2b7d4c8e0a22", "3c9e6a0b1d33", "4d1f7b2c3e44"]


def _leftovers(dialect: str, prefix: str) -> list[str]:
    if dialect == "sqlite":
        return []
    engine = sa.create_engine(SERVERS[dialect])
    query = {
        "postgresql": "SELECT datname FROM pg_database WHERE datname LIKE :pattern",
        "mariadb": "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :pattern",
    }[dialect]
    with engine.connect() as connection:
        names = [row[0] for row in connection.execute(sa.text(query), {"pattern": prefix + "%"})]
    engine.dispose()
    return names


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database to verify on; afterwards none of the scratch databases this test made may be left."""
    name: str = request.param
    require_dialect(name)
    prefix = f"{database.PREFIX}t{uuid.uuid4().hex[:6]}_"
    monkeypatch.setattr(database, "PREFIX", prefix)
    yield name
    assert _leftovers(name, prefix) == [], "verify left scratch databases behind"


@pytest.fixture
def chains(tmp_path: Path) -> tuple[Path, Path]:
    """The demo chain as written (``original``) and rewritten by idempotify (``rewritten``)."""
    original, rewritten = tmp_path / "original" / "versions", tmp_path / "rewritten" / "versions"
    shutil.copytree(DEMO, original)
    shutil.copytree(DEMO, rewritten)
    assert CliRunner().invoke(app, ["-q", str(rewritten)]).exit_code == 0
    return original, rewritten


def verify(dialect: str, versions: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    url = [] if dialect == "sqlite" else ["--url", SERVERS[dialect]]
    result = CliRunner().invoke(app, ["verify", str(versions), *url, "--format", "json", *args])
    return result, json.loads(result.stdout) if result.stdout.startswith("{") else {}


def statuses(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        revision["revision"]: {name: scenario["status"] for name, scenario in revision["scenarios"].items()}
        for revision in report["revisions"]
    }


def test_an_unguarded_chain_fails_naming_each_revision(dialect: str, chains: tuple[Path, Path]) -> None:
    original, _ = chains
    result, report = verify(dialect, original)
    assert result.exit_code == 1
    found = statuses(report)
    assert list(found) == REVISIONS
    assert {revision: found[revision]["re-run"] for revision in REVISIONS} == dict.fromkeys(REVISIONS, "fail")
    detail = report["revisions"][2]["scenarios"]["re-run"]["detail"]
    assert "3c9e6a0b1d33_add_updated_at.py:20:" in detail


def test_idempotify_output_passes_against_its_baseline(dialect: str, chains: tuple[Path, Path]) -> None:
    original, rewritten = chains
    result, report = verify(dialect, rewritten, "--baseline", str(original))
    assert result.exit_code == 0, result.stdout
    found = statuses(report)
    one_op = {"3c9e6a0b1d33", "4d1f7b2c3e44"}  # a single op, or a single batch block: nothing to stop between
    for revision in REVISIONS:
        expected = dict.fromkeys(found[revision], "ok")
        if revision in one_op:
            expected["crash"] = "not checked"
        assert found[revision] == expected


SEEDED_AT_RUN_TIME = """from datetime import datetime
import uuid

from alembic import op
import sqlalchemy as sa

revision = 's1'
down_revision = None


def upgrade():
    roles = op.create_table(
        'roles',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(20)),
        sa.Column('created', sa.DateTime()),
    )
    op.bulk_insert(
        roles,
        [
            {'id': str(uuid.uuid4()), 'name': 'admin', 'created': datetime.now()},
            {'id': uuid.uuid4().hex, 'name': 'guest', 'created': datetime.utcnow()},
        ],
    )


def downgrade():
    op.drop_table('roles')
"""


def test_seed_values_made_at_run_time_are_not_a_difference(dialect: str, tmp_path: Path) -> None:
    """A seed row's uuid4() or now() differs from run to run, and so between the baseline's database and the
    rewrite's, and in their --sql output: the rewrite is not to blame. A seed row lost or changed still is."""
    original, rewritten = tmp_path / "original", tmp_path / "rewritten"
    for folder in (original, rewritten):
        folder.mkdir()
        (folder / "s1.py").write_text(SEEDED_AT_RUN_TIME, encoding="utf-8")
    assert CliRunner().invoke(app, ["-q", str(rewritten)]).exit_code == 0
    result, report = verify(dialect, rewritten, "--baseline", str(original))
    assert result.exit_code == 0, result.stdout
    assert set(statuses(report)["s1"].values()) <= {"ok", "not checked"}, statuses(report)
    path = rewritten / "s1.py"
    path.write_text(path.read_text(encoding="utf-8").replace("'name': 'admin'", "'name': 'root'"), encoding="utf-8")
    result, report = verify(dialect, rewritten, "--baseline", str(original))
    assert result.exit_code == 1
    assert statuses(report)["s1"]["equivalence"] == "fail"


def test_a_guard_that_tests_the_wrong_column_fails(dialect: str, chains: tuple[Path, Path]) -> None:
    original, rewritten = chains
    path = rewritten / "3c9e6a0b1d33_add_updated_at.py"
    text = path.read_text(encoding="utf-8")
    wrong = text.replace(
        '"op.add_column: no column", "player_wellness_state", "updated_at"',
        '"op.add_column: no column", "player_wellness_state", "created_at"',
    )
    assert wrong != text
    path.write_text(wrong, encoding="utf-8")
    result, report = verify(dialect, rewritten, "--baseline", str(original))
    assert result.exit_code == 1
    failing = {revision for revision, found in statuses(report).items() if "fail" in found.values()}
    assert failing == {"3c9e6a0b1d33"}
    assert statuses(report)["3c9e6a0b1d33"]["re-run"] == "fail"


def test_ctrl_c_still_drops_the_scratch_databases(dialect: str, chains: tuple[Path, Path]) -> None:
    _, rewritten = chains
    chain = load_chain([rewritten])

    def interrupt(revision: object) -> None:
        if revision is chain[2]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), scratch_server(None if dialect == "sqlite" else SERVERS[dialect]) as server:
        ChainVerifier(server).verify(chain, interrupt)


def test_the_committed_version_is_the_default_baseline(chains: tuple[Path, Path]) -> None:
    original, _ = chains

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=original, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "chain")
    assert CliRunner().invoke(app, ["-q", str(original)]).exit_code == 0
    result, report = verify("sqlite", original)
    assert result.exit_code == 0
    assert {found["equivalence"] for found in statuses(report).values()} == {"ok"}


def test_without_a_baseline_equivalence_is_not_checked(chains: tuple[Path, Path]) -> None:
    _, rewritten = chains
    result, report = verify("sqlite", rewritten)
    assert result.exit_code == 0
    assert {found["equivalence"] for found in statuses(report).values()} == {"not checked"}


def test_the_text_report_names_failures_with_file_and_line(chains: tuple[Path, Path]) -> None:
    original, _ = chains
    result = CliRunner().invoke(app, ["verify", str(original)])
    assert result.exit_code == 1
    assert "3c9e6a0b1d33 re-run: fail (other): upgrade run again:" in result.stdout
    assert "4 of 4 revisions fail" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "postgresql+psycopg2://postgres@127.0.0.1:1/test"], "cannot connect to postgresql"),
        (["--url", "nosuchdb://x"], "bad database URL"),
        (["--naming-convention", "{not json"], "--naming-convention is not valid JSON"),
        (["--naming-convention", "no_such_module:metadata"], "No module named 'no_such_module'"),
    ],
)
def test_verify_that_cannot_run_exits_2(chains: tuple[Path, Path], args: list[str], message: str) -> None:
    _, rewritten = chains
    result = CliRunner().invoke(app, ["verify", str(rewritten), *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_revision_that_does_not_import_exits_2(chains: tuple[Path, Path]) -> None:
    _, rewritten = chains
    (rewritten / "5e0a_broken.py").write_text("revision = '5e0a'\ndown_revision = '4d1f7b2c3e44'\nimport nope\n")
    result = CliRunner().invoke(app, ["verify", str(rewritten)])
    assert result.exit_code == 2
    assert "cannot load the revisions: ModuleNotFoundError" in result.stderr


def test_a_naming_convention_reaches_the_migrations(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    shutil.copytree(FIXTURES / "demo" / "versions", versions)
    (versions / "5e1b_check.py").write_text(
        "from alembic import op\n\nrevision = '5e1b'\ndown_revision = '4d1f7b2c3e44'\n\n\n"
        "def upgrade():\n"
        "    assert op.get_context().opts['target_metadata'].naming_convention['ck'] == 'ck_%(constraint_name)s'\n"
        "    op.create_check_constraint('known', 'players', 'length(name) > 0')\n\n\n"
        "def downgrade():\n    op.drop_constraint('known', 'players', type_='check')\n",
        encoding="utf-8",
    )
    assert CliRunner().invoke(app, ["-q", str(versions)]).exit_code == 0
    require_dialect("postgresql")
    convention = json.dumps({"ck": "ck_%(constraint_name)s"})
    result, report = verify("postgresql", versions, "--naming-convention", convention)
    assert result.exit_code == 0, result.stdout
    assert statuses(report)["5e1b"]["re-run"] == "ok"
    result, report = verify("postgresql", versions)
    assert result.exit_code == 1
    assert "KeyError: 'target_metadata'" in report["revisions"][4]["scenarios"]["upgrade"]["detail"]


def test_x_arguments_and_offline_mode_reach_the_revisions(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a1_tenant.py").write_text(
        "from alembic import context, op\nimport sqlalchemy as sa\n\nrevision = 'a1'\ndown_revision = None\n\n\n"
        "def upgrade():\n"
        "    if not context.is_offline_mode():\n"
        "        tenant = context.get_x_argument(as_dictionary=True)['tenant']\n"
        "        op.create_table(tenant + '_events', sa.Column('id', sa.Integer, primary_key=True))\n\n\n"
        "def downgrade():\n    op.drop_table(context.get_x_argument(as_dictionary=True)['tenant'] + '_events')\n",
        encoding="utf-8",
    )
    assert CliRunner().invoke(app, ["-q", str(versions)]).exit_code == 0
    result, report = verify("sqlite", versions, "-x", "tenant=acme")
    assert result.exit_code == 0, result.stdout
    result, report = verify("sqlite", versions)
    assert result.exit_code == 1
    assert "KeyError: 'tenant'" in report["revisions"][0]["scenarios"]["upgrade"]["detail"]


def test_the_table_is_plain_text_when_not_on_a_terminal(chains: tuple[Path, Path]) -> None:
    _, rewritten = chains
    result = CliRunner().invoke(app, ["verify", str(rewritten)])
    assert result.exit_code == 0
    assert "| 1a0c5e2f9b11 |" in result.stdout
    assert "\x1b[" not in result.stdout


def test_branches_and_a_merge_are_walked_in_dependency_order(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    revisions = {
        "a0": (
            "None",
            "op.create_table('base', sa.Column('id', sa.Integer, primary_key=True))",
            "op.drop_table('base')",
        ),
        "b1": ("'a0'", "op.add_column('base', sa.Column('left', sa.Integer))", "op.drop_column('base', 'left')"),
        "b2": ("'a0'", "op.add_column('base', sa.Column('right', sa.Integer))", "op.drop_column('base', 'right')"),
        "m3": (
            "('b1', 'b2')",
            "op.create_index('ix_base_left_right', 'base', ['left', 'right'])",
            "op.drop_index('ix_base_left_right', table_name='base')",
        ),
    }
    for revision, (down, upgrade, downgrade) in revisions.items():
        (versions / f"{revision}.py").write_text(
            f"from alembic import op\nimport sqlalchemy as sa\n\nrevision = '{revision}'\ndown_revision = {down}\n\n\n"
            f"def upgrade():\n    {upgrade}\n\n\ndef downgrade():\n    {downgrade}\n",
            encoding="utf-8",
        )
    assert CliRunner().invoke(app, ["-q", str(versions)]).exit_code == 0
    result, report = verify("sqlite", versions)
    assert result.exit_code == 0, result.stdout
    order = [revision["revision"] for revision in report["revisions"]]
    assert order[0] == "a0" and order[-1] == "m3" and set(order[1:3]) == {"b1", "b2"}


def test_sigterm_still_drops_the_scratch_databases(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    write_chain(versions, 40)
    private = tmp_path / "tmp"  # verify's temporary directories go here, apart from any other run's
    private.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "codemod", "verify", str(versions)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(private)},
    )
    assert process.stderr is not None
    first = process.stderr.readline()  # the first revision is done: the run is under way, not over
    assert first.startswith(b"[1/40]"), first
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"interrupted; the scratch databases were dropped" in stderr
    assert not list(private.glob("idempotify-verify-*"))


# Rolling back the savepoints of a connection invalidated under them, SQLAlchemy says so; that is the case made here.
@pytest.mark.filterwarnings("ignore:nested transaction already deassociated:sqlalchemy.exc.SAWarning")
def test_an_interrupt_that_breaks_the_connection_ends_the_run_not_as_a_finding(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C inside a database call leaves the connection invalid, and the clean-up on the way out fails
    ("can't reconnect until invalid transaction is rolled back"). That error once passed for the revision's
    failure: the run went on, or ended as an internal error, instead of dropping its databases and exiting 130."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a1.py").write_text(
        "from alembic import op\nimport sqlalchemy as sa\n\nrevision = 'a1'\ndown_revision = None\n\n\n"
        "def upgrade():\n    op.create_table('t', sa.Column('id', sa.Integer, primary_key=True))\n"
        "    op.get_bind().invalidate()  # as an interrupt inside cursor.execute() leaves it\n"
        "    raise KeyboardInterrupt\n\n\ndef downgrade():\n    op.drop_table('t')\n",
        encoding="utf-8",
    )
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(private))
    result, _ = verify(dialect, versions)
    assert result.exit_code == 130, result.output
    assert "interrupted; the scratch databases were dropped" in result.stderr
    assert not list(private.glob("idempotify-verify-*"))


def test_pymysql_scratch_connections_skip_tls_unless_the_url_asks_for_it() -> None:
    """PyMySQL otherwise tries TLS with every server that offers it, and many fail the handshake."""
    require_dialect("mariadb")
    url = sa.engine.make_url(SERVERS["mariadb"]).set(drivername="mysql+pymysql")
    plain = database.Database(url)
    assert plain.run(lambda connection: connection.connection.dbapi_connection.ssl) is False  # type: ignore[union-attr]
    plain.dispose()


def test_offline_runs_log_no_info_lines(caplog: pytest.LogCaptureFixture) -> None:
    """Under an env.py that set alembic's logging to INFO (OpenStack's does), three lines per offline run
    drowned verify's progress lines on stderr."""
    caplog.set_level(logging.INFO)
    source = (
        "from alembic import op\nimport sqlalchemy as sa\n\n"
        "def upgrade():\n    op.add_column('t', sa.Column('c', sa.Integer()))\n"
    )
    assert "ALTER TABLE t ADD COLUMN c INTEGER" in offline_sql(source, "sqlite")
    assert [record.getMessage() for record in caplog.records if record.levelno == logging.INFO] == []
