"""`expdb run --jobs/--gpus` (the local queue) and `expdb queue` as a user types them: real processes, real signals."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE_DB, query, records, refused, runs_of
from rich.console import Console
from test_imports import HEAVY, PROBE

from expdb import cards
from expdb.db import Database
from expdb.queue import QueueEntry, queue_runs
from expdb.series import read_curve
from expdb.views import render_queue

SCRIPTS = Path(__file__).resolve().parent / "scripts"
DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def runners_are_found(monkeypatch):
    """queuerunners:NAME importable here and in the queue's job processes."""
    monkeypatch.setenv("PYTHONPATH", str(SCRIPTS), prepend=os.pathsep)
    monkeypatch.setattr(sys, "path", [str(SCRIPTS), *sys.path])


def status_of(card) -> str:
    with Database() as db:
        return cards.get_card(db, card).status


def nothing_queued_or_running() -> bool:
    return query("SELECT count(*) FROM run WHERE status IN ('queued', 'running')")[0][0] == 0


def start_queue(workdir, *args) -> subprocess.Popen:
    """`expdb run ARGS` in a process of its own, as a terminal starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "expdb", "run", *args, "--profile-budget", "0"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def training(card, process) -> dict:
    """The card's run, once it is running and has flushed points (so it handles SIGTERM)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        rows = records(
            "SELECT run.* FROM run JOIN card ON card.id = run.card_id WHERE card.name = ? AND run.status = 'running' "
            "AND EXISTS (SELECT 1 FROM series JOIN chunk ON chunk.series_id = series.id WHERE series.run_id = run.id)",
            (card,),
        )
        if rows:
            return rows[0]
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{card} never trained"
        time.sleep(0.05)


# -- running a selection ------------------------------------------------------------------------


def test_a_glob_runs_its_planned_cards_in_a_local_queue(cli, new, workdir):
    for name in ("g1", "g2", "other"):
        new(name, "--runner", "queuerunners:record")
    result = cli("run", "g*", "--jobs", "2", "--profile-budget", "0")
    assert result.code == 0, result.err
    assert f"queued 2 cards on CPU 1, CPU 2; what the jobs print goes to {workdir / 'expdb_runs'}" in result.out
    assert "g1 (run 1) finished" in result.out and "g2 (run 2) finished" in result.out
    assert result.out.rstrip().endswith("queue done: 2 finished")
    for card in ("g1", "g2"):
        (run,) = runs_of(card)
        assert (run["status"], run["launcher"], run["job_id"]) == ("finished", "local", str(os.getpid()))
        assert run["queued_at"] <= run["started_at"] <= run["ended_at"]
        assert run["pid"] != os.getpid()  # the job's own process
    assert status_of("other") == cards.PLANNED


def test_a_tag_selects_and_a_job_that_fails_or_cannot_start_is_one_line_each(cli, new):
    new("good", "--runner", "queuerunners:record", "--tag", "grid")
    new("boom", "--runner", "tinyrunners:boom", "--tag", "grid")
    new("missing", "--runner", "queuerunners:nosuch", "--tag", "grid")
    new("untagged", "--runner", "queuerunners:record")
    result = cli("run", "--tag", "grid", "--jobs", "2", "--profile-budget", "0")
    assert result.code == 1
    lines = result.out.splitlines()
    assert any(line.endswith("boom (run 2) failed: ValueError: boom at step 0") for line in lines), result.out
    not_started = "missing (run 3) not started: runner 'queuerunners:nosuch': queuerunners has no function 'nosuch'"
    assert any(not_started in line for line in lines)
    counts = ("1 finished", "1 failed", "1 not started")
    assert any(line.startswith("queue done:") and all(count in line for count in counts) for line in lines)
    statuses = [status_of(card) for card in ("good", "boom", "missing", "untagged")]
    assert statuses == ["finished", "failed", "planned", "planned"]


