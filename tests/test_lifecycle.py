"""The run lifecycle: each change of a run row's status, and the changes refused from a wrong state."""

import os
import socket
import subprocess
import sys

import pytest
from conftest import records

from expdb import cards, lifecycle
from expdb.lifecycle import PLANNED, Process, RunStatus, TransitionRefused

PROCESS = Process("gpubox", 4242, "cpu", 7, "expdb run x", '{"python": "3.11"}')


@pytest.fixture
def card(db):
    return cards.create_card(db, "x", {})


def row(run_id) -> dict | None:
    found = records("SELECT * FROM run WHERE id = ?", (run_id,))
    return found[0] if found else None


def status_of(db, name) -> str:
    return cards.get_card(db, name).status


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def running(db, card) -> int:
    return lifecycle.start(db, card, PROCESS).id


def ended(db, card, status=RunStatus.INTERRUPTED) -> int:
    run_id = running(db, card)
    if status == RunStatus.INTERRUPTED:
        lifecycle.interrupt(db, run_id, "Ctrl-C")
    else:
        lifecycle.fail(db, run_id, "boom")
    return run_id


def test_statuses_have_one_definition_and_read_as_their_values():
    assert [status.value for status in RunStatus] == [
        "queued", "running", "finished", "diverged", "failed", "interrupted", "crashed",
    ]
    assert ("planned", *(status.value for status in RunStatus)) == lifecycle.CARD_STATUSES
    assert PLANNED not in list(RunStatus)
    assert f"{RunStatus.CRASHED}" == str(RunStatus.CRASHED) == "crashed" and RunStatus.CRASHED == "crashed"
    assert set(lifecycle.ACTIVE) | set(lifecycle.ENDED) == set(RunStatus) and not set(lifecycle.ACTIVE) & set(lifecycle.ENDED)


# -- queue, release ----------------------------------------------------------------------------


def test_queue_makes_a_queued_row_and_the_card_queued(db, card):
    entry = lifecycle.queue(db, card, launcher="local", resume=False)
    assert (entry.run_id, entry.resumed_from) == (1, None)
    queued = row(entry.run_id)
    assert (queued["status"], queued["launcher"], queued["host"], queued["pid"], queued["job_id"]) == (
        "queued", "local", socket.gethostname(), os.getpid(), str(os.getpid()),
    )
    assert queued["started_at"] is None and status_of(db, "x") == "queued"


def test_a_slurm_run_is_queued_without_a_process(db, card):
    entry = lifecycle.queue(db, card, launcher="slurm", resume=False)
    assert (row(entry.run_id)["pid"], row(entry.run_id)["job_id"]) == (None, None)


@pytest.mark.parametrize("active", ["queued", "running"])
def test_queue_refuses_a_card_whose_run_has_not_ended(db, card, active):
    run_id = lifecycle.queue(db, card, launcher="local", resume=False).run_id if active == "queued" else running(db, card)
    before = records("SELECT * FROM run")
    with pytest.raises(TransitionRefused, match=rf"x is {active} already \(run {run_id}\)"):
        lifecycle.queue(db, card, launcher="local", resume=True)
    assert records("SELECT * FROM run") == before


def test_queue_to_resume_queues_the_latest_run_and_remembers_its_status(db, card):
    run_id = ended(db, card, RunStatus.FAILED)
    entry = lifecycle.queue(db, card, launcher="local", resume=True)
    assert (entry.run_id, entry.resumed_from, status_of(db, "x")) == (run_id, RunStatus.FAILED, "queued")


def test_release_removes_a_new_queued_run_and_gives_a_resumed_one_its_status_back(db, card):
    entry = lifecycle.queue(db, card, launcher="local", resume=False)
    assert lifecycle.release(db, entry.run_id, entry.resumed_from) is True
    assert row(entry.run_id) is None and status_of(db, "x") == PLANNED
    run_id = ended(db, card, RunStatus.FAILED)
    entry = lifecycle.queue(db, card, launcher="local", resume=True)
    assert lifecycle.release(db, entry.run_id, entry.resumed_from) is True
    assert row(run_id)["status"] == "failed"


