"""Curves stored as chunks: what write_points stores, read_curve gives back, in step order."""

import math
import sys

import pytest

from expdb import cards
from expdb.db import new_uid
from expdb.errors import ExpdbError
from expdb.series import NO_SAMPLES, build_chunks, read_curve, series_keys, write_chunks


@pytest.fixture
def run_id(db):
    card = cards.create_card(db, "c", {})
    with db.transaction() as connection:
        return connection.execute(
            "INSERT INTO run (uid, card_id, status, env) VALUES (?, ?, 'running', '{}') RETURNING id", (new_uid(), card.id)
        ).fetchone()[0]


def flush(db, run_id, points, series_ids=None):
    """One flush: points as Run.log queues them, (step, epoch, samples, wall, {key: value})."""
    with db.transaction() as connection:
        write_chunks(connection, run_id, build_chunks(points), {} if series_ids is None else series_ids)


def test_chunk_round_trip_keeps_steps_values_walls_epochs_samples(db, run_id):
    flush(db, run_id, [
        (0, 0.0, 0, 0.5, {"loss": 2.5}),
        (10, 0.25, 80, 1.5, {"loss": 1.25}),
        (20, 0.5, 160, 2.75, {"loss": 0.625}),
    ])
    curve = read_curve(db, run_id, "loss")
    assert list(curve.steps) == [0, 10, 20]
    assert list(curve.values) == [2.5, 1.25, 0.625]
    assert list(curve.walls) == [0.5, 1.5, 2.75]
    assert list(curve.epochs) == [0.0, 0.25, 0.5]
    assert list(curve.samples) == [0, 80, 160]
    assert len(curve) == 3


def test_points_without_epoch_or_samples_read_back_as_missing(db, run_id):
    flush(db, run_id, [(1, None, None, 0.1, {"loss": 1.0}), (2, None, None, 0.2, {"loss": 0.5})])
    curve = read_curve(db, run_id, "loss")
    assert curve.epochs is None and curve.samples is None
    assert list(curve.values) == [1.0, 0.5]


def test_some_points_missing_epoch_or_samples_read_back_as_nan_and_no_samples(db, run_id):
    flush(db, run_id, [(1, None, 32, 0.1, {"loss": 1.0}), (2, 0.5, None, 0.2, {"loss": 0.5})])
    flush(db, run_id, [(3, None, None, 0.3, {"loss": 0.25})])  # a chunk with neither
    curve = read_curve(db, run_id, "loss")
    assert math.isnan(curve.epochs[0]) and curve.epochs[1] == 0.5 and math.isnan(curve.epochs[2])
    assert list(curve.samples) == [32, NO_SAMPLES, NO_SAMPLES]


def test_non_finite_values_round_trip(db, run_id):
    flush(db, run_id, [(1, None, None, 0.0, {"loss": math.nan}), (2, None, None, 0.0, {"loss": math.inf})])
    values = read_curve(db, run_id, "loss").values
    assert math.isnan(values[0]) and values[1] == math.inf


def test_each_key_is_its_own_curve_with_only_the_steps_that_logged_it(db, run_id):
    flush(db, run_id, [(1, None, None, 0.0, {"loss": 1.0, "lr": 0.1}), (2, None, None, 0.0, {"loss": 0.9})])
    assert series_keys(db, run_id) == ["loss", "lr"]
    assert list(read_curve(db, run_id, "lr").steps) == [1]
    assert list(read_curve(db, run_id, "loss").steps) == [1, 2]


def test_curve_written_in_several_flushes_reads_back_in_order(db, run_id):
    series_ids = {}
    for start in range(0, 50, 10):
        points = [(step, None, None, step / 10, {"loss": 1.0 / (step + 1)}) for step in range(start, start + 10)]
        flush(db, run_id, points, series_ids)
    assert db.query_one("SELECT count(*) FROM chunk")[0] == 5
    curve = read_curve(db, run_id, "loss")
    assert list(curve.steps) == list(range(50))
    assert list(curve.values) == [1.0 / (step + 1) for step in range(50)]


def test_flushes_with_a_fresh_series_cache_reuse_the_same_curve(db, run_id):
    flush(db, run_id, [(1, None, None, 0.0, {"loss": 1.0})])
    flush(db, run_id, [(2, None, None, 0.0, {"loss": 0.5})])  # a new flusher (resume): empty cache
    assert db.query_one("SELECT count(*) FROM series")[0] == 1
    assert list(read_curve(db, run_id, "loss").steps) == [1, 2]


def test_resumed_run_relogging_steps_keeps_last_value_per_step_in_step_order(db, run_id):
    flush(db, run_id, [(step, None, None, float(step), {"loss": 10.0 + step}) for step in range(10)])
    # Resumed from the checkpoint of step 5: steps 6..9 are logged again, then 10..12.
    flush(db, run_id, [(step, None, None, 100.0 + step, {"loss": 20.0 + step}) for step in range(6, 13)])
    curve = read_curve(db, run_id, "loss")
    assert list(curve.steps) == list(range(13))
    assert list(curve.values) == [10.0 + step for step in range(6)] + [20.0 + step for step in range(6, 13)]
    assert list(curve.walls)[5:7] == [5.0, 106.0]


