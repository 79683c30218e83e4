"""Model complexity: Params, FLOPs and Cost-Time of a model on example inputs.

Conventions (DESIGN.md, "Measurement conventions"):

- Params: fvcore's ``parameter_count`` (tied weights counted once).
- FLOPs: fvcore's ``FlopCountAnalysis``, which counts one fused multiply-add as one
  flop (MACs). Attention is counted by its matrix products through handles registered
  here (fvcore has none for ``aten::scaled_dot_product_attention`` or for the fused
  ``aten::_native_multi_head_attention`` that ``nn.MultiheadAttention`` takes in eval
  mode, and would list them as skipped, counting 0). Operators fvcore does not count
  are listed in ``Profile.skipped_ops``. ``torch.utils.flop_counter.FlopCounterMode``
  (2 per MAC, halved here) cross-checks the figure, and is the fallback when fvcore
  cannot trace the model (``Profile.flops_counter`` says which produced the figure).
  The cross-check compares what both count: fvcore also counts normalisation layers
  (batch norm 1-2 per element, layer/group norm 5) and resampling, torch does not.
- Cost-Time: median forward latency in ms with p10/p90, after warm-up; CUDA events
  on a GPU, ``time.perf_counter`` on CPU with the thread count recorded.

This module imports torch and fvcore; the rest of expdb imports it lazily.
"""

from __future__ import annotations

import math
import numbers
import statistics
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fvcore scripts a loss with torch.jit.script on import
    from fvcore.nn import FlopCountAnalysis, parameter_count
    from fvcore.nn.jit_handles import get_shape

from .devices import torch_device
from .errors import ExpdbError, last_line
from .metrics import PROFILE_BUDGET_S, PROFILE_ITERATIONS, PROFILE_WARMUP
from .runs import cpu_name

__all__ = ["Profile", "inputs_like", "parse_input_shape", "profile"]

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_TIMED_ITERATIONS = 5
DISAGREEMENT_TOLERANCE = 0.01  # relative, between fvcore and torch's count halved
THROUGHPUT_ITERATIONS = 10
THROUGHPUT_WARMUP = 2
INPUT_SHAPE_CHARS = 128  # the profile table's input_shape column


@dataclass
class Profile:
    """What `profile` measured, and how. FLOPs are MACs (one fused multiply-add counts 1)."""

    params_total: int
    params_trainable: int
    flops: float | None  # MACs; None if not countable (see flops_error)
    flops_counter: str | None  # "fvcore" or "torch" (the fallback): who produced `flops`
    flops_torch: float | None  # FlopCounterMode's total / 2, the cross-check
    flops_disagreement: str | None  # one line when fvcore and torch/2 differ by more than 1% on what both count
    skipped_ops: dict[str, int]  # operators the counter did not count: name -> times
    flops_error: str | None  # why FLOPs could not be counted at all
    cost_time_ms: float | None  # median forward latency
    cost_time_p10_ms: float | None
    cost_time_p90_ms: float | None
    batch: int
    input_shape: str  # per-sample shape, "3x224x224", or a description of several inputs
    dtype: str  # fp32, fp16 or bf16 (the last two through torch.autocast)
    device: str  # "cpu (its model name)" or torch.cuda.get_device_name()
    warmup: int
    iterations: int  # timed iterations actually run (<= requested; fewer once the budget is spent)
    threads: int | None  # CPU: torch.get_num_threads() while timing
    cudnn_benchmark: bool | None  # CUDA: torch.backends.cudnn.benchmark while timing
    torch_version: str
    throughput: float | None = None  # samples/s at throughput_batch, if asked
    throughput_batch: int | None = field(default=None)


# --------------------------------------------------------------------------- input shapes


def parse_input_shape(text: str) -> tuple[int, ...]:
    """'3x224x224' -> (3, 224, 224). Also accepts 'X', '×' or ',' between the sizes."""
    cleaned = str(text).strip().strip("()[]").replace("×", "x").replace("X", "x").replace(",", "x")
    parts = [part.strip() for part in cleaned.split("x")]
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        sizes = ()
    if not sizes or any(size <= 0 for size in sizes):
        raise ExpdbError(f"invalid input shape {text!r}: expected positive sizes separated by 'x', e.g. 3x224x224")
    return sizes


