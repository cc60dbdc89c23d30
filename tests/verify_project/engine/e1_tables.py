"""Two tables; the next revision drops the one left from an older design."""

import sqlalchemy as sa
from alembic import op

revision = "e1"
down_revision = None


def upgrade() -> None:
    op.create_table("legacy", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table("kept", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("kept")
    op.drop_table("legacy")
