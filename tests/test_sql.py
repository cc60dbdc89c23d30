"""What ``codemod.sql`` reads from SQL strings, statement by statement, and how the rewrite guards it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from codemod.formatting import Style
from codemod.results import Outcome
from codemod.runner import rewrite_source
from codemod.sql import (
    DATA_CHANGE,
    DELETE_RERUNS,
    NOT_A_SEED,
    TRUNCATE_RERUNS,
    UPDATE_RERUNS,
    Part,
    Rows,
    Value,
    Verbatim,
    read_sql,
)
from codemod.transformer import _READS_DROPPED, DATA_CHANGE_REASONS


def _one(sql: str, dialect: str | None = None) -> Part:
    (part,) = read_sql(sql, dialect)
    return part


@pytest.mark.parametrize(
    ("sql", "op", "args"),
    [
        ("CREATE TABLE s.t (id INT)", "create_table", {"table_name": "t", "schema": "s"}),
        ("DROP TABLE t", "drop_table", {"table_name": "t"}),
        ("ALTER TABLE t ADD COLUMN c INT", "add_column", {"table_name": "t", "column": "c"}),
        ("ALTER TABLE t DROP COLUMN c", "drop_column", {"table_name": "t", "column_name": "c"}),
        ("ALTER TABLE t RENAME TO u", "rename_table", {"old_table_name": "t", "new_table_name": "u"}),
        (
            "ALTER TABLE t RENAME COLUMN a TO b",
            "alter_column",
            {"table_name": "t", "column_name": "a", "new_column_name": "b"},
        ),
        ("CREATE INDEX ix ON t (a)", "create_index", {"index_name": "ix", "table_name": "t"}),
        (
            "CREATE UNIQUE INDEX CONCURRENTLY ix ON t (lower(a))",
            "create_index",
            {"index_name": "ix", "table_name": "t"},
        ),
        ("DROP INDEX CONCURRENTLY s.ix", "drop_index", {"index_name": "ix", "schema": "s"}),
        ("CREATE SEQUENCE q START 5", "create_sequence", {"sequence_name": "q"}),
        ("DROP SEQUENCE q", "drop_sequence", {"sequence_name": "q"}),
        (
            "ALTER SEQUENCE s.q RENAME TO r",
            "rename_sequence",
            {"sequence_name": "q", "schema": "s", "new_sequence_name": "r"},
        ),
        (
            "ALTER TABLE t RENAME CONSTRAINT pk_a TO pk_b",
            "rename_constraint",
            {"table_name": "t", "constraint_name": Verbatim("pk_a"), "new_constraint_name": "pk_b"},
        ),
        ("CREATE TYPE mood AS ENUM ('a')", "create_enum", {"enum_name": "mood"}),
        ("DROP TYPE mood", "drop_enum", {"enum_name": "mood"}),
        (
            "ALTER TABLE t ADD CONSTRAINT uq UNIQUE (a, b)",
            "create_unique_constraint",
            {"constraint_name": Verbatim("uq"), "table_name": "t", "columns": ("a", "b")},
        ),
        (
            "ALTER TABLE t ADD PRIMARY KEY (id)",
            "create_primary_key",
            {"constraint_name": None, "table_name": "t", "columns": ("id",)},
        ),
        (
            "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES s.r (id)",
            "create_foreign_key",
            {
                "constraint_name": Verbatim("fk"),
                "source_table": "t",
                "referent_table": "r",
                "local_cols": ("a",),
                "remote_cols": ("id",),
                "referent_schema": "s",
            },
        ),
        (
            "ALTER TABLE t DROP CONSTRAINT ck",
            "drop_constraint",
            {"table_name": "t", "constraint_name": Verbatim("ck"), "type_": None},
        ),
        (
            "ALTER TABLE t DROP FOREIGN KEY fk",
            "drop_constraint",
            {"table_name": "t", "constraint_name": Verbatim("fk"), "type_": "foreignkey"},
        ),
        ("DROP INDEX ix ON t", "drop_index", {"index_name": "ix", "table_name": "t"}),
        ("ALTER INDEX s.ix RENAME TO iy", "rename_index", {"index_name": "ix", "schema": "s", "new_index_name": "iy"}),
        ("CREATE VIEW v AS SELECT 1", "create_view", {"kind": "view", "view_name": "v"}),
        ("DROP VIEW s.v", "drop_view", {"kind": "view", "view_name": "v", "schema": "s"}),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
            "create_trigger",
            {"kind": "trigger", "trigger_name": "tr", "table_name": "t"},
        ),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = 1; DELETE FROM u; END",
            "create_trigger",
            {"kind": "trigger", "trigger_name": "tr", "table_name": "t"},
        ),
        ("DROP TRIGGER tr ON t", "drop_trigger", {"kind": "trigger", "trigger_name": "tr", "table_name": "t"}),
        ("CREATE EXTENSION citext", "create_extension", {"kind": "extension", "extension_name": "citext"}),
        ("DROP EXTENSION citext", "drop_extension", {"kind": "extension", "extension_name": "citext"}),
        ("CREATE SCHEMA reports", "create_schema", {"kind": "schema", "schema_name": "reports"}),
        ("DROP SCHEMA reports CASCADE", "drop_schema", {"kind": "schema", "schema_name": "reports"}),
        (
            "ALTER TYPE s.mood ADD VALUE 'c' BEFORE 'a'",
            "add_enum_value",
            {"kind": "enum_value", "enum_name": "mood", "schema": "s", "value": "c"},
        ),
        (
            "ALTER TYPE mood RENAME VALUE 'a' TO 'b'",
            "rename_enum_value",
            {"kind": "enum_value", "enum_name": "mood", "value": "a", "new_value": "b"},
        ),
    ],
)
def test_ddl_is_read_as_the_op_it_spells(sql: str, op: str, args: dict[str, Value]) -> None:
    assert replace(_one(sql), rows=None) == Part(op=op, args=args)


@pytest.mark.parametrize(
    ("sql", "dialect", "op", "args"),
    [
        # An argument's name, an OUT argument and a DEFAULT are no part of what tells functions apart.
        (
            "CREATE FUNCTION s.f(a integer, IN b double precision DEFAULT 1, OUT c int, d varchar(10)[]) "
            "RETURNS record AS $$ SELECT 1 $$ LANGUAGE sql",
            None,
            "create_function",
            {"schema": "s", "arguments": ("integer", "double precision", "varchar(10)[]")},
        ),
        (
            "CREATE FUNCTION f(timestamp with time zone, text) RETURNS int LANGUAGE sql AS 'SELECT 1';",
            None,
            "create_function",
            {"arguments": ("timestamp with time zone", "text")},
        ),
        (
            "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql",
            None,
            "create_function",
            {"arguments": ()},
        ),
        ("DROP FUNCTION s.f(value TEXT)", None, "drop_function", {"schema": "s", "arguments": ("text",)}),
        ("DROP FUNCTION f(int, int) CASCADE", None, "drop_function", {"arguments": ("int", "int")}),
        ("DROP FUNCTION f", None, "drop_function", {"arguments": None}),
        # MySQL has one function of a name: its arguments are not read.
        (
            "CREATE FUNCTION f(a INT UNSIGNED) RETURNS INT DETERMINISTIC RETURN a + 1",
            "mysql",
            "create_function",
            {"arguments": None},
        ),
    ],
)
def test_a_function_is_read_with_its_argument_types(
    sql: str, dialect: str | None, op: str, args: dict[str, Value]
) -> None:
    assert _one(sql, dialect) == Part(op=op, args={"kind": "function", "function_name": "f", **args})


_TYPES = "its SQL makes or drops a function with an argument whose type cannot be read"


@pytest.mark.parametrize(
    ("sql", "inert"),
    [
        ("CREATE OR REPLACE FUNCTION f(value text) RETURNS int AS 'SELECT 1' LANGUAGE sql", False),
        ("DROP FUNCTION IF EXISTS f(value text)", False),
        ("CREATE FUNCTION IF NOT EXISTS f(x INT) RETURNS INT RETURN x + 1", False),  # MariaDB's
        ("CREATE SCHEMA IF NOT EXISTS reports", False),
        ("DROP SCHEMA IF EXISTS reports", False),
        ("CREATE TABLE IF NOT EXISTS t (id INT)", False),
        ("DROP INDEX IF EXISTS ix", False),
        ("ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT", False),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", False),
        ("CREATE EXTENSION IF NOT EXISTS pg_trgm", False),
        ("ALTER TABLE t ALTER COLUMN c TYPE BIGINT", False),
        ("ALTER TABLE t ALTER COLUMN c SET NOT NULL", False),
        ("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'c'", False),
        ("DROP TRIGGER IF EXISTS tr ON t", False),
        ("COMMENT ON TABLE t IS 'x'", False),
        ("ALTER SEQUENCE q OWNED BY t.id", False),
        ("ALTER SEQUENCE q INCREMENT BY 5", False),
        ("SELECT 1", True),
        ("SET lock_timeout = '5s'", True),
        ("PRAGMA foreign_keys = OFF", True),
        ("ALTER TABLE t AUTO_INCREMENT = 5", False),
        ("ALTER TABLE t ENGINE=InnoDB", False),
    ],
)
def test_statements_that_re_run_harmlessly_are_safe(sql: str, inert: bool) -> None:
    part = _one(sql)
    assert (part.op, part.reason, part.safe is not None, part.inert) == (None, None, True, inert)


@pytest.mark.parametrize(
    ("sql", "dialect", "reason_starts"),
    [
        ("UPDATE t SET a = 1", None, DATA_CHANGE),
        ("DELETE FROM t", None, DATA_CHANGE),
        ("ALTER TABLE t ALTER COLUMN c TYPE INT USING c::int", None, "its SQL changes a column's type USING"),
        ("ALTER TABLE T ADD COLUMN c INT", None, "its SQL names T, with capitals"),
        ("ALTER TABLE T ADD COLUMN c INT", "mysql", "its SQL names T, with capitals"),
        ("DO $$ BEGIN PERFORM 1; END $$", None, "its SQL: no guard for DO"),
        ("CREATE MATERIALIZED VIEW v AS SELECT 1", None, "its SQL makes a materialized view"),
        ("CREATE TABLE (", None, "its SQL could not be parsed: "),
        ("ALTER SEQUENCE q RESTART WITH 100", None, "its SQL restarts a sequence"),
        ("ALTER TABLE t RENAME CONSTRAINT a", None, "its SQL: no guard for this ALTER TABLE"),
        # A function's argument types, where they could be read two ways or are not plain words.
        ("CREATE FUNCTION f(VARIADIC a int[]) RETURNS int AS 'SELECT 1' LANGUAGE sql", None, _TYPES),
        ("CREATE FUNCTION f(time timestamptz) RETURNS int AS 'SELECT 1' LANGUAGE sql", None, _TYPES),
        ("CREATE FUNCTION f(a interval day) RETURNS int AS 'SELECT 1' LANGUAGE sql", None, _TYPES),
        ("CREATE FUNCTION f(a \"Mood\") RETURNS int AS 'SELECT 1' LANGUAGE sql", None, _TYPES),
        ("CREATE FUNCTION f(a s.mood) RETURNS int AS 'SELECT 1' LANGUAGE sql", None, _TYPES),
        ("CREATE FUNCTION f(a INT UNSIGNED) RETURNS INT DETERMINISTIC RETURN a + 1", None, _TYPES),
        ("CREATE FUNCTION f RETURNS int", None, "its SQL makes a function whose arguments"),
        ("DROP FUNCTION f(int), g(int)", None, "its SQL drops several functions"),
        ("CREATE FUNCTION F() RETURNS int AS 'SELECT 1' LANGUAGE sql", None, "its SQL names F, with capitals"),
    ],
)
def test_what_cannot_be_guarded_says_why(sql: str, dialect: str | None, reason_starts: str) -> None:
    part = _one(sql, dialect)
    assert (part.op, part.safe) == (None, None)
    assert str(part.reason).startswith(reason_starts), part.reason


def test_postgresql_folds_unquoted_names_and_keeps_quoted_ones() -> None:
    part = _one('ALTER TABLE Accounts ADD COLUMN "Region" INT', "postgresql")
    assert part.args == {"table_name": "accounts", "column": "Region"}


def test_a_function_among_other_statements_is_left_unguarded() -> None:
    parts = read_sql("CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql; SELECT 1", None)
    assert str(parts[0].reason).startswith("its SQL: no guard for CREATE FUNCTION")


def test_a_function_made_or_replaced_among_other_statements_is_one_of_them() -> None:
    """Only the function is made again harmlessly: the trigger and the column after it are read on their own."""
    parts = read_sql(
        "CREATE OR REPLACE FUNCTION touch() RETURNS trigger AS $$ BEGIN NEW.u = now(); RETURN NEW; END; $$ "
        "LANGUAGE plpgsql; CREATE TRIGGER trg BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch(); "
        "ALTER TABLE users ADD COLUMN updated_at timestamp",
        None,
    )
    assert [part.op or part.safe for part in parts] == [
        "its SQL says CREATE OR REPLACE",
        "create_trigger",
        "add_column",
    ]


def test_each_statement_and_each_action_is_a_part() -> None:
    parts = read_sql("ALTER TABLE t ADD COLUMN a INT, DROP COLUMN b; SELECT 1", None)
    assert [part.op or part.safe for part in parts] == ["add_column", "drop_column", "its SQL is a query"]


HEADER = "from alembic import op\nimport sqlalchemy as sa\n\nrevision = 'x'\n\n\ndef upgrade():\n"


def _rewrite(body: str) -> tuple[str, list[tuple[Outcome, str]]]:
    output, reports = rewrite_source((HEADER + body).encode(), Style())
    return output.decode()[len(HEADER) :], [(report.outcome, report.reason) for report in reports]


def test_sql_the_parser_cannot_read_is_reported_and_the_rest_still_guarded() -> None:
    body = "    op.execute('ALTER TABLE (')\n    op.add_column('users', sa.Column('age', sa.Integer()))\n"
    output, reports = _rewrite(body)
    assert '    if _idempotify("op.add_column: no column", "users", "age"):\n' in output
    assert "    op.execute('ALTER TABLE (')\n" in output
    assert reports[0][0] is Outcome.UNGUARDED and reports[0][1].startswith("its SQL could not be parsed: ")
    assert reports[1] == (Outcome.GUARDED, "")


def test_several_statements_run_unless_every_one_is_done() -> None:
    output, _ = _rewrite("    op.execute('CREATE TABLE s (id INT); CREATE INDEX ix_s ON s (id)')\n")
    assert (
        '    if _idempotify("op.execute: no table", "s", quiet=True) or _idempotify(\n'
        '        "op.execute: no index", "s", "ix_s"\n'
        "    ):\n"
    ) in output


def test_a_string_mixing_a_guarded_statement_with_one_that_always_runs_is_left_alone() -> None:
    _, reports = _rewrite(
        "    op.execute('ALTER TABLE t ADD COLUMN c INT; ALTER TABLE t ALTER COLUMN d SET NOT NULL')\n"
    )
    assert reports == [
        (
            Outcome.UNGUARDED,
            "its SQL mixes statements guarded by name with one that runs every time (its SQL ALTER COLUMN re-applies "
            "the same type, nullability or default); split it into one execute per statement",
        )
    ]


def test_a_constraint_named_in_sql_is_looked_up_under_that_very_name() -> None:
    output, _ = _rewrite("    op.execute('ALTER TABLE t DROP CONSTRAINT ck_t')\n")
    assert '    if _idempotify("op.execute: constraint", "t", op.f("ck_t")):\n' in output


def test_the_dialect_branch_decides_how_names_are_stored() -> None:
    body = "    if op.get_bind().dialect.name == 'postgresql':\n        op.execute('ALTER TABLE T ADD COLUMN C INT')\n"
    output, _ = _rewrite(body)
    assert '        if _idempotify("op.execute: no column", "t", "c"):\n' in output


def test_an_insert_is_a_seed_only_into_a_table_its_function_creates() -> None:
    body = (
        "    op.create_table('flags', sa.Column('id', sa.Integer))\n"
        "    op.execute('INSERT INTO flags (id) VALUES (1)')\n"
        "    op.execute('INSERT INTO users (id) VALUES (1)')\n"
    )
    output, reports = _rewrite(body)
    assert '    if _idempotify("op.execute: no row", "flags"):\n' in output
    assert reports[2][0] is Outcome.UNGUARDED and reports[2][1].startswith("its SQL inserts rows")


@pytest.mark.parametrize(
    "table",
    [
        "sa.table('flags', sa.column('id'))",
        "sa.Table('flags', meta)",
        "flags_table",  # bound once to sa.table('flags', ...)
    ],
)
def test_a_bulk_insert_into_a_table_named_as_one_this_function_creates_is_a_seed(table: str) -> None:
    """zenml reflects the table it just made (sa.Table("identity", meta)) for its one seed row: a re-run
    inserted it again (duplicate key) while a seed into the create_table's result was guarded."""
    body = (
        "    op.create_table('flags', sa.Column('id', sa.Integer))\n"
        "    flags_table = sa.table('flags', sa.column('id'))\n"
        f"    op.bulk_insert({table}, [{{'id': 1}}])\n"
        "    op.bulk_insert(sa.table('users', sa.column('id')), [{'id': 1}])\n"
    )
    output, reports = _rewrite(body)
    assert f'    if _idempotify("op.bulk_insert: no row", "flags"):\n        op.bulk_insert({table}' in output
    # The create_table is the op before the users insert, which a re-run would make again: left unguarded.
    assert [outcome for outcome, _ in reports] == [Outcome.UNGUARDED, Outcome.GUARDED, Outcome.UNGUARDED]
    assert reports[0][1].startswith("next to a data change that does not re-run alike")
    assert reports[2][1].startswith("data change; only a seed insert into a table this function creates")


