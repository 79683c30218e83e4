"""How long the training-trouble detectors take on a long imported curve.

    .venv/bin/python benchmarks/bench_divergence.py [--points 1000000] [--repeat 5]

Prints, against the target of the training-trouble issue (a 1,000,000-point imported curve is
checked in under 0.5 s), the best and median time of the detectors on the curve as an import gives
it to them (steps and values as arrays, as `build_chunks` makes them), then the trend check:
- a healthy curve (a fast start, a slow decline, 30% batch noise, a learning rate alongside);
- a curve that turns back up after its best, which the trend check must find;
- a curve that explodes half-way, examined step by step from there.
The curves are built before the clock starts; the time is the detectors' alone. The load of the
machine is printed with them: on a shared 2-core machine it scales every figure.
"""

import argparse
import math
import os
import random
import statistics
import time
from array import array

from expdb.divergence import Divergence, DivergenceDetector


def curves(points: int, shape: str) -> dict[str, tuple[array, array]]:
    rng = random.Random(0)
    losses = array("d")
    for i in range(points):
        loss = 0.6 + 2.0 * math.exp(-i / (points / 100)) + 0.4 * math.exp(-i / (points / 2))
        if shape == "rising" and i > points // 2:
            loss *= 1 + (i - points // 2) / points
        if shape == "exploding" and i > points // 2:
            loss *= 1e6
        losses.append(loss * rng.uniform(0.7, 1.3))
    steps = array("q", range(points))
    return {"loss": (steps, losses), "lr": (steps, array("d", [0.02]) * points)}


def check(found: dict[str, tuple[array, array]]) -> list[Divergence]:
    detector = DivergenceDetector()
    return detector.feed(found) + detector.trend_events(final=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{args.points:,} points of loss (and as many of lr), {args.repeat} times each; load average {load}")
    for shape in ("healthy", "rising", "exploding"):
        built = curves(args.points, shape)
        times, found = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            found = check(built)
            times.append(time.perf_counter() - started)
        kinds = ", ".join(event.kind for event in found) or "nothing"
        print(f"  {shape:9}  best {min(times):.3f} s  median {statistics.median(times):.3f} s  (found: {kinds})")
    print("target: under 0.5 s")


if __name__ == "__main__":
    main()