def test_release_leaves_a_run_a_process_adopted_meanwhile(db, card):
    entry = lifecycle.queue(db, card, launcher="local", resume=False)
    lifecycle.adopt(db, card, lifecycle.get_run(db, entry.run_id), PROCESS, resume=False)
    assert lifecycle.release(db, entry.run_id, None) is False
    assert row(entry.run_id)["status"] == "running"


def test_an_orphan_is_removed_if_it_never_started_else_interrupted(db, card):
    lifecycle.queue(db, card, launcher="local", resume=False)
    (orphan,) = lifecycle.active_runs(db)
    assert lifecycle.release_orphan(db, orphan) and records("SELECT * FROM run") == []
    run_id = ended(db, card, RunStatus.FAILED)
    lifecycle.queue(db, card, launcher="local", resume=True)
    (orphan,) = lifecycle.active_runs(db)
    assert lifecycle.release_orphan(db, orphan) and row(run_id)["status"] == "interrupted"


# -- start, adopt, heartbeat -------------------------------------------------------------------


def test_start_makes_a_running_row_of_this_process(db, card):
    run = lifecycle.start(db, card, PROCESS)
    started = row(run.id)
    assert (run.status, started["status"], started["started_at"]) == (RunStatus.RUNNING, "running", run.started_at)
    assert (started["host"], started["pid"], started["device"], started["seed"], started["command"], started["env"]) == (
        "gpubox", 4242, "cpu", 7, "expdb run x", '{"python": "3.11"}',
    )
    assert started["heartbeat_at"] is not None and started["ended_at"] is None


def test_start_resuming_an_ended_run_keeps_its_start_and_forgets_its_end_and_queue(db, card):
    run_id = ended(db, card)
    first = row(run_id)
    with db.transaction() as connection:  # queued to resume once, by a queue that stopped
        connection.execute("UPDATE run SET launcher = 'local', job_id = '99', queued_at = 1.0 WHERE id = ?", (run_id,))
    run = lifecycle.start(db, card, PROCESS, resuming=lifecycle.latest_run(db, card.id))
    resumed = row(run_id)
    assert (run.id, resumed["status"], resumed["started_at"]) == (run_id, "running", first["started_at"])
    assert (resumed["ended_at"], resumed["exit_reason"], resumed["launcher"], resumed["job_id"], resumed["queued_at"]) == (
        None, None, None, None, None,
    )


def test_start_refuses_to_resume_a_run_that_has_not_ended(db, card):
    run_id = running(db, card)
    with pytest.raises(TransitionRefused, match="only an ended run resumes"):
        lifecycle.start(db, card, PROCESS, resuming=lifecycle.get_run(db, run_id))


def test_adopt_takes_over_a_queued_run_and_keeps_how_it_was_launched(db, card):
    entry = lifecycle.queue(db, card, launcher="slurm", resume=False)
    run = lifecycle.adopt(db, card, lifecycle.get_run(db, entry.run_id), PROCESS, resume=False)
    adopted = row(entry.run_id)
    assert (run.status, adopted["status"], adopted["launcher"], adopted["pid"]) == (RunStatus.RUNNING, "running", "slurm", 4242)
    assert adopted["started_at"] >= adopted["queued_at"]


def test_adopt_refuses_a_run_that_is_not_queued(db, card):
    run_id = ended(db, card)
    with pytest.raises(TransitionRefused, match=f"run {run_id} is not x's queued run"):
        lifecycle.adopt(db, card, lifecycle.get_run(db, run_id), PROCESS, resume=False)
    assert row(run_id)["status"] == "interrupted"


