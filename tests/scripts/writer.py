"""One of many processes logging into one database at once.

    python writer.py DB CARD STEPS SECONDS READY_FILE GO_FILE

Starts a run of CARD, creates READY_FILE, waits for GO_FILE, then logs STEPS steps of the
five scalars `scalars(CARD, STEPS)` (5 points a step), spread evenly over SECONDS as a
training loop would log them, and ends the run.
"""

import math
import random
import sys
import time
from pathlib import Path

import expdb

KEYS = ("loss", "lr", "grad_norm", "acc", "iou")  # the order of each row of `scalars`
BURST = 100  # steps logged between two looks at the clock


def scalars(card: str, steps: int) -> list[tuple[float, ...]]:
    """The values each writer logs, step by step: training-like, full-precision, different per card."""
    rng = random.Random(card)
    return [
        (
            1.0 / (1 + step / 1000) + 0.1 * rng.random(),
            4e-3 * 0.5 * (1 + math.cos(math.pi * step / steps)),
            5.0 + rng.random(),
            rng.random(),
            rng.random(),
        )
        for step in range(steps)
    ]


def main() -> None:
    database, card, steps, seconds, ready_file, go_file = sys.argv[1:7]
    steps, seconds = int(steps), float(seconds)
    values = scalars(card, steps)
    with expdb.start(card, db=database) as run:
        Path(ready_file).touch()
        while not Path(go_file).exists():
            time.sleep(0.001)
        started = time.monotonic()
        for step, row in enumerate(values):
            if step % BURST == 0:
                time.sleep(max(0.0, started + seconds * step / steps - time.monotonic()))
            loss, lr, grad_norm, acc, iou = row
            run.log(step, loss=loss, lr=lr, grad_norm=grad_norm, acc=acc, iou=iou)


if __name__ == "__main__":
    main()
