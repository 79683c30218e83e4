"""Profile conditions and memory: the parameters' dtype, the flags that change a timing, forward peak
memory, and whether another job shared the device; display definitions of the new columns and run metrics.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# key, label, unit, direction, format (see expdb.metrics.format_number)
NEW_METRICS = [
    ("peak_mem", "Peak Mem", "B", "lower", "si2"),  # a profile's forward pass
    ("train_peak_mem", "Train Peak Mem", "B", "lower", "si2"),  # a run's training, on CUDA
    ("throughput", "Throughput", "samples/s", "higher", "g4"),  # a run's training
    ("train_steps_per_s", "Train Steps/s", "", "higher", "g4"),  # a run's training, when it logs no samples
]


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(sa.Column("param_dtype", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("flags", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("peak_mem_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("shared", sa.Boolean(), nullable=True))
    connection = op.get_bind()
    known = {key for (key,) in connection.execute(sa.text("SELECT key FROM metric_def"))}
    fields = ("key", "label", "unit", "direction", "format")
    rows = [dict(zip(fields, row, strict=True)) for row in NEW_METRICS if row[0] not in known]
    if rows:
        insert = "INSERT INTO metric_def (key, label, unit, direction, format) VALUES (:key, :label, :unit, :direction, :format)"
        connection.execute(sa.text(insert), rows)


def downgrade() -> None:
    connection = op.get_bind()
    for key, *_ in NEW_METRICS:
        connection.execute(sa.text("DELETE FROM metric_def WHERE key = :key"), {"key": key})
    with op.batch_alter_table("profile") as batch:
        batch.drop_column("shared")
        batch.drop_column("peak_mem_bytes")
        batch.drop_column("flags")
        batch.drop_column("param_dtype")
