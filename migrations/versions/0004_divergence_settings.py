"""Divergence settings: a card's own thresholds, and the thresholds behind each automatic note.

`card.diverge` is a JSON object of the `--diverge KEY=VALUE` settings given to `expdb new` (the
defaults apply to the rest); `note.settings` the settings a detector used when it wrote the note,
so `expdb show` can say what produced it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("card") as batch:
        batch.add_column(sa.Column("diverge", sa.Text(), nullable=True))
    with op.batch_alter_table("note") as batch:
        batch.add_column(sa.Column("settings", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("note") as batch:
        batch.drop_column("settings")
    with op.batch_alter_table("card") as batch:
        batch.drop_column("diverge")
