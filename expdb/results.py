"""Recording results that exist already: a run's final metrics and profile, or a whole training log."""

import json
from dataclasses import dataclass
from pathlib import Path

from . import lifecycle
from .cards import PROFILE_FIELDS, card_exists, create_card, get_card
from .db import Database, new_uid, now
from .divergence import DEFAULTS, Divergence, DivergenceDetector
from .errors import ExpdbError
from .lifecycle import RunStatus
from .logparse import parse_file
from .metrics import PROFILE_COLUMNS
from .runs import add_divergence_notes
from .series import build_chunks, write_chunks


def record_run(
    db: Database,
    card_name: str,
    status: str,
    metrics: dict[str, float],
    exit_reason: str | None = None,
    started_at: float | None = None,
    ended_at: float | None = None,
    flops_counter: str | None = None,
    recorded_at: float | None = None,
) -> int:
    """An ended run of `card_name` with its final metrics; `params`, `flops` and `cost_time` go to its profile,
    with `flops_counter` saying who counted the FLOPs, dated `recorded_at` (default: now).

    Returns the run's id.
    """
    card = get_card(db, card_name)
    profile: dict[str, float | str | None] = {
        PROFILE_COLUMNS[key]: value for key, value in metrics.items() if key in PROFILE_COLUMNS
    }
    if "flops" in profile:
        profile["flops_counter"] = flops_counter
    summary = {key: float(value) for key, value in metrics.items() if key not in PROFILE_COLUMNS}
    with db.transaction() as connection:
        run_id = lifecycle.record(db, card.id, status, started_at=started_at, ended_at=ended_at, exit_reason=exit_reason)
        connection.executemany(
            "INSERT INTO metric (run_id, key, value) VALUES (?, ?, ?)",
            [(run_id, key, value) for key, value in summary.items()],
        )
        if profile:
            columns = ", ".join(profile)
            connection.execute(
                f"INSERT INTO profile (uid, card_id, run_id, created_at, {columns}, details) "
                f"VALUES (?, ?, ?, ?, {', '.join('?' * len(profile))}, '{{}}')",
                (new_uid(), card.id, run_id, recorded_at if recorded_at is not None else now(), *profile.values()),
            )
    return run_id


@dataclass
class Imported:
    run_id: int
    status: str
    points: int
    divergences: list[Divergence]


def _check_importable(card, spec: str) -> None:
    """A log goes onto a card trained the same way: not onto one its runner or another command trains."""
    if card.runner:
        trained_by = f"runner {card.runner}"
    elif card.command and (card.parser or "") != spec:
        trained_by = f"a command whose log is read as {card.parser or 'nothing'}"
    else:
        return
    raise ExpdbError(
        f"{card.name} is trained by {trained_by}, not by a {spec} log: import onto a card of its own "
        f"(--name {card.name}_imported --from {card.name})"
    )


def import_log(
    db: Database, path: str, spec: str, card_name: str, parent: str | None = None, diverge: dict[str, float] | None = None
) -> Imported:
    """A run that already happened, from its training log: its curves, and divergence notes.

    The card is created (forked from `parent`) if it does not exist, once the log has been
    read. The run is `diverged` if its curves diverged, else `finished`; trends (a loss rising,
    not learning) are only noted. `diverge`: divergence settings over the card's.
    """
    records = parse_file(path, spec)
    if card_exists(db, card_name):
        if parent is not None:
            raise ExpdbError(f"{card_name} exists already: --from only applies to a card the import creates")
        card = get_card(db, card_name)
        _check_importable(card, spec)
    else:
        card = create_card(db, card_name, {}, parent=parent)
    times = [record.timestamp for record in records if record.timestamp is not None]
    started = times[0] if times else None
    points: list[tuple[int, float | None, int | None, float, dict[str, float]]] = [
        (
            record.step,
            record.epochs_done if record.epochs_done is not None else record.epoch,
            None,
            record.timestamp - started if record.timestamp is not None and started is not None else 0.0,
            record.values,
        )
        for record in records
    ]
    chunks = build_chunks(points)
    steps = card.params.get("steps")
    settings = {**DEFAULTS, **card.diverge, **(diverge or {})}
    detector = DivergenceDetector(steps if type(steps) is int else None, **settings)
    events = detector.feed({key: chunk.in_step_order() for key, chunk in chunks.items()})
    events += detector.trend_events(final=True)
    stopping = [event for event in events if event.stops]
    status = RunStatus.DIVERGED if stopping else RunStatus.FINISHED
    source = str(Path(path).resolve())
    with db.transaction() as connection:
        run_id = lifecycle.record(
            db, card.id, status, started_at=started, ended_at=times[-1] if times else None,
            exit_reason=stopping[0].message if stopping else None, command=f"imported from {source}", log_path=source,
            env=json.dumps({"imported_from": source, "format": spec}),
        )
        write_chunks(connection, run_id, chunks, {})
        add_divergence_notes(connection, card.id, run_id, events, settings)
    return Imported(run_id, status, sum(len(record.values) for record in records), events)


PROFILE_DETAILS = (
    "flops_torch", "flops_disagreement", "skipped_ops", "flops_error", "cudnn_benchmark", "torch_version",
    "throughput", "throughput_batch",
)


def store_profile(db: Database, card_id: int, run_id: int | None, measured) -> None:
    """Keep an `expdb.profiler.Profile` for a card (and the run it was measured for, if any)."""
    columns = {field: getattr(measured, field) for field in PROFILE_FIELDS}
    details = {field: getattr(measured, field) for field in PROFILE_DETAILS}
    with db.transaction() as connection:
        connection.execute(
            f"INSERT INTO profile (uid, card_id, run_id, created_at, {', '.join(columns)}, details) "
            f"VALUES (?, ?, ?, ?, {', '.join('?' * len(columns))}, ?)",
            (new_uid(), card_id, run_id, now(), *columns.values(), json.dumps(details)),
        )
