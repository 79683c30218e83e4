"""The local queue as a library: slots as data (fake GPU ids here), real child processes, queued rows and their reaping."""

import json
import os
import socket
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import query, records

from expdb import cards
from expdb.cpus import thread_budget
from expdb.errors import ExpdbError
from expdb.lifecycle import reap
from expdb.queue import (
    check_gpus,
    cpu_slots,
    gpu_slots,
    local_slots,
    parse_gpus,
    queue_entries,
    queue_runs,
    release,
    run_arguments,
    run_queue,
    visible_gpu_ids,
)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
RUN_ARGS = run_arguments(device="auto", on_diverge="stop", profile_budget=0, seed=None)


@pytest.fixture(autouse=True)
def children_find_the_runners(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SCRIPTS), prepend=os.pathsep)


def make_cards(db, names, runner="queuerunners:record", **params):
    return [cards.create_card(db, name, params, runner=runner) for name in names]


def pinned(card) -> dict:
    return json.loads(Path(f"env_{card}.json").read_text())


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- slots ---------------------------------------------------------------------------------


def test_each_job_runs_on_its_gpu_and_a_gpu_runs_one_job_at_a_time(db):
    names = [f"g{i}" for i in range(4)]
    queued = queue_runs(db, make_cards(db, names, sleep=0.1), resume=False, launcher="local")
    starts = []
    result = run_queue(
        db, queued, gpu_slots(["5", "7"]), RUN_ARGS, Path("out"), on_start=lambda entry, slot: starts.append(slot.label)
    )
    assert result.all_finished and [end.status for end in result.ends] == ["finished"] * 4
    assert sorted(starts) == sorted(end.slot for end in result.ends)
    runs = {row["card"]: row for row in records(
        "SELECT card.name AS card, run.env, run.started_at, run.ended_at FROM run JOIN card ON card.id = run.card_id"
    )}
    by_gpu: dict[str, list] = {}
    for end in result.ends:
        gpu = pinned(end.card)["CUDA_VISIBLE_DEVICES"]
        assert end.slot == f"GPU {gpu}" and gpu in ("5", "7")
        assert json.loads(runs[end.card]["env"])["cuda_visible_devices"] == gpu  # what `expdb queue` shows
        by_gpu.setdefault(gpu, []).append((runs[end.card]["started_at"], runs[end.card]["ended_at"]))
    assert set(by_gpu) == {"5", "7"}
    for spans in by_gpu.values():
        spans.sort()
        assert all(earlier[1] <= later[0] for earlier, later in pairwise(spans)), spans


def test_a_slots_next_job_is_ready_before_the_slot_is_free(db):
    """The second job's process has started and imported its runner while the first still runs:
    the GPU is not left idle while Python and torch load."""
    first = make_cards(db, ["first"], runner="queuerunners:waits_for_the_next_job")
    second = make_cards(db, ["second"])
    queued = queue_runs(db, first + second, resume=False, launcher="local")
    result = run_queue(db, queued, gpu_slots(["0"]), RUN_ARGS, Path("out"))
    assert [(end.card, end.status) for end in result.ends] == [("first", "finished"), ("second", "finished")]
    assert result.ends[0].summary == {"processes_ready": 2}


