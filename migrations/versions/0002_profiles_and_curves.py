"""Measurements: model profiles, and curves as series of packed chunks of points.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("params_total", sa.Integer(), nullable=True),
        sa.Column("params_trainable", sa.Integer(), nullable=True),
        sa.Column("flops", sa.Float(), nullable=True),
        sa.Column("flops_counter", sa.String(length=32), nullable=True),
        sa.Column("cost_time_ms", sa.Float(), nullable=True),
        sa.Column("cost_time_p10_ms", sa.Float(), nullable=True),
        sa.Column("cost_time_p90_ms", sa.Float(), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.Column("input_shape", sa.String(length=128), nullable=True),
        sa.Column("dtype", sa.String(length=16), nullable=True),
        sa.Column("device", sa.String(length=128), nullable=True),
        sa.Column("warmup", sa.Integer(), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=True),
        sa.Column("threads", sa.Integer(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_profile_card_id", "profile", ["card_id"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "key"),
    )
    op.create_table(
        "chunk",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("step_data", sa.LargeBinary(), nullable=False),
        sa.Column("value_data", sa.LargeBinary(), nullable=False),
        sa.Column("wall_data", sa.LargeBinary(), nullable=False),
        sa.Column("epoch_data", sa.LargeBinary(), nullable=True),
        sa.Column("samples_data", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_chunk_series_id", "chunk", ["series_id"])


def downgrade() -> None:
    op.drop_index("ix_chunk_series_id", table_name="chunk")
    op.drop_table("chunk")
    op.drop_table("series")
    op.drop_index("ix_profile_card_id", table_name="profile")
    op.drop_table("profile")