def test_adopt_refuses_a_queued_run_released_since_it_was_read(db, card):
    entry = lifecycle.queue(db, card, launcher="local", resume=False)
    read = lifecycle.get_run(db, entry.run_id)
    lifecycle.release(db, entry.run_id, None)
    with pytest.raises(TransitionRefused, match="changed while it was starting"):
        lifecycle.adopt(db, card, read, PROCESS, resume=False)
    assert records("SELECT * FROM run") == []


def test_heartbeat_beats_a_running_run_and_is_refused_once_it_ended(db, card):
    run_id = running(db, card)
    with db.transaction() as connection:
        connection.execute("UPDATE run SET heartbeat_at = 1.0 WHERE id = ?", (run_id,))
    lifecycle.heartbeat(db, run_id)
    assert row(run_id)["heartbeat_at"] > 1.0
    lifecycle.finish(db, run_id)
    with pytest.raises(TransitionRefused, match=f"run {run_id} is not running"):
        lifecycle.heartbeat(db, run_id)


# -- endings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "end, status, reason",
    [
        (lambda db, run_id: lifecycle.finish(db, run_id), "finished", None),
        (lambda db, run_id: lifecycle.diverge(db, run_id, "loss became NaN at step 3"), "diverged", "loss became NaN at step 3"),
        (lambda db, run_id: lifecycle.fail(db, run_id, "ValueError: boom"), "failed", "ValueError: boom"),
        (lambda db, run_id: lifecycle.interrupt(db, run_id, "interrupted (Ctrl-C)"), "interrupted", "interrupted (Ctrl-C)"),
    ],
    ids=["finish", "diverge", "fail", "interrupt"],
)
def test_each_ending_ends_a_running_run_once(db, card, end, status, reason):
    run_id = running(db, card)
    end(db, run_id)
    done = row(run_id)
    assert (done["status"], done["exit_reason"]) == (status, reason)
    assert done["ended_at"] is not None and done["ended_at"] == done["heartbeat_at"]
    with pytest.raises(TransitionRefused, match=f"run {run_id} is not running"):
        end(db, run_id)
    assert row(run_id) == done


def test_a_run_taken_for_crashed_that_was_alive_ends_as_it_ends(db, card):
    run_id = running(db, card)
    assert lifecycle.crash(db, run_id)
    lifecycle.heartbeat(db, run_id)
    lifecycle.finish(db, run_id)
    assert row(run_id)["status"] == "finished"


def test_record_stores_an_ended_run_and_refuses_one_that_has_not_ended(db, card):
    run_id = lifecycle.record(db, card.id, "diverged", started_at=1.0, ended_at=2.0, exit_reason="NaN")
    assert {key: row(run_id)[key] for key in ("status", "started_at", "ended_at", "exit_reason")} == {
        "status": "diverged", "started_at": 1.0, "ended_at": 2.0, "exit_reason": "NaN",
    }
    for status in ("running", "queued", "planned", "done"):
        with pytest.raises(TransitionRefused, match=f"unknown run status '{status}'"):
            lifecycle.record(db, card.id, status)
    assert len(records("SELECT * FROM run")) == 1


# -- the reaper --------------------------------------------------------------------------------


def test_crash_ends_a_running_run_at_its_last_heartbeat_and_leaves_an_ended_one(db, card):
    run_id = running(db, card)
    with db.transaction() as connection:
        connection.execute("UPDATE run SET heartbeat_at = 5.0 WHERE id = ?", (run_id,))
    assert lifecycle.crash(db, run_id) is True
    crashed = row(run_id)
    assert (crashed["status"], crashed["ended_at"], crashed["exit_reason"]) == ("crashed", 5.0, lifecycle.CRASH_REASON)
    other = ended(db, cards.create_card(db, "y", {}))
    assert lifecycle.crash(db, other) is False and row(other)["status"] == "interrupted"


