"""Card validity: a card whose result must not be used, with the reason and when it was said.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("card") as batch:
        batch.add_column(sa.Column("invalid_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("invalidated_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("card") as batch:
        batch.drop_column("invalidated_at")
        batch.drop_column("invalid_reason")
