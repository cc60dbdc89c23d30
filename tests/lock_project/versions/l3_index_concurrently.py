"""An index built outside the transaction (CONCURRENTLY on PostgreSQL): autocommit_block() commits what came before."""

import time

from alembic import op

revision = "l3"
down_revision = "l2"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_items_name", "items", ["name"], postgresql_concurrently=True)
    time.sleep(0.5)
    op.execute("INSERT INTO migration_log (revision) VALUES ('l3')")


def downgrade() -> None:
    op.drop_index("ix_items_name", table_name="items")
