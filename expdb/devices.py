"""The device a run trains on, or a model is measured on: --device auto, cpu or cuda.

Everyday commands never import torch: these checks ask torch only once something has
imported it (a runner), or import it inside the one function that measures on a device.
"""

import os
import sys

from .errors import ExpdbError

DEVICES = ("auto", "cpu", "cuda")


def check_device(requested: str) -> str:
    """--device as given, refused unless it is auto, cpu or cuda."""
    if requested not in DEVICES:
        raise ExpdbError(f"unknown --device {requested!r}; use one of: {', '.join(DEVICES)}")
    return requested


def choose_device(requested: str) -> str:
    """"cpu" or "cuda" for --device; `auto`: CUDA when torch sees a GPU. Asks torch only if it is imported already."""
    torch = sys.modules.get("torch")
    available = torch is not None and torch.cuda.is_available()
    if check_device(requested) == "cuda" and not available:
        raise ExpdbError("--device cuda: no CUDA GPU is visible here; use --device cpu (or auto)")
    if requested == "auto":
        return "cuda" if available else "cpu"
    return requested


def torch_device(device: str):
    """The torch.device to measure a model on: cpu, cuda or cuda:N, one that this machine has."""
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ExpdbError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ExpdbError(f"device {device!r} is not supported for profiling; use cpu, cuda or cuda:N")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ExpdbError(f"device {device!r}: no CUDA GPU is available here (torch {torch.__version__}); use device cpu")
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ExpdbError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA GPU(s) here")
        resolved = torch.device("cuda", index)
    return resolved


# Where the launchers put a process's rank: torchrun (RANK), srun (SLURM_PROCID); a local launcher
# that sets only LOCAL_RANK (Lightning's) still tells a rank 0 from the others on a node.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK")


def process_rank() -> int:
    """This process's rank in a distributed job, from the first of RANK_VARIABLES set to a number; 0 alone."""
    for variable in RANK_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value.isdigit():
            return int(value)
    return 0
