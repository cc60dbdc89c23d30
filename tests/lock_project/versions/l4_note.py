"""A column."""

import time

import sqlalchemy as sa
from alembic import op

revision = "l4"
down_revision = "l3"


def upgrade() -> None:
    op.add_column("items", sa.Column("note", sa.String(50)))
    time.sleep(0.5)
    op.execute("INSERT INTO migration_log (revision) VALUES ('l4')")


def downgrade() -> None:
    op.drop_column("items", "note")