@pytest.mark.parametrize(
    ("sql", "outcome", "reason"),
    [
        (
            "ALTER TABLE t DROP CONSTRAINT ck_a; ALTER TABLE t ADD CONSTRAINT ck_a CHECK (a > 1)",
            Outcome.ALREADY_SAFE,
            'its SQL drops and re-creates constraint "ck_a", so a re-run applies it again',
        ),
        (
            "DROP TABLE t; CREATE TABLE t (id INT)",
            Outcome.UNGUARDED,
            'its SQL both creates and removes table "t": whether it already ran cannot be told from the schema; '
            "guard it by hand, and mark it `# idempotify: skip`",
        ),
        (
            "ALTER TABLE t DROP CONSTRAINT ck_c; ALTER TABLE t DROP CONSTRAINT ck_d; "
            "ALTER TABLE t ADD CONSTRAINT ck_c CHECK (a > 1)",
            Outcome.UNGUARDED,
            'its SQL drops and re-creates constraint "ck_c", which runs every time, beside statements guarded by '
            "name; split it into one execute per statement",
        ),
    ],
)
def test_sql_that_drops_and_re_creates(sql: str, outcome: Outcome, reason: str) -> None:
    assert _rewrite(f"    op.execute({sql!r})\n")[1] == [(outcome, reason)]


