"""Runs through the Python API (`expdb.start`) and expdb.runs: what is recorded, how a run ends, crashes."""

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import wait_until

import expdb
from expdb import cards
from expdb.db import Database, new_uid, resolve_location
from expdb.errors import DatabaseError, ExpdbError
from expdb.lifecycle import STALE_HEARTBEAT_S, reap
from expdb.runs import RecordingFailed
from expdb.series import read_curve

SCRIPTS = Path(__file__).resolve().parent / "scripts"
DEADLINE_S = 60.0  # polls give up after this long; a passing test waits far less


@pytest.fixture
def path(workdir):
    """The test's database: ./experiments.db, or the PostgreSQL database EXPDB_DB names."""
    return resolve_location(None)


def query(path, sql, parameters=()):
    with Database(path) as database:
        return database.query(sql, parameters)


def run_row(path, run_id) -> dict:
    with Database(path) as database:
        cursor = database.connection.execute("SELECT * FROM run WHERE id = ?", (run_id,))
        return dict(zip([column[0] for column in cursor.description], cursor.fetchone(), strict=True))


def latest_run(path, card) -> dict:
    (run_id,) = query(path, "SELECT max(run.id) FROM run JOIN card ON card.id = run.card_id WHERE card.name = ?", (card,))[0]
    return run_row(path, run_id)


def notes(path, run_id) -> list[tuple]:
    return query(path, "SELECT text, automatic, step FROM note WHERE run_id = ? ORDER BY id", (run_id,))


def curve(path, run_id, key="loss"):
    with Database(path) as db:
        return read_curve(db, run_id, key)


def log_until_stopped(run, finite_steps=10, bad=math.nan):
    """Finite losses, then `bad` values until expdb stops the loop (RunStopped, absorbed by start)."""
    step, deadline = 0, time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        run.log(step, loss=1.0 if step < finite_steps else bad)
        step += 1
        time.sleep(0.005)
    pytest.fail("expdb never stopped the diverging loop")


# -- what a run records --------------------------------------------------------------------


def test_start_creates_the_card_and_records_points_and_summary(path):
    with expdb.start("detr3d_bs8", db=path, batch=8, aux_loss=True) as run:
        for step in range(20):
            run.log(step, epoch=step / 10, samples=8 * step, loss=1.0 / (step + 1), lr=1e-3)
        run.summary(iou50=0.34)
    assert run.status == "finished"
    with Database(path) as db:
        assert cards.get_card(db, "detr3d_bs8").params == {"batch": 8, "aux_loss": True}
    row = run_row(path, run.id)
    assert row["status"] == "finished" and row["ended_at"] >= row["started_at"]
    metrics = dict(query(path, "SELECT key, value FROM metric WHERE run_id = ?", (run.id,)))
    assert metrics.pop("iou50") == 0.34
    assert list(metrics) == ["throughput"] and metrics["throughput"] > 0  # samples/s between the first and last point
    loss = curve(path, run.id)
    assert list(loss.steps) == list(range(20))
    assert list(loss.values) == [1.0 / (step + 1) for step in range(20)]
    assert list(loss.samples) == [8 * step for step in range(20)]
    assert list(curve(path, run.id, "lr").values) == [1e-3] * 20


def test_run_records_host_pid_seed_device_command_and_log_file(path):
    import torch  # a script that trains has imported it; with no GPU, it can only train on the CPU

    with expdb.start("env", db=path, seed=7) as run:
        run.log(0, loss=1.0)
    row = run_row(path, run.id)
    device = None if torch.cuda.is_available() else "cpu"  # on a GPU machine, unknown until the script shows it
    assert (row["host"], row["pid"], row["seed"], row["device"]) == (socket.gethostname(), os.getpid(), 7, device)
    assert row["command"] == " ".join(sys.argv)
    assert row["heartbeat_at"] is not None
    env = json.loads(row["env"])
    assert env["python"] == sys.version.split()[0] and env["cwd"] == os.getcwd()
    log = Path(row["log_path"]).read_text()
    assert f"run {run.id} of env started on cpu, seed 7" in log and f"run {run.id} finished" in log