def _shape_text(shape) -> str:
    return "x".join(str(int(size)) for size in shape) if len(shape) else "scalar"


def _describe(value: Any, batch: int) -> str:
    if isinstance(value, torch.Tensor):
        if value.dim() and value.shape[0] == batch:
            return _shape_text(value.shape[1:])
        return f"[{_shape_text(value.shape)}]"  # not batched like the first input: its full shape
    text = repr(value)
    return text if len(text) <= 24 else type(value).__name__


def _describe_inputs(args: tuple, kwargs: dict, batch: int) -> str:
    items = [_describe(value, batch) for value in args]
    items += [f"{name}={_describe(value, batch)}" for name, value in kwargs.items()]
    text = ", ".join(items)
    return text if len(text) <= INPUT_SHAPE_CHARS else text[: INPUT_SHAPE_CHARS - 3] + "..."


def _split_inputs(inputs) -> tuple[tuple, dict]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    if isinstance(inputs, dict):
        if not all(isinstance(name, str) for name in inputs):
            raise ExpdbError("dict inputs are keyword arguments of the model: their keys must be strings")
        return (), dict(inputs)
    raise ExpdbError(
        f"inputs must be a tensor, a tuple of tensors/values, or a dict of keyword arguments, not {type(inputs).__name__}"
    )


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to_device(item, device) for item in value)
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    return value


def _rebatch(value: Any, batch: int, new_batch: int) -> Any:
    """Tensors batched like the first input, repeated (and cut) along dim 0 to `new_batch`."""
    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == batch:
        repeats = math.ceil(new_batch / batch)
        return value.repeat(repeats, *([1] * (value.dim() - 1)))[:new_batch]
    return value


def inputs_like(example, *, batch: int | None = None, shape: tuple[int, ...] | None = None):
    """Example inputs (as a model builder returns them) at another batch size and/or per-sample shape.

    `shape` replaces the first tensor input with random values (random integers below the
    example's largest value, for integer tensors) of shape (batch, *shape); `batch`
    repeats every tensor batched like the first input along dim 0. The structure (tensor,
    tuple or dict) is kept.
    """
    args, kwargs = _split_inputs(example)
    first = _first_tensor(args, kwargs)
    if first is None:
        raise ExpdbError("the example inputs hold no tensor, so expdb cannot resize them")
    if batch is not None and batch <= 0:
        raise ExpdbError(f"batch must be a positive integer, not {batch}")
    old_batch = int(first.shape[0]) if first.dim() else 1
    new_batch = batch if batch is not None else old_batch

    def convert(value):
        if value is first and shape is not None:
            size = (new_batch, *shape)
            if value.is_floating_point() or value.is_complex():
                return torch.randn(size, dtype=value.dtype, device=value.device)
            if value.dtype == torch.bool:
                return torch.ones(size, dtype=torch.bool, device=value.device)
            high = max(int(value.max().item()) + 1, 1) if value.numel() else 1
            return torch.randint(0, high, size, dtype=value.dtype, device=value.device)
        if batch is not None:
            return _rebatch(value, old_batch, new_batch)
        return value

    if isinstance(example, torch.Tensor):
        return convert(example)
    if isinstance(example, dict):
        return {name: convert(value) for name, value in example.items()}
    converted = [convert(value) for value in example]
    return converted if isinstance(example, list) else tuple(converted)


# --------------------------------------------------------------------------- errors in one line


def _last_line(error: BaseException) -> str:
    """Of a torch error's several lines the last, which says what went wrong; and short."""
    return last_line(error, lines="last", limit=300)


# --------------------------------------------------------------------------- FLOP handles
#
# fvcore handles take the jit values of an operator's inputs and outputs and return MACs.
# torch handles (FlopCounterMode custom_mapping) take shapes and return FLOPs (2 per MAC).


def _prod(sizes) -> int:
    result = 1
    for size in sizes:
        result *= int(size)
    return result


def _sdpa_macs(q, k, v) -> int:
    """q [..., L, E], k [..., S, E], v [..., S, Ev]: L*S*E (scores) + L*S*Ev (weighted values) per batch x heads.

    Causal or masked attention is counted in full, as torch's counter does.
    """
    if q is None or k is None or v is None or len(q) < 2:
        raise ValueError("scaled_dot_product_attention: input shapes are unknown")
    length, embed = int(q[-2]), int(q[-1])
    source = int(k[-2])
    embed_v = int(v[-1])
    return _prod(q[:-2]) * (length * source * embed + length * source * embed_v)


