"""What the rewrite reports for each op it leaves alone, and why."""

from __future__ import annotations

import pytest

from codemod.formatting import Style
from codemod.results import OpReport, Outcome
from codemod.runner import rewrite_source
from codemod.sql import DATA_CHANGE, NOT_A_SEED
from tests.fixtures import FIXTURES

_CAPITALS = (
    "its SQL names Users, with capitals: how the database stores it depends on the database "
    "(put the SQL under `if op.get_bind().dialect.name == ...` to say which)"
)

HEADER = "from alembic import op\nimport sqlalchemy as sa\n\nrevision = 'x'\n\n\ndef upgrade():\n"


def reports(body: str, header: str = HEADER) -> list[OpReport]:
    _, found = rewrite_source((header + body).encode(), Style())
    return found


def only(body: str, header: str = HEADER) -> tuple[Outcome, str]:
    (report,) = reports(body, header)
    return report.outcome, report.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("    op.execute('UPDATE users SET name = name || 1')\n", DATA_CHANGE),
        (
            "    op.execute(sa.table('users').delete())\n",
            "its statement changes data: it re-runs only if its WHERE makes it so",
        ),
        ("    op.execute(sa.schema.CreateTable(users))\n", "raw SQL or a statement object is not guarded"),
        ("    op.execute(f'DROP TABLE {name}')\n", "raw SQL or a statement object is not guarded"),
        ("    op.create_table_comment('users', 'people')\n", "no guard for create_table_comment yet"),
        (
            "    op.bulk_insert(sa.table('users'), [])\n",
            "data change; only a seed insert into a table this function creates is guarded (while it is empty)",
        ),
        ("    op.get_bind().execute(sa.text('DELETE FROM users WHERE id < random()'))\n", DATA_CHANGE),
        ("    conn = op.get_bind()\n    conn.execute(sa.text(query))\n", "SQL run on the connection is not guarded"),
        ("    op.execute('INSERT INTO users (id) VALUES (1)')\n", NOT_A_SEED),
        ("    op.execute('ALTER TABLE Users ADD COLUMN x INT')\n", _CAPITALS),
        ("    op.execute('CREATE TABLE (')\n", "its SQL could not be parsed: Expected table name (line 1, column 14)"),
        (
            "    op.create_check_constraint(None, 'users', 'id > 0')\n",
            "its constraint_name is None: there is no name to look up",
        ),
        (
            "    op.drop_table(**{'table_name': 'users'})\n",
            "cannot find its table_name argument (passed with * or **?)",
        ),
        (
            "    if True: op.drop_table('users')\n",
            "not a statement of its own (inside an expression or a one-line block)",
        ),
        (
            "    print(op.drop_table('users'))\n",
            "not a statement of its own (inside an expression or a one-line block)",
        ),
        ("    op.drop_table('a'); op.drop_table('b')\n", None),
        (
            "    batch_op.drop_column('name')\n",
            "batch op outside a `with op.batch_alter_table(...)` block: its table is unknown",
        ),
    ],
)
def test_left_unguarded_with_reason(body: str, reason: str | None) -> None:
    found = reports(body)
    assert found, "the op was not reported at all"
    assert all(report.outcome is Outcome.UNGUARDED for report in found)
    if reason is not None:
        assert {report.reason for report in found} == {reason}


def test_native_if_not_exists_is_already_safe() -> None:
    body = "    op.create_table('t', sa.Column('id', sa.Integer), if_not_exists=True)\n"
    assert only(body) == (Outcome.ALREADY_SAFE, "already idempotent (if_not_exists=True)")


def test_enclosing_if_on_the_same_object_is_already_safe() -> None:
    body = "    if not has_table('runs'):\n        op.create_table('runs', sa.Column('id', sa.Integer))\n"
    assert only(body) == (Outcome.ALREADY_SAFE, "already guarded by an enclosing if or an early return")


def test_an_earlier_early_return_on_the_same_object_is_already_safe() -> None:
    body = "    if has_table('runs'):\n        return\n    op.create_table('runs', sa.Column('id', sa.Integer))\n"
    assert only(body) == (Outcome.ALREADY_SAFE, "already guarded by an enclosing if or an early return")


def test_a_later_early_return_does_not_count() -> None:
    body = "    op.create_table('runs', sa.Column('id', sa.Integer))\n    if has_table('runs'):\n        return\n"
    assert only(body) == (Outcome.GUARDED, "")


@pytest.mark.parametrize(
    "body",
    [
        "    op.drop_table('users')  # idempotify: skip\n",
        "    # idempotify: skip (dropped by the ops team first)\n    op.drop_table('users')\n",
    ],
)
def test_skip_marker_leaves_the_statement_alone(body: str) -> None:
    assert only(body) == (Outcome.SKIPPED, "skipped by `# idempotify: skip`")
    output, _ = rewrite_source((HEADER + body).encode(), Style())
    assert output == (HEADER + body).encode()


