"""What a framework integration costs the training thread per step, next to `run.log` with the same scalars.

    .venv/bin/python benchmarks/bench_integrations.py [--calls 20000] [--repeats 7]

Each step logs 5 scalars and the epoch, as the framework hands them over: Lightning's
`ExpdbLogger.log_metrics(metrics, step)`, the HF Trainer's `ExpdbCallback.on_log(args, state,
control, logs)` and MMEngine's `ExpdbVisBackend.add_scalars(tag, step)`, each called directly as
its framework calls it (the framework's own work is not counted). The dicts are built before the
clock starts, for `run.log` too. Target: each integration within 2x of `run.log`. The repeats
take turns, so that a slow moment of a shared machine falls on all of them. The fastest repeat is
the cost with the least disturbance from other processes (timeit's convention), and the verdict;
the median is printed beside it.
"""

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import expdb


def steps(calls: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [
        {
            "loss": 2.0 * math.exp(-step / (calls / 4)) + 0.1 + rng.gauss(0, 0.05),
            "lr": 4e-3 * 0.5 * (1 + math.cos(math.pi * step / calls)),
            "grad_norm": abs(rng.gauss(5, 1)),
            "acc": rng.random(),
            "iou": rng.random(),
        }
        for step in range(calls)
    ]


def per_call_us(loop, calls: int) -> float:
    """CPU time of the training thread per call: what the step costs it, not the time other threads and
    processes of a shared machine take meanwhile (the run's flusher does the same work for every integration)."""
    started = time.thread_time()
    loop()
    return (time.thread_time() - started) / calls * 1e6


def bench_run_log(db: str, rows: list[dict]) -> float:
    with expdb.start("bench_run_log", db=db) as run:
        epoch = 0.0

        def loop():
            log = run.log
            for step, row in enumerate(rows):
                log(step, epoch=epoch, **row)

        return per_call_us(loop, len(rows))


def bench_lightning(db: str, rows: list[dict]) -> float:
    from expdb.integrations.lightning import ExpdbLogger

    logger = ExpdbLogger("bench_lightning", db=db, profile_budget_s=0)
    metrics = [{**row, "epoch": 0} for row in rows]
    logger.log_hyperparams({"lr": 4e-3})  # as Lightning begins training: the run begins
    try:
        def loop():
            log = logger.log_metrics
            for step, row in enumerate(metrics):
                log(row, step)

        return per_call_us(loop, len(rows))
    finally:
        logger.finalize("success")


def bench_hf(db: str, rows: list[dict]) -> float:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from expdb.integrations.hf import ExpdbCallback

    callback = ExpdbCallback("bench_hf", db=db)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none", use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    logs = [{**row, "epoch": step / len(rows)} for step, row in enumerate(rows)]
    callback.on_train_begin(args, state, control)
    try:
        def loop():
            on_log = callback.on_log
            for step, row in enumerate(logs):
                state.global_step = step
                on_log(args, state, control, logs=row)

        return per_call_us(loop, len(rows))
    finally:
        callback.on_train_end(args, state, control)


def bench_mmengine(db: str, rows: list[dict]) -> float:
    from mmengine.config import Config

    from expdb.integrations.mmengine import ExpdbVisBackend

    backend = ExpdbVisBackend(None, card="bench_mmengine", db=db)
    backend.add_config(Config({"optim_wrapper": {"optimizer": {"lr": 4e-3}}}))  # as the Runner starts: the run begins
    tags = [{**row, "epoch": 1, "iter": step + 1} for step, row in enumerate(rows)]
    try:
        def loop():
            add_scalars = backend.add_scalars
            for step, tag in enumerate(tags):
                add_scalars(tag, step=step + 1)

        return per_call_us(loop, len(rows))
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    rows = steps(options.calls)
    benches = {"run.log": bench_run_log, "lightning": bench_lightning, "hf": bench_hf, "mmengine": bench_mmengine}
    times: dict[str, list[float]] = {name: [] for name in benches}
    with tempfile.TemporaryDirectory() as directory:
        for repeat in range(options.repeats):
            for name, bench in benches.items():
                times[name].append(bench(str(Path(directory) / f"{name}-{repeat}.db"), rows))
    baseline, baseline_median = min(times["run.log"]), statistics.median(times["run.log"])
    print(f"{options.calls:,} steps of 5 scalars and the epoch, {options.repeats} repeats: fastest (median)")
    for name, measured in times.items():
        fastest, median = min(measured), statistics.median(measured)
        verdict = ""
        if name != "run.log":
            ratio = fastest / baseline
            verdict = f"{ratio:4.2f}x run.log ({median / baseline_median:.2f}x)  target <= 2x  {'PASS' if ratio <= 2 else 'FAIL'}"
        print(f"{name:10} {fastest:6.2f} us/step ({median:6.2f})  {verdict}")


if __name__ == "__main__":
    main()
