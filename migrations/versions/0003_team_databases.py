"""Team databases: stable ids for copying between databases, queued and cluster runs,
and 64-bit integers where PostgreSQL's INTEGER would overflow.

`uid` identifies a card, run, profile or note across databases, so that `expdb copy`
done twice copies nothing twice. Rows that exist get a fresh one.

Revision ID: 0003
Revises: 0002
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UID_TABLES = ("card", "run", "profile", "note")
WIDENED = {  # table -> columns that can exceed 2**31: parameter counts, steps, seeds
    "profile": ("params_total", "params_trainable"),
    "chunk": ("first_step", "last_step"),
    "note": ("step",),
    "run": ("seed",),
}


def upgrade() -> None:
    connection = op.get_bind()
    for table in UID_TABLES:
        op.add_column(table, sa.Column("uid", sa.String(length=32), nullable=True))
        ids = [row[0] for row in connection.execute(sa.text(f"SELECT id FROM {table}"))]
        if ids:
            connection.execute(
                sa.text(f"UPDATE {table} SET uid = :uid WHERE id = :id"),
                [{"uid": uuid.uuid4().hex, "id": id_} for id_ in ids],
            )
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("queued_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("launcher", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("job_id", sa.String(length=64), nullable=True))
    for table in UID_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("uid", existing_type=sa.String(length=32), nullable=False)
            batch.create_index(f"ix_{table}_uid", ["uid"], unique=True)
            for column in WIDENED.get(table, ()):
                batch.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger())
    with op.batch_alter_table("chunk") as batch:
        for column in WIDENED["chunk"]:
            batch.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("chunk") as batch:
        for column in WIDENED["chunk"]:
            batch.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
    for table in UID_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_uid")
            batch.drop_column("uid")
            for column in WIDENED.get(table, ()):
                batch.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer())
    with op.batch_alter_table("run") as batch:
        batch.drop_column("job_id")
        batch.drop_column("launcher")
        batch.drop_column("queued_at")
