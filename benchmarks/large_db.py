"""Build a large, realistic expdb database quickly, for benchmarks.

What it makes (deterministic for a given N and seed):
  * N cards (default 10,000), each with 20 typed parameters (ints, floats, bools, strings
    and one list), e.g. N in 0..12, L in 1..12, shape bdhw/bndhw, shared, lr 4e-3, seed, ...
    About 3 % are root cards; the rest are forks of an earlier card (mostly a recent one)
    that inherit its parameters and change one to three of them, as `expdb new --from` does.
  * one finished run per card with five metrics (iou50, miou, loss, val_loss, acc);
  * a profile row (params_total, flops, cost_time_ms) for about 30 % of the runs;
  * a tag on about 10 % of the cards.

It writes through the library's schema: `expdb.db.Database(path, create=True)` runs the
migrations, then rows are bulk-inserted with `executemany` inside one `db.transaction()`;
parameters are JSON text as written by `expdb.values.dumps`. 10,000 cards take about a second.

Run it from the repository root:

    .venv/bin/python benchmarks/large_db.py [PATH] [--cards N] [--seed S] [--force]

(PATH defaults to ./large.db.) Or from Python: `build_database(path, cards=10_000)`.
"""

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from expdb import values
from expdb.db import Database, new_uid

DEFAULT_CARDS = 10_000
DEFAULT_SEED = 20240607
T0 = 1_700_000_000.0  # the first card's creation time (Nov 2023)
ROOT_FRACTION = 0.03
PROFILE_FRACTION = 0.30
TAG_FRACTION = 0.10
METRIC_KEYS = ("iou50", "miou", "loss", "val_loss", "acc")
TAGS = ("ablation", "baseline", "paper", "sweep", "rerun")
RUNNERS = ("train:main", "cvt.train:run", "seg.train:fit")

# The 20 parameters: name -> how to draw a value. Insertion order is the order shown.
PARAM_SPACE = {
    "N": lambda r: r.randint(0, 12),
    "L": lambda r: r.randint(1, 12),
    "shape": lambda r: r.choice(["bdhw", "bndhw"]),
    "shared": lambda r: r.random() < 0.5,
    "lr": lambda r: r.choice([1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 4e-3, 1e-2]),
    "seed": lambda r: r.randint(0, 9),
    "batch": lambda r: r.choice([8, 16, 32, 64]),
    "epochs": lambda r: r.choice([50, 100, 200, 300]),
    "wd": lambda r: r.choice([0.0, 1e-5, 1e-4, 5e-2]),
    "dropout": lambda r: r.choice([0.0, 0.1, 0.2, 0.3]),
    "optimizer": lambda r: r.choice(["adamw", "adamw", "sgd", "lion"]),
    "scheduler": lambda r: r.choice(["cosine", "step", "onecycle"]),
    "warmup": lambda r: r.choice([0, 500, 1000, 2000]),
    "heads": lambda r: r.choice([1, 2, 4, 8]),
    "dim": lambda r: r.choice([64, 96, 128, 192, 256]),
    "norm": lambda r: r.choice(["bn", "ln", "gn"]),
    "act": lambda r: r.choice(["relu", "gelu", "silu"]),
    "residual": lambda r: r.random() < 0.8,
    "grad_clip": lambda r: r.choice([0.5, 1.0, 5.0]),
    "kernel": lambda r: r.choice([[3, 3], [3, 5], [5, 5], [3, 5, 7]]),
}
assert len(PARAM_SPACE) == 20


def _random_params(rng: random.Random) -> dict:
    return {key: draw(rng) for key, draw in PARAM_SPACE.items()}


def _fork_params(rng: random.Random, parent: dict) -> dict:
    """The parent's parameters with one to three of them changed (to a different value)."""
    params = dict(parent)
    for key in rng.sample(list(PARAM_SPACE), rng.choice([1, 1, 1, 2, 2, 3])):
        for _ in range(10):
            value = PARAM_SPACE[key](rng)
            if not values.same(value, params[key]):
                break
        params[key] = value
    return params


