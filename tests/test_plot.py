"""expdb.plot: the EMA, min/max reduction, and figures drawn from runs recorded by expdb's own writers."""

import math

import matplotlib.image
import numpy as np
import pytest

from expdb.cards import create_card, get_card
from expdb.errors import ExpdbError
from expdb.plot import ema, plot_curves, reduce_for_drawing, spread_whole_epochs
from expdb.runs import begin_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def reference_ema(values, weight):
    """TensorBoard's smoothing, one point at a time."""
    last, count, out = 0.0, 0, []
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        out.append(last / (1 - weight**count))
    return out


# -- ema -----------------------------------------------------------------------------------


def test_ema_matches_a_hand_computed_case():
    # weight 0.5: raw EMA 0.5, 1.25, 1.625; debiased by 0.5, 0.75, 0.875
    assert ema([1.0, 2.0, 2.0], 0.5).tolist() == pytest.approx([1.0, 1.25 / 0.75, 1.625 / 0.875])


def test_ema_is_debiased_so_a_constant_curve_stays_constant():
    assert ema([3.0] * 50, 0.99).tolist() == pytest.approx([3.0] * 50)
    assert ema([3.0], 0.9).tolist() == [pytest.approx(3.0)]


def test_ema_weight_zero_is_the_identity():
    assert ema([1.0, 5.0, -2.0], 0.0).tolist() == [1.0, 5.0, -2.0]


def test_a_nan_does_not_poison_the_points_after_it():
    smoothed = ema([1.0, math.nan, 3.0, math.inf, 5.0], 0.5)
    assert math.isnan(smoothed[1]) and smoothed[3] == math.inf
    assert np.isfinite(smoothed[[0, 2, 4]]).all()
    assert smoothed.tolist()[2] == pytest.approx(reference_ema([1.0, 3.0], 0.5)[1])
    assert smoothed.tolist()[4] == pytest.approx(reference_ema([1.0, 3.0, 5.0], 0.5)[2])


@pytest.mark.parametrize("weight", [0.01, 0.6, 0.9, 0.99, 0.999])
def test_vectorised_ema_matches_the_point_by_point_definition(weight):
    rng = np.random.default_rng(1)
    values = rng.normal(size=20_000) * 10 + 100
    values[::101] = np.nan
    assert ema(values, weight) == pytest.approx(np.array(reference_ema(values, weight)), rel=1e-9, nan_ok=True)


def test_ema_rejects_a_weight_outside_zero_one():
    with pytest.raises(ExpdbError):
        ema([1.0], 1.0)


# -- reduce_for_drawing ----------------------------------------------------------------------


def test_reduction_keeps_every_extreme_of_a_million_points():
    n, buckets = 1_000_000, 2000
    rng = np.random.default_rng(0)
    xs = np.arange(n, dtype=np.float64)
    ys = rng.normal(size=n)
    ys[123_457] = 1e6  # a lone spike
    ys[876_543] = -1e6  # a lone dip
    rx, ry = reduce_for_drawing(xs, ys, buckets)
    assert len(rx) == len(ry) <= 2 * buckets + 2
    assert ry.max() == 1e6 and ry.min() == -1e6
    assert 123_457.0 in rx and 876_543.0 in rx
    assert (np.diff(rx) > 0).all()  # x order preserved
    assert np.isin(rx, xs).all()


def test_reduction_keeps_the_extremes_of_a_partial_last_bucket():
    xs = np.arange(10_007, dtype=np.float64)
    ys = np.zeros(10_007)
    ys[-2] = 9.0
    rx, ry = reduce_for_drawing(xs, ys, 10)
    assert len(rx) <= 22 and ry.max() == 9.0 and (np.diff(rx) > 0).all()


def test_a_short_line_is_returned_whole():
    rx, ry = reduce_for_drawing([0, 1, 2], [5.0, 4.0, 3.0], 2000)
    assert rx.tolist() == [0, 1, 2] and ry.tolist() == [5.0, 4.0, 3.0]


