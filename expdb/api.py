"""The Python API for your own training scripts: `with expdb.start("name", lr=4e-3) as run: run.log(...)`.

A card's parameters are fixed once it has run. A run started with other values for them is
recorded on a fork, `NAME.2` (then `NAME.3`, ...), whose parent is `NAME`; a later start with
the same values finds that fork again. The framework integrations start their runs here too.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from . import cards, lifecycle
from .cards import validate_name
from .db import Database
from .devices import choose_device
from .divergence import check_settings
from .errors import ExpdbError
from .lifecycle import RunStatus
from .runs import Run, RunStopped, begin_run, check_on_diverge, sigterm_as_interrupt
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
) -> Run:
    """Start recording a run of the card `name` (or of its fork, see the module) in a database of its own:
    end it with `end`. `diverge`: as `start`'s."""
    check_on_diverge(on_diverge)
    settings = check_settings(diverge or {}, "expdb.start(diverge=...)")
    validate_name(name)
    database = Database(db, create=True)
    try:
        card = ensure_card(database, name, params)
        lifecycle.reap(database)  # a run of the card whose process died would seem to run still
        run = begin_run(
            database, card.name, device=choose_device("auto"), seed=seed, resume=resume, on_diverge=on_diverge, diverge=settings
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
    **params: Value,
) -> Iterator[Run]:
    """Record a run of the card `name` (created with `params` if it does not exist; forked as `NAME.2` when
    it has run with other values of them).

    `diverge`: divergence thresholds of this run over the card's, e.g. {"rise_factor": 1.5}
    (the keys of `expdb.divergence.DEFAULTS`, as `--diverge KEY=VALUE` on the command line).

    The run ends `finished` when the block ends, `diverged` when expdb stopped it (the
    exception it raised to stop your loop is absorbed), `interrupted` on Ctrl-C or SIGTERM,
    `failed` on any other exception, which propagates.
    """
    run = begin(name, params, db=db, resume=resume, on_diverge=on_diverge, seed=seed, diverge=diverge)
    with sigterm_as_interrupt():
        try:
            yield run
        except RunStopped as stopped:
            end(run, stopped)
        except BaseException as error:
            end(run, error)
            raise
        else:
            end(run, None)
