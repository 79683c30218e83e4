"""How fast a run records its curves, and how small they are on disk.

    .venv/bin/python benchmarks/bench_log.py [--calls 200000]

Prints, against the targets of the runs issue:
- `run.log()` with 5 scalars: the training thread's mean cost per call (target <= 5 us);
- ingest: points per second from the first log() until every point is committed,
  over 1,000,000 points (target >= 500,000/s);
- bytes on disk per point (target <= 40);
- reading back one curve of 1,000,000 points (target < 1 s).
"""

import argparse
import math
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import expdb
from expdb.db import Database
from expdb.series import read_curve


def file_size(path: Path) -> int:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return path.stat().st_size


def training_like(calls: int, seed: int = 0) -> list[tuple[float, float, float, float, float]]:
    """Scalars as a training loop logs them: a noisy falling loss, a scheduled lr, a grad norm, two accuracies."""
    rng = random.Random(seed)
    rows = []
    for step in range(calls):
        loss = 2.0 * math.exp(-step / (calls / 4)) + 0.1 + rng.gauss(0, 0.05)
        lr = 4e-3 * 0.5 * (1 + math.cos(math.pi * step / calls))
        rows.append((loss, lr, abs(rng.gauss(5, 1)), min(1.0, step / calls + rng.gauss(0, 0.02)), rng.random()))
    return rows


def bench_log(directory: Path, calls: int) -> None:
    path = directory / "log.db"
    scalars = training_like(calls)
    Database(str(path), create=True).close()
    before = file_size(path)
    started = time.perf_counter()
    with expdb.start("bench_log", db=str(path)) as run:
        loop_started = time.perf_counter()
        for step, (loss, lr, grad_norm, acc, other) in enumerate(scalars):
            run.log(step, loss=loss, lr=lr, grad_norm=grad_norm, acc=acc, iou=other)
        loop_seconds = time.perf_counter() - loop_started
    total_seconds = time.perf_counter() - started
    points = calls * 5
    per_call_us = loop_seconds / calls * 1e6
    rate = points / total_seconds
    size = (file_size(path) - before) / points
    verdict = "PASS" if per_call_us <= 5 else "FAIL"
    print(f"run.log() with 5 scalars    {per_call_us:8.2f} us/call    target <= 5 us     {verdict}")
    print(f"ingest of {points:,} points {rate:11,.0f} points/s  target >= 500,000  {'PASS' if rate >= 500_000 else 'FAIL'}")
    print(f"on disk                     {size:8.1f} bytes/point target <= 40      {'PASS' if size <= 40 else 'FAIL'}")


def bench_read(directory: Path, points: int) -> None:
    path = directory / "read.db"
    rng = random.Random(1)
    with expdb.start("bench_read", db=str(path)) as run:
        for step in range(points):
            run.log(step, loss=2.0 / (1 + step / 1000) + rng.random() * 0.01)
        run_id = run.id
    with Database(str(path)) as db:
        started = time.perf_counter()
        curve = read_curve(db, run_id, "loss")
        seconds = time.perf_counter() - started
    assert len(curve) == points
    print(f"read one curve of {points:,}  {seconds:8.3f} s          target < 1 s       {'PASS' if seconds < 1 else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="log() calls of 5 scalars (default: 1,000,000 points)")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as directory:
        bench_log(Path(directory), args.calls)
        bench_read(Path(directory), args.calls * 5)
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
