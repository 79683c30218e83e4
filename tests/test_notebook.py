"""`expdb.open(db)` from a notebook: tables and curves as pandas DataFrames."""

import math

import pytest

import expdb
from expdb.errors import ExpdbError


def test_table_is_the_researchers_table_with_raw_numbers(example_db):
    with expdb.open(str(example_db)) as notebook:
        frame = notebook.table("iou50")
    assert list(frame.index) == ["cvt", "cvt_io_v1_1", "cvt_io_v2_1", "cvt_io_v2_2", "cvt_io_v2_5", "cvt_io_v2_7", "cvt_io_v2_8"]
    assert frame.loc["cvt", "iou50"] == 0.36 and frame.loc["cvt", "params"] == 670320
    assert frame.loc["cvt_io_v2_2", "flops_mac"] == 6.81e9 and frame.loc["cvt_io_v2_5", "cost_time_ms"] == 29.8
    assert math.isnan(frame.loc["cvt_io_v2_7", "cost_time_ms"])


def test_table_takes_the_options_of_expdb_table(example_db):
    with expdb.open(str(example_db)) as notebook:
        frame = notebook.table(["iou50"], where="N>=5", baseline="cvt", params="none")
    assert frame.loc["cvt_io_v2_2", "iou50_delta"] == pytest.approx(0.328 - 0.36)


def test_cards_and_curves(workdir):
    with expdb.start("a", db="experiments.db", lr=0.1) as run:
        for step in range(5):
            run.log(step, epoch=step / 5, loss=1.0 / (step + 1))
    with expdb.start("b", db="experiments.db", lr=0.2) as run:
        for step in range(3):
            run.log(step, samples=step * 8, loss=2.0)
    with expdb.open("experiments.db") as notebook:
        cards = notebook.cards()
        assert cards.loc["a", "lr"] == 0.1 and cards.loc["b", "status"] == "finished"
        curve = notebook.curve("a")
        assert list(curve.step) == [0, 1, 2, 3, 4] and curve.value.iloc[-1] == 0.2 and curve.epoch.iloc[1] == 0.2
        both = notebook.curves(["a", "b"])
        assert both.groupby("card").value.count().to_dict() == {"a": 5, "b": 3}
        assert list(notebook.curve("b").samples) == [0, 8, 16]
        with pytest.raises(ExpdbError, match="a has no run with a 'grad_norm' curve"):
            notebook.curve("a", "grad_norm")
