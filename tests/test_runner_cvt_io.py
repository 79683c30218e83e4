"""The built-in runner cvt_io: reports, determinism, model variants, divergence, stop and resume.

Tiny configurations only (a few seconds in all); the runner's real defaults are measured
by hand, not here.
"""

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from expdb.runners import cvt_io  # noqa: E402 - it imports torch: after the skip

TINY = {"steps": 12, "batch": 8, "dim": 16, "depth": 1, "heads": 2, "image": 32,
        "train_size": 64, "eval_size": 32, "warmup": 3, "lr": 2e-3}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and one thread keeps the tests quick on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class FakeCtx:
    """What expdb hands a runner: device, seed, log, summary, should_stop, checkpoint_path, resume."""

    def __init__(self, checkpoint_path, *, seed=0, resume=False, stop_after=None, raise_at=None):
        self.device = "cpu"
        self.seed = seed
        self.checkpoint_path = Path(checkpoint_path)
        self.resume = resume
        self.stop_after = stop_after  # should_stop turns True once this many points are logged
        self.raise_at = raise_at  # log() raises at this step, as expdb may to stop a run
        self.points = []
        self.summaries = []

    def log(self, step, *, epoch=None, samples=None, **scalars):
        if self.raise_at is not None and step == self.raise_at:
            raise KeyboardInterrupt("stopped by the caller")
        self.points.append({"step": step, "epoch": epoch, "samples": samples, **scalars})

    def summary(self, **metrics):
        self.summaries.append(metrics)

    @property
    def should_stop(self):
        return self.stop_after is not None and len(self.points) >= self.stop_after

    def losses(self):
        return [p["loss"] for p in self.points]


def train(tmp_path, name="ckpt.pt", **overrides):
    ctx_args = {k: overrides.pop(k) for k in ("seed", "resume", "stop_after", "raise_at") if k in overrides}
    ctx = FakeCtx(tmp_path / name, **ctx_args)
    cvt_io.run({**TINY, **overrides}, ctx)
    return ctx


def n_params(params):
    model, _ = cvt_io.build({**TINY, **params})
    return sum(p.numel() for p in model.parameters())


def test_logs_every_step_and_summarizes(tmp_path):
    ctx = train(tmp_path, N=3, L=2)
    assert [p["step"] for p in ctx.points] == list(range(1, 13))
    for p in ctx.points:
        assert {"loss", "lr", "grad_norm", "epoch", "samples"} <= set(p)
        assert p["samples"] == p["step"] * 8
        assert p["epoch"] == pytest.approx(p["step"] * 8 / 64)
        for key in ("loss", "lr", "grad_norm"):
            assert type(p[key]) is float and math.isfinite(p[key])
    lrs = [p["lr"] for p in ctx.points]
    assert lrs[0] < lrs[3] and lrs[-1] < lrs[3]  # warm-up, then decay
    assert len(ctx.summaries) == 1
    summary = ctx.summaries[0]
    assert set(summary) == {"iou50", "miou"}
    assert all(type(v) is float and 0.0 <= v <= 1.0 for v in summary.values())
    assert (tmp_path / "ckpt.pt").exists()
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_same_seed_same_curve_other_seed_other_curve(tmp_path):
    first = train(tmp_path, name="a.pt", N=2, L=2, steps=6)
    second = train(tmp_path, name="b.pt", N=2, L=2, steps=6)
    assert first.points == second.points
    assert first.summaries == second.summaries
    other = train(tmp_path, name="c.pt", N=2, L=2, steps=6, seed=1)
    assert other.losses() != first.losses()


def test_params_seed_is_used_when_ctx_has_none(tmp_path):
    ctx = FakeCtx(tmp_path / "a.pt", seed=None)
    cvt_io.run({**TINY, "steps": 3, "seed": 5}, ctx)
    reference = train(tmp_path, name="b.pt", steps=3, seed=5)
    assert ctx.losses() == reference.losses()


def test_latent_array_and_sharing_change_the_model():
    baseline = n_params({})
    assert n_params({"N": None, "L": None, "shape": None, "shared": None}) == baseline  # the "cvt" card
    assert n_params({"N": 0, "L": 6}) == baseline
    assert n_params({"N": 5, "L": 3}) != baseline
    assert n_params({"N": 5, "L": 3, "shared": True}) < n_params({"N": 5, "L": 3, "shared": False})
    assert n_params({"N": 5, "L": 1, "shared": True}) == n_params({"N": 5, "L": 1, "shared": False})


