"""A table."""

import time

import sqlalchemy as sa
from alembic import op

revision = "l2"
down_revision = "l1"


def upgrade() -> None:
    op.create_table("items", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
    time.sleep(0.5)
    op.execute("INSERT INTO migration_log (revision) VALUES ('l2')")


def downgrade() -> None:
    op.drop_table("items")
