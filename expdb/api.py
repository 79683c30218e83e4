"""The Python API for your own training scripts: `with expdb.start("name", lr=4e-3) as run: run.log(...)`.

A card's parameters are fixed once it has run. A run started with other values for them is
recorded on a fork, `NAME.2` (then `NAME.3`, ...), whose parent is `NAME`; a later start with
the same values finds that fork again. The framework integrations start their runs here too.
"""

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from . import cards, interrupts, lifecycle
from .cards import validate_name
from .db import Database
from .devices import device_in_use
from .divergence import check_settings
from .errors import ExpdbError
from .lifecycle import RunStatus
from .ranks import IdleRun, launch_group, process_rank
from .runs import Run, RunStopped, attach_run, begin_run, check_on_diverge
from .values import Value, format_value


def ensure_card(db: Database, name: str, params: dict[str, Value]) -> cards.Card:
    """The card to record a run of `name` with these parameters: `name`, created if missing and completed while
    it has never run; once it has run, a fork of it with these parameters (`NAME.2`)."""
    try:
        card = cards.get_card(db, name)
    except ExpdbError:
        return cards.create_card(db, name, params)
    params = cards.typed_like(card, params)
    if cards.agrees(card, params):
        return card
    if not cards.run_count(db, card):
        return cards.set_params(db, name, params)
    return cards.fork_for(db, card, params)


def forked_line(card: cards.Card, fork: cards.Card, params: dict[str, Value]) -> str:
    """What a user is told when the run goes to a fork: which values differ, and where the run is."""
    changed = ", ".join(
        f"{key}={format_value(value)} (not {format_value(card.params.get(key))})"
        for key, value in params.items()
        if not cards.agrees(card, {key: value})
    )
    return (
        f"expdb: {card.name} has run with other parameters; this run, with {changed}, is recorded on {fork.name}, forked from it"
    )


def begin(
    name: str,
    params: dict[str, Value],
    *,
    db: str | None = None,
    resume: bool = False,
    on_diverge: str = "stop",
    seed: int | None = None,
    diverge: dict[str, float] | None = None,
    all_ranks: bool = False,
    system_metrics: bool = True,
) -> Run | IdleRun:
    """Start recording a run of the card `name` (or of its fork, see the module) in a database of its own:
    end it with `end`. `diverge`, `all_ranks`, `system_metrics`: as `start`'s.

    Rank 0 of a launch (torchrun, srun) owns the run; another rank gets an IdleRun whose calls do nothing,
    or with `all_ranks` adds its curves to rank 0's run under `rankN/`. Inside `expdb run --cmd`
    (EXPDB_RUN_ID), the script records into that run."""
    check_on_diverge(on_diverge)
    settings = check_settings(diverge or {}, "expdb.start(diverge=...)")
    validate_name(name)
    rank = process_rank()
    if rank != 0 and not all_ranks:
        return IdleRun(name, params, device_in_use(), seed, resume, rank)
    outer = os.environ.get("EXPDB_RUN_ID")
    prefix = f"rank{rank}/" if rank else ""
    database = Database(db, create=True)
    try:
        if outer is not None:
            return attach_run(
                database, name, outer_run(name, outer), key_prefix=prefix, on_diverge=on_diverge, diverge=settings
            )
        if rank:
            return attach_run(database, name, rank_zero_run(database, name), key_prefix=prefix, on_diverge=on_diverge)
        card = ensure_card(database, name, params)
        lifecycle.reap(database)  # a run of the card whose process died would seem to run still
        run = begin_run(
            database, card.name, device=device_in_use(), seed=seed, resume=resume, on_diverge=on_diverge,
            system_metrics=system_metrics, diverge=settings,
        )
    except BaseException:
        database.close()
        raise
    if card.name != name:
        line = forked_line(cards.get_card(database, name), card, params)
        print(line, file=sys.stderr)
        run.write_log(line)
    return run


def end(run: Run, error: BaseException | None) -> RunStatus:
    """End a run from `begin` by how its training ended (`Run.end_from_exception`) and close its database."""
    try:
        return run.end_from_exception(error)
    finally:
        run.db.close()


