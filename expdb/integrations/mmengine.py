"""An MMEngine vis backend, registered in MMEngine's VISBACKENDS, so that a config names it:

    custom_imports = dict(imports=["expdb.integrations.mmengine"], allow_failed_imports=False)
    visualizer = dict(type="DetLocalVisualizer",
                      vis_backends=[dict(type="LocalVisBackend"), dict(type="ExpdbVisBackend", card="rtmdet_s")])

- the card is `card`, else the config file's name (`rtmdet_s` for configs/rtmdet_s.py); its parameters are
  `params` and the config values named by `config_params` (dotted: "optim_wrapper.optimizer.lr");
- training scalars are curves at the global iteration, with the epoch (1 during the first, as MMEngine
  prints it); validation scalars are curves at the iteration they followed, and their last values the run's
  final metrics;
- the run ends finished when the runner closes its visualizer (after training), failed when an error out
  of training ends the script.

Only rank 0 records. Needs the `mmengine` extra: pip install "expdb[mmengine]".
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmengine.dist import is_main_process
from mmengine.logging import MessageHub
from mmengine.registry import VISBACKENDS
from mmengine.visualization.vis_backend import BaseVisBackend, force_init_env

from . import Recorder
from expdb.ranks import process_rank
from expdb.errors import ExpdbError
from expdb.runs import Run

# What MMEngine's LoggerHook adds to every validation tag besides the metrics: the timing of the interval.
NOT_RESULTS = ("time", "data_time", "memory")
_MISSING = object()


def config_value(config: Any, dotted: str) -> Any:
    """The value at "optim_wrapper.optimizer.lr" in an MMEngine Config; refused, naming the key, if absent."""
    value = config
    for part in dotted.split("."):
        value = value.get(part, _MISSING) if hasattr(value, "get") else _MISSING
        if value is _MISSING:
            raise ExpdbError(
                f"config_params: the config has no {dotted!r}; name keys as dotted paths, e.g. optim_wrapper.optimizer.lr"
            )
    return value


@VISBACKENDS.register_module()
class ExpdbVisBackend(BaseVisBackend):
    """Records an MMEngine runner's scalars as a run of the expdb card `card`.

    db: the database (default: `EXPDB_DB`, else ./experiments.db); on_diverge: "stop" (add_scalars raises
    expdb.RunStopped, which stops training and ends the run diverged) or "note"; diverge: divergence
    thresholds over the card's, as `expdb.start(diverge=...)`'s.
    """

    def __init__(
        self,
        save_dir: str | None = None,
        card: str | None = None,
        *,
        db: str | None = None,
        on_diverge: str = "stop",
        diverge: dict[str, float] | None = None,
        params: dict | None = None,
        config_params: Sequence[str] = (),
    ):
        super().__init__(save_dir)  # type: ignore[arg-type]  # MMEngine passes its vis_data folder, or None
        self._card, self._db, self._on_diverge, self._params = card, db, on_diverge, dict(params or {})
        self._diverge = diverge
        self._config_params = tuple(config_params)
        self._recorder: Recorder | None = None
        # Rank 0 by the launcher's environment and by MMEngine (the Runner initialises distributed training first).
        self._rank_zero = process_rank() == 0 and is_main_process()
        if card is not None:
            self._recorder = Recorder(card, db=db, on_diverge=on_diverge, params=self._params, diverge=diverge)

    def _init_env(self) -> None:
        """Nothing to prepare: the run begins with the first scalars."""

    @property  # type: ignore[misc]  # MMEngine's own backends decorate it so
    @force_init_env
    def experiment(self) -> Run | None:
        """The run under way, None before it begins and after it ends."""
        return self._recorder.run if self._recorder is not None else None

    def _started(self) -> Recorder:
        if self._recorder is None:
            raise ExpdbError(
                "ExpdbVisBackend needs a card: dict(type='ExpdbVisBackend', card='NAME'), or a config file to name it"
            )
        return self._recorder

    @force_init_env
    def add_config(self, config, **kwargs) -> None:
        """The runner's config, as training starts: it names the card unless `card` did, and gives `config_params`."""
        if not self._rank_zero:
            return
        params = {key: config_value(config, key) for key in self._config_params}
        if self._recorder is None and getattr(config, "filename", None):
            self._recorder = Recorder(
                Path(config.filename).stem, db=self._db, on_diverge=self._on_diverge, params=self._params, diverge=self._diverge
            )
        recorder = self._started()
        recorder.add_params(params)
        recorder.started()

    @force_init_env
    def add_scalar(self, name: str, value, step: int = 0, **kwargs) -> None:
        self.add_scalars({name: value}, step)

    @force_init_env
    def add_scalars(self, scalar_dict: dict, step: int = 0, file_path: str | None = None, **kwargs) -> None:
        if not self._rank_zero:
            return
        recorder = self._started()
        # LoggerHook's tags hold numbers (it turns tensors and arrays into them) and the axes.
        scalars = dict(scalar_dict)
        iteration, epoch = scalars.pop("iter", None), scalars.pop("epoch", None)
        scalars.pop("step", None)
        if iteration is not None:  # training scalars carry their iteration
            recorder.log(iteration, epoch, scalars)
            return
        # Validation: at the iteration it followed, and the epoch it closed (MMEngine's runtime info).
        hub = MessageHub.get_current_instance()
        iteration, epoch = hub.get_info("iter"), hub.get_info("epoch")
        recorder.log(step if iteration is None else iteration + 1, None if epoch is None else epoch + 1, scalars)
        recorder.summary({key: value for key, value in scalars.items() if key not in NOT_RESULTS})

    def close(self) -> None:
        """The runner is done (MMEngine's LoggerHook closes the visualizer after training): the run finishes."""
        if self._recorder is not None and self._rank_zero:
            self._recorder.end(None)
