"""Runs brought in from elsewhere, summaries with their step, and files kept with a card.

A run imported from a log or recorded by hand says so (`origin`), with where it came from
(`source`: a file, or a citation such as "DeiT, Table 1") and, for a file, its content hash
(`source_hash`), so that importing the same file twice adds nothing. A summary metric may
name the step it was taken at (the last value, or the best of a validation curve).
`attachment` lists the files kept with a card or a run; their content lives in a
content-addressed store outside the database.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("source", sa.Text(), nullable=True))
        batch.add_column(sa.Column("source_hash", sa.String(length=64), nullable=True))
        batch.create_index("ix_run_source_hash", ["source_hash"], unique=False)
    with op.batch_alter_table("metric") as batch:
        batch.add_column(sa.Column("step", sa.BigInteger(), nullable=True))
    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["card.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("attachment") as batch:
        batch.create_index("ix_attachment_uid", ["uid"], unique=True)
        batch.create_index("ix_attachment_card_id", ["card_id"], unique=False)


def downgrade() -> None:
    op.drop_table("attachment")
    with op.batch_alter_table("metric") as batch:
        batch.drop_column("step")
    with op.batch_alter_table("run") as batch:
        batch.drop_index("ix_run_source_hash")
        batch.drop_column("source_hash")
        batch.drop_column("source")
        batch.drop_column("origin")
