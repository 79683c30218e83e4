"""The model-complexity profiler: closed-form FLOP counts (fvcore MACs), params, fallbacks, timing structure.

Timings are never asserted on (a shared, noisy machine): only their structure, counts and ordering.
"""

from dataclasses import dataclass

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from expdb.errors import ExpdbError
from expdb.profiler import Profile, inputs_like, parse_input_shape, profile

FAST = {"warmup": 1, "iterations": 5, "time_budget_s": 0.05}


def measure(model, inputs, **options) -> Profile:
    return profile(model, inputs, **{**FAST, **options})


def assert_cross_checked(result: Profile) -> None:
    assert result.flops_counter == "fvcore"
    assert result.flops_torch == pytest.approx(result.flops, rel=0.01)
    assert result.flops_disagreement is None
    assert result.flops_error is None


# --------------------------------------------------------------------------- closed-form counts


def test_conv2d_stem():
    result = measure(nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3), torch.randn(1, 3, 224, 224))
    assert result.flops == 118_013_952  # 64*3*7*7 * 112*112
    assert_cross_checked(result)
    assert result.skipped_ops == {}
    assert result.params_total == 64 * 3 * 7 * 7 + 64
    assert result.batch == 1
    assert result.input_shape == "3x224x224"


def test_linear_on_tokens():
    result = measure(nn.Linear(768, 3072), torch.randn(1, 197, 768))
    assert result.flops == 464_781_312  # 197*768*3072; the bias is not counted
    assert_cross_checked(result)
    assert result.input_shape == "197x768"


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, need_weights: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x):
        return self.attention(x, x, x, need_weights=self.need_weights)[0]


N, D = 128, 256
ATTENTION_MACS = 4 * N * D**2 + 2 * N**2 * D


@pytest.mark.parametrize("heads", [1, 4, 8, 16])
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_counts_its_matrix_products(heads, need_weights):
    # eval mode, batch_first, self-attention, even heads: the fused aten::_native_multi_head_attention,
    # which fvcore and torch would otherwise count as 0; 1 head takes the unfused path (linear, bmm, sdpa).
    model = SelfAttention(D, heads, need_weights)
    result = measure(model, torch.randn(1, N, D))
    assert ATTENTION_MACS == 41_943_040
    assert result.flops == ATTENTION_MACS
    assert_cross_checked(result)
    assert "aten::_native_multi_head_attention" not in result.skipped_ops
    assert model.training  # put back in the mode it came in


def test_fused_attention_path_is_the_one_counted():
    # the profiler counts in eval mode under no_grad, as here: the fused operator is what gets traced
    model = SelfAttention(D, 8, need_weights=False).eval()
    with torch.no_grad():
        graph, _ = torch.jit._get_trace_graph(model, (torch.randn(1, N, D),))
    assert "aten::_native_multi_head_attention" in {node.kind() for node in graph.nodes()}


class SdpaBlock(nn.Module):
    """A pre-norm-free transformer block written with F.scaled_dot_product_attention."""

    def __init__(self, width: int = 256, heads: int = 8, hidden: int = 1024) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def split(self, x):
        batch, tokens, width = x.shape
        return x.view(batch, tokens, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x):
        batch, tokens, width = x.shape
        attended = F.scaled_dot_product_attention(self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x)))
        x = x + self.out(attended.transpose(1, 2).reshape(batch, tokens, width))
        return x + self.fc2(F.gelu(self.fc1(x)))


def test_transformer_block_with_sdpa():
    result = measure(SdpaBlock(), torch.randn(1, N, D))
    projections, sdpa, ffn = 4 * N * D**2, 2 * N**2 * D, 2 * N * D * 1024
    assert projections + sdpa + ffn == 109_051_904
    # fvcore counts the matrix products only here: biases, residual adds and GELU are not counted
    # (the last two are listed as skipped); there is no layer norm, which fvcore would count (5 per element).
    assert result.flops == 109_051_904
    assert_cross_checked(result)
    assert result.skipped_ops == {"aten::add": 2, "aten::gelu": 1}


def test_sdpa_with_different_source_length_and_value_width():
    class CrossAttention(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 5)
    result = measure(CrossAttention(), (q, k, v))
    assert result.flops == 2 * 4 * (10 * 6 * 8 + 10 * 6 * 5)
    assert_cross_checked(result)
    assert result.batch == 2
    assert result.input_shape == "4x10x8, 4x6x8, 4x6x5"


