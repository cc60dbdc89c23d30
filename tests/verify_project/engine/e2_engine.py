"""Checks its tables through the engine, as zenml's 10a907dad202 does: a connection of its own, which sees
only what is committed. Run again after ``alembic upgrade``, it finds the table gone and drops nothing."""

import sqlalchemy as sa
from alembic import op

revision = "e2"
down_revision = "e1"


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn.engine)
    tables = inspector.get_table_names()
    if "legacy" in tables:
        op.drop_table("legacy")


def downgrade() -> None:
    op.create_table("legacy", sa.Column("id", sa.Integer, primary_key=True))
