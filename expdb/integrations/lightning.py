"""A Lightning logger: `Trainer(logger=ExpdbLogger("detr3d_bs8"))` records the fit as a run of the card.

- hyperparameters (`save_hyperparameters()`, nested ones flattened with dots) become the card's parameters,
  with any given to the logger itself; other values than a run of the card had fork it (`NAME.2`);
- every logged metric is a curve, at Lightning's step, with the epoch; its last value is a final metric;
- the LightningModule is profiled (Params, FLOPs, Cost-Time) on its `example_input_array`, when it has one;
- the run ends finished, failed (with the error's last line) or interrupted (Ctrl-C, Slurm's requeue signal);
  `trainer.test` after `trainer.fit` is a second run of the card, which keeps the test metrics.

Only global rank 0 records. Needs the `lightning` extra: pip install "expdb[lightning]".
"""

import sys
from argparse import Namespace
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from . import Recorder
from expdb.errors import ExpdbError
from expdb.runs import Run

DEFAULT_PROFILE_BUDGET_S = 1.0


class ExpdbLogger(Logger):
    """Records a Lightning Trainer's run on the expdb card `card` (created if missing).

    db: the database (default: `EXPDB_DB`, else ./experiments.db); on_diverge: "stop" (log_metrics raises
    expdb.RunStopped, which stops training and ends the run diverged) or "note"; diverge: divergence
    thresholds over the card's, as `expdb.start(diverge=...)`'s; profile_budget_s: seconds of latency
    timing for the profile (0: no profile); params: more parameters of the card.
    """

    def __init__(
        self,
        card: str,
        *,
        db: str | None = None,
        on_diverge: str = "stop",
        diverge: dict[str, float] | None = None,
        profile_budget_s: float = DEFAULT_PROFILE_BUDGET_S,
        **params: Any,
    ):
        super().__init__()
        self._recorder = Recorder(card, db=db, on_diverge=on_diverge, params=params, diverge=diverge)
        self._profile_budget_s = profile_budget_s
        self._profiled = False
        self._last: dict[str, float] = {}
        self._calls = 0

    @property
    def name(self) -> str:
        return self._recorder.card

    @property
    def version(self) -> int | None:
        """The id of the run under way."""
        return self.run.id if self.run is not None else None

    @property
    def run(self) -> Run | None:
        """The run under way (`run.note(...)`, `run.summary(...)`), None before it begins and after it ends."""
        return self._recorder.run

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if self._recorder.rank_zero:
            self._recorder.add_params(vars(params) if isinstance(params, Namespace) else params)
            self._recorder.started()

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Lightning's call as training starts: the run begins, and the model is profiled once."""
        if not self._recorder.rank_zero:
            return
        run = self._recorder.started()
        inputs = input_array if input_array is not None else getattr(model, "example_input_array", None)
        if inputs is None or self._profiled or self._profile_budget_s <= 0:
            return
        self._profiled = True
        device = next((str(parameter.device) for parameter in model.parameters()), "cpu")
        try:
            run.profile(model, inputs, device=device, time_budget_s=self._profile_budget_s)
        except ExpdbError as error:  # a profile that cannot be measured never fails training
            run.note(f"not profiled: {error}")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if rank_zero_only.rank or not self._recorder.rank_zero:  # rank_zero_only's test, inline: it is every step's
            return
        self._calls += 1
        scalars = dict(metrics)
        epoch = scalars.pop("epoch", None)
        self._last.update(scalars)
        self._recorder.log(self._calls - 1 if step is None else step, epoch, scalars)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning's end of fit/validate/test: "success", "failed" (inside its handler of the error, which
        says whether it was Ctrl-C) or "finished" (Slurm's requeue signal: the job comes back)."""
        if self._recorder.run is None:
            return
        self._recorder.summary(self._last)
        self._last = {}
        if status == "finished":
            self._recorder.interrupt("Slurm's requeue signal (the job is requeued)")
        elif status == "failed":
            self._recorder.end(sys.exc_info()[1] or RuntimeError("Lightning reported that training failed"))
        else:
            self._recorder.end(None)
