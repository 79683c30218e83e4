"""The one way into the database: opening it, its schema revision, transactions, errors.

Two backends behind one interface. SQLite, a file, for one machine: every connection
gets the PRAGMAs expdb relies on (WAL so that readers never wait for a writer, foreign
keys, a busy timeout so that concurrent writers queue instead of failing). PostgreSQL,
a server, for a team or a cluster: `postgresql+psycopg://USER@HOST[:PORT]/DB`.

What differs between the two is in one class each, `SQLiteDialect` and `PostgresDialect`,
with the same methods: opening, the transaction's BEGIN, upgrading, undoing a creation,
where runs keep their files. Queries are written once, with `?` placeholders, in the SQL
both understand; the few places where the two differ ask the dialect (`among`, `id_table`,
`glob`, `json_values`, `json_keys`). Every database error leaves here as an
`expdb.errors.DatabaseError` with one line of text. The everyday path uses the standard library's sqlite3, or psycopg; Alembic and
SQLAlchemy are imported only when a database is created or upgraded.
"""

import contextlib
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import DatabaseError, last_line

SCHEMA_HEAD = "0009"  # the newest revision in migrations/versions; a test keeps the two in step
DEFAULT_LOCATION = "experiments.db"
BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10
_SQLITE_URL_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")


def resolve_location(location: str | None) -> str:
    """`--db`, else $EXPDB_DB, else ./experiments.db."""
    if location is not None and not location.strip():
        raise DatabaseError("--db is empty; give a database: a path, or postgresql+psycopg://USER@HOST/DB")
    return location or os.environ.get("EXPDB_DB") or DEFAULT_LOCATION


def _scheme(location: str) -> str | None:
    return location.split("://", 1)[0] if "://" in location else None


def is_postgres(location: str) -> bool:
    return _scheme(location) in _POSTGRES_SCHEMES


def dialect_for(location: str) -> "SQLiteDialect | PostgresDialect":
    """What the database at `location` is, before it is opened: what expdb does differently for it."""
    return PostgresDialect(location) if is_postgres(location) else SQLiteDialect(location)


def sqlalchemy_url(location: str | None) -> str:
    return dialect_for(resolve_location(location)).sqlalchemy_url


def display_name(location: str) -> str:
    """The database as messages name it: a PostgreSQL URL without its password."""
    return dialect_for(location).name


def now() -> float:
    return time.time()


def new_uid() -> str:
    """A row's identity in every database it is copied to."""
    return uuid.uuid4().hex


