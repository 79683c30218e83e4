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
    assert "| card | Cost-Time (CPU, fp32, bs 1) | Params | FLOPs (fvcore, bs 1, MAC) |" in table.out
    assert "Profiles: cpu (" in table.out and "fp32, batch 1, input 8" in table.out
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
        (["--runner", "tinymodel:run"], ["--device", "cuda:3"], "--device cuda:3: no CUDA GPU is visible"),
        (["--runner", "tinymodel:run"], ["--device", "gpu"], "unknown --device 'gpu'; use one of: auto, cpu, cuda, cuda:N"),
        (["--runner", "tinymodel:run"], ["--channels-last"], "channels-last is for models with 4-D (N, C, H, W) inputs"),
        (["--runner", "tinymodel:run"], ["--cudnn-benchmark", "--device", "cpu"], "cudnn.benchmark is for CUDA"),
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


def test_bf16_where_it_is_not_native_is_one_line_and_changes_nothing(cli, tiny, monkeypatch):
    monkeypatch.setattr("expdb.profiler.bf16_native", lambda device: False)
    before = dump()
    result = cli("profile", "tiny", "--dtype", "bf16")
    assert result.code == 2 and result.err.startswith("error: dtype bf16 is not native on this CPU"), result.err
    assert len(result.err.strip().splitlines()) == 1 and dump() == before


def test_profile_records_its_conditions_and_memory(cli, tiny):
    assert cli("profile", "tiny", "--iterations", "5", "--budget", "1", "--threads", "1").code == 0
    (profile,) = rows("SELECT device, dtype, param_dtype, flags, threads, peak_mem_bytes, shared FROM profile")
    assert profile["device"].startswith("cpu (") and (profile["dtype"], profile["param_dtype"]) == ("fp32", "fp32")
    assert (profile["flags"], profile["threads"], profile["shared"]) == ("", 1, 0)
    assert profile["peak_mem_bytes"] is None or profile["peak_mem_bytes"] >= 144 * 4  # the weights, at least


def profile_twice(cli) -> None:
    """tiny at batch 4 by `expdb profile`, then at batch 1 before a run trains."""
    assert cli("profile", "tiny", "--batch", "4", "--iterations", "5", "--budget", "1").code == 0
    assert cli("run", "tiny", "--profile-budget", "1").code == 0


def test_a_run_does_not_replace_a_deliberate_profile(cli, tiny):
    profile_twice(cli)
    assert [row["batch"] for row in rows("SELECT batch FROM profile ORDER BY id")] == [4, 1]
    # Of equally many cards, the deliberate profile's conditions win; --conditions picks the other.
    table = cli("table", "-m", "flops", "-f", "csv")
    assert float(table.out.splitlines()[1].split(",")[1]) == 4 * TINY_MACS
    table = cli("table", "-m", "flops", "--conditions", "batch=1", "-f", "md")
    assert "FLOPs (fvcore, bs 1, MAC)" in table.out and f"| {TINY_MACS} |" in table.out
    assert "Profiles: cpu (" in table.out and "batch 1, input 8" in table.out


def test_a_table_shows_one_set_of_conditions_and_names_the_cards_left_out(cli, tiny):
    for name, variant in (("second", 2), ("other", 3)):  # the same model, so the same input
        assert cli("new", name, "--runner", "tinymodel:run", "--features", str(FEATURES), "--variant", str(variant)).code == 0
    for name in ("tiny", "second"):
        assert cli("profile", name, "--iterations", "5", "--budget", "1").code == 0
    assert cli("profile", "other", "--batch", "2", "--iterations", "5", "--budget", "1").code == 0
    table = cli("table", "-m", "flops", "--baseline", "other", "-f", "md")
    assert "| card | variant | FLOPs (fvcore, bs 1, MAC) | Params | Cost-Time (CPU, fp32, bs 1) |" in table.out, table.out
    other = next(line for line in table.out.splitlines() if line.startswith("| other (baseline)"))
    assert other.replace(" ", "") == "|other(baseline)|3||||"  # measured at batch 2 only: no figures, so no deltas
    body = [line for line in table.out.splitlines() if line.startswith("|")]
    assert not any("%)" in line for line in body)  # no cost deltas against a baseline measured otherwise
    assert "left out: other (--conditions picks others)" in table.out