def test_transformer_encoder_layer_layer_norms_are_fvcore_only():
    # fvcore counts each LayerNorm as 5 MACs per element; torch's counter does not count them.
    layer = nn.TransformerEncoderLayer(D, 8, 1024, dropout=0.0, batch_first=True)
    result = measure(layer, torch.randn(1, N, D))
    assert result.flops == 109_051_904 + 2 * 5 * N * D
    assert result.flops_torch == 109_051_904
    assert result.flops_disagreement is None  # 0.3% apart


def test_baddbmm_is_counted_like_torch_counts_it():
    # fvcore has no handle for aten::baddbmm (the unfused attention with a mask uses it); expdb adds one
    class Scores(nn.Module):
        def forward(self, bias, q, k):
            return torch.baddbmm(bias, q, k.transpose(1, 2))

    result = measure(Scores(), (torch.zeros(2, 6, 7), torch.randn(2, 6, 4), torch.randn(2, 7, 4)))
    assert result.flops == 2 * 6 * 4 * 7
    assert_cross_checked(result)


def test_normalisation_counted_by_fvcore_only_is_not_a_disagreement():
    model = nn.Sequential(nn.Conv2d(3, 4, kernel_size=1), nn.BatchNorm2d(4), nn.ReLU())
    result = measure(model, torch.randn(1, 3, 8, 8))
    conv, batch_norm = 3 * 4 * 64, 2 * 4 * 64  # fvcore: eval-mode batch norm with affine, 2 per element
    assert result.flops == conv + batch_norm
    assert result.flops_torch == conv
    assert result.flops_disagreement is None


# --------------------------------------------------------------------------- params


def test_tied_weights_are_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(100, 16)
            self.head = nn.Linear(16, 100, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(self.embed(ids))

    result = measure(Tied(), torch.randint(0, 100, (2, 7)))
    assert result.params_total == result.params_trainable == 1600
    assert result.input_shape == "7"


def test_lazy_modules_are_materialised():
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 2))
    result = measure(model, torch.randn(3, 5))
    assert result.params_total == 5 * 8 + 8 + 8 * 2 + 2
    assert result.flops == 3 * (5 * 8 + 8 * 2)


def test_trainable_excludes_frozen_parameters():
    model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 3))
    for parameter in model[0].parameters():
        parameter.requires_grad_(False)
    result = measure(model, torch.randn(1, 10))
    assert result.params_total == 10 * 20 + 20 + 20 * 3 + 3
    assert result.params_trainable == 20 * 3 + 3


# --------------------------------------------------------------------------- skipped ops and fallbacks


class MatMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError


class CustomFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 32))
        self.linear = nn.Linear(32, 4)

    def forward(self, x):
        return self.linear(MatMul.apply(x, self.weight))


def test_ops_fvcore_does_not_count_are_listed_and_the_counts_disagree():
    result = measure(CustomFunction(), torch.randn(2, 16))
    assert result.flops_counter == "fvcore"
    assert result.flops == 2 * 32 * 4  # the linear only: the custom Function is invisible to fvcore
    assert result.skipped_ops == {"prim::PythonOp.MatMul": 1}
    assert result.flops_torch == 2 * 16 * 32 + 2 * 32 * 4  # torch sees the mm inside the Function
    assert result.flops_disagreement is not None
    assert "\n" not in result.flops_disagreement
    assert "prim::PythonOp.MatMul" in result.flops_disagreement


def test_tensordot_is_listed_as_skipped():
    class Tensordot(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(16, 8))

        def forward(self, x):
            return torch.tensordot(x, self.weight, dims=1)

    result = measure(Tensordot(), torch.randn(2, 16))
    assert result.skipped_ops == {"aten::tensordot": 1}
    assert result.flops == 0
    assert result.flops_torch == 2 * 16 * 8
    assert result.flops_disagreement is not None


@dataclass
class Output:
    boxes: torch.Tensor


class ReturnsDataclass(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 8)

    def forward(self, x):
        return Output(F.gelu(self.linear(x)))


