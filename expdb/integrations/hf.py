"""A HuggingFace Trainer callback: `Trainer(..., callbacks=[ExpdbCallback("bert_lr3e-5")])` records training as
a run of the card.

- the training arguments that shape the result (TRAINING_PARAMS, when they differ from TrainingArguments'
  defaults) and any parameters given to the callback become the card's; other values than a run of the card
  had fork it (`NAME.2`);
- the log history is kept as curves at the global step, with the Trainer's fractional epoch (0.25, 0.5, ...);
- each evaluation's metrics (`eval_loss`, `eval_accuracy`, ...) are the run's final metrics;
- the run ends with `on_train_end`; an exception out of `trainer.train()` that ends the script marks it failed
  (interrupted for Ctrl-C), through `sys.excepthook`; `trainer.evaluate()` after training is a second run.

`report_to="expdb"` is not offered: transformers names its reporting callbacks in a fixed table
(`INTEGRATION_TO_CALLBACK`) that has no registration, so it would take patching transformers; pass the
callback instead. Only the world's process zero records. Needs the `hf` extra: pip install "expdb[hf]".
"""

from typing import Any

from transformers import TrainerCallback, TrainingArguments

from . import Recorder
from expdb.runs import Run, RunStopped

# TrainingArguments that change what training produces; the rest (paths, logging, saving) do not.
TRAINING_PARAMS = (
    "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
    "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_steps", "warmup_ratio",
    "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "optim", "label_smoothing_factor",
    "fp16", "bf16",
)

NUMBERS = frozenset((float, int))
# The speed of an evaluation, not a result: curves, not final metrics. The epoch is on every point.
SPEED_SUFFIXES = ("epoch", "_runtime", "_samples_per_second", "_steps_per_second")


def training_params(args: TrainingArguments) -> dict[str, Any]:
    """The TRAINING_PARAMS of `args`, each only where it is not TrainingArguments' default."""
    fields = type(args).__dataclass_fields__
    params = {}
    for name in TRAINING_PARAMS:
        if name in fields and hasattr(args, name):
            value = getattr(args, name)
            value = getattr(value, "value", value)  # enums (lr_scheduler_type, optim) as their names
            default = getattr(fields[name].default, "value", fields[name].default)
            if value != default:
                params[name] = value
    return params


class ExpdbCallback(TrainerCallback):
    """Records a HuggingFace Trainer's training on the expdb card `card` (created if missing).

    db: the database (default: `EXPDB_DB`, else ./experiments.db); on_diverge: "stop" (training stops at the
    next step, the run ends diverged) or "note"; diverge: divergence thresholds over the card's, as
    `expdb.start(diverge=...)`'s; params: more parameters of the card.
    """

    def __init__(
        self,
        card: str,
        *,
        db: str | None = None,
        on_diverge: str = "stop",
        diverge: dict[str, float] | None = None,
        **params: Any,
    ):
        self._recorder = Recorder(card, db=db, on_diverge=on_diverge, params=params, diverge=diverge)
        self._training = False

    @property
    def run(self) -> Run | None:
        """The run under way (`run.note(...)`, `run.summary(...)`), None before it begins and after it ends."""
        return self._recorder.run

    def _begin(self, args: TrainingArguments) -> Run:
        if self._recorder.run is None:
            self._recorder.add_params(training_params(args))
        return self._recorder.started()

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True
        if state.is_world_process_zero and self._recorder.rank_zero:
            self._begin(args)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (logs and state.is_world_process_zero and self._recorder.rank_zero):
            return
        run = self._recorder.run or self._begin(args)
        # Numbers only (a callback may log text); the check of all at once is the cheaper one, every step.
        if NUMBERS.issuperset(map(type, logs.values())):
            scalars = dict(logs)
        else:
            scalars = {key: value for key, value in logs.items() if type(value) in NUMBERS}
        epoch = scalars.pop("epoch", None)
        try:
            run.log(state.global_step, epoch=epoch, **scalars)
        except RunStopped:
            control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not (metrics and state.is_world_process_zero and self._recorder.rank_zero):
            return
        self._begin(args)
        self._recorder.summary({
            key: value for key, value in metrics.items() if type(value) in NUMBERS and not key.endswith(SPEED_SUFFIXES)
        })
        if not self._training:  # trainer.evaluate() on its own: nothing else ends its run
            self._recorder.end(None)

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        if state.is_world_process_zero and self._recorder.rank_zero:
            self._recorder.end(None)
