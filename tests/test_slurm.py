"""Slurm through submitit: jobs run for real by submitit's LocalExecutor; the CLI's refusals and its Slurm options."""

import json
import os
import pickle
import signal
import sys
import threading
from pathlib import Path

import pytest
import submitit
from conftest import dump, records, wait_until

from expdb import cards, lifecycle
from expdb.db import Database
from expdb.errors import ExpdbError
from expdb.queue import queue_runs, run_arguments
from expdb.series import read_curve
from expdb.slurm import (
    NodeJob,
    SlurmRequest,
    check_mem,
    parse_time,
    release_ended_jobs,
    shared_location,
    slurm_executor,
    submit_cards,
)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
RUN_ARGS = run_arguments(device="auto", on_diverge="stop", profile_budget=0, seed=None)


@pytest.fixture(autouse=True)
def runners_are_found(monkeypatch):
    """queuerunners:NAME importable here and in the jobs' processes."""
    monkeypatch.setenv("PYTHONPATH", str(SCRIPTS), prepend=os.pathsep)
    monkeypatch.setattr(sys, "path", [str(SCRIPTS), *sys.path])


@pytest.fixture
def planned(db):
    """Two planned cards, tagged cvt_io_v3."""
    return [cards.create_card(db, name, {}, runner="queuerunners:record", tags=["cvt_io_v3"]) for name in ("v3_a", "v3_b")]


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Slurm's stand-in on a machine without it: an `sbatch` on PATH that accepts every job as job 4242, and
    the `srun` submitit looks for (it runs in the job's script, on a node, so never here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command, script in (("sbatch", "echo 'Submitted batch job 4242'"), ("srun", "exit 1")):
        (bin_dir / command).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_cards_run_as_submitit_jobs_adopting_their_queued_runs(db, planned, workdir):
    submitted = submit_cards(db, planned, submitit.LocalExecutor(workdir / "slurm"), RUN_ARGS)
    assert [(job.card, job.run_id) for job in submitted] == [("v3_a", 1), ("v3_b", 2)]
    assert [job.job.result() for job in submitted] == [0, 0]  # expdb run's exit status on the "node"
    for job in submitted:
        (run,) = records("SELECT * FROM run WHERE id = ?", (job.run_id,))
        assert (run["status"], run["launcher"], run["job_id"]) == ("finished", "slurm", str(job.job.job_id))
        assert run["queued_at"] <= run["started_at"] and run["pid"] != os.getpid()
        assert list(read_curve(db, job.run_id, "loss").steps) == [0, 1, 2, 3, 4]
        assert db.query_one("SELECT value FROM metric WHERE run_id = ? AND key = 'iou50'", (job.run_id,)) == (0.5,)


def test_a_refused_submission_leaves_nothing_queued(db, planned, workdir):
    class Refusing(submitit.LocalExecutor):
        def _submit_command(self, command):
            raise RuntimeError("sbatch: error: invalid partition specified: gpu")

    with pytest.raises(ExpdbError, match="submitting to Slurm failed: RuntimeError: sbatch: error: invalid partition"):
        submit_cards(db, planned, Refusing(workdir / "slurm"), RUN_ARGS)
    assert records("SELECT * FROM run") == []


def test_ctrl_c_while_submitting_leaves_nothing_queued(db, planned, workdir):
    class Hanging(submitit.LocalExecutor):
        def _submit_command(self, command):
            raise KeyboardInterrupt  # the user gave up on an sbatch that did not answer

    with pytest.raises(KeyboardInterrupt):
        submit_cards(db, planned, Hanging(workdir / "slurm"), RUN_ARGS)
    assert records("SELECT * FROM run") == []


def test_the_database_is_named_the_same_on_every_node(db, workdir):
    assert shared_location(db) == str((workdir / "experiments.db").resolve())
    assert Path(shared_location(db)).is_absolute()


def test_slurm_options_reach_the_executor(tmp_path, fake_slurm):
    executor = slurm_executor(tmp_path, SlurmRequest(parse_time("12:00:00"), "gpu", 1, 8, check_mem("64G")))
    assert {key: executor.parameters[key] for key in ("partition", "time", "gpus_per_node", "cpus_per_task", "mem", "nodes")} == {
        "partition": "gpu", "time": 720, "gpus_per_node": 1, "cpus_per_task": 8, "mem": "64G", "nodes": 1,
    }
    assert "gpus_per_node" not in slurm_executor(tmp_path, SlurmRequest(60)).parameters  # the cluster's default


@pytest.mark.parametrize(
    "text, minutes", [("12:00:00", 720), ("90", 90), ("1-12:00:00", 2160), ("2-0", 2880), ("30:30", 31), ("0:0:59", 1)]
)
def test_slurm_time_limits_in_minutes(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["12h", "", "1:2:3:4", "0"])
def test_time_limits_slurm_would_not_take_are_refused(text):
    with pytest.raises(ExpdbError, match="--time"):
        parse_time(text)


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_submits_the_selection_prints_job_ids_and_warns_about_sqlite(cli, planned, fake_slurm):
    result = cli("run", "--tag", "cvt_io_v3", "--launcher", "slurm", "--partition", "gpu", "--gpus-per-job", "1",
                 "--time", "12:00:00")
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["v3_a (run 1): Slurm job 4242_0", "v3_b (run 2): Slurm job 4242_1"]
    (warning,) = result.err.splitlines()
    assert warning.startswith("warning: ") and "SQLite" in warning and "PostgreSQL" in warning
    rows = records("SELECT status, launcher, job_id FROM run ORDER BY id")
    assert rows == [{"status": "queued", "launcher": "slurm", "job_id": f"4242_{i}"} for i in (0, 1)]
    assert (Path("expdb_runs/experiments.db/slurm")).is_dir()


def refused(cli, *args) -> str:
    before = dump()
    result = cli(*args)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert dump() == before
    return lines[0].removeprefix("error: ")


def test_slurm_without_submitit_is_refused(cli, planned, monkeypatch, fake_slurm):
    monkeypatch.setitem(sys.modules, "submitit", None)
    message = refused(cli, "run", "--all", "--launcher", "slurm", "--time", "1:00:00")
    assert message == "--launcher slurm needs submitit: pip install 'expdb[slurm]'"


def test_slurm_without_slurm_is_refused(cli, planned, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch there
    message = refused(cli, "run", "--all", "--launcher", "slurm", "--time", "1:00:00")
    assert message.startswith("--launcher slurm: Slurm is not on this machine (no sbatch or srun on PATH)")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--partition", "gpu"], "--partition is for Slurm jobs: add --launcher slurm"),
        (["--time", "1:00:00"], "--time is for Slurm jobs: add --launcher slurm"),
        (["--launcher", "slurm", "--time", "1:00:00", "--jobs", "2"], "--jobs and --gpus are for the local queue"),
        (["--launcher", "slurm"], "--launcher slurm needs --time"),
        (["--launcher", "slurm", "--time", "12h"], "--time '12h': give a Slurm time limit"),
        (["--launcher", "slurm", "--time", "1:00:00", "--mem", "lots"], "--mem 'lots': give memory per job"),
    ],
)
def test_slurm_options_are_checked_before_anything_is_queued(cli, planned, fake_slurm, args, message):
    assert message in refused(cli, "run", "--all", *args)


