"""`expdb copy`: cards with their tags, runs, metrics, curves, profiles, notes and attachments, from one database to another.

Cards, runs, profiles and notes are matched by `uid`, tags by (card, name), so a copy done
twice copies nothing twice, and a run that has gone on since it was copied is brought up to
date. A selected card's ancestors come along when the target lacks them, so that its lineage
holds there too. Everything is written in one transaction of the target: all or nothing. The
SQL is the kind both SQLite and PostgreSQL take: `?` placeholders, `RETURNING id`, TRUE/FALSE.
"""

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from .attachments import copy_content
from .cards import PROFILE_FIELDS, Selection, selected_ids
from .db import Database, dialect_for, display_name
from .errors import ExpdbError
from .lifecycle import ACTIVE
from .series import INSERT_CHUNK
from .values import plural

# The columns copied: all but `id`, since ids mean nothing in another database (*_id columns are re-mapped).
COLUMNS = {
    "card": (
        "uid", "name", "parent_id", "runner", "command", "parser", "params", "created_at", "diverge", "invalid_reason",
        "invalidated_at",
    ),
    "run": (
        "uid", "card_id", "status", "started_at", "ended_at", "heartbeat_at", "exit_reason", "command", "log_path",
        "checkpoint_dir", "host", "pid", "device", "seed", "env", "queued_at", "launcher", "job_id", "origin", "source",
        "source_hash", "progress_step", "progress_at",
    ),
    "note": ("uid", "card_id", "run_id", "created_at", "text", "automatic", "step", "settings"),
    "profile": ("uid", "card_id", "run_id", "created_at", *PROFILE_FIELDS, "details"),
    "attachment": ("uid", "card_id", "run_id", "name", "size", "sha256", "note", "created_at"),
    "metric_def": ("key", "label", "unit", "direction", "format"),
    "chunk": ("first_step", "last_step", "count", "step_data", "value_data", "wall_data", "epoch_data", "samples_data"),
}
DEFINITION = ("runner", "command", "parser", "params")  # what a card is; the same card must agree on it everywhere
CHUNK_PAGE = 100  # chunks read and written at a time: memory stays small however long the run
ANCESTORS_NAMED = 10  # the output names this many of the ancestors brought along, then counts the rest


@dataclass
class Copied:
    """What a copy wrote into the target."""

    source: str  # the databases, as messages name them (no password)
    target: str
    cards: int = 0  # cards created in the target, ancestors included
    ancestors: list[str] = field(default_factory=list)  # created because a selected card descends from them
    already: int = 0  # selected cards the target had already
    runs: int = 0  # runs created
    updated_runs: int = 0  # runs the source has taken further since they were copied
    points: int = 0  # curve points the target gained
    profiles: int = 0
    notes: int = 0
    attachments: int = 0
    running: list[str] = field(default_factory=list)  # cards whose runs were left out because they had not ended


def _file_of(location: str) -> Path | None:
    """The file of an SQLite location; None for a PostgreSQL URL."""
    path = dialect_for(location).path
    return path.resolve() if path is not None else None


def check_locations(source: str, target: str) -> None:
    """Refuse, before either database is opened, a copy onto itself or from a file that is not there."""
    source_file, target_file = _file_of(source), _file_of(target)
    if source_file is not None and not source_file.is_file():
        raise ExpdbError(f"no expdb database at {display_name(source)} to copy from")
    if (source_file == target_file) if source_file is not None else source == target:
        raise ExpdbError(f"{display_name(source)} is both the source and the target: copy --to or --from another database")


