"""What only a PostgreSQL database does: an empty one, an older shared schema, its errors.

These need the test server (EXPDB_TEST_POSTGRES, which .ci/run sets); everything else
about storage runs against PostgreSQL through the `backend` parametrization in conftest.
"""

import os
import subprocess
import sys

import pytest
from conftest import POSTGRES_ADMIN_URL, postgres_admin, postgres_url
from test_cli_db import assert_one_line_error

from expdb import cards
from expdb.db import SCHEMA_HEAD, Database
from expdb.migrate import upgrade_to_head

pytestmark = pytest.mark.skipif(not POSTGRES_ADMIN_URL, reason="needs a PostgreSQL server: set EXPDB_TEST_POSTGRES")


@pytest.fixture
def empty_database(workdir):
    """A PostgreSQL database with no tables at all, dropped afterwards."""
    # The pid keeps concurrent test sessions on one server apart.
    name = f"expdb_empty_{os.getpid()}_{workdir.name.lower().replace('-', '_')}"[:60]
    postgres_admin(f"DROP DATABASE IF EXISTS {name}")
    postgres_admin(f"CREATE DATABASE {name}")
    yield postgres_url(name)
    postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def tables(url) -> set[str]:
    import psycopg

    with psycopg.connect("postgresql://" + url.split("://", 1)[1]) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def test_reading_an_empty_database_says_how_to_start_and_creates_nothing(cli, empty_database):
    assert_one_line_error(cli("list", "--db", empty_database), "has no expdb tables yet", "expdb new")
    assert tables(empty_database) == set()


def test_the_first_write_creates_the_schema(cli, empty_database):
    result = cli("new", "a", "--N", "3", "--db", empty_database)
    assert result.code == 0, result.err
    assert "card" in tables(empty_database)
    with Database(empty_database) as db:
        assert db.revision == SCHEMA_HEAD
        assert cards.get_card(db, "a").params == {"N": 3}


def test_a_refused_first_write_leaves_no_tables(cli, empty_database):
    assert_one_line_error(cli("new", "a", "--from", "missing", "--db", empty_database), "no card named 'missing'")
    assert tables(empty_database) == set()


def test_writers_opening_an_empty_database_at_once_create_its_schema_once(empty_database, workdir):
    script = "import sys; from expdb.db import Database; from expdb import cards; " \
             "db = Database(sys.argv[1], create=True); cards.create_card(db, sys.argv[2], {})"
    writers = [subprocess.Popen([sys.executable, "-c", script, empty_database, f"c{i}"]) for i in range(4)]
    assert [writer.wait(timeout=120) for writer in writers] == [0] * 4
    with Database(empty_database) as db:
        assert sorted(card.name for card in cards.select_cards(db)) == ["c0", "c1", "c2", "c3"]


def test_an_older_shared_schema_is_upgraded_only_when_asked(cli, empty_database):
    upgrade_to_head(empty_database, "0002")
    with Database(empty_database, upgrade="no") as db, db.transaction() as connection:
        connection.execute("INSERT INTO card (name, params, created_at) VALUES ('kept', '{}', 1.0)")
    assert_one_line_error(cli("list", "--db", empty_database), "schema 0002", "expdb db upgrade")
    with Database(empty_database, upgrade="no") as db:
        assert db.revision == "0002"

    result = cli("db", "upgrade", "--db", empty_database)
    assert result.code == 0, result.err
    assert f"from schema 0002 to {SCHEMA_HEAD}" in result.err
    with Database(empty_database) as db:
        assert [card.name for card in cards.select_cards(db)] == ["kept"]
        (uid,) = db.query_one("SELECT uid FROM card")
        assert len(uid) == 32


def test_a_missing_database_is_named_with_its_server(cli, workdir):
    url = postgres_url("expdb_no_such_database")
    assert_one_line_error(cli("list", "--db", url), "has no database 'expdb_no_such_database'", "createdb")



def test_undoing_a_schema_creation_keeps_what_another_writer_put_in_it(empty_database):
    first = Database(empty_database, create=True)
    assert first.created
    with Database(empty_database) as second:
        cards.create_card(second, "theirs", {})
    first.remove()
    with Database(empty_database) as db:
        assert [card.name for card in cards.select_cards(db)] == ["theirs"]