def test_resume_relogging_only_the_last_step_keeps_the_later_value(db, run_id):
    flush(db, run_id, [(1, None, None, 0.0, {"loss": 1.0}), (2, None, None, 0.0, {"loss": 2.0})])
    flush(db, run_id, [(2, None, None, 0.0, {"loss": 3.0}), (3, None, None, 0.0, {"loss": 4.0})])
    curve = read_curve(db, run_id, "loss")
    assert list(curve.steps) == [1, 2, 3] and list(curve.values) == [1.0, 3.0, 4.0]


def test_out_of_order_steps_within_one_flush_are_sorted_last_value_wins(db, run_id):
    flush(db, run_id, [
        (5, 0.5, 50, 0.1, {"loss": 5.0}),
        (3, 0.3, 30, 0.2, {"loss": 3.0}),
        (5, 0.6, 60, 0.3, {"loss": 5.5}),
        (4, None, None, 0.4, {"loss": 4.0}),
    ])
    row = db.query_one("SELECT first_step, last_step, count FROM chunk")
    assert row == (3, 5, 3)
    curve = read_curve(db, run_id, "loss")
    assert list(curve.steps) == [3, 4, 5]
    assert list(curve.values) == [3.0, 4.0, 5.5]
    assert list(curve.walls) == [0.2, 0.4, 0.3]
    assert curve.epochs[0] == 0.3 and math.isnan(curve.epochs[1]) and curve.epochs[2] == 0.6
    assert list(curve.samples) == [30, NO_SAMPLES, 60]


def test_reading_a_curve_the_run_lacks_names_the_ones_it_has(db, run_id):
    flush(db, run_id, [(1, None, None, 0.0, {"loss": 1.0})])
    with pytest.raises(ExpdbError, match="no curve 'acc'.*loss"):
        read_curve(db, run_id, "acc")


def test_curves_logged_together_and_apart_in_one_flush_each_read_back_their_own_points(db, run_id):
    points = []
    for step in range(1, 13):
        scalars = {"loss": 1.0 / step, "lr": 0.1}
        if step % 4 == 0:
            scalars["val_acc"] = step / 100
        points.append((step, step / 4 if step > 6 else None, step * 8 if step % 3 else None, step * 0.5, scalars))
    flush(db, run_id, points)
    loss, lr, acc = (read_curve(db, run_id, key) for key in ("loss", "lr", "val_acc"))
    assert list(loss.steps) == list(range(1, 13)) and list(loss.values) == [1.0 / step for step in range(1, 13)]
    assert list(lr.steps) == list(range(1, 13)) and set(lr.values) == {0.1}
    assert list(acc.steps) == [4, 8, 12] and list(acc.values) == [0.04, 0.08, 0.12]
    assert list(acc.walls) == [2.0, 4.0, 6.0]
    assert math.isnan(acc.epochs[0]) and list(acc.epochs[1:]) == [2.0, 3.0]
    assert list(acc.samples) == [32, 64, NO_SAMPLES]
    assert [math.isnan(e) for e in loss.epochs] == [step <= 6 for step in range(1, 13)]


def test_a_step_logged_again_later_in_the_same_flush_with_other_keys_wins(db, run_id):
    flush(db, run_id, [
        (1, None, None, 0.1, {"loss": 1.0}),
        (2, None, None, 0.2, {"loss": 2.0}),
        (3, None, None, 0.3, {"loss": 3.0, "acc": 0.3}),
        (2, None, None, 0.4, {"loss": 2.5, "acc": 0.2}),
    ])
    loss, acc = read_curve(db, run_id, "loss"), read_curve(db, run_id, "acc")
    assert list(loss.steps) == [1, 2, 3] and list(loss.values) == [1.0, 2.5, 3.0]
    assert list(loss.walls) == [0.1, 0.4, 0.3]
    assert list(acc.steps) == [2, 3] and list(acc.values) == [0.2, 0.3]


@pytest.mark.parametrize("numpy_loaded", [True, False], ids=["steps written out", "steps inflated"])
def test_consecutive_and_gapped_chunks_read_the_same_with_or_without_numpy(db, run_id, monkeypatch, numpy_loaded):
    import numpy  # noqa: F401 -- loaded, as where curves are drawn; read_curve then writes consecutive steps out

    if not numpy_loaded:
        monkeypatch.setitem(sys.modules, "numpy", None)  # as in an everyday command: every chunk's steps inflated
    series_ids: dict = {}
    flush(db, run_id, [(step, None, None, 0.0, {"loss": float(step)}) for step in range(5, 9)], series_ids)  # consecutive
    flush(db, run_id, [(step, None, None, 0.0, {"loss": float(step)}) for step in (9, 11, 12, 20)], series_ids)  # gaps
    flush(db, run_id, [(step, None, None, 0.0, {"loss": -float(step)}) for step in range(7, 10)], series_ids)  # resumed
    curve = read_curve(db, run_id, "loss", axes=())
    assert list(curve.steps) == [5, 6, 7, 8, 9, 11, 12, 20]
    assert list(curve.values) == [5.0, 6.0, -7.0, -8.0, -9.0, 11.0, 12.0, 20.0]
    assert len(curve.walls) == 0 and curve.epochs is None and curve.samples is None  # the axes not asked for