def copy_cards(source: Database, target: Database, selection: Selection = Selection()) -> Copied:
    """Copy the cards `selection` picks in `source` (see `select_cards`: every card by default) and
    what belongs to them into `target`.

    Refused, with nothing written, when the target has a different card with the name of one
    to copy, or when a card in both differs in parameters, runner or command (edited after an
    earlier copy).
    """
    selected = selected_ids(source, selection)
    source_cards = {card["id"]: card for card in _rows(source, "card")}
    lineage = _lineage(source_cards, selected)
    present = _present_cards(target, [source_cards[card_id]["uid"] for card_id in lineage])
    # source card id -> target card id: the cards the target has, then those created in it
    target_ids = {card_id: present[uid]["id"] for card_id in lineage if (uid := source_cards[card_id]["uid"]) in present}
    copy_ids = _with_missing_ancestors(source_cards, selected, present)
    new_ids = _parents_first(source_cards, [card_id for card_id in copy_ids if card_id not in target_ids])
    _refuse_conflicts(source, target, [source_cards[card_id] for card_id in copy_ids], present)

    copied = Copied(source.name, target.name, cards=len(new_ids), already=len(copy_ids) - len(new_ids))
    chosen = set(selected)
    copied.ancestors = [source_cards[card_id]["name"] for card_id in new_ids if card_id not in chosen]
    with target.transaction() as connection:
        for card_id in new_ids:
            card = source_cards[card_id]
            parent_id = target_ids[card["parent_id"]] if card["parent_id"] is not None else None
            target_ids[card_id] = _insert(connection, "card", {**card, "parent_id": parent_id})
        card_map = {card_id: target_ids[card_id] for card_id in copy_ids}
        _copy_tags(source, connection, card_map)
        run_map = _copy_runs(source, target, connection, card_map, source_cards, copied)
        copied.notes = _copy_owned(source, target, connection, "note", card_map, run_map)
        copied.profiles = _copy_owned(source, target, connection, "profile", card_map, run_map)
        copied.attachments = _copy_owned(source, target, connection, "attachment", card_map, run_map)
        # The files' content before the commit: a copy that fails here leaves the target as it was.
        copy_content(source, target, {row["sha256"] for row in _rows(source, "attachment", "card_id", card_map)})
        columns = COLUMNS["metric_def"]
        connection.executemany(
            f"INSERT INTO metric_def ({', '.join(columns)}) VALUES ({_marks(columns)}) ON CONFLICT DO NOTHING",
            source.query(f"SELECT {', '.join(columns)} FROM metric_def"),
        )
    return copied


def _rows(db: Database, table: str, among: str | None = None, ids=()) -> list[dict]:
    """The rows of `table` (those whose column `among` is one of `ids`) as dicts with their `id`, in id order."""
    clause, parameters = db.among(among, list(ids)) if among else ("TRUE", [])
    found = db.query(f"SELECT id, {', '.join(COLUMNS[table])} FROM {table} WHERE {clause} ORDER BY id", parameters)
    return [dict(zip(("id", *COLUMNS[table]), row, strict=True)) for row in found]


def _marks(columns: tuple) -> str:
    return ", ".join("?" * len(columns))


def _insert(connection, table: str, row: dict) -> int:
    columns = COLUMNS[table]
    return connection.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(columns)}) RETURNING id", [row[c] for c in columns]
    ).fetchone()[0]


def _lineage(source_cards: dict[int, dict], card_ids: list[int]) -> set[int]:
    """These cards and all their ancestors."""
    seen: set[int] = set()
    for card_id in card_ids:
        while card_id is not None and card_id not in seen:
            seen.add(card_id)
            card_id = source_cards[card_id]["parent_id"]
    return seen


def _present_cards(target: Database, uids: list[str]) -> dict[str, dict]:
    """uid -> the target's id, name and definition of the cards it has among `uids`."""
    clause, parameters = target.among("uid", uids)
    columns = ("uid", "id", "name", *DEFINITION)
    rows = target.query(f"SELECT {', '.join(columns)} FROM card WHERE {clause}", parameters)
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows}


def _with_missing_ancestors(source_cards: dict[int, dict], selected: list[int], present: dict[str, dict]) -> list[int]:
    """The selected cards, then, above each one the target lacks, its ancestors up to the first the target has."""
    chosen = dict.fromkeys(selected)
    for card_id in selected:
        card = source_cards[card_id]
        while card["uid"] not in present and card["parent_id"] is not None:
            card = source_cards[card["parent_id"]]
            if card["uid"] in present or card["id"] in chosen:
                break  # the target has the rest of the line, or another card's walk brings it
            chosen[card["id"]] = None
    return list(chosen)


