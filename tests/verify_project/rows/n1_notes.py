"""A table whose rows have no natural key: a row inserted twice is two rows."""

import sqlalchemy as sa
from alembic import op

revision = "n1"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("body", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notes")