@pytest.mark.parametrize(
    "sql",
    [
        "'CREATE INDEX IF NOT EXISTS ix ON users (name)'",
        "sa.text('DROP TABLE IF EXISTS legacy')",
        '"""\n    create table if not exists t (id int)\n    """',
    ],
)
def test_sql_that_says_if_exists_is_already_safe(sql: str) -> None:
    outcome, reason = only(f"    op.execute({sql})\n")
    assert (outcome, reason[:15]) == (Outcome.ALREADY_SAFE, "its SQL says IF")


def test_batch_op_received_as_a_parameter_uses_its_table_at_run_time() -> None:
    body = "    pass\n\n\ndef _drop(batch_op):\n    batch_op.drop_column('name')\n"
    output, found = rewrite_source((HEADER + body).encode(), Style())
    assert [report.outcome for report in found] == [Outcome.GUARDED]
    assert (
        b'        "batch_op.drop_column: column",\n        batch_op.impl.table_name,\n        "name",\n'
        b"        schema=batch_op.impl.schema,\n"
    ) in output


def test_enclosing_if_on_another_object_does_not_count() -> None:
    body = "    if has_table('runs'):\n        op.add_column('runs', sa.Column('name', sa.String))\n"
    assert only(body) == (Outcome.GUARDED, "")


def test_a_create_table_used_further_down_and_its_seed_rows_are_guarded_each_on_its_own() -> None:
    body = (
        "    t = op.create_table('t', sa.Column('id', sa.Integer))\n"
        "    op.create_index('ix', 't', ['id'])\n"
        "    op.bulk_insert(t, [])\n"
    )
    output, found = rewrite_source((HEADER + body).encode(), Style())
    assert [(report.call, report.outcome) for report in found] == [
        ("op.create_table", Outcome.GUARDED),
        ("op.create_index", Outcome.GUARDED),
        ("op.bulk_insert", Outcome.GUARDED),
    ]
    # Skipped, the create still binds t (to the table as the database has it); the rows go in while it is empty.
    assert b"    else:\n        t = _idempotify_table('t')\n" in output
    assert b'    if _idempotify("op.bulk_insert: no row", "t"):\n        op.bulk_insert(t, [])\n' in output


def test_an_insert_into_a_table_made_elsewhere_is_left_with_reason() -> None:
    body = "    t = sa.table('t', sa.column('id'))\n    op.bulk_insert(t, [])\n"
    assert only(body)[0] is Outcome.UNGUARDED


def test_a_result_other_than_a_table_used_further_down_is_left_with_reason() -> None:
    body = "    ix = op.create_index('ix', 't', ['id'])\n    print(ix)\n"
    assert only(body) == (
        Outcome.UNGUARDED,
        "its result 'ix' is used further down; guard it by hand, and mark it `# idempotify: skip`",
    )


def test_ops_on_a_table_are_skipped_without_it_only_where_the_function_removes_it() -> None:
    body = "    op.drop_index('ix_t_a', table_name='t')\n    op.drop_column('u', 'a')\n    op.drop_table('t')\n"
    output, _ = rewrite_source((HEADER + body).encode(), Style())
    assert b'_idempotify("op.drop_index: index", "t", "ix_t_a", gone=True)' in output
    assert b'_idempotify("op.drop_column: column", "u", "a"):' in output


def test_a_hand_guard_on_another_object_puts_the_ops_it_does_not_test_at_risk() -> None:
    body = (
        "    if not sa.inspect(op.get_bind()).has_table('runs'):\n"
        "        op.create_table('runs', sa.Column('id', sa.Integer))\n"
        "        op.create_index('ix_runs_id', 'runs', ['id'])\n"
    )
    found = reports(body)
    assert [(report.call, report.outcome) for report in found] == [
        ("op.create_table", Outcome.ALREADY_SAFE),
        ("op.create_index", Outcome.UNGUARDED),
    ]
    assert found[1].reason.startswith("at risk: under a hand-written `if` that tests another object (table 'runs')")


def test_a_dialect_branch_is_not_a_hand_guard() -> None:
    body = "    if op.get_bind().dialect.name == 'postgresql':\n        op.create_index('ix', 'runs', ['id'])\n"
    assert only(body) == (Outcome.GUARDED, "")


def test_a_batch_op_is_told_by_its_name_not_by_an_ending_in_op() -> None:
    header = HEADER.replace("def upgrade():\n", "def upgrade(shop=None):\n")
    assert reports("    shop.drop_column('x')\n", header) == []