def _metrics(rng: random.Random, params: dict) -> dict[str, float]:
    """Plausible numbers that depend a little on the parameters, rounded like real logs."""
    quality = 0.55 + 0.015 * params["N"] + 0.01 * params["L"] + (0.02 if params["shared"] else 0.0)
    quality = min(quality + rng.gauss(0, 0.03), 0.99)
    loss = max(0.02, 1.2 - quality + rng.gauss(0, 0.02))
    return {
        "iou50": round(quality, 4),
        "miou": round(quality * 0.8 + rng.gauss(0, 0.01), 4),
        "loss": round(loss, 5),
        "val_loss": round(loss * 1.1 + abs(rng.gauss(0, 0.02)), 5),
        "acc": round(min(quality + 0.1 + rng.gauss(0, 0.01), 0.999), 4),
    }


def rare_where(cards: list[dict], target: int) -> tuple[str, int]:
    """An `N=a and L=b` expression whose combination is rare: the one selecting closest to `target` cards."""
    counts = Counter((params["N"], params["L"]) for params in cards)
    (n, depth), count = min(counts.items(), key=lambda item: (abs(item[1] - target), item[0]))
    return f"N={n} and L={depth}", count


def _insert_runs(connection, runs: list[dict]) -> None:
    """Runs into whichever `run` table this schema has: host, device and seed go to their own
    columns where the schema has them, and into the env JSON where it does not."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(run)")}
    direct = [key for key in runs[0] if key in columns]
    folded = [key for key in runs[0] if key not in columns]
    names = [*direct, "env"]
    connection.executemany(
        f"INSERT INTO run ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [
            (*(run[key] for key in direct), json.dumps({key: run[key] for key in folded}, separators=(",", ":")))
            for run in runs
        ],
    )


def build_database(
    path: str | Path, cards: int = DEFAULT_CARDS, seed: int = DEFAULT_SEED, overwrite: bool = False
) -> dict:
    """Write a new database of `cards` cards at `path`; returns a summary (counts, a rare --where, timing)."""
    started = time.perf_counter()
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
    rng = random.Random(seed)

    card_rows, run_rows, metric_rows, profile_rows, tag_rows = [], [], [], [], []
    all_params: list[dict] = []
    for index in range(cards):
        card_id = index + 1
        created = T0 + index * 600.0 + rng.random() * 60
        if index == 0 or rng.random() < ROOT_FRACTION:
            parent_id = None
            params = _random_params(rng)
            runner = rng.choice(RUNNERS)
        else:
            # Mostly forks of a recent card, sometimes of an old one: a deep, bushy tree.
            low = max(0, index - 50) if rng.random() < 0.8 else 0
            parent_index = rng.randrange(low, index)
            parent_id = parent_index + 1
            params = _fork_params(rng, all_params[parent_index])
            runner = card_rows[parent_index][4]
        all_params.append(params)
        card_rows.append(
            (card_id, new_uid(), f"cvt_io_v{index // 1000 + 1}_{index:05d}", parent_id, runner, values.dumps(params), created)
        )

        run_id = card_id  # one run per card
        run_start = created + 30 + rng.random() * 3600
        run_end = run_start + 1800 + rng.random() * 36000
        host = f"gpu{rng.randint(1, 8):02d}"
        run_rows.append(
            {
                "id": run_id,
                "uid": new_uid(),
                "card_id": card_id,
                "status": "finished",
                "started_at": run_start,
                "ended_at": run_end,
                "heartbeat_at": run_end,
                "exit_reason": "completed",
                "command": f"expdb run {card_rows[-1][2]}",
                "host": host,
                "device": "cuda:0",
                "seed": params["seed"],
            }
        )
        metric_rows.extend((run_id, key, value) for key, value in _metrics(rng, params).items())
        if rng.random() < PROFILE_FRACTION:
            params_total = int(params["dim"] ** 2 * (params["N"] + params["L"] + 1) * 12 + rng.randint(0, 999))
            profile_rows.append(
                (
                    new_uid(),
                    card_id,
                    run_id,
                    created,
                    params_total,
                    params_total,
                    float(params_total * 410 + rng.randint(0, 10**6)),
                    "fvcore",
                    round(5 + params_total / 2e4 + rng.random(), 2),
                    1,
                    "1x3x224x224",
                    "float32",
                    "cuda:0",
                    10,
                    100,
                    "{}",
                )
            )
        if rng.random() < TAG_FRACTION:
            tag_rows.append((card_id, rng.choice(TAGS)))
    generated = time.perf_counter()

    with Database(str(path), create=True) as db:
        migrated = time.perf_counter()
        with db.transaction() as connection:
            connection.executemany(
                "INSERT INTO card (id, uid, name, parent_id, runner, params, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                card_rows,
            )
            _insert_runs(connection, run_rows)
            connection.executemany("INSERT INTO metric (run_id, key, value) VALUES (?, ?, ?)", metric_rows)
            connection.executemany(
                "INSERT INTO profile (uid, card_id, run_id, created_at, params_total, params_trainable, flops, flops_counter, "
                "cost_time_ms, batch, input_shape, dtype, device, warmup, iterations, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                profile_rows,
            )
            connection.executemany("INSERT INTO tag (card_id, name) VALUES (?, ?)", tag_rows)
        db.connection.execute("ANALYZE")
        db.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one self-contained file
    finished = time.perf_counter()

    where, where_count = rare_where(all_params, max(1, round(cards * 0.005)))
    return {
        "path": str(path),
        "cards": len(card_rows),
        "forks": sum(1 for row in card_rows if row[2] is not None),
        "runs": len(run_rows),
        "metrics": len(metric_rows),
        "profiles": len(profile_rows),
        "tags": len(tag_rows),
        "rare_where": where,
        "rare_where_count": where_count,
        "bytes": path.stat().st_size,
        "seconds_generate": generated - started,
        "seconds_migrate": migrated - generated,
        "seconds_insert": finished - migrated,
        "seconds_total": finished - started,
    }


def build_seeded_database(path: str | Path, variants: int = 2_000, seeds: int = 5, seed: int = DEFAULT_SEED) -> dict:
    """A study of `variants` settings (20 parameters each, all distinct) run with `seeds` seeds each: the
    cards `expdb table --over seed` folds, one row per variant. Returns the counts and the seconds taken."""
    started = time.perf_counter()
    path = Path(path)
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    rng = random.Random(seed)
    card_rows, run_rows, metric_rows = [], [], []
    settings: set[str] = set()
    while len(settings) < variants:
        params = _random_params(rng)
        params["seed"] = 0
        key = values.dumps(params)
        if key in settings:
            continue
        settings.add(key)
        for repeat in range(seeds):
            card_id = len(card_rows) + 1
            params = {**params, "seed": repeat}
            name = f"v{len(settings):05d}_seed{repeat}"
            card_rows.append((card_id, new_uid(), name, None, "train:main", values.dumps(params), T0 + card_id))
            run_rows.append({"id": card_id, "uid": new_uid(), "card_id": card_id, "status": "finished", "seed": repeat})
            metric_rows.extend((card_id, key, value) for key, value in _metrics(rng, params).items())
    with Database(str(path), create=True) as db:
        with db.transaction() as connection:
            connection.executemany(
                "INSERT INTO card (id, uid, name, parent_id, runner, params, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                card_rows,
            )
            _insert_runs(connection, run_rows)
            connection.executemany("INSERT INTO metric (run_id, key, value) VALUES (?, ?, ?)", metric_rows)
        db.connection.execute("ANALYZE")
        db.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"cards": len(card_rows), "variants": variants, "seeds": seeds, "seconds_total": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", default="large.db", help="the database file to create [large.db]")
    parser.add_argument("--cards", type=int, default=DEFAULT_CARDS, help=f"how many cards [{DEFAULT_CARDS}]")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--force", action="store_true", help="replace the file if it exists")
    args = parser.parse_args(argv)
    if args.cards < 1:
        parser.error("--cards must be at least 1")
    try:
        summary = build_database(args.path, cards=args.cards, seed=args.seed, overwrite=args.force)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {summary['path']}: {summary['cards']:,} cards ({summary['forks']:,} forks), {summary['runs']:,} runs, "
        f"{summary['metrics']:,} metrics, {summary['profiles']:,} profiles, {summary['tags']:,} tags; "
        f"{summary['bytes'] / 1e6:.1f} MB in {summary['seconds_total']:.2f} s "
        f"(generate {summary['seconds_generate']:.2f}, migrate {summary['seconds_migrate']:.2f}, "
        f"insert {summary['seconds_insert']:.2f})"
    )
    print(f"a rare --where: {summary['rare_where']!r} selects {summary['rare_where_count']} cards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
