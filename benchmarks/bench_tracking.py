"""What recording costs a real training loop: the cvt_io runner with tracking on and off, side by side.

    .venv/bin/python benchmarks/bench_tracking.py [--steps 100] [--pairs 10]

(What system metrics cost: benchmarks/bench_sysmetrics.py.)

Each pair trains the same card twice, once with expdb recording the run (a real Run:
queue, background flusher, divergence checks, heartbeat) and once with a context whose
log() does nothing, in alternating order so that the machine's load hits both alike.
Prints each pair's times and the median overhead (target: at most 2% slower). Run it
alone: on a shared 2-core machine consecutive trainings differ by several percent, so
it also prints the cost of recording itself, timed apart from training.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from expdb.runners import cvt_io

from expdb.cards import create_card
from expdb.db import Database
from expdb.runs import begin_run


class UntrackedContext:
    """The runner's context with recording switched off."""

    def __init__(self, directory: Path, seed: int):
        self.device = "cpu"
        self.seed = seed
        self.resume = False
        self.should_stop = False
        self.checkpoint_path = directory / "untracked.pt"

    def log(self, step, *, epoch=None, samples=None, **scalars) -> None:
        pass

    def summary(self, **metrics) -> None:
        pass


def tracked(db: Database, name: str, params: dict) -> float:
    """Seconds of training, recorded."""
    run = begin_run(db, name, device="cpu", seed=0)
    started = time.perf_counter()
    cvt_io.run(params, run)
    seconds = time.perf_counter() - started
    run.end("finished")
    return seconds


def untracked(directory: Path, params: dict) -> float:
    started = time.perf_counter()
    cvt_io.run(params, UntrackedContext(directory, seed=0))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    params = {"N": 5, "L": 4, "steps": args.steps, "ckpt_every": 10**9}
    print(f"cvt_io, {args.steps} steps, {args.pairs} pairs; load average {os.getloadavg()[0]:.2f}")
    overheads = []
    with tempfile.TemporaryDirectory() as directory, Database(str(Path(directory) / "t.db"), create=True) as db:
        for pair in range(args.pairs):
            name = f"tracked_{pair}"
            create_card(db, name, params)
            if pair % 2:
                off, on = untracked(Path(directory), params), tracked(db, name, params)
            else:
                on, off = tracked(db, name, params), untracked(Path(directory), params)
            overheads.append((on - off) / off * 100)
            print(f"  pair {pair + 1}: tracking on {on:7.2f} s   off {off:7.2f} s   {overheads[-1]:+6.2f}%")
    median = statistics.median(overheads)
    spread = statistics.stdev(overheads) / len(overheads) ** 0.5 if len(overheads) > 1 else float("nan")
    print(f"median overhead {median:+.2f}% (mean {statistics.mean(overheads):+.2f}% +- {spread:.2f}% standard error)"
          f"   target <= +2%   {'PASS' if median <= 2 else 'FAIL'}")
    print(f"what recording itself costs this loop: {direct_cost(args.steps):.3f}% of its time")
    print(f"load average after {os.getloadavg()[0]:.2f}")


def direct_cost(steps: int) -> float:
    """The training thread's share of recording, timed without the machine's noise: the runner's log()
    calls and the flusher's work on their points, as a percentage of one untracked step's time."""
    with tempfile.TemporaryDirectory() as directory, Database(str(Path(directory) / "d.db"), create=True) as db:
        create_card(db, "direct", {})
        run = begin_run(db, "direct", device="cpu", seed=0)
        started = time.perf_counter()
        for step in range(steps):
            run.log(step, epoch=step / 256, samples=step * 32, loss=1.0 / (step + 1), lr=4e-3, grad_norm=5.0)
        logging = time.perf_counter() - started
        started = time.perf_counter()
        run.end("finished")  # drains the queue: the flusher's work on these points, and the final write
        flushing = time.perf_counter() - started
        context = UntrackedContext(Path(directory), seed=0)
        started = time.perf_counter()
        cvt_io.run({"N": 5, "L": 4, "steps": steps, "ckpt_every": 10**9}, context)
        training = time.perf_counter() - started
    return (logging + flushing) / training * 100


if __name__ == "__main__":
    main()
