"""Tiny runners for the queue and Slurm tests, as `queuerunners:NAME` (tests/scripts on PYTHONPATH)."""

import json
import os
import time
from pathlib import Path

PINNED = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def record(params, ctx):
    """Writes env_<card>.json (what the queue set in its environment), prints a line, logs a few steps, sleeps `sleep` seconds."""
    Path(f"env_{ctx.card.name}.json").write_text(json.dumps({key: os.environ.get(key) for key in PINNED}))
    print(f"training {ctx.card.name}", flush=True)
    for step in range(5):
        ctx.log(step, loss=1.0 / (step + 1))
    time.sleep(params.get("sleep", 0))
    ctx.summary(iou50=0.5)


def until_stopped(params, ctx):
    """Logs and checkpoints every step until stopped (at most 60 s); resumed, logs 5 more steps and finishes."""
    checkpoint = Path(ctx.checkpoint_path)
    if ctx.resume:
        start = json.loads(checkpoint.read_text())["step"] + 1
        for step in range(start, start + 5):
            ctx.log(step, loss=1.0 / (step + 1))
        ctx.summary(iou50=0.6)
        return
    step, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        ctx.log(step, loss=1.0 / (step + 1))
        partial = checkpoint.with_suffix(".partial")
        partial.write_text(json.dumps({"step": step}))
        os.replace(partial, checkpoint)  # a SIGTERM while writing leaves the previous checkpoint whole
        step += 1
        time.sleep(0.01)


def until_asked(params, ctx):
    """Logs until asked to stop (should_stop; at most 60 s), then writes its checkpoint and returns; resumed, logs 5
    more steps from it and finishes."""
    checkpoint = Path(ctx.checkpoint_path)
    if ctx.resume:
        start = json.loads(checkpoint.read_text())["step"] + 1
        for step in range(start, start + 5):
            ctx.log(step, loss=1.0 / (step + 1))
        ctx.summary(iou50=0.7)
        return
    step, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline and not ctx.should_stop:
        ctx.log(step, loss=1.0 / (step + 1))
        step += 1
        time.sleep(0.01)
    checkpoint.write_text(json.dumps({"step": step - 1}))


# Every process that imports this module says so: a queue's next job imports its runner
# while the job before it still runs.
Path(f"imported_by_{os.getpid()}").touch()


def waits_for_the_next_job(params, ctx):
    """Finishes once another process has imported this module (at most 60 s): its slot's next job, on standby."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(Path().glob("imported_by_*"))) < 2:
        time.sleep(0.05)
    ctx.summary(processes_ready=len(list(Path().glob("imported_by_*"))))
