"""The study the UI tests look at: the example study, plus cards with curves (curve_c diverges, all have an lr drop)."""

import math
import shutil
from pathlib import Path

import expdb
from expdb import cards
from expdb.db import Database

EXAMPLE_DB = Path(__file__).resolve().parent.parent / "experiments.db.example"
CURVE_CARDS = ("curve_a", "curve_b", "curve_c")
CURVE_POINTS = 3000


def build_study(path: Path) -> Path:
    """The example database copied to `path`, with three runs of `loss` and `lr` curves; curve_c's loss explodes at step 2,000."""
    shutil.copy(EXAMPLE_DB, path)
    for index, name in enumerate(CURVE_CARDS):
        with expdb.start(name, db=str(path), lr=1e-3 * (index + 1), batch=16) as run:
            for step in range(CURVE_POINTS):
                loss = 2.0 * math.exp(-step / 800) + 0.1 * (index + 1) + 0.02 * math.sin(step / 7)
                if name == "curve_c" and step >= 2000:
                    loss = 100.0 * (step - 1990)  # explodes: expdb notes the divergence and stops the run
                lr = 1e-3 * (index + 1) * (0.1 if step >= 1500 else 1.0)
                run.log(step, epoch=step / 1000, loss=loss, lr=lr)
            run.summary(iou50=0.3 + 0.01 * index)
    with Database(str(path)) as db:
        cards.tag_card(db, "curve_a", ["sweep"])
        cards.tag_card(db, "curve_b", ["sweep"])
    return path