def test_a_model_fvcore_cannot_trace_falls_back_to_torch():
    result = measure(ReturnsDataclass(), torch.randn(2, 16))
    assert result.flops_counter == "torch"
    assert result.flops == result.flops_torch == 2 * 16 * 8
    assert result.flops_error is None
    assert result.flops_disagreement is None
    assert result.skipped_ops == {"aten::gelu": 1}  # what the torch counter saw but has no formula for
    assert result.cost_time_ms is not None


def test_a_compiled_model_falls_back_to_torch():
    model = torch.compile(nn.Linear(16, 8), backend="eager")  # fvcore cannot jit-trace dynamo
    result = measure(model, torch.randn(2, 16))
    assert result.flops_counter == "torch"
    assert result.flops == 2 * 16 * 8


def test_when_no_counter_works_flops_is_none_with_a_reason():
    class Nothing(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            self.calls += 1
            if self.calls in (2, 3):  # the fvcore trace and the torch counter; the check forward is call 1
                raise RuntimeError("cannot be counted\nsecond line: really not")
            return self.linear(x)

    result = measure(Nothing(), torch.randn(1, 4))
    assert result.flops is None and result.flops_counter is None and result.flops_torch is None
    assert "really not" in result.flops_error and "\n" not in result.flops_error
    assert result.params_total == 20
    assert result.cost_time_ms is not None


def test_count_flops_false_skips_counting():
    result = measure(nn.Linear(4, 4), torch.randn(1, 4), count_flops=False)
    assert result.flops is None and result.flops_counter is None and result.flops_error is None
    assert result.params_total == 20


# --------------------------------------------------------------------------- inputs


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 8)

    def forward(self, x, mask, scale=1.0):
        return self.linear(x * mask) * scale


def test_tuple_inputs_with_a_plain_value():
    result = measure(TwoInputs(), (torch.randn(4, 10, 16), torch.ones(4, 10, 1), 0.5))
    assert result.flops == 4 * 10 * 16 * 8
    assert result.flops_counter == "fvcore"
    assert result.batch == 4
    assert result.input_shape == "10x16, 10x1, 0.5"


def test_dict_inputs_are_keyword_arguments():
    result = measure(TwoInputs(), {"x": torch.randn(3, 16), "mask": torch.ones(16), "scale": 2.0})
    assert result.flops == 3 * 16 * 8
    assert_cross_checked(result)
    assert result.batch == 3
    assert result.input_shape == "x=16, mask=[16], scale=2.0"


def test_many_inputs_are_described_within_the_column_width():
    class Many(nn.Module):
        def forward(self, *tensors):
            return sum(tensor.sum() for tensor in tensors)

    result = measure(Many(), tuple(torch.randn(1, 1000 + i, 3) for i in range(40)), count_flops=False)
    assert len(result.input_shape) <= 128 and result.input_shape.startswith("1000x3, 1001x3")


def test_throughput_at_a_larger_batch():
    result = measure(TwoInputs(), (torch.randn(2, 16), torch.ones(2, 1)), throughput_batch=5)
    assert result.throughput is not None and result.throughput > 0
    assert result.throughput_batch == 5
    assert result.batch == 2  # latency and FLOPs stay at the given batch
    assert result.flops == 2 * 16 * 8


def test_inputs_like_changes_batch_and_shape():
    example = (torch.randn(1, 3, 8, 8), torch.ones(1, 4), 7)
    batched = inputs_like(example, batch=3)
    assert batched[0].shape == (3, 3, 8, 8) and batched[1].shape == (3, 4) and batched[2] == 7
    reshaped = inputs_like(example, batch=2, shape=(3, 16, 16))
    assert reshaped[0].shape == (2, 3, 16, 16) and reshaped[1].shape == (2, 4)
    assert inputs_like({"ids": torch.zeros(1, 5, dtype=torch.long)}, shape=(9,))["ids"].shape == (1, 9)
    assert inputs_like(torch.randn(1, 2), batch=4).shape == (4, 2)


# --------------------------------------------------------------------------- latency


def test_latency_statistics_and_iterations():
    result = profile(nn.Linear(8, 8), torch.randn(1, 8), warmup=3, iterations=12, time_budget_s=60)
    assert result.cost_time_p10_ms <= result.cost_time_ms <= result.cost_time_p90_ms
    assert result.cost_time_p10_ms > 0
    assert result.iterations == 12
    assert result.warmup >= 3  # and at least 100 ms of passes
    assert result.dtype == "fp32" and result.device.startswith("cpu (")
    assert result.cudnn_benchmark is None
    assert result.torch_version == torch.__version__