def test_a_query_in_a_function_that_drops_what_it_may_read_is_not_called_safe() -> None:
    body = (
        "    rows = op.get_bind().execute(sa.text('SELECT id FROM legacy')).fetchall()\n    op.drop_table('legacy')\n"
    )
    (outcome, reason), _ = _rewrite(body)[1]
    assert outcome is Outcome.UNGUARDED
    assert reason.startswith(
        "its SQL is a query, in a function whose run drops or renames tables or columns: a re-run fails"
    )


@pytest.mark.parametrize(
    "rename",
    [
        "    op.alter_column('t', 'a', new_column_name='b')\n",
        "    with op.batch_alter_table('t') as batch_op:\n        batch_op.alter_column('a', new_column_name='b')\n",
        "    op.execute('ALTER TABLE t RENAME COLUMN a TO b')\n",
    ],
)
def test_a_query_in_a_function_that_renames_a_column_is_not_called_safe(rename: str) -> None:
    """The re-run's query reads ``a``, which the first run renamed: it fails as on a dropped column."""
    (outcome, reason), *_ = _rewrite("    op.execute('SELECT a FROM t')\n" + rename)[1]
    assert outcome is Outcome.UNGUARDED
    assert reason.startswith("its SQL is a query, in a function whose run drops or renames tables or columns")


