"""Measurements: model profiles, and curves as series of points.

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
        sa.Column("run_id", sa.Integer(), nullable=False),
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
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
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
        "point",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("epoch", sa.Float(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("wall_time", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_id", "step"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("point")
    op.drop_table("series")
    op.drop_table("profile")
