"""A table after a revision that committed: verified on copies too (env.py may commit every run)."""

import sqlalchemy as sa
from alembic import op

revision = "t4"
down_revision = "t3"


def upgrade() -> None:
    op.create_table("t7", sa.Column("id", sa.Integer, primary_key=True))
    op.create_index("ix_t7_id", "t7", ["id"])


def downgrade() -> None:
    op.drop_index("ix_t7_id", table_name="t7")
    op.drop_table("t7")
