"""A seed row into a table an earlier revision made, after an op that does not fail when run again (so no op
is left unguarded next to it): left unguarded by the rewrite, it is inserted again by a re-run, as by the
original's, which then changes the table's rows without failing."""

import sqlalchemy as sa
from alembic import op

revision = "n2"
down_revision = "n1"


def upgrade() -> None:
    op.create_index("ix_notes_body", "notes", ["body"], if_not_exists=True)
    op.bulk_insert(sa.table("notes", sa.column("body")), [{"body": "welcome"}])


def downgrade() -> None:
    op.execute("DELETE FROM notes WHERE body = 'welcome'")
    op.drop_index("ix_notes_body", table_name="notes", if_exists=True)
