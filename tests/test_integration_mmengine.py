"""ExpdbVisBackend with the real MMEngine: a config names it, as MMDetection's would, and MMEngine's Runner
trains a tiny regression model on the CPU for a few iterations."""

import json
from pathlib import Path

import pytest

pytest.importorskip("mmengine")

from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import expdb  # noqa: E402
from expdb import cards  # noqa: E402
from expdb.db import Database  # noqa: E402
from expdb.lifecycle import latest_run  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent / "scripts"
CONFIG = SCRIPTS / "mm_tiny.py"


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the config's custom_imports name mmengine_tiny
    monkeypatch.setenv("EXPDB_DB", str(tmp_path / "study.db"))
    return str(tmp_path / "study.db")


def train(tmp_path, name: str, **backend):
    config = Config.fromfile(str(CONFIG))
    config.work_dir = str(tmp_path / name)
    config.experiment_name = name  # MMEngine's instances are named by it: one per runner in this process
    config.visualizer.vis_backends[1].update(backend)
    runner = Runner.from_cfg(config)
    runner.train()
    return runner


def test_a_config_names_the_backend_and_training_is_recorded_with_iterations_epochs_and_validation(db, tmp_path):
    runner = train(tmp_path, "first")
    with Database(db) as database:
        card = cards.get_card(database, "mm_tiny")  # named by the config file
        final = cards.latest_values(database, [card.id])[card.id]
        assert latest_run(database, card.id).status == "finished"
    assert card.params == {"optim_wrapper.optimizer.lr": 0.05}
    # The same points as MMEngine's own LocalVisBackend wrote beside it.
    local = [json.loads(line) for line in Path(runner.log_dir, "vis_data", "scalars.json").read_text().splitlines()]
    training = [entry for entry in local if "loss" in entry]
    study = expdb.open(db)
    loss = study.curve("mm_tiny", "loss")
    assert list(loss.step) == [entry["iter"] for entry in training] == list(range(1, 9))
    assert list(loss.epoch) == [entry["epoch"] for entry in training] == [1] * 4 + [2] * 4
    assert list(loss.value) == pytest.approx([entry["loss"] for entry in training])
    mse = study.curve("mm_tiny", "mse")
    assert list(mse.value) == pytest.approx([entry["mse"] for entry in local if "mse" in entry])
    assert list(mse.step) == [4, 8] and list(mse.epoch) == [1, 2]  # after the iteration and epoch it closed
    assert final.pop("train_steps_per_s") > 0  # expdb's own measure of every run
    assert final == {"mse": pytest.approx(mse.value.iloc[-1])}


def test_a_card_given_to_the_backend_and_other_config_values_fork_it(db, tmp_path):
    train(tmp_path, "a", card="rtmdet_s")
    config_lr = Config.fromfile(str(CONFIG))
    config_lr.optim_wrapper.optimizer.lr = 0.01
    config_lr.work_dir, config_lr.experiment_name = str(tmp_path / "b"), "b"
    config_lr.visualizer.vis_backends[1].card = "rtmdet_s"
    Runner.from_cfg(config_lr).train()
    with Database(db) as database:
        fork = cards.get_card(database, "rtmdet_s.2")
        assert not cards.card_exists(database, "mm_tiny")
    assert (fork.parent, fork.params) == ("rtmdet_s", {"optim_wrapper.optimizer.lr": 0.01})


def test_a_process_that_is_not_rank_zero_records_nothing(db, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert train(tmp_path, "rank1").iter == 8
    assert not Path(db).exists()
