"""Alembic, driven from code: the migrations ship inside the package as `expdb.migrations`."""

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from .db import dialect_for, resolve_location


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("expdb.migrations")))
    return config


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions has no revision"
    return head


def upgrade_to_head(location: str | None, revision: str = "head") -> None:
    """Run the migrations up to `revision` on the database at `location`.

    On PostgreSQL the whole upgrade is one transaction holding an advisory lock: writers
    that open a new team database at once create its schema once, and a failed upgrade
    changes nothing.
    """
    dialect = dialect_for(resolve_location(location))
    engine = create_engine(dialect.sqlalchemy_url)
    try:
        with engine.begin() as connection:
            if dialect.migration_lock is not None:
                connection.execute(text(dialect.migration_lock))
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