@pytest.mark.parametrize(
    ("body", "picked"),
    [
        # The op under the project's own if is guarded by it, and fails nothing done: the one before it is taken.
        (
            "    op.add_column('t', sa.Column('x', sa.Integer()))\n"
            "    if not has_index:\n        op.create_index('ix_t_name', 't', ['name'])\n"
            "    op.execute(\"INSERT INTO log (msg) VALUES ('a')\")\n",
            "op.add_column",
        ),
        # An unnamed constraint is made again beside the first where names are not required (PostgreSQL, MariaDB).
        (
            "    op.add_column('t', sa.Column('x', sa.Integer()))\n    op.create_unique_constraint(None, 't', ['x'])\n"
            "    op.execute(\"INSERT INTO log (msg) VALUES ('a')\")\n",
            "op.add_column",
        ),
        # DDL in SQL idempotify reads fails done as the op does.
        (
            "    op.execute('ALTER TABLE t ADD COLUMN x INTEGER')\n"
            "    op.execute(\"INSERT INTO log (msg) VALUES ('a')\")\n",
            "op.execute",
        ),
        # A data change marked `# idempotify: skip` is guarded by hand, as the reason advises: none is left so.
        (
            "    op.add_column('t', sa.Column('x', sa.Integer()))\n"
            "    if not done:\n        op.execute(\"INSERT INTO log (msg) VALUES ('a')\")  # idempotify: skip\n",
            None,
        ),
        # A nested function of one name in upgrade() and downgrade(): the work of each is its own.
        (
            "    def step():\n        op.execute(\"INSERT INTO log (msg) VALUES ('a')\")\n"
            "    op.add_column('t', sa.Column('x', sa.Integer()))\n    step()\n\n\n"
            "def downgrade():\n    def step():\n        op.drop_column('t', 'x')\n    step()\n",
            "op.add_column",
        ),
    ],
)
def test_the_op_left_unguarded_next_to_a_data_change_is_one_that_fails_done(body: str, picked: str | None) -> None:
    """Found by an independent review: an op under an if, or a create of an unnamed constraint, was taken and
    failed nothing on a re-run, which then inserted again; two nested functions of one name crashed the rewrite."""
    _, reports = rewrite_source((HEADER + body).encode(), Style())
    left = [report.call for report in reports if report.reason.startswith("next to a data change")]
    assert left == ([] if picked is None else [picked])


@pytest.mark.parametrize(
    ("helper", "call"),
    [
        ("def _rename():\n    op.alter_column('t', 'a', new_column_name='b')\n", "    _rename()\n"),
        ("def _drop():\n    op.drop_column('t', 'a')\n", "    _drop()\n"),
    ],
)
def test_a_query_in_a_function_whose_helper_drops_or_renames_is_not_called_safe(helper: str, call: str) -> None:
    """mlflow's 75868b020152 and zenml's 25155145c545: upgrade() queries, then a helper it calls drops (or the
    other way round); the query's re-run fails on what the first run dropped, as one beside the drop does."""
    source = HEADER.replace("def upgrade():\n", helper + "\n\ndef upgrade():\n") + (
        "    op.execute('SELECT a FROM t')\n" + call
    )
    _, reports = rewrite_source(source.encode(), Style())
    query = next(report for report in reports if report.call == "op.execute")
    assert query.outcome is Outcome.UNGUARDED
    assert query.reason.startswith("its SQL is a query, in a function whose run drops or renames tables or columns")


