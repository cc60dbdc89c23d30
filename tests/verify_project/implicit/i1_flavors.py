"""A foreign key created without a name: InnoDB names it ``flavor_ibfk_1`` and makes an index for it by itself,
named after its column (``stack_id``), which it drops when an index that can serve the key is made."""

import sqlalchemy as sa
from alembic import op

revision = "i1"
down_revision = None


def upgrade() -> None:
    op.create_table("stack", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table(
        "flavor",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stack_id", sa.Integer, sa.ForeignKey("stack.id"), nullable=True),
        sa.Column("name", sa.String(40), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("flavor")
    op.drop_table("stack")