@contextmanager
def start(
    name: str,
    *,
    db: str | None = None,
    resume: bool = False,
    on_diverge: str = "stop",
    seed: int | None = None,
    diverge: dict[str, float] | None = None,
    all_ranks: bool = False,
    system_metrics: bool = True,
    **params: Value,
) -> Iterator[Run | IdleRun]:
    """Record a run of the card `name` (created with `params` if it does not exist; forked as `NAME.2` when
    it has run with other values of them).

    `diverge`: divergence thresholds of this run over the card's, e.g. {"rise_factor": 1.5}
    (the keys of `expdb.divergence.DEFAULTS`, as `--diverge KEY=VALUE` on the command line).

    The run ends `finished` when the block ends, `diverged` when expdb stopped it (the
    exception it raised to stop your loop is absorbed), `interrupted` on Ctrl-C or SIGTERM,
    `failed` on any other exception, which propagates.

    In a distributed launch (torchrun, srun), rank 0 records the run; the other ranks get an
    `IdleRun` whose calls do nothing, or, with `all_ranks`, add their curves and summary to rank
    0's run as `rankN/KEY`. Inside `expdb run CARD --cmd ...` (EXPDB_RUN_ID is set), the script
    attaches to that run: `expdb run` owns its status, the script adds curves, metrics, profiles.
    `system_metrics`: sample CPU, memory and GPU use as `sys/` curves (see expdb.sysmetrics).
    """
    with interrupts.handled():
        interrupts.hold()  # SIGTERM while the run row is written waits, then ends the run interrupted
        try:
            run = begin(
                name, params, db=db, resume=resume, on_diverge=on_diverge, seed=seed, diverge=diverge, all_ranks=all_ranks,
                system_metrics=system_metrics,
            )
        except BaseException:
            interrupts.release()
            raise
        if not isinstance(run, IdleRun):
            with interrupts.training(run):
                try:
                    interrupts.release()
                    yield run
                except RunStopped as stopped:
                    end(run, stopped)
                except BaseException as error:
                    end(run, error)
                    raise
                else:
                    end(run, None)
            return
        interrupts.release()
    yield run  # another rank's IdleRun: signals are the script's own


def outer_run(name: str, run_id: str) -> int:
    """The run of `expdb run CARD --cmd ...` this script runs inside (EXPDB_RUN_ID), which must be of card `name`."""
    card = os.environ.get("EXPDB_CARD")
    if card is not None and card != name:
        raise ExpdbError(
            f"this script runs inside `expdb run {card}` (run {run_id}), so it records into {card}, "
            f"not {name}: call expdb.start({card!r})"
        )
    try:
        return int(run_id)
    except ValueError:
        raise ExpdbError(f"EXPDB_RUN_ID={run_id!r} is not a run id; it is set by `expdb run --cmd`, unset it") from None


RANK_ZERO_WAIT_S = 300.0  # rank 0 may still be importing torch, or waiting for the database


def rank_zero_run(db: Database, name: str) -> int:
    """The run rank 0 of this launch started for card `name`, waited for."""
    group = launch_group()
    if group is None:
        raise ExpdbError(
            f"rank {process_rank()}: all_ranks=True needs a launcher that says which processes belong together "
            "(torchrun or srun); none is set"
        )
    deadline = time.monotonic() + RANK_ZERO_WAIT_S
    while True:
        for run_id, env in db.query(
            "SELECT run.id, run.env FROM run JOIN card ON card.id = run.card_id WHERE card.name = ? AND run.status = ? "
            "ORDER BY run.id DESC",
            (name, RunStatus.RUNNING),
        ):
            if json.loads(env or "{}").get("launch_group") == group:
                return run_id
        if time.monotonic() > deadline:
            raise ExpdbError(f"rank {process_rank()}: rank 0 started no run of {name} within {RANK_ZERO_WAIT_S:.0f} s")
        time.sleep(0.2)