def test_bad_conditions_are_one_line(cli, tiny):
    assert cli("profile", "tiny", "--iterations", "5", "--budget", "1").code == 0
    for conditions, message in [
        ("dtype", "expected KEY=VALUE pairs"),
        ("colour=red", "KEY one of device, dtype, batch, input, flags, threads"),
        ("dtype=fp16", "no shown card has a profile so measured; there are: cpu ("),
    ]:
        result = cli("table", "-m", "flops", "--conditions", conditions)
        assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_a_noisy_or_shared_cost_time_is_marked_in_every_format(cli, tiny):
    assert cli("profile", "tiny", "--iterations", "5", "--budget", "1").code == 0
    with Database() as db, db.transaction() as connection:
        connection.execute("UPDATE profile SET cost_time_ms = 5, cost_time_p10_ms = 4, cost_time_p90_ms = 9, shared = TRUE")
    md = cli("table", "-m", "cost_time", "-f", "md").out
    assert "| 5ms§‡ |" in md and "‡ profiled while another job" in md
    assert "§ Cost-Time p10-p90 spread over 25% of the median" in md
    latex = cli("table", "-m", "cost_time", "-f", "latex").out
    assert r"5\textsuperscript{\S}\textsuperscript{\ddag}" in latex
    assert r"\par\smallskip{\footnotesize \textsuperscript{\S} Cost-Time" in latex
    rich = cli("table", "-m", "cost_time").out
    assert "5ms§‡" in rich and "§ Cost-Time" in rich
    (record,) = json.loads(cli("table", "-m", "cost_time", "-f", "json").out)
    assert record["marks"] == {"cost_time": ["noisy", "shared"]}
    show = cli("show", "tiny").out
    assert "noisy: the p10-p90 spread is over 25%" in show and "another job shared the device" in show
    assert cli("run", "tiny", "--profile-budget", "0").code == 0  # a report needs a card that ran
    for output in ("r.md", "r.tex"):
        assert cli("report", "tiny", "-m", "cost_time", "-o", output).code == 0
        text = Path(output).read_text()
        assert "§ Cost-Time p10-p90 spread" in text or r"\textsuperscript{\S} Cost-Time p10-p90" in text, text


def test_peak_memory_is_a_table_column(cli, tiny):
    assert cli("profile", "tiny", "--iterations", "5", "--budget", "1").code == 0
    with Database() as db, db.transaction() as connection:
        connection.execute("UPDATE profile SET peak_mem_bytes = 2500000")
    assert "| 2.5MB |" in cli("table", "-m", "peak_mem", "-f", "md").out
    assert "Peak Mem (CPU, fp32, bs 1)" in cli("table", "-m", "peak_mem", "-f", "md").out


def test_what_a_runner_sets_for_the_process_is_put_back(cli):
    import torch

    from expdb.devices import torch_settings

    assert cli("new", "flags", "--runner", "tinymodel:run_setting_flags").code == 0
    before = torch_settings()
    result = cli("run", "flags", "--device", "cpu", "--profile-budget", "0.5")
    assert result.code == 0, result.err
    assert torch_settings() == before and torch.get_num_threads() == before["threads"]


def test_a_cpu_run_records_the_processor_and_its_training_speed(cli, tiny):
    from expdb.runs import cpu_name

    assert cli("run", "tiny", "--device", "cpu", "--profile-budget", "0.5").code == 0
    (run,) = rows("SELECT id, device, env FROM run")
    assert run["device"] == "cpu" and json.loads(run["env"])["device_name"] == cpu_name()
    metrics = {row["key"]: row["value"] for row in rows("SELECT key, value FROM metric")}
    assert metrics["train_steps_per_s"] > 0  # tinymodel logs no samples: steps per second
    (profile,) = rows("SELECT device FROM profile")
    assert profile["device"] == f"cpu ({cpu_name()})"


def test_folded_rows_carry_the_conditions_and_marks_of_their_cards(cli):
    for seed in ("0", "1"):
        assert cli("new", f"tiny_s{seed}", "--runner", "tinymodel:run", "--features", str(FEATURES), "--seed", seed).code == 0
        assert cli("profile", f"tiny_s{seed}", "--iterations", "5", "--budget", "1").code == 0
    with Database() as db, db.transaction() as connection:  # one seed's timing shared its device
        connection.execute("UPDATE profile SET shared = TRUE WHERE card_id = (SELECT id FROM card WHERE name = 'tiny_s1')")
    result = cli("table", "-m", "flops,cost_time", "--over", "seed", "-f", "md")
    assert result.code == 0, result.err
    head = result.out.splitlines()[0]
    assert "FLOPs (fvcore, bs 1" in head and "Cost-Time (" in head and "fp32, bs 1)" in head, head
    (row,) = [line for line in result.out.splitlines() if line.startswith("| tiny")]
    assert "‡" in row and "§" not in row.split("|")[2], row  # the shared seed marks the fold; FLOPs are never marked
    assert "‡ profiled while another job shared the device." in result.out