# What SQLite's json_extract gives as text or a number, by json_type: booleans and nested values decoded.
_SQLITE_JSON_TYPES: dict[str, Callable[[Any], Any]] = {
    "true": lambda _: True, "false": lambda _: False, "array": json.loads, "object": json.loads
}


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """expdb's `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _first_line(error: BaseException) -> str:
    """The database's own words, without the type: PostgreSQL's later lines quote the SQL back."""
    return last_line(error, typed=False, lines="first")


def _reading_failed(name: str, error: BaseException) -> DatabaseError:
    return DatabaseError(f"reading {name} failed: {_first_line(error)}")


# What a migration is asked for: a path to make a database at, or None for the database itself.
Migrate = Callable[[str | None], None]


class SQLiteDialect:
    """A file, for one machine: every connection gets the PRAGMAs expdb relies on."""

    errors: type[Exception] = sqlite3.Error
    begin = "BEGIN IMMEDIATE"  # take the write lock at once: writers queue behind the busy timeout
    tables_sql = "SELECT name FROM sqlite_master WHERE type='table'"
    # None: a new file's schema is written to a file of its own; an upgrade's transaction holds the write lock.
    migration_lock = None
    one_machine = True  # its locks are unreliable over a network file system
    read_only = False  # opened without write access (a file in a folder this user cannot write)

    def __init__(self, location: str):
        # A path, or an SQLAlchemy `sqlite:///PATH` URL.
        if location.startswith(_SQLITE_URL_PREFIX):
            self.path = Path(location[len(_SQLITE_URL_PREFIX) :])
        elif _scheme(location) is not None:
            raise DatabaseError(
                f"cannot open a {_scheme(location)!r} database: expdb stores to SQLite (a file path, or sqlite:///PATH) "
                "or PostgreSQL (postgresql+psycopg://USER@HOST/DATABASE)"
            )
        else:
            self.path = Path(location)
        self.name = str(self.path)
        self._existed = False

    @property
    def sqlalchemy_url(self) -> str:
        return _SQLITE_URL_PREFIX + str(self.path.resolve())

    @property
    def shared_location(self) -> str:
        """The database as another process, on this machine or another, names it."""
        return str(self.path.resolve())

    @property
    def runs_directory(self) -> Path:
        """Beside the file, a folder per file: two studies in one folder never share a run's files."""
        return self.path.resolve().parent / "expdb_runs" / self.path.name

    @property
    def attachments_directory(self) -> Path:
        """Beside the file, a folder per file, as for runs."""
        return self.path.resolve().parent / "expdb_files" / self.path.name

    def open(self, create: bool, migrate: Migrate) -> tuple[sqlite3.Connection, bool]:
        """The connection, and whether this open made the database (a reader never makes one)."""
        # An empty file is no database yet: this open makes it one.
        self._existed = self.path.exists()
        created = not self._existed or (self.path.is_file() and self.path.stat().st_size == 0)
        if created and create and not self.path.parent.is_dir():
            raise DatabaseError(f"cannot create {self.path}: directory {self.path.parent} does not exist")
        if self.path.is_dir():
            raise DatabaseError(f"{self.path} is a directory; --db takes a database file")
        if self._existed and not self.path.is_file():
            raise DatabaseError(f"{self.path} is not a regular file (a device or a pipe); --db takes a database file")
        folder = self.path.parent
        if created and create and not os.access(folder, os.W_OK | os.X_OK):
            raise DatabaseError(f"cannot create {self.path}: the folder {folder} is not writable; pick a folder you can write to")
        if not created and not os.access(folder, os.W_OK | os.X_OK):
            return self._connect_read_only(create), False
        if created and not create:
            raise DatabaseError(
                f"no expdb database at {self.name}: create one with `expdb new NAME`, "
                "or point --db / EXPDB_DB at an existing one"
            )
        if created and not self._existed:
            created = self._create_file(migrate)
        return self._connect(), created

    def _create_file(self, migrate: Migrate) -> bool:
        """Make the SQLite file whole or not at all: its schema is written to a file of its own, which
        is then linked in at the path, so that no process ever opens a half-made database. False
        when another process linked in its own first."""
        building = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        try:
            migrate(str(building))
            connection = sqlite3.connect(building)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            finally:
                connection.close()
            try:
                os.link(building, self.path)
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links
                os.replace(building, self.path)
            return True
        finally:
            for suffix in ("", "-wal", "-shm"):
                building.with_name(building.name + suffix).unlink(missing_ok=True)

    def _connect_read_only(self, create: bool) -> sqlite3.Connection:
        """A database in a folder this user cannot write: SQLite in WAL mode keeps its shared-memory file beside
        the database, so a reader needs the folder writable, unless nothing is being written (no WAL file), when
        the file is read as it is."""
        folder = self.path.parent
        wal = self.path.with_name(self.path.name + "-wal")
        if create:
            raise DatabaseError(
                f"cannot write to {self.path}: the folder {folder} is not writable (SQLite writes its journal beside the file)"
            )
        if wal.exists() and wal.stat().st_size:
            raise DatabaseError(
                f"cannot read {self.path}: its folder {folder} is not writable, and an unfinished write (its -wal file) "
                "can only be read by someone who may write there; make the folder writable, or copy the database elsewhere"
            )
        self.read_only = True
        uri = "file:" + quote(str(self.path.resolve())) + "?mode=ro&immutable=1"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as error:
            raise DatabaseError(f"cannot open {self.path}: {error}") from None
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{self.path} is not an expdb database ({error})") from None
        return connection

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

    def tune(self, connection) -> None:
        """WAL, so that readers never wait for a writer. Only once the file is known to be expdb's:
        setting the journal mode rewrites the file's header."""
        if self.read_only:
            return
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")

    def before_upgrade(self, connection, revision: str, upgrade: str) -> Path:
        """A file is upgraded by whoever opens it, after a backup copy beside it; the copy's path."""
        target = self.path.with_name(f"{self.path.name}.{revision}.bak")
        if target.exists():
            target = self.path.with_name(f"{self.path.name}.{revision}.{int(now())}.bak")
        copy = sqlite3.connect(target)
        try:
            connection.backup(copy)
        finally:
            copy.close()
        return target

    def undo_tables(self, connection) -> bool:
        """In a transaction (which holds the write lock): whether no card was written since the file was made."""
        return connection.execute("SELECT NOT EXISTS (SELECT 1 FROM card)").fetchone()[0]

    def undo_file(self) -> None:
        """Once closed: delete the file and its WAL files, or empty it again if it was an empty file before."""
        for path in (self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm")):
            path.unlink(missing_ok=True)
        if self._existed:
            self.path.write_bytes(b"")
        else:
            self.path.unlink(missing_ok=True)

    def among(self, column: str, values: Sequence) -> tuple[str, list]:
        return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(list(values))]

    def id_table(self, alias: str, ids: Sequence[int]) -> tuple[str, list]:
        return f"json_each(?) AS {alias}", [json.dumps(list(ids))]

    def glob(self, column: str, pattern: str) -> tuple[str, list]:
        return f"{column} GLOB ?", [pattern]

    def json_values(self, column: str, keys: Sequence[str]) -> tuple[str, list, Callable[[Sequence], dict]]:
        picks = "".join(f", json_type({column}, ?), json_extract({column}, ?)" for _ in keys)

        def decode(picked: Sequence) -> dict:
            return {
                key: _SQLITE_JSON_TYPES[kind](value) if kind in _SQLITE_JSON_TYPES else value
                for key, kind, value in zip(keys, picked[0::2], picked[1::2], strict=True)
                if kind is not None and kind != "null"
            }

        return picks, [f'$."{key}"' for key in keys for _ in range(2)], decode

    def json_keys(self, table: str, column: str) -> str:
        return f"SELECT DISTINCT json_each.key FROM {table}, json_each({table}.{column})"


