"""The Alembic migrations: in step with SCHEMA_HEAD and the models, linear, lossless, reversible."""

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import revision_of
from sqlalchemy import MetaData, create_engine, text

from expdb.db import SCHEMA_HEAD, Database
from expdb.migrate import (
    alembic_config,
    head_revision,
    known_revisions,
    upgrade_to_head,
)
from expdb.models import SQLModel

ROWS_PER_TABLE = 3


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def revisions_oldest_first() -> list[str]:
    return [s.revision for s in reversed(list(script().walk_revisions()))]


OLDER_REVISIONS = revisions_oldest_first()[:-1]


def schema_diff(path: Path) -> list:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    finally:
        engine.dispose()


# -- the revision chain --------------------------------------------------------------------


def test_schema_head_is_alembic_head():
    assert head_revision() == SCHEMA_HEAD


def test_revision_chain_is_linear():
    scripts = script()
    assert len(scripts.get_heads()) == 1
    assert len(scripts.get_bases()) == 1
    chain, revision = [], scripts.get_current_head()
    while revision is not None:
        chain.append(revision)
        down = scripts.get_revision(revision).down_revision
        assert down is None or isinstance(down, str), f"{revision} merges {down}"
        revision = down
    assert sorted(chain) == sorted(known_revisions())


# -- the models and the migrations agree ---------------------------------------------------


def test_models_match_migrations(workdir):
    upgrade_to_head(str(workdir / "head.db"))
    assert schema_diff(workdir / "head.db") == []


def test_model_comparison_notices_a_difference(workdir):
    """The check above can fail: a missing index shows up in the diff."""
    path = workdir / "head.db"
    upgrade_to_head(str(path))
    sqlite3.connect(path).execute("DROP INDEX ix_tag_name").connection.close()
    assert any(op[0] == "add_index" for op in schema_diff(path))


# -- every older revision upgrades to head with nothing lost -------------------------------


def value_for(column, table: str, i: int, k: int):
    python_type = column.type.python_type
    if python_type is bool:
        return i % 2
    if python_type is int:
        return 1000 + 10 * i + k
    if python_type is float:
        return i + k / 8 + 0.25
    return f"{table}.{column.name}.{i}"


def fill_every_table(path: Path) -> dict[str, tuple[list[str], list[tuple]]]:
    """Insert rows into every table, parents first, with foreign keys to earlier rows."""
    engine = create_engine(f"sqlite:///{path}")
    metadata = MetaData()
    metadata.reflect(bind=engine)
    engine.dispose()
    inserted: dict[str, tuple[list[str], list[tuple]]] = {}
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA foreign_keys=ON")
    for table in metadata.sorted_tables:
        if table.name == "alembic_version":
            continue
        names = [column.name for column in table.columns]
        rows: list[tuple] = []
        for i in range(ROWS_PER_TABLE):
            row = []
            for k, column in enumerate(table.columns):
                if column.foreign_keys:
                    target = next(iter(column.foreign_keys)).column
                    if target.table.name == table.name:  # self-reference: the previous row
                        row.append(rows[i - 1][names.index(target.name)] if i else None)
                    else:
                        parent_names, parent_rows = inserted[target.table.name]
                        row.append(parent_rows[i % len(parent_rows)][parent_names.index(target.name)])
                else:
                    row.append(value_for(column, table.name, i, k))
            rows.append(tuple(row))
        connection.executemany(
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", rows
        )
        inserted[table.name] = (names, rows)
    connection.commit()
    connection.close()
    return inserted


def assert_rows_kept(path: Path, inserted: dict[str, tuple[list[str], list[tuple]]]) -> None:
    connection = sqlite3.connect(path)
    try:
        for table, (names, rows) in inserted.items():
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            assert present, f"table {table} was dropped"
            kept = [name for name in names if name in present]
            stored = set(connection.execute(f"SELECT {', '.join(kept)} FROM {table}").fetchall())
            for row in rows:
                projected = tuple(value for name, value in zip(names, row, strict=True) if name in present)
                assert projected in stored, f"{table}: lost {dict(zip(kept, projected, strict=True))}"
    finally:
        connection.close()


def test_there_is_an_older_revision_to_test():
    assert OLDER_REVISIONS, "no revision before head: the upgrade tests below test nothing"


@pytest.mark.parametrize("revision", OLDER_REVISIONS)
def test_older_revision_upgrades_to_head_keeping_every_row(workdir, revision):
    path = workdir / "old.db"
    upgrade_to_head(str(path), revision)
    inserted = fill_every_table(path)
    assert inserted and all(rows for _, rows in inserted.values())

    with Database(str(path)) as database:
        assert database.revision == SCHEMA_HEAD
        assert database.upgraded_from == revision
        backup = database.backup_path
    assert revision_of(path) == SCHEMA_HEAD
    assert_rows_kept(path, inserted)

    assert backup is not None and backup.is_file() and backup.parent == path.parent
    assert revision_of(backup) == revision
    assert_rows_kept(backup, inserted)


@pytest.mark.parametrize("revision", OLDER_REVISIONS)
def test_second_backup_does_not_overwrite_first(workdir, revision):
    path = workdir / "old.db"
    upgrade_to_head(str(path), revision)
    Database(str(path)).close()
    first = sorted(workdir.glob("old.db.*.bak"))
    assert len(first) == 1
    first_bytes = first[0].read_bytes()
    path.unlink()
    upgrade_to_head(str(path), revision)
    Database(str(path)).close()
    assert len(list(workdir.glob("old.db.*.bak"))) == 2
    assert first[0].read_bytes() == first_bytes


# -- stairway: up, down one, up again, at every step ---------------------------------------


def test_stairway_up_down_up(workdir):
    engine = create_engine(f"sqlite:///{workdir / 'stairs.db'}")
    try:
        for revision in revisions_oldest_first():
            with engine.begin() as connection:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                command.downgrade(config, "-1")
                command.upgrade(config, revision)
                assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == revision
    finally:
        engine.dispose()
    assert schema_diff(workdir / "stairs.db") == []


# -- seeded data ---------------------------------------------------------------------------


def test_builtin_metric_definitions_are_seeded(db):
    assert db.query_one("SELECT label, direction, format FROM metric_def WHERE key = 'iou50'") == (
        "IOU@0.50",
        "higher",
        "g3",
    )