def test_reduction_ignores_nan_when_picking_extremes():
    ys = np.ones(1000)
    ys[500] = np.nan
    ys[501] = 7.0
    _, ry = reduce_for_drawing(np.arange(1000), ys, 10)
    assert np.nanmax(ry) == 7.0


# -- plot_curves ---------------------------------------------------------------------------


def record(db, name, points, params=None, on_diverge="stop", **card_options):
    """A card and one finished run of `points`: (step, {epoch, samples, loss, lr, ...})."""
    create_card(db, name, params or {}, **card_options)
    run = begin_run(db, name, device="cpu", on_diverge=on_diverge)
    for step, scalars in points:
        run.log(step, **scalars)
    run.end("finished")
    return run.id


@pytest.fixture
def study(db):
    """Two cards logging loss, lr (dropped by 10x at step 50), epochs and samples; a third with acc only."""
    record(
        db, "cvt_a",
        [(s, {"epoch": s / 10, "samples": 8 * s, "loss": 2.0 / (s + 1), "lr": 1e-3 if s < 50 else 1e-4}) for s in range(100)],
        {"batch": 8},
    )
    record(db, "cvt_b", [(s, {"loss": 1.5 / (s + 1), "acc": s / 100}) for s in range(100)], {"batch": 4})
    record(db, "cvt_c", [(s, {"acc": s / 100}) for s in range(10)])
    return db


def cards_of(db, *names):
    return [get_card(db, name) for name in names]


def test_writes_a_readable_png(study, workdir):
    output = workdir / "loss.png"
    result = plot_curves(study, cards_of(study, "cvt_a", "cvt_b"), ["loss"], output, smooth=0.9)
    assert result.path == output and result.warnings == []
    data = output.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(output)
    assert image.shape[0] >= 400 and image.shape[1] >= 800
    assert image.std() > 0  # something was drawn
    assert {line.card for line in result.lines} == {"cvt_a", "cvt_b"}
    assert next(line for line in result.lines if line.card == "cvt_a").lr_drops == 1
    assert not list(workdir.glob(".loss.png.*"))  # no temporary file left


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<svg"), (".pdf", b"%PDF")])
def test_svg_and_pdf_by_suffix(study, workdir, suffix, magic):
    output = workdir / f"loss{suffix}"
    plot_curves(study, cards_of(study, "cvt_a", "cvt_b"), ["loss"], output)
    head = output.read_bytes()[:4096]
    assert magic in head


def test_several_metrics_make_subplots_with_card_names_and_axis_labels(study, workdir):
    output = workdir / "both.svg"
    result = plot_curves(study, cards_of(study, "cvt_a", "cvt_b"), ["loss", "acc"], output, x="samples", log_y=True)
    labels = dict(study.query("SELECT key, label FROM metric_def"))  # the metric's display label, if defined
    assert result.y_labels == [labels.get("loss", "loss"), labels.get("acc", "acc")]
    assert result.x_label == "samples seen"
    assert [(line.metric, line.card) for line in result.lines] == [("loss", "cvt_a"), ("loss", "cvt_b"), ("acc", "cvt_b")]
    # cvt_b logged no samples: its batch (4) times the step stands in, with no warning
    assert all(line.x == "samples" for line in result.lines)
    assert any("cvt_a: no run with a 'acc' curve" in warning for warning in result.warnings)
    svg = output.read_text()
    assert svg.count("<g id=\"axes_") == 2
    for text in ("cvt_a", "cvt_b", "samples seen", *result.y_labels):
        assert text in svg


def test_a_run_lacking_the_axis_falls_back_to_step_with_a_warning(study, workdir):
    result = plot_curves(study, cards_of(study, "cvt_a", "cvt_b"), ["loss"], workdir / "e.png", x="epoch")
    assert result.warnings == ["cvt_b has no epoch axis; drawn against step"]
    assert {line.card: line.x for line in result.lines} == {"cvt_a": "epoch", "cvt_b": "step"}