def _mha_macs(query, key, embed_dim: int) -> int:
    """The fused MultiheadAttention: q/k/v projections, QK^T, AV, output projection.

    With L query and S key tokens of width D: L*D^2 + 2*S*D^2 + 2*L*S*D + L*D^2 per batch
    element, 4*N*D^2 + 2*N^2*D for self-attention over N tokens; heads do not matter.
    """
    if query is None or key is None:
        raise ValueError("_native_multi_head_attention: input shapes are unknown")
    length, source, width = int(query[-2]), int(key[-2]), int(embed_dim)
    per_item = 2 * length * width * width + 2 * source * width * width + 2 * length * source * width
    return _prod(query[:-2]) * per_item


def _encoder_layer_macs(src, embed_dim: int, ffn_weight_1) -> int:
    """The fused TransformerEncoderLayer: self-attention plus the two FFN linears."""
    if src is None or ffn_weight_1 is None:
        raise ValueError("_transformer_encoder_layer_fwd: input shapes are unknown")
    tokens = _prod(src[:-1])
    hidden = int(ffn_weight_1[0])
    return _mha_macs(src, src, embed_dim) + 2 * tokens * int(embed_dim) * hidden


def _fv_sdpa(inputs, outputs):
    return _sdpa_macs(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(inputs[2]))


def _fv_native_mha(inputs, outputs):
    query = get_shape(inputs[0])
    embed_dim = inputs[3].toIValue()
    return _mha_macs(query, get_shape(inputs[1]), embed_dim if embed_dim is not None else query[-1])


def _fv_encoder_layer(inputs, outputs):
    src = get_shape(inputs[0])
    embed_dim = inputs[1].toIValue()
    embed_dim = embed_dim if embed_dim is not None else src[-1]
    # fvcore counts each layer norm as 5 flops per element (with affine); keep that here
    return _encoder_layer_macs(src, embed_dim, get_shape(inputs[14])) + 2 * 5 * _prod(src)


def _fv_baddbmm(inputs, outputs):
    first, second = get_shape(inputs[1]), get_shape(inputs[2])
    if first is None or second is None:
        raise ValueError("baddbmm: input shapes are unknown")
    batch, rows, inner = first
    return int(batch) * int(rows) * int(inner) * int(second[-1])


FVCORE_HANDLES = {
    "aten::scaled_dot_product_attention": _fv_sdpa,
    "aten::_scaled_dot_product_attention_math": _fv_sdpa,
    "aten::_scaled_dot_product_flash_attention": _fv_sdpa,
    "aten::_scaled_dot_product_flash_attention_for_cpu": _fv_sdpa,
    "aten::_scaled_dot_product_efficient_attention": _fv_sdpa,
    "aten::_scaled_dot_product_cudnn_attention": _fv_sdpa,
    "aten::_scaled_dot_product_fused_attention_overrideable": _fv_sdpa,
    "aten::_native_multi_head_attention": _fv_native_mha,
    "aten::_transformer_encoder_layer_fwd": _fv_encoder_layer,
    "aten::baddbmm": _fv_baddbmm,  # torch's counter has it; fvcore would skip it
}


def _torch_sdpa(q, k, v, *args, out_shape=None, **kwargs):
    return 2 * _sdpa_macs(q, k, v)


def _torch_native_mha(query, key, value, embed_dim, *args, out_shape=None, **kwargs):
    return 2 * _mha_macs(query, key, embed_dim)


def _torch_encoder_layer(src, embed_dim, *args, out_shape=None, **kwargs):
    ffn_weight_1 = args[12]  # the 15th argument of the schema, after src and embed_dim
    return 2 * _encoder_layer_macs(src, embed_dim, ffn_weight_1)


