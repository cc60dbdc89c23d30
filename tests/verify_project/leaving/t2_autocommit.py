"""Enters autocommit_block() after another op, by a name no scan of its text finds."""

import sqlalchemy as sa
from alembic import op

revision = "t2"
down_revision = "t1"


def upgrade() -> None:
    op.create_table("t3", sa.Column("id", sa.Integer, primary_key=True))
    with getattr(op.get_context(), "autocommit" + "_block")():
        op.create_table("t4", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("t4")
    op.drop_table("t3")
