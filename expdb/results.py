"""Recording results that exist already: a run's final metrics and profile, or a whole training log."""

import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import lifecycle
from .cards import PROFILE_FIELDS, Card, card_exists, create_card, get_card, validate_name
from .db import Database, new_uid, now
from .divergence import DEFAULTS, Divergence, DivergenceDetector, is_loss_key
from .errors import ExpdbError
from .importers import ReadRun, describe, folder_params, is_validation_key, read_runs
from .lifecycle import BY_HAND, IMPORTED, RunStatus
from .logparse import Record
from .metrics import PROFILE_COLUMNS, MetricDef, load_definitions, parse_quantity
from .runs import add_divergence_notes
from .series import build_chunks, read_curve, write_chunks
from .values import format_value, same


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
    origin: str | None = None,
    source: str | None = None,
) -> int:
    """An ended run of `card_name` with its final metrics; `params`, `flops` and `cost_time` go to its profile,
    with `flops_counter` saying who counted the FLOPs, dated `recorded_at` (default: now). `origin` and
    `source`: see `lifecycle.record`.

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
        run_id = lifecycle.record(
            db, card.id, status, started_at=started_at, ended_at=ended_at, exit_reason=exit_reason, origin=origin, source=source
        )
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
class ImportedRun:
    """One run of an import: written (`run_id`), or found imported before (`already`)."""

    card: str
    points: int  # as its curves hold them: one a step
    run_id: int | None = None
    status: str = ""
    divergences: list[Divergence] = field(default_factory=list)
    already: tuple[str, int] | None = None  # (card, run id) it was imported as before: nothing written
    written_again: int = 0  # points read at a step its curve had already (a resumed run): the later kept


@dataclass
class Imported:
    runs: list[ImportedRun]
    account: list[str]  # what was read and skipped, for the user


_CARD_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _card_name_for(base: str, folder: str, several: bool) -> str:
    if not several or not folder:
        return base
    return f"{base}_{_CARD_UNSAFE.sub('_', folder).strip('_')}"


def default_card_name(location: str) -> str:
    """The card an import goes to when no --name is given: the file's or folder's name, made a valid card name
    (a trainer_state.json's: its output_dir's, above any checkpoint-N)."""
    path = Path(location).resolve()
    if path.name == "trainer_state.json":
        path = path.parent
    if path.name.startswith("checkpoint-"):
        path = path.parent
    name = path.name
    for suffix in (".log.json", ".json", ".log", ".txt"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return _CARD_UNSAFE.sub("_", name).strip("_") or "imported"


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
    db: Database,
    path: str,
    spec: str,
    card_name: str | None = None,
    parent: str | None = None,
    params: str | None = None,
    diverge: dict[str, float] | None = None,
) -> Imported:
    """Runs that already happened, from a log, a work_dir or TensorBoard event folders (`expdb.importers`):
    their curves, summary metrics and divergence notes.

    Each run goes to the card `card_name` (default: the file's name), created (forked from `parent`) if it
    does not exist; several TensorBoard event folders go to a card each, `NAME_FOLDER`, with the
    parameters that `params` ("lr{lr}_bs{batch}") reads from the folder's name. A run whose file was
    imported before is not imported again. A run is `diverged` if a divergence stops it, else `finished`;
    trends are only noted. `diverge`: divergence settings over the card's. All or nothing: one transaction.
    """
    if parent is not None:
        get_card(db, parent)  # a --from that names no card is said whatever the file holds
    reading = read_runs(spec, path)
    base = card_name if card_name is not None else default_card_name(path)
    validate_name(base)
    folders = {run.folder for run in reading.runs}
    several = len(folders) > 1
    plans = []
    for run in reading.runs:
        name = _card_name_for(base, run.folder, several)
        validate_name(name)
        given = folder_params(params, run.folder or run.source) if params else {}
        plans.append((run, name, given))
    definitions = load_definitions(db)
    imported = []
    with db.transaction() as connection:
        for run, name, given in plans:
            before = db.query_one(
                "SELECT card.name, run.id FROM run JOIN card ON card.id = run.card_id WHERE run.source_hash = ? ORDER BY run.id",
                (run.source_hash,),
            )
            if before is not None:
                points = sum(len(record.values) for record in run.records)  # a stream is not read again
                imported.append(ImportedRun(name, points, already=(before[0], before[1])))
                continue
            card_for = partial(_card_for_import, db, name, parent, given, spec)
            written = _write_imported(db, connection, card_for, name, run, spec, definitions, diverge or {})
            if written is None:
                reading.unread.append(f"{run.folder or run.source} (no scalar in its event files)")
            else:
                imported.append(written)
        if not imported:
            raise ExpdbError(f"no scalar in the TensorBoard event files under {path}")
    return Imported(imported, describe(reading, sum(run.points + run.written_again for run in imported)))


def _card_for_import(db: Database, name: str, parent: str | None, params: dict, spec: str) -> Card:
    """The card an import writes to, created if need be."""
    if not card_exists(db, name):
        return create_card(db, name, params, parent=parent)
    if parent is not None:
        raise ExpdbError(f"{name} exists already: --from only applies to a card the import creates")
    card = get_card(db, name)
    _check_importable(card, spec)
    differing = [key for key, value in params.items() if key not in card.params or not same(card.params[key], value)]
    if differing:
        shown = ", ".join(f"{key}={format_value(params[key])}" for key in differing)
        raise ExpdbError(
            f"{name} exists with other parameters than the folder gives ({shown}): import into a new card with --name"
        )
    return card


IMPORT_BLOCK = 20_000  # records checked for divergence and packed at a time: one chunk per curve each


def _write_imported(
    db: Database, connection, card_for: Callable[[], Card], name: str, run: ReadRun, spec: str, definitions, diverge: dict
) -> ImportedRun | None:
    """Store one run, read block by block; None (nothing written, no card made) when it holds no point."""
    blocks_read = run.blocks(IMPORT_BLOCK)
    first_block = next(blocks_read, None)
    if first_block is None:
        return None
    card = card_for()
    steps = card.params.get("steps")
    settings = {**DEFAULTS, **card.diverge, **diverge}
    detector = DivergenceDetector(steps if type(steps) is int else None, **settings)
    started, last = run.started_at, None
    events: list[Divergence] = []
    packed = []
    summary = Summaries(definitions)
    points_read = 0
    for records in itertools.chain([first_block], blocks_read):
        times = [record.timestamp for record in records if record.timestamp is not None]
        if times:
            last = max(times) if last is None else max(last, *times)
            if started is None:
                started = times[0]
        origin = started if started is not None else 0.0
        points: list[tuple[int, float | None, int | None, float, dict[str, float]]] = [
            (
                record.step,
                record.epochs_done if record.epochs_done is not None else record.epoch,
                None,
                record.timestamp - origin if record.timestamp is not None else 0.0,
                record.values,
            )
            for record in records
        ]
        chunks = build_chunks(points)
        events += detector.feed({key: chunk.in_step_order() for key, chunk in chunks.items()})
        packed.append(chunks)
        summary.add(records)
        points_read += sum(len(record.values) for record in records)
    events += detector.trend_events(final=True)
    stopping = [event for event in events if event.stops]
    status = RunStatus.DIVERGED if stopping else RunStatus.FINISHED
    run_id = lifecycle.record(
        db, card.id, status, started_at=started, ended_at=last,
        exit_reason=stopping[0].message if stopping else None, command=f"imported from {run.source}", log_path=run.source,
        env=json.dumps({"imported_from": run.source, "format": spec, "launch": run.launch}),
        origin=IMPORTED, source=run.source, source_hash=run.source_hash,
    )
    series_ids: dict[str, int] = {}
    for chunks in packed:
        write_chunks(connection, run_id, chunks, series_ids)
    connection.executemany(
        "INSERT INTO metric (run_id, key, value, step) VALUES (?, ?, ?, ?)",
        [(run_id, key, value, step) for key, (value, step) in summary.metrics().items()],
    )
    add_divergence_notes(connection, card.id, run_id, events, settings)
    # A curve holds one value a step (the later written): counted as stored, so that none is lost unsaid.
    kept = sum(len(read_curve(db, run_id, key, axes=()).steps) for key in series_ids)
    return ImportedRun(name, kept, run_id, status, events, written_again=points_read - kept)


class Summaries:
    """The summary metrics of an imported run, gathered block by block: each curve's last finite value with
    its step, and for validation and test curves also the best, as `KEY.best`.

    Best is the direction of the metric's definition (`expdb metric define`), else lower for a loss
    or an error (`loss`, `err` in its name) and higher for anything else (accuracy, mAP, IoU).
    """

    def __init__(self, definitions: dict[str, MetricDef]):
        self.definitions = definitions
        self.last: dict[str, tuple[float, int]] = {}
        self.best: dict[str, tuple[float, int]] = {}
        self.facts: dict[str, tuple[bool, bool]] = {}  # key -> (a validation curve, lower is better)

    def add(self, records: list[Record]) -> None:
        last, best, facts = self.last, self.best, self.facts
        for record in records:
            evaluation = record.mode != "train"
            for key, value in record.values.items():
                if not math.isfinite(value):
                    continue
                last[key] = (value, record.step)
                known = facts.get(key)
                if known is None:
                    known = facts[key] = (is_validation_key(key), _lower_is_better(key, self.definitions))
                if not (evaluation or known[0]):
                    continue
                held = best.get(key)
                if held is None or (value < held[0] if known[1] else value > held[0]):
                    best[key] = (value, record.step)

    def metrics(self) -> dict[str, tuple[float, int]]:
        return {**self.last, **{f"{key}.best": found for key, found in self.best.items()}}


def _lower_is_better(key: str, definitions: dict[str, MetricDef]) -> bool:
    definition = definitions.get(key)
    if definition is not None and definition.direction is not None:
        return definition.direction == "lower"
    return is_loss_key(key) or "err" in key.lower() or "loss" in key.lower()


PROFILE_DETAILS = (
    "flops_torch", "flops_disagreement", "skipped_ops", "flops_error", "cudnn_benchmark", "torch_version",
    "throughput", "throughput_batch", "cudnn_deterministic", "tf32_matmul", "tf32_cudnn", "float32_matmul_precision",
    "channels_last", "timing_s",
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


def record_by_hand(
    db: Database, card_name: str, typed: dict[str, str], source: str, parent: str | None = None
) -> tuple[int, dict[str, float]]:
    """A run that happened elsewhere, its final metrics typed as a table prints them (`--top1 81.8
    --params 86.6M --flops 17.6G --cost_time 34.12ms`; see `expdb.metrics.parse_quantity`).

    The run is marked recorded by hand, with `source` (a paper's table, a colleague); it carries no
    host, git commit or device of this machine. The card is created (forked from `parent`) if it does
    not exist. Returns the run's id and the values stored.
    """
    if not typed:
        raise ExpdbError("nothing to record: give the final metrics as --KEY VALUE, e.g. --top1 81.8 --params 86.6M")
    if not source.strip():
        raise ExpdbError('--source is empty: say where the numbers come from, e.g. --source "DeiT, Table 1"')
    definitions = load_definitions(db)
    values = {key: parse_quantity(text, key, definitions.get(key)) for key, text in typed.items()}
    validate_name(card_name)
    with db.transaction():
        if card_exists(db, card_name):
            if parent is not None:
                raise ExpdbError(f"{card_name} exists already: --from only applies to a card that `record` creates")
        else:
            create_card(db, card_name, {}, parent=parent)
        run_id = record_run(db, card_name, RunStatus.FINISHED, values, origin=BY_HAND, source=source.strip())
    return run_id, values
