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


def test_the_trainer_state_the_trainer_writes_imports_as_the_callback_recorded_it(db, tmp_path):
    from expdb.results import import_log
    from expdb.series import read_curve

    training = trainer(ExpdbCallback("recorded", db=db), str(tmp_path / "out"))
    training.train()
    state = tmp_path / "out" / "trainer_state.json"
    training.state.save_to_json(str(state))  # what the Trainer writes into each checkpoint
    with Database(db) as database:
        imported = import_log(database, str(state), "hf", "imported")
        recorded = latest_run(database, cards.get_card(database, "recorded").id).id
        for key in ("loss", "eval_loss", "learning_rate"):
            by_callback, by_import = read_curve(database, recorded, key), read_curve(database, imported.runs[0].run_id, key)
            assert (list(by_import.steps), list(by_import.epochs)) == (list(by_callback.steps), list(by_callback.epochs))
            assert list(by_import.values) == pytest.approx(list(by_callback.values))


def test_report_to_expdb_is_refused_by_transformers_so_the_callback_is_passed():
    # The README says why there is no report_to="expdb": transformers takes reporters from a fixed table only.
    from transformers.integrations.integration_utils import get_reporting_integration_callbacks

    with pytest.raises(ValueError, match="expdb is not supported"):
        get_reporting_integration_callbacks("expdb")


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