def test_seed_defaults_to_the_cards_seed_parameter(path):
    with expdb.start("seeded", db=path, seed_param_is_not_seed=1) as run:
        pass
    assert run_row(path, run.id)["seed"] == 0
    with Database(path, create=True) as db:
        cards.create_card(db, "with_seed", {"seed": 42})
    with expdb.start("with_seed", db=path) as run:
        pass
    assert run_row(path, run.id)["seed"] == 42


def test_torch_and_cuda_versions_are_recorded_when_torch_is_imported(path, monkeypatch):
    fake = types.SimpleNamespace(
        __version__="2.3.1", version=types.SimpleNamespace(cuda="12.1"), get_num_threads=lambda: 2,
        cuda=types.SimpleNamespace(is_available=lambda: False),
    )
    monkeypatch.setitem(sys.modules, "torch", fake)
    with expdb.start("torchy", db=path) as run:
        pass
    env = json.loads(run_row(path, run.id)["env"])
    assert (env["torch"], env["cuda"], env["threads"]) == ("2.3.1", "12.1", 2)


def git(directory, *args):
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=directory, check=True, capture_output=True,
    )


def test_git_commit_and_dirty_flag_of_the_working_directory_are_recorded(path, workdir):
    git(workdir, "init", "-q")
    (workdir / "train.py").write_text("print('v1')\n")
    git(workdir, "add", "train.py")
    git(workdir, "commit", "-q", "-m", "v1")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True).stdout.strip()
    with expdb.start("clean", db=path) as run:
        pass
    env = json.loads(run_row(path, run.id)["env"])
    assert (env["git_commit"], env["git_dirty"]) == (head, False)  # the untracked database does not count

    (workdir / "train.py").write_text("print('v2')\n")
    with expdb.start("dirty", db=path) as run:
        pass
    env = json.loads(run_row(path, run.id)["env"])
    assert (env["git_commit"], env["git_dirty"]) == (head, True)


def test_outside_a_git_repository_no_commit_is_recorded(path):
    with expdb.start("nogit", db=path) as run:
        pass
    assert "git_commit" not in json.loads(run_row(path, run.id)["env"])


def test_heartbeat_advances_while_a_run_lasts(path):
    with expdb.start("beat", db=path) as run:
        first = run_row(path, run.id)["heartbeat_at"]
        wait_until(lambda: run_row(path, run.id)["heartbeat_at"] > first, "a newer heartbeat")
        assert run_row(path, run.id)["status"] == "running"


def test_points_are_flushed_while_the_run_goes(path):
    with expdb.start("live", db=path) as run:
        for step in range(5):
            run.log(step, loss=1.0)
        wait_until(lambda: query(path, "SELECT count(*) FROM chunk")[0][0] > 0, "a flush")
        assert list(curve(path, run.id).steps) == list(range(5))


# -- how a run ends ----------------------------------------------------------------------


def test_nan_loss_stops_the_loop_and_the_run_is_diverged_with_an_automatic_note(path):
    with expdb.start("nan", db=path) as run:
        log_until_stopped(run, finite_steps=10)
    message = "loss became NaN at step 10 (last finite 1 at step 9)"
    assert (run.status, run.exit_reason) == ("diverged", message)
    assert run.should_stop
    row = run_row(path, run.id)
    assert (row["status"], row["exit_reason"]) == ("diverged", message)
    assert notes(path, run.id) == [(message, 1, 10)]


def test_loop_that_ends_before_expdb_stops_it_is_still_diverged(path):
    with expdb.start("nan_short", db=path) as run:
        run.log(0, loss=1.0)
        run.log(1, loss=math.inf)
    assert run_row(path, run.id)["status"] == "diverged"
    assert notes(path, run.id) == [("loss became inf at step 1 (last finite 1 at step 0)", 1, 1)]


