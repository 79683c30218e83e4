"""Thread counts from the cores actually free: the runner, the queue and the demo do not oversubscribe a busy machine."""

import os
import sys

import pytest

from expdb.cpus import ThreadBudget, kept_threads, thread_budget, use_threads
from expdb.queue import cpu_slots


@pytest.mark.parametrize("cores, load, jobs, threads", [
    (2, 0.0, 1, 2),    # an idle machine: every core
    (2, 0.4, 1, 2),    # a little background work: still both
    (2, 1.2, 1, 1),    # one core busy
    (2, 10.0, 1, 1),   # the shared machine of the issue: one thread, never zero
    (8, 2.0, 2, 3),    # 6 free cores shared by 2 jobs
    (8, 0.0, 16, 1),   # more jobs than cores: one thread each
])
def test_threads_are_the_free_cores_shared_among_the_jobs(cores, load, jobs, threads):
    budget = thread_budget(jobs, cores=cores, load=load, environ={})
    assert budget.threads == threads and not budget.given


def test_the_users_omp_num_threads_wins():
    budget = thread_budget(1, cores=8, load=0.0, environ={"OMP_NUM_THREADS": "3"})
    assert (budget.threads, budget.given) == (3, True)
    assert budget.describe() == "CPU threads: 3, as OMP_NUM_THREADS says"


def test_the_choice_is_said_with_its_reason():
    assert thread_budget(1, cores=2, load=9.6, environ={}).describe() == (
        "CPU threads: 1 (2 cores, load average 9.6; set OMP_NUM_THREADS to choose)"
    )
    assert "CPU threads: 3 each (8 cores" in thread_budget(2, cores=8, load=2.0, environ={}).describe()


def test_without_a_load_average_every_core_is_used(monkeypatch):
    def no_load():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", no_load)
    budget = thread_budget(1, cores=4, environ={})
    assert budget.threads == 4 and budget.describe().endswith("(4 cores, load unknown; set OMP_NUM_THREADS to choose)")


def test_a_busy_machine_gives_the_queue_fewer_threads_per_job():
    busy = cpu_slots(2, thread_budget(2, cores=8, load=6.0, environ={}))
    assert [slot.env["OMP_NUM_THREADS"] for slot in busy] == ["1", "1"]
    assert [slot.env["MKL_NUM_THREADS"] for slot in busy] == ["1", "1"]


def test_use_threads_sets_what_torch_reads_and_tells_a_torch_already_imported(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    told = []

    class FakeTorch:
        @staticmethod
        def set_num_threads(n):
            told.append(n)

    monkeypatch.setitem(sys.modules, "torch", FakeTorch)
    use_threads(ThreadBudget(1, 2, 9.0))
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1" and told == [1]
    use_threads(ThreadBudget(5, 2, None, given=True))  # the user's own choice: left alone
    assert os.environ["OMP_NUM_THREADS"] == "1" and told == [1]


def test_the_process_gets_its_own_thread_settings_back_after_its_trainings(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    threads = [7]

    class FakeTorch:
        @staticmethod
        def get_num_threads():
            return threads[-1]

        @staticmethod
        def set_num_threads(n):
            threads.append(n)

    monkeypatch.setitem(sys.modules, "torch", FakeTorch)
    with kept_threads():
        use_threads(ThreadBudget(1, 2, 9.0))
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1" and threads[-1] == 1
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ and threads[-1] == 7


def test_run_says_how_many_threads(cli, monkeypatch, tmp_path):
    (tmp_path / "mine.py").write_text("def run(params, ctx):\n    ctx.log(1, loss=1.0)\n    ctx.summary(iou50=0.5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cli("new", "c", "--runner", "mine:run").code == 0
    result = cli("run", "c")
    assert result.code == 0, result
    assert "CPU threads: 1, as OMP_NUM_THREADS says" in result.err