def test_cpu_jobs_share_the_cores_through_their_thread_budget(db):
    queued = queue_runs(db, make_cards(db, ["a", "b"]), resume=False, launcher="local")
    result = run_queue(db, queued, cpu_slots(2, thread_budget(2, cores=8, load=0.0, environ={})), RUN_ARGS, Path("out"))
    assert result.all_finished
    for card in ("a", "b"):
        assert pinned(card) == {"CUDA_VISIBLE_DEVICES": None, "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}


def test_what_a_job_prints_is_kept_in_its_file(db):
    queued = queue_runs(db, make_cards(db, ["talks"]), resume=False, launcher="local")
    assert run_queue(db, queued, cpu_slots(1), RUN_ARGS, Path("out")).all_finished
    printed = Path("out/run-1-talks.log").read_text().splitlines()
    assert printed[0].startswith("CPU threads: ") and printed[0].endswith(", as OMP_NUM_THREADS says")  # the slot's
    assert printed[1:] == ["training talks", "talks (run 1) finished  iou50=0.5"]


def test_slots_as_the_options_make_them():
    three = cpu_slots(3, thread_budget(3, cores=2, load=0.0, environ={}))
    assert [slot.env["OMP_NUM_THREADS"] for slot in three] == ["1", "1", "1"]
    assert [slot.label for slot in cpu_slots(2, thread_budget(2, cores=2, load=0.0, environ={}))] == ["CPU 1", "CPU 2"]
    assert [slot.label for slot in gpu_slots(["0", "1"], jobs=4)] == ["GPU 0", "GPU 1", "GPU 0", "GPU 1"]
    assert [slot.env for slot in gpu_slots(["3"], budget=thread_budget(1, cores=8, load=0.0, environ={}))] == [
        {"CUDA_VISIBLE_DEVICES": "3", "OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8"}
    ]
    four = thread_budget(4, cores=8, load=0.0, environ={})
    assert [slot.env["OMP_NUM_THREADS"] for slot in gpu_slots(["0", "1"], jobs=4, budget=four)] == ["2"] * 4


def test_slots_that_share_a_device_say_so_to_their_profiles():
    assert all(slot.env["EXPDB_SHARED_SLOT"] == "1" for slot in gpu_slots(["0", "1"], jobs=4))
    assert all(slot.env["EXPDB_SHARED_SLOT"] == "1" for slot in cpu_slots(2, thread_budget(2, cores=8, load=0.0, environ={})))
    assert "EXPDB_SHARED_SLOT" not in gpu_slots(["0", "1"])[0].env
    assert "EXPDB_SHARED_SLOT" not in cpu_slots(1)[0].env


def test_fewer_jobs_than_gpus_is_refused_rather_than_leaving_gpus_idle():
    with pytest.raises(ExpdbError, match=r"--jobs 2 would leave some of the 4 GPUs of --gpus idle: .*--gpus 0,1"):
        local_slots(2, "0,1,2,3")


def test_gpus_that_are_not_there_are_named_with_those_that_are():
    check_gpus([0, 1], 2)
    with pytest.raises(ExpdbError, match=r"^--gpus: GPU 3 is not on this machine \(it has 2: 0, 1\)$"):
        check_gpus([0, 3], 2)
    with pytest.raises(ExpdbError, match=r"GPU 0 is not on this machine \(it has none\)"):
        check_gpus([0], 0)


@pytest.mark.parametrize("text", ["", "a", "0,,1", "-1", "0,0"])
def test_gpu_lists_that_are_not_lists_of_gpus_are_refused(text):
    with pytest.raises(ExpdbError, match="--gpus"):
        parse_gpus(text)


def test_gpu_numbers_count_the_gpus_this_process_sees(monkeypatch):
    assert parse_gpus("0,2") == [0, 2]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpu_ids([0, 2]) == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")  # a cluster node's allocation
    assert visible_gpu_ids([0, 2]) == ["4", "6"]


# -- queued rows ----------------------------------------------------------------------------


def test_queued_rows_say_who_queued_them_and_the_card_shows_queued(db):
    (card,) = make_cards(db, ["q"])
    (entry,) = queue_runs(db, [card], resume=False, launcher="local")
    (row,) = records("SELECT * FROM run")
    assert (row["id"], row["status"], row["launcher"], row["host"], row["pid"], row["job_id"]) == (
        entry.run_id, "queued", "local", socket.gethostname(), os.getpid(), str(os.getpid()),
    )
    assert row["queued_at"] is not None and row["started_at"] is None and len(row["uid"]) == 32
    assert cards.get_card(db, "q").status == "queued"
    assert [(e.card, e.status, e.where) for e in queue_entries(db)] == [("q", "queued", "")]
    release(db, [entry])
    assert query("SELECT count(*) FROM run")[0][0] == 0 and cards.get_card(db, "q").status == cards.PLANNED


def test_queue_entries_list_running_runs_first_then_queued_ones_in_their_order(db):
    first, second, third = make_cards(db, ["first", "second", "third"])
    queue_runs(db, [first, second, third], resume=False, launcher="local")
    with db.transaction() as connection:
        connection.execute(
            "UPDATE run SET status = 'running', started_at = queued_at + 1, device = 'cuda', "
            "env = '{\"cuda_visible_devices\": \"3\"}' WHERE card_id = ?",
            (third.id,),
        )
    listed = [(entry.card, entry.status, entry.where) for entry in queue_entries(db)]
    assert listed == [("third", "running", "GPU 3"), ("first", "queued", ""), ("second", "queued", "")]


def test_a_card_queued_or_running_already_is_refused_and_nothing_is_queued(db):
    first, second = make_cards(db, ["first", "second"])
    queue_runs(db, [second], resume=False, launcher="local")
    with pytest.raises(ExpdbError, match=r"second is queued already \(run 1\)"):
        queue_runs(db, [first, second], resume=False, launcher="local")
    assert query("SELECT count(*) FROM run")[0][0] == 1


def test_a_dead_queues_rows_are_released_by_the_reaper_and_a_live_ones_kept(db):
    dead, live, resumed, cluster = make_cards(db, ["dead", "live", "resumed", "cluster"])
    queue_runs(db, [live], resume=False, launcher="local")
    queue_runs(db, [cluster], resume=False, launcher="slurm")  # no process waits for a cluster job
    queue_runs(db, [dead], resume=False, launcher="local")
    with db.transaction() as connection:  # `resumed` ran before and was queued to resume
        connection.execute(
            "INSERT INTO run (uid, card_id, status, started_at, queued_at, launcher, host, pid, env) "
            "VALUES ('r', ?, 'queued', 1.0, 2.0, 'local', ?, ?, '{}')",
            (resumed.id, socket.gethostname(), dead_pid()),
        )
        connection.execute("UPDATE run SET pid = ? WHERE card_id = ?", (dead_pid(), dead.id))
    reap(db)
    statuses = {card.name: card.status for card in cards.select_cards(db)}
    assert statuses == {"dead": "planned", "live": "queued", "resumed": "interrupted", "cluster": "queued"}


def test_resumed_runs_get_their_status_back_when_released(db):
    (card,) = make_cards(db, ["again"], runner="queuerunners:until_stopped")
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO run (uid, card_id, status, started_at, env) VALUES ('x', ?, 'crashed', 1.0, '{}')", (card.id,)
        )
    (entry,) = queue_runs(db, [cards.get_card(db, "again")], resume=True, launcher="local")
    assert (entry.resumed_from, cards.get_card(db, "again").status) == ("crashed", "queued")
    release(db, [entry])
    assert cards.get_card(db, "again").status == "crashed"


def test_a_job_that_cannot_start_is_reported_and_its_row_released(db):
    (card,) = make_cards(db, ["broken"], runner="queuerunners:nosuch")
    queued = queue_runs(db, [card], resume=False, launcher="local")
    result = run_queue(db, queued, cpu_slots(1), RUN_ARGS, Path("out"))
    (end,) = result.ends
    assert (end.status, result.all_finished) == ("not started", False)
    assert "has no function 'nosuch'" in end.exit_reason
    assert query("SELECT count(*) FROM run")[0][0] == 0


def test_a_slots_job_is_said_to_end_before_its_next_is_said_to_start(db):
    queued = queue_runs(db, make_cards(db, ["a", "b", "c"], sleep=0.1), resume=False, launcher="local")
    said = []
    result = run_queue(
        db, queued, cpu_slots(1), RUN_ARGS, Path("out"), on_start=lambda entry, slot: said.append(("started", entry.card.name)),
        on_end=lambda end: said.append((end.status, end.card)),
    )
    assert result.all_finished
    assert said == [(event, card) for card in "abc" for event in ("started", "finished")]