@pytest.mark.parametrize(
    "session",
    [
        "    session = sa.orm.Session(bind=op.get_bind())\n",
        "    session = Session(op.get_bind())\n",
        "    with sqlmodel.Session(bind=op.get_bind()) as session:\n        pass\n",
    ],
)
def test_sql_run_through_a_session_on_the_migration_connection_is_read_as_the_connection_s(session: str) -> None:
    """zenml and optuna run their data steps through an ORM Session: a query of what the function then drops fails
    on a re-run, and must be listed, not passed over as if it were not SQL."""
    body = session + (
        "    rows = session.execute(sa.text('SELECT id, legacy FROM accounts')).all()\n"
        "    session.execute(sa.text('ALTER TABLE users ADD COLUMN nickname VARCHAR(30)'))\n"
        "    op.drop_column('accounts', 'legacy')\n"
    )
    output, reports = _rewrite(body)
    assert [outcome for outcome, _ in reports] == [Outcome.UNGUARDED, Outcome.GUARDED, Outcome.GUARDED]
    assert reports[0][1].startswith("its SQL is a query, in a function whose run drops or renames tables or columns")
    assert '    if _idempotify("session.execute: no column", "users", "nickname"):\n' in output


def test_a_session_on_something_else_is_not_the_migration_connection() -> None:
    body = (
        "    session = Session(bind=other_engine)\n"
        "    session.execute(sa.text('ALTER TABLE users ADD COLUMN nickname VARCHAR(30)'))\n"
    )
    output, reports = _rewrite(body)
    assert reports == [] and output == body


def test_a_long_index_name_is_left_to_the_helper_and_other_long_names_need_the_dialect() -> None:
    long = "ix_" + "x" * 70
    assert _one(f"DROP INDEX {long}").args == {"index_name": long}
    assert str(_one(f"DROP TABLE t_{'x' * 70}").reason).startswith("its SQL names t_xxx")
    cut = _one(f"DROP TABLE t_{'x' * 70}", "postgresql").args["table_name"]
    assert isinstance(cut, str) and len(cut) == 63


def test_sql_or_a_statement_kept_in_a_variable_is_read_through_it() -> None:
    body = (
        "    sql = 'CREATE INDEX ix_users_age ON users (age)'\n"
        "    op.execute(sql)\n"
        "    query = sa.select(sa.table('users'))\n"
        "    rows = op.get_bind().execute(query.limit(10)).fetchall()\n"
        "    change = sa.table('users').update()\n"
        "    op.get_bind().execute(change, [{'age': 1}])\n"
    )
    output, reports = _rewrite(body)
    assert '    if _idempotify("op.execute: no index", "users", "ix_users_age"):\n        op.execute(sql)\n' in output
    assert [outcome for outcome, _ in reports] == [Outcome.GUARDED, Outcome.ALREADY_SAFE, Outcome.UNGUARDED]
    assert reports[1][1] == "its statement is a query"
    assert reports[2][1].startswith("its statement changes data")


@pytest.mark.parametrize(
    "body",
    [
        # Bound twice: which value runs depends on the path taken.
        "    sql = 'CREATE INDEX ix_a ON users (age)'\n    sql = 'DROP TABLE users'\n    op.execute(sql)\n",
        # A loop variable, or a changed value, under a module constant's name.
        "    for SQL in ('DROP TABLE users',):\n        op.execute(SQL)\n",
        "    SQL += ' WHERE 1 = 1'\n    op.execute(SQL)\n",
    ],
)
def test_a_name_bound_more_than_once_is_not_read(body: str) -> None:
    constant = "SQL = 'CREATE INDEX ix_users_age ON users (age)'\n"
    source = HEADER.replace("revision = 'x'\n", f"revision = 'x'\n{constant}") + body
    output, reports = rewrite_source(source.encode(), Style())
    assert [report.outcome for report in reports] == [Outcome.UNGUARDED]
    assert output.decode() == source


@pytest.mark.parametrize(
    ("statement", "outcome", "reason"),
    [
        ('f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"', Outcome.ALREADY_SAFE, "its SQL says IF EXISTS"),
        ('sa.text(f"ALTER TABLE {table} " f"AUTO_INCREMENT = {next_id}")', Outcome.ALREADY_SAFE, "its SQL sets table"),
        ('f"-- {table} can go once reviewed"', Outcome.ALREADY_SAFE, "its SQL holds no statement"),
        ('f"UPDATE {table} SET a = 1"', Outcome.UNGUARDED, DATA_CHANGE),
        ('f"INSERT INTO {table} VALUES (1)"', Outcome.UNGUARDED, NOT_A_SEED),
        # str.format and printf-style formatting are read the same way.
        ("'DELETE FROM {}.{} WHERE a = 1'.format(schema, table)", Outcome.UNGUARDED, DATA_CHANGE),
        ("\"UPDATE t SET a = '%s' WHERE b LIKE 'x%%'\" % value", Outcome.UNGUARDED, DATA_CHANGE),
        ("'DROP INDEX IF EXISTS {0}'.format(name)", Outcome.ALREADY_SAFE, "its SQL says IF EXISTS"),
        # Guarding needs the names, and an f-string's are only known when it runs.
        ('f"ALTER TABLE {table} DROP CONSTRAINT {name}"', Outcome.UNGUARDED, "raw SQL or a statement object"),
        ("'ALTER TABLE {} DROP COLUMN a'.format(table)", Outcome.UNGUARDED, "raw SQL or a statement object"),
        ("'DROP TABLE %(name)s' % names", Outcome.UNGUARDED, "raw SQL or a statement object"),
        ('f"{statement}"', Outcome.UNGUARDED, "raw SQL or a statement object"),
        ("'{statement'.format(statement)", Outcome.UNGUARDED, "raw SQL or a statement object"),
    ],
)
def test_an_f_string_is_read_with_its_values_as_names(statement: str, outcome: Outcome, reason: str) -> None:
    """Safe whatever its values are, or a data change, is said so; a statement to guard stays unguarded."""
    body = f"    op.execute({statement})\n"
    output, reports = _rewrite(body)
    assert output == body
    assert len(reports) == 1
    assert reports[0][0] is outcome and reports[0][1].startswith(reason), reports