def _refuse_conflicts(source: Database, target: Database, to_copy: list[dict], present: dict[str, dict]) -> None:
    """One line naming the cards that would make the copy wrong, before anything is written."""
    clause, parameters = target.among("name", [card["name"] for card in to_copy if card["uid"] not in present])
    taken = [name for (name,) in target.query(f"SELECT name FROM card WHERE {clause} ORDER BY name", parameters)]
    if taken:
        raise ExpdbError(
            f"{target.name} has other experiments named {', '.join(taken)} (same name, a different card); nothing copied: "
            f"rename yours or theirs (expdb rename {taken[0]} NEW_NAME [--db ...]), then copy again"
        )
    edited = [
        card["name"]
        for card in to_copy
        if card["uid"] in present and any(card[key] != present[card["uid"]][key] for key in DEFINITION)
    ]
    if edited:
        raise ExpdbError(
            f"{', '.join(edited)} differ{'s' if len(edited) == 1 else ''} between {source.name} and {target.name} in "
            "parameters, runner "
            "or command (edited after an earlier copy); nothing copied: make them the same with `expdb set`, "
            "or fork one under a new name"
        )


def _parents_first(source_cards: dict[int, dict], card_ids: list[int]) -> list[int]:
    """The cards in an order where each parent among them comes before its children."""
    pending, ordered = set(card_ids), list[int]()
    for card_id in card_ids:
        line = []
        while card_id in pending:
            pending.discard(card_id)
            line.append(card_id)
            card_id = source_cards[card_id]["parent_id"]
        ordered.extend(reversed(line))
    return ordered


def _copy_tags(source: Database, connection, card_map: dict[int, int]) -> None:
    clause, parameters = source.among("card_id", list(card_map))
    connection.executemany(
        "INSERT INTO tag (card_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(card_map[card_id], name) for card_id, name in source.query("SELECT card_id, name FROM tag WHERE "
                                                                     f"{clause}", parameters)],
    )


def _progress(run: dict) -> tuple:
    """How far a run has got: its last sign of life, then whether it has ended. Every flush of points
    beats the heartbeat, and ending a run sets its status, so a run with more to copy is further along."""
    return (run["heartbeat_at"] or run["started_at"] or run["queued_at"] or 0.0, run["status"] not in ACTIVE)


def _copy_runs(
    source: Database, target: Database, connection, card_map: dict[int, int], source_cards: dict[int, dict], copied: Copied
) -> dict[int, int]:
    """Create the runs the target lacks, and bring up to date those the source has taken further.

    A run still queued or running is left for a later copy: in the target nothing would beat its
    heartbeat, and it would be taken for crashed. A run's row is read before its metrics and
    curves: should it go on meanwhile, the target holds at least what the row says, and the next
    copy finds it further along. Returns source run id -> target run id, for the runs of the
    copied cards that the target has.
    """
    runs = _rows(source, "run", "card_id", card_map)
    there = {run["uid"]: run for run in _rows(target, "run", "uid", [run["uid"] for run in runs])}
    clause, parameters = source.among("run_id", [run["id"] for run in runs])
    metrics: dict[int, list[tuple]] = {}
    for run_id, key, value, step in source.query(f"SELECT run_id, key, value, step FROM metric WHERE {clause}", parameters):
        metrics.setdefault(run_id, []).append((key, value, step))

    run_map, metric_rows = {}, []
    for run in runs:
        row = {**run, "card_id": card_map[run["card_id"]]}
        existing = there.get(run["uid"])
        if run["status"] in ACTIVE:  # left for a later copy
            copied.running.append(source_cards[run["card_id"]]["name"])
            if existing is not None:
                run_map[run["id"]] = existing["id"]
            continue
        if existing is None:
            run_map[run["id"]] = target_id = _insert(connection, "run", row)
            copied.runs += 1
        else:
            run_map[run["id"]] = target_id = existing["id"]
            if _progress(run) <= _progress(existing):
                continue  # nothing new, or the target knows more (say, it has since found the run crashed)
            assignments = ", ".join(f"{column} = ?" for column in COLUMNS["run"])
            connection.execute(f"UPDATE run SET {assignments} WHERE id = ?", [*(row[c] for c in COLUMNS["run"]), target_id])
            connection.execute("DELETE FROM metric WHERE run_id = ?", (target_id,))
            copied.points -= _delete_curves(connection, target_id)
            copied.updated_runs += 1
        metric_rows += [(target_id, key, value, step) for key, value, step in metrics.get(run["id"], [])]
        copied.points += _copy_curves(source, connection, run["id"], target_id)
    # All at once: one round trip.
    connection.executemany("INSERT INTO metric (run_id, key, value, step) VALUES (?, ?, ?, ?)", metric_rows)
    return run_map


