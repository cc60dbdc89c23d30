"""Drop the unique constraint by the name only env.py's naming convention gave it."""

from alembic import op

revision = "r2"
down_revision = "r1"


def upgrade() -> None:
    with op.batch_alter_table("items") as batch_op:
        batch_op.drop_constraint("uq_items_code", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("items") as batch_op:
        batch_op.create_unique_constraint("uq_items_code", ["code"])