class _PostgresConnection:
    """A psycopg connection answering the calls expdb makes of sqlite3's: execute, executemany, `?`."""

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence | dict = ()):
        return self.raw.execute(_pyformat(sql), parameters)

    def executemany(self, sql: str, rows) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(_pyformat(sql), rows)

    def close(self) -> None:
        self.raw.close()


class PostgresDialect:
    """A server, for a team or a cluster: `postgresql+psycopg://USER@HOST[:PORT]/DB`."""

    errors: type[Exception]  # psycopg.Error, once `open` has imported psycopg
    begin = "BEGIN"
    tables_sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    # An advisory lock ("expd"): one process at a time creates or upgrades the schema.
    migration_lock = f"SELECT pg_advisory_xact_lock({0x65787064})"
    one_machine = False
    read_only = False

    def __init__(self, location: str):
        self.location = location
        self.conninfo = "postgresql://" + location.split("://", 1)[1]  # as libpq takes it: without `+psycopg`
        self.path = None
        parts = urlsplit(location)
        if parts.password is None:
            self.name = location
        else:
            self.name = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))

    @property
    def sqlalchemy_url(self) -> str:
        return "postgresql+psycopg://" + self.location.split("://", 1)[1]

    @property
    def shared_location(self) -> str:
        return self.location

    @property
    def runs_directory(self) -> Path:
        """Where expdb was started, a folder per server and database: `expdb_runs/HOST_PORT_DB`."""
        host, port, database, user = self._settings()
        return Path.cwd() / "expdb_runs" / re.sub(r"[^\w.-]+", "_", f"{host}_{port}_{database or user}")

    @property
    def attachments_directory(self) -> Path:
        """Where expdb was started, a folder per server and database; a team sets $EXPDB_ATTACHMENTS to a shared one."""
        host, port, database, user = self._settings()
        return Path.cwd() / "expdb_files" / re.sub(r"[^\w.-]+", "_", f"{host}_{port}_{database or user}")

    def _settings(self) -> tuple[str, str, str | None, str | None]:
        from psycopg.conninfo import conninfo_to_dict

        settings = {key: None if value is None else str(value) for key, value in conninfo_to_dict(self.conninfo).items()}
        return settings.get("host") or "localhost", settings.get("port") or "5432", settings.get("dbname"), settings.get("user")

    def open(self, create: bool, migrate: Migrate) -> tuple[_PostgresConnection, bool]:
        """The connection, and whether the database has no tables yet (a reader is refused one)."""
        try:
            import psycopg
        except ImportError:
            raise DatabaseError("a PostgreSQL database needs psycopg: pip install 'expdb[postgres]'") from None
        self.errors = psycopg.Error
        try:
            raw = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as error:
            raise self._connection_failure(error) from None
        except ValueError as error:  # psycopg's verdict on a malformed URL
            raise DatabaseError(f"cannot use {self.name} as a PostgreSQL URL: {error}") from None
        connection = _PostgresConnection(raw)
        try:
            created = not self._tables(connection)
        except psycopg.Error as error:
            connection.close()
            raise _reading_failed(self.name, error) from None
        if created and not create:
            connection.close()
            raise DatabaseError(f"{self.name} has no expdb tables yet: a command that writes, such as `expdb new NAME`, creates "
                                "them")
        return connection, created

    def _connection_failure(self, error: Exception) -> DatabaseError:
        """psycopg's refusal, as one line naming the server and what to do."""
        host, port, database, user = self._settings()
        message = " ".join(str(error).split())
        reason = message.rsplit(" failed: ", 1)[-1].replace("FATAL: ", "").strip()
        if "does not exist" in reason and database and f'"{database}"' in reason:
            return DatabaseError(
                f"the PostgreSQL server at {host}:{port} has no database {database!r}: "
                f"create it (createdb -h {host} -p {port} {database}) or fix the URL"
            )
        if "authentication" in reason or "role" in reason:
            return DatabaseError(f"the PostgreSQL server at {host}:{port} refused user {user!r}: {reason}")
        return DatabaseError(
            f"cannot reach PostgreSQL at {host}:{port} ({reason}): check that the server runs there "
            "and accepts connections from this machine"
        )

    def _tables(self, connection) -> set[str]:
        return {row[0] for row in connection.execute(self.tables_sql).fetchall()}

    def tune(self, connection) -> None:
        """Nothing: the server's settings are its administrator's."""

    def before_upgrade(self, connection, revision: str, upgrade: str) -> None:
        """A shared database is upgraded only when asked: everyone who uses it then needs the newer expdb."""
        if upgrade != "yes":
            raise DatabaseError(
                f"{self.name} is at schema {revision} and this expdb needs {SCHEMA_HEAD}: upgrade it with "
                f"`expdb db upgrade --db URL` (everyone who shares it then needs this expdb or newer)"
            )

    def undo_tables(self, connection) -> bool:
        """In a transaction: drop the tables unless another writer has put a card in them since."""
        # Another writer may have found the tables new too, and be writing its first card.
        connection.execute("LOCK TABLE card IN ACCESS EXCLUSIVE MODE")
        unused = connection.execute("SELECT NOT EXISTS (SELECT 1 FROM card)").fetchone()[0]
        if unused:
            # The database had no tables when opened: every table it has now, the migrations made.
            connection.execute(f"DROP TABLE {', '.join(sorted(self._tables(connection)))}")
        return unused

    def undo_file(self) -> None:
        """Nothing: the database is the server's; its tables are gone."""

    def among(self, column: str, values: Sequence) -> tuple[str, list]:
        return f"{column} = ANY(?)", [list(values)]

    def id_table(self, alias: str, ids: Sequence[int]) -> tuple[str, list]:
        return f"unnest(CAST(? AS bigint[])) AS {alias}(value)", [list(ids)]

    def glob(self, column: str, pattern: str) -> tuple[str, list]:
        return f"{column} ~ ?", [glob_regex(pattern)]

    def json_values(self, column: str, keys: Sequence[str]) -> tuple[str, list, Callable[[Sequence], dict]]:
        # The value's JSON text, decoded here: JSON keeps 3 and 3.0 apart, as the card does.
        picks = "".join(f", ({column}::json -> ?)::text" for _ in keys)

        def decode(picked: Sequence) -> dict:
            return {key: json.loads(text) for key, text in zip(keys, picked, strict=True) if text is not None and text != "null"}

        return picks, list(keys), decode

    def json_keys(self, table: str, column: str) -> str:
        return f"SELECT DISTINCT json_object_keys({table}.{column}::json) FROM {table}"