def test_the_time_budget_is_a_budget_and_one_pass_is_timed_at_least():
    result = profile(nn.Linear(8, 8), torch.randn(1, 8), warmup=50, iterations=10_000, time_budget_s=1e-6)
    assert result.iterations == 1 and result.warmup == 1
    assert result.cost_time_p10_ms <= result.cost_time_ms <= result.cost_time_p90_ms


def test_threads_are_recorded_and_restored():
    before = torch.get_num_threads()
    result = measure(nn.Linear(8, 8), torch.randn(1, 8), threads=1)
    assert result.threads == 1
    assert torch.get_num_threads() == before
    assert measure(nn.Linear(8, 8), torch.randn(1, 8)).threads == before


def test_bf16_autocast_on_cpu():
    result = measure(nn.Linear(8, 8), torch.randn(2, 8), dtype="bf16")
    assert result.dtype == "bf16"
    assert result.flops == 2 * 8 * 8
    assert result.cost_time_p10_ms <= result.cost_time_ms <= result.cost_time_p90_ms


def test_fp16_on_cpu_runs_under_autocast_or_says_why_not():
    try:
        result = measure(nn.Linear(8, 8), torch.randn(2, 8), dtype="fp16")
    except ExpdbError as error:
        assert "fp16" in str(error) and "\n" not in str(error)
    else:
        assert result.dtype == "fp16"
        assert result.cost_time_p10_ms <= result.cost_time_ms <= result.cost_time_p90_ms


# --------------------------------------------------------------------------- errors


def one_line_error(call) -> str:
    with pytest.raises(ExpdbError) as raised:
        call()
    message = str(raised.value)
    assert message and "\n" not in message
    return message


def test_unknown_dtype():
    message = one_line_error(lambda: measure(nn.Linear(2, 2), torch.randn(1, 2), dtype="fp8"))
    assert "fp8" in message and "fp32" in message and "fp16" in message and "bf16" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu():
    message = one_line_error(lambda: measure(nn.Linear(2, 2), torch.randn(1, 2), device="cuda"))
    assert "CUDA" in message


def test_unknown_device():
    assert "mps" in one_line_error(lambda: measure(nn.Linear(2, 2), torch.randn(1, 2), device="mps"))
    assert "nonsense" in one_line_error(lambda: measure(nn.Linear(2, 2), torch.randn(1, 2), device="nonsense"))


def test_rejected_input_shape():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    message = one_line_error(lambda: measure(model, torch.randn(1, 3, 10, 10)))
    assert message.startswith("the model rejects inputs of shape 3x10x10")
    assert "mat1 and mat2 shapes cannot be multiplied" in message
    assert model.training


def test_bad_options():
    one_line_error(lambda: measure(nn.Linear(2, 2), torch.randn(1, 2), iterations=0))
    one_line_error(lambda: measure(nn.Linear(2, 2), torch.randn(1, 2), threads=0))
    one_line_error(lambda: measure(nn.Linear(2, 2), "not a tensor"))
    one_line_error(lambda: measure(nn.Linear(2, 2), (1, 2)))
    one_line_error(lambda: profile(lambda x: x, torch.randn(1, 2)))


def test_parse_input_shape():
    assert parse_input_shape("3x224x224") == (3, 224, 224)
    assert parse_input_shape(" 197 x 768 ") == (197, 768)
    assert parse_input_shape("128") == (128,)
    for garbage in ["", "x", "3x", "3xax224", "0x4", "-3x4", "3.5x2", "banana"]:
        message = one_line_error(lambda garbage=garbage: parse_input_shape(garbage))
        assert "3x224x224" in message


# --------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_profile():
    result = profile(SdpaBlock(), torch.randn(1, N, D), device="cuda", dtype="fp16", warmup=2, iterations=10)
    assert result.device == torch.cuda.get_device_name()
    assert result.flops == 109_051_904
    assert result.threads is None
    assert result.cudnn_benchmark == torch.backends.cudnn.benchmark
    assert result.cost_time_p10_ms <= result.cost_time_ms <= result.cost_time_p90_ms
    assert 5 <= result.iterations <= 10


class _LatentReader(nn.Module):
    """Passes one of its parameters to a submodule as that submodule's input, as latent arrays do."""

    def __init__(self):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(4, 8))
        self.project = nn.Linear(8, 8, bias=False)

    def forward(self, x):
        return self.project(self.latents).sum() + x.sum()