def test_sql_whose_result_is_used_is_listed() -> None:
    body = "    rows = op.get_bind().execute(sa.text(query)).fetchall()\n"
    assert only(body) == (Outcome.UNGUARDED, "SQL run on the connection is not guarded")


def test_a_query_whose_result_is_used_is_already_safe() -> None:
    body = "    rows = op.get_bind().execute(sa.text('SELECT id FROM users')).fetchall()\n"
    assert only(body) == (Outcome.ALREADY_SAFE, "its SQL is a query")


def test_a_drop_in_a_batch_block_with_its_own_naming_convention_is_looked_up_with_it() -> None:
    body = (
        "    with op.batch_alter_table('bar', naming_convention={'fk': 'fk_%(table_name)s'}) as batch_op:\n"
        "        batch_op.drop_constraint('fk_bar', type_='foreignkey')\n"
    )
    output, found = rewrite_source((HEADER + body).encode(), Style())
    assert [report.outcome for report in found] == [Outcome.GUARDED]
    assert b'naming_convention={"fk": "fk_%(table_name)s"}' in output
    assert b"def _idempotify_named_by_convention(" in output


def test_op_alias_is_followed() -> None:
    header = HEADER.replace("from alembic import op\n", "from alembic import op as alembic_op\n")
    assert only("    alembic_op.drop_table('users')\n", header) == (Outcome.GUARDED, "")


def test_import_alembic_op_as_name_is_followed() -> None:
    header = HEADER.replace("from alembic import op\n", "import alembic.op as migrate\n")
    assert only("    migrate.drop_table('users')\n", header) == (Outcome.GUARDED, "")


def test_lines_are_those_of_the_input() -> None:
    body = "    op.drop_table('a')\n\n    op.execute('SELECT 1')\n"
    assert [report.line for report in reports(body)] == [8, 10]


def test_alter_column_of_a_checked_enum_is_left_with_reason() -> None:
    source = (FIXTURES / "no_change" / "alter_column_checked_enum.py").read_bytes()
    output, reports = rewrite_source(source, Style())
    assert output == source
    (report,) = reports
    assert report.outcome is Outcome.UNGUARDED
    assert report.reason.startswith("changes a type whose CHECK constraint Alembic drops by name")


def test_an_early_return_on_another_object_puts_the_ops_after_it_at_risk() -> None:
    body = (
        "    if sa.inspect(op.get_bind()).has_table('runs'):\n"
        "        return\n"
        "    op.create_table('runs', sa.Column('id', sa.Integer))\n"
        "    op.create_index('ix_runs_id', 'runs', ['id'])\n"
    )
    found = reports(body)
    assert [report.outcome for report in found] == [Outcome.ALREADY_SAFE, Outcome.UNGUARDED]
    assert found[1].reason.startswith("at risk:")


def test_ops_that_share_a_line_are_told_to_take_a_line_each() -> None:
    body = "    op.drop_column('users', 'a'); op.drop_column('users', 'b')\n"
    reason = "shares its line with another statement (`;`): put it on a line of its own to have it guarded"
    assert [(report.outcome, report.reason) for report in reports(body)] == [(Outcome.UNGUARDED, reason)] * 2


def test_an_op_before_a_removal_of_a_table_named_at_run_time_is_at_risk_though_guarded() -> None:
    body = (
        "    for name in ('a', 'b'):\n"
        "        op.drop_index('ix_' + name, table_name=name)\n"
        "    for old, new in [('a', 'a2')]:\n"
        "        op.rename_table(old, new)\n"
        "    op.add_column('a2', sa.Column('x', sa.Integer))\n"
    )
    output, found = rewrite_source((HEADER + body).encode(), Style())
    assert [(report.call, report.outcome) for report in found] == [
        ("op.drop_index", Outcome.UNGUARDED),
        ("op.rename_table", Outcome.GUARDED),
        ("op.add_column", Outcome.GUARDED),  # after the removal: the table it needs is there on a re-run
    ]
    assert found[0].reason.startswith("at risk: guarded, but `op.rename_table(old, ...)` on line 11, after it,")
    assert b'if _idempotify("op.drop_index: index", name, "ix_" + name):' in output  # still guarded
    again, found_again = rewrite_source(output, Style())
    assert again == output
    assert (found_again[0].outcome, found_again[0].reason[:40]) == (Outcome.UNGUARDED, found[0].reason[:40])