def test_samples_without_batch_fall_back_to_step(study, workdir):
    result = plot_curves(study, cards_of(study, "cvt_c"), ["acc"], workdir / "s.png", x="samples")
    assert result.warnings == ["cvt_c has no samples axis; drawn against step"]


def test_time_axis(study, workdir):
    result = plot_curves(study, cards_of(study, "cvt_a"), ["loss"], workdir / "t.png", x="time", title="loss over time")
    assert result.x_label == "time (s)" and result.warnings == []


def test_no_run_with_the_metric_is_one_line_naming_what_runs_have(study, workdir):
    output = workdir / "x.png"
    with pytest.raises(ExpdbError) as error:
        plot_curves(study, cards_of(study, "cvt_b", "cvt_c"), ["grad_norm"], output)
    message = str(error.value)
    assert "\n" not in message and "'grad_norm'" in message
    assert "cvt_b run" in message and "acc, loss" in message and "cvt_c run" in message
    assert not output.exists()


def test_divergence_is_marked(db, workdir):
    points = [(s, {"loss": 1.0}) for s in range(30)] + [(s, {"loss": math.nan}) for s in range(30, 40)]
    run_id = record(db, "div", points, on_diverge="note")
    steps = [row[0] for row in db.query("SELECT step FROM note WHERE run_id = ? AND automatic = 1", (run_id,))]
    assert steps  # expdb's detector noted the NaN
    result = plot_curves(db, cards_of(db, "div"), ["loss"], workdir / "d.png", smooth=0.5, log_y=True)
    assert result.lines[0].divergences == len(set(steps))


@pytest.mark.parametrize("name", ["loss.jpg", "loss", "missing/loss.png"])
def test_bad_suffix_or_missing_directory_writes_nothing(study, workdir, name):
    output = workdir / name
    before = sorted(workdir.rglob("*"))
    with pytest.raises(ExpdbError) as error:
        plot_curves(study, cards_of(study, "cvt_a"), ["loss"], output)
    assert "\n" not in str(error.value)
    assert sorted(workdir.rglob("*")) == before


def test_bad_x_and_smoothing_are_refused(study, workdir):
    with pytest.raises(ExpdbError, match="x axis"):
        plot_curves(study, cards_of(study, "cvt_a"), ["loss"], workdir / "a.png", x="wall")
    with pytest.raises(ExpdbError, match="smooth"):
        plot_curves(study, cards_of(study, "cvt_a"), ["loss"], workdir / "a.png", smooth=1.0)
    assert not (workdir / "a.png").exists()


def test_large_curve_is_reduced_before_drawing(db, workdir):
    from expdb.series import build_chunks, write_chunks

    create_card(db, "big", {})
    run = begin_run(db, "big", device="cpu")
    run.end("finished")
    n = 200_000
    values = np.sin(np.arange(n) / 1000.0) + 2.0
    with db.transaction() as connection:
        write_chunks(connection, run.id, build_chunks([(s, None, None, s * 0.01, {"loss": values[s]}) for s in range(n)]), {})
    result = plot_curves(db, cards_of(db, "big"), ["loss"], workdir / "big.png", smooth=0.9)
    assert result.lines[0].points == n and result.lines[0].drawn <= 2 * 2000 + 2


# -- whole-number epochs (Lightning's) spread over their epoch -------------------------------------------------


EPOCH_STEPS = 351  # steps an epoch takes in these synthetic runs


