"""`expdb import tensorboard FOLDER`: real event files (Lightning's, Keras's), counted with TensorBoard's own loader."""

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from conftest import dump, query

from expdb.db import Database
from expdb.series import read_curve
from expdb.values import plural

TB = Path(__file__).resolve().parent / "data" / "tensorboard"
LIGHTNING = TB / "uvadlc-tutorial5"  # two Lightning runs, a folder each (see tests/data/README.md)
KERAS = TB / "wandb-keras"


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> (step, value) of every scalar, in file order, as TensorBoard's own accumulator reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def one_a_step(events: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """A curve holds one value a step: the later of two written at one step."""
    return list(dict(events).items())


def other_events(folder: Path) -> Counter:
    """Kinds of the events that hold no summary (graphs, run metadata), read raw by TensorBoard's loader."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    kinds: Counter = Counter()
    for path in folder.glob("*tfevents*"):
        kinds.update(event.WhichOneof("what") for event in LegacyEventFileLoader(str(path)).Load())
    return kinds


def run_of(card: str) -> int:
    return query("SELECT run.id FROM run JOIN card ON card.id = run.card_id WHERE card.name = ?", (card,))[0][0]


def imported_points(out: str) -> dict[str, int]:
    return {
        line.split(" into ")[1].split(" ")[0]: int(line.split("imported ")[1].split(" points")[0].replace(",", ""))
        for line in out.splitlines()
        if line.startswith("imported ")
    }


def metrics_of(run_id: int) -> dict[str, tuple[float, int]]:
    return {key: (value, step) for key, value, step in query("SELECT key, value, step FROM metric WHERE run_id = ?", (run_id,))}


@pytest.fixture
def lightning(cli):
    """Both Lightning runs, imported as one parent folder with the folder's name as the parameter `model`."""
    result = cli("import", "tensorboard", str(LIGHTNING), "--name", "t5", "--params", "{model}")
    assert result.code == 0, result.err
    return result


FOLDERS = ["ResNet", "ResNetPreAct"]


def test_lightning_folders_become_a_run_each_with_every_scalar(lightning):
    assert [name for (name,) in query("SELECT name FROM card ORDER BY name")] == [f"t5_{folder}" for folder in FOLDERS]
    assert [json.loads(params) for (params,) in query("SELECT params FROM card ORDER BY name")] == [
        {"model": folder} for folder in FOLDERS
    ]
    points = imported_points(lightning.out)
    for folder in FOLDERS:
        expected = scalars(LIGHTNING / folder)
        run_id = run_of(f"t5_{folder}")
        with Database() as db:
            for tag, events in expected.items():
                if tag == "epoch":
                    continue  # the points' epoch, not a curve (below)
                curve = read_curve(db, run_id, tag)
                assert list(zip(curve.steps, curve.values, strict=True)) == one_a_step(events), tag
        kept = {tag: one_a_step(events) for tag, events in expected.items() if tag != "epoch"}
        assert points[f"t5_{folder}"] == sum(map(len, kept.values()))
        # Only test_acc holds a step twice (the tutorial tests twice at the end): the replacement is said.
        assert [tag for tag in kept if len(kept[tag]) < len(expected[tag])] == ["test_acc"]
        twice = len(expected["test_acc"]) - len(kept["test_acc"])
        first = expected["test_acc"][0][0]
        said = f"{plural(twice, 'value')} of test_acc written at a step it already had (first at step {first:,}): the later kept"
        assert f"{folder}: {said}" in lightning.out
        assert f"{folder}: {len(expected['epoch']):,} `epoch` scalars taken as the epoch" in lightning.out
    # What it says it skipped is what the files hold besides their scalars.
    kinds = other_events(LIGHTNING / "ResNet") + other_events(LIGHTNING / "ResNetPreAct")
    assert kinds["graph_def"] and kinds["tagged_run_metadata"]
    assert f"skipped {kinds['graph_def']} graphs (not scalars); {kinds['tagged_run_metadata']} run metadata (not scalars)" in (
        lightning.out
    )
    assert f"read 2 files, {sum(kinds.values()):,} events: {sum(points.values()):,} points in 2 runs" in lightning.out