def test_an_op_in_a_helper_function_called_before_its_caller_removes_the_table_is_at_risk() -> None:
    helpers = (
        "def _drop_fk(table, name):\n"
        "    op.drop_constraint(name, table, type_='foreignkey')\n\n\n"
        "def _add(table):\n"
        "    op.add_column(table, sa.Column('x', sa.Integer))\n\n\n"
    )
    header = HEADER.replace("def upgrade():\n", helpers + "def upgrade():\n")
    body = "    _drop_fk('a', 'fk_a_b')\n    op.rename_table('a', 'a2')\n    _add('a2')\n"
    found = reports(body, header)
    assert [(report.call, report.outcome) for report in found] == [
        ("op.drop_constraint", Outcome.UNGUARDED),
        ("op.add_column", Outcome.GUARDED),  # called after the rename only
        ("op.rename_table", Outcome.GUARDED),
    ]
    assert found[0].reason.startswith(
        "at risk: guarded, but `op.rename_table('a', ...)` in upgrade() on line 17, after the call on line 16,"
    )


def test_a_named_table_the_later_removals_do_not_name_is_not_at_risk() -> None:
    helpers = "def _add():\n    op.add_column('spans', sa.Column('x', sa.Integer))\n\n\n"
    header = HEADER.replace("def upgrade():\n", helpers + "def upgrade():\n")
    found = reports("    _add()\n    op.drop_table('rollups')\n", header)
    assert [(report.call, report.outcome, report.reason) for report in found] == [
        ("op.add_column", Outcome.GUARDED, ""),
        ("op.drop_table", Outcome.GUARDED, ""),
    ]


def test_an_orm_session_on_the_connection_is_listed_call_by_call() -> None:
    body = (
        "    session = orm.Session(bind=op.get_bind())\n"
        "    rows = session.query(Study).filter(Study.id > 0).all()\n"
        "    session.bulk_save_objects([Study(id=1)])\n"
        "    session.query(Value).delete()\n"
        "    session.delete(rows[0])\n"
        "    session.commit()\n"
        "    with op.batch_alter_table('studies') as batch_op:\n"
        "        batch_op.drop_column('direction')\n"
    )
    found = reports(
        body, HEADER.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\nfrom sqlalchemy import orm\n")
    )
    assert [(report.call, report.outcome, report.reason.split(",")[0]) for report in found] == [
        ("session.query", Outcome.UNGUARDED, "its ORM query is a read"),  # its function drops a column
        ("session.bulk_save_objects", Outcome.UNGUARDED, "its ORM session writes rows (inserts or updates)"),
        ("session.query", Outcome.UNGUARDED, "its ORM call changes data: it re-runs only if its filter makes it so"),
        ("session.delete", Outcome.UNGUARDED, "its ORM call changes data: it re-runs only if its filter makes it so"),
        ("session.commit", Outcome.UNGUARDED, "its ORM session writes what was changed on objects it loaded"),
        ("batch_op.drop_column", Outcome.GUARDED, ""),
    ]


def test_an_orm_query_in_a_function_that_drops_nothing_is_already_safe() -> None:
    body = "    with orm.Session(bind=op.get_bind()) as session:\n        n = session.query(Study).count()\n"
    assert only(body) == (Outcome.ALREADY_SAFE, "its ORM query is a read")


def test_a_nested_functions_parameter_is_not_the_functions_value_of_that_name() -> None:
    body = (
        "    sql = 'DROP TABLE t'\n"
        "    def run(sql):\n"
        "        op.execute(sql)\n"
        "    op.drop_index('ix_t_a', table_name='t')\n"
        "    run('SELECT 1')\n"
    )
    output, _ = rewrite_source((HEADER + body).encode(), Style())
    assert b'_idempotify("op.drop_index: index", "t", "ix_t_a"):' in output  # upgrade drops no table: no gone=


def test_a_seed_copied_from_a_column_its_function_drops_is_left_unguarded() -> None:
    """airflow 0038_3_0_0: guarded while its table is empty, the INSERT ... SELECT ran again on a re-run whenever
    its source held no rows, and failed on the column the function had dropped since. Its fixed rows are a seed."""
    body = (
        "    op.create_table('active', sa.Column('name', sa.String(50)))\n"
        '    op.execute("INSERT INTO active (name) SELECT name FROM users WHERE legacy IS NULL")\n'
        "    op.drop_column('users', 'legacy')\n"
    )
    created, copied, dropped = reports(body)
    assert (copied.outcome, created.outcome, dropped.outcome) == (Outcome.UNGUARDED, Outcome.GUARDED, Outcome.GUARDED)
    assert copied.reason.startswith(
        "its SQL inserts rows it selects, in a function whose run drops or renames tables or columns"
    )
    fixed = body.replace("SELECT name FROM users WHERE legacy IS NULL", "VALUES ('a')")
    assert [report.outcome for report in reports(fixed)] == [Outcome.GUARDED] * 3
    kept = body.replace("    op.drop_column('users', 'legacy')\n", "")
    assert [report.outcome for report in reports(kept)] == [Outcome.GUARDED] * 2