def _delete_curves(connection, run_id: int) -> int:
    """Remove a run's curves; returns how many points they held."""
    of_run = "series_id IN (SELECT id FROM series WHERE run_id = ?)"
    (points,) = connection.execute(f"SELECT coalesce(sum(count), 0) FROM chunk WHERE {of_run}", (run_id,)).fetchone()
    connection.execute(f"DELETE FROM chunk WHERE {of_run}", (run_id,))
    connection.execute("DELETE FROM series WHERE run_id = ?", (run_id,))
    return points


def _copy_curves(source: Database, connection, source_run_id: int, target_run_id: int) -> int:
    """A run's curves, chunk by chunk and byte for byte, a page of chunks at a time; returns how many points."""
    points, columns = 0, ", ".join(COLUMNS["chunk"])
    for series_id, key in source.query("SELECT id, key FROM series WHERE run_id = ? ORDER BY id", (source_run_id,)):
        target_series = connection.execute(
            "INSERT INTO series (run_id, key) VALUES (?, ?) RETURNING id", (target_run_id, key)
        ).fetchone()[0]
        last_id, more = 0, True
        while more:
            page = source.query(
                f"SELECT id, {columns} FROM chunk WHERE series_id = ? AND id > ? ORDER BY id LIMIT "
                "?", (series_id, last_id, CHUNK_PAGE)
            )
            # In id order: where a resumed run logged a step twice, the later chunk wins, there as here.
            connection.executemany(INSERT_CHUNK, [(target_series, *chunk[1:]) for chunk in page])
            points += sum(chunk[3] for chunk in page)
            more = len(page) == CHUNK_PAGE
            if more:
                last_id = page[-1][0]
    return points


def _copy_owned(
    source: Database, target: Database, connection, table: str, card_map: dict[int, int], run_map: dict[int, int]
) -> int:
    """The notes, profiles or attachments of the copied cards that the target lacks; returns how many."""
    rows = _rows(source, table, "card_id", card_map)
    clause, parameters = target.among("uid", [row["uid"] for row in rows])
    there = {uid for (uid,) in target.query(f"SELECT uid FROM {table} WHERE {clause}", parameters)}
    new = [
        {**row, "card_id": card_map[row["card_id"]], "run_id": run_map.get(row["run_id"])}
        for row in rows
        if row["uid"] not in there and (row["run_id"] is None or row["run_id"] in run_map)  # not of a run left out
    ]
    if table == "note":
        for row in new:
            row["automatic"] = bool(row["automatic"])  # SQLite gives 0 or 1; PostgreSQL wants a boolean
    columns = COLUMNS[table]
    connection.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(columns)})", [[row[c] for c in columns] for row in new]
    )
    return len(new)


def render_copied(copied: Copied, console: Console) -> None:
    """What was copied, in one line; then the ancestors that came along and the runs still running, if any."""
    counts = (
        (copied.cards, "card"),
        (copied.runs, "run"),
        (copied.points, "point"),
        (copied.profiles, "profile"),
        (copied.notes, "note"),
        *([(copied.attachments, "attachment")] if copied.attachments else []),
    )
    if not any(number for number, _ in counts) and not copied.updated_runs:
        line = f"nothing new to copy: {plural(copied.already, 'card')} already in {copied.target}" + (
            "" if copied.running else ", up to date"
        )
        console.print(line, markup=False, soft_wrap=True)
    else:
        _print_counts(copied, counts, console)
    if copied.running:
        they = "it has" if len(copied.running) == 1 else "they have"
        line = f"still running, their runs not copied: {', '.join(copied.running)}; copy again once {they} ended"
        console.print(line, markup=False, soft_wrap=True)


def _print_counts(copied: Copied, counts: tuple, console: Console) -> None:
    asides = [
        f"{plural(copied.already, 'card')} already there" if copied.already else "",
        f"{plural(copied.updated_runs, 'run')} brought up to date" if copied.updated_runs else "",
    ]
    aside = "; ".join(text for text in asides if text)
    line = f"copied {', '.join(plural(*count) for count in counts)} from {copied.source} to {copied.target}"
    console.print(line + (f" ({aside})" if aside else ""), markup=False, soft_wrap=True)
    if copied.ancestors:
        named = ", ".join(copied.ancestors[:ANCESTORS_NAMED])
        more = len(copied.ancestors) - ANCESTORS_NAMED
        line = f"with the ancestors the target lacked, so that lineage holds: {named}"
        line += f" and {more:,} more" if more > 0 else ""
        console.print(line, markup=False, soft_wrap=True)
