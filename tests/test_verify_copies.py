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


def test_a_mariadb_copy_keeps_the_index_innodb_named_after_the_column_its_own() -> None:
    """For a key created without a name InnoDB names the key ``<table>_ibfk_<n>`` and its index after the
    column, and drops that index when an index that can serve the key is made; an index made by hand on the
    column under the same name stays (zenml 3944116bbd56, flavor and pipeline tables). The copy must do as its
    original does; one whose keys InnoDB could not name again as they are is not copied (it is replayed)."""
    require_dialect("mariadb")
    steps = [
        "CREATE TABLE p (id INT PRIMARY KEY)",
        "CREATE TABLE c (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES p (id))",
        "CREATE TABLE h (id INT PRIMARY KEY, pid INT, KEY pid (pid), FOREIGN KEY (pid) REFERENCES p (id))",
        "CREATE TABLE m (id INT PRIMARY KEY, pid INT, qid INT, rid INT,"
        " CONSTRAINT fk_m_rid FOREIGN KEY (rid) REFERENCES p (id),"
        " FOREIGN KEY (qid) REFERENCES p (id), FOREIGN KEY (pid) REFERENCES p (id))",
    ]
    served = ["CREATE INDEX ix_{table}_pid_id ON {table} (pid, id)"]

    def run(statements: list[str]) -> Callable[[sa.Connection], None]:
        def work(connection: sa.Connection) -> None:
            for statement in statements:
                connection.exec_driver_sql(statement)

        return work

    def shown(connection: sa.Connection) -> list[str]:
        return [str(connection.exec_driver_sql(f"SHOW CREATE TABLE {table}").one()[1]) for table in "chmp"]

    with scratch_server(SERVERS["mariadb"]) as server:
        state = server.create()
        state.database.run(run(steps))
        assert server.can_copy(state)
        copy = server.create(template=state)
        assert copy.database.run(shown) == state.database.run(shown)
        for database in (state.database, copy.database):
            database.run(run([step.format(table=table) for step in served for table in "chm"]))
        expected = state.database.run(snapshot_of)
        assert "('pid', ('pid',)" not in repr(expected["c"]["indexes"]), "InnoDB dropped the index it made"
        assert "('pid', ('pid',)" in repr(expected["h"]["indexes"]), "and kept the one made by hand"
        assert differences(expected, copy.database.run(snapshot_of)) == []
        assert copy.database.run(shown) == state.database.run(shown)
        state.database.run(
            run(
                [
                    "CREATE TABLE n (id INT PRIMARY KEY, a INT, b INT,"
                    " FOREIGN KEY (a) REFERENCES p (id), FOREIGN KEY (b) REFERENCES p (id))",
                    "ALTER TABLE n DROP FOREIGN KEY n_ibfk_1",
                ]
            )
        )
        assert not server.can_copy(state), "n_ibfk_2 alone, with its index: a copy's key would be n_ibfk_1"