def test_an_orm_session_that_loads_objects_writes_their_changes_when_it_commits() -> None:
    """Objects loaded through a session and changed in Python are written by its commit (its unit of work)."""
    body = (
        "    session = orm.Session(bind=op.get_bind())\n"
        "    for user in session.query(User).all():\n"
        "        user.name = user.name.strip()\n"
        "    first = session.get(User, 1)\n"
        "    session.commit()\n"
    )
    found = reports(body)
    assert [(report.call, report.outcome, report.reason.split(",")[0]) for report in found] == [
        ("session.query", Outcome.ALREADY_SAFE, "its ORM query is a read"),
        ("session.get", Outcome.ALREADY_SAFE, "its ORM query is a read"),
        ("session.commit", Outcome.UNGUARDED, "its ORM session writes what was changed on objects it loaded"),
    ]


def test_a_commit_of_a_session_that_loads_no_objects_is_no_op() -> None:
    body = (
        "    session = orm.Session(bind=op.get_bind())\n"
        "    session.execute(sa.text('UPDATE users SET a = 1'))\n"
        "    session.commit()\n"
    )
    assert [report.call for report in reports(body)] == ["session.execute"]


def test_sqlalchemy_ddl_on_the_connection_is_listed() -> None:
    """superset c82ee8a39623 makes its tables with ``Tag.__table__.create(bind)``: a re-run failed at a call no
    report named. SQLAlchemy's create() and drop() look first only with checkfirst=True (create_all and drop_all
    by default); a drop that looks is already safe, a create looks at tables, not at their indexes; an enum's
    create is guarded, the connection passed as bind= too."""
    body = (
        "    bind = op.get_bind()\n"
        "    Tag.__table__.create(bind)\n"
        "    Tag.__table__.create(bind, checkfirst=True)\n"
        "    Tag.__table__.create(bind, checkfirst=CHECK)\n"
        "    sa.Index('ix', users.c.name).drop(bind=bind)\n"
        "    Base.metadata.create_all(bind=bind, tables=[Tag.__table__])\n"
        "    Base.metadata.drop_all(bind, checkfirst=False)\n"
        "    Base.metadata.drop_all(bind=bind)\n"
        "    sa.Enum('a', name='mood').create(bind=bind)\n"
        "    Tag.__table__.create(engine)\n"  # not the migration's connection: not an op
    )
    no_checkfirst = "SQLAlchemy's create()/drop() of a table, index or sequence is not guarded"
    tables_only = "SQLAlchemy looks first, table by table (checkfirst)"
    found = [(report.call, report.outcome, report.reason.split(":")[0]) for report in reports(body)]
    assert found == [
        ("Tag.__table__.create", Outcome.UNGUARDED, no_checkfirst),
        ("Tag.__table__.create", Outcome.UNGUARDED, tables_only),
        ("Tag.__table__.create", Outcome.UNGUARDED, no_checkfirst),
        ("sa.Index('ix', users.c.name).drop", Outcome.UNGUARDED, no_checkfirst),
        ("Base.metadata.create_all", Outcome.UNGUARDED, tables_only),
        ("Base.metadata.drop_all", Outcome.UNGUARDED, "checkfirst=False"),
        ("Base.metadata.drop_all", Outcome.ALREADY_SAFE, "SQLAlchemy looks first (checkfirst)"),
        ("sa.Enum(...).create", Outcome.GUARDED, ""),
    ]


def test_a_removal_by_a_loop_over_named_tables_puts_only_those_at_risk() -> None:
    """superset f92a3124dd66: a key of "slices" dropped, then old tables dropped by a loop over their names."""
    body = (
        "    with op.batch_alter_table('slices') as batch_op:\n"
        "        batch_op.drop_constraint('fk_slices_ds', type_='foreignkey')\n"
        "    op.drop_index('ix_alerts_a', table_name='alerts')\n"
        "    for table in ['alerts', 'clusters']:\n"
        "        op.drop_table(table)\n"
    )
    found = reports(body)
    assert [(report.call, report.outcome, report.reason[:40]) for report in found] == [
        ("batch_op.drop_constraint", Outcome.GUARDED, ""),
        ("op.drop_index", Outcome.UNGUARDED, "at risk: guarded, but `op.drop_table(tab"),
        ("op.drop_table", Outcome.GUARDED, ""),
    ]


def _drop_looks_at_what_is_made(body: str) -> bool:
    """Whether the rewritten drop of primary key "pk" first asks if the key is already the one made after it."""
    output = rewrite_source((HEADER + body).encode(), Style())[0].decode()
    drop = output.index('drop_constraint("pk"')
    return "exact=True" in output[output.rindex("if ", 0, drop) : drop]


