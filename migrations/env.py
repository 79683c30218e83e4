"""Alembic environment. expdb passes an open SQLAlchemy connection in `config.attributes`;
run from the alembic command line, the database comes from EXPDB_DB (a path or a URL)."""

import os

from alembic import context
from sqlalchemy import create_engine

from expdb.models import SQLModel

config = context.config


def run_migrations(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things, so Alembic copies the table instead.
    context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    from expdb.db import sqlalchemy_url

    with create_engine(sqlalchemy_url(os.environ.get("EXPDB_DB"))).connect() as connection:
        run_migrations(connection)
