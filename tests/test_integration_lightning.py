"""ExpdbLogger with the real Lightning: a tiny regression model trained by a Trainer on the CPU for a few steps."""

import math
from pathlib import Path

import pytest

pytest.importorskip("lightning")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import expdb  # noqa: E402
from expdb import cards  # noqa: E402
from expdb.db import Database  # noqa: E402
from expdb.errors import ExpdbError  # noqa: E402
from expdb.integrations.lightning import ExpdbLogger  # noqa: E402
from expdb.lifecycle import latest_run  # noqa: E402


class Tiny(L.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 8, fail_at: int | None = None, nan_from: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.example_input_array = torch.zeros(2, 4)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, index):
        if self.global_step == self.hparams.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        if self.hparams.nan_from is not None and self.global_step >= self.hparams.nan_from:
            loss = loss * math.nan
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, index):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def test_step(self, batch, index):
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader():
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def trainer(logger, epochs=2):
    return L.Trainer(
        max_epochs=epochs, logger=logger, log_every_n_steps=1, accelerator="cpu", enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False,
    )


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "study.db")


def test_fit_records_hyperparameters_curves_with_step_and_epoch_final_metrics_and_a_profile(db):
    trainer(ExpdbLogger("tiny", db=db, profile_budget_s=0.2, batch=8)).fit(Tiny(), loader(), loader())
    with Database(db) as database:
        card = cards.get_card(database, "tiny")
        assert card.params == {"batch": 8, "lr": 0.1, "hidden": 8}
        assert latest_run(database, card.id).status == "finished"
        profile = cards.latest_profile(database, card.id)
        final = cards.latest_values(database, [card.id])[card.id]
    assert profile is not None and profile["params_total"] == 4 * 8 + 8 + 8 + 1 and profile["input_shape"] == "4"
    study = expdb.open(db)
    loss = study.curve("tiny", "loss")
    # Lightning's step: the optimizer steps taken before the batch; its epoch counts from 0.
    assert list(loss.step) == list(range(8)) and list(loss.epoch) == [0.0] * 4 + [1.0] * 4
    val_loss = study.curve("tiny", "val_loss")
    assert list(val_loss.step) == [3, 7] and list(val_loss.epoch) == [0.0, 1.0]  # at the last step of its epoch
    assert final["val_loss"] == val_loss.value.iloc[-1] and final["loss"] == loss.value.iloc[-1]


def test_a_second_fit_with_other_hyperparameters_is_a_fork_and_test_after_fit_a_second_run(db):
    trainer(ExpdbLogger("tiny", db=db, profile_budget_s=0.2)).fit(Tiny(), loader(), loader())
    fitting = trainer(ExpdbLogger("tiny", db=db, profile_budget_s=0.2), epochs=1)
    model = Tiny(lr=0.05)
    fitting.fit(model, loader())
    fitting.test(model, loader())
    with Database(db) as database:
        fork = cards.get_card(database, "tiny.2")
        assert (fork.parent, fork.params["lr"]) == ("tiny", 0.05)
        runs = database.query("SELECT status FROM run WHERE card_id = ? ORDER BY id", (fork.id,))
        final = cards.latest_values(database, [fork.id])[fork.id]
    assert runs == [("finished",), ("finished",)]
    assert {"loss", "test_loss"} <= set(final)


def test_an_error_in_training_ends_the_run_failed_with_its_last_line(db):
    with pytest.raises(RuntimeError, match="illegal memory access"):
        trainer(ExpdbLogger("broken", db=db, profile_budget_s=0)).fit(Tiny(fail_at=3), loader())
    with Database(db) as database:
        run = latest_run(database, cards.get_card(database, "broken").id)
        assert cards.latest_profile(database, cards.get_card(database, "broken").id) is None
    assert (run.status, run.exit_reason) == ("failed", "RuntimeError: CUDA error: an illegal memory access was encountered")
    assert list(expdb.open(db).curve("broken", "loss").step) == [0, 1, 2]


def test_ctrl_c_ends_the_run_interrupted(db, monkeypatch):
    class Interrupted(Tiny):
        def training_step(self, batch, index):
            if self.global_step == 2:
                raise KeyboardInterrupt
            return super().training_step(batch, index)

    monkeypatch.setattr("signal.signal", lambda *args: None)  # Lightning ignores SIGINT from then on: not in pytest
    with pytest.raises(SystemExit):  # Lightning's graceful shutdown
        trainer(ExpdbLogger("stopped", db=db, profile_budget_s=0)).fit(Interrupted(), loader())
    with Database(db) as database:
        run = latest_run(database, cards.get_card(database, "stopped").id)
    assert (run.status, run.exit_reason) == ("interrupted", "interrupted (Ctrl-C)")


def test_a_nan_loss_stops_training_and_the_run_is_diverged(db):
    with pytest.raises(expdb.RunStopped, match="loss became NaN"):
        trainer(ExpdbLogger("nan", db=db, profile_budget_s=0), epochs=1000).fit(Tiny(nan_from=5), loader())
    with Database(db) as database:
        run = latest_run(database, cards.get_card(database, "nan").id)
    assert run.status == "diverged" and run.exit_reason.startswith("loss became NaN at step 5")


def test_hyperparameters_logged_during_the_run_with_other_values_are_refused(db):
    class Changing(Tiny):
        def on_train_epoch_end(self):
            self.logger.log_hyperparams({"lr": 0.5})

    with pytest.raises(ExpdbError, match=r"^lr=0.5 given while run 1 of changing runs with lr=0.1"):
        trainer(ExpdbLogger("changing", db=db, profile_budget_s=0)).fit(Changing(), loader())
    with Database(db) as database:
        card = cards.get_card(database, "changing")
        assert card.params["lr"] == 0.1 and latest_run(database, card.id).status == "failed"


def test_a_process_that_is_not_rank_zero_records_nothing(db, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    trainer(ExpdbLogger("tiny", db=db), epochs=1).fit(Tiny(), loader())
    assert not Path(db).exists()
