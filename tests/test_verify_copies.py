"""Copies of a scratch database hold what the original holds: schema (keys, foreign keys, indexes, sequences)
and rows, on every database; and every copy is dropped when the server closes."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from codemod.verify.database import scratch_server
from codemod.verify.schema import differences, rows_of, snapshot, snapshot_of
from tests.conftest import require_dialect
from tests.databases import DIALECTS, SERVERS

SCHEMA = sa.MetaData()
sa.Table("teams", SCHEMA, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20), unique=True))
sa.Table(
    "players",
    SCHEMA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id", name="fk_players_team")),
    sa.Index("ix_players_team_id", "team_id"),
)
sa.Table("coaches", SCHEMA, sa.Column("id", sa.Integer, primary_key=True))  # no rows


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_copy_holds_the_schema_and_the_rows(dialect: str) -> None:
    require_dialect(dialect)
    with scratch_server(SERVERS.get(dialect)) as server:
        state = server.create()

        def fill(connection: sa.Connection) -> None:
            SCHEMA.create_all(connection)
            connection.execute(sa.text("INSERT INTO teams (id, name) VALUES (1, 'a'), (2, 'b')"))
            connection.execute(sa.text("INSERT INTO players (id, team_id) VALUES (7, 2)"))

        state.database.run(fill)
        assert server.can_copy(state)
        copy = server.create(template=state)

        def seen(connection: sa.Connection) -> dict[str, object]:
            return snapshot_of(connection) | rows_of(connection, ["teams", "players", "coaches"])

        expected = state.database.run(seen)
        assert expected["rows of players"], "the rows to copy are there"
        assert copy.database.run(seen) == expected
        copy.database.run(
            lambda connection: connection.execute(sa.text("INSERT INTO teams (id, name) VALUES (3, 'c')"))
        )
        assert state.database.run(seen) == expected, "the copy is a database of its own"
        state.database.run(lambda connection: connection.execute(sa.text("INSERT INTO coaches (id) VALUES (5)")))
        changed = state.database.run(seen)
        assert server.create(template=state).database.run(seen) == changed, "a copy made later holds what came since"


def test_a_sqlite_snapshot_sees_an_expression_index_that_reflection_leaves_out() -> None:
    """A guard that wrongly skipped dropping one would otherwise leave a difference nobody sees."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        connection.exec_driver_sql("CREATE INDEX ix_t_lower ON t (lower(name))")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SQLAlchemy's warning that it skips the index is not passed on
        with_index = snapshot(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_t_lower")
    assert differences(with_index, snapshot(engine)) == ["indexes by name: expected ['t.ix_t_lower'], got []"]


def test_a_mariadb_copy_keeps_the_index_innodb_made_for_a_foreign_key_its_own() -> None:
    """InnoDB names the index it makes for a key after the key, and re-makes it when a revision drops the key
    and adds another on the column; an index made by hand stays. The copy must do as its original does."""
    require_dialect("mariadb")
    steps = [
        "CREATE TABLE p (id INT PRIMARY KEY)",
        "CREATE TABLE c (id INT PRIMARY KEY, pid INT, CONSTRAINT fk_c_pid FOREIGN KEY (pid) REFERENCES p (id))",
        "CREATE TABLE h (id INT PRIMARY KEY, pid INT, KEY ix_h_pid (pid),"
        " CONSTRAINT fk_h_pid FOREIGN KEY (pid) REFERENCES p (id))",
    ]
    renamed = [
        "ALTER TABLE {table} DROP FOREIGN KEY fk_{table}_pid",
        "ALTER TABLE {table} CHANGE pid wid INT",
        "ALTER TABLE {table} ADD CONSTRAINT fk_{table}_wid FOREIGN KEY (wid) REFERENCES p (id)",
    ]

    def run(statements: list[str]) -> Callable[[sa.Connection], None]:
        def work(connection: sa.Connection) -> None:
            for statement in statements:
                connection.exec_driver_sql(statement)

        return work

    with scratch_server(SERVERS["mariadb"]) as server:
        state = server.create()
        state.database.run(run(steps))
        copy = server.create(template=state)
        assert copy.database.run(snapshot_of) == state.database.run(snapshot_of)
        for database in (state.database, copy.database):
            for table in ("c", "h"):
                database.run(run([step.format(table=table) for step in renamed]))
        expected = state.database.run(snapshot_of)
        assert "fk_c_wid" in repr(expected["c"]) and "ix_h_pid" in repr(expected["h"])
        assert differences(expected, copy.database.run(snapshot_of)) == []
