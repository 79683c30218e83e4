"""`expdb metric define KEY ...` and `expdb metric list`: how a metric is shown."""

import pytest
from conftest import query, refused


def test_define_gives_a_label_unit_direction_and_digits(cli):
    result = cli("metric", "define", "top1", "--label", "Top-1", "--unit", "%", "--higher-is-better", "--digits", "1")
    assert result.code == 0, result.err
    assert "top1: 'Top-1', unit %, higher is better, format f1" in result.out
    assert query("SELECT key, label, unit, direction, format FROM metric_def WHERE key = 'top1'") == [
        ("top1", "Top-1", "%", "higher", "f1")
    ]


def test_the_better_run_is_bolded_once_a_direction_is_defined(cli):
    for name, value in (("a", "76.1"), ("b", "81.8")):
        assert cli("record", name, "--top1", value, "--source", "paper").code == 0
    assert "**" not in cli("table", "--format", "md").out  # no direction: nothing is best
    assert cli("metric", "define", "top1", "--higher-is-better", "--digits", "1").code == 0
    assert "**81.8**" in cli("table", "--format", "md").out


def test_redefining_keeps_what_is_not_given(cli):
    assert cli("metric", "define", "latency", "--label", "Latency", "--unit", "ms", "--lower-is-better").code == 0
    assert cli("metric", "define", "latency", "--digits", "2").code == 0
    assert query("SELECT label, unit, direction, format FROM metric_def WHERE key = 'latency'") == [
        ("Latency", "ms", "lower", "f2")
    ]
    assert cli("metric", "define", "flops", "--digits", "2", "--si").code == 0
    assert query("SELECT format FROM metric_def WHERE key = 'flops'") == [("si2",)]


def test_list_shows_definitions_and_the_recorded_metrics_without_one(cli):
    assert cli("record", "a", "--top5", "95.2", "--source", "paper").code == 0
    assert cli("metric", "define", "top1", "--label", "Top-1", "--unit", "%").code == 0
    out = cli("metric", "list").out
    assert "Top-1" in out and "top5" in out and "1 metric recorded without a definition" in out


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["has space"], "invalid metric key 'has space'", id="bad-key"),
        pytest.param(["top1", "--unit", "1 %"], "invalid unit '1 %'", id="bad-unit"),
        pytest.param(["top1", "--digits", "12"], "--digits 12 is out of range", id="digits"),
        pytest.param(["top1", "--si"], "--si needs --digits", id="si-without-digits"),
        pytest.param(["top1", "--label", " "], "--label is empty", id="empty-label"),
    ],
)
def test_bad_definitions_change_nothing(cli, args, message):
    assert cli("new", "existing").code == 0
    refused(cli, ["metric", "define", *args], message)