def test_a_selection_without_jobs_runs_one_card_after_another_here(cli, new):
    for name in ("s1", "s2"):
        new(name, "--runner", "queuerunners:record", "--tag", "seq")
    result = cli("run", "--tag", "seq", "--profile-budget", "0")
    assert result.code == 0, result.err
    assert [(run["status"], run["launcher"], run["pid"]) for card in ("s1", "s2") for run in runs_of(card)] == [
        ("finished", None, os.getpid())
    ] * 2


def test_nothing_planned_is_said(cli, new):
    new("done", "--runner", "queuerunners:record")
    assert cli("run", "done", "--profile-budget", "0").code == 0
    result = cli("run", "--all", "--jobs", "2")
    assert (result.code, result.out) == (0, "no planned cards to run\n")


# -- a job that dies, a queue that stops -----------------------------------------------------------


def test_a_killed_job_is_crashed_and_the_queue_goes_on(cli, new, workdir):
    new("victim", "--runner", "queuerunners:until_stopped")
    new("after", "--runner", "queuerunners:record")
    queue = start_queue(workdir, "--all", "--jobs", "1")
    run = training("victim", queue)
    assert status_of("after") == "queued"
    shown = cli("queue").out
    assert "victim" in shown and "running" in shown and "after" in shown and "queued" in shown
    os.kill(run["pid"], signal.SIGKILL)
    out, err = queue.communicate(timeout=DEADLINE_S)
    assert queue.returncode == 1, err
    assert "CPU 1: victim (run 1) crashed: killed by SIGKILL" in out
    assert "after (run 2) finished" in out
    assert out.rstrip().endswith("queue done: 1 crashed, 1 finished")
    assert (status_of("victim"), status_of("after")) == ("crashed", "finished")
    assert nothing_queued_or_running()


def stop_queue(cli, new, workdir, stop) -> tuple[str, int]:
    """A queue of two long jobs and a third card, stopped by `stop` while the two train; its output and exit status."""
    new("long1", "--runner", "queuerunners:until_stopped")
    new("long2", "--runner", "queuerunners:until_stopped")
    new("waiting", "--runner", "queuerunners:record")
    queue = start_queue(workdir, "--all", "--jobs", "2")
    training("long1", queue)
    training("long2", queue)
    assert status_of("waiting") == "queued"
    stop(queue)
    out, _ = queue.communicate(timeout=DEADLINE_S)
    return out, queue.returncode


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda queue, cli: queue.send_signal(signal.SIGINT), id="ctrl-c"),
        pytest.param(lambda queue, cli: cli("queue", "--stop"), id="expdb-queue-stop"),  # SIGTERM to the queue
    ],
)
def test_a_stopped_queue_interrupts_its_jobs_and_plans_the_rest_again(cli, new, workdir, stop):
    out, code = stop_queue(cli, new, workdir, lambda queue: stop(queue, cli))
    assert code == 130
    assert "queue stopped: 2 interrupted; 1 never started (planned again)" in out
    for card in ("long1", "long2"):
        (run,) = runs_of(card)
        assert (run["status"], run["exit_reason"]) == ("interrupted", "terminated (SIGTERM)")
    assert runs_of("waiting") == [] and status_of("waiting") == cards.PLANNED
    assert nothing_queued_or_running()


