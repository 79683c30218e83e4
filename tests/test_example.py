"""experiments.db.example is the researcher's study, exactly as example_study.toml builds it."""

import sqlite3

from conftest import EXAMPLE_DB, dump

from expdb.example import build_example
from expdb.migrate import head_revision


def normalized(statements: list[str]) -> list[list[str]]:
    """Each statement as its sorted lines without their commas: Alembic's batch mode, which
    rebuilds SQLite tables, writes a table's constraints and indexes in no fixed order."""
    return [sorted(line.strip().rstrip(",") for line in statement.splitlines()) for statement in statements]


def test_shipped_example_equals_what_the_script_builds(tmp_path):
    rebuilt = tmp_path / "rebuilt.db"
    build_example(rebuilt)
    assert sorted(normalized(dump(EXAMPLE_DB))) == sorted(normalized(dump(rebuilt)))


def test_shipped_example_is_at_the_current_schema():
    connection = sqlite3.connect(EXAMPLE_DB)
    (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    connection.close()
    assert revision == head_revision()


def test_shipped_example_is_a_single_file_in_wal_mode():
    # Readers open it in WAL mode; shipping it that way means reading it never rewrites its header.
    connection = sqlite3.connect(EXAMPLE_DB)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    assert not EXAMPLE_DB.with_name(EXAMPLE_DB.name + "-wal").exists()


def test_example_holds_the_study_of_the_notebook():
    connection = sqlite3.connect(EXAMPLE_DB)
    names = [name for (name,) in connection.execute("SELECT name FROM card ORDER BY id")]
    notes = [text for (text,) in connection.execute("SELECT text FROM note")]
    connection.close()
    assert names == ["cvt", "cvt_io_v1_1"] + [f"cvt_io_v2_{i}" for i in range(1, 10)]
    assert any("34.12 ms" in note for note in notes)
    assert any("gradient explosion" in note for note in notes)
