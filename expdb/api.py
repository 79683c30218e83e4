"""The Python API for your own training scripts: `with expdb.start("name", lr=4e-3) as run: run.log(...)`."""

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
from .values import Value, format_value, same


def ensure_card(db: Database, name: str, params: dict[str, Value]) -> cards.Card:
    """The card `name` with these parameters: created if missing, completed while it has never run."""
    try:
        card = cards.get_card(db, name)
    except ExpdbError:
        return cards.create_card(db, name, params)
    changed = {key: value for key, value in params.items() if not same(card.params.get(key), value)}
    if not changed:
        return card
    if cards.run_count(db, card):
        key, value = next(iter(changed.items()))
        raise ExpdbError(
            f"{name} has run with {key}={format_value(card.params.get(key))}, not {format_value(value)}; "
            "its results belong to its parameters: start a new card name for new parameters"
        )
    return cards.set_params(db, name, changed)


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
    """Record a run of the card `name` (created with `params` if it does not exist).

    `diverge`: divergence thresholds of this run over the card's, e.g. {"rise_factor": 1.5}
    (the keys of `expdb.divergence.DEFAULTS`, as `--diverge KEY=VALUE` on the command line).

    The run ends `finished` when the block ends, `diverged` when expdb stopped it (the
    exception it raised to stop your loop is absorbed), `interrupted` on Ctrl-C or SIGTERM,
    `failed` on any other exception, which propagates.
    """
    check_on_diverge(on_diverge)
    settings = check_settings(diverge or {}, "expdb.start(diverge=...)")
    validate_name(name)
    database = Database(db, create=True)
    try:
        ensure_card(database, name, params)
        lifecycle.reap(database)  # a run of the card whose process died would seem to run still
        run = begin_run(
            database, name, device=choose_device("auto"), seed=seed, resume=resume, on_diverge=on_diverge, diverge=settings
        )
        with sigterm_as_interrupt():
            try:
                yield run
            except RunStopped:
                run.end(RunStatus.DIVERGED)
            except BaseException as error:
                run.end_from_exception(error)
                raise
            else:
                run.end(RunStatus.FINISHED)
    finally:
        database.close()
