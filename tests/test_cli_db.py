"""`expdb db current|upgrade` and how commands report databases they cannot use."""

import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import revision_of

import expdb.cli
from expdb.db import SCHEMA_HEAD, Database
from expdb.migrate import upgrade_to_head


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code == 2
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0]


def old_database(path: Path, revision: str = "0001") -> Path:
    upgrade_to_head(str(path), revision)
    connection = sqlite3.connect(path)
    connection.execute("INSERT INTO card (name, params, created_at) VALUES ('legacy_card', '{}', 1.0)")
    connection.commit()
    connection.close()
    return path


# -- db current ----------------------------------------------------------------------------


def test_db_current_on_example_says_current(cli, example_db):
    result = cli("db", "current", "--db", str(example_db))
    assert result.code == 0, result.err
    assert f"schema {SCHEMA_HEAD}" in result.out
    assert "(current)" in result.out


def test_db_current_on_old_database_says_older_and_changes_nothing(cli, workdir):
    path = old_database(workdir / "old.db")
    result = cli("db", "current", "--db", str(path))
    assert result.code == 0, result.err
    assert "schema 0001" in result.out and "expdb db upgrade" in result.out
    assert revision_of(path) == "0001"
    assert list(workdir.glob("*.bak")) == []


# -- db upgrade ----------------------------------------------------------------------------


def test_db_upgrade_brings_old_database_to_head(cli, workdir):
    path = old_database(workdir / "old.db")
    result = cli("db", "upgrade", "--db", str(path))
    assert result.code == 0, result.err
    assert revision_of(path) == SCHEMA_HEAD
    backups = list(workdir.glob("old.db.*.bak"))
    assert len(backups) == 1 and revision_of(backups[0]) == "0001"
    assert backups[0].name in result.out + result.err


def test_db_upgrade_keeps_the_cards(cli, workdir):
    path = old_database(workdir / "old.db")
    assert cli("db", "upgrade", "--db", str(path)).code == 0
    result = cli("list", "--db", str(path))
    assert result.code == 0, result.err
    assert "legacy_card" in result.out


def test_db_upgrade_prints_the_backup_path_whole(cli, workdir, monkeypatch):
    monkeypatch.setattr(expdb.cli.errors, "width", 80)  # stderr on an ordinary 80-column terminal
    deep = workdir / "a_rather_long_directory_name_for_experiments" / "another_level_of_nesting"
    deep.mkdir(parents=True)
    path = old_database(deep / "old.db")
    result = cli("db", "upgrade", "--db", str(path))
    assert result.code == 0, result.err
    assert str(deep / "old.db.0001.bak") in result.out + result.err


def test_db_upgrade_on_current_database_makes_no_backup(cli, example_db, workdir):
    result = cli("db", "upgrade", "--db", str(example_db))
    assert result.code == 0, result.err
    assert "nothing to upgrade" in result.out
    assert list(workdir.glob("*.bak")) == []


def test_list_upgrades_old_database_on_the_way(cli, workdir):
    path = old_database(workdir / "old.db")
    result = cli("list", "--db", str(path))
    assert result.code == 0, result.err
    assert "legacy_card" in result.out
    assert revision_of(path) == SCHEMA_HEAD
    assert len(list(workdir.glob("old.db.*.bak"))) == 1


def test_expdb_db_environment_variable_is_used(cli, workdir, monkeypatch):
    path = old_database(workdir / "elsewhere.db")
    monkeypatch.setenv("EXPDB_DB", str(path))
    result = cli("list")
    assert result.code == 0, result.err
    assert "legacy_card" in result.out
    assert not (workdir / "experiments.db").exists()


# -- databases that cannot be used ---------------------------------------------------------


def test_list_on_text_file_fails_in_one_line_and_leaves_it(cli, workdir):
    target = workdir / "notadb.txt"
    target.write_text("card,iou50\nbaseline,0.71\n")
    result = cli("list", "--db", str(target))
    assert_one_line_error(result, "notadb.txt")
    assert target.read_text() == "card,iou50\nbaseline,0.71\n"
    assert sorted(workdir.iterdir()) == [target]


def test_table_on_missing_database_fails_and_creates_nothing(cli, workdir):
    result = cli("table", "--db", "missing.db")
    assert_one_line_error(result, "missing.db")
    assert list(workdir.iterdir()) == []


def test_db_current_on_missing_database_creates_nothing(cli, workdir):
    result = cli("db", "current", "--db", "missing.db")
    assert_one_line_error(result)
    assert list(workdir.iterdir()) == []


def test_newer_database_fails_naming_newer(cli, workdir):
    target = workdir / "newer.db"
    with Database(str(target), create=True) as database:
        database.connection.execute("UPDATE alembic_version SET version_num = '9999'")
    before = target.read_bytes()
    result = cli("list", "--db", str(target))
    assert_one_line_error(result, "newer")
    assert target.read_bytes() == before


def test_db_upgrade_refuses_newer_database(cli, workdir):
    target = workdir / "newer.db"
    with Database(str(target), create=True) as database:
        database.connection.execute("UPDATE alembic_version SET version_num = '9999'")
    assert_one_line_error(cli("db", "upgrade", "--db", str(target)), "newer")
    assert revision_of(target) == "9999"
    assert list(workdir.glob("*.bak")) == []


def test_unknown_database_url_fails_in_one_line(cli, workdir):
    assert_one_line_error(cli("list", "--db", "mysql://user@localhost/experiments"), "'mysql'")


@pytest.mark.sqlite_only  # the test server would need psycopg
def test_postgresql_without_psycopg_says_how_to_install_it(cli, workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    assert_one_line_error(cli("list", "--db", "postgresql+psycopg://me@127.0.0.1/expdb"), "pip install 'expdb[postgres]'")


def test_unreachable_postgresql_names_host_and_port_in_one_line(cli, workdir):
    # Nothing listens on port 1 of the loopback: the connection is refused at once.
    result = cli("new", "a", "--db", "postgresql+psycopg://someone:secret@127.0.0.1:1/expdb")
    assert_one_line_error(result, "cannot reach PostgreSQL at 127.0.0.1:1")
    assert "secret" not in result.err
    assert list(workdir.iterdir()) == []
