"""The log every revision writes a row to: a revision run twice leaves two rows."""

import time

import sqlalchemy as sa
from alembic import op

revision = "l1"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "migration_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.String(20), nullable=False),
    )
    time.sleep(0.5)  # a revision that takes a moment: the other processes arrive meanwhile
    op.execute("INSERT INTO migration_log (revision) VALUES ('l1')")


def downgrade() -> None:
    op.drop_table("migration_log")