def test_text_with_bound_values_is_read_as_its_sql() -> None:
    body = "    op.execute(sa.text('DROP INDEX ix_users_age').bindparams(a=1).execution_options(x=1))\n"
    output, reports = _rewrite(body)
    assert reports == [(Outcome.GUARDED, "")]
    assert '    if _idempotify("op.execute: index", None, "ix_users_age"):\n' in output


@pytest.mark.parametrize(
    ("body", "outcome", "reason"),
    [
        (
            "    stmt = sa.text('UPDATE t SET a = 1')\n    op.execute(stmt)\n"
            "    stmt = sa.text('DELETE FROM t WHERE a = 2')\n    op.execute(stmt.bindparams(a=1))\n",
            [Outcome.UNGUARDED] * 2,
            DATA_CHANGE,
        ),
        (
            "    for stmt in UPDATES:\n        op.get_bind().execute(sa.text(stmt))\n",
            [Outcome.UNGUARDED],
            DATA_CHANGE,
        ),
        (
            "    s = sa.update(t).values(a=1)\n    op.execute(s)\n    s = sa.delete(t)\n    op.execute(s)\n",
            [Outcome.UNGUARDED] * 2,
            "its statement changes data",
        ),
        (
            "    s = sa.select(t)\n    s = s.where(t.c.a > 1)\n    op.get_bind().execute(s.limit(10))\n",
            [Outcome.ALREADY_SAFE],
            "its statement is a query",
        ),
    ],
)
def test_a_name_bound_several_times_to_data_changes_is_a_data_change(
    body: str, outcome: list[Outcome], reason: str
) -> None:
    """Every value the name may hold changes data (or is a query): said so, whichever runs; nothing is guarded."""
    constant = "UPDATES = ['UPDATE t SET a = 1', 'DELETE FROM t']\n"
    source = HEADER.replace("revision = 'x'\n", f"revision = 'x'\n{constant}") + body
    output, reports = rewrite_source(source.encode(), Style())
    assert output.decode() == source
    assert [report.outcome for report in reports] == outcome
    assert all(report.reason.startswith(reason) for report in reports), reports


@pytest.mark.parametrize(
    "body",
    [
        # One of the values is DDL, a query, or unknown: the name says nothing for sure.
        "    stmt = 'UPDATE t SET a = 1'\n    stmt = 'DROP TABLE t'\n    op.execute(stmt)\n",
        "    stmt = 'UPDATE t SET a = 1'\n    stmt = 'SELECT 1'\n    op.execute(stmt)\n",
        "    stmt = 'UPDATE t SET a = 1'\n    stmt = make()\n    op.execute(stmt)\n",
        "    for stmt in statements():\n        op.execute(stmt)\n",
        # Bound another way as well: a parameter, an augmented assignment, a with target.
        "    stmt = 'UPDATE t SET a = 1'\n    stmt += ' WHERE 1 = 1'\n    op.execute(stmt)\n",
        "    stmt = 'UPDATE t SET a = 1'\n    with make() as stmt:\n        op.execute(stmt)\n"
        "    stmt = 'DELETE FROM t'\n",
    ],
)
def test_a_name_bound_several_times_otherwise_stays_unknown(body: str) -> None:
    source = HEADER + body
    output, reports = rewrite_source(source.encode(), Style())
    assert output.decode() == source
    assert [(report.outcome, report.reason) for report in reports] == [
        (Outcome.UNGUARDED, "raw SQL or a statement object is not guarded")
    ]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE dashboards SET published = '1'", UPDATE_RERUNS),
        ("UPDATE t SET a = 'x' WHERE a = 'y' AND b IS NOT NULL", UPDATE_RERUNS),
        ("UPDATE t SET a = coalesce(b, lower(c), :fallback), d = CASE WHEN e LIKE 'x%' THEN 1 END", UPDATE_RERUNS),
        ("UPDATE t SET a = CAST(b AS TEXT) WHERE c IN (SELECT c FROM u WHERE u.d = 1)", UPDATE_RERUNS),
        ("UPDATE t SET a = u.b FROM u WHERE t.id = u.id", UPDATE_RERUNS),
        ("DELETE FROM dag_run WHERE logical_date IS NULL", DELETE_RERUNS),
        ("DELETE FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.id = t.u_id)", DELETE_RERUNS),
        ("DELETE FROM t USING u WHERE t.a = u.a", DELETE_RERUNS),
        ("DELETE FROM t", DELETE_RERUNS),
        ("TRUNCATE TABLE t", TRUNCATE_RERUNS),
    ],
)
def test_update_and_delete_that_re_run_alike_on_their_own(sql: str, reason: str) -> None:
    part = _one(sql, "postgresql")
    assert (part.reason, part.query) == (DATA_CHANGE, True)  # what it is in a function is the transformer's to say
    assert part.rows is not None and part.rows.rerun == reason


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE t SET a = a + 1",  # reads what it sets
        "UPDATE t SET new_col = old_col, old_col = NULL",
        "UPDATE t SET a = (SELECT max(x.a) FROM u AS x)",  # a column of that name, of whatever table
        "UPDATE t SET a = (SELECT count(*) FROM t AS t2 WHERE t2.b = 1)",  # reads its own table
        "UPDATE t SET a = 'x' WHERE b IN (SELECT b FROM t WHERE c = 1)",
        "UPDATE t SET a = now()",
        "UPDATE t SET a = CURRENT_TIMESTAMP",
        "UPDATE t SET a = random()",
        "UPDATE t SET a = gen_random_uuid()",
        "UPDATE t SET a = nextval('s')",
        "UPDATE t SET a = my_function(b)",
        "UPDATE t SET a = DEFAULT",
        "UPDATE t SET a = USER",  # read as a column, a value of the moment
        "UPDATE t SET a = 'now'",  # PostgreSQL: the time, where a timestamp goes
        "DELETE FROM t WHERE created < CAST('today' AS DATE)",
        "UPDATE t SET a = u.b FROM u WHERE t.a = u.c",  # which row of u it meets depends on what it set
        "UPDATE t SET a = 1 FROM t AS t2 WHERE t.id = t2.parent_id",
        "WITH x AS (SELECT 1 AS one) UPDATE t SET a = 1",
        "DELETE FROM t WHERE created < now()",
        "DELETE FROM t WHERE id NOT IN (SELECT min(id) FROM t GROUP BY k)",
        "DELETE FROM t USING t AS t2 WHERE t.k = t2.k AND t.id > t2.id",
        "TRUNCATE TABLE t CASCADE",
    ],
)
def test_update_and_delete_that_may_not_re_run_alike(sql: str) -> None:
    part = _one(sql, "postgresql")
    assert part.reason == DATA_CHANGE
    assert part.rows is not None and part.rows.rerun is None


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE t SET a = UTC_TIMESTAMP",
        "UPDATE t SET a = 1 ORDER BY id LIMIT 3",
        "DELETE FROM t WHERE a = 1 LIMIT 5",
        "UPDATE t JOIN u ON t.id = u.id SET u.a = 1",
    ],
)
def test_mysql_limits_and_other_tables_set_may_not_re_run_alike(sql: str) -> None:
    part = _one(sql, "mysql")
    assert part.rows is not None and part.rows.rerun is None


