"""What the cvt_io runner's training loop waits for its data: each step's batch drawn in the loop (prefetch 0,
as before) or by a background thread ahead of it (prefetch 2, the default), on the CPU.

    .venv/bin/python benchmarks/bench_runner_data.py [--steps 60]

Prints, for each, the milliseconds per step the training thread spent getting its batch and the whole step's
time. On a GPU the background thread draws while the GPU computes; on a CPU both share the cores, so the
whole step gains less than the wait does.
"""

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from expdb.runners import cvt_io


class Context:
    def __init__(self, path: Path):
        self.device, self.seed, self.resume, self.should_stop = "cpu", 0, False, False
        self.checkpoint_path = path

    def log(self, step, **values) -> None:
        pass

    def summary(self, **metrics) -> None:
        pass


def measure(prefetch: int, steps: int, directory: Path) -> tuple[float, float]:
    """(ms per step waiting for data in the training thread, ms per step in all)."""
    waited = [0.0]
    main = threading.main_thread()

    def timed(function):
        def wrapper(*args, **kwargs):
            if threading.current_thread() is not main:  # the background thread's drawing is not the loop's wait
                return function(*args, **kwargs)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                waited[0] += time.perf_counter() - started
        return wrapper

    originals = cvt_io.TrainStream.batch, cvt_io.Prefetcher.next
    cvt_io.TrainStream.batch, cvt_io.Prefetcher.next = timed(originals[0]), timed(originals[1])  # type: ignore[method-assign]
    try:
        params = {"steps": steps, "prefetch": prefetch, "ckpt_every": 10**9, "eval_size": 32}
        started = time.perf_counter()
        cvt_io.run(params, Context(directory / f"p{prefetch}.pt"))
        total = time.perf_counter() - started
    finally:
        cvt_io.TrainStream.batch, cvt_io.Prefetcher.next = originals  # type: ignore[method-assign]
    return waited[0] / steps * 1000, total / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    print(f"cvt_io defaults (batch 32, 48x48 images), {args.steps} steps on the CPU; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as directory:
        for prefetch in (0, 2, 0, 2):
            wait, step = measure(prefetch, args.steps, Path(directory))
            label = "in the loop (before)" if prefetch == 0 else "drawn ahead (after) "
            print(f"  prefetch {prefetch}, {label}: data {wait:6.1f} ms/step   whole step {step:6.1f} ms")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
