"""Commits the migration's transaction half-way, by a name no scan of its text finds."""

import sqlalchemy as sa
from alembic import op

revision = "t3"
down_revision = "t2"


def upgrade() -> None:
    op.create_table("t5", sa.Column("id", sa.Integer, primary_key=True))
    getattr(op.get_bind(), "com" + "mit")()
    op.create_table("t6", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("t6")
    op.drop_table("t5")
