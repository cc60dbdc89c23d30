"""Every golden fixture, executed: the output builds what the input builds, and survives re-runs and crashes.

On each database, starting from the base schema: the input's upgrade and
downgrade give the expected schemas; the output's, each run twice, reach the
same ones; the output completes a database the input already upgraded (the
schema is ahead of ``alembic_version``) and one where the input died after any
of its ops, each committed at once as on MySQL; and offline SQL is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from codemod.formatting import Style
from codemod.guards import DRIFT, GUARD, helper_functions_source, parts_needed
from codemod.results import OpReport, Outcome
from codemod.runner import rewrite_source
from codemod.verify.execution import Crash, offline_sql_or_error, run_migration
from codemod.verify.schema import snapshot
from tests.base_schema import BASE
from tests.databases import DIALECTS
from tests.fixtures import FIXTURES, Golden, golden_paths, read_golden

Scratch = Callable[[str], AbstractContextManager[sa.Engine]]

CASES = [
    pytest.param(golden, dialect, id=f"{golden.id}-{dialect}")
    for golden in (read_golden(path) for path in golden_paths())
    for dialect in golden.dialects
    if golden.output != golden.input
]


def _state(engine: sa.Engine) -> dict[str, Any]:
    """The schema, and the rows of every table: a guard that loses seed rows fails as one that loses a column."""
    state = snapshot(engine)
    with engine.connect() as connection:
        for table in sa.inspect(connection).get_table_names():
            quoted = connection.dialect.identifier_preparer.quote(table)
            rows = connection.execute(sa.text(f"SELECT * FROM {quoted}")).all()
            state[f"rows of {table}"] = sorted(repr(tuple(row)) for row in rows)
    return state


# How an op left unguarded fails on what it already did: the database refuses it, or, in a batch block on SQLite,
# Alembic's copy finds no column to drop (KeyError).
_FAILS_DONE = (sa.exc.DBAPIError, KeyError)


def _fresh(engine: sa.Engine, golden: Golden | None = None) -> sa.Engine:
    """The base schema, holding the golden's rows (``# rows:``)."""
    BASE.create_all(engine)
    with engine.begin() as connection:
        for table, rows in (golden.rows if golden is not None else {}).items():
            connection.execute(BASE.tables[table].insert(), rows)
    return engine


def _run(engine: sa.Engine, golden: Golden, source: str, function: str, **options: Any) -> int:
    return run_migration(engine, source, function, naming_convention=golden.naming_convention, **options)


def _expected(golden: Golden, dialect: str, scratch: Scratch) -> tuple[dict[str, Any], dict[str, Any], int, int]:
    """The schemas after the input's upgrade and downgrade, and how many ops each ran."""
    with scratch(dialect) as engine:
        _fresh(engine, golden)
        upgrade_ops = _run(engine, golden, golden.input, "upgrade")
        upgraded = _state(engine)
        downgrade_ops = _run(engine, golden, golden.input, "downgrade")
        return upgraded, _state(engine), upgrade_ops, downgrade_ops