def test_sustained_loss_spike_and_gradient_explosion_are_noted(path):
    with expdb.start("spiky", db=path, on_diverge="note") as run:
        for step in range(40):
            run.log(step, loss=1.0 + 0.01 * (step % 3), grad_norm=5.0)
        for step in range(40, 46):
            run.log(step, loss=50.0, grad_norm=5000.0)
    assert run.status == "finished"
    assert notes(path, run.id) == [
        ("loss shot up at step 40: 50, 50x its recent level 1.01, and stayed up", 1, 40),
        ("gradient norm exploded at step 40: 5e+03, 1,000x its recent level 5", 1, 40),
    ]


def test_on_diverge_note_keeps_going_and_ends_finished_with_the_note(path):
    with expdb.start("noted", db=path, on_diverge="note") as run:
        for step in range(20):
            run.log(step, loss=1.0 if step < 10 else math.nan)
        wait_until(lambda: run.divergences, "the divergence to be seen")
        for step in range(20, 30):
            run.log(step, loss=math.nan)  # does not raise
        assert not run.should_stop
    assert (run.status, run.exit_reason) == ("finished", None)
    assert run_row(path, run.id)["status"] == "finished"
    assert notes(path, run.id) == [("loss became NaN at step 10 (last finite 1 at step 9)", 1, 10)]
    assert len(curve(path, run.id)) == 30


def test_exception_marks_the_run_failed_with_its_last_line_and_propagates(path):
    with pytest.raises(ValueError, match="bad batch"):
        with expdb.start("boom", db=path) as run:
            run.log(0, loss=1.0)
            raise ValueError("bad batch 17")
    row = run_row(path, run.id)
    assert (row["status"], row["exit_reason"]) == ("failed", "ValueError: bad batch 17")
    assert list(curve(path, run.id).steps) == [0]


def test_keyboard_interrupt_marks_the_run_interrupted_and_propagates(path):
    with pytest.raises(KeyboardInterrupt):
        with expdb.start("ctrl_c", db=path) as run:
            run.log(0, loss=1.0)
            raise KeyboardInterrupt
    row = run_row(path, run.id)
    assert (row["status"], row["exit_reason"]) == ("interrupted", "interrupted (Ctrl-C)")
    assert list(curve(path, run.id).steps) == [0]


def test_a_value_that_cannot_be_recorded_fails_the_run_and_says_why(path):
    with pytest.raises(RecordingFailed, match="log\\(\\) takes numbers"):
        with expdb.start("bad_value", db=path) as run:
            for step in range(10):
                run.log(step, loss=1.0, acc=None if step == 5 else 0.5)
            wait_until(lambda: run.should_stop, "the flusher to give up")
            run.log(10, loss=1.0, acc=0.5)  # raises RecordingFailed, which propagates
    row = run_row(path, run.id)
    assert row["status"] == "failed"
    assert "recording failed" in row["exit_reason"]


def test_resume_continues_the_same_run_from_its_checkpoint(path):
    with pytest.raises(RuntimeError):
        with expdb.start("resumable", db=path) as first:
            for step in range(6):
                first.log(step, loss=float(step))
            Path(first.checkpoint_path).write_text("step 3")
            raise RuntimeError("node lost")
    with expdb.start("resumable", db=path, resume=True) as second:
        assert second.resume and Path(second.checkpoint_path).read_text() == "step 3"
        for step in range(4, 8):
            second.log(step, loss=100.0 + step)
    assert second.id == first.id
    assert run_row(path, first.id)["status"] == "finished"
    loss = curve(path, first.id)
    assert list(loss.steps) == list(range(8))
    assert list(loss.values) == [0.0, 1.0, 2.0, 3.0, 104.0, 105.0, 106.0, 107.0]


