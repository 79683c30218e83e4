"""`expdb record CARD --KEY VALUE --source TEXT`: final metrics of a run that happened elsewhere, typed by hand."""

import pytest
from conftest import query, refused, runs_of


def test_record_reads_units_as_the_table_prints_them(cli):
    assert cli("metric", "define", "top1", "--label", "Top-1", "--unit", "%", "--higher-is-better", "--digits", "1").code == 0
    result = cli(
        "record",
        "vit_base_paper",
        "--top1",
        "81.8%",
        "--params",
        "86.6M",
        "--flops",
        "17.6G",
        "--cost_time",
        "34.12ms",
        "--source",
        "DeiT, Table 1",
    )
    assert result.code == 0, result.err
    assert "recorded run 1 of vit_base_paper by hand: top1=81.8% params=86.6M flops=17.6G cost_time=34.12ms" in result.out
    assert query("SELECT key, value FROM metric") == [("top1", 81.8)]
    params, flops, cost_time = query("SELECT params_total, flops, cost_time_ms FROM profile")[0]
    assert (params, flops, cost_time) == (86_600_000, pytest.approx(17.6e9), 34.12)
    table = cli("table").out
    assert "vit_base_paper" in table and "81.8%" in table and "86.6M" in table


def test_a_run_recorded_by_hand_says_so_and_has_nothing_of_this_machine(cli):
    assert cli("record", "resnet50_paper", "--params", "670.32K", "--flops", "6.934G", "--source", "He et al., Table 3").code == 0
    (run,) = runs_of("resnet50_paper")
    assert run["origin"] == "by-hand" and run["source"] == "He et al., Table 3" and run["status"] == "finished"
    assert run["host"] is None and run["device"] is None and run["pid"] is None and run["env"] == "{}"
    assert query("SELECT params_total, flops FROM profile") == [(670_320, pytest.approx(6.934e9))]
    assert "run 1 recorded by hand; source: He et al., Table 3" in cli("show", "resnet50_paper").out


def test_record_into_an_existing_card_adds_a_run(cli):
    assert cli("new", "deit_s", "--lr", "5e-4").code == 0
    assert cli("record", "deit_s", "--top1", "79.8", "--source", "DeiT, Table 1").code == 0
    assert cli("record", "deit_s", "--top1", "79.9", "--source", "DeiT v2").code == 0
    assert [run["source"] for run in runs_of("deit_s")] == ["DeiT, Table 1", "DeiT v2"]


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(
            ["x", "--top1", "81.8ms", "--source", "s"], "--top1 '81.8ms' is in 'ms', but top1 is in '%'", id="wrong-unit"
        ),
        pytest.param(["x", "--acc", "81.8%", "--source", "s"], "but acc has no unit", id="unit-the-metric-lacks"),
        pytest.param(["x", "--top1", "eighty", "--source", "s"], "cannot read --top1 'eighty'", id="not-a-number"),
        pytest.param(["x", "--source", "s"], "nothing to record", id="no-metric"),
        pytest.param(["x", "--top1", "81.8", "--source", " "], "--source is empty", id="empty-source"),
        pytest.param(["x", "--top1", "81.8"], "needs --source SOURCE", id="no-source"),
        pytest.param(["bad name", "--top1", "81.8", "--source", "s"], "invalid card name", id="bad-name"),
        pytest.param(
            ["existing", "--top1", "81.8", "--source", "s", "--from", "existing"], "--from only applies", id="from-existing"
        ),
    ],
)
def test_bad_records_change_nothing(cli, args, message):
    assert cli("new", "existing").code == 0
    assert cli("metric", "define", "top1", "--unit", "%").code == 0
    refused(cli, ["record", *args], message)