def _rows(sql: str) -> Rows:
    (part,) = read_sql(sql, None)
    return part.row_work


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("UPDATE t SET new_col = old_col", "UPDATE t SET old_col = NULL"),  # a re-run copies the NULLs
        ("DELETE FROM t WHERE a = 'y'", "UPDATE t SET a = 'y' WHERE b = 1"),  # a re-run deletes the updated rows
        ("UPDATE t SET a = 'x' WHERE b = 1", "DELETE FROM t WHERE a = 'x'"),
        ("INSERT INTO archive SELECT * FROM t WHERE a IS NULL", "DELETE FROM t WHERE a IS NULL"),
        ("UPDATE u SET a = 1", "UPDATE t SET b = 2 WHERE c IN (SELECT c FROM u)"),
        ("UPDATE t SET a = 1", "DO $$ BEGIN PERFORM 1; END $$"),  # SQL that cannot be read: any table
        ("UPDATE t SET a = NULL", "SELECT a FROM t"),  # what the query read may go on to another write
    ],
)
def test_data_changes_that_meet_in_a_function_do_not_re_run_alike(first: str, second: str) -> None:
    one, other = _rows(first), _rows(second)
    if one.rerun is not None:
        assert one.reruns_in([(other, True)]) is None
    if other.rerun is not None:
        assert other.reruns_in([(one, False)]) is None
    assert one.rerun is not None or other.rerun is not None


def test_data_changes_beside_ddl_re_run_alike() -> None:
    """Beside DDL of its own table; not beside anything that reads rows, which it may have written through a
    foreign key."""
    update, index = _rows("UPDATE t SET a = 'x' WHERE b = 1"), _rows("CREATE INDEX ix ON t (a)")
    assert update.reruns_in([(index, True), (index, False)]) == UPDATE_RERUNS
    assert _rows("DELETE FROM u WHERE c IS NULL").reruns_in([(index, True)]) == DELETE_RERUNS
    assert update.reruns_in([(_rows("INSERT INTO u (c) SELECT c FROM v"), True)]) is None


@pytest.mark.parametrize(
    ("parent", "child"),
    [
        ("DELETE FROM parent WHERE archived", "DELETE FROM child WHERE parent_id IS NULL"),  # ON DELETE CASCADE
        ("UPDATE parent SET code = 'legacy' WHERE code = 'old'", "UPDATE child SET note = 'x' WHERE code = 'legacy'"),
    ],
)
def test_a_delete_or_update_may_write_any_table_through_foreign_keys(parent: str, child: str) -> None:
    """ON DELETE CASCADE or SET NULL, ON UPDATE CASCADE: rows of a table that refers to its own change with it."""
    first, second = _rows(parent), _rows(child)
    assert first.rerun is not None and second.rerun is not None
    assert second.reruns_in([(first, True)]) is None
    assert first.reruns_in([(_rows("SELECT * FROM child"), True)]) is None


def test_a_rename_or_change_of_type_after_it_of_a_table_it_reads_does_not_re_run_alike() -> None:
    update = _rows("UPDATE t SET a = 'x' WHERE b = 1")
    for reshape in (
        "ALTER TABLE t ALTER COLUMN b TYPE TEXT",
        "ALTER TABLE t RENAME COLUMN b TO c",
        "ALTER TABLE t RENAME TO u",
    ):
        assert update.reruns_in([(_rows(reshape), True)]) is None
        assert (
            update.reruns_in([(_rows(reshape), False)]) == UPDATE_RERUNS
        )  # before it: a re-run reads as the first did
    assert update.reruns_in([(_rows("ALTER TABLE t ALTER COLUMN b SET NOT NULL"), True)]) == UPDATE_RERUNS


def test_bind_parameters_re_run_alike_only_when_fixed() -> None:
    update = _rows("UPDATE t SET a = :value WHERE id = :id")
    assert update.reruns_in([]) == UPDATE_RERUNS
    assert update.reruns_in([], values_fixed=False) is None  # from what the function read, or the clock
    assert _rows("UPDATE t SET a = 1").reruns_in([], values_fixed=False) == UPDATE_RERUNS


