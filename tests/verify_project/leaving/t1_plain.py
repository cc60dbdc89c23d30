"""Two tables: verified in savepoints of one transaction where DDL is transactional."""

import sqlalchemy as sa
from alembic import op

revision = "t1"
down_revision = None


def upgrade() -> None:
    op.create_table("t1", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table("t2", sa.Column("id", sa.Integer, primary_key=True))
    op.bulk_insert(sa.table("t1", sa.column("id", sa.Integer)), [{"id": 1}])


def downgrade() -> None:
    op.drop_table("t2")
    op.drop_table("t1")
