"""How long a slot of the local queue stays idle between one job's end and the next job's start.

    .venv/bin/python benchmarks/bench_queue.py [--cards 12] [--slots 4] [--seconds 1.0]

Queues `--cards` cards whose runner only sleeps `--seconds`, on `--slots` fake GPU slots
(CUDA_VISIBLE_DEVICES 0, 1, ...; nothing touches a GPU, so this runs on any machine), each
job a real `expdb run` child process. Per slot, the gap is from a run's end (its row's
ended_at) to the start of the next run on that slot (its row's started_at, once the
child has adopted its queued run; the queue starts each slot's next child while the slot's
job runs, so Python, expdb and the runner are loaded by then). Prints every gap,
their maximum and median against the 2 s target, and the queue's wall time against
the ideal. Prints figures; asserts nothing.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

TARGET_GAP_S = 2.0


def sleep(params, ctx):
    """The benchmark's runner (bench_queue:sleep): no work, so that only the queue's own cost is measured."""
    time.sleep(params["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=12)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0, help="how long each job sleeps")
    options = parser.parse_args()

    from expdb.cards import create_card
    from expdb.db import Database
    from expdb.queue import gpu_slots, queue_runs, run_arguments, run_queue

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as directory, Database(str(Path(directory) / "bench.db"), create=True) as db:
        targets = [
            create_card(db, f"sleep_{i:02d}", {"seconds": options.seconds}, runner="bench_queue:sleep")
            for i in range(options.cards)
        ]
        queued = queue_runs(db, targets, resume=False, launcher="local")
        started = time.perf_counter()
        result = run_queue(
            db, queued, gpu_slots([str(i) for i in range(options.slots)]),
            run_arguments(device="cpu", on_diverge="stop", profile_budget=0, seed=None), Path(directory) / "output",
        )
        wall = time.perf_counter() - started
        runs = db.query("SELECT env, started_at, ended_at, status FROM run ORDER BY started_at")

    by_slot: dict[str, list[tuple[float, float]]] = {}
    for env, run_started, run_ended, status in runs:
        if status != "finished":
            sys.exit(f"a run ended {status}: the benchmark needs every job to finish")
        by_slot.setdefault(json.loads(env)["cuda_visible_devices"], []).append((run_started, run_ended))
    gaps = []
    for slot, spans in sorted(by_slot.items()):
        slot_gaps = [later[0] - earlier[1] for earlier, later in pairwise(spans)]
        gaps.extend(slot_gaps)
        print(f"GPU {slot}: {len(spans)} jobs, gaps {', '.join(f'{gap:.2f}' for gap in slot_gaps) or '-'} s")
    print(f"{len(result.ends)} jobs of {options.seconds:g} s on {options.slots} slots ({os.cpu_count()} cores)")
    print(
        f"gap between one job's end and the next start on its slot: max {max(gaps):.2f} s, "
        f"median {statistics.median(gaps):.2f} s (target: under {TARGET_GAP_S:g} s)"
    )
    ideal = -(-options.cards // options.slots) * options.seconds
    print(f"queue wall time {wall:.2f} s; ideal {ideal:.2f} s of sleeping, so {wall - ideal:.2f} s of starting and ending jobs")


if __name__ == "__main__":
    main()
