"""expdb.db.Database: opening, refusing, transactions, foreign keys."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from expdb import cards
from expdb.db import (
    SCHEMA_HEAD,
    Database,
    display_name,
    glob_regex,
    new_uid,
    resolve_location,
)
from expdb.errors import DatabaseError

SIDECARS = ("-wal", "-shm", "-journal")


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert text and "\n" not in text
    return text


def no_sidecars(path: Path) -> bool:
    return not any(Path(f"{path}{suffix}").exists() for suffix in SIDECARS)


def add_card(connection, name: str) -> int:
    return connection.execute(
        "INSERT INTO card (uid, name, params, created_at) VALUES (?, ?, '{}', 0) RETURNING id", (new_uid(), name)
    ).fetchone()[0]


def add_run(connection, card_id: int) -> int:
    return connection.execute(
        "INSERT INTO run (uid, card_id, status, env) VALUES (?, ?, 'finished', '{}') RETURNING id", (new_uid(), card_id)
    ).fetchone()[0]


def card_names(location) -> list[str]:
    """The card names, read through a connection of their own."""
    with Database(location) as database:
        return [row[0] for row in database.query("SELECT name FROM card ORDER BY name")]


def plain_sqlite(path: Path, *statements: str) -> None:
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


# -- a new database ----------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_new_database_uses_wal(db):
    assert db.query_one("PRAGMA journal_mode") == ("wal",)


@pytest.mark.sqlite_only
def test_new_database_enforces_foreign_keys(db):
    assert db.query_one("PRAGMA foreign_keys") == (1,)


@pytest.mark.sqlite_only
def test_new_database_has_a_busy_timeout(db):
    assert db.query_one("PRAGMA busy_timeout")[0] > 0


def test_new_database_is_at_schema_head(db):
    assert db.revision == SCHEMA_HEAD
    assert db.query("SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    assert db.upgraded_from is None and db.backup_path is None


def test_a_read_left_unfinished_ends_quietly_after_its_database_closed(db):
    """Ctrl-C in the middle of a read closes the database before the half-read rows are let go: letting them go
    then says nothing (Python would print a failure of a generator's close as "Exception ignored ...")."""
    rows = db.each("SELECT id FROM card UNION ALL SELECT 1 UNION ALL SELECT 2")
    assert next(rows) == (1,)
    db.close()
    rows.close()


def test_new_database_file_is_wal_on_disk(workdir):
    Database(str(workdir / "fresh.db"), create=True).close()
    connection = sqlite3.connect(workdir / "fresh.db")
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.close()


# -- where the database is ---------------------------------------------------------------


def test_db_option_beats_environment(workdir, monkeypatch):
    monkeypatch.setenv("EXPDB_DB", "from_env.db")
    assert resolve_location("from_option.db") == "from_option.db"


def test_environment_beats_default(workdir, monkeypatch):
    monkeypatch.setenv("EXPDB_DB", "from_env.db")
    assert resolve_location(None) == "from_env.db"


@pytest.mark.sqlite_only
def test_default_is_experiments_db_in_current_directory(workdir):
    with Database(None, create=True) as database:
        assert database.path.resolve() == workdir / "experiments.db"
    assert (workdir / "experiments.db").is_file()


def test_environment_location_is_the_file_opened(workdir, monkeypatch):
    monkeypatch.setenv("EXPDB_DB", str(workdir / "env.db"))
    Database(None, create=True).close()
    assert (workdir / "env.db").is_file()
    assert not (workdir / "experiments.db").exists()


def test_sqlite_url_with_absolute_path(workdir):
    target = workdir / "url.db"
    with Database(f"sqlite:///{target}", create=True) as database:
        assert database.path == target
        assert database.revision == SCHEMA_HEAD
    assert target.is_file()


def test_sqlite_url_with_relative_path(workdir):
    Database("sqlite:///relative.db", create=True).close()
    assert (workdir / "relative.db").is_file()


def test_messages_never_show_a_postgresql_password():
    url = "postgresql+psycopg://me:hunter2@db.example:5433/expdb"
    assert display_name(url) == "postgresql+psycopg://me:***@db.example:5433/expdb"


@pytest.mark.parametrize(
    "pattern, matching, other",
    [("cvt_io_v2_*", "cvt_io_v2_10", "cvt_io_v3_1"), ("run?", "run7", "run10"), ("v[12]_a", "v2_a", "v3_a"),
     ("a.b+c", "a.b+c", "aXb+c"), ("x[]]", "x]", "xa")],
)
def test_glob_as_a_regular_expression_matches_as_sqlite_glob(pattern, matching, other):
    import re

    connection = sqlite3.connect(":memory:")
    for name, expected in ((matching, True), (other, False)):
        assert bool(connection.execute("SELECT ? GLOB ?", (name, pattern)).fetchone()[0]) is expected
        assert bool(re.search(glob_regex(pattern), name)) is expected


def test_other_database_urls_are_refused_in_one_line(workdir):
    with pytest.raises(DatabaseError) as error:
        Database("mysql://user@localhost/experiments", create=True)
    assert "'mysql'" in one_line(error) and "postgresql+psycopg://" in one_line(error)
    assert list(workdir.iterdir()) == []


# -- missing files -------------------------------------------------------------------------


def test_missing_file_read_only_is_refused_and_not_created(workdir):
    with pytest.raises(DatabaseError) as error:
        Database(str(workdir / "missing.db"))
    one_line(error)
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("create", [True, False])
def test_missing_directory_is_refused_and_nothing_created(workdir, create):
    with pytest.raises(DatabaseError) as error:
        Database(str(workdir / "nowhere" / "x.db"), create=create)
    one_line(error)
    assert list(workdir.iterdir()) == []


def test_directory_is_refused(workdir):
    (workdir / "adir").mkdir()
    with pytest.raises(DatabaseError) as error:
        Database(str(workdir / "adir"), create=True)
    one_line(error)
    assert list((workdir / "adir").iterdir()) == []


# -- files that are not expdb databases ----------------------------------------------------

NOT_DATABASES = {
    "text": b"name,iou50\nbaseline,0.71\n" * 50,
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 16,
}


@pytest.mark.parametrize("create", [True, False])
@pytest.mark.parametrize("kind", sorted(NOT_DATABASES))
def test_file_that_is_not_a_database_is_refused_untouched(workdir, kind, create):
    target = workdir / f"not_a_db.{kind}"
    target.write_bytes(NOT_DATABASES[kind])
    with pytest.raises(DatabaseError) as error:
        Database(str(target), create=create)
    one_line(error)
    assert target.read_bytes() == NOT_DATABASES[kind]
    assert sorted(workdir.iterdir()) == [target]


def test_foreign_sqlite_database_is_refused(workdir):
    target = workdir / "other.db"
    plain_sqlite(target, "CREATE TABLE samples (x INTEGER)", "INSERT INTO samples VALUES (1)")
    with pytest.raises(DatabaseError) as error:
        Database(str(target), create=True)
    assert "not an expdb" in one_line(error)
    assert no_sidecars(target)


def test_foreign_sqlite_database_is_left_byte_for_byte(workdir):
    target = workdir / "other.db"
    plain_sqlite(target, "CREATE TABLE samples (x INTEGER)", "INSERT INTO samples VALUES (1)")
    before = target.read_bytes()
    with pytest.raises(DatabaseError):
        Database(str(target), create=True)
    assert target.read_bytes() == before


def newer_database(path: Path, journal_mode: str) -> bytes:
    with Database(str(path), create=True) as database:
        database.connection.execute("UPDATE alembic_version SET version_num = '9999'")
        database.connection.execute(f"PRAGMA journal_mode={journal_mode}")
    return path.read_bytes()


@pytest.mark.parametrize(
    "journal_mode",
    ["wal", "delete"],
)
def test_newer_revision_is_refused_untouched(workdir, journal_mode):
    target = workdir / "newer.db"
    before = newer_database(target, journal_mode)
    with pytest.raises(DatabaseError) as error:
        Database(str(target), create=True)
    message = one_line(error)
    assert "newer expdb" in message and "9999" in message
    assert target.read_bytes() == before
    assert sorted(workdir.iterdir()) == [target]


def test_newer_revision_is_refused_even_without_upgrade(workdir):
    target = workdir / "newer.db"
    newer_database(target, "wal")
    with pytest.raises(DatabaseError, match="newer"):
        Database(str(target), upgrade="no")


# -- transactions --------------------------------------------------------------------------


def test_transaction_commits(db):
    with db.transaction() as connection:
        add_card(connection, "a")
        add_card(connection, "b")
    assert card_names(db.location) == ["a", "b"]


def test_transaction_rolls_back_on_sqlite_error_as_database_error(db):
    with pytest.raises(DatabaseError) as error:
        with db.transaction() as connection:
            add_card(connection, "a")
            add_card(connection, "a")  # UNIQUE(name)
    assert "unique" in one_line(error).lower()
    assert card_names(db.location) == []


def test_transaction_rolls_back_on_any_exception(db):
    with pytest.raises(ZeroDivisionError):
        with db.transaction() as connection:
            add_card(connection, "a")
            1 / 0  # noqa: B018 - raises
    assert card_names(db.location) == []


def test_database_usable_after_a_rolled_back_transaction(db):
    with pytest.raises(KeyError):
        with db.transaction() as connection:
            add_card(connection, "a")
            raise KeyError("x")
    with db.transaction() as connection:
        add_card(connection, "b")
    assert card_names(db.location) == ["b"]


def test_query_error_becomes_database_error(db):
    with pytest.raises(DatabaseError) as error:
        db.query("SELECT nothing FROM nowhere")
    one_line(error)


# -- foreign keys --------------------------------------------------------------------------


def test_foreign_key_violation_is_refused(db):
    with pytest.raises(DatabaseError, match="(?i)foreign key"):
        with db.transaction() as connection:
            connection.execute("INSERT INTO run (uid, card_id, status, env) VALUES (?, 999, 'queued', '{}')", (new_uid(),))
    assert db.query("SELECT count(*) FROM run") == [(0,)]


def test_deleting_a_card_cascades(db):
    with db.transaction() as c:
        card = add_card(c, "a")
        keep = add_card(c, "b")
        run = add_run(c, card)
        add_run(c, keep)
        c.execute(
            "INSERT INTO note (uid, card_id, run_id, created_at, text, automatic) VALUES (?, ?, ?, 0, 'n', FALSE)",
            (new_uid(), card, run),
        )
        c.execute("INSERT INTO metric (run_id, key, value) VALUES (?, 'iou50', 0.5)", (run,))
        c.execute("INSERT INTO tag (card_id, name) VALUES (?, 'baseline')", (card,))
        c.execute(
            "INSERT INTO profile (uid, card_id, run_id, created_at, details) VALUES (?, ?, ?, 0, '{}')",
            (new_uid(), card, run),
        )
        series = c.execute("INSERT INTO series (run_id, key) VALUES (?, 'loss') RETURNING id", (run,)).fetchone()[0]
        c.execute(
            "INSERT INTO chunk (series_id, first_step, last_step, count, step_data, value_data, wall_data) "
            "VALUES (?, 1, 1, 1, ?, ?, ?)",
            (series, b"\0", b"\0", b"\0"),
        )
    with db.transaction() as c:
        c.execute("DELETE FROM card WHERE id = ?", (card,))
    for table in ("note", "metric", "tag", "profile", "series", "chunk"):
        assert db.query(f"SELECT count(*) FROM {table}") == [(0,)], table
    assert db.query("SELECT card_id FROM run") == [(keep,)]


def test_deleting_a_parent_card_unlinks_its_children(db):
    with db.transaction() as c:
        parent = add_card(c, "parent")
        c.execute(
            "INSERT INTO card (uid, name, parent_id, params, created_at) VALUES (?, 'child', ?, '{}', 0)",
            (new_uid(), parent),
        )
    with db.transaction() as c:
        c.execute("DELETE FROM card WHERE id = ?", (parent,))
    assert db.query("SELECT name, parent_id FROM card") == [("child", None)]


def test_a_transaction_inside_another_is_part_of_it(db):
    with pytest.raises(ZeroDivisionError):
        with db.transaction():
            with db.transaction() as connection:
                add_card(connection, "a")
            with db.transaction() as connection:
                add_card(connection, "b")
            1 / 0  # noqa: B018 - raises
    assert card_names(db.location) == []
    with db.transaction():
        with db.transaction() as connection:
            add_card(connection, "c")
    assert card_names(db.location) == ["c"]


# -- creating a database while others open it ----------------------------------------------


@pytest.mark.sqlite_only
def test_a_reader_never_writes_the_schema_of_an_empty_database(workdir):
    path = workdir / "bare.db"
    plain_sqlite(path, "PRAGMA journal_mode=WAL")  # a file with a header and no tables
    with pytest.raises(DatabaseError, match="no expdb database"):
        Database(str(path))
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    connection.close()


@pytest.mark.sqlite_only
def test_writers_creating_one_file_at_once_all_use_the_same_database(workdir):
    script = (
        "import sys; from expdb.db import Database; from expdb import cards; "
        "cards.create_card(Database(sys.argv[1], create=True), sys.argv[2], {})"
    )
    path = str(workdir / "new.db")
    writers = [subprocess.Popen([sys.executable, "-c", script, path, f"c{i}"], stderr=subprocess.PIPE) for i in range(4)]
    assert [writer.communicate(timeout=120)[1] for writer in writers] == [b""] * 4
    assert card_names(path) == ["c0", "c1", "c2", "c3"]
    assert [path.name for path in workdir.iterdir() if path.name.startswith(".")] == []  # no file half made


@pytest.mark.sqlite_only
def test_undoing_a_creation_keeps_what_another_writer_put_in_it(workdir):
    path = str(workdir / "shared.db")
    first = Database(path, create=True)
    assert first.created
    with Database(path) as second:
        cards.create_card(second, "theirs", {})
    first.remove()
    assert card_names(path) == ["theirs"]