@pytest.mark.parametrize(("golden", "dialect"), CASES)
def test_output_builds_the_same_schema_and_reruns(
    golden: Golden, dialect: str, scratch: Scratch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upgraded, downgraded, _, _ = _expected(golden, dialect, scratch)
    # With the drift check a shared helpers module would give it (an inline block leaves it out; ``_idempotify``
    # cut to the parts the file's guards need, as in its block, and the drift check's), from a file, as Alembic
    # loads it: the check reads the op from its source. A re-run over what the ops made warns of nothing.
    source = golden.output + "\n\n" + helper_functions_source([GUARD, DRIFT], parts=parts_needed(golden.output))
    output = tmp_path / "migration.py"
    output.write_text(source, encoding="utf-8")
    with scratch(dialect) as engine:
        _fresh(engine, golden)
        _run(engine, golden, source, "upgrade", path=output)
        assert _state(engine) == upgraded
        if not golden.reruns:  # its first unguarded op fails, before any data change runs again
            with pytest.raises(_FAILS_DONE):
                _run(engine, golden, source, "upgrade", path=output)
            assert _state(engine) == upgraded, "a second upgrade that failed changed the schema or the rows"
        else:
            with caplog.at_level(logging.WARNING, logger="alembic"):
                _run(engine, golden, source, "upgrade", path=output)
            assert _state(engine) == upgraded, "a second upgrade changed the schema or the rows"
            assert [record.getMessage() for record in caplog.records] == [], "what the ops made differs from them"
        _run(engine, golden, golden.output, "downgrade")
        assert _state(engine) == downgraded
        _run(engine, golden, golden.output, "downgrade")
        assert _state(engine) == downgraded, "a second downgrade changed the schema"


@pytest.mark.parametrize(("golden", "dialect"), CASES)
def test_output_completes_a_schema_already_upgraded_by_the_input(
    golden: Golden, dialect: str, scratch: Scratch
) -> None:
    with scratch(dialect) as engine:
        _fresh(engine, golden)
        _run(engine, golden, golden.input, "upgrade")
        upgraded = _state(engine)
        if not golden.reruns:
            with pytest.raises(_FAILS_DONE):
                _run(engine, golden, golden.output, "upgrade")
        else:
            _run(engine, golden, golden.output, "upgrade")
        assert _state(engine) == upgraded


@pytest.mark.parametrize(("golden", "dialect"), CASES)
@pytest.mark.parametrize("function", ["upgrade", "downgrade"])
def test_output_completes_the_input_after_a_crash_after_any_op(
    golden: Golden, dialect: str, function: str, scratch: Scratch
) -> None:
    upgraded, downgraded, upgrade_ops, downgrade_ops = _expected(golden, dialect, scratch)
    expected, ops = (upgraded, upgrade_ops) if function == "upgrade" else (downgraded, downgrade_ops)
    for crash_after in range(1, ops):
        with scratch(dialect) as engine:
            _fresh(engine, golden)
            if function == "downgrade":
                _run(engine, golden, golden.input, "upgrade")
            with pytest.raises(Crash):
                _run(engine, golden, golden.input, function, crash_after=crash_after)
            try:
                _run(engine, golden, golden.output, function)
            except _FAILS_DONE:
                if golden.reruns or function == "downgrade":
                    raise
                continue  # failed loudly, on an op left unguarded beside a data change, as the original fails
            assert _state(engine) == expected, f"{function} stopped after op {crash_after} of {ops}"


def _offline(golden: Golden, source: str, dialect: str, function: str) -> str:
    return offline_sql_or_error(source, dialect, function, naming_convention=golden.naming_convention)


@pytest.mark.parametrize(("golden", "dialect"), CASES)
@pytest.mark.parametrize("function", ["upgrade", "downgrade"])
def test_offline_sql_is_unchanged(golden: Golden, dialect: str, function: str) -> None:
    assert _offline(golden, golden.output, dialect, function) == _offline(golden, golden.input, dialect, function)


def test_create_table_reuses_an_enum_type_left_behind(scratch: Scratch) -> None:
    """PostgreSQL: drop_table leaves the enum type it created; the original create_table then fails on it."""
    golden = read_golden(FIXTURES / "create_table" / "enum_column.py")
    with scratch("postgresql") as fresh:
        _fresh(fresh)
        _run(fresh, golden, golden.input, "upgrade")
        expected = _state(fresh)
    with scratch("postgresql") as engine:
        _fresh(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TYPE run_status AS ENUM ('queued', 'done')")
        with pytest.raises(sa.exc.ProgrammingError, match="already exists"):
            _run(engine, golden, golden.input, "upgrade")
        _run(engine, golden, golden.output, "upgrade")
        assert _state(engine) == expected
        _run(engine, golden, golden.output, "downgrade")
        _run(engine, golden, golden.output, "upgrade")  # after a downgrade, as a rolled-back deploy retried
        assert _state(engine) == expected


def test_an_enum_type_with_other_labels_is_not_reused(scratch: Scratch) -> None:
    golden = read_golden(FIXTURES / "create_table" / "enum_column.py")
    with scratch("postgresql") as engine:
        _fresh(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TYPE run_status AS ENUM ('legacy')")
        with pytest.raises(sa.exc.ProgrammingError, match="already exists"):
            _run(engine, golden, golden.output, "upgrade")


ABSENT_TABLE = """\
from alembic import op
import sqlalchemy as sa

revision = "a1"


def upgrade():
    op.add_column("ghost", sa.Column("c", sa.Integer))
    op.create_index("ix_ghost_c", "ghost", ["c"])


def downgrade():
    op.drop_index("ix_ghost_c", table_name="ghost")
    op.drop_column("ghost", "c")
"""


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("function", ["upgrade", "downgrade"])
def test_an_op_on_a_missing_table_fails_as_the_original_does(dialect: str, function: str, scratch: Scratch) -> None:
    """Skipping it would let alembic_version move on over a schema that is not what the chain says."""
    output, _ = rewrite_source(ABSENT_TABLE.encode(), Style())
    assert b"skip_without_table=True" not in output
    for source in (ABSENT_TABLE, output.decode()):
        with scratch(dialect) as engine, pytest.raises(sa.exc.DBAPIError):
            run_migration(engine, source, function)


SHARED_HELPER = """\
from alembic import op

revision = "a1"


def upgrade():
    _drop_ghost_index()


def downgrade():
    _drop_ghost_index()
    op.drop_table("ghost")


def _drop_ghost_index():
    op.drop_index("ix_ghost_c", table_name="ghost")
"""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_helper_skips_on_a_missing_table_only_where_every_caller_drops_it(dialect: str, scratch: Scratch) -> None:
    """downgrade() drops ghost after the helper, upgrade() does not: in upgrade the index drop on a missing table
    fails as the original's does (the golden drop_index/helper_then_caller_drops_table has the other side)."""
    output, _ = rewrite_source(SHARED_HELPER.encode(), Style())
    assert b"gone=" not in output.partition(b"# idempotify: generated")[0]
    for source in (SHARED_HELPER, output.decode()):
        with scratch(dialect) as engine, pytest.raises(sa.exc.DBAPIError):
            run_migration(engine, source, "upgrade")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_data_changes_that_do_not_re_run_together_are_not_run_again(dialect: str, scratch: Scratch) -> None:
    """A value copied, then cleared: each UPDATE re-runs alike on its own, but a re-run of the pair copies the
    NULLs. With the add_column before them guarded, a re-run lost the values, silently; it is left unguarded,
    and the re-run fails on it, as the original's does, with the rows as they were."""
    golden = read_golden(FIXTURES / "execute" / "data_changes_that_do_not_rerun.py")
    _, reports = rewrite_source(golden.input.encode(), Style())
    assert [report.outcome for report in reports if report.call != "op.drop_column"] == [Outcome.UNGUARDED] * 3
    assert reports[0].reason.startswith("next to a data change that does not re-run alike")
    with scratch(dialect) as engine:
        _fresh(engine, golden)
        _run(engine, golden, golden.output, "upgrade")
        upgraded = _state(engine)
        with pytest.raises(sa.exc.DBAPIError):
            _run(engine, golden, golden.output, "upgrade")
        rerun = _state(engine)
    assert upgraded["rows of accounts"] == ["(1, 'ann', None, 'A-1')", "(2, 'bob', None, None)"]
    assert rerun == upgraded


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("made", "missing"),
    [
        (0, "op.create_table(traces): the table is there without its index on (project_id)"),
        (1, "op.create_table(spans): the table is there without its index ix_spans_name_and_the_time_it_started_at"),
        (2, "op.create_table(events): the table is there without its index ix_events_span_id"),
        (3, "op.create_table(hyperlinks): the table is there without its index ix_hyperlinks_target"),
    ],
)
def test_a_table_left_without_its_indexes_by_a_deploy_that_died_is_not_skipped(
    dialect: str, made: int, missing: str, scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    """create_table sends CREATE TABLE, then a CREATE INDEX for each index: where DDL is not transactional a
    deploy may die between them. A guard that skipped the op on finding the table would leave the index out
    for good; the op runs instead, and fails loudly as the original does, saying what is missing. Each of
    the fixture's tables looks for its index another way: by its columns (index=True), by a long name (cut
    to the database's length), by its name."""
    golden = read_golden(FIXTURES / "create_table" / "with_indexes.py")
    for source in (golden.input, golden.output):
        with scratch(dialect) as engine:
            _fresh(engine)
            metadata = sa.MetaData()
            namespace: dict[str, Any] = {}
            exec(golden.input.partition("def downgrade")[0], namespace)
            namespace["op"] = _Recorder(metadata)
            namespace["upgrade"]()
            tables = list(metadata.tables.values())
            with engine.begin() as connection:  # what the deploy made: the tables before, and this one bare
                for table in tables[:made]:
                    table.create(connection)
                tables[made].indexes.clear()
                tables[made].create(connection)
            caplog.clear()
            with caplog.at_level(logging.WARNING), pytest.raises(sa.exc.DBAPIError):
                _run(engine, golden, source, "upgrade")
            warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
            assert warned == (
                []
                if source == golden.input
                else [
                    f"{missing}; the op runs, and fails as it does unguarded: make the index (or drop the table) by "
                    "hand, then run it again"
                ]
            )


def _golden_of(source: str) -> tuple[Golden, list[OpReport]]:
    """A golden case of a migration written in a test, its output as idempotify writes it, and its reports."""
    output, reports = rewrite_source(source.encode(), Style())
    return Golden(Path("migration.py"), source, output.decode()), reports


_ACCOUNTS = """
from alembic import op
import sqlalchemy as sa


def upgrade():
    op.create_table("owners", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("owners.id"), index=True),
        sa.Column("email", sa.String(50), index=True),
        sa.UniqueConstraint("email"),
    )
"""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_index_on_the_columns_of_a_constraint_is_not_taken_for_the_op_s_own(
    dialect: str, scratch: Scratch, caplog: pytest.LogCaptureFixture
) -> None:
    """A deploy that died after the CREATE TABLE of accounts left it with the index of its unique constraint on
    email and, on MariaDB, the one MySQL makes for the foreign key on owner_id: neither is the op's index=True
    index. Taken for them, the guard skipped the op and the indexes were never made, silently; the op runs, and
    fails as the original does, naming both."""
    golden, _ = _golden_of(_ACCOUNTS)
    with scratch(dialect) as engine:
        metadata = sa.MetaData()
        sa.Table("owners", metadata, sa.Column("id", sa.Integer, primary_key=True))
        owner_id = sa.Column("owner_id", sa.Integer, sa.ForeignKey("owners.id"))
        email = sa.Column("email", sa.String(50))
        sa.Table("accounts", metadata, sa.Column("id", sa.Integer, primary_key=True), owner_id, email)
        sa.UniqueConstraint(email)
        metadata.create_all(engine)
        with caplog.at_level(logging.WARNING), pytest.raises(sa.exc.DBAPIError):
            _run(engine, golden, golden.output, "upgrade")
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warned == [
        "op.create_table(accounts): the table is there without its index on (owner_id), on (email); the op runs, "
        "and fails as it does unguarded: make the index (or drop the table) by hand, then run it again"
    ]


_INSERT_THEN_DROP = """
from alembic import op
import sqlalchemy as sa


def upgrade():
    stacks = sa.table("stacks", sa.column("name", sa.String))
    op.bulk_insert(stacks, [{"name": "default"}])
    with op.batch_alter_table("stacks") as batch_op:
        batch_op.drop_column("is_shared")
"""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_re_run_does_not_make_a_data_change_again_where_the_original_fails(dialect: str, scratch: Scratch) -> None:
    """zenml's 7500f434b71c inserts a default stack, then drops columns. Re-run after its version bump was lost,
    the original inserts again and fails on the drop; with the drop guarded, the rewrite inserted the row again
    and went on, silently. The drop, the op next to the insert, is left unguarded: it fails as the original."""
    golden, reports = _golden_of(_INSERT_THEN_DROP)
    assert [report.outcome for report in reports] == [Outcome.UNGUARDED, Outcome.UNGUARDED]
    with scratch(dialect) as engine:
        metadata = sa.MetaData()
        sa.Table("stacks", metadata, sa.Column("name", sa.String(20)), sa.Column("is_shared", sa.Boolean))
        metadata.create_all(engine)
        _run(engine, golden, golden.output, "upgrade")
        with pytest.raises(_FAILS_DONE):
            _run(engine, golden, golden.output, "upgrade", crash_after=10)  # each op committed, as on MariaDB
        with engine.connect() as connection:
            names = connection.execute(sa.text("SELECT name FROM stacks")).scalars().all()
        # the original fails alike, after inserting again (each op commits at once)
        assert names == ["default", "default"]


_IF_NOT_EXISTS = """
from alembic import op
import sqlalchemy as sa


def upgrade():
    op.create_table(
        "codes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(10), index=True),
        if_not_exists=True,
    )
"""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_create_table_if_not_exists_that_makes_an_index_is_guarded(dialect: str, scratch: Scratch) -> None:
    """Alembic sends CREATE TABLE IF NOT EXISTS, then CREATE INDEX without it: a second run of the original fails
    on the index. Called already idempotent, it was left so; it is guarded, and its re-run goes through."""
    golden, reports = _golden_of(_IF_NOT_EXISTS)
    assert [report.outcome for report in reports] == [Outcome.GUARDED]
    with scratch(dialect) as engine:
        _run(engine, golden, golden.input, "upgrade")
        made = _state(engine)
        with pytest.raises(sa.exc.DBAPIError):
            _run(engine, golden, golden.input, "upgrade")
    with scratch(dialect) as engine:
        _run(engine, golden, golden.output, "upgrade")
        _run(engine, golden, golden.output, "upgrade")
        assert _state(engine) == made


class _Recorder:
    """Stands in for ``alembic.op`` while a fixture's upgrade() is run to read its tables: ``create_table``
    builds each in ``metadata``; ``f`` is the name it is given."""

    def __init__(self, metadata: sa.MetaData) -> None:
        self.metadata = metadata

    def create_table(self, name: str, *items: Any) -> sa.Table:
        return sa.Table(name, self.metadata, *items)

    def f(self, name: str) -> str:
        return name


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_key_swapped_in_a_helper_given_the_batch_op_is_made_on_a_fresh_database(
    dialect: str, scratch: Scratch
) -> None:
    """The ops of a function given a batch op run when the caller's block ends, after every guard in it was
    decided: they are planned together, as a block's own are. Apache Airflow's 0041 on MariaDB, rewritten,
    left its table with no primary key, with exit 0: the create's guard saw the old key (MySQL names every
    primary key PRIMARY) and skipped; the drop then ran. The golden runs only on SQLite and PostgreSQL, whose
    re-run it checks; this is its fresh upgrade on every database."""
    golden = read_golden(FIXTURES / "create_primary_key" / "batch_swap_in_helper.py")
    output, _ = rewrite_source(golden.input.encode(), Style())
    upgraded, _, _, _ = _expected(golden, dialect, scratch)
    with scratch(dialect) as engine:
        _fresh(engine, golden)
        _run(engine, golden, output.decode(), "upgrade")
        assert _state(engine) == upgraded


_SWALLOWED = """
from alembic import op
import sqlalchemy as sa


def upgrade():
    op.create_table(
        "places",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(20)),
        sa.UniqueConstraint("name", name="uq_places_name"),
    )
    try:
        op.drop_constraint("uq_places_old", "places", type_="unique")
        op.create_index("ix_places_name", "places", ["name"])
    except Exception:
        pass
"""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_op_whose_failure_a_try_goes_on_from_is_left_to_fail(dialect: str, scratch: Scratch) -> None:
    """In a ``try`` whose ``except`` goes on, an op's failure decides what runs next: the original's drop fails
    (there is no such constraint: by design, as Superset's b4456560d4f3 on MariaDB, whose constraint is named
    otherwise there), so its index is never made. A guard that skips the drop instead made the index: another
    schema, with exit 0. Each statement runs on its own, as on MySQL (on PostgreSQL a failure in a transaction
    would undo the rest)."""
    golden, reports = _golden_of(_SWALLOWED)
    assert [report.outcome for report in reports if report.call == "op.drop_constraint"] == [Outcome.UNGUARDED]
    states = []
    for source in (golden.input, golden.output):
        with scratch(dialect) as engine:
            run_migration(engine, source, "upgrade", crash_after=10**6)  # no crash: each statement commits
            states.append(_state(engine))
    assert states[1] == states[0]
    assert "ix_places_name" not in repr(states[0])