def _torch_custom_mapping() -> dict:
    """Formulas for the attention operators torch's FlopCounterMode counts as 0 here (CPU kernels, fused paths)."""
    aten = torch.ops.aten
    wanted = {
        "scaled_dot_product_attention": _torch_sdpa,
        "_scaled_dot_product_flash_attention_for_cpu": _torch_sdpa,
        "_scaled_dot_product_fused_attention_overrideable": _torch_sdpa,
        "_native_multi_head_attention": _torch_native_mha,
        "_transformer_encoder_layer_fwd": _torch_encoder_layer,
    }
    mapping = {}
    for name, formula in wanted.items():
        try:
            mapping[getattr(aten, name)] = formula
        except (AttributeError, RuntimeError):  # an older torch without this operator
            continue
    return mapping


# Operators that cost no arithmetic worth counting: not reported as skipped by the torch fallback.
_ZERO_COST_TORCH_OPS = {
    "_to_copy", "_unsafe_view", "alias", "arange", "as_strided", "bitwise_and", "bitwise_not", "bitwise_or",
    "cat", "chunk", "clamp", "clone", "constant_pad_nd", "contiguous", "copy", "copy_", "detach", "dropout",
    "empty", "empty_like", "empty_strided", "eq", "expand", "fill", "fill_", "flatten", "full", "full_like",
    "gather", "ge", "gt", "index", "index_put", "index_put_", "index_select", "le", "lift_fresh", "lift_fresh_copy",
    "logical_and", "logical_not", "logical_or", "lt", "masked_fill", "masked_fill_", "ne", "new_empty", "new_full",
    "new_ones", "new_zeros", "nonzero", "ones", "ones_like", "permute", "relu", "relu_", "repeat", "reshape",
    "resize_", "roll", "scalar_tensor", "select", "slice", "split", "split_with_sizes", "squeeze", "stack", "t",
    "to", "transpose", "unbind", "unfold", "unsqueeze", "view", "where", "zero_", "zeros", "zeros_like",
    "_local_scalar_dense", "item", "_unsafe_index", "pad",
}


