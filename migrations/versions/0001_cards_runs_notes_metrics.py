"""Cards, tags, runs, notes, metrics and the metric definitions, seeded with the built-in ones.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# key, label, unit, direction, format (see expdb.metrics.format_number)
BUILTIN_METRICS = [
    ("iou50", "IOU@0.50", "", "higher", "g3"),
    ("iou75", "IOU@0.75", "", "higher", "g3"),
    ("miou", "mIoU", "", "higher", "g3"),
    ("map", "mAP", "", "higher", "g3"),
    ("acc", "Accuracy", "", "higher", "g3"),
    ("val_acc", "Val. Accuracy", "", "higher", "g3"),
    ("loss", "Loss", "", "lower", "g4"),
    ("train_loss", "Train Loss", "", "lower", "g4"),
    ("val_loss", "Val. Loss", "", "lower", "g4"),
    ("params", "Params", "", "lower", "si2"),
    ("flops", "FLOPs", "MAC", "lower", "si3"),
    ("cost_time", "Cost-Time", "ms", "lower", "f2"),
]


def upgrade() -> None:
    op.create_table(
        "card",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("runner", sa.String(length=256), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("parser", sa.String(length=1024), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["card.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_card_parent_id", "card", ["parent_id"])
    op.create_table(
        "tag",
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("card_id", "name"),
    )
    op.create_index("ix_tag_name", "tag", ["name"])
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("checkpoint_dir", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("device", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("env", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_card_id", "run", ["card_id"])
    op.create_index("ix_run_status", "run", ["status"])
    op.create_table(
        "note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_note_card_id", "note", ["card_id"])
    op.create_table(
        "metric",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key"),
    )
    metric_def = op.create_table(
        "metric_def",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.bulk_insert(
        metric_def,
        [dict(zip(("key", "label", "unit", "direction", "format"), row, strict=True)) for row in BUILTIN_METRICS],
    )


def downgrade() -> None:
    op.drop_table("metric_def")
    op.drop_table("metric")
    op.drop_index("ix_note_card_id", table_name="note")
    op.drop_table("note")
    op.drop_index("ix_run_status", table_name="run")
    op.drop_index("ix_run_card_id", table_name="run")
    op.drop_table("run")
    op.drop_index("ix_tag_name", table_name="tag")
    op.drop_table("tag")
    op.drop_index("ix_card_parent_id", table_name="card")
    op.drop_table("card")
