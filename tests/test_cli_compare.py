"""`expdb compare A B`: parameters, results with changes, and both curves as sparklines."""

import math

from expdb.cards import create_card
from expdb.db import Database
from expdb.runs import begin_run
from expdb.views import SPARK_LEVELS, sparkline


def logged(name: str, params: dict, losses: list[float], parent: str | None = None) -> None:
    with Database(create=True) as db:
        create_card(db, name, params, parent=parent)
        run = begin_run(db, name, device="cpu")
        for step, loss in enumerate(losses):
            run.log(step, loss=loss)
        run.summary(iou50=0.3 if parent is None else 0.35)
        run.end("finished")


def test_sparkline_spans_the_levels_and_skips_nan():
    line = sparkline([1.0, 2.0, math.nan, 3.0, 4.0], width=4)
    assert line == SPARK_LEVELS[0] + SPARK_LEVELS[2] + SPARK_LEVELS[5] + SPARK_LEVELS[-1]


def test_sparkline_of_a_long_curve_has_the_width_asked():
    assert len(sparkline([float(i) for i in range(10_000)], width=40)) == 40


def test_compare_shows_parameters_results_and_curves(cli, workdir):
    logged("base", {"N": 3}, [2.0, 1.5, 1.0, 0.5])
    logged("variant", {"N": 5}, [2.0, 1.8, 1.6, 1.4], parent="base")
    result = cli("compare", "base", "variant", "--width", "8")
    assert result.code == 0, result.err
    out = result.out
    assert "N" in out and "3" in out and "5" in out
    assert "+0.05" in out  # iou50 0.3 -> 0.35
    assert "2 → 0.5, min 0.5; steps 0–3" in out
    assert "2 → 1.4, min 1.4; steps 0–3" in out
    assert SPARK_LEVELS[-1] in out and SPARK_LEVELS[0] in out


def test_compare_says_when_a_card_has_no_such_curve(cli, workdir):
    logged("base", {"N": 3}, [2.0, 1.0])
    logged("other", {"N": 4}, [2.0, 1.0], parent="base")
    result = cli("compare", "base", "other", "--curve", "grad_norm")
    assert result.code == 0
    assert "no grad_norm curve to compare" in result.out


def test_compare_an_unknown_card_is_one_line(cli, workdir):
    logged("base", {"N": 3}, [2.0, 1.0])
    result = cli("compare", "base", "bsae")
    assert result.code == 2 and result.err.startswith("error: no card named 'bsae'; did you mean 'base'?")
