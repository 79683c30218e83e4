"""How fast `expdb plot` draws big curves.

    .venv/bin/python benchmarks/bench_plot.py [--runs 10] [--points 1000000]

Builds a database with RUNS cards, each with one finished run of POINTS `loss` points (with
samples logged) and a step-decayed `lr` logged every 1,000 steps, written as chunks in one
transaction. Then times `plot_curves` of all the runs to PNG with smoothing 0.9 against
samples (reading the curves, EMA on full resolution, min/max reduction, drawing, saving).
Target: < 5 s.
"""

import argparse
import sys
import tempfile
import time
from array import array
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from expdb.cards import Selection, create_card, select_cards
from expdb.db import Database
from expdb.plot import plot_curves
from expdb.runs import begin_run
from expdb.series import ChunkBuilder, Columns, build_chunks, write_chunks

TARGET_S = 5.0


def as_array(typecode: str, values: np.ndarray) -> array:
    column = array(typecode)
    column.frombytes(values.tobytes())
    return column


def build(path: Path, runs: int, points: int) -> None:
    rng = np.random.default_rng(0)
    with Database(str(path), create=True) as db:
        run_ids = []
        for index in range(runs):
            name = f"bench_{index}"
            create_card(db, name, {"batch": 8 * (index + 1)}, tags=["bs"])
            run = begin_run(db, name, device="cpu")
            run.end("finished")
            run_ids.append(run.id)
        steps = np.arange(points, dtype=np.int64)
        walls = steps * 0.05
        with db.transaction() as connection:
            for index, run_id in enumerate(run_ids):
                loss = 2.0 * np.exp(-steps / (points / 4)) + 0.1 + rng.normal(0, 0.05, points)
                loss[rng.integers(0, points, 5)] *= 50  # a few spikes for the reduction to keep
                columns = Columns(
                    as_array("q", steps),
                    as_array("d", walls),
                    None,
                    as_array("q", steps * 8 * (index + 1)),
                    True,
                )
                chunks = {"loss": ChunkBuilder(columns, as_array("d", loss))}
                lr_points = [
                    (int(step), None, None, float(step) * 0.05, {"lr": 1e-3 * (0.1 ** (step // (points // 3)))})
                    for step in range(0, points, 1000)
                ]
                chunks.update(build_chunks(lr_points))
                write_chunks(connection, run_id, chunks, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "plot.db"
        started = time.perf_counter()
        build(path, args.runs, args.points)
        print(f"built {args.runs} runs x {args.points:,} points in {time.perf_counter() - started:.1f} s")
        with Database(str(path)) as db:
            cards = select_cards(db, Selection(tag="bs"))
            output = Path(directory) / "bs.png"
            started = time.perf_counter()
            result = plot_curves(db, cards, ["loss"], output, x="samples", smooth=0.9, log_y=True)
            seconds = time.perf_counter() - started
        drawn = sum(line.drawn for line in result.lines)
        print(
            f"plot_curves: {len(result.lines)} runs x {args.points:,} points, smooth 0.9, --x samples, log-y -> PNG "
            f"({output.stat().st_size:,} bytes, {drawn:,} points drawn): {seconds:.2f} s "
            f"(target < {TARGET_S:.0f} s) {'PASS' if seconds < TARGET_S else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
