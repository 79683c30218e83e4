"""ExpdbCallback with the real HuggingFace Trainer: a tiny regression model trained on the CPU for a few steps."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import expdb  # noqa: E402
from expdb import cards  # noqa: E402
from expdb.db import Database  # noqa: E402
from expdb.integrations.hf import ExpdbCallback  # noqa: E402
from expdb.lifecycle import latest_run  # noqa: E402
from hf_tiny import trainer  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "scripts" / "hf_tiny.py"


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "study.db")


def test_training_records_the_log_history_with_fractional_epochs_and_the_evaluation_as_final_metrics(db, tmp_path):
    training = trainer(ExpdbCallback("bert_tiny", db=db, task="regression"), str(tmp_path / "out"))
    training.train()
    history = [entry for entry in training.state.log_history if "loss" in entry]
    study = expdb.open(db)
    loss = study.curve("bert_tiny", "loss")
    assert list(loss.step) == [entry["step"] for entry in history] == list(range(1, 9))
    assert list(loss.epoch) == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert list(loss.value) == pytest.approx([entry["loss"] for entry in history])
    evaluations = [entry for entry in training.state.log_history if "eval_loss" in entry]
    assert list(study.curve("bert_tiny", "eval_loss").value) == pytest.approx([entry["eval_loss"] for entry in evaluations])
    with Database(db) as database:
        card = cards.get_card(database, "bert_tiny")
        final = cards.latest_values(database, [card.id])[card.id]
        assert latest_run(database, card.id).status == "finished"
    # The arguments that differ from the defaults; output_dir, logging and saving are no parameters.
    assert card.params == {"task": "regression", "learning_rate": 0.05, "num_train_epochs": 2.0}
    assert final.pop("train_steps_per_s") > 0  # expdb's own measure of every run
    assert final == {"eval_loss": pytest.approx(evaluations[-1]["eval_loss"])}


def test_evaluate_after_training_is_a_second_run_and_other_arguments_fork_the_card(db, tmp_path):
    trainer(ExpdbCallback("bert_tiny", db=db), str(tmp_path / "a"), epochs=1).train()
    training = trainer(ExpdbCallback("bert_tiny", db=db), str(tmp_path / "b"), lr=0.01, epochs=1)
    training.train()
    training.evaluate()
    with Database(db) as database:
        fork = cards.get_card(database, "bert_tiny.2")
        statuses = database.query("SELECT status FROM run WHERE card_id = ? ORDER BY id", (fork.id,))
    assert (fork.parent, fork.params["learning_rate"]) == ("bert_tiny", 0.01)
    assert statuses == [("finished",), ("finished",)]


def test_a_nan_loss_stops_training_and_the_run_is_diverged(db, tmp_path):
    # Divergence is found by the run's flusher, twice a second: far sooner than these 2,000 steps take.
    training = trainer(ExpdbCallback("nan", db=db), str(tmp_path / "out"), epochs=500, nan_from=3)
    training.train()
    assert training.state.global_step < 500 * 4
    with Database(db) as database:
        run = latest_run(database, cards.get_card(database, "nan").id)
    assert run.status == "diverged" and "became NaN at step 3" in run.exit_reason  # loss or grad_norm, the same step


def test_an_error_that_ends_the_script_ends_the_run_failed(db, tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), db, "oom", "3"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr  # the hook before expdb's still printed it
    with Database(db) as database:
        run = latest_run(database, cards.get_card(database, "oom").id)
    assert (run.status, run.exit_reason) == ("failed", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_process_that_is_not_rank_zero_records_nothing(db, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    trainer(ExpdbCallback("bert_tiny", db=db), str(tmp_path / "out"), epochs=1).train()
    assert not Path(db).exists()
