"""The study the UI tests look at: the example study, plus cards with curves (curve_c diverges, all have an lr drop)."""

import math
import shutil
import struct
import zlib
from pathlib import Path

import expdb
from expdb import cards
from expdb.attachments import attach
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


SEED_VARIANTS = {"fold_lr1": 1e-3, "fold_lr2": 2e-3}  # each run with seeds 0, 1, 2
SEED_POINTS = 500
JITTER = {"fold_lr1": (0.0, 0.006, 0.003), "fold_lr2": (0.004, 0.005, 0.012)}  # iou50 by seed
EVIL_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><script>window.pwned=3</script>'
    b'<rect width="40" height="20" fill="#2a7"/></svg>'
)

EVIL = {
    "param": "<img src=x onerror=window.pwned=6>",
    "curve": "<img src=x onerror=window.pwned=7>",
    "metric": "acc<script>window.pwned=8</script>",
}


def tiny_png(width: int = 48, height: int = 24) -> bytes:
    """A PNG of two colours, written by hand (no imaging library needed)."""
    rows = b"".join(b"\x00" + (b"\xd6\x27\x28" * (width // 2) + b"\x1f\x77\xb4" * (width - width // 2)) for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def build_seed_study(path: Path) -> Path:
    """`build_study`, plus two variants of three seeds each (tag `seeds`; fold_lr2 is better), an invalid
    card among them, and attachments on fold_lr1_seed0: a PNG, an SVG holding a script, an HTML file, a config."""
    build_study(path)
    with Database(str(path)) as db:
        for variant, lr in SEED_VARIANTS.items():
            for seed in range(3):
                cards.create_card(db, f"{variant}_seed{seed}", {"lr": lr, "seed": seed})
        cards.create_card(db, "fold_bad", {"lr": 5e-3, "seed": 0})
    for variant, lr in SEED_VARIANTS.items():
        for seed in range(3):
            with expdb.start(f"{variant}_seed{seed}", db=str(path), system_metrics=False) as run:
                for step in range(SEED_POINTS):
                    noise = 0.05 * math.sin(step / 5 + seed * 1.3)  # not cancelling out in the mean
                    run.log(step, loss=1.5 * math.exp(-step / 150) + lr * 100 + noise)
                run.summary(iou50=0.30 + lr * 20 + JITTER[variant][seed])
    with expdb.start("fold_bad", db=str(path), system_metrics=False) as run:
        run.log(0, loss=9.0)
        run.summary(iou50=0.9)
    files = path.parent / "attached"
    files.mkdir(exist_ok=True)
    (files / "curve.png").write_bytes(tiny_png())
    (files / "drawing.svg").write_bytes(EVIL_SVG)
    (files / "page.html").write_text("<script>window.pwned=4</script>")
    (files / "config.py").write_text("lr = 1e-3\n")
    with Database(str(path)) as db:
        cards.tag_card(db, "fold_bad", ["seeds"])
        for variant in SEED_VARIANTS:
            for seed in range(3):
                cards.tag_card(db, f"{variant}_seed{seed}", ["seeds"])
        cards.invalidate_card(db, "fold_bad", "the <b>eval</b> set leaked into training")
        attach(db, "fold_lr1_seed0", files / "curve.png", note="the loss, drawn by hand")
        attach(db, "fold_lr1_seed0", files / "drawing.svg", note="an SVG with a script")
        attach(db, "fold_lr1_seed0", files / "page.html")
        attach(db, "fold_lr1_seed0", files / "config.py", note="the training config")
    return path


def build_markup_study(path: Path) -> Path:
    """Two cards, `evil_strings` (tag `evil`) with markup in every place a user writes it (a card name cannot
    hold any): a parameter value, a curve key as an imported log may bring it, a metric key; and `plain`."""
    with Database(str(path), create=True) as db:
        cards.create_card(db, "plain", {"act": "relu"})
    with expdb.start("evil_strings", db=str(path), system_metrics=False, act=EVIL["param"]) as run:
        for step in range(3):
            run.log(step, **{EVIL["curve"]: 1.0 / (step + 1)})
        run.summary(**{EVIL["metric"]: 0.5})
    with expdb.start("plain", db=str(path), system_metrics=False) as run:
        run.summary(**{EVIL["metric"]: 0.25})
    with Database(str(path)) as db:
        cards.tag_card(db, "evil_strings", ["evil"])
    return path
