"""What recording costs a real training loop: the cvt_io runner with tracking on and off, side by side.

    .venv/bin/python benchmarks/bench_tracking.py [--steps 150] [--pairs 4]

Each pair trains the same card twice, once with expdb recording the run (a real Run:
queue, background flusher, divergence checks, heartbeat) and once with a context whose
log() does nothing, in alternating order so that the machine's load hits both alike.
Prints each pair's times and the median overhead (target: at most 2% slower).
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from expdb.cards import create_card
from expdb.db import Database
from expdb.runners import cvt_io
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
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--pairs", type=int, default=4)
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
    print(f"median overhead {median:+.2f}%   target <= +2%   {'PASS' if median <= 2 else 'FAIL'}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
