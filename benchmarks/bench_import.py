"""How fast `expdb import` brings a run in: an MMDetection JSON log and a TensorBoard event folder.

    .venv/bin/python benchmarks/bench_import.py [--json-mb 100] [--tensorboard-mb 1000] [--compare-with CHECKOUT]

Generates, in a temporary folder (deleted at the end), an MMDetection 2.x `.log.json` of about
--json-mb MB (training lines with 12 numbers each, a validation line per epoch) and a TensorBoard
event folder of about --tensorboard-mb MB written by the `tensorboard` package's own EventFileWriter
the way `SummaryWriter.add_scalar` writes (an event per scalar, 5 scalars a step), then imports each
through `expdb.results.import_log` into a new SQLite database, in a child process, and prints for
each: wall and CPU time of the import (from the first byte read until the run is committed),
points/s (target >= 200,000), the child's peak RSS, and the load average before and after.
--compare-with imports the same files with another checkout of expdb too (its root on PYTHONPATH),
so that a before and an after are measured side by side under the same load.
"""

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    """A TensorBoard event file of about `megabytes`, five scalars a step, an event each (as
    SummaryWriter.add_scalar writes them); returns how many scalars."""
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
        wall = start + step * 0.1
        for tag, value in zip(tags, scalars, strict=True):
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(Event(wall_time=wall, step=step, summary=summary))
        if step % 20_000 == 0:
            writer.flush()
            if sum(path.stat().st_size for path in folder.iterdir()) >= limit:
                break
    writer.close()
    return step * len(tags)


CHILD = """
import json, sys, time
from expdb.db import Database
from expdb.results import import_log
with Database(sys.argv[1], create=True) as db:
    begun, cpu = time.perf_counter(), time.process_time()
    imported = import_log(db, sys.argv[2], sys.argv[3], "bench")
    took, cpu = time.perf_counter() - begun, time.process_time() - cpu
print(json.dumps({"points": sum(run.points for run in imported.runs), "wall": took, "cpu": cpu}))
"""


def timed_import(database: Path, source: Path, spec: str, checkout: str | None) -> dict:
    """Import `source` in a child process (with `checkout`'s expdb if given): points, wall, CPU, peak RSS."""
    env = dict(os.environ)
    if checkout:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(database), str(source), spec], stdout=subprocess.PIPE, env=env, text=True
    )
    out = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"the import of {source} failed (status {status})")
    database.unlink()
    return {**json.loads(out), "rss_mb": usage.ru_maxrss / 1024}


def report(label: str, size: int, expected: int, measured: dict) -> None:
    points, took, cpu = measured["points"], measured["wall"], measured["cpu"]
    counted = "" if points == expected else f" (expected {expected:,}: MISCOUNTED)"
    rate, cpu_rate = points / took, points / cpu
    verdict = "meets" if rate >= TARGET else "misses"
    print(
        f"{label}: {size / 1e6:,.0f} MB, {points:,} points{counted}; wall {took:.1f} s = {rate:,.0f} points/s "
        f"({verdict} {TARGET:,}/s); CPU {cpu:.1f} s = {cpu_rate:,.0f} points per CPU-second; "
        f"peak RSS {measured['rss_mb']:,.0f} MB; load {load()}"
    )


def load() -> str:
    return "/".join(f"{figure:.1f}" for figure in os.getloadavg()) + f" on {os.cpu_count()} cores"


def measure(label: str, source: Path, spec: str, size: int, expected: int, scratch: Path, others: list[str]) -> None:
    print(f"{label}: load before {load()}")
    for checkout in [None, *others]:
        name = f"{label} ({'this checkout' if checkout is None else checkout})"
        report(name, size, expected, timed_import(scratch / "bench.db", source, spec, checkout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-mb", type=float, default=100.0)
    parser.add_argument("--tensorboard-mb", type=float, default=1000.0)
    parser.add_argument("--compare-with", action="append", default=[], metavar="CHECKOUT",
                        help="another expdb checkout's root, imported with too (a before to compare with)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if args.json_mb > 0:
            log = folder / "20240407_120000.log.json"
            expected = write_json_log(log, args.json_mb)
            measure("MMDetection .log.json", log, "mmdet", log.stat().st_size, expected, folder, args.compare_with)
            log.unlink()
        if args.tensorboard_mb > 0:
            events = folder / "runs" / "bench"
            events.mkdir(parents=True)
            begun = time.perf_counter()
            expected = write_event_folder(events, args.tensorboard_mb)
            size = sum(path.stat().st_size for path in events.iterdir())
            print(f"wrote {size / 1e6:,.0f} MB of events in {time.perf_counter() - begun:,.0f} s")
            measure("TensorBoard event folder", events, "tensorboard", size, expected, folder, args.compare_with)


if __name__ == "__main__":
    main()