def test_a_job_whose_queued_run_is_gone_does_not_run(cli, planned):
    with Database() as db:
        assert db.query("SELECT count(*) FROM run") == [(0,)]
    message = refused(cli, "run", "v3_a", "--queued-run", "7")
    assert message == "run 7 is not v3_a's queued run (its queue stopped?): run v3_a again"


@pytest.mark.parametrize(
    "sacct, released",
    [("echo '4242_0|PENDING'; echo '4242_1|CANCELLED by 1000'", True), ("echo '4242_0|PENDING'", False), ("exit 1", False)],
    ids=["cancelled", "not-known", "sacct-fails"],
)
def test_a_queued_run_whose_job_ended_before_it_began_is_released(db, planned, tmp_path, monkeypatch, sacct, released):
    """A job cancelled (or failed) before `expdb run` began on its node leaves no card queued; a job
    Slurm's accounting does not know, or no answer, releases nothing."""
    queued = queue_runs(db, planned, resume=False, launcher="slurm")
    with db.transaction() as connection:
        connection.executemany(
            "UPDATE run SET job_id = ? WHERE id = ?", [("4242_0", queued[0].run_id), ("4242_1", queued[1].run_id)]
        )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(f"#!/bin/sh\n{sacct}\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    release_ended_jobs(db)

    statuses = {card.name: card.status for card in cards.select_cards(db)}
    assert statuses == {"v3_a": "queued", "v3_b": "planned" if released else "queued"}


@pytest.fixture
def recording_sacct(tmp_path, monkeypatch):
    """An `sacct` first on PATH that appends each call's arguments to a file and says every job was cancelled;
    returns the calls so far."""
    bin_dir, calls = tmp_path / "sacct-bin", tmp_path / "sacct-calls"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho '4242_0|CANCELLED by 1000'\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: calls.read_text().splitlines() if calls.exists() else []


def test_reading_commands_never_ask_slurm_and_expdb_queue_does(cli, db, planned, recording_sacct):
    """sacct may take its time (30 s at most): `list`, `table` and `show` read the database without it."""
    (entry,) = queue_runs(db, planned[:1], resume=False, launcher="slurm")
    with db.transaction() as connection:
        connection.execute("UPDATE run SET job_id = '4242_0' WHERE id = ?", (entry.run_id,))
    for args in (["list"], ["show", "v3_a"]):
        result = cli(*args)
        assert result.code == 0, result.err
    # No card has a metric yet: table reads the cards, then says so.
    assert cli("table").err == "error: no card of the 2 selected has a metric\n"
    assert recording_sacct() == [] and cards.get_card(db, "v3_a").status == "queued"
    result = cli("queue")
    assert result.code == 0, result.err
    (call,) = recording_sacct()
    assert "--jobs 4242_0" in call and cards.get_card(db, "v3_a").status == "planned"


def test_expdb_run_reaps_once(cli, planned, monkeypatch):
    reaped = []
    real_reap = lifecycle.reap
    monkeypatch.setattr(lifecycle, "reap", lambda database: reaped.append(database.location) or real_reap(database))
    result = cli("run", "v3_a", "--profile-budget", "0")
    assert result.code == 0, result.err
    assert len(reaped) == 1


def running_with_points(db, run_id: int) -> bool:
    return bool(db.query(
        "SELECT 1 FROM run JOIN series ON series.run_id = run.id JOIN chunk ON chunk.series_id = series.id "
        "WHERE run.id = ? AND run.status = 'running'", (run_id,)
    ))


def start_job(db, requeue: bool):
    """A job of card `long` as submitit runs it on a node (NodeJob in a thread here), once its run trains."""
    card = cards.create_card(db, "long", {}, runner="queuerunners:until_asked")
    (entry,) = queue_runs(db, [card], resume=False, launcher="slurm")
    job = NodeJob(shared_location(db), entry, RUN_ARGS, requeue)
    pickle.dumps(job)  # submitit pickles it to the node
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(job()))
    thread.start()
    wait_until(lambda: running_with_points(db, entry.run_id), "the job's run to train")
    return job, thread, codes, entry.run_id


