"""A column, then its index built outside the transaction (CONCURRENTLY on PostgreSQL)."""

import sqlalchemy as sa
from alembic import op

revision = "r3"
down_revision = "r2"


def upgrade() -> None:
    op.add_column("items", sa.Column("note", sa.String(50)))
    with op.get_context().autocommit_block():
        op.create_index("ix_items_note", "items", ["note"], postgresql_concurrently=True)


def downgrade() -> None:
    op.drop_index("ix_items_note", table_name="items")
    op.drop_column("items", "note")