def test_a_stopped_queue_resumes_its_planned_then_its_interrupted_cards(cli, new, workdir):
    stop_queue(cli, new, workdir, lambda queue: queue.send_signal(signal.SIGINT))
    interrupted = {card: runs_of(card)[0] for card in ("long1", "long2")}

    again = cli("run", "--all", "--jobs", "2", "--profile-budget", "0")
    assert again.code == 0, again.err
    assert "queued 1 card on" in again.out and status_of("waiting") == "finished"
    assert (status_of("long1"), status_of("long2")) == ("interrupted", "interrupted")

    resumed = cli("run", "--all", "--jobs", "2", "--resume", "--profile-budget", "0")
    assert resumed.code == 0, resumed.err
    assert "queued 2 cards on" in resumed.out
    for card, before in interrupted.items():
        (run,) = runs_of(card)  # the same run, continued from its checkpoint
        assert (run["id"], run["status"], run["started_at"]) == (before["id"], "finished", before["started_at"])
        checkpoint = json.loads((Path(run["checkpoint_dir"]) / "checkpoint.pt").read_text())["step"]
        with Database() as db:
            assert list(read_curve(db, run["id"], "loss").steps)[-5:] == list(range(checkpoint + 1, checkpoint + 6))
    assert nothing_queued_or_running()


def test_a_killed_queue_leaves_no_card_queued_and_its_running_job_can_be_stopped(cli, new, workdir):
    new("orphan", "--runner", "queuerunners:until_stopped")
    new("waiting", "--runner", "queuerunners:record")
    queue = start_queue(workdir, "--all", "--jobs", "1")
    training("orphan", queue)
    queue.kill()
    queue.wait(timeout=DEADLINE_S)
    listed = cli("list")
    assert "queued" not in listed.out and status_of("waiting") == cards.PLANNED and runs_of("waiting") == []
    assert status_of("orphan") == "running"  # its job runs on without the queue
    stopped = cli("queue", "--stop")
    assert stopped.out.startswith("sent SIGTERM to run 1")
    deadline = time.monotonic() + DEADLINE_S
    while status_of("orphan") == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status_of("orphan") == "interrupted" and nothing_queued_or_running()


# -- expdb queue -----------------------------------------------------------------------------------


def test_queue_view_shows_where_each_run_is_and_since_when():
    entries = [
        QueueEntry("cvt_io_v3_N3", 11, "running", "node07", "GPU 1", "slurm", "98765_1", 31337, 900.0, 930.0),
        QueueEntry("cvt_io_v3_N5", 12, "queued", "gpu-box", "", "local", "4242", 4242, 1000.0, None),
    ]
    console = Console(file=io.StringIO(), width=120, color_system=None)
    render_queue(entries, 4600.0, console)
    assert console.file.getvalue().splitlines() == [
        " card         ┃ run ┃ status  ┃ host    ┃ where ┃ launcher ┃ job     ┃ queued    ┃ started",
        "━━━━━━━━━━━━━━╇━━━━━╇━━━━━━━━━╇━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━",
        " cvt_io_v3_N3 │  11 │ running │ node07  │ GPU 1 │ slurm    │ 98765_1 │ 1h01m ago │ 1h01m ago",
        " cvt_io_v3_N5 │  12 │ queued  │ gpu-box │       │ local    │ 4242    │ 1h00m ago │",
        "1 running, 1 queued",
    ]


def test_queue_command_shows_the_database_and_says_when_there_is_nothing(cli, new):
    new("later", "--runner", "queuerunners:record")
    assert cli("queue").out == "nothing queued or running\n"
    with Database() as db:
        queue_runs(db, [cards.get_card(db, "later")], resume=False, launcher="local")
    shown = cli("queue")
    assert shown.code == 0 and "later" in shown.out and "queued" in shown.out and str(os.getpid()) in shown.out
    assert shown.out.rstrip().endswith("0 running, 1 queued")


def test_queue_command_does_not_import_heavy_libraries(tmp_path):
    database = tmp_path / "study.db"
    database.write_bytes(EXAMPLE_DB.read_bytes())
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["queue", "--db", str(database)])], capture_output=True, text=True, check=True
    )
    assert "nothing queued or running" in result.stdout
    assert not set(json.loads(result.stderr.rsplit("MODULES ", 1)[1])) & HEAVY


# -- bad input -------------------------------------------------------------------------------------


def bad(case_id, args, message, setup=None):
    return pytest.param(args, message, setup, id=case_id)


