"""`expdb profile`, profiling before a run trains, and `run.profile` from a script."""

import json
import sys
from pathlib import Path

import pytest
from conftest import dump, records

import expdb
from expdb.db import Database

SCRIPTS = Path(__file__).resolve().parent / "scripts"
FEATURES = 8
# fvcore MACs of tinymodel at batch 1: Linear(8, 16) then Linear(16, 1), no bias.
TINY_MACS = FEATURES * 16 + 16


@pytest.fixture(autouse=True)
def scripts_importable(monkeypatch):
    monkeypatch.setattr(sys, "path", [str(SCRIPTS), *sys.path])


rows = records


@pytest.fixture
def tiny(cli):
    assert cli("new", "tiny", "--runner", "tinymodel:run", "--features", str(FEATURES)).code == 0


def test_profile_measures_and_keeps_the_figures(cli, tiny):
    result = cli("profile", "tiny", "--iterations", "5", "--budget", "1")
    assert result.code == 0, result.err
    assert "Params 144" in result.out and "FLOPs 144 (fvcore, MAC)" in result.out and "Cost-Time" in result.out
    (profile,) = rows("SELECT * FROM profile")
    assert profile["run_id"] is None  # no training, no run
    assert (profile["params_total"], profile["flops"], profile["flops_counter"]) == (144, TINY_MACS, "fvcore")
    assert profile["batch"] == 1 and profile["input_shape"] == "8" and profile["dtype"] == "fp32"
    assert profile["cost_time_p10_ms"] <= profile["cost_time_ms"] <= profile["cost_time_p90_ms"]
    assert rows("SELECT count(*) AS n FROM run")[0]["n"] == 0


def test_profile_at_another_batch_and_shape(cli, tiny):
    result = cli("profile", "tiny", "--batch", "4", "--input", "8", "--iterations", "5", "--budget", "1")
    assert result.code == 0, result.err
    (profile,) = rows("SELECT batch, flops FROM profile")
    assert profile == {"batch": 4, "flops": 4 * TINY_MACS}


def test_table_and_show_carry_the_profile(cli, tiny):
    assert cli("profile", "tiny", "--iterations", "5", "--budget", "1").code == 0
    table = cli("table", "-m", "cost_time", "-f", "md")
    assert "| card | Cost-Time | Params | FLOPs (fvcore, MAC) |" in table.out
    assert "| tiny |" in table.out and "| 144 | 144 |" in table.out
    show = cli("show", "tiny")
    assert "FLOPs 144 (fvcore, MAC)" in show.out


def test_run_profiles_the_model_before_training(cli, tiny):
    result = cli("run", "tiny", "--profile-budget", "1")
    assert result.code == 0, result.err
    (run,) = rows("SELECT id FROM run")
    (profile,) = rows("SELECT run_id, flops FROM profile")
    assert profile == {"run_id": run["id"], "flops": TINY_MACS}


def test_run_without_profiling(cli, tiny):
    assert cli("run", "tiny", "--profile-budget", "0").code == 0
    assert rows("SELECT count(*) AS n FROM profile")[0]["n"] == 0


def test_a_model_that_cannot_be_built_does_not_fail_the_run(cli):
    assert cli("new", "broken", "--runner", "brokenmodel:run").code == 0
    result = cli("run", "broken")
    assert result.code == 0, result.err
    (run,) = rows("SELECT status FROM run")
    assert run["status"] == "finished"
    (note,) = rows("SELECT text, automatic FROM note")
    assert note == {"text": "could not profile the model: RuntimeError: no such checkpoint: weights.pt", "automatic": 1}


def test_run_profile_from_a_script_keeps_it_with_the_run(workdir):
    import torch

    model = torch.nn.Linear(4, 2, bias=False)
    with expdb.start("scripted") as run:
        measured = run.profile(model, torch.zeros(3, 4), iterations=5, time_budget_s=1)
        run.log(0, loss=1.0)
    assert (measured.params_total, measured.flops, measured.batch) == (8, 3 * 8, 3)
    (profile,) = rows("SELECT run_id, flops, batch FROM profile")
    assert profile == {"run_id": run.id, "flops": 24, "batch": 3}


def test_expdb_profile_measures_any_model():
    import torch

    measured = expdb.profile(torch.nn.Linear(768, 3072), torch.zeros(1, 197, 768), iterations=5, time_budget_s=1)
    assert measured.flops == 464_781_312 and measured.flops_counter == "fvcore"


@pytest.mark.parametrize(
    ("card_args", "args", "message"),
    [
        (["--runner", "tinymodel:run"], ["--device", "cuda"], "no CUDA GPU is visible"),
        (["--runner", "tinymodel:run"], ["--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["--runner", "tinymodel:run"], ["--input", "3xbanana"], "3xbanana"),
        (["--runner", "tinymodel:run"], ["--input", "3x4"], "the model rejects inputs of shape 3x4"),
        (["--runner", "brokenmodel:run"], [], "cannot build the model of x: RuntimeError: no such checkpoint"),
        (["--cmd", "python train.py"], [], "x has no runner, so expdb cannot build its model"),
        (["--runner", "tinyrunners:finish"], [], "has no build(params) function"),
    ],
)
def test_bad_profile_input_is_one_line_and_changes_nothing(cli, card_args, args, message):
    assert cli("new", "x", *card_args).code == 0
    before = dump()
    result = cli("profile", "x", *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.err
    assert dump() == before


def test_profile_with_throughput_at_a_larger_batch(cli, tiny):
    result = cli("profile", "tiny", "--iterations", "5", "--budget", "1", "--throughput-batch", "32")
    assert result.code == 0, result.err
    assert "samples/s at batch 32" in result.out
    (profile,) = rows("SELECT details FROM profile")
    details = json.loads(profile["details"])
    assert details["throughput_batch"] == 32 and details["throughput"] > 0


def test_changing_parameters_drops_the_profile_of_the_old_model(cli, tiny):
    assert cli("profile", "tiny", "--iterations", "5", "--budget", "1").code == 0
    assert cli("set", "tiny", "--features", "4").code == 0
    assert rows("SELECT count(*) AS n FROM profile")[0]["n"] == 0


def test_the_table_shows_the_latest_profile_whole(cli, tiny):
    assert cli("profile", "tiny", "--iterations", "5", "--budget", "1").code == 0
    with Database() as db, db.transaction() as connection:
        # A later profile whose FLOPs could not be counted: no older FLOPs may stand beside it.
        connection.execute(
            "INSERT INTO profile (uid, card_id, created_at, params_total, cost_time_ms, details) "
            "SELECT 'later', card_id, created_at + 1, 144, 1.5, '{}' FROM profile"
        )
    table = cli("table", "-m", "cost_time", "-f", "csv")
    assert table.out.splitlines() == ["card,cost_time_ms,params", "tiny,1.5,144"]
