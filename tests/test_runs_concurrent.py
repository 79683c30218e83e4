"""Many writers at once: 8 processes logging into one database through `expdb.start`.

A point is one scalar at one step, as in benchmarks/bench_log.py: each writer
(tests/scripts/writer.py) logs 20,000 steps of 5 scalars, 100,000 points, spread over a
few seconds like a training loop, so that the writers' flushes interleave. The writers
start their runs, wait until all of them are ready, and log from the same moment.
"""

import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expdb.db import Database, resolve_location
from expdb.lifecycle import reap
from expdb.series import read_curve

WRITER_SCRIPT = Path(__file__).resolve().parent / "scripts" / "writer.py"
WRITER = runpy.run_path(str(WRITER_SCRIPT))  # its `scalars` and `KEYS`: what each writer logs
WRITERS = 8
STEPS = 20_000
POINTS = STEPS * len(WRITER["KEYS"])  # 100,000 a writer
WRITING_S = 3.0  # each writer's steps are spread over this long
DEADLINE_S = 120.0  # waits give up after this long; a passing test waits far less


@pytest.fixture
def path(workdir):
    """The test's database, created before the writers start: the test is about writing, not creating."""
    location = resolve_location(None)
    Database(location, create=True).close()
    return location


def query(path, sql, parameters=()):
    with Database(path) as database:
        return database.query(sql, parameters)


def run_of(path, card) -> dict:
    with Database(path) as database:
        cursor = database.connection.execute(
            "SELECT run.* FROM run JOIN card ON card.id = run.card_id WHERE card.name = ?", (card,)
        )
        rows = cursor.fetchall()
        assert len(rows) == 1, f"{card} has {len(rows)} runs"
        return dict(zip([column[0] for column in cursor.description], rows[0], strict=True))


def stored_points(path, run_id=None) -> int:
    """The points of every run's curves, or of one run's, as the chunks count them."""
    sql = "SELECT coalesce(sum(chunk.count), 0) FROM chunk JOIN series ON series.id = chunk.series_id"
    if run_id is None:
        return query(path, sql)[0][0]
    return query(path, sql + " WHERE series.run_id = ?", (run_id,))[0][0]


def start_writers(workdir: Path, path: str, seconds: dict[str, float]) -> dict[str, subprocess.Popen]:
    """One writer process per card, logging over `seconds[card]`; returns once all of them log."""
    go_file = workdir / "go"
    processes = {
        card: subprocess.Popen(
            [sys.executable, str(WRITER_SCRIPT), path, card, str(STEPS), str(span), str(workdir / f"{card}.ready"), str(go_file)],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for card, span in seconds.items()
    }
    deadline = time.monotonic() + DEADLINE_S
    while not all((workdir / f"{card}.ready").exists() for card in processes):
        for card, process in processes.items():
            if process.poll() is not None:
                pytest.fail(f"writer {card} ended before it was ready: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("gave up waiting for the writers to start their runs")
        time.sleep(0.05)
    go_file.touch()
    return processes


def assert_exited_cleanly(card: str, process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=DEADLINE_S)
    assert (process.returncode, err) == (0, ""), f"writer {card}"


def assert_curves_hold(path, run_id: int, card: str, steps: int) -> None:
    """The run's curves are its writer's first `steps` steps: contiguous from 0, every value exact."""
    expected = WRITER["scalars"](card, STEPS)[:steps]
    with Database(path) as db:
        for index, key in enumerate(WRITER["KEYS"]):
            curve = read_curve(db, run_id, key)
            assert list(curve.steps) == list(range(steps)), f"{card} {key}"
            assert list(curve.values) == [row[index] for row in expected], f"{card} {key}"


def assert_finished_with_every_point(path, card: str) -> None:
    run = run_of(path, card)
    assert run["status"] == "finished" and run["ended_at"] is not None, card
    assert stored_points(path, run["id"]) == POINTS, card
    assert_curves_hold(path, run["id"], card, STEPS)


def test_eight_writers_store_every_point_and_finish(workdir, path):
    cards = [f"writer_{number}" for number in range(WRITERS)]
    processes = start_writers(workdir, path, {card: WRITING_S for card in cards})
    for card, process in processes.items():
        assert_exited_cleanly(card, process)
    assert stored_points(path) == WRITERS * POINTS
    for card in cards:
        assert_finished_with_every_point(path, card)
    assert query(path, "SELECT count(*) FROM run WHERE status != 'finished'") == [(0,)]


def test_a_writer_killed_midway_is_crashed_and_keeps_its_flushed_points_and_the_others_finish(workdir, path):
    victim, others = "writer_0", [f"writer_{number}" for number in range(1, WRITERS)]
    # The victim logs more slowly, so that it is still writing when a quarter of its points are in.
    processes = start_writers(workdir, path, {victim: 2 * WRITING_S, **{card: WRITING_S for card in others}})
    victim_run = run_of(path, victim)["id"]
    deadline = time.monotonic() + DEADLINE_S
    while stored_points(path, victim_run) < POINTS // 4:
        if time.monotonic() > deadline:
            pytest.fail("gave up waiting for a quarter of the victim's points")
        time.sleep(0.02)
    seen = stored_points(path, victim_run)
    processes[victim].send_signal(signal.SIGKILL)
    processes[victim].wait(timeout=DEADLINE_S)  # reaped: its pid is gone
    assert processes[victim].returncode == -signal.SIGKILL, "the victim ended before it was killed"

    for card in others:
        assert_exited_cleanly(card, processes[card])
    with Database(path) as db:
        assert reap(db) == [victim_run]

    run = run_of(path, victim)
    assert run["status"] == "crashed" and run["ended_at"] is not None and run["ended_at"] == run["heartbeat_at"]
    kept = stored_points(path, victim_run)
    assert seen <= kept < POINTS and kept % len(WRITER["KEYS"]) == 0
    assert_curves_hold(path, victim_run, victim, kept // len(WRITER["KEYS"]))
    for card in others:
        assert_finished_with_every_point(path, card)
    assert query(path, "SELECT count(*) FROM run WHERE status = 'running'") == [(0,)]
