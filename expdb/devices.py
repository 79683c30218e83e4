"""The device a run trains on, or a model is measured on: --device auto, cpu, cuda or cuda:N.

Everyday commands never import torch: `check_device` reads the text only. Choosing a
device imports torch (only `expdb run` of a runner and `expdb profile` do), so the answer
never depends on whether a runner happened to import torch first.
"""

import re
import sys
from contextlib import contextmanager

from .errors import ExpdbError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(requested: str) -> str:
    """--device as given, refused unless it is auto, cpu, cuda or cuda:N."""
    if not isinstance(requested, str) or not _DEVICE.fullmatch(requested):
        raise ExpdbError(f"unknown --device {requested!r}; use one of: {', '.join(DEVICES)}")
    return requested


def choose_device(requested: str) -> str:
    """"cpu" or "cuda:N" for --device, a device this machine has; `auto`: CUDA when torch sees a GPU."""
    if check_device(requested) == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "auto":
        if not available:
            return "cpu"
        requested = "cuda"
    if not available:
        raise ExpdbError(f"--device {requested}: no CUDA GPU is visible here; use --device cpu (or auto)")
    _, colon, number = requested.partition(":")
    index = int(number) if colon else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise ExpdbError(f"--device {requested}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    return f"cuda:{index}"


def device_in_use() -> str | None:
    """For a script's own run (expdb.start), whose code picks its device: "cpu" when the script has imported torch
    and torch sees no GPU, so nothing else can train; None (unknown) otherwise, until the run sees the device its
    model or its logged tensors are on (Run.profile, Run.log). A GPU machine's script may well train on the CPU.
    expdb.start does not import torch itself: a script without it would pay a second for nothing."""
    torch = sys.modules.get("torch")
    if torch is None or torch.cuda.is_available():
        return None
    return "cpu"


def device_of(model, inputs) -> str:
    """Where a model is: its first parameter's (or buffer's) device, else its first input tensor's, else the CPU."""
    for tensor in (*model.parameters(), *model.buffers()):
        return str(tensor.device)
    for value in inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else [inputs]:
        if hasattr(value, "device"):
            return str(value.device)
    return "cpu"


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


def device_name(device: str | None) -> str | None:
    """What `device` is: the GPU's model name for cuda[:N], the processor's for cpu; None when unknown."""
    from .runs import cpu_name

    if device is None or device == "auto":
        return None
    if device == "cpu":
        return cpu_name()
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch_device(device))


def bf16_native(device) -> bool:
    """Whether `device` (a torch.device) computes bf16 natively, not by emulation."""
    import torch

    if device.type == "cuda":
        with torch.cuda.device(device):
            try:
                return bool(torch.cuda.is_bf16_supported(including_emulation=False))
            except TypeError:  # torch < 2.4 has no including_emulation and did not count emulation
                return bool(torch.cuda.is_bf16_supported())
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else True  # without the check, autocast's own test decides
    except RuntimeError:
        return True


# What a runner or the profiler may set for the whole process, and what changes a GPU timing.
def torch_settings() -> dict:
    """The process-wide torch settings that change results or timings, as they are now."""
    import torch

    return {
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "deterministic_warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
        "threads": torch.get_num_threads(),
    }


def _apply(settings: dict) -> None:
    import torch

    now = torch_settings()
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = settings["cudnn_deterministic"]
    torch.set_float32_matmul_precision(settings["float32_matmul_precision"])
    torch.backends.cuda.matmul.allow_tf32 = settings["tf32_matmul"]  # after the precision, which also sets it
    torch.backends.cudnn.allow_tf32 = settings["tf32_cudnn"]
    determinism = ("deterministic_algorithms", "deterministic_warn_only")
    # Only when changed: this call imports torch._inductor (~1.6 s of every run on a 2-core machine).
    if any(now[key] != settings[key] for key in determinism):
        torch.use_deterministic_algorithms(settings["deterministic_algorithms"], warn_only=settings["deterministic_warn_only"])
    if now["threads"] != settings["threads"]:
        torch.set_num_threads(settings["threads"])


@contextmanager
def restored_torch_settings():
    """Whatever the body sets process-wide (cudnn flags, TF32, matmul precision, threads) is put back after it.

    Does nothing when torch is not imported: then nothing has set anything yet.
    """
    before = torch_settings() if "torch" in sys.modules else None
    try:
        yield
    finally:
        if before is not None:
            _apply(before)
