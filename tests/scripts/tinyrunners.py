"""Tiny runners for the run tests, as `tinyrunners:NAME` (tests/scripts on sys.path / PYTHONPATH)."""

import json
import math
import time
from pathlib import Path


def _record_ctx(ctx) -> None:
    """What the runner was given, for the test to read: ctx_<run id>.json in the current directory."""
    facts = {
        "device": ctx.device, "seed": ctx.seed, "resume": ctx.resume, "checkpoint_path": str(ctx.checkpoint_path),
        "checkpoint_exists": Path(ctx.checkpoint_path).exists(), "should_stop": ctx.should_stop,
    }
    Path(f"ctx_{ctx.id}.json").write_text(json.dumps(facts))


def finish(params, ctx):
    """`steps` steps of a falling loss, then a summary."""
    _record_ctx(ctx)
    for step in range(params.get("steps", 20)):
        ctx.log(step, epoch=step / 10, samples=step * 8, loss=1.0 / (step + 1), lr=0.1)
    ctx.summary(iou50=0.34, loss=0.05)


def nan(params, ctx):
    """Finite until step `nan_at`, NaN afterwards, forever (or until expdb stops it, for at most 60 s)."""
    nan_at, step, deadline = params.get("nan_at", 10), 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        ctx.log(step, loss=1.0 if step < nan_at else math.nan)
        step += 1
        if params.get("stop_after") and step >= params["stop_after"]:
            break
        time.sleep(0.01)
    ctx.summary(done=1.0)


def boom(params, ctx):
    ctx.log(0, loss=1.0)
    raise ValueError("boom at step 0")


def forever(params, ctx):
    """Logs until interrupted (at most 120 s)."""
    step, deadline = 0, time.monotonic() + 120
    while time.monotonic() < deadline:
        ctx.log(step, loss=1.0 / (step + 1))
        step += 1
        time.sleep(0.005)


def resumable(params, ctx):
    """First run: writes its checkpoint at step 5, logs to step 7, crashes. Resumed: steps 6..9 from the checkpoint."""
    _record_ctx(ctx)
    if ctx.resume:
        start = json.loads(Path(ctx.checkpoint_path).read_text())["step"] + 1
        for step in range(start, 10):
            ctx.log(step, loss=100.0 + step)
        ctx.summary(iou50=0.5)
        return
    for step in range(8):
        ctx.log(step, loss=float(step))
        if step == 5:
            Path(ctx.checkpoint_path).write_text(json.dumps({"step": step}))
    raise RuntimeError("node lost")


def swallows_ctrl_c(params, ctx):
    """Ctrl-C while a library imports, caught by it, and the library failing later because of it."""
    import os
    import signal

    ctx.log(0, loss=1.0)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        pass  # as an import machinery that catches everything would
    raise AttributeError("module 'sympy' has no attribute 'printing'")


def catches_ctrl_c(params, ctx):
    """Ctrl-C caught and done with: the run goes on and finishes."""
    import os
    import signal

    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        pass
    ctx.log(0, loss=1.0)