def test_a_primary_key_made_again_under_its_name_is_dropped_only_while_it_is_not_the_one_made() -> None:
    batch = (
        '    with op.batch_alter_table("t") as batch_op:\n'
        '        batch_op.drop_constraint("pk", type_="primary")\n'
        '        batch_op.drop_column("old")\n'
        '        batch_op.create_primary_key("pk", ["a", "b"])\n'
    )
    plain = '    op.drop_constraint("pk", "t", type_="primary")\n    op.create_primary_key("pk", "t", ["a"])\n'
    assert _drop_looks_at_what_is_made(batch)
    assert _drop_looks_at_what_is_made(plain)


@pytest.mark.parametrize(
    "between",
    [
        'batch_op.alter_column("a", nullable=True)',  # a column of the key: it needs the key gone
        "batch_op.drop_column(name)",  # a column named at run time may be one
        'batch_op.execute("ALTER TABLE t MODIFY a INT")',  # what SQL does is not known here
        "loosen(batch_op)",  # a function given the batch may do anything to the key
    ],
)
def test_a_primary_key_is_dropped_as_before_when_an_op_between_may_touch_its_columns(between: str) -> None:
    body = (
        '    with op.batch_alter_table("t") as batch_op:\n'
        '        batch_op.drop_constraint("pk", type_="primary")\n'
        f"        {between}\n"
        '        batch_op.create_primary_key("pk", ["a", "b"])\n'
    )
    assert not _drop_looks_at_what_is_made(body)


def test_a_primary_key_is_dropped_as_before_when_code_stands_between_the_drop_and_the_make() -> None:
    body = (
        '    op.drop_constraint("pk", "t", type_="primary")\n'
        '    op.get_bind().exec_driver_sql("UPDATE t SET a = 1")\n'
        '    op.create_primary_key("pk", "t", ["a"])\n'
    )
    assert not _drop_looks_at_what_is_made(body)


@pytest.mark.parametrize(
    ("column", "carried"),
    [
        ('sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id"))', "a foreign key"),
        ('sa.Column("code", sa.String(8), index=True)', "an index"),
        ('sa.Column("code", sa.String(8), unique=True)', "a unique constraint"),
    ],
)
def test_a_column_added_with_what_alembic_adds_after_it_is_left_unguarded(column: str, carried: str) -> None:
    """ADD COLUMN, then ADD CONSTRAINT or CREATE INDEX: a guard on the column would skip them for good after a
    deploy that died between them (MariaDB), where the original fails loudly. In a batch block it stays guarded:
    on SQLite the copy's CREATE TABLE makes them with the column, and an add_column of a column the table has
    replaces it with its values lost (arize-phoenix's chain, re-run)."""
    outcome, reason = only(f'    op.add_column("t", {column})\n')
    assert outcome is Outcome.UNGUARDED
    assert reason.startswith(f"its column carries {carried}, which Alembic adds in statements of their own")
    batch = f'    with op.batch_alter_table("t") as b:\n        b.add_column({column})\n'
    assert only(batch)[0] is Outcome.GUARDED


def test_a_column_added_with_index_false_is_guarded() -> None:
    assert (
        only('    op.add_column("t", sa.Column("code", sa.String(8), index=False, unique=None))\n')[0]
        is Outcome.GUARDED
    )


def test_a_second_run_judges_a_data_change_as_the_first_did() -> None:
    """The rewrite adds a call of the batch recovery helper before the block; as code whose work with rows is
    not seen, it made the UPDATE before it "left unguarded" on the second run (prefect's chain)."""
    source = (
        HEADER
        + '    op.execute("UPDATE t SET x = 0.0 WHERE x is null")\n'
        + '    with op.batch_alter_table("t") as batch_op:\n'
        + '        batch_op.alter_column("x", existing_type=sa.FLOAT(), nullable=False)\n'
    )
    first, reports = rewrite_source(source.encode(), Style())
    assert b"_idempotify_recover_batch(" in first
    for style in (Style(), Style(helpers="migrations.guards")):
        output, _ = rewrite_source(source.encode(), style)
        again = rewrite_source(output, style)[1]
        assert (
            [(r.outcome, r.reason) for r in again if r.call == "op.execute"]
            == [(r.outcome, r.reason) for r in reports if r.call == "op.execute"]
            == [
                (
                    Outcome.ALREADY_SAFE,
                    "its SQL UPDATE sets values that do not depend on what it sets: a re-run changes nothing",
                )
            ]
        )


