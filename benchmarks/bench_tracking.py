"""What recording costs a real training loop: the cvt_io runner with tracking on and off, side by side.

    .venv/bin/python benchmarks/bench_tracking.py [--steps 100] [--pairs 10]
    .venv/bin/python benchmarks/bench_tracking.py --system [--steps 60] [--pairs 8]

With --system, each pair trains a recorded run with system metrics (sys/ curves, sampled by the
recorder thread every few seconds) and one without (target: at most 1% slower), and it times one
sample, the recorder thread's whole cost, apart from the training's noise.

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
from expdb.sysmetrics import SAMPLE_INTERVAL_S, SystemSampler


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


def tracked(db: Database, name: str, params: dict, system_metrics: bool = True, cpu: list | None = None) -> float:
    """Seconds of training, recorded; `cpu`: gets the CPU seconds the process spent meanwhile, every thread's."""
    run = begin_run(db, name, device="cpu", seed=0, system_metrics=system_metrics)
    started, cpu_started = time.perf_counter(), time.process_time()
    cvt_io.run(params, run)
    seconds = time.perf_counter() - started
    run.end("finished")
    if cpu is not None:
        cpu.append(time.process_time() - cpu_started)
    return seconds


def untracked(directory: Path, params: dict) -> float:
    started = time.perf_counter()
    cvt_io.run(params, UntrackedContext(directory, seed=0))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--system", action="store_true", help="system metrics on and off, both recorded")
    args = parser.parse_args()
    if args.system:
        system_main(args.steps, args.pairs)
        return
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


def system_main(steps: int, pairs: int) -> None:
    params = {"N": 5, "L": 4, "steps": steps, "ckpt_every": 10**9}
    print(f"cvt_io, {steps} steps, {pairs} pairs, system metrics every {SAMPLE_INTERVAL_S:g} s on and off; "
          f"load average {os.getloadavg()[0]:.2f}")
    overheads, cpu_overheads = [], []
    with tempfile.TemporaryDirectory() as directory, Database(str(Path(directory) / "s.db"), create=True) as db:
        for pair in range(pairs):
            create_card(db, f"on_{pair}", params)
            create_card(db, f"off_{pair}", params)
            cpu_on: list[float] = []
            cpu_off: list[float] = []
            if pair % 2:
                off = tracked(db, f"off_{pair}", params, False, cpu_off)
                on = tracked(db, f"on_{pair}", params, True, cpu_on)
            else:
                on = tracked(db, f"on_{pair}", params, True, cpu_on)
                off = tracked(db, f"off_{pair}", params, False, cpu_off)
            overheads.append((on - off) / off * 100)
            cpu_overheads.append((cpu_on[0] - cpu_off[0]) / cpu_off[0] * 100)
            print(f"  pair {pair + 1}: system metrics on {on:7.2f} s   off {off:7.2f} s   {overheads[-1]:+6.2f}%"
                  f"   CPU time on {cpu_on[0]:7.2f} s   off {cpu_off[0]:7.2f} s   {cpu_overheads[-1]:+6.2f}%")
    # CPU time counts what the process itself did, all threads: other jobs on the machine move it far less.
    print(f"median CPU time overhead {statistics.median(cpu_overheads):+.2f}%")
    median = statistics.median(overheads)
    spread = statistics.stdev(overheads) / len(overheads) ** 0.5 if len(overheads) > 1 else float("nan")
    print(f"median overhead {median:+.2f}% (mean {statistics.mean(overheads):+.2f}% +- {spread:.2f}% standard error)"
          f"   target <= +1%   {'PASS' if median <= 1 else 'FAIL'}")
    sampler = SystemSampler(gpus=True)
    sampler.sample()
    started = time.perf_counter()
    for _ in range(100):
        sampler.sample()
    each = (time.perf_counter() - started) / 100
    sampler.close()
    print(f"one sample takes {each * 1000:.2f} ms of the recorder thread: {each / SAMPLE_INTERVAL_S * 100:.3f}% of one core")
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
