"""Framework integrations: a Lightning logger (`lightning`), a HuggingFace Trainer callback (`hf`) and an
MMEngine vis backend (`mmengine`), each an optional extra that imports its framework. This module imports
none: it is what they share, a run started on the first thing worth keeping and only on rank 0.

Hyperparameters given before the run starts are the card's parameters. A card's parameters are fixed once
it has run: a run with other values is recorded on a fork (`NAME.2`, see `expdb.api`), and values that differ
from those of the run under way are refused (`ExpdbError`). An error that ends the script while a run is
under way ends it failed (interrupted for Ctrl-C) through `sys.excepthook`: not every framework reports one.
"""

import math
import re
import sys
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from expdb import api
from expdb.cards import typed_like, validate_name
from expdb.divergence import check_settings
from expdb.ranks import process_rank
from expdb.errors import ExpdbError
from expdb.lifecycle import RunStatus
from expdb.runs import Run, check_on_diverge
from expdb.values import KEY_PATTERN, Value, format_value, same

NAMESPACES = ("Namespace", "SimpleNamespace")  # argparse's, types': hyperparameters as attributes
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_.\-]")


def param_key(key: str) -> str:
    """A framework's hyperparameter name as an expdb parameter key: other characters become `_`."""
    cleaned = _NOT_IN_KEY.sub("_", key)
    return cleaned if KEY_PATTERN.fullmatch(cleaned) else f"_{cleaned}"


def param_value(value: Any) -> Value | None:
    """A hyperparameter as a typed value: numbers (numpy's, one-element tensors' too), strings, lists of them;
    None is left out; anything else is kept as its text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a 0-d tensor or array
        return param_value(value.item())
    if isinstance(value, (list, tuple)):
        items = [param_value(item) for item in value]
        if all(isinstance(item, (bool, int, float, str)) for item in items):
            return items
    return str(value)


def hyperparameters(raw: Mapping | None, prefix: str = "") -> dict[str, Value]:
    """A framework's hyperparameters as expdb parameters: nested mappings (and namespaces) flattened with dots
    (`optimizer.lr`)."""
    flat: dict[str, Value] = {}
    for key, value in (raw or {}).items():
        name = f"{prefix}{key}"
        if type(value).__name__ in NAMESPACES and hasattr(value, "__dict__"):
            value = vars(value)
        if isinstance(value, Mapping):
            flat.update(hyperparameters(value, f"{name}."))
        elif (converted := param_value(value)) is not None:
            flat[param_key(name)] = converted
    return flat


class Recorder:
    """The run of a card that a framework reports to: begun on the first hyperparameters or metrics, ended with
    the status the framework's ending gives; reporting again after it ended begins another run of the card."""

    def __init__(
        self, card: str, *, db: str | None, on_diverge: str, params: Mapping | None, diverge: Mapping[str, float] | None = None
    ):
        self.card = validate_name(card)
        self.db = db
        self.on_diverge = check_on_diverge(on_diverge)
        self.diverge = check_settings(dict(diverge or {}), "diverge=")
        self.params = hyperparameters(params)
        self.run: Run | None = None
        self._previous_hook = sys.excepthook
        # Rank 0 by the launcher's environment, read once (the integrations also ask their framework, per call).
        self.rank_zero = process_rank() == 0

    def add_params(self, params: Mapping | None) -> None:
        """Hyperparameters: the card's before the run begins; refused if they differ from the running run's card."""
        given = hyperparameters(params)
        if self.run is None:
            self.params.update(given)
            return
        card = self.run.card
        for key, value in typed_like(card, given).items():
            if not same(card.params.get(key), value):
                now = format_value(card.params[key]) if key in card.params else "no value"
                raise ExpdbError(
                    f"{key}={format_value(value)} given while run {self.run.id} of {card.name} runs with {key}={now}: "
                    "a card's parameters are fixed once it runs; give hyperparameters before training starts, "
                    "and a run with other values is recorded on a fork of the card"
                )

    def started(self) -> Run:
        if self.run is None:
            run = api.begin(self.card, self.params, db=self.db, on_diverge=self.on_diverge, diverge=self.diverge)
            assert isinstance(run, Run)  # an integration records on rank 0 only (rank_zero)
            self.run = run
            self._previous_hook, sys.excepthook = sys.excepthook, self._uncaught
        return self.run

    def _uncaught(self, kind, error, traceback) -> None:
        """The script ends on an error out of training, which the framework does not report: the run ends
        failed (interrupted for Ctrl-C) with it."""
        previous = self._previous_hook
        self.end(error)
        previous(kind, error, traceback)

    def _release(self) -> None:
        """The run is no longer this recorder's to end."""
        self.run = None
        if sys.excepthook == self._uncaught:
            sys.excepthook = self._previous_hook

    def log(self, step: int, epoch: float | None, scalars: dict[str, float]) -> None:
        """One point of each curve; raises RunStopped once the run diverged (and stops on it)."""
        run = self.run if self.run is not None else self.started()
        run.log(step, epoch=epoch, **scalars)  # type: ignore[arg-type]  # a scalar named samples is that axis, as in Run.log

    def summary(self, metrics: dict[str, float]) -> None:
        """Final metrics of the run under way (begun if need be); a NaN or inf is no result and is left out."""
        self.started().summary(**{key: value for key, value in metrics.items() if math.isfinite(value)})

    def end(self, error: BaseException | None) -> None:
        """End the run under way, if any, by how training ended (None: finished)."""
        run = self.run
        if run is not None:
            self._release()
            api.end(run, error)

    def interrupt(self, reason: str) -> None:
        """End the run under way as interrupted (it can resume): the framework stops to be started again."""
        run = self.run
        if run is not None:
            self._release()
            try:
                run.end(RunStatus.INTERRUPTED, reason)
            finally:
                run.db.close()

