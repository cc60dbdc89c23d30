"""On PostgreSQL a snapshot reads the catalog in one statement: it must read exactly what the inspector and the
fingerprint queries read one by one (tables, fingerprints, sequences, enums), on every golden fixture's schema
after its upgrade and after its downgrade, and on the shapes no fixture builds. And a table's fingerprint must
change whenever its reflection does: a snapshot that takes kept reflections is the snapshot that reflects anew."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from codemod.verify import schema
from codemod.verify.database import scratch_server
from codemod.verify.execution import load_migration, run_on_connection
from codemod.verify.scenarios import may_leave_transaction
from codemod.verify.schema import Snapshot, _catalog, _catalog_in_one_query, snapshot_of
from tests.base_schema import BASE
from tests.conftest import require_dialect
from tests.databases import SERVERS
from tests.fixtures import golden_paths, read_golden

GOLDENS = [
    golden
    for golden in (read_golden(path) for path in golden_paths())
    if golden.output != golden.input and "postgresql" in golden.dialects and not may_leave_transaction(golden.input)
]


@pytest.fixture
def connection() -> Iterator[sa.Connection]:
    """A connection to a new PostgreSQL scratch database, in a transaction rolled back at the end."""
    require_dialect("postgresql")
    with scratch_server(SERVERS["postgresql"]) as server:
        engine = server.create().engine
        with engine.connect() as connection:
            yield connection
        engine.dispose()


def _reflected_anew(connection: sa.Connection) -> Snapshot:
    """``snapshot_of`` with no reflection kept from before (those kept are left as they were)."""
    kept = dict(schema._REFLECTED)
    schema._REFLECTED.clear()
    try:
        return snapshot_of(connection)
    finally:
        schema._REFLECTED.clear()
        schema._REFLECTED.update(kept)


def _same_catalog(connection: sa.Connection, label: str) -> None:
    one_query = _catalog_in_one_query(connection)
    assert one_query == _catalog(connection, sa.inspect(connection)), label
    assert one_query.tables, f"{label}: the base schema has tables"
    assert snapshot_of(connection) == _reflected_anew(connection), f"{label}: a kept reflection is stale"


def test_the_one_query_reads_what_the_inspector_reads_on_every_fixture(connection: sa.Connection) -> None:
    assert len(GOLDENS) > 40, "the fixtures' schemas are many shapes"
    for golden in GOLDENS:
        savepoint = connection.begin_nested()
        try:
            BASE.create_all(connection)
            _same_catalog(connection, f"{golden.id}: the base schema")
            module = load_migration(golden.input, golden.path)
            run_on_connection(connection, module, "upgrade", golden.naming_convention)
            _same_catalog(connection, f"{golden.id}: after its upgrade")
            run_on_connection(connection, module, "downgrade", golden.naming_convention)
            _same_catalog(connection, f"{golden.id}: after its downgrade")
        finally:
            savepoint.rollback()


SHAPES = [
    # no column at all; mixed case, and names Python and the server's collation sort apart
    'CREATE TABLE "Empty" ()',
    'CREATE TABLE "B" (id integer PRIMARY KEY)',
    'CREATE TABLE a_table (id integer PRIMARY KEY, b_id integer REFERENCES "B" (id) ON DELETE CASCADE)',
    "CREATE TABLE _under (id integer)",
    # one constraint name on two tables
    "CREATE TABLE one (n integer CONSTRAINT positive CHECK (n > 0))",
    "CREATE TABLE two (n integer CONSTRAINT positive CHECK (n > 1))",
    # partitioned, and a partition; an expression and a partial index
    "CREATE TABLE measures (day date NOT NULL, v integer) PARTITION BY RANGE (day)",
    "CREATE TABLE measures_2020 PARTITION OF measures FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')",
    "CREATE INDEX ix_lower ON _under ((id * 2)) WHERE id > 0",
    # not tables: views, a temporary table, a table in a schema off the search path
    "CREATE VIEW v AS SELECT 1 AS one",
    "CREATE MATERIALIZED VIEW mv AS SELECT 1 AS one",
    "CREATE TEMPORARY TABLE scratch_only (id integer)",
    "CREATE SCHEMA elsewhere",
    "CREATE TABLE elsewhere.hidden (id integer)",
    "CREATE SEQUENCE elsewhere.hidden_seq",
    "CREATE TYPE elsewhere.hidden_enum AS ENUM ('x')",
    # sequences owned by a column and not; enums with no label, and labels added out of order
    "CREATE TABLE serials (id serial PRIMARY KEY, big bigserial)",
    "CREATE SEQUENCE free_seq",
    "CREATE TYPE nothing AS ENUM ()",
    "CREATE TYPE mood AS ENUM ('sad', 'happy')",
    "ALTER TYPE mood ADD VALUE 'calm' BEFORE 'happy'",
    # a dropped column; a column dropped and added again, its index made again on it
    "ALTER TABLE one ADD COLUMN gone integer",
    "ALTER TABLE one DROP COLUMN gone",
    "CREATE TABLE pair (x integer, y integer)",
    "CREATE INDEX ix_pair ON pair (x)",
    "ALTER TABLE pair DROP COLUMN x",
    "ALTER TABLE pair RENAME COLUMN y TO x",
    "ALTER TABLE pair ADD COLUMN y integer",
    "CREATE INDEX ix_pair ON pair (y)",
    "DROP INDEX ix_pair",
    "CREATE INDEX ix_pair ON pair (x)",
    "DROP INDEX ix_pair",
    "CREATE UNIQUE INDEX ix_pair ON pair (x)",
    "DROP INDEX ix_pair",
    "CREATE INDEX ix_pair ON pair (x) INCLUDE (y)",
    "DROP INDEX ix_pair",
    "CREATE INDEX ix_pair ON pair (x, y)",
    "ALTER INDEX ix_pair RENAME TO ix_pair_2",
    # the same column names and index key numbers, the key naming another column
    "CREATE TABLE shift (a integer, b integer)",
    "CREATE INDEX ix_shift ON shift (b)",
    "DROP TABLE shift",
    "CREATE TABLE shift (gone integer, a integer, b integer)",
    "ALTER TABLE shift DROP COLUMN gone",
    "CREATE INDEX ix_shift ON shift (a)",
    # what another table's renames change in this one's foreign key; a renamed type in a column's
    'ALTER TABLE "B" RENAME COLUMN id TO key',
    'ALTER TABLE "B" RENAME TO "C"',
    "ALTER TABLE a_table ADD COLUMN feeling mood",
    "ALTER TYPE mood RENAME TO humour",
    "ALTER TABLE two RENAME CONSTRAINT positive TO more_than_one",
]


def test_the_one_query_reads_what_the_inspector_reads_on_shapes_no_fixture_builds(connection: sa.Connection) -> None:
    for statement in SHAPES:
        connection.exec_driver_sql(statement)
        _same_catalog(connection, f"after {statement}")
    catalog = _catalog_in_one_query(connection)
    assert "scratch_only" not in catalog.tables and "hidden" not in catalog.tables and "v" not in catalog.tables
    assert ("nothing", ()) in (catalog.enums or []) and "free_seq" in (catalog.sequences or [])
    assert catalog.fingerprints["one"] != catalog.fingerprints["two"], "each table's own constraint"
    # A table on the search path beyond the current schema is a table as the inspector sees it (not fingerprinted).
    connection.exec_driver_sql("SET LOCAL search_path TO public, elsewhere")
    _same_catalog(connection, "with a second schema on the search path")
    assert "hidden" in _catalog_in_one_query(connection).tables
    snapshot_of(connection)  # and the snapshot reads it


def test_a_snapshot_after_a_migration_deallocated_every_prepared_statement(connection: sa.Connection) -> None:
    """The catalog query is prepared once per connection; a migration's DEALLOCATE ALL must not break the next
    snapshot on that connection."""
    connection.exec_driver_sql("CREATE TABLE kept (id INTEGER PRIMARY KEY)")
    before = snapshot_of(connection)
    connection.exec_driver_sql("DEALLOCATE ALL")
    assert snapshot_of(connection) == before


def test_a_revision_is_compiled_as_alembic_imports_it_without_postponed_annotations() -> None:
    """codemod.verify.execution has ``from __future__ import annotations``; a revision compiled with it would
    keep an ORM model's ``Mapped[int]`` a string that SQLAlchemy cannot resolve (arize-phoenix's chain)."""
    source = (
        "import sqlalchemy as sa\n"
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n\n\n"
        "class Base(DeclarativeBase):\n    pass\n\n\n"
        "class Span(Base):\n"
        "    __tablename__ = 'spans'\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
    )
    module = load_migration(source, "0001_spans.py")
    assert module.Span.__table__.c.id.type.python_type is int