# -- cards and parameters ------------------------------------------------------------------


def test_a_card_that_has_run_forks_for_other_parameter_values_and_says_so(path, capsys):
    with expdb.start("fixed", db=path, batch=8, lr=0.1) as run:
        pass
    with expdb.start("fixed", db=path, batch=16) as forked:
        pass
    assert capsys.readouterr().err.splitlines() == [
        "expdb: fixed has run with other parameters; this run, with batch=16 (not 8), is recorded on fixed.2, forked from it"
    ]
    with Database(path) as db:
        fork = cards.get_card(db, "fixed.2")
        assert (fork.parent, fork.params) == ("fixed", {"batch": 16, "lr": 0.1})
        assert cards.get_card(db, "fixed").params == {"batch": 8, "lr": 0.1}
    assert forked.card.name == "fixed.2" and forked.params == {"batch": 16, "lr": 0.1}
    assert "is recorded on fixed.2" in Path(forked.log_path).read_text()
    with expdb.start("fixed", db=path, batch=8) as again:
        pass
    assert again.card.name == "fixed" and again.id != run.id


def test_the_same_other_values_find_their_fork_again_and_new_ones_make_the_next(path):
    for batch in (8, 16, 16, 32):
        with expdb.start("grown", db=path, batch=batch) as run:
            pass
    assert run.card.name == "grown.3"
    with Database(path) as db:
        runs = dict(db.query("SELECT card.name, count(*) FROM run JOIN card ON card.id = run.card_id GROUP BY card.name"))
        assert runs == {"grown": 1, "grown.2": 2, "grown.3": 1}
        assert cards.get_card(db, "grown.3").parent == "grown"


def test_an_int_for_a_float_parameter_is_the_same_value_not_a_fork(path):
    with expdb.start("typed", db=path, lr=1.0) as run:
        pass
    with expdb.start("typed", db=path, lr=1) as again:
        pass
    assert again.card.name == "typed" and again.id != run.id


def test_a_card_that_never_ran_takes_the_new_parameter_values(path):
    with Database(path, create=True) as db:
        cards.create_card(db, "draft", {"batch": 8})
    with expdb.start("draft", db=path, batch=16, lr=0.1) as run:
        pass
    assert run.params == {"batch": 16, "lr": 0.1}


def test_a_refused_start_creates_no_card(path):
    with pytest.raises(ExpdbError, match="unknown --on-diverge"):
        with expdb.start("typo", db=path, on_diverge="stpo", lr=0.1):
            pass
    assert not Path(path).exists()


def test_start_refuses_a_card_that_is_already_running(path):
    with expdb.start("busy", db=path):
        with pytest.raises(ExpdbError, match="busy is already running"):
            with expdb.start("busy", db=path):
                pass


# -- crashed runs ------------------------------------------------------------------------


def add_running_run(db, card_name, host, pid, heartbeat):
    card = cards.get_card(db, card_name) if cards.card_exists(db, card_name) else cards.create_card(db, card_name, {})
    with db.transaction() as connection:
        return connection.execute(
            "INSERT INTO run (uid, card_id, status, started_at, heartbeat_at, host, pid, env) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, '{}') RETURNING id",
            (new_uid(), card.id, heartbeat, heartbeat, host, pid),
        ).fetchone()[0]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def status_of(db, run_id):
    return db.query_one("SELECT status FROM run WHERE id = ?", (run_id,))[0]


def test_reap_marks_a_dead_local_process_crashed_and_leaves_a_live_one(db):
    moment = time.time()
    dead = add_running_run(db, "dead", socket.gethostname(), dead_pid(), moment)
    alive = add_running_run(db, "alive", socket.gethostname(), os.getpid(), moment)
    assert reap(db) == [dead]
    assert (status_of(db, dead), status_of(db, alive)) == ("crashed", "running")
    ended_at, reason = db.query_one("SELECT ended_at, exit_reason FROM run WHERE id = ?", (dead,))
    assert ended_at == moment and "killed" in reason