class _RecordingFlopCounter(FlopCounterMode):
    """FlopCounterMode that also remembers the operators it had no formula for."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.uncounted: dict[str, int] = {}

    def _count_flops(self, func_packet, out, args, kwargs):  # private API: if it changes, nothing is recorded
        try:
            if func_packet not in self.flop_registry:
                name = str(getattr(func_packet, "_qualified_op_name", func_packet))
                short = name.split("::")[-1]
                if short not in _ZERO_COST_TORCH_OPS and short.rstrip("_") not in _ZERO_COST_TORCH_OPS:
                    self.uncounted[name] = self.uncounted.get(name, 0) + 1
        except Exception:  # noqa: BLE001 - bookkeeping only
            pass
        return super()._count_flops(func_packet, out, args, kwargs)


class _Positional(nn.Module):
    """Calls the model with its recorded arguments, taking only the tensors positionally (what jit tracing accepts)."""

    def __init__(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.model = model
        self._args = args
        self._kwargs = kwargs
        self.slots = [("arg", i) for i, value in enumerate(args) if isinstance(value, torch.Tensor)]
        self.slots += [("kw", name) for name, value in kwargs.items() if isinstance(value, torch.Tensor)]

    def tensors(self) -> tuple:
        return tuple(self._args[i] if kind == "arg" else self._kwargs[i] for kind, i in self.slots)

    def forward(self, *tensors):
        args, kwargs = list(self._args), dict(self._kwargs)
        for (kind, i), tensor in zip(self.slots, tensors, strict=True):
            if kind == "arg":
                args[i] = tensor
            else:
                kwargs[i] = tensor
        return self.model(*args, **kwargs)


@dataclass
class _Flops:
    flops: float | None = None
    counter: str | None = None
    torch_total: float | None = None
    disagreement: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    error: str | None = None


# What fvcore counts (by its operator names) that torch's counter has no formula for: left out of
# the cross-check, so that every network with a normalisation layer does not "disagree".
FVCORE_ONLY_OPERATORS = (
    "batch_norm", "group_norm", "layer_norm", "instance_norm",
    "upsample_nearest2d", "upsample_bilinear2d", "adaptive_avg_pool2d", "grid_sampler",
)


def _count_fvcore(model: nn.Module, args: tuple, kwargs: dict) -> tuple[float, dict[str, int], float]:
    """fvcore's total MACs, the operators it skipped, and the part of the total torch would not count."""
    if kwargs or not all(isinstance(value, torch.Tensor) for value in args):
        wrapper = _Positional(model, args, kwargs)
        target: nn.Module = wrapper
        traced_inputs = wrapper.tensors()
    else:
        target, traced_inputs = model, args
    analysis = (
        FlopCountAnalysis(target, traced_inputs)
        .set_op_handle(**FVCORE_HANDLES)
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation and tracer warnings
        total = analysis.total()
        skipped = {str(name): int(count) for name, count in analysis.unsupported_ops().items()}
        by_operator = analysis.by_operator()
    fvcore_only = sum(float(by_operator.get(name, 0)) for name in FVCORE_ONLY_OPERATORS)
    return float(total), skipped, fvcore_only


def _count_torch(model: nn.Module, args: tuple, kwargs: dict) -> tuple[float, dict[str, int]]:
    counter = _RecordingFlopCounter(display=False, custom_mapping=_torch_custom_mapping())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # With grad: under no_grad the counter's module tracker fails on a parameter passed
        # to a submodule as its input ("Expected gradient function to be set").
        with torch.enable_grad(), counter:
            model(*args, **kwargs)
    return counter.get_total_flops() / 2, dict(counter.uncounted)


def _disagreement(fvcore_total: float, fvcore_only: float, torch_total: float, skipped: dict[str, int]) -> str | None:
    """One line when fvcore and torch's counter (halved) differ by more than 1% on what both count."""
    comparable = fvcore_total - fvcore_only
    largest = max(abs(comparable), abs(torch_total))
    if not largest or abs(comparable - torch_total) / largest <= DISAGREEMENT_TOLERANCE:
        return None
    apart = abs(comparable - torch_total) / largest
    line = f"fvcore counts {int(comparable)} MACs"
    if fvcore_only:
        line += f" (besides {int(fvcore_only)} in normalisation/resampling, which torch does not count)"
    line += f" but torch's FlopCounterMode {int(torch_total)} (its count halved), {apart:.1%} apart"
    if skipped:
        line += "; fvcore skipped " + ", ".join(f"{name} x{count}" for name, count in sorted(skipped.items()))
    return line


def _count_flops(model: nn.Module, args: tuple, kwargs: dict) -> _Flops:
    """fvcore's MACs, cross-checked by (or, if fvcore fails, taken from) torch's counter. Never raises."""
    result = _Flops()
    fvcore_error = torch_error = None
    fvcore_only = 0.0
    torch_skipped: dict[str, int] = {}
    with torch.no_grad():
        try:
            result.flops, result.skipped, fvcore_only = _count_fvcore(model, args, kwargs)
            result.counter = "fvcore"
        except Exception as error:  # noqa: BLE001 - any tracing failure means: fall back
            fvcore_error = _last_line(error)
        try:
            result.torch_total, torch_skipped = _count_torch(model, args, kwargs)
        except Exception as error:  # noqa: BLE001
            torch_error = _last_line(error)
    if result.counter is None:
        if result.torch_total is not None:
            result.flops, result.counter, result.skipped = result.torch_total, "torch", torch_skipped
        else:
            result.error = (
                f"fvcore could not trace the model ({fvcore_error}); torch's FlopCounterMode failed too ({torch_error})"
            )
        return result
    if result.torch_total is not None and result.flops is not None:
        result.disagreement = _disagreement(result.flops, fvcore_only, result.torch_total, result.skipped)
    else:
        result.disagreement = f"not cross-checked: torch's FlopCounterMode failed ({torch_error})"
    return result


# --------------------------------------------------------------------------- parameters


def _count_params(model: nn.Module) -> tuple[int, int]:
    total = int(parameter_count(model)[""])
    seen: set[int] = set()
    trainable = 0
    for parameter in model.parameters():  # unique parameters: tied weights once
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        if parameter.requires_grad:
            trainable += parameter.numel()
    return total, int(trainable)


# --------------------------------------------------------------------------- timing


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _stats(times_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times_ms)
    return statistics.median(ordered), _percentile(ordered, 0.10), _percentile(ordered, 0.90)


def _autocast(device: torch.device, dtype: str):
    if DTYPES[dtype] is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def _check_autocast(device: torch.device, dtype: str) -> None:
    if DTYPES[dtype] is None:
        return
    if device.type == "cuda" and dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise ExpdbError(f"dtype bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16 or fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast(device.type, dtype=DTYPES[dtype]):
                enabled = torch.is_autocast_enabled(device.type)
        except (RuntimeError, TypeError, ValueError):
            enabled = False
    if not enabled:
        raise ExpdbError(f"dtype {dtype} is not supported by torch {torch.__version__}'s autocast on {device.type}; use fp32")


def _time_cpu(forward, warmup: int, iterations: int, budget_s: float, minimum: int) -> list[float]:
    for _ in range(warmup):
        forward()
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(iterations):
        begin = time.perf_counter()
        forward()
        end = time.perf_counter()
        times.append((end - begin) * 1000.0)
        if len(times) >= minimum and end - started >= budget_s:
            break
    return times


def _time_cuda(forward, device: torch.device, warmup: int, iterations: int, budget_s: float, minimum: int) -> list[float]:
    with torch.cuda.device(device):
        for _ in range(warmup):
            forward()
        torch.cuda.synchronize(device)
        times: list[float] = []
        started = time.perf_counter()
        for _ in range(iterations):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            forward()
            end.record()
            torch.cuda.synchronize(device)
            times.append(begin.elapsed_time(end))  # ms
            if len(times) >= minimum and time.perf_counter() - started >= budget_s:
                break
    return times


@contextmanager
def _cpu_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if threads is not None:
            torch.set_num_threads(before)


# --------------------------------------------------------------------------- the profile


def _integer(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ExpdbError(f"{name} must be an integer of at least {minimum}, not {value!r}")
    return int(value)


def _single_device(model: nn.Module) -> torch.device | None:
    devices = {tensor.device for tensor in (*model.parameters(), *model.buffers())}
    return devices.pop() if len(devices) == 1 else None


def _measured_inputs(inputs) -> tuple[tuple, dict, int, str]:
    """The model's positional and keyword arguments, the batch (the first dimension of the first
    tensor), and the input shape as messages and the profile show it."""
    args, kwargs = _split_inputs(inputs)
    first = _first_tensor(args, kwargs)
    if first is None:
        raise ExpdbError("inputs hold no tensor: give a tensor, a tuple of tensors or a dict of keyword arguments")
    batch = int(first.shape[0]) if first.dim() else 1
    input_shape = (
        _shape_text(first.shape[1:]) if len(args) + len(kwargs) == 1 and first.dim() else _describe_inputs(args, kwargs, batch)
    )
    return args, kwargs, batch, input_shape


def _ready_on(
    model: nn.Module, target: torch.device, args: tuple, kwargs: dict, batch: int, input_shape: str
) -> tuple[tuple, dict]:
    """The model in eval mode on `target`, and its inputs moved there, checked by one forward pass:
    it materialises lazy modules and says, in one line, when the model does not take these inputs."""
    try:
        model.to(target)
    except Exception as error:  # noqa: BLE001 - e.g. out of memory
        raise ExpdbError(f"cannot move the model to {target}: {_last_line(error)}") from None
    model.eval()
    args, kwargs = _to_device(args, target), _to_device(kwargs, target)
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the model's own failure, in one line
        raise ExpdbError(f"the model rejects inputs of shape {input_shape} (batch {batch}): {_last_line(error)}") from None
    return args, kwargs


def _timed(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    target: torch.device,
    dtype: str,
    warmup: int,
    iterations: int,
    minimum: int,
    budget_s: float,
) -> list[float]:
    """Milliseconds of each timed forward pass, in inference mode and `dtype`'s autocast."""
    def forward():
        return model(*args, **kwargs)

    with torch.inference_mode(), _autocast(target, dtype):
        if target.type == "cuda":
            return _time_cuda(forward, target, warmup, iterations, budget_s, minimum)
        return _time_cpu(forward, warmup, iterations, budget_s, minimum)


def _throughput(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    batch: int,
    throughput_batch: int,
    target: torch.device,
    dtype: str,
    budget_s: float,
) -> float | None:
    """Samples per second with the inputs' batch grown to `throughput_batch`."""
    big_args = tuple(_rebatch(value, batch, throughput_batch) for value in args)
    big_kwargs = {name: _rebatch(value, batch, throughput_batch) for name, value in kwargs.items()}
    try:
        big_times = _timed(model, big_args, big_kwargs, target, dtype, THROUGHPUT_WARMUP, THROUGHPUT_ITERATIONS, 3, budget_s)
    except Exception as error:  # noqa: BLE001
        raise ExpdbError(f"the model fails at batch {throughput_batch} (throughput_batch): {_last_line(error)}") from None
    median_ms = statistics.median(big_times)
    return throughput_batch / (median_ms / 1000.0) if median_ms > 0 else None


def profile(
    model: nn.Module,
    inputs,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    warmup: int = PROFILE_WARMUP,
    iterations: int = PROFILE_ITERATIONS,
    time_budget_s: float = PROFILE_BUDGET_S,
    threads: int | None = None,
    throughput_batch: int | None = None,
    count_flops: bool = True,
) -> Profile:
    """Params, FLOPs (MACs) and Cost-Time of `model` on `inputs`.

    inputs: a tensor, a tuple of tensors/values (model(*inputs)) or a dict of keyword
    arguments (model(**inputs)); the batch is the first dimension of the first tensor.
    The model is measured in eval mode and put back in its mode (and on its device, if it
    lived on one) afterwards. Raises ExpdbError (one line) for bad options and for inputs
    the model rejects; a FLOP counting failure is never raised, it is in `flops_error`.
    """
    if not isinstance(model, nn.Module):
        raise ExpdbError(f"profile needs a torch.nn.Module, not {type(model).__name__}")
    if dtype not in DTYPES:
        raise ExpdbError(f"unknown dtype {dtype!r}; use one of: {', '.join(DTYPES)}")
    warmup = _integer("warmup", warmup, 0)
    iterations = _integer("iterations", iterations, MIN_TIMED_ITERATIONS)
    if isinstance(time_budget_s, bool) or not isinstance(time_budget_s, numbers.Real) or not time_budget_s > 0:
        raise ExpdbError(f"time_budget_s must be a positive number of seconds, not {time_budget_s!r}")
    threads = None if threads is None else _integer("threads", threads, 1)
    throughput_batch = None if throughput_batch is None else _integer("throughput_batch", throughput_batch, 1)
    target = torch_device(device)
    _check_autocast(target, dtype)
    args, kwargs, batch, input_shape = _measured_inputs(inputs)

    was_training = model.training
    home = _single_device(model)
    try:
        args, kwargs = _ready_on(model, target, args, kwargs, batch, input_shape)
        params_total, params_trainable = _count_params(model)
        flops = _count_flops(model, args, kwargs) if count_flops else _Flops()
        cudnn_benchmark = bool(torch.backends.cudnn.benchmark) if target.type == "cuda" else None
        with _cpu_threads(threads if target.type == "cpu" else None) as thread_count:
            try:
                times = _timed(model, args, kwargs, target, dtype, warmup, iterations, MIN_TIMED_ITERATIONS, time_budget_s)
            except Exception as error:  # noqa: BLE001 - e.g. an operator without fp16 support
                raise ExpdbError(f"the model fails to run in {dtype} on {target.type}: {_last_line(error)}") from None
            throughput = None
            if throughput_batch is not None:
                throughput = _throughput(model, args, kwargs, batch, throughput_batch, target, dtype, time_budget_s)
        median, p10, p90 = _stats(times)
        return Profile(
            params_total=params_total,
            params_trainable=params_trainable,
            flops=flops.flops,
            flops_counter=flops.counter,
            flops_torch=flops.torch_total,
            flops_disagreement=flops.disagreement,
            skipped_ops=flops.skipped,
            flops_error=flops.error,
            cost_time_ms=median,
            cost_time_p10_ms=p10,
            cost_time_p90_ms=p90,
            batch=batch,
            input_shape=input_shape,
            dtype=dtype,
            device=f"cpu ({cpu_name()})" if target.type == "cpu" else torch.cuda.get_device_name(target),
            warmup=warmup,
            iterations=len(times),
            threads=thread_count if target.type == "cpu" else None,
            cudnn_benchmark=cudnn_benchmark,
            torch_version=torch.__version__,
            throughput=throughput,
            throughput_batch=throughput_batch if throughput is not None else None,
        )
    finally:
        model.train(was_training)
        if home is not None and home != target:
            model.to(home)
