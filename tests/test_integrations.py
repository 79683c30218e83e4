"""What the framework integrations share (expdb.integrations): hyperparameters as typed parameters, the rank
that records, a run begun on demand, and hyperparameters given while it runs."""

import sys
from argparse import Namespace

import pytest

from expdb import cards
from expdb.db import Database
from expdb.ranks import process_rank
from expdb.errors import ExpdbError
from expdb.integrations import Recorder, hyperparameters
from expdb.lifecycle import latest_run


def test_hyperparameters_are_flattened_typed_and_keyed_as_parameters():
    numpy = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    raw = {
        "lr": numpy.float64(3e-4), "layers": numpy.int64(6), "optimizer": {"name": "adamw", "betas": (0.9, 0.99)},
        "scale": torch.tensor(2.5), "ns": Namespace(depth=4), "dropout": None, "use amp": True, "1cycle": "on",
        "criterion": torch.nn.MSELoss(),
    }
    assert hyperparameters(raw) == {
        "lr": 3e-4, "layers": 6, "optimizer.name": "adamw", "optimizer.betas": [0.9, 0.99], "scale": 2.5,
        "ns.depth": 4, "use_amp": True, "_1cycle": "on", "criterion": "MSELoss()",
    }
    assert [type(value) for value in hyperparameters(raw).values()][:2] == [float, int]


@pytest.mark.parametrize(
    ("environment", "rank"),
    [({}, 0), ({"RANK": "2", "LOCAL_RANK": "0"}, 2), ({"SLURM_PROCID": "3"}, 3), ({"LOCAL_RANK": "1"}, 1), ({"RANK": ""}, 0)],
)
def test_the_rank_comes_from_the_launchers_variables(monkeypatch, tmp_path, environment, rank):
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert process_rank() == rank
    assert Recorder("fw", db=str(tmp_path / "study.db"), on_diverge="stop", params={}).rank_zero == (rank == 0)


def test_a_recorder_begins_on_the_first_point_and_each_report_after_its_end_is_another_run(tmp_path):
    db = str(tmp_path / "study.db")
    recorder = Recorder("fw", db=db, on_diverge="stop", params={"lr": 0.1})
    recorder.add_params({"batch": 8})
    assert recorder.run is None and not (tmp_path / "study.db").exists()
    recorder.log(1, 0.5, {"loss": 1.0})
    first = recorder.run
    recorder.end(None)
    recorder.log(2, 1.0, {"loss": 0.5})
    second = recorder.run
    recorder.end(RuntimeError("boom"))
    assert first is not None and second is not None and first.id != second.id
    assert (first.status, second.status, second.exit_reason) == ("finished", "failed", "RuntimeError: boom")
    with Database(db) as database:
        assert cards.get_card(database, "fw").params == {"lr": 0.1, "batch": 8}


def test_a_recorder_s_divergence_thresholds_are_the_run_s_and_checked_at_once(tmp_path):
    db = str(tmp_path / "study.db")
    with pytest.raises(ExpdbError, match="rise_factor must be above 1"):
        Recorder("fw", db=db, on_diverge="note", params={}, diverge={"rise_factor": 0.5})
    recorder = Recorder("fw", db=db, on_diverge="note", params={}, diverge={"explode_factor": 10})
    for step, loss in enumerate([1.0, 50.0, 60.0, 70.0, 80.0], start=1):  # 50x: no explosion at the default 100
        recorder.log(step, None, {"loss": loss})
    recorder.end(None)
    with Database(db) as database:
        (note,) = cards.card_details(database, "fw").notes
    assert note.text.startswith("loss exploded at step 2: 50") and note.settings["explode_factor"] == 10


def test_hyperparameters_that_differ_while_the_run_goes_are_refused_and_the_same_ones_are_not(tmp_path):
    recorder = Recorder("fw", db=str(tmp_path / "study.db"), on_diverge="stop", params={"lr": 0.1})
    run = recorder.started()
    recorder.add_params({"lr": 0.1})
    with pytest.raises(ExpdbError, match=r"^lr=0.2 given while run 1 of fw runs with lr=0.1: a card's parameters are fixed"):
        recorder.add_params({"lr": 0.2})
    with pytest.raises(ExpdbError, match=r"^batch=8 given while run 1 of fw runs with batch=no value"):
        recorder.add_params({"batch": 8})
    recorder.end(None)
    with Database(str(tmp_path / "study.db")) as database:
        assert cards.get_card(database, "fw").params == {"lr": 0.1}
        assert latest_run(database, run.card.id).status == "finished"


def test_an_uncaught_error_ends_the_run_failed_and_the_previous_hook_still_runs(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc_info: seen.append(exc_info[1]))
    recorder = Recorder("fw", db=str(tmp_path / "study.db"), on_diverge="stop", params={})
    run = recorder.started()
    error = ValueError("bad batch")
    sys.excepthook(ValueError, error, None)
    assert seen == [error] and recorder.run is None
    assert (run.status, run.exit_reason) == ("failed", "ValueError: bad batch")
    assert sys.excepthook.__name__ == "<lambda>"
