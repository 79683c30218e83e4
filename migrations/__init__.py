"""Alembic environment and revisions of the expdb schema (installed as `expdb.migrations`)."""
