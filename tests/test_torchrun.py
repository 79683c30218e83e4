"""Many processes, one run: expdb.start from every rank of a real torchrun (gloo backend, 2 processes on the CPU),
and a script calling expdb.start inside `expdb run -- ...`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import query, runs_of

from expdb.ranks import IdleRun, process_rank

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=os.environ)


def curves(run_id: int) -> list[str]:
    return sorted(key for (key,) in query("SELECT key FROM series WHERE run_id = ?", (run_id,)))


TRAINING_COSTS = ("throughput", "train_steps_per_s", "train_peak_mem")  # what expdb measures of every run


def metrics(run_id: int) -> dict[str, float]:
    """The run's final metrics, less the training costs expdb records of every run."""
    found = dict(query("SELECT key, value FROM metric WHERE run_id = ?", (run_id,)))
    return {key: value for key, value in found.items() if key.rsplit("/", 1)[-1] not in TRAINING_COSTS}


def test_rank_zero_owns_the_run_and_the_other_ranks_record_nothing(workdir):
    done = torchrun("ddp")
    assert done.returncode == 0, done.stderr
    runs = runs_of("ddp")
    assert [run["status"] for run in runs] == ["finished"]
    run_id = runs[0]["id"]
    assert f"rank 0: Run {run_id}" in done.stdout and "rank 1: IdleRun None" in done.stdout
    assert [key for key in curves(run_id) if not key.startswith("sys/")] == ["loss", "rank_seen"]
    assert metrics(run_id) == {"final": 0.0}


def test_other_ranks_add_their_curves_to_rank_zeros_run_when_asked(workdir):
    done = torchrun("ddp_all", "all")
    assert done.returncode == 0, done.stderr
    runs = runs_of("ddp_all")
    assert [run["status"] for run in runs] == ["finished"]
    run_id = runs[0]["id"]
    assert f"rank 1: Run {run_id}" in done.stdout
    assert [key for key in curves(run_id) if not key.startswith("sys/")] == ["loss", "rank1/loss", "rank1/rank_seen", "rank_seen"]
    assert metrics(run_id) == {"final": 0.0, "rank1/final": 1.0}


def test_a_script_inside_expdb_run_attaches_to_its_run(cli, new):
    new("wrapped")
    result = cli("run", "wrapped", "--", *TORCHRUN, str(SCRIPT), "wrapped")
    assert result.code == 0, result.err
    runs = runs_of("wrapped")
    assert [run["status"] for run in runs] == ["finished"]  # not refused as "already running"
    run_id = runs[0]["id"]
    assert f"rank 0: Run {run_id}" in result.out
    assert "loss" in curves(run_id) and metrics(run_id) == {"final": 0.0}
    assert query("SELECT progress_step FROM run WHERE id = ?", (run_id,)) == [(4,)]  # the script's steps are progress


def test_a_script_inside_expdb_run_of_another_card_is_refused(cli, new, monkeypatch):
    new("outer")
    new("other")
    monkeypatch.setenv("EXPDB_RUN_ID", "1")
    monkeypatch.setenv("EXPDB_CARD", "outer")
    import expdb

    with pytest.raises(expdb.ExpdbError, match=r"this script runs inside `expdb run outer` \(run 1\), so it records into outer"):
        with expdb.start("other"):
            pass


@pytest.mark.parametrize(
    ("variables", "rank"),
    [({}, 0), ({"RANK": "3", "LOCAL_RANK": "1"}, 3), ({"SLURM_PROCID": "2"}, 2), ({"LOCAL_RANK": "1"}, 1)],
)
def test_the_rank_comes_from_the_launchers_variables(monkeypatch, variables, rank):
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert process_rank() == rank


def test_a_non_zero_rank_opens_no_database(workdir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    import expdb

    with expdb.start("quiet", lr=0.1) as run:
        assert isinstance(run, IdleRun) and run.params == {"lr": 0.1} and not run.should_stop
        run.log(0, loss=1.0)
        run.summary(iou50=0.5)
    assert not (workdir / "experiments.db").exists()


def test_a_divergence_found_in_an_attached_script_ends_the_run_diverged(cli, new):
    new("blowup")
    script = (
        "import expdb, math\n"
        "with expdb.start('blowup') as run:\n"
        "    for step in range(100):\n"
        "        run.log(step, loss=1.0 if step < 5 else math.nan)\n"
        "        run.raise_if_stopped()\n"
        "        import time; time.sleep(0.01)\n"
    )
    result = cli("run", "blowup", "--", sys.executable, "-c", script)
    assert result.code == 1, result.err
    (run,) = runs_of("blowup")
    assert (run["status"], run["exit_reason"]) == ("diverged", "loss became NaN at step 5 (last finite 1 at step 4)")
