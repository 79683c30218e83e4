"""How fast `expdb import` brings a run in: an MMDetection JSON log and a TensorBoard event folder.

    .venv/bin/python benchmarks/bench_import.py [--json-mb 100] [--tensorboard-mb 200]

Generates, in a temporary folder, an MMDetection 2.x `.log.json` of about --json-mb MB (training
lines with 12 numbers each, a validation line per epoch) and a TensorBoard event folder of about
--tensorboard-mb MB written by the `tensorboard` package's own EventFileWriter (5 scalars per
step), then imports each through `expdb.results.import_log` into a new SQLite database and prints
points per second, from the first byte read until the run is committed (target >= 200,000/s).
The 1 GB TensorBoard folder of the issue is extrapolated from the measured rate: the import reads
an event file as a whole and its cost grows with the records, so the rate holds while the file
fits in memory; say so when quoting it.
"""

import argparse
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path

from expdb.db import Database
from expdb.results import import_log

TARGET = 200_000


def write_json_log(path: Path, megabytes: float, seed: int = 0) -> int:
    """An MMDetection 2.x JSON log of about `megabytes`; returns the points expdb should keep from it."""
    rng = random.Random(seed)
    per_epoch, points, written = 7330, 0, 0
    limit = megabytes * 1_000_000
    with path.open("w") as handle:
        handle.write(json.dumps({"env_info": "sys.platform: linux", "seed": 0, "exp_name": "bench.py"}) + "\n")
        epoch = 1
        while written < limit:
            for inner in range(50, per_epoch + 1, 50):
                step = (epoch - 1) * per_epoch + inner
                loss = 0.1 + 2.0 / (1 + step / 1e6) + rng.gauss(0, 0.02)  # falls slowly, as a long run does
                row = {
                    "mode": "train", "epoch": epoch, "iter": inner, "lr": 0.02 * 0.5 * (1 + math.cos(step / 1e6)),
                    "memory": 3982, "data_time": round(rng.uniform(0.01, 0.1), 5),
                    "loss_rpn_cls": round(loss * 0.1, 5), "loss_rpn_bbox": round(loss * 0.05, 5),
                    "s0.loss_cls": round(loss * 0.3, 5), "s0.acc": round(rng.uniform(80, 99), 4),
                    "s0.loss_bbox": round(loss * 0.2, 5), "s1.loss_cls": round(loss * 0.15, 5),
                    "s1.acc": round(rng.uniform(80, 99), 4), "loss": round(loss, 5), "time": round(rng.uniform(0.4, 0.6), 5),
                }
                line = json.dumps(row) + "\n"
                handle.write(line)
                written += len(line)
                points += 12  # every number but mode, epoch and iter
            val = {"mode": "val", "epoch": epoch, "iter": per_epoch, "lr": 0.02, "bbox_mAP": 0.3, "bbox_mAP_50": 0.5}
            handle.write(json.dumps(val) + "\n")
            points += 2  # lr is the loop's, not a result
            epoch += 1
    return points


def write_event_folder(folder: Path, megabytes: float, seed: int = 0) -> int:
    """A TensorBoard event file of about `megabytes`, five scalars a step; returns how many scalars."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    rng = random.Random(seed)
    writer = EventFileWriter(str(folder), max_queue_size=10_000)
    limit, step, start = megabytes * 1_000_000, 0, time.time()
    tags = ("train/loss", "train/lr", "train/grad_norm", "train/acc", "val/acc")
    while True:
        step += 1
        loss = 2.0 * math.exp(-step / 500_000) + 0.1 + rng.gauss(0, 0.02)
        scalars = (loss, 1e-3, 5.0 + rng.random(), rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.8))
        values = [Summary.Value(tag=tag, simple_value=value) for tag, value in zip(tags, scalars, strict=True)]
        writer.add_event(Event(wall_time=start + step * 0.1, step=step, summary=Summary(value=values)))
        if step % 20_000 == 0:
            writer.flush()
            if sum(path.stat().st_size for path in folder.iterdir()) >= limit:
                break
    writer.close()
    return step * len(tags)


def timed_import(database: Path, source: Path, spec: str, expected: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one import."""
    with Database(str(database), create=True) as db:
        begun, cpu = time.perf_counter(), time.process_time()
        imported = import_log(db, str(source), spec, "bench")
        took, cpu = time.perf_counter() - begun, time.process_time() - cpu
    points = sum(run.points for run in imported.runs)
    assert points == expected, (points, expected)
    return took, cpu


def report(label: str, size: int, points: int, took: float, cpu: float) -> None:
    rate, cpu_rate = points / took, points / cpu
    verdict = "meets" if rate >= TARGET else "misses"
    print(
        f"{label}: {size / 1e6:,.0f} MB, {points:,} points in {took:.2f} s = {rate:,.0f} points/s ({verdict} {TARGET:,}/s); "
        f"CPU {cpu:.2f} s = {cpu_rate:,.0f} points per CPU-second"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-mb", type=float, default=100.0)
    parser.add_argument("--tensorboard-mb", type=float, default=200.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (others' work shares this machine)")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        log = folder / "20240407_120000.log.json"
        expected = write_json_log(log, args.json_mb)
        took, cpu = timed_import(folder / "json.db", log, "mmdet", expected)
        report("MMDetection .log.json", log.stat().st_size, expected, took, cpu)
        log.unlink()

        events = folder / "runs" / "bench"
        events.mkdir(parents=True)
        expected = write_event_folder(events, args.tensorboard_mb)
        size = sum(path.stat().st_size for path in events.iterdir())
        took, cpu = timed_import(folder / "tb.db", events, "tensorboard", expected)
        report("TensorBoard event folder", size, expected, took, cpu)
        rate = expected / took
        print(
            f"  1 GB of such events holds about {expected * 1e9 / size:,.0f} points: "
            f"about {expected * 1e9 / size / rate:,.0f} s at the rate measured (extrapolated, not measured)"
        )


if __name__ == "__main__":
    main()
