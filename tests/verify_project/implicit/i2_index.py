"""An index on the key's column and another: InnoDB drops the index it made for the key, as zenml's 3944116bbd56
leaves its flavor and pipeline tables."""

from alembic import op

revision = "i2"
down_revision = "i1"


def upgrade() -> None:
    op.create_index("ix_flavor_stack_id_name", "flavor", ["stack_id", "name"])


def downgrade() -> None:
    op.drop_index("ix_flavor_stack_id_name", table_name="flavor")
