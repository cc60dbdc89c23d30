"""items, with a unique constraint the naming convention names."""

import sqlalchemy as sa
from alembic import op

revision = "r1"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(20)),
        sa.UniqueConstraint("code"),
    )


def downgrade() -> None:
    op.drop_table("items")
