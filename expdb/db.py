"""The one way into the database: opening it, its schema revision, transactions, errors.

Every connection is made here, with the PRAGMAs expdb relies on (WAL so that readers
never wait for a writer, foreign keys, a busy timeout so that concurrent writers queue
instead of failing), and every database error leaves here as an `expdb.errors.DatabaseError`
with one line of text. The everyday path uses the standard library's sqlite3 only;
Alembic and SQLAlchemy are imported when a database is created or upgraded.
"""

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import DatabaseError

SCHEMA_HEAD = "0003"  # the newest revision in migrations/versions; a test keeps the two in step
DEFAULT_LOCATION = "experiments.db"
BUSY_TIMEOUT_S = 30.0
_SQLITE_URL_PREFIX = "sqlite:///"


def resolve_location(location: str | None) -> str:
    """`--db`, else $EXPDB_DB, else ./experiments.db."""
    return location or os.environ.get("EXPDB_DB") or DEFAULT_LOCATION


def sqlite_path(location: str) -> Path:
    """The file behind a path or an SQLAlchemy `sqlite:///` URL."""
    if location.startswith(_SQLITE_URL_PREFIX):
        return Path(location[len(_SQLITE_URL_PREFIX) :])
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise DatabaseError(
            f"cannot open a {scheme!r} database: this expdb stores to SQLite; give a file path or sqlite:///PATH"
        )
    return Path(location)


def sqlalchemy_url(location: str | None) -> str:
    return _SQLITE_URL_PREFIX + str(sqlite_path(resolve_location(location)).resolve())


def now() -> float:
    return time.time()


def new_uid() -> str:
    """A row's identity in every database it is copied to."""
    return uuid.uuid4().hex


class Database:
    """An open expdb database at the current schema.

    `create`: make the file when it does not exist (commands that write); read-only
    commands refuse a missing file rather than leave an empty database behind.
    `upgrade`: bring an older schema to the current one, after a backup copy.
    """

    def __init__(self, location: str | None = None, *, create: bool = False, upgrade: bool = True):
        self.location = resolve_location(location)
        self.path = sqlite_path(self.location)
        self.upgraded_from: str | None = None
        self.backup_path: Path | None = None
        # An empty file is no database yet: this open makes it one.
        self._existed = self.path.exists()
        self.created = not self._existed or (self.path.is_file() and self.path.stat().st_size == 0)
        if self.created:
            if not create:
                raise DatabaseError(
                    f"no expdb database at {self.path}: create one with `expdb new NAME`, "
                    "or point --db / EXPDB_DB at an existing one"
                )
            if not self.path.parent.is_dir():
                raise DatabaseError(f"cannot create {self.path}: directory {self.path.parent} does not exist")
        if self.path.is_dir():
            raise DatabaseError(f"{self.path} is a directory; --db takes a database file")
        self.connection = self._connect()
        try:
            self.revision = self._check_schema(upgrade)
        except BaseException:
            self.connection.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as error:
            raise DatabaseError(f"cannot open {self.path}: {error}") from None
        try:
            # The first read of the file: a file that is not SQLite fails here, before anything is written.
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.DatabaseError as error:
            connection.close()
            raise DatabaseError(f"{self.path} is not an expdb database ({error})") from None
        return connection

    def _check_schema(self, upgrade: bool) -> str:
        tables = {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            self._enable_wal()
            self._migrate()
            return SCHEMA_HEAD
        row = self.connection.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in tables else None
        if row is None:
            raise DatabaseError(f"{self.path} is an SQLite database, but not an expdb one (it has no schema revision)")
        revision = row[0]
        if revision == SCHEMA_HEAD:
            self._enable_wal()
            return revision
        from .migrate import known_revisions

        if revision not in known_revisions():
            raise DatabaseError(
                f"{self.path} was written by a newer expdb (schema revision {revision}; this expdb knows up to "
                f"{SCHEMA_HEAD}): upgrade expdb with `pip install -U expdb`"
            )
        if upgrade:
            self.backup_path = self._backup(revision)
            self._enable_wal()
            self._migrate()
            self.upgraded_from = revision
            return SCHEMA_HEAD
        return revision

    def _enable_wal(self) -> None:
        """Only once the file is known to be expdb's: setting the journal mode rewrites the file's header."""
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")

    def _backup(self, revision: str) -> Path:
        target = self.path.with_name(f"{self.path.name}.{revision}.bak")
        if target.exists():
            target = self.path.with_name(f"{self.path.name}.{revision}.{int(now())}.bak")
        copy = sqlite3.connect(target)
        try:
            self.connection.backup(copy)
        finally:
            copy.close()
        return target

    def _migrate(self) -> None:
        from .migrate import upgrade_to_head

        try:
            upgrade_to_head(self.location)
        except Exception as error:  # noqa: BLE001 - any failure of a migration is reported the same way
            hint = f"; the backup is {self.backup_path}" if self.backup_path else ""
            raise DatabaseError(f"could not bring {self.path} to schema {SCHEMA_HEAD}: {error}{hint}") from None

    def close(self) -> None:
        self.connection.close()

    def remove(self) -> None:
        """Undo an open that created the database: close it, delete its WAL files, and delete the file
        (or empty it again, if it was an empty file before)."""
        self.close()
        for path in (self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm")):
            path.unlink(missing_ok=True)
        if self._existed:
            self.path.write_bytes(b"")
        else:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def among(self, column: str, values: Sequence) -> tuple[str, list]:
        """`column IN values` as SQL with one bound parameter, however many values there are."""
        return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(list(values))]

    def query(self, sql: str, parameters: Sequence | dict = ()) -> list[tuple]:
        try:
            return self.connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise DatabaseError(f"reading {self.path} failed: {error}") from None

    def query_one(self, sql: str, parameters: Sequence | dict = ()) -> tuple | None:
        rows = self.query(sql, parameters)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: what the block writes is committed together, or not at all."""
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise DatabaseError(f"cannot write to {self.path}: {error}") from None
        try:
            yield self.connection
            self.connection.execute("COMMIT")
        except sqlite3.Error as error:
            self.connection.execute("ROLLBACK")
            raise DatabaseError(f"writing to {self.path} failed: {error}") from None
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
