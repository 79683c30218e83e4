"""Many processes, one run: which process of a distributed launch this is, and the run object of the others.

`torchrun --nproc_per_node 4 train.py` starts four processes that each call `expdb.start`.
Rank 0 owns the run. The other ranks get an `IdleRun`, whose calls do nothing (a `log` costs
a method call), or, with `expdb.start(..., all_ranks=True)`, they attach to rank 0's run and
add their curves to it as `rankN/KEY`. Cheap to import: the ranks that record nothing never
open the database.
"""

import os

from .errors import ExpdbError
from .values import Value

# In the order they are trusted: torchrun's global rank, Slurm's task (srun), then torchrun's rank on this node.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK")


def process_rank() -> int:
    """This process's rank in a distributed launch, 0 outside of one."""
    for variable in RANK_VARIABLES:
        text = os.environ.get(variable, "").strip()
        if text:
            try:
                return int(text)
            except ValueError:
                raise ExpdbError(f"{variable}={text!r} is not a rank (a whole number); unset it or fix the launcher") from None
    return 0


def world_size() -> int:
    for variable in ("WORLD_SIZE", "SLURM_NTASKS"):
        text = os.environ.get(variable, "").strip()
        if text.isdigit():
            return int(text)
    return 1


def launch_group() -> str | None:
    """What the processes of one launch share, and other launches do not: how rank N finds rank 0's run."""
    torchrun = [os.environ.get(name) for name in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")]
    if any(torchrun):
        return "torchrun:" + ":".join(part or "" for part in torchrun)
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm:{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '')}"
    return None


def _ignore(*args, **kwargs) -> None:
    """What IdleRun.log does: nothing, as cheaply as Python calls a function."""


class IdleRun:
    """The run of a rank other than 0: every call does nothing, at the cost of a call.

    It has the attributes a training loop reads (params, device, seed, resume, should_stop), so
    that the same code runs on every rank. Rank 0 decides when training stops: a loop that stops
    on `should_stop` must share rank 0's decision itself (a broadcast), or the ranks part ways.
    """

    __slots__ = ("name", "params", "device", "seed", "resume", "rank", "checkpoint_path", "id")

    def __init__(self, name: str, params: dict[str, Value], device: str | None, seed: int | None, resume: bool, rank: int):
        self.name, self.params, self.device = name, dict(params), device
        self.seed, self.resume, self.rank = seed, resume, rank
        self.checkpoint_path = None  # rank 0 writes the checkpoint
        self.id = None  # no run of its own

    # A plain function, taking anything: no bound method to make and no arguments to bind (half the cost).
    log = staticmethod(_ignore)

    def summary(self, **metrics) -> None:
        pass

    def note(self, text, step=None) -> None:
        pass

    def profile(self, model, inputs, **options) -> None:
        pass

    def write_log(self, line) -> None:
        pass

    def raise_if_stopped(self) -> None:
        pass

    @property
    def should_stop(self) -> bool:
        return False
