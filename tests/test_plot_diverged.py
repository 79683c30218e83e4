"""Plots stay readable when a run diverged: the y range comes from the healthy data, the rest is clipped
and marked; --ylim and --log-y in `plot` and `report`; an axis a run lacks is said in the legend."""

import math

import numpy as np
import pytest

from expdb.cards import get_card
from expdb.errors import ExpdbError
from expdb.outputs import parse_ylim
from expdb.plot import plot_curves, y_limits
from expdb.report import write_report
from test_plot import record


@pytest.fixture
def diverged(db):
    """Two healthy cards with losses in [0.3, 2.8], and one that blows up to 1e14 after step 60."""
    for name, rate in (("calm_a", 30.0), ("calm_b", 20.0)):
        record(db, name, [(s, {"epoch": s / 50, "loss": 2.5 * math.exp(-s / rate) + 0.3}) for s in range(200)])
    blowup = [(s, {"loss": 2.5 * math.exp(-s / 10) + 0.3 if s <= 60 else 10.0 ** min(14, s - 60)}) for s in range(200)]
    record(db, "blowup", blowup, on_diverge="note")
    return db


def cards(db, *names):
    return [get_card(db, name) for name in names]


def test_the_diverged_run_does_not_set_the_y_range(diverged, workdir):
    steps = [row[0] for row in diverged.query("SELECT step FROM note WHERE automatic = 1")]
    assert steps and min(steps) > 55  # expdb's detector noted where it diverged
    result = plot_curves(diverged, cards(diverged, "calm_a", "calm_b", "blowup"), ["loss"], workdir / "p.png")
    low, high = result.y_limits[0]
    assert 0.0 < low < 0.3 and 2.8 < high < 3.0
    by_card = {line.card: line for line in result.lines}
    assert by_card["blowup"].clipped > 100 and by_card["calm_a"].clipped == 0 and by_card["calm_b"].clipped == 0


def test_without_the_diverged_run_nothing_is_clipped(diverged, workdir):
    result = plot_curves(diverged, cards(diverged, "calm_a"), ["loss"], workdir / "p.png", log_y=True)
    low, high = result.y_limits[0]
    assert 0.25 < low < 0.3 and 2.8 < high < 3.5
    assert result.lines[0].clipped == 0


def test_ylim_by_hand_clips_every_line(diverged, workdir):
    result = plot_curves(diverged, cards(diverged, "calm_a", "calm_b"), ["loss"], workdir / "p.png", ylim=(0.0, 1.0))
    assert result.y_limits == [(0.0, 1.0)]
    assert all(line.clipped > 0 for line in result.lines)  # both start at 2.8
    top_only = plot_curves(diverged, cards(diverged, "calm_a"), ["loss"], workdir / "q.png", ylim=(None, 5.0))
    low, high = top_only.y_limits[0]
    assert high == 5.0 and 0.0 < low < 0.3


def test_y_limits_of_no_healthy_data_are_left_to_matplotlib():
    assert y_limits([], [], None, False) == (None, None)
    assert y_limits([], [], (1.0, None), False) == (1.0, None)


def test_a_diverged_run_climbing_before_its_noted_divergence_does_not_raise_the_range():
    steady, climbing = np.array([1.0, 2.0]), np.array([0.5, 5000.0, 7000.0])
    low, high = y_limits([steady], [climbing], None, False)
    assert low < 0.5 and 2.0 < high < 3.0
    alone_low, alone_high = y_limits([], [climbing], None, False)  # no steady run: its own points set it
    assert alone_high > 7000.0


@pytest.mark.parametrize("text, expected", [("0:5", (0.0, 5.0)), (":5", (None, 5.0)), ("-1e3:", (-1000.0, None))])
def test_parse_ylim(text, expected):
    assert parse_ylim(text) == expected


@pytest.mark.parametrize("text, log_y, message", [
    ("5", False, "not LOW:HIGH"), ("a:b", False, "not a number"), (":", False, "sets no limit"),
    ("5:1", False, "must be below"), ("0:5", True, "above 0"), ("nan:1", False, "finite"), ("1:2:3", False, "LOW:HIGH"),
])
def test_parse_ylim_refuses_nonsense(text, log_y, message):
    with pytest.raises(ExpdbError, match=message):
        parse_ylim(text, log_y)


def test_a_missing_axis_is_said_in_the_legend(diverged, workdir):
    record(diverged, "no_epochs", [(s, {"loss": 1.0 + 1 / (s + 1)}) for s in range(50)])
    output = workdir / "e.svg"
    result = plot_curves(diverged, cards(diverged, "calm_a", "no_epochs"), ["loss"], output, x="epoch")
    svg = output.read_text()
    assert "no_epochs (no epoch axis: by step)" in svg and "calm_a (no" not in svg
    assert result.warnings == ["no_epochs has no epoch axis; drawn against step"]


def test_cli_plot_and_report_take_ylim_and_log_y(cli, diverged, workdir):
    assert cli("plot", "calm_a", "blowup", "--ylim", "0:3", "--log-y", "-o", "p.png").code == 2  # 0 on a log scale
    result = cli("plot", "calm_a", "blowup", "--ylim", "0.1:3", "--log-y", "-o", "p.png")
    assert result.code == 0 and (workdir / "p.png").exists(), result
    result = cli("report", "calm_a", "blowup", "--ylim", ":3", "--log-y", "-o", "r.md")
    assert result.code == 0 and (workdir / "r_loss.png").exists(), result
    text = (workdir / "r.md").read_text()
    assert "`blowup` goes beyond it" in text


def test_report_plot_of_a_diverged_study_keeps_the_healthy_range(diverged, workdir):
    write_report(diverged, cards(diverged, "calm_a", "calm_b", "blowup"), workdir / "r.md", metrics=[])
    text = (workdir / "r.md").read_text()
    assert "beyond it (diverged, or outside --ylim)" in text
