"""What `run.log` costs on a rank other than 0 of a distributed launch (target: under 1 microsecond a call),
beside rank 0's recording `run.log`.

    .venv/bin/python benchmarks/bench_ranks.py [--calls 1000000]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import expdb


def per_call(run, calls: int) -> float:
    """Nanoseconds per `log` call, as a training loop makes them (a step, an epoch, three scalars), without the
    loop's own cost."""
    log = run.log
    started = time.perf_counter()
    for step in range(calls):
        log(step, epoch=step / 1000, loss=0.5, lr=4e-3, grad_norm=1.0)
    logging = time.perf_counter() - started
    started = time.perf_counter()
    for step in range(calls):
        _ = step / 1000
    looping = time.perf_counter() - started
    return (logging - looping) / calls * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{args.calls:,} log calls; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as directory:
        database = str(Path(directory) / "ranks.db")
        os.environ["RANK"] = "1"
        with expdb.start("ranked", db=database) as idle:
            idle_ns = min(per_call(idle, args.calls) for _ in range(3))
        os.environ["RANK"] = "0"
        with expdb.start("ranked", db=database) as recording:
            recording_ns = per_call(recording, min(args.calls, 200_000))
    print(f"  rank 1 (IdleRun): {idle_ns:7.0f} ns a call   target < 1000 ns   {'PASS' if idle_ns < 1000 else 'FAIL'}")
    print(f"  rank 0 (recording): {recording_ns:5.0f} ns a call")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
