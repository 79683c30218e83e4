"""Alembic, driven from code: the migrations ship inside the package as `expdb.migrations`."""

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from .db import MIGRATION_LOCK, sqlalchemy_url


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("expdb.migrations")))
    return config


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade_to_head(location: str | None, revision: str = "head") -> None:
    """Run the migrations up to `revision` on the database at `location`.

    On PostgreSQL the whole upgrade is one transaction holding an advisory lock: writers
    that open a new team database at once create its schema once, and a failed upgrade
    changes nothing.
    """
    engine = create_engine(sqlalchemy_url(location))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
