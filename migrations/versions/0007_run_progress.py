"""Run progress: the last step a run logged and when, so that a run hung in CUDA or NCCL (its
heartbeat comes from a thread and goes on) can be told from one that trains.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("progress_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("progress_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_column("progress_at")
        batch.drop_column("progress_step")