@pytest.mark.parametrize(
    ("body", "outcomes"),
    [
        # Safe on its own, and nothing else in the run writes what it reads.
        # An UPDATE may reach the other's table through a foreign key (ON UPDATE CASCADE).
        ("    op.execute('UPDATE t SET a = 1 WHERE b = 2')\n    op.execute('UPDATE u SET c = 3')\n", ["data", "data"]),
        ("    op.execute('DELETE FROM t WHERE a = 1')\n    op.create_index('ix', 'u', ['c'])\n", ["safe", "guarded"]),
        # A DELETE may reach the other's table through a foreign key.
        ("    op.execute('UPDATE t SET a = 1 WHERE b = 2')\n    op.execute('DELETE FROM u')\n", ["data", "data"]),
        ("    op.execute('UPDATE t SET a = 1')\n    op.create_index('ix', 't', ['a'])\n", ["safe", "guarded"]),
        # The three that lose rows on a re-run.
        (
            "    op.execute('UPDATE t SET new_col = old_col')\n    op.execute('UPDATE t SET old_col = NULL')\n",
            ["data"] * 2,
        ),
        (
            "    op.execute(\"DELETE FROM t WHERE a = 'y'\")\n    op.execute(\"UPDATE t SET a = 'y' WHERE b = 1\")\n",
            ["data"] * 2,
        ),
        ("    op.execute(\"UPDATE t SET a = 'x' WHERE b = 1; DELETE FROM t WHERE a = 'x'\")\n", ["data"]),
        # Other writes of its table: a bulk insert, a statement built with SQLAlchemy, an ORM session, SQL not read.
        ("    op.execute('DELETE FROM t')\n    op.bulk_insert(sa.table('t'), [{'a': 1}])\n", ["data", "data"]),
        ("    op.execute('DELETE FROM t')\n    op.bulk_insert(sa.table('u'), [{'a': 1}])\n", ["safe", "data"]),
        ("    op.execute('DELETE FROM t')\n    op.execute(sa.table('u').insert())\n", ["data", "data"]),
        ("    op.execute('DELETE FROM t')\n    session = sa.orm.Session(bind=op.get_bind())\n", ["data"]),
        ("    op.execute('DELETE FROM t')\n    op.execute(statement)\n", ["data", "left unguarded"]),
        ("    op.execute('DELETE FROM t')\n    op.get_bind().execute(sa.select(t))\n", ["data", "already safe"]),
        ("    op.execute('DELETE FROM t')\n    op.execute(f'INSERT INTO {name} VALUES (1)')\n", ["data", "data"]),
        # ... or in a function of the same run.
        (
            "    op.execute('DELETE FROM t')\n    _fill()\n\n\n"
            "def _fill():\n    op.execute('INSERT INTO t VALUES (1)')\n",
            ["data", "data"],
        ),
        # A rename or change of type after it of a table it reads.
        ("    op.execute('UPDATE t SET a = 1')\n    op.alter_column('t', 'b', type_=sa.Text())\n", ["data", "guarded"]),
        (
            "    op.execute('UPDATE t SET a = 1')\n    with op.batch_alter_table('t') as batch_op:\n"
            "        batch_op.alter_column('b', new_column_name='c')\n",
            ["data", "left unguarded"],  # the op after a data change that does not re-run alike, and fails done
        ),
        ("    op.alter_column('t', 'b', type_=sa.Text())\n    op.execute('UPDATE t SET a = 1')\n", ["guarded", "safe"]),
        # Bind parameters: literals are fixed for a run; a value from Python may not be.
        ("    op.get_bind().execute(sa.text('UPDATE t SET a = :a'), {'a': 1})\n", ["safe"]),
        ("    op.get_bind().execute(sa.text('UPDATE t SET a = :a').bindparams(a=1))\n", ["safe"]),
        ("    op.get_bind().execute(sa.text('UPDATE t SET a = :a'), {'a': now()})\n", ["data"]),
        ("    op.get_bind().execute(sa.text('UPDATE t SET a = :a'), [{'a': 1}, {'a': 2}])\n", ["data"]),  # executemany
        # Safe, but its function drops columns, which a re-run may read.
        ("    op.execute('UPDATE t SET a = b')\n    op.drop_column('t', 'b')\n", ["reads dropped", "guarded"]),
        # Code whose work with rows is not seen: imported, held in a variable, or a function passed on.
        (
            "    from migration_utils import merge_kinds\n    op.execute('UPDATE t SET a = 1')\n    merge_kinds()\n",
            ["data"],
        ),
        ("    import utils\n    op.execute('UPDATE t SET a = 1')\n    utils.merge_kinds(op.get_bind())\n", ["data"]),
        ("    op.execute('UPDATE t SET a = 1')\n    merge_kinds()\n", ["data"]),  # from a star import, say
        ("    op.execute('UPDATE t SET a = 1')\n    frame = dict()\n    frame.to_sql('t', op.get_bind())\n", ["data"]),
        (
            "    op.execute('UPDATE t SET a = 1')\n    for step in (_merge,):\n        step()\n\n\n"
            "def _merge():\n    pass\n",
            ["data"],
        ),
        # Calls of the standard library, SQLAlchemy and Alembic are seen through.
        ("    import json\n    op.execute('UPDATE t SET a = 1')\n    print(json.dumps([sa.text('x')]))\n", ["safe"]),
    ],
)
def test_a_data_change_is_safe_only_beside_nothing_that_changes_what_it_reads(body: str, outcomes: list[str]) -> None:
    _, reports = _rewrite(body)
    said = {
        (Outcome.ALREADY_SAFE, True): "safe",
        (Outcome.GUARDED, False): "guarded",
    }
    found = []
    for outcome, reason in reports:
        if outcome is Outcome.UNGUARDED and reason.endswith(_READS_DROPPED):
            found.append("reads dropped")
        elif outcome is Outcome.UNGUARDED and reason.startswith(DATA_CHANGE_REASONS):
            found.append("data")
        else:
            found.append(said.get((outcome, reason.startswith("its SQL")), outcome.value))
    assert found == outcomes, reports
