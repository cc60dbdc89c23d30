"""Two tables: verified in savepoints of one transaction where DDL is transactional."""

import sqlalchemy as sa
from alembic import op

revision = "t1"
down_revision = None


def upgrade() -> None:
    op.create_table("t1", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table("t2", sa.Column("id", sa.Integer, primary_key=True))
    first = 1
    # SQL built at run time is left unguarded: the rewritten chain's re-run still fails here, on the duplicate.
    op.execute(f"INSERT INTO t1 (id) VALUES ({first})")


def downgrade() -> None:
    op.drop_table("t2")
    op.drop_table("t1")