class Database:
    """An open expdb database at the current schema.

    `create`: make the database when there is none yet (commands that write); read-only
    commands refuse a missing one rather than leave an empty database behind.
    `upgrade`: what to do with an older schema. "auto": upgrade an SQLite file after a
    backup copy beside it, but not a shared PostgreSQL database, whose users all need
    the newer expdb once it is upgraded; "yes": upgrade either (`expdb db upgrade`);
    "no": leave it as it is (`expdb db current`).
    """

    def __init__(self, location: str | None = None, *, create: bool = False, upgrade: str = "auto"):
        self.location = resolve_location(location)
        self.dialect = dialect_for(self.location)
        self.name = self.dialect.name
        self.upgraded_from: str | None = None
        self.backup_path: Path | None = None
        self._nested = False
        self.connection: sqlite3.Connection | _PostgresConnection
        self.connection, self.created = self.dialect.open(create, self._migrate)
        self._may_create = create
        try:
            self.revision = self._check_schema(upgrade)
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path | None:
        """The SQLite file; None for a server."""
        return self.dialect.path

    @property
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """What the driver raises inside a transaction block, before `transaction` turns it into an ExpdbError."""
        return (self.dialect.errors,)

    @property
    def in_transaction(self) -> bool:
        """Inside a `transaction` block (whose failure rolls back everything the block wrote)."""
        return self._nested

    @property
    def read_only(self) -> bool:
        """Opened for reading only: an SQLite file in a folder this user cannot write."""
        return self.dialect.read_only

    @property
    def runs_directory(self) -> Path:
        """The directory that this database's runs keep their logs and checkpoints under."""
        return self.dialect.runs_directory

    def _tables(self) -> set[str]:
        return {row[0] for row in self.query(self.dialect.tables_sql)}

    def _check_schema(self, upgrade: str) -> str:
        tables = self._tables()
        if not tables:
            if not self._may_create:  # a reader never writes, even the schema of an empty file
                raise DatabaseError(f"no expdb database at {self.name}: it has no tables; `expdb new NAME` makes them")
            self.dialect.tune(self.connection)
            self._migrate()
            return SCHEMA_HEAD
        row = self.query_one("SELECT version_num FROM alembic_version") if "alembic_version" in tables else None
        if row is None:
            raise DatabaseError(f"{self.name} is a database, but not an expdb one (it has no schema revision)")
        revision = row[0]
        if revision == SCHEMA_HEAD:
            self.dialect.tune(self.connection)
            return revision
        from .migrate import known_revisions

        if revision not in known_revisions():
            raise DatabaseError(
                f"{self.name} was written by a newer expdb (schema revision {revision}; this expdb knows up to "
                f"{SCHEMA_HEAD}): upgrade expdb with `pip install -U expdb`"
            )
        if upgrade == "no":
            return revision
        self.backup_path = self.dialect.before_upgrade(self.connection, revision, upgrade)
        self.dialect.tune(self.connection)
        self._migrate()
        self.upgraded_from = revision
        return SCHEMA_HEAD

    def _migrate(self, location: str | None = None) -> None:
        from .migrate import upgrade_to_head

        try:
            upgrade_to_head(location or self.location)
        except Exception as error:  # noqa: BLE001 - any failure of a migration is reported the same way
            hint = f"; the backup is {self.backup_path}" if self.backup_path else ""
            raise DatabaseError(f"could not bring {self.name} to schema {SCHEMA_HEAD}: {_first_line(error)}{hint}") from None

    def close(self) -> None:
        self.connection.close()

    def remove(self) -> None:
        """Undo an open that created the database, unless another writer has put a card in it since.

        SQLite: close it, delete its WAL files, and delete the file (or empty it again, if it
        was an empty file before). PostgreSQL: drop the tables it created.
        """
        with self.transaction() as connection:
            unused = self.dialect.undo_tables(connection)
        self.close()
        if unused:
            self.dialect.undo_file()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- SQL the two backends write differently ---------------------------------------------

    def among(self, column: str, values: Sequence) -> tuple[str, list]:
        """`column IN values` as SQL with one bound parameter, however many values there are."""
        return self.dialect.among(column, values)

    def id_table(self, alias: str, ids: Sequence[int]) -> tuple[str, list]:
        """A table of `ids`, one per row in column `value`, to join or select from: `FROM {sql}`."""
        return self.dialect.id_table(alias, ids)

    def every_row(self, table: str, ids: Sequence[int]) -> bool:
        """Whether `ids` name every row of `table`: a query over them may then read the table whole, rather
        than test each of 100,000 rows against 100,000 ids, and get the same rows."""
        count = self.query_one(f"SELECT count(*) FROM {table}")
        return count is not None and len(set(ids)) >= count[0]

    def glob(self, column: str, pattern: str) -> tuple[str, list]:
        """`column` matches the shell pattern (`cvt_io_v2_*`), case-sensitively, as SQLite's GLOB."""
        return self.dialect.glob(column, pattern)

    def json_values(self, column: str, keys: Sequence[str]) -> tuple[str, list, Callable[[Sequence], dict]]:
        """The values of `keys` in the JSON objects of `column`, picked out by the database: columns to
        add to a SELECT (", ..."), their parameters, and what turns the columns picked into
        {key: value}, absent and null keys left out."""
        return self.dialect.json_values(column, keys)

    def json_keys(self, table: str, column: str) -> str:
        """A query for the distinct keys of the JSON objects in `table.column`."""
        return self.dialect.json_keys(table, column)

    # -- reading and writing ----------------------------------------------------------------

    def query(self, sql: str, parameters: Sequence | dict = ()) -> list[tuple]:
        try:
            return self.connection.execute(sql, parameters).fetchall()
        except self.dialect.errors as error:
            raise _reading_failed(self.name, error) from None

    def each(self, sql: str, parameters: Sequence | dict = ()) -> Iterator[tuple]:
        """`query`'s rows one at a time: 500,000 metrics are not all made into tuples before the first is used."""
        try:
            # Not `yield from`: closing this generator would close the cursor, which fails once Ctrl-C has closed
            # the database, and Python would print that failure.
            for row in self.connection.execute(sql, parameters):  # noqa: UP028
                yield row
        except self.dialect.errors as error:
            raise _reading_failed(self.name, error) from None

    def query_one(self, sql: str, parameters: Sequence | dict = ()) -> tuple | None:
        rows = self.query(sql, parameters)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator:
        """All or nothing: what the block writes is committed together, or not at all.

        On SQLite a transaction takes the write lock at once (BEGIN IMMEDIATE), so writers queue
        behind the busy timeout instead of failing halfway. A transaction inside another is part
        of it: many cards made by `create_card` in one block are all made, or none.
        """
        if self._nested:
            yield self.connection
            return
        if self.read_only:
            raise DatabaseError(
                f"cannot write to {self.name}: the folder {self.path.parent if self.path else '.'} is not writable "
                "(SQLite writes its journal beside the file)"
            )
        try:
            self.connection.execute(self.dialect.begin)
        except self.dialect.errors as error:
            raise DatabaseError(f"cannot write to {self.name}: {_first_line(error)}") from None
        self._nested = True
        try:
            yield self.connection
            self.connection.execute("COMMIT")
        except self.dialect.errors as error:
            self._rollback()
            raise DatabaseError(f"writing to {self.name} failed: {_first_line(error)}") from None
        except BaseException:
            self._rollback()
            raise
        finally:
            self._nested = False

    def _rollback(self) -> None:
        # If the connection itself broke, the server has rolled back already.
        with contextlib.suppress(self.dialect.errors):
            self.connection.execute("ROLLBACK")


def glob_regex(pattern: str) -> str:
    """A shell pattern as an anchored POSIX regular expression: * ? and [...] as in SQLite's GLOB."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and pattern.find("]", i + 2) != -1:
            end = pattern.find("]", i + 2)  # a class holds one character at least: "[]]" matches "]"
            out.append(pattern[i : end + 1])
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"
