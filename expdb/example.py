"""Builds experiments.db.example from example_study.toml: `python -m expdb.example [TARGET]`."""

import sys
import uuid
from importlib.resources import files
from pathlib import Path

import tomllib

from .cards import create_card
from .db import Database
from .results import record_run

DAY_S = 86400.0


def build_example(target: Path, source: Path | None = None) -> None:
    """Write the study in `source` (default: the bundled example_study.toml) to a new database at `target`."""
    study = tomllib.loads((source or files("expdb") / "example_study.toml").read_text())
    target.unlink(missing_ok=True)
    with Database(str(target), create=True) as db:
        created = study["first_created"].timestamp()
        for day, card in enumerate(study["card"]):
            when = created + day * DAY_S
            create_card(
                db,
                card["name"],
                card.get("params", {}),
                parent=card.get("from"),
                runner=card.get("runner"),
                note=card.get("note"),
                created_at=when,
            )
            if "run" in card:
                result = dict(card["run"])
                status, reason = result.pop("status"), result.pop("exit_reason", None)
                record_run(
                    db, card["name"], status, result, exit_reason=reason, flops_counter=study["flops_counter"], recorded_at=when
                )
        with db.transaction() as connection:
            # Identities derived from the rows, so that a rebuild equals the shipped file.
            for table in ("card", "run", "profile", "note"):
                for (row_id,) in connection.execute(f"SELECT id FROM {table}").fetchall():
                    uid = uuid.uuid5(uuid.NAMESPACE_URL, f"expdb.example/{table}/{row_id}").hex
                    connection.execute(f"UPDATE {table} SET uid = ? WHERE id = ?", (uid, row_id))
        # A single file to ship: fold the write-ahead log back in.
        db.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


if __name__ == "__main__":
    build_example(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments.db.example"))