def test_reap_crashes_the_run_of_a_dead_process_and_releases_a_dead_queues_rows(db, card):
    dead = lifecycle.start(db, card, Process(socket.gethostname(), dead_pid(), "cpu", 0, "expdb run x", "{}")).id
    waiting = cards.create_card(db, "waiting", {})
    queued = lifecycle.queue(db, waiting, launcher="local", resume=False).run_id
    alive = lifecycle.queue(db, cards.create_card(db, "alive", {}), launcher="local", resume=False).run_id
    with db.transaction() as connection:
        connection.execute("UPDATE run SET pid = ? WHERE id = ?", (dead_pid(), queued))
    assert lifecycle.reap(db) == [dead]
    assert (row(dead)["status"], row(queued), row(alive)["status"]) == ("crashed", None, "queued")


def test_reads_give_named_rows(db, card):
    assert lifecycle.latest_run(db, card.id) is None and lifecycle.get_run(db, 1) is None
    run_id = running(db, card)
    latest = lifecycle.latest_run(db, card.id)
    assert (latest.id, latest.status, latest.exit_reason) == (run_id, RunStatus.RUNNING, None)
    assert type(latest.status) is RunStatus
    (active,) = lifecycle.active_runs(db)
    expected = (run_id, RunStatus.RUNNING, "gpubox", 4242, None)
    assert (active.id, active.status, active.host, active.pid, active.launcher) == expected


# -- progress, stalls, requeue, an ending an attached script made first ----------------------------


def test_a_heartbeat_with_progress_records_the_last_step_and_stalls_are_runs_without_it(db, card):
    run_id = running(db, card)
    started = row(run_id)
    assert started["progress_at"] == started["started_at"] and started["progress_step"] is None  # starting is progress
    lifecycle.heartbeat(db, run_id, (120, started["started_at"] + 0.001))
    assert (row(run_id)["progress_step"], row(run_id)["progress_at"]) == (120, started["started_at"] + 0.001)
    assert lifecycle.stalls(db, after_s=3600) == []
    (stall,) = lifecycle.stalls(db, after_s=0)
    assert (stall.card, stall.run_id, stall.step) == ("x", run_id, 120)
    lifecycle.heartbeat(db, run_id)  # alive, without progress: the step stays
    assert row(run_id)["progress_step"] == 120
    assert lifecycle.progress(db, run_id, 121, started["started_at"] + 0.002)  # from a script attached to the run
    lifecycle.finish(db, run_id)
    assert not lifecycle.progress(db, run_id, 122, started["started_at"] + 0.003)
    assert lifecycle.stalls(db, after_s=0) == []  # only running runs stall


def test_requeue_queues_an_interrupted_cluster_run_again_and_nothing_else(db, card):
    (queued,) = [lifecycle.queue(db, card, launcher="slurm", resume=False)]
    run = lifecycle.get_run(db, queued.run_id)
    lifecycle.adopt(db, card, run, PROCESS, resume=False)
    lifecycle.interrupt(db, queued.run_id, "the cluster's time limit is near (SIGUSR2)")
    assert lifecycle.requeue(db, queued.run_id, "login1")
    again = row(queued.run_id)
    assert (again["status"], again["launcher"], again["host"], again["pid"]) == ("queued", "slurm", "login1", None)
    assert not lifecycle.requeue(db, queued.run_id, "login1")  # queued, not interrupted
    finished = running(db, cards.create_card(db, "y", {}))
    lifecycle.finish(db, finished)
    assert not lifecycle.requeue(db, finished, None)


def test_end_keeps_the_ending_an_attached_script_made_first(db, card):
    run_id = running(db, card)
    lifecycle.diverge(db, run_id, "loss became NaN at step 5")  # the script inside `expdb run -- ...`
    assert lifecycle.end(db, run_id, RunStatus.FINISHED, None) == (RunStatus.DIVERGED, "loss became NaN at step 5")
    other = running(db, cards.create_card(db, "y", {}))
    assert lifecycle.end(db, other, RunStatus.FAILED, "boom") == (RunStatus.FAILED, "boom")
    with pytest.raises(TransitionRefused):
        lifecycle.end(db, 999, RunStatus.FINISHED, None)