def test_reap_marks_another_hosts_run_crashed_only_when_its_heartbeat_is_stale(db):
    moment = time.time()
    stale = add_running_run(db, "stale", "gpu-node-7", 4242, moment - STALE_HEARTBEAT_S - 60)
    fresh = add_running_run(db, "fresh", "gpu-node-8", 4242, moment)
    assert reap(db) == [stale]
    assert (status_of(db, stale), status_of(db, fresh)) == ("crashed", "running")


# -- faults in a real process ------------------------------------------------------------


def start_api_script(workdir, path, card="looping"):
    last_file = workdir / f"{card}.last"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "api_forever.py"), path, card, str(last_file)],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return process, last_file


def flushed_points(path, card) -> int:
    try:
        rows = query(
            path,
            "SELECT coalesce(sum(chunk.count), 0) FROM chunk JOIN series ON series.id = chunk.series_id "
            "JOIN run ON run.id = series.run_id JOIN card ON card.id = run.card_id WHERE card.name = ?",
            (card,),
        )
    except DatabaseError:  # the script has not created the database yet
        return 0
    return rows[0][0]


def wait_for_flush(process, path, card, at_least=1) -> int:
    def landed():
        if process.poll() is not None:
            pytest.fail(f"the script ended early: {process.communicate()}")
        try:
            return flushed_points(path, card) >= at_least
        except sqlite3.OperationalError:  # the database or its tables are still being created
            return False

    wait_until(landed, "a flush from the script")
    return flushed_points(path, card)


def assert_contiguous_from_zero(path, run_id, at_least):
    steps = list(curve(path, run_id).steps)
    assert len(steps) >= at_least
    assert steps == list(range(len(steps)))
    return len(steps)


@pytest.mark.parametrize(
    "signum, reason",
    [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")],
    ids=["SIGINT", "SIGTERM"],
)
def test_signal_to_a_script_flushes_everything_and_marks_the_run_interrupted(workdir, path, signum, reason):
    process, last_file = start_api_script(workdir, path)
    seen = wait_for_flush(process, path, "looping", at_least=20)
    process.send_signal(signum)
    _, err = process.communicate(timeout=DEADLINE_S)
    assert process.returncode != 0
    assert "KeyboardInterrupt" in err or "Terminated" in err
    row = latest_run(path, "looping")
    assert (row["status"], row["exit_reason"]) == ("interrupted", reason)
    count = assert_contiguous_from_zero(path, row["id"], at_least=seen)
    last = int(last_file.read_text())
    assert count in (last + 1, last + 2)  # the signal may land between log() and the script's bookkeeping


@pytest.fixture
def killed(workdir, path):
    """A script's run killed with SIGKILL after some points were flushed; returns (run id, points flushed)."""
    process, _ = start_api_script(workdir, path)
    seen = wait_for_flush(process, path, "looping", at_least=1)
    process.kill()
    process.wait(timeout=DEADLINE_S)  # reaped: its pid is gone
    row = latest_run(path, "looping")
    assert row["status"] == "running"
    return row["id"], seen


def test_sigkilled_run_is_crashed_by_the_next_run_command_and_keeps_its_flushed_points(killed, path, cli):
    run_id, seen = killed
    result = cli("run", "--all", "--db", path)
    assert result.code == 0, result.err
    row = run_row(path, run_id)
    assert row["status"] == "crashed" and row["ended_at"] == row["heartbeat_at"]
    assert_contiguous_from_zero(path, run_id, at_least=seen)


def test_sigkilled_run_shows_crashed_in_the_next_list(killed, path, cli):
    run_id, seen = killed
    result = cli("list", "--db", path)
    assert result.code == 0, result.err
    assert "crashed" in result.out and "running" not in result.out
    assert_contiguous_from_zero(path, run_id, at_least=seen)