def test_a_mariadb_copy_made_of_a_dropped_database_holds_what_its_original_holds() -> None:
    """A dropped scratch database is made into the next copy, keeping the tables it already holds as the original
    holds them: whatever the run it served did to it (columns, indexes, rows, tables made or dropped, a key made
    again over an index made by hand), the copy is the original's, and nothing is left behind."""
    require_dialect("mariadb")
    steps = [
        "CREATE TABLE p (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20))",
        "CREATE TABLE c (id INT PRIMARY KEY, pid INT, CONSTRAINT fk_c_pid FOREIGN KEY (pid) REFERENCES p (id))",
        "CREATE TABLE quiet (id INT PRIMARY KEY, name VARCHAR(20), KEY ix_quiet_name (name))",
        "CREATE TABLE seeded (id INT PRIMARY KEY)",
        "INSERT INTO seeded (id) VALUES (1), (2)",
        "CREATE SEQUENCE s",
    ]
    # What the run a copy served did to it; each leaves a table as SHOW CREATE shows the original's, or not.
    runs = {
        "rows": ["INSERT INTO p (name) VALUES ('x')", "DELETE FROM p", "INSERT INTO quiet (id) VALUES (3)"],
        "schema": [
            "ALTER TABLE quiet ADD COLUMN extra INT",
            "DROP TABLE seeded",
            "CREATE TABLE other (id INT)",
            "CREATE SEQUENCE s2",
        ],
        # The same SHOW CREATE, but the key's index is now one made by hand: it must not stay in a copy.
        "key made again": [
            "ALTER TABLE c DROP FOREIGN KEY fk_c_pid",
            "ALTER TABLE c DROP INDEX fk_c_pid",
            "CREATE INDEX fk_c_pid ON c (pid)",
            "ALTER TABLE c ADD CONSTRAINT fk_c_pid FOREIGN KEY (pid) REFERENCES p (id)",
        ],
        # As "key made again", each statement sent with a SET STATEMENT ... FOR prefix.
        "key made again, SET STATEMENT": [
            "SET STATEMENT max_statement_time=60 FOR ALTER TABLE c DROP FOREIGN KEY fk_c_pid",
            "SET STATEMENT max_statement_time=60 FOR ALTER TABLE c DROP INDEX fk_c_pid",
            "SET STATEMENT max_statement_time=60 FOR CREATE INDEX fk_c_pid ON c (pid)",
            "SET STATEMENT max_statement_time=60 FOR ALTER TABLE c ADD CONSTRAINT fk_c_pid FOREIGN KEY (pid)"
            " REFERENCES p (id)",
        ],
        # The database's own defaults: tables made in the copy later would take them.
        "a character set": ["ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci"],
        "a view": ["CREATE VIEW v AS SELECT id FROM p"],
        "a trigger": ["CREATE TRIGGER tr BEFORE INSERT ON quiet FOR EACH ROW SET NEW.name = 'y'"],
    }
    renamed = [
        "ALTER TABLE c DROP FOREIGN KEY fk_c_pid",
        "ALTER TABLE c CHANGE pid wid INT",
        "ALTER TABLE c ADD CONSTRAINT fk_c_wid FOREIGN KEY (wid) REFERENCES p (id)",
    ]

    def run(statements: list[str]) -> Callable[[sa.Connection], None]:
        def work(connection: sa.Connection) -> None:
            for statement in statements:
                connection.exec_driver_sql(statement)

        return work

    def seen(connection: sa.Connection) -> dict[str, object]:
        defaults = "SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = DATABASE()"
        charset = {"charset": connection.exec_driver_sql(defaults).scalar()}
        return snapshot_of(connection) | rows_of(connection, ["p", "c", "quiet", "seeded"]) | charset

    with scratch_server(SERVERS["mariadb"]) as server:
        state = server.create()
        state.database.run(run(steps))
        expected = state.database.run(seen)
        names = set()
        for what, statements in runs.items():
            served = server.create(template=state)
            served.database.run(run(statements))
            server.drop(served)
            copy = server.create(template=state)
            names |= {served.name, copy.name}
            assert differences(expected, copy.database.run(seen)) == [], what
            copy.database.run(run(["INSERT INTO p (name) VALUES ('z')"]))
            state.database.run(run(["INSERT INTO p (name) VALUES ('z')"]))
            assert copy.database.run(seen) == state.database.run(seen), f"{what}: AUTO_INCREMENT as the original's"
            state.database.run(run(["DELETE FROM p"]))
            copy.database.run(run(renamed))
            assert "fk_c_wid" in repr(copy.database.run(snapshot_of)["c"]), f"{what}: the key's index is InnoDB's"
            server.drop(copy)
        assert len(names) < 2 * len(runs), "dropped databases were made into copies"
    assert not _scratch_databases(names), "every scratch database is dropped"


def _scratch_databases(names: set[str]) -> list[str]:
    engine = sa.create_engine(SERVERS["mariadb"])
    with engine.connect() as connection:
        found = [row[0] for row in connection.exec_driver_sql("SHOW DATABASES") if row[0] in names]
    engine.dispose()
    return found


def test_a_long_list_that_differs_is_said_by_what_differs() -> None:
    names = [f"t.ix_{index}" for index in range(40)]
    expected = {"indexes by name": names}
    actual = {"indexes by name": [name for name in names if name != "t.ix_7"] + ["t.ix_new"]}
    assert differences(expected, actual) == [
        "indexes by name: missing ['t.ix_7']; unexpected ['t.ix_new'] (of 40 expected)"
    ]
