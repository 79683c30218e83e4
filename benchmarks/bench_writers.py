"""Metric ingest from 8 writer processes into one database: PostgreSQL and SQLite, side by side.

    .venv/bin/python benchmarks/bench_writers.py [--postgres URL] [--repeat 5]

A point is one scalar at one step, as in bench_log.py: each writer logs 20,000 steps of
5 scalars, 100,000 points, as fast as it can through `expdb.start`. The clock starts when
every writer is ready (expdb imported, its run started, its values made: a barrier) and
stops when the last one has ended its run (every point flushed and committed); points/s
is all the writers' points over that time. Target of the scale-out issue: PostgreSQL at
least 200,000 points/s in total.

PostgreSQL: the server of --postgres URL or $EXPDB_BENCH_POSTGRES, on which each repetition
gets a fresh database (created through URL's database, dropped afterwards). Without one,
SQLite only. Each repetition gets a fresh SQLite file too.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_log import training_like  # the scalars bench_log.py logs

import expdb
from expdb.db import Database

WAIT_S = 600  # a writer that takes longer than this has hung: give up


def writer(location: str, directory: str, card: str, steps: int, seed: int, all_ready, ended) -> None:
    """One writer process: start a run, wait for the others, log every step, end the run, say when."""
    os.chdir(directory)  # a run on PostgreSQL keeps its log file in expdb_runs/ here
    scalars = training_like(steps, seed)
    with expdb.start(card, db=location) as run:
        all_ready.wait(WAIT_S)
        for step, (loss, lr, grad_norm, acc, iou) in enumerate(scalars):
            run.log(step, loss=loss, lr=lr, grad_norm=grad_norm, acc=acc, iou=iou)
    ended.put(time.time())


def ingest_seconds(location: str, directory: str, writers: int, steps: int) -> float:
    """From all writers ready until the last one's run has ended, into the existing database `location`;
    the writers work in `directory`."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as separate training scripts are
    all_ready, ended = context.Barrier(writers + 1), context.Queue()
    processes = [
        context.Process(target=writer, args=(location, directory, f"writer_{number}", steps, number, all_ready, ended))
        for number in range(writers)
    ]
    for process in processes:
        process.start()
    all_ready.wait(WAIT_S)
    started = time.time()
    last_end = max(ended.get(timeout=WAIT_S) for _ in processes)
    for process in processes:
        process.join(WAIT_S)
        if process.exitcode != 0:
            sys.exit(f"a writer failed (exit code {process.exitcode}); its error is above")
    return last_end - started


def admin_connection(url: str):
    import psycopg

    return psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True)


def server_settings(url: str) -> str:
    with admin_connection(url) as connection:
        fsync = connection.execute("SHOW fsync").fetchone()[0]
        synchronous_commit = connection.execute("SHOW synchronous_commit").fetchone()[0]
    return f"fsync={fsync}, synchronous_commit={synchronous_commit}"


def postgres_seconds(url: str, writers: int, steps: int) -> float:
    name = f"expdb_bench_writers_{os.getpid()}"
    with admin_connection(url) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
    location = url.rsplit("/", 1)[0] + "/" + name
    try:
        Database(location, create=True).close()
        with tempfile.TemporaryDirectory() as directory:
            return ingest_seconds(location, directory, writers, steps)
    finally:
        with admin_connection(url) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sqlite_seconds(writers: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        location = str(Path(directory) / "writers.db")
        Database(location, create=True).close()
        return ingest_seconds(location, directory, writers, steps)


def summary(label: str, rates: list[float]) -> str:
    return f"{label:<11} median {statistics.median(rates):>9,.0f} points/s   range {min(rates):,.0f} - {max(rates):,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("EXPDB_BENCH_POSTGRES"),
                        help="a PostgreSQL server's URL, postgresql+psycopg://USER@HOST:PORT/DB (default: $EXPDB_BENCH_POSTGRES)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20_000, help="steps of 5 scalars each writer logs")
    args = parser.parse_args()
    points = args.writers * args.steps * 5

    print(f"{args.writers} writers x {args.steps * 5:,} points ({args.steps:,} steps x 5 scalars), "
          f"{args.repeat} repetitions, {os.cpu_count()} CPUs")
    if args.postgres:
        print(f"PostgreSQL: {args.postgres} ({server_settings(args.postgres)})")
    else:
        print("PostgreSQL: not measured; give a server with --postgres URL or EXPDB_BENCH_POSTGRES=URL")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sqlite_rates, postgres_rates = [], []
    for repetition in range(1, args.repeat + 1):
        sqlite_rates.append(points / sqlite_seconds(args.writers, args.steps))
        line = f"repetition {repetition}: SQLite {sqlite_rates[-1]:>9,.0f} points/s"
        if args.postgres:
            postgres_rates.append(points / postgres_seconds(args.postgres, args.writers, args.steps))
            line += f"   PostgreSQL {postgres_rates[-1]:>9,.0f} points/s"
        print(line, flush=True)
    print(summary("SQLite", sqlite_rates))
    if postgres_rates:
        median = statistics.median(postgres_rates)
        print(f"{summary('PostgreSQL', postgres_rates)}   target >= 200,000  {'PASS' if median >= 200_000 else 'FAIL'}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