@pytest.mark.parametrize(
    ("index", "looked_for"),
    [
        ('sa.Index(f"ix_{T}_a", "a")', 'indexes=[["a"], f"ix_{T}_a"]'),
        ('sa.Index(None, "a", "b")', 'indexes=[["a"], ["a", "b"]]'),
        ('sa.Index(name(), "a")', None),
        ('sa.Index(f"ix_{name()}_a", "a")', None),
        ("*extra_columns()", None),
        ('sa.Column("c", sa.Integer, index=flag())', None),
        ('sa.Column("c", sa.Integer, index=NO)', 'indexes=[["a"]]'),  # NO = False, bound once in the module
    ],
)
def test_a_create_table_guard_looks_for_the_indexes_it_makes_where_it_can_read_them(
    index: str, looked_for: str | None
) -> None:
    body = f'    op.create_table("t", sa.Column("a", sa.Integer, index=True), sa.Column("b", sa.Integer), {index})\n'
    output, reports = rewrite_source((HEADER.replace("revision =", "NO = False\nrevision =") + body).encode(), Style())
    if looked_for is None:
        assert reports[0].outcome is Outcome.UNGUARDED
        assert reports[0].reason.startswith("its columns or indexes are not all written out")
    else:
        assert reports[0].outcome is Outcome.GUARDED
        assert looked_for in output.decode()


def test_a_create_table_whose_index_a_later_op_may_change_looks_at_the_table_only() -> None:
    """A re-run right after success would find the index dropped (or its column renamed) by the later op."""
    for later in ('op.drop_index("ix_t_a", table_name="t")', 'op.alter_column("t", "a", new_column_name="b")'):
        body = f'    op.create_table("t", sa.Column("a", sa.Integer, index=True))\n    {later}\n'
        output = rewrite_source((HEADER + body).encode(), Style())[0].decode()
        assert 'if _idempotify("op.create_table: no table", "t"):' in output


def test_a_column_added_with_a_check_of_its_own_is_guarded() -> None:
    """A column's CHECK goes inline in ADD COLUMN: no statement of its own follows it."""
    assert (
        only('    op.add_column("t", sa.Column("n", sa.Integer, sa.CheckConstraint("n > 0")))\n')[0] is Outcome.GUARDED
    )


def test_a_create_table_column_bound_to_a_name_once_is_read() -> None:
    body = '    message = sa.Column("message", sa.Text, index=True)\n    op.create_table("t", message)\n'
    output, reports = rewrite_source((HEADER + body).encode(), Style())
    assert reports[0].outcome is Outcome.GUARDED
    assert 'indexes=[["message"]]' in output.decode()


@pytest.mark.parametrize(
    ("later", "looks_at_indexes"),
    [
        ('op.execute("INSERT INTO t (a) VALUES (1)")', True),  # a backfill: phoenix's crash point lost indexes
        ('op.alter_column("other", "a", nullable=False)', True),
        ('with op.batch_alter_table("other") as b:\n        b.drop_column("a")', True),
        ('with op.batch_alter_table("t") as b:\n        b.drop_column("a")', False),
        ('op.execute("DROP INDEX ix_t_a")', False),
        ('op.execute("ALTER TABLE t RENAME COLUMN a TO b")', False),
    ],
)
def test_a_create_table_looks_for_its_indexes_unless_a_later_op_may_change_them(
    later: str, looks_at_indexes: bool
) -> None:
    body = f'    op.create_table("t", sa.Column("a", sa.Integer, index=True))\n    {later}\n'
    output = rewrite_source((HEADER + body).encode(), Style())[0].decode()
    assert ("indexes=" in output) is looks_at_indexes


def test_sql_on_a_connection_bound_inside_a_batch_block_is_reported() -> None:
    """A batch block's ops are looked for before the block is visited, to plan it, when ``conn`` is not yet
    known as the connection: what is found then must not stand for what the visit finds."""
    body = (
        "    with op.batch_alter_table('t') as batch_op:\n"
        "        batch_op.add_column(sa.Column('c', sa.Integer))\n"
        "        conn = op.get_bind()\n"
        "        conn.execute(sa.text('UPDATE t SET c = 1'))\n"
    )
    assert [(report.line, report.call) for report in reports(body)] == [
        (9, "batch_op.add_column"),
        (11, "conn.execute"),
    ]