def test_the_time_limit_signal_ends_the_run_interrupted_with_a_checkpoint(db, workdir):
    job, thread, codes, run_id = start_job(db, requeue=False)
    assert job.checkpoint() is None  # what submitit calls on SIGUSR2; not requeued
    thread.join()
    (run,) = records("SELECT * FROM run WHERE id = ?", (run_id,))
    assert (run["status"], run["exit_reason"]) == ("interrupted", "the cluster's time limit is near (SIGUSR2)")
    assert (Path(run["checkpoint_dir"]) / "checkpoint.pt").exists()
    assert codes == [1]


def test_a_requeued_job_resumes_its_run_from_the_checkpoint(db, workdir):
    job, thread, codes, run_id = start_job(db, requeue=True)
    requeued = job.checkpoint()
    thread.join()
    (run,) = records("SELECT * FROM run WHERE id = ?", (run_id,))
    assert (run["status"], run["launcher"]) == ("queued", "slurm")  # for the requeued job to adopt
    checkpoint = json.loads((Path(run["checkpoint_dir"]) / "checkpoint.pt").read_text())["step"]
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    pickle.dumps(requeued)
    assert requeued.function() == 0  # the requeued job, on its node
    (resumed,) = records("SELECT * FROM run WHERE id = ?", (run_id,))
    assert (resumed["status"], resumed["started_at"]) == ("finished", run["started_at"])
    assert list(read_curve(db, run_id, "loss").steps)[-6:] == list(range(checkpoint, checkpoint + 6))