BAD_QUEUES = [
    bad("gpu-not-here", ["run", "--all", "--gpus", "99"], "--gpus: GPU 99 is not on this machine (it has"),
    bad("gpus-not-numbers", ["run", "--all", "--gpus", "first"], "--gpus 'first': give GPU numbers separated by commas"),
    bad("device-unknown", ["run", "--all", "--jobs", "2", "--device", "tpu"], "unknown --device 'tpu'"),
    bad("on-diverge-unknown", ["run", "--all", "--jobs", "2", "--on-diverge", "shrug"], "unknown --on-diverge 'shrug'"),
    bad("tag-unknown", ["run", "--tag", "nosuch", "--jobs", "2"], "matches --tag nosuch"),
    bad("glob-matches-nothing", ["run", "zz*", "--jobs", "2"], "no card name matches 'zz*'"),
    bad("parse-in-a-queue", ["run", "x", "--jobs", "1", "--parse", "mmdet"], "are for one card run here"),
    bad("all-and-tag", ["run", "--all", "--tag", "t"], "name one card to run, or pass --all"),
    bad("launcher-unknown", ["run", "--all", "--launcher", "pbs"], "unknown --launcher 'pbs'; use local or slurm"),
    bad("already-running", ["run", "x", "--jobs", "1"], "x is running already (run 1)", setup="running"),
]


@pytest.mark.parametrize("args, message, setup", BAD_QUEUES)
def test_bad_queue_input_is_one_error_line_exit_2_and_changes_nothing(cli, new, args, message, setup):
    new("x", "--runner", "queuerunners:record", "--tag", "t")
    if setup == "running":
        with Database() as db:
            queue_runs(db, [cards.get_card(db, "x")], resume=False, launcher="local")
            with db.transaction() as connection:
                connection.execute("UPDATE run SET status = 'running'")
    refused(cli, args, message)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_stopping_a_queue_stops_what_each_job_started(new, workdir):
    # The command leaves a worker of its own, as torchrun or a data loader does: it must not keep its GPU.
    new("spawner", "--cmd", "sh -c 'sleep 300 & echo $! > worker.pid; wait'")
    queue = start_queue(workdir, "spawner", "--jobs", "1")
    deadline = time.monotonic() + DEADLINE_S
    while not (workdir / "worker.pid").exists() or not (workdir / "worker.pid").read_text().strip():
        assert queue.poll() is None and time.monotonic() < deadline, queue.communicate()
        time.sleep(0.05)
    worker = int((workdir / "worker.pid").read_text())
    assert alive(worker)
    queue.send_signal(signal.SIGINT)
    queue.communicate(timeout=DEADLINE_S)
    assert queue.returncode == 130
    assert not alive(worker)
    (run,) = runs_of("spawner")
    assert run["status"] == "interrupted"


def test_a_running_run_without_progress_is_said_stalled(cli, workdir):
    import expdb

    with expdb.start("hung") as run:
        run.log(41, loss=1.0)
        run.log(42, loss=0.9)
        run.raise_if_stopped()
        deadline = time.monotonic() + DEADLINE_S
        while query("SELECT progress_step FROM run WHERE id = ?", (run.id,)) != [(42,)]:  # flushed: its progress
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert "stalled" not in cli("list").out + cli("queue").out
        with Database() as database, database.transaction() as connection:  # ten minutes later, nothing more logged
            connection.execute("UPDATE run SET progress_at = progress_at - 600 WHERE id = ?", (run.id,))
        assert "stalled" not in cli("list").out  # within the default 30 minutes
        said = re.compile(rf"hung \(run {run.id}\) is stalled: no step logged for 10m0\ds \(the last was step 42\), "
                          "though its process is alive")
        listed = cli("list", "--stalled-after", "5")
        assert "│ stalled │" in listed.out and said.search(listed.out)
        queued = cli("queue", "--stalled-after", "5")
        assert "│ stalled │" in queued.out and said.search(queued.out)
