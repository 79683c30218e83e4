import importlib.util
import itertools
import os
import shutil
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

import expdb
from expdb.cli import main
from expdb.db import Database, is_postgres, resolve_location

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DB = REPO / "experiments.db.example"

# Child processes (`python -m expdb`, queue workers, import probes) run the expdb under test:
# when that is this checkout, not installed, they need it on their path.
_paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
if Path(expdb.__file__).resolve().parent.parent == REPO and str(REPO) not in _paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *_paths])


# A PostgreSQL server to run the storage and CLI tests against too, as a URL to a database
# that can create others: .ci/run starts one on loopback and sets it.
POSTGRES_ADMIN_URL = os.environ.get("EXPDB_TEST_POSTGRES")
# The test modules that run against both databases: the storage and the CLI.
BOTH_BACKENDS = ("test_db", "test_cards", "test_selection", "test_runs", "test_series", "test_cli_", "test_lifecycle")


def dump(location=None) -> list[str]:
    """The database as text: equal dumps mean nothing in it changed. Default: the one commands use."""
    location = str(location) if location is not None else resolve_location(None)
    if is_postgres(location):
        with Database(location, upgrade="no") as database:
            tables = sorted(name for (name,) in database.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            ))
            return [f"{table}: {row!r}" for table in tables for row in database.query(f"SELECT * FROM {table} ORDER BY 1")]
    with closing(sqlite3.connect(location)) as connection:
        return list(connection.iterdump())


def refused(cli, args, message: str):
    """`expdb ARGS...` as a mistake the user made: exit 2, one line naming `message`, the database unchanged."""
    before = dump()
    result = cli(*args)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.err
    assert dump() == before
    return result


def wait_until(condition, what: str, deadline_s: float = 60.0) -> None:
    """Polls `condition` until it holds; a passing test waits far less than the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"gave up waiting for {what}")


def query(sql: str, parameters=()) -> list[tuple]:
    """Rows of the database commands use, read through a connection of their own."""
    with Database() as database:
        return database.query(sql, parameters)


def records(sql: str, parameters=()) -> list[dict]:
    """As `query`, each row a dict by column name."""
    with Database() as database:
        cursor = database.connection.execute(sql, parameters)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def revision_of(path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


@dataclass
class Result:
    code: int
    out: str
    err: str


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: about SQLite files; not run against PostgreSQL")
    # mmengine imports yapf, whose first import caches a grammar pickle that it renames into
    # place before flushing it: two test workers importing it at once on a fresh machine can
    # read it half-written (EOFError). The controller builds the cache before workers start.
    if not hasattr(config, "workerinput") and importlib.util.find_spec("yapf") is not None:
        import yapf  # noqa: F401


def pytest_generate_tests(metafunc):
    """With a PostgreSQL server, the storage and CLI tests run twice: on SQLite and on PostgreSQL."""
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if (
        POSTGRES_ADMIN_URL
        and "backend" in metafunc.fixturenames
        and module.startswith(BOTH_BACKENDS)
        and not metafunc.definition.get_closest_marker("sqlite_only")
    ):
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request) -> str:
    return getattr(request, "param", "sqlite")


_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_template():
    """A database at the current schema on the test server, that every test's database is copied from."""
    from expdb.migrate import upgrade_to_head

    name = f"expdb_template_{os.getpid()}"
    postgres_admin(f"DROP DATABASE IF EXISTS {name}")
    postgres_admin(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
    upgrade_to_head(postgres_url(name))
    yield name
    postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_admin(statement: str) -> None:
    """A statement on the test server's admin database, outside any transaction (CREATE DATABASE)."""
    import psycopg

    with psycopg.connect("postgresql://" + POSTGRES_ADMIN_URL.split("://", 1)[1], autocommit=True) as connection:
        connection.execute(statement)


def postgres_url(database: str) -> str:
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture
def new_postgres_database(request):
    """Makes fresh databases on the test server, at the current schema; all dropped afterwards."""
    template = request.getfixturevalue("postgres_template")
    made = []

    def make() -> str:
        name = f"expdb_test_{os.getpid()}_{next(_database_numbers)}"
        postgres_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        made.append(name)
        return postgres_url(name)

    yield make
    for name in made:
        postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_database(new_postgres_database) -> str:
    """A fresh database on the test server, at the current schema; dropped afterwards."""
    return new_postgres_database()


@pytest.fixture
def workdir(tmp_path, monkeypatch, backend, request):
    """A fresh current directory whose default database is ./experiments.db there, or, for the
    PostgreSQL run of a test, a fresh PostgreSQL database named by EXPDB_DB."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EXPDB_DB", raising=False)
    if backend == "postgresql":
        monkeypatch.setenv("EXPDB_DB", request.getfixturevalue("postgres_database"))
    return tmp_path


@pytest.fixture
def cli(workdir, monkeypatch, capsys):
    """Run `expdb ARGS...` in this process, as the console script does; returns code, stdout, stderr."""

    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["expdb", *args])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def new(cli):
    """`expdb new NAME ARGS...`, which must succeed."""
    def make(name, *args):
        result = cli("new", name, *args)
        assert result.code == 0, result.err
    return make


def runs_of(card) -> list[dict]:
    """The card's runs, oldest first, each a dict of its columns."""
    return records("SELECT run.* FROM run JOIN card ON card.id = run.card_id WHERE card.name = ? ORDER BY run.id", (card,))


@pytest.fixture
def db(workdir):
    """An empty database at the current schema, in the work directory."""
    with Database(create=True) as database:
        yield database


@pytest.fixture
def example_db(workdir):
    """A copy of the shipped example study, so that tests may write to it."""
    target = workdir / "example.db"
    shutil.copyfile(EXAMPLE_DB, target)
    return target


@pytest.fixture
def three_cards(workdir):
    """a_1, a_2 and b_1 (N = 0, 1, 2), made in that order, each with a finished run: a loss curve and iou50.
    a_2 and b_1 are tagged x. Every command selects alike: `'a_*' --tag x` is a_2 alone."""
    from expdb.cards import create_card
    from expdb.runs import begin_run

    with Database(create=True) as database:
        for n, name in enumerate(("a_1", "a_2", "b_1")):
            create_card(database, name, {"N": n}, tags=["x"] if n else [])
            run = begin_run(database, name, device="cpu")
            for step in range(5):
                run.log(step, loss=1.0 / (step + 1 + n))
            run.summary(iou50=0.3 + n / 10)
            run.end("finished")
