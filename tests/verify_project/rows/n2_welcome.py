"""A seed row into a table an earlier revision made: left unguarded by the rewrite, it is inserted again by a
re-run, which then changes the table's rows without failing."""

import sqlalchemy as sa
from alembic import op

revision = "n2"
down_revision = "n1"


def upgrade() -> None:
    op.add_column("notes", sa.Column("pinned", sa.Boolean, nullable=True))
    op.bulk_insert(sa.table("notes", sa.column("body")), [{"body": "welcome"}])


def downgrade() -> None:
    op.execute("DELETE FROM notes WHERE body = 'welcome'")
    op.drop_column("notes", "pinned")