def test_torch_cross_check_copes_with_a_parameter_as_a_submodule_input():
    measured = profile(_LatentReader(), torch.zeros(1, 3), iterations=5, time_budget_s=1)
    assert measured.flops == measured.flops_torch == 4 * 8 * 8
    assert measured.flops_disagreement is None


# --------------------------------------------------------------------------- the model and the process, unchanged


class FrozenStem(nn.Module):
    """A trainable head on a frozen BatchNorm stem in eval mode, as fine-tuning leaves a backbone."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.stem(x).mean(dim=(2, 3)))


def test_every_module_mode_and_requires_grad_come_back():
    model = FrozenStem().train()
    model.stem.eval()
    model.stem.requires_grad_(False)
    model.head.weight.grad = torch.ones_like(model.head.weight)
    tensors = {name: (t, t.data_ptr()) for name, t in model.state_dict(keep_vars=True).items()}
    measure(model, torch.randn(2, 3, 8, 8), channels_last=True)
    assert model.training and model.head.training
    assert not model.stem.training and not model.stem[1].training  # the frozen BatchNorm stays frozen
    assert [p.requires_grad for p in model.parameters()] == [False, False, False, False, True, True]
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    for name, (tensor, pointer) in tensors.items():  # the very tensors, in their memory format
        assert model.state_dict(keep_vars=True)[name] is tensor and tensor.data_ptr() == pointer, name
    assert model.stem[0].weight.is_contiguous()


def test_process_wide_settings_are_restored():
    before = (torch.get_num_threads(), torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)
    torch.set_float32_matmul_precision("high")
    try:
        result = measure(nn.Linear(8, 8), torch.randn(1, 8), threads=1)
        assert result.float32_matmul_precision == "high" and "matmul-precision-high" in result.flags
        assert torch.get_float32_matmul_precision() == "high" and torch.get_num_threads() == before[0]
    finally:
        torch.set_float32_matmul_precision(before[1])
    assert torch.backends.cudnn.benchmark == before[2]


def test_a_bf16_model_is_recorded_as_bf16_and_stays_bf16():
    model = nn.Linear(8, 8).to(torch.bfloat16)
    result = measure(model, torch.randn(2, 8))  # fp32 inputs: cast to the model's dtype
    assert result.dtype == "bf16" and result.param_dtype == "bf16"
    assert model.weight.dtype == torch.bfloat16
    assert measure(nn.Linear(8, 8), torch.randn(2, 8), dtype="bf16").param_dtype == "fp32"


def test_channels_last_is_recorded_and_needs_4d_inputs():
    result = measure(nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8), channels_last=True)
    assert result.channels_last and "channels-last" in result.flags
    message = one_line_error(lambda: measure(nn.Linear(8, 8), torch.randn(2, 8), channels_last=True))
    assert "4-D" in message and "8" in message


def test_cudnn_benchmark_is_refused_off_cuda():
    assert "CUDA" in one_line_error(lambda: measure(nn.Linear(8, 8), torch.randn(2, 8), cudnn_benchmark=True))


def test_peak_memory_counts_weights_inputs_and_activations():
    model = nn.Sequential(nn.Linear(256, 4096), nn.ReLU(), nn.Linear(4096, 256))
    result = measure(model, torch.randn(64, 256))
    weights = sum(p.numel() * 4 for p in model.parameters())
    if Path("/proc/self/clear_refs").exists():
        assert result.peak_mem_bytes >= weights + 64 * 256 * 4
    else:
        assert result.peak_mem_bytes is None


def test_a_profile_in_a_shared_slot_says_so(monkeypatch):
    assert not measure(nn.Linear(2, 2), torch.randn(1, 2)).shared
    monkeypatch.setenv("EXPDB_SHARED_SLOT", "1")
    assert measure(nn.Linear(2, 2), torch.randn(1, 2)).shared


def test_bf16_is_refused_where_it_is_not_native(monkeypatch):
    monkeypatch.setattr("expdb.profiler.bf16_native", lambda device: False)
    message = one_line_error(lambda: measure(nn.Linear(8, 8), torch.randn(2, 8), dtype="bf16"))
    assert "bf16 is not native" in message and "fp32" in message
