"""What recording system metrics (sys/ curves) costs a training, measured so that 1% shows on a loaded machine.

    .venv/bin/python benchmarks/bench_sysmetrics.py [--steps 40] [--pairs 20] [--segment 1.0]

Target (issue 12): at most 1% of the training's time. Two measurements:

1. The sampler's own CPU time, inside the recorder thread (time.thread_time around each
   SystemSampler.sample), over a real recorded cvt_io training with system metrics on at the
   real interval, against the training process's wall and CPU time. The sampler can slow
   the training by at most what it runs (it holds the GIL or a core only that long), so
   this bounds the overhead whatever the machine's load.
2. Interleaved A/B pairs in one process: short segments of cvt_io's training step (its
   model, forward, backward, AdamW) with a sampler thread sampling 50 times as often as a
   run does (every SAMPLE_INTERVAL_S / 50) and without, alternating which comes first. The
   paired difference of the time per step, divided by 50, is the overhead at the real
   interval; its median with a 95% interval (bootstrap over pairs), in wall and in the
   process's CPU time (which other jobs on the machine do not inflate).

Prints each figure with the load average; nothing is written outside a temporary directory.
"""

import argparse
import os
import random
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from expdb import runs
from expdb.cards import create_card
from expdb.db import Database
from expdb.runners import cvt_io
from expdb.sysmetrics import SAMPLE_INTERVAL_S, SystemSampler

STRESS = 50  # the A/B's sampler samples this many times as often as a run's


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


class TimedSampler(SystemSampler):
    """The run's sampler, adding up the CPU time its samples take in the thread that takes them."""

    spent: list[float] = []

    def sample(self) -> dict[str, float]:
        started = time.thread_time()
        try:
            return super().sample()
        finally:
            TimedSampler.spent.append(time.thread_time() - started)


def sampler_cpu_share(steps: int) -> None:
    params = {"N": 5, "L": 4, "steps": steps, "ckpt_every": 10**9}
    runs.SystemSampler = TimedSampler  # type: ignore[misc] - the recorder thread makes this one
    print(f"1. a recorded cvt_io training ({steps} steps, CPU) with system metrics every {SAMPLE_INTERVAL_S:g} s; {load()}")
    with tempfile.TemporaryDirectory() as directory, Database(str(Path(directory) / "s.db"), create=True) as db:
        create_card(db, "sys", params)
        wall, cpu = time.perf_counter(), cpu_seconds()
        run = runs.begin_run(db, "sys", device="cpu", seed=0, system_metrics=True)
        cvt_io.run(params, run)
        run.end(runs.RunStatus.FINISHED)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    runs.SystemSampler = SystemSampler  # type: ignore[misc]
    spent = TimedSampler.spent
    total = sum(spent)
    print(f"   training: {wall:.1f} s wall, {cpu:.1f} s CPU (user+sys, every thread); {load()}")
    print(f"   sampler: {len(spent)} samples, {total * 1000:.1f} ms CPU in all, "
          f"{statistics.median(spent) * 1000:.2f} ms median, {max(spent) * 1000:.2f} ms the longest")
    print(f"   sampler CPU / training wall {total / wall * 100:.4f}%   / training CPU {total / cpu * 100:.4f}%"
          f"   target <= 1%   {'PASS' if total / wall <= 0.01 else 'FAIL'}")


def training_step():
    """cvt_io's training step on its model: forward, L1 loss, backward, AdamW; a batch of 2."""
    model, (image,) = cvt_io.build({"N": 5, "L": 4})
    model.train()
    images = image.repeat(2, 1, 1, 1)
    target = torch.rand(2, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = torch.nn.functional.l1_loss(model(images).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def segment(step, seconds: float, sampling: bool) -> tuple[float, float]:
    """Steps for about `seconds`, a sampler thread beside them or not; (wall, CPU) seconds per step."""
    stop = threading.Event()
    sampler_thread = None
    if sampling:
        def sample_often() -> None:
            sampler = SystemSampler(gpus=True)
            while not stop.wait(SAMPLE_INTERVAL_S / STRESS):
                sampler.sample()
            sampler.close()

        sampler_thread = threading.Thread(target=sample_often, daemon=True)
        sampler_thread.start()
    count, wall, cpu = 0, time.perf_counter(), cpu_seconds()
    deadline = wall + seconds
    while time.perf_counter() < deadline or count < 3:
        step()
        count += 1
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    stop.set()
    if sampler_thread is not None:
        sampler_thread.join()
    return wall / count, cpu / count


def interval95(values: list[float]) -> tuple[float, float]:
    """A bootstrap 95% interval of the median of `values`."""
    chooser = random.Random(0)
    medians = sorted(statistics.median(chooser.choices(values, k=len(values))) for _ in range(2000))
    return medians[50], medians[1949]


def ab_pairs(pairs: int, seconds: float) -> None:
    step = training_step()
    for _ in range(3):
        step()  # warm
    print(f"2. {pairs} interleaved A/B pairs of {seconds:g} s segments of cvt_io's training step, the sampler every "
          f"{SAMPLE_INTERVAL_S / STRESS:g} s ({STRESS}x a run's rate) or not; {load()}")
    wall_diffs, cpu_diffs = [], []
    for pair in range(pairs):
        if pair % 2:
            off = segment(step, seconds, False)
            on = segment(step, seconds, True)
        else:
            on = segment(step, seconds, True)
            off = segment(step, seconds, False)
        wall_diffs.append((on[0] - off[0]) / off[0] * 100)
        cpu_diffs.append((on[1] - off[1]) / off[1] * 100)
        print(f"   pair {pair + 1}: per step on {on[0]:.3f} s wall {on[1]:.3f} s CPU, off {off[0]:.3f} s wall "
              f"{off[1]:.3f} s CPU: {wall_diffs[-1]:+.1f}% wall {cpu_diffs[-1]:+.1f}% CPU", flush=True)
    for name, diffs in (("wall", wall_diffs), ("CPU", cpu_diffs)):
        low, high = interval95(diffs)
        median = statistics.median(diffs)
        print(f"   {name:4} per step, sampling {STRESS}x as often: median {median:+.2f}% (95% interval {low:+.2f}% to "
              f"{high:+.2f}%); at a run's rate: {median / STRESS:+.3f}% ({low / STRESS:+.3f}% to {high / STRESS:+.3f}%)"
              f"   target <= 1%   {'PASS' if high / STRESS <= 1 else 'FAIL'}")
    print(f"   {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="steps of the recorded training (1)")
    parser.add_argument("--pairs", type=int, default=20, help="A/B pairs (2)")
    parser.add_argument("--segment", type=float, default=1.0, help="seconds of each A/B segment (2)")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; {load()}")
    sampler_cpu_share(args.steps)
    ab_pairs(args.pairs, args.segment)


if __name__ == "__main__":
    main()