@pytest.mark.parametrize("shape", ["bdhw", "bndhw", "[b, n, d, H, W]"])
def test_both_shapes_build_and_run(tmp_path, shape):
    model, inputs = cvt_io.build({**TINY, "N": 3, "L": 2, "shape": shape})
    assert not model.training
    assert isinstance(inputs, tuple) and inputs[0].shape == (1, 3, 32, 32)
    with torch.no_grad():
        out = model(*inputs)
    assert out.shape == (1, 4) and torch.isfinite(out).all() and (out[:, 2:] > 0).all()
    ctx = train(tmp_path, N=3, L=2, shape=shape, steps=4)
    assert len(ctx.points) == 4 and len(ctx.summaries) == 1


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="shape"):
        cvt_io.build({"N": 3, "shape": "bhwd"})
    with pytest.raises(ValueError, match="shared"):
        cvt_io.build({"N": 3, "shared": "maybe"})


def test_far_too_large_learning_rate_blows_up(tmp_path):
    ctx = train(tmp_path, lr=10.0, warmup=0, steps=20)
    losses = ctx.losses()
    assert any(not math.isfinite(v) or v > 1e6 for v in losses)
    assert len(ctx.summaries) == 1  # it still reports (a diverged model scores 0)
    assert ctx.summaries[0]["iou50"] <= 0.1


def test_should_stop_saves_and_returns_early(tmp_path):
    ctx = train(tmp_path, stop_after=5)
    assert len(ctx.points) == 5
    assert ctx.summaries == []
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert state["step"] == 5


def test_resume_continues_the_uninterrupted_curve(tmp_path):
    full = train(tmp_path, name="full.pt")
    stopped = train(tmp_path, name="part.pt", stop_after=5)
    resumed = train(tmp_path, name="part.pt", resume=True)
    assert [p["step"] for p in resumed.points] == list(range(6, 13))
    assert stopped.points + resumed.points == full.points
    assert resumed.summaries == full.summaries


def test_periodic_checkpoint_survives_an_exception_from_log(tmp_path):
    full = train(tmp_path, name="full.pt", ckpt_every=4)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, name="crash.pt", ckpt_every=4, raise_at=11)
    assert torch.load(tmp_path / "crash.pt", weights_only=False)["step"] == 8
    resumed = train(tmp_path, name="crash.pt", ckpt_every=4, resume=True)
    assert resumed.points == full.points[8:]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes_like_an_uninterrupted_run(tmp_path, amp):
    full = train(tmp_path, name="full.pt", amp=amp)
    assert full.points != train(tmp_path, name="fp32.pt").points  # autocast really ran in lower precision
    assert all(math.isfinite(p["loss"]) for p in full.points)
    if amp == "fp16":  # the GradScaler's scale is logged, and kept in the checkpoint
        assert all(p["loss_scale"] > 1 for p in full.points)
        assert "scaler" in torch.load(tmp_path / "full.pt", weights_only=False)
    stopped = train(tmp_path, name="part.pt", amp=amp, stop_after=5)
    resumed = train(tmp_path, name="part.pt", amp=amp, resume=True)
    assert stopped.points + resumed.points == full.points
    assert resumed.summaries == full.summaries


def test_unknown_mixed_precision_is_refused():
    with pytest.raises(ValueError, match='amp must be "off", "fp16" or "bf16"'):
        cvt_io.config({"amp": "fp8"})


def test_batches_drawn_ahead_are_those_of_their_steps(tmp_path):
    inline = train(tmp_path, name="inline.pt", prefetch=0)
    ahead = train(tmp_path, name="ahead.pt", prefetch=3)
    assert ahead.points == inline.points
    stopped = train(tmp_path, name="part.pt", prefetch=3, stop_after=4)  # the thread stops with the run
    assert stopped.points == inline.points[:4]


def test_a_cpu_run_keeps_no_gpu_random_state(tmp_path):
    train(tmp_path, steps=2)
    rng = torch.load(tmp_path / "ckpt.pt", weights_only=False)["rng"]
    assert set(rng) == {"python", "numpy", "torch"}