def test_an_op_in_a_try_is_left_unguarded_where_its_failure_decides_what_runs_next() -> None:
    body = (
        "    try:\n"  # the create runs only if the drop did not fail
        "        op.drop_constraint('uq_old', 't', type_='unique')\n"
        "        op.create_unique_constraint('uq_new', 't', ['a'])\n"
        "    except Exception:\n"
        "        pass\n"
        "    try:\n"  # the except runs only if the drop failed
        "        op.drop_constraint('a', 't', type_='unique')\n"
        "    except Exception:\n"
        "        op.drop_constraint('b', 't', type_='unique')\n"
        "    try:\n"  # the else runs only if the drop did not fail
        "        op.drop_index('ix_x', table_name='t')\n"
        "    except Exception:\n"
        "        pass\n"
        "    else:\n"
        "        op.drop_index('ix_y', table_name='t')\n"
        "    for name in ('ix_z', 'ix_w'):\n"  # nothing after it: a skip and a failure go on alike
        "        try:\n"
        "            op.drop_index(name, table_name='t')\n"
        "        except Exception:\n"
        "            pass\n"
        "    try:\n"  # a failure goes on up, as outside a try
        "        op.add_column('t', sa.Column('c', sa.Integer))\n"
        "        op.create_index('ix_t_c', 't', ['c'])\n"
        "    except Exception:\n"
        "        raise\n"
        "    with contextlib.suppress(Exception):\n"  # a try that passes
        "        op.drop_index('ix_s', table_name='t')\n"
        "        op.drop_index('ix_r', table_name='t')\n"
    )
    unguarded = {report.line for report in reports(body) if report.outcome is Outcome.UNGUARDED}
    guarded = {report.line for report in reports(body) if report.outcome is Outcome.GUARDED}
    assert unguarded == {9, 14, 18, 34}
    assert guarded == {10, 16, 22, 25, 29, 30, 35}


def test_a_function_given_a_batch_op_that_churns_leaves_alone_only_its_batch_ops() -> None:
    """Its plain ops run at once, as anywhere: a create_table there stays guarded (it was left alone too)."""
    body = (
        "    with op.batch_alter_table('t') as batch_op:\n"
        "        helper(batch_op)\n"
        "\n"
        "\n"
        "def helper(batch_op):\n"
        "    op.create_table('v', sa.Column('id', sa.Integer, primary_key=True))\n"
        "    batch_op.drop_column('a')\n"
        "    batch_op.add_column(sa.Column('a', sa.Integer))\n"
    )
    assert [(report.call, report.outcome) for report in reports(body)] == [
        ("op.create_table", Outcome.GUARDED),
        ("batch_op.drop_column", Outcome.UNGUARDED),
        ("batch_op.add_column", Outcome.UNGUARDED),
    ]


def test_a_crlf_file_with_an_argument_over_lines_rewrites_as_its_lf_copy() -> None:
    """The code of a guard's argument keeps the file's CRLF; the header used to be cut at "\\n" (an internal
    error on Airflow's try_id migration saved with CRLF)."""
    body = (
        "    with op.batch_alter_table('t') as batch_op:\n"
        "        batch_op.drop_column('id')\n"
        "        batch_op.create_primary_key(\n"
        "            't_pkey',\n"
        "            [\n"
        "                'try_id',\n"
        "            ],\n"
        "        )\n"
    )
    source = (HEADER + body).encode()
    lf, _ = rewrite_source(source, Style())
    crlf, _ = rewrite_source(source.replace(b"\n", b"\r\n"), Style())
    assert crlf == lf.replace(b"\n", b"\r\n")


def test_a_file_with_old_mac_line_ends_and_an_argument_over_lines_rewrites_as_its_lf_copy() -> None:
    """An internal error before (review of stop 28): the header was cut at "\\n" only."""
    body = "    op.add_column(\n        't'\n        'able',\n        sa.Column('x', sa.Integer),\n    )\n"
    source = (HEADER + body).encode()
    lf, _ = rewrite_source(source, Style())
    cr, _ = rewrite_source(source.replace(b"\n", b"\r"), Style())
    assert b"if _idempotify(" in lf
    assert cr == lf.replace(b"\n", b"\r")


def test_a_comment_in_an_argument_a_guard_copies_is_left_out_of_the_guard() -> None:
    """Black moves the comment after the guard's colon: an internal error before (review of stop 28)."""
    body = "    with op.batch_alter_table(('t'  # the table\n    )) as batch_op:\n        batch_op.drop_column('x')\n"
    once, reports = rewrite_source((HEADER + body).encode(), Style())
    assert b'if _idempotify("batch_op.drop_column: column", ("t"), "x"):' in once
    assert [report.outcome for report in reports] == [Outcome.GUARDED]
    compile(once, "migration.py", "exec")
    assert rewrite_source(once, Style())[0] == once


def test_an_except_on_one_line_is_read_as_one_on_lines_of_its_own() -> None:
    body = (
        "    for name in ('ix_a', 'ix_b'):\n"  # the op the try ends with, under an except that passes: guarded
        "        try:\n"
        "            op.drop_index(name, table_name='t')\n"
        "        except Exception: pass\n"
        "    try:\n"  # a failure goes on up: both guarded
        "        op.add_column('t', sa.Column('c', sa.Integer))\n"
        "        op.create_index('ix_t_c', 't', ['c'])\n"
        "    except Exception: raise\n"
    )
    assert [report.outcome for report in reports(body)] == [Outcome.GUARDED] * 3