def test_lightning_epoch_scalar_is_the_epoch_of_the_points_at_its_step(lightning):
    # As expdb's own Lightning logger records it: Lightning's `epoch` (0 in the first) with every metric of the call.
    expected = scalars(LIGHTNING / "ResNet")
    epoch_at = dict(expected["epoch"])
    with Database() as db:
        curves = {key: read_curve(db, run_of("t5_ResNet"), key) for key in ("train_loss", "val_acc", "lr-SGD")}
        keys = {key for (key,) in query("SELECT key FROM series")}
    assert "epoch" not in keys
    for key in ("train_loss", "val_acc"):
        assert list(curves[key].epochs) == [epoch_at[step] for step in curves[key].steps]
    assert curves["val_acc"].epochs[-1] == max(epoch_at.values())
    # lr-SGD: LearningRateMonitor wrote the epoch as its step; kept as written, with no epoch of its own, and said.
    assert curves["lr-SGD"].epochs is None
    steps = [step for step, _ in expected["lr-SGD"]]
    behind = steps[1:]  # the first, at step 0, comes before any other point
    assert (
        f"ResNet: {len(behind)} points of lr-SGD (steps {min(behind)}..{max(behind)}) written after points at higher steps "
        f"(up to {max(step for events in expected.values() for step, _ in events):,})"
    ) in lightning.out


def test_on_the_epoch_axis_lightning_points_are_spread_over_their_epoch(lightning):
    """`plot --x epoch` and the UI: no two training points share an x, each stays in its epoch; the validation
    curve, one point an epoch, has no bar to spread and is drawn as logged."""
    import numpy as np

    from expdb.plot import spread_whole_epochs

    with Database() as db:
        train = read_curve(db, run_of("t5_ResNet"), "train_loss")
        val = read_curve(db, run_of("t5_ResNet"), "val_acc")
    epochs = np.array(train.epochs)
    spread = spread_whole_epochs(np.array(train.steps), epochs)
    assert np.all(np.diff(spread) > 0)
    assert np.all((spread >= epochs) & (spread <= epochs + 1))
    assert len(np.unique(epochs)) < len(epochs)  # as logged, an epoch's points shared one x
    val_epochs = np.array(val.epochs)
    assert np.array_equal(spread_whole_epochs(np.array(val.steps), val_epochs), val_epochs)


def test_of_two_test_values_at_one_step_the_later_is_kept_and_summaries_are_set(cli, lightning):
    expected = scalars(LIGHTNING / "ResNet")
    tests = expected["test_acc"]
    assert len(tests) == 2 and tests[0][0] == tests[1][0]  # the tutorial tests on the validation set, then the test set
    run_id = run_of("t5_ResNet")
    with Database() as db:
        test_acc = read_curve(db, run_id, "test_acc")
    assert list(test_acc.values) == [tests[1][1]]
    metrics = metrics_of(run_id)
    # The replaced value counts for no summary: the test set's accuracy is both the last and the best.
    assert metrics["test_acc"] == metrics["test_acc.best"] == (tests[1][1], tests[1][0])
    val_acc = expected["val_acc"]
    best = max(val_acc, key=lambda event: event[1])
    assert metrics["val_acc.best"] == pytest.approx((best[1], best[0]))
    assert metrics["val_acc"] == pytest.approx((val_acc[-1][1], val_acc[-1][0]))
    assert metrics["train_loss"] == pytest.approx((expected["train_loss"][-1][1], expected["train_loss"][-1][0]))
    assert "train_loss.best" not in metrics  # best is for held-out curves only
    listed = cli("list").out
    assert f"val_acc.best={best[1]:.4g}" in listed
    table = cli("table", "--metric", "val_acc.best").out
    assert "t5_ResNet " in table and f"{best[1]:.4g}" in table


def test_importing_the_folder_again_adds_nothing(cli, lightning):
    before = dump()
    result = cli("import", "tensorboard", str(LIGHTNING), "--name", "t5", "--params", "{model}")
    assert result.code == 0, result.err
    assert "read 2 files: imported before, their events not decoded again" in result.out
    assert "already imported as run 1 of t5_ResNet: nothing added" in result.out
    assert "already imported as run 2 of t5_ResNetPreAct: nothing added" in result.out
    assert dump() == before


def test_keras_tensor_scalars_are_read(cli):
    # TF2 writes scalars as tensors, the "scalars" plugin named on each tag's first summary.
    result = cli("import", "tensorboard", str(KERAS), "--name", "keras")
    assert result.code == 0, result.err
    expected = scalars(KERAS)
    assert imported_points(result.out) == {"keras": sum(len(events) for events in expected.values())}
    kinds = other_events(KERAS)
    graphs = f"{plural(kinds['graph_def'], 'graph')} (not scalars); {plural(kinds['meta_graph_def'], 'meta graph')} (not scalars)"
    assert f"skipped {graphs}" in result.out
    with Database() as db:
        for tag, events in expected.items():
            curve = read_curve(db, 1, tag)
            assert list(zip(curve.steps, curve.values, strict=True)) == events, tag
            assert all(wall >= 0 for wall in curve.walls)
    metrics = metrics_of(1)
    val_loss = expected["epoch_val_loss"]
    best = min(val_loss, key=lambda event: event[1])
    assert metrics["epoch_val_loss.best"] == pytest.approx((best[1], best[0]))
    assert not math.isnan(metrics["batch_loss"][0])
