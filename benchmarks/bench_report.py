"""How fast `expdb report` writes up a study.

    .venv/bin/python benchmarks/bench_report.py [--cards 50] [--points 2000]

Builds a database with CARDS cards (tag `bench`, one note each, `lr` differing), each with
one finished run that logged POINTS steps of three curves (`loss`, `lr`, `grad_norm`) through
`run.log`, and an `iou50` summary. Then times `write_report` of all the cards to markdown
with three plots (the comparison table, the sections, three PNGs), and once more as LaTeX.
Target: < 15 s for the markdown report.
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from expdb.cards import Selection, create_card, select_cards
from expdb.db import Database
from expdb.report import write_report
from expdb.runs import begin_run

TARGET_S = 15.0
CURVES = ["loss", "lr", "grad_norm"]


def build(path: Path, cards: int, points: int) -> None:
    with Database(str(path), create=True) as db:
        for index in range(cards):
            name = f"bench_{index:02d}"
            lr = 1e-3 * (1 + index % 5)
            create_card(db, name, {"N": 5, "L": 6, "lr": lr, "seed": index}, tags=["bench"], note=f"lr sweep, seed {index}")
            run = begin_run(db, name, device="cpu")
            for step in range(points):
                decay = math.exp(-step / (points / 4))
                run.log(step, loss=2.0 * decay + 0.1 + 0.01 * math.sin(step + index), lr=lr * decay, grad_norm=1.0 + decay)
            run.summary(iou50=0.30 + 0.001 * index)
            run.end("finished")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=50)
    parser.add_argument("--points", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "report.db"
        started = time.perf_counter()
        build(path, args.cards, args.points)
        built_s = time.perf_counter() - started
        print(f"built {args.cards} cards x {len(CURVES)} curves x {args.points:,} points in {built_s:.1f} s")
        with Database(str(path)) as db:
            cards = select_cards(db, Selection(tag="bench"))
            output = Path(directory) / "bench.md"
            started = time.perf_counter()
            written = write_report(db, cards, output, metrics=["iou50"], curves=CURVES, smooth=0.6, title="Learning-rate sweep")
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            write_report(db, cards, Path(directory) / "bench.tex", metrics=["iou50"], format="latex")
            latex_seconds = time.perf_counter() - started
        sizes = ", ".join(f"{file.name} {file.stat().st_size:,} B" for file in written)
        print(f"write_report latex: {latex_seconds:.2f} s")
        print(
            f"write_report md: {len(cards)} cards, {len(CURVES)} plots ({sizes}): {seconds:.2f} s "
            f"(target < {TARGET_S:.0f} s) {'PASS' if seconds < TARGET_S else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