def start_slow_job(db, workdir, monkeypatch, requeue: bool):
    """A job whose `expdb run` waits while it imports its runner (slowstart:train), its run not yet adopted."""
    monkeypatch.setenv("SLOWSTART", "import")
    card = cards.create_card(db, "slow", {}, runner="slowstart:train")
    (entry,) = queue_runs(db, [card], resume=False, launcher="slurm")
    job = NodeJob(shared_location(db), entry, RUN_ARGS, requeue)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(job()))
    thread.start()
    wait_until(lambda: list(workdir.glob("waiting_*")), "the job's expdb run to wait in its start-up")
    return job, thread, codes, entry.run_id


def test_the_time_limit_signal_while_the_job_starts_leaves_nothing_queued(db, workdir, monkeypatch):
    job, thread, codes, run_id = start_slow_job(db, workdir, monkeypatch, requeue=False)
    assert job.checkpoint() is None  # SIGUSR2 to `expdb run` while it imports its runner
    thread.join()
    assert codes == [130]
    assert records("SELECT * FROM run") == [] and cards.get_card(db, "slow").status == "planned"


def test_a_job_stopped_while_it_starts_is_requeued_with_its_run_still_queued(db, workdir, monkeypatch):
    job, thread, codes, run_id = start_slow_job(db, workdir, monkeypatch, requeue=True)
    requeued = job.checkpoint()
    thread.join()
    assert codes == [130]
    (run,) = records("SELECT * FROM run WHERE id = ?", (run_id,))
    assert (run["status"], run["started_at"]) == ("queued", None)
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    monkeypatch.delenv("SLOWSTART")
    assert pickle.loads(pickle.dumps(requeued)).function() == 0  # the requeued job, on its node
    (run,) = records("SELECT * FROM run WHERE id = ?", (run_id,))
    assert run["status"] == "finished"
    assert list(read_curve(db, run_id, "loss").steps) == [0, 1, 2, 3, 4]


def test_a_job_cancelled_while_it_starts_releases_its_run(db, workdir, monkeypatch):
    """scancel: Slurm's SIGTERM reaches `expdb run` directly, before it adopted its run."""
    job, thread, codes, run_id = start_slow_job(db, workdir, monkeypatch, requeue=False)
    (waiting,) = workdir.glob("waiting_*")
    os.kill(int(waiting.name.removeprefix("waiting_")), signal.SIGTERM)
    thread.join()
    assert codes == [130]
    assert records("SELECT * FROM run") == []


def test_requeue_outside_slurm_is_refused(cli, planned):
    assert refused(cli, "run", "--all", "--requeue") == "--requeue is for Slurm jobs: add --launcher slurm"