def lightning_like(epochs: int = 12, first: int = 0, offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A training curve logged every 50 steps and a validation point at each epoch's last step, with the epoch
    a whole number counted from `first`, as Lightning (0) or MMEngine (1) logs it; steps from `offset` on."""
    train = np.arange(49, epochs * EPOCH_STEPS, 50)
    val = np.arange(1, epochs + 1) * EPOCH_STEPS - 1
    return train + offset, (train // EPOCH_STEPS + first).astype(float), val + offset, (val // EPOCH_STEPS + first).astype(float)


def assert_spread(steps: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    spread = spread_whole_epochs(steps, epochs)
    assert np.all(np.diff(spread) > 0)  # no two points at one x: no vertical bars, and in step order
    assert np.all((spread >= epochs) & (spread <= epochs + 1))  # each within the epoch logged
    return spread


@pytest.mark.parametrize(("first", "offset"), [(0, 0), (1, 0), (0, 10_000)])
def test_whole_epochs_are_spread_by_step_within_the_epoch_logged(first, offset):
    train, train_epochs, val, val_epochs = lightning_like(first=first, offset=offset)
    spread = assert_spread(train, train_epochs)
    # Steps since the epoch's first point, in epochs of about 351 steps (read from the points logged every 50).
    starts = {epoch: train[train_epochs == epoch].min() for epoch in np.unique(train_epochs)}
    since = [(step - starts[epoch]) / EPOCH_STEPS for step, epoch in zip(train, train_epochs, strict=True)]
    assert np.allclose(spread - train_epochs, since, atol=0.01)
    # A curve with one point an epoch has no bar: as logged.
    assert spread_whole_epochs(val, val_epochs) is val_epochs


def test_a_partial_last_epoch_and_a_short_first_one_are_spread_too():
    steps = np.arange(120, 2 * EPOCH_STEPS + 36)  # logging began late in epoch 0; epoch 2 was cut short
    assert_spread(steps, (steps // EPOCH_STEPS).astype(float))


def test_evaluations_at_epoch_ends_and_fractional_epochs_are_left_as_logged():
    hf_evaluations = np.arange(1.0, 6.0)  # the HF Trainer's epochs done, at steps 500, 1000, ...
    assert spread_whole_epochs(np.arange(1, 6) * 500, hf_evaluations) is hf_evaluations
    steps = np.arange(100)
    fractional = steps / 30
    assert spread_whole_epochs(steps, fractional) is fractional
    within_one = np.zeros(100)
    assert spread_whole_epochs(steps, within_one) is within_one


def test_epochs_that_do_not_follow_the_steps_are_left_as_logged():
    steps = np.concatenate([np.arange(0, 700, 10), np.arange(0, 700, 10)])  # resumed: the step counted again
    epochs = np.concatenate([np.arange(0, 700, 10) // EPOCH_STEPS, np.arange(0, 700, 10) // EPOCH_STEPS + 2]).astype(float)
    order = np.argsort(steps, kind="stable")
    assert np.array_equal(spread_whole_epochs(steps[order], epochs[order]), epochs[order])


def test_points_without_an_epoch_stay_without_one():
    train, epochs, _, _ = lightning_like()
    epochs[5] = np.nan
    spread = spread_whole_epochs(train, epochs)
    assert np.isnan(spread[5]) and np.isfinite(np.delete(spread, 5)).all()


def test_the_epoch_axis_drawn_spreads_a_lightning_run(db):
    """What `plot --x epoch` and the UI draw (the UI's curve data, as the page unpacks it)."""
    import base64

    from expdb.ui.data import curves

    train, train_epochs, val, val_epochs = lightning_like(epochs=4)
    points = [(int(step), {"epoch": epoch, "loss": 1.0 / (step + 1)}) for step, epoch in zip(train, train_epochs, strict=True)]
    record(db, "lit", points)
    (panel,) = curves(db, cards_of(db, "lit"), ["loss"], x="epoch", width=10_000)["panels"]
    (series,) = panel["series"]
    xs = np.frombuffer(base64.b64decode(series["x"]), dtype="<f8")
    assert len(xs) == len(train) and np.all(np.diff(xs) > 0)
