import shutil
import sqlite3
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from expdb.cli import main
from expdb.db import Database

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DB = REPO / "experiments.db.example"
SHARED_DATA = REPO.parent / "shared" / "data"


def dump(path="experiments.db") -> list[str]:
    """The database as SQL statements: equal dumps mean nothing in it changed."""
    with closing(sqlite3.connect(path)) as connection:
        return list(connection.iterdump())


def revision_of(path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current directory with no EXPDB_DB: the default database is ./experiments.db there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EXPDB_DB", raising=False)
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
def db(workdir):
    """An empty database at the current schema, in the work directory."""
    with Database(str(workdir / "experiments.db"), create=True) as database:
        yield database


@pytest.fixture
def example_db(workdir):
    """A copy of the shipped example study, so that tests may write to it."""
    target = workdir / "example.db"
    shutil.copyfile(EXAMPLE_DB, target)
    return target
