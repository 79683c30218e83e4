"""Files kept with a card or a run: a figure, a config, a checkpoint.

The database holds each attachment's name, size, sha256 and note; the content lives in a
content-addressed store, `STORE/ab/abcdef...` (the first two hex digits of the hash, then the
hash), so a file attached twice, or to two cards, is stored once. Where the store is:

- `$EXPDB_ATTACHMENTS` when set (a folder every user of a PostgreSQL database can reach);
- else beside an SQLite file, `expdb_files/<file name>/`;
- else, for PostgreSQL, `expdb_files/HOST_PORT_DB/` in the folder expdb was started from.
"""

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cards import get_card
from .db import Database, new_uid, now
from .errors import ExpdbError

DEFAULT_MAX_SIZE = 1 << 30  # 1 GiB: `--max-size`
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Attachment:
    id: int
    uid: str
    card_id: int
    run_id: int | None
    name: str
    size: int
    sha256: str
    note: str | None
    created_at: float

    @property
    def is_image(self) -> bool:
        return Path(self.name).suffix.lower() in IMAGE_SUFFIXES


_COLUMNS = "id, uid, card_id, run_id, name, size, sha256, note, created_at"


def store_directory(db: Database) -> Path:
    """Where the content of `db`'s attachments is kept (see the module docstring)."""
    configured = os.environ.get("EXPDB_ATTACHMENTS")
    return Path(configured).expanduser().resolve() if configured else db.dialect.attachments_directory


def content_path(store: Path, sha256: str) -> Path:
    return store / sha256[:2] / sha256


def parse_size(text: str) -> int:
    """`1G`, `500M`, `20K`, `1000`: bytes (K, M, G, T are powers of 1024)."""
    scales = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    stripped = text.strip().upper().removesuffix("B")
    scale = scales.get(stripped[-1:], 1) if stripped else 1
    number = stripped[:-1] if scale != 1 else stripped
    try:
        size = float(number) * scale
    except ValueError:
        raise ExpdbError(f"cannot read --max-size {text!r}: write bytes, or a number with K, M, G or T (500M, 1G)") from None
    if not size >= 1 or size == float("inf"):  # nan, inf and less than a byte too
        raise ExpdbError(f"--max-size {text!r} must be at least one byte, e.g. 500M or 1G")
    return int(size)


def _describe_size(size: int) -> str:
    for scale, letter in ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if size >= scale:
            return f"{size / scale:.1f}{letter}B"
    return f"{size} bytes"


def _store_file(source: Path, store: Path) -> tuple[str, int]:
    """Copy `source` into the store under its hash (once); returns (sha256, size)."""
    store.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(dir=store, prefix=".incoming-", delete=False) as temporary, source.open("rb") as handle:
        try:
            while block := handle.read(_BLOCK):
                digest.update(block)
                temporary.write(block)
                size += len(block)
        except BaseException:
            Path(temporary.name).unlink(missing_ok=True)
            raise
    sha256 = digest.hexdigest()
    target = content_path(store, sha256)
    if target.exists():
        Path(temporary.name).unlink()
    else:
        target.parent.mkdir(exist_ok=True)
        os.replace(temporary.name, target)
    return sha256, size


def attach(
    db: Database,
    card_name: str,
    file: str | Path,
    note: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    run_id: int | None = None,
) -> tuple[Attachment, bool]:
    """Keep `file` with the card (and one of its runs). Returns the attachment and whether it is new:
    the same content under the same name on the same card is kept once.

    Refused (ExpdbError, nothing written) for a missing file, a folder, or a file over `max_size` bytes.
    """
    card = get_card(db, card_name)
    path = Path(file)
    if not path.exists():
        raise ExpdbError(f"no such file to attach: {path}")
    if not path.is_file():
        raise ExpdbError(f"{path} is not a file: attach files one by one (a folder could be archived first)")
    size = path.stat().st_size
    if size > max_size:
        raise ExpdbError(
            f"{path} is {_describe_size(size)}, over the limit of {_describe_size(max_size)}: "
            "raise it with --max-size, e.g. --max-size 5G"
        )
    if run_id is not None and db.query_one("SELECT 1 FROM run WHERE id = ? AND card_id = ?", (run_id, card.id)) is None:
        raise ExpdbError(f"{card.name} has no run {run_id}: `expdb show {card.name}` lists its runs")
    store = store_directory(db)
    try:
        sha256, size = _store_file(path, store)
    except OSError as error:
        raise ExpdbError(
            f"cannot store {path} in {store}: {error.strerror or error}; the attachments go to a folder this user can "
            "write (EXPDB_ATTACHMENTS chooses it)"
        ) from None
    existing = db.query_one(
        f"SELECT {_COLUMNS} FROM attachment WHERE card_id = ? AND sha256 = ? AND name = ?",
        (card.id, sha256, path.name),
    )
    if existing is not None:
        return Attachment(*existing), False
    with db.transaction() as connection:
        row = connection.execute(
            "INSERT INTO attachment (uid, card_id, run_id, name, size, sha256, note, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            f"RETURNING {_COLUMNS}",
            (new_uid(), card.id, run_id, path.name, size, sha256, note, now()),
        ).fetchone()
    return Attachment(*row), True


def attachments_of(db: Database, card_ids: list[int]) -> dict[int, list[Attachment]]:
    """card id -> its attachments, oldest first."""
    if not card_ids:
        return {}
    clause, parameters = db.among("card_id", card_ids)
    found: dict[int, list[Attachment]] = {}
    for row in db.query(f"SELECT {_COLUMNS} FROM attachment WHERE {clause} ORDER BY id", parameters):
        attachment = Attachment(*row)
        found.setdefault(attachment.card_id, []).append(attachment)
    return found


def get_attachment(db: Database, attachment_id: int) -> Attachment:
    found = db.query_one(f"SELECT {_COLUMNS} FROM attachment WHERE id = ?", (attachment_id,))
    if found is None:
        raise ExpdbError(f"no attachment {attachment_id}: `expdb show CARD` lists a card's attachments")
    return Attachment(*found)


def stored_file(db: Database, attachment: Attachment) -> Path:
    """Where the attachment's content is, found by its hash alone (never by a name someone wrote)."""
    if len(attachment.sha256) != 64 or any(char not in "0123456789abcdef" for char in attachment.sha256):
        raise ExpdbError(f"the attachment {attachment.name} has no valid sha256 in the database ({attachment.sha256[:16]!r})")
    source = content_path(store_directory(db), attachment.sha256)
    if not source.is_file():
        raise ExpdbError(f"the content of {attachment.name} ({attachment.sha256[:12]}) is missing from {store_directory(db)}")
    return source


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def copy_content(source: Database, target: Database, sha256s: set[str]) -> None:
    """Make the target's store hold the content of these attachments of the source (once each)."""
    source_store, target_store = store_directory(source), store_directory(target)
    if source_store == target_store:
        return
    for sha256 in sha256s:
        origin, destination = content_path(source_store, sha256), content_path(target_store, sha256)
        if destination.exists():
            continue
        if not origin.is_file():
            raise ExpdbError(f"an attachment's content ({sha256[:12]}) is missing from {source_store}: nothing copied")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, destination)
