"""Training trouble on real and generated curves: explosions from the first steps, a loss that
turns back up, a loss that never falls; and silence on healthy runs (tests/data/README.md)."""

import gzip
import json
import math
import random
import re
import time
from pathlib import Path

import pytest

import expdb
from expdb import cards, runs
from expdb.db import Database
from expdb.errors import ExpdbError
from expdb.divergence import DEFAULTS, Divergence, DivergenceDetector, detect_all
from expdb.logparse import parse_file

DATA = Path(__file__).parent / "data"
DETECTRON2_EVENT = re.compile(r"iter: (\d+)\s+(.*?)\s+time:.*lr: (\S+)")
DETECTRON2_LOGS = ["detectron2-faster_c4_out_log.txt.gz", "detectron2-rpn_fpn_out_log.txt.gz"]


def detectron2_records(name: str) -> list[tuple[int, dict[str, float]]]:
    """A detectron2 training log's losses and learning rate at each logged iteration."""
    records = []
    with gzip.open(DATA / "real-logs" / name, "rt", encoding="utf-8") as log:
        for line in log:
            found = DETECTRON2_EVENT.search(line)
            if found:
                step, losses, lr = found.groups()
                values = {key: float(value) for key, value in re.findall(r"(\w+): ([-\d.e]+)", losses)}
                records.append((int(step), {**values, "lr": float(lr)}))
    return records


def kinds(events: list[Divergence]) -> list[tuple[str, str, int]]:
    return [(event.kind, event.key, event.step) for event in events]


# ---------------------------------------------------------------- healthy runs: no false alarm


@pytest.mark.parametrize("name", DETECTRON2_LOGS)
def test_healthy_detection_runs_raise_no_alarm_over_thousands_of_noisy_points(name):
    records = detectron2_records(name)
    assert len(records) == 4500 or len(records) == 4628  # every 20th of 90,000 iterations, as logged
    assert detect_all(records) == []
    assert detect_all(records, total_steps=90_000) == []


def test_healthy_mmengine_log_raises_no_alarm():
    records = parse_file(str(DATA / "real-logs" / "mmengine-deepspeed.log"), "mmdet")
    assert len(records) == 19
    assert detect_all((record.step, record.values) for record in records) == []


def test_generated_noisy_detection_curves_raise_no_alarm():
    """A fast start, a slow decline, 30% batch noise and two learning-rate steps, over many seeds."""
    false_alarms = []
    for seed in range(20):
        rng = random.Random(seed)
        records = []
        for i in range(3_000):
            lr = 0.02 * (0.1 if i > 2_000 else 1) * (0.1 if i > 2_600 else 1) * min(1.0, (i + 1) / 100)
            base = 0.6 + 2.0 * math.exp(-i / 40) + 0.4 * math.exp(-i / 1_500) - (0.05 if i > 2_000 else 0)
            records.append((i * 20, {"loss": base * rng.uniform(0.7, 1.3), "lr": lr}))
        false_alarms += detect_all(records)
    assert false_alarms == []


def dfine_launches() -> list[list[tuple[int, dict[str, float]]]]:
    """The real D-FINE scalars.json, one record list per launch (its steps restart at each)."""
    launches: list[list[tuple[int, dict[str, float]]]] = []
    with gzip.open(DATA / "real-logs" / "mmdet3-dfine-scalars.json.gz", "rt", encoding="utf-8") as log:
        for line in log:
            entry = json.loads(line)
            if "loss" not in entry:  # a validation line
                continue
            if not launches or entry["step"] <= launches[-1][-1][0]:
                launches.append([])
            launches[-1].append((entry["step"], {key: value for key, value in entry.items() if key.startswith("loss")}))
    return launches


def test_components_growing_from_almost_nothing_beside_a_healthy_total_raise_no_alarm():
    launches = dfine_launches()
    growth = max(
        values[key] / first[key]
        for launch in launches
        for first in [next(values for _, values in launch if "loss_ddf_dn_0" in values)]
        for _, values in launch
        for key in ["loss_ddf_dn_0"]
        if key in values
    )
    assert growth > 1_000  # the component alone would read as an explosion
    assert [detect_all(launch) for launch in launches] == [[]] * len(launches)


def test_a_component_is_judged_alone_when_no_total_is_logged_and_checked_for_nan_always():
    blowup = [(1, {"loss_cls": 2.0}), (2, {"loss_cls": 5e5}), (3, {"loss_cls": 6e5}), (4, {"loss_cls": 7e5})]
    assert kinds(detect_all(blowup)) == [("loss-explosion", "loss_cls", 2)]
    beside_total = [(step, {"loss": 40.0 - step, **values}) for step, values in blowup]
    assert detect_all(beside_total) == []
    nan = [*beside_total, (5, {"loss": 35.0, "loss_cls": math.nan})]
    assert kinds(detect_all(nan)) == [("non-finite", "loss_cls", 5)]


# ---------------------------------------------------------------- explosions


def test_the_real_nan_log_diverges_at_its_nan():
    records = parse_file(str(DATA / "real-logs" / "mmdet2-cascade-nan.log"), "mmdet")
    events = detect_all((record.step, record.values) for record in records)
    assert [event.message for event in events] == ["loss became NaN at step 300 (last finite 0.8832 at step 250)"]


def test_a_run_at_lr_5000_explodes_at_step_2():
    """The losses of a real training script run at lr 5000: its test accuracy stayed at chance."""
    records = [(1, {"loss": 2.41}), (2, {"loss": 4.4e11}), (3, {"loss": 2.3e8}), (4, {"loss": 7_709.0})]
    records += [(step, {"loss": 2.3e3}) for step in range(5, 40)]
    (event,) = detect_all(records)
    assert event == Divergence("loss-explosion", "loss", 2, "loss exploded at step 2: 4.4e+11, from 2.41 at step 1")
    assert event.stops


def test_the_demos_blow_up_explodes_at_step_2():
    """The demo's cvt_io_blowup card (lr 10), as expdb's built-in runner logged it."""
    lines = (DATA / "divergence" / "demo-blowup.csv").read_text().splitlines()[1:]
    records = [(int(step), {"loss": float(loss), "lr": float(lr)}) for step, loss, lr in (line.split(",") for line in lines)]
    events = detect_all(records)
    assert kinds(events)[0] == ("loss-explosion", "loss", 2)
    assert events[0].message.startswith("loss exploded at step 2: 1.1e+12, from 1.87")


def test_a_loss_that_halves_at_the_start_has_not_exploded():
    records = [(1, {"loss": 8.0}), (2, {"loss": 4.0}), (3, {"loss": 1.9}), (4, {"loss": 0.9})]
    records += [(step, {"loss": 0.9 - step * 1e-3}) for step in range(5, 200)]
    assert [event for event in detect_all(records) if event.stops] == []


def test_an_explosion_above_the_running_level_names_that_level():
    records = [(step, {"loss": 2.0 * math.exp(-step / 50) + 0.1}) for step in range(300)]
    records += [(step, {"loss": 40.0}) for step in range(300, 310)]
    event = next(event for event in detect_all(records) if event.stops)
    assert (event.kind, event.step) == ("loss-explosion", 300)
    assert re.fullmatch(r"loss exploded at step 300: 40, \d+x its recent level 0\.1\d+", event.message)


# ---------------------------------------------------------------- a loss that turns back up


def fell_then_rose(steps: int = 20_000, lr_up_at: int | None = None, seed: int = 0) -> list:
    """Falls from 2.3 to 0.62 by step 12,400, rises to 0.91 by 20,000; 10% batch noise, every 10 steps."""
    rng = random.Random(seed)
    records = []
    for step in range(0, steps + 1, 10):
        falling = 0.62 + 1.68 * math.exp(-step / 2_000)
        smooth = falling if step <= 12_400 else 0.62 + 0.29 * (step - 12_400) / 7_600
        lr = 0.001 if lr_up_at is None or step < lr_up_at else 0.005
        records.append((step, {"loss": smooth * rng.uniform(0.9, 1.1), "lr": lr}))
    return records


def test_a_loss_that_rose_from_its_best_is_noted_with_the_step_it_turned():
    events = detect_all(fell_then_rose())
    (event,) = events
    assert (event.kind, event.key) == ("loss-rising", "loss") and not event.stops
    turned = int(re.match(r"loss rising since step ([\d,]+):", event.message)[1].replace(",", ""))
    assert 11_400 <= turned <= 13_400  # the best smoothed block: 5% of the run around step 12,400
    assert "its best was 0.6" in event.message


def test_a_rise_right_after_the_learning_rate_went_up_is_said_to_follow_it():
    (event,) = detect_all(fell_then_rose(lr_up_at=12_400))
    assert event.message.endswith("it follows the learning rate's rise from 0.001 to 0.005 at step 12,400")


def test_a_rise_is_noted_while_the_run_goes_on_and_a_later_fall_does_not_undo_it():
    """The seeds' "first fell, then rose, until the learning rate went from 0.001 to 0.0002"."""
    rng = random.Random(1)
    records = fell_then_rose()
    records += [(step, {"loss": 0.5 * rng.uniform(0.9, 1.1), "lr": 0.0002}) for step in range(20_010, 28_000, 10)]
    assert [event.kind for event in detect_all(records)] == ["loss-rising"]


def test_noise_alone_is_no_rise():
    rng = random.Random(3)
    records = [(step, {"loss": 0.8 * rng.uniform(0.5, 1.5)}) for step in range(0, 20_001, 10)]
    records[:200] = [(step, {"loss": 2.0 - step / 2_000}) for step, _ in records[:200]]
    assert [event for event in detect_all(records) if event.kind == "loss-rising"] == []


def test_the_rise_thresholds_are_settings():
    records = fell_then_rose()
    assert detect_all(records, rise_factor=1.6) == []  # 0.91 is 1.47x 0.62
    assert detect_all(records, rise_held=0.5) == []  # it rose for 38% of the steps


# ---------------------------------------------------------------- a loss that never falls


def test_a_loss_that_never_fell_is_noted_at_a_quarter_of_the_run():
    rng = random.Random(5)
    records = [(step, {"loss": 2.3 * rng.uniform(0.97, 1.03)}) for step in range(50, 20_001, 50)]
    (event,) = detect_all(records)
    assert (event.kind, event.key) == ("not-learning", "loss") and not event.stops
    assert re.fullmatch(r"loss has not improved: 2\.\d+ at step 5,0\d\d against 2\.\d+ at step 50", event.message)


def test_the_planned_length_of_the_run_sets_when_not_learning_is_checked():
    records = [(step, {"loss": 2.3}) for step in range(0, 2_001, 10)]
    assert [event.step for event in detect_all(records, total_steps=4_000)] == [1_000]
    live = DivergenceDetector(total_steps=100_000)
    live.feed({"loss": ([step for step, _ in records], [values["loss"] for _, values in records])})
    assert live.trend_events() == []  # a quarter of 100,000 is still ahead
    assert [event.step for event in live.trend_events(final=True)] == [500]  # it ended at 2,000: a quarter of that


def test_a_loss_that_fell_a_little_but_enough_is_learning():
    records = [(step, {"loss": 2.3 - 0.4 * step / 5_000}) for step in range(0, 20_001, 10)]
    assert detect_all(records) == []
    assert kinds(detect_all(records, flat_drop=0.5)) == [("not-learning", "loss", 5_000)]


def test_trends_look_at_the_total_loss_only_when_there_is_one():
    records = [(step, {"loss": 2.0 - step / 20_000, "loss_aux": 0.5}) for step in range(0, 20_001, 10)]
    assert detect_all(records) == []
    records = [(step, {"loss_cls": 2.0 - step / 20_000, "loss_aux": 0.5}) for step in range(0, 20_001, 10)]
    assert kinds(detect_all(records)) == [("not-learning", "loss_aux", 5_000)]


def test_every_default_is_documented_in_the_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for key, value in DEFAULTS.items():
        assert f"`{key}`" in readme and f"{value:g}" in readme, key


# ---------------------------------------------------------------- live, through the Python API


@pytest.fixture
def fast_flushes(monkeypatch):
    monkeypatch.setattr(runs, "FLUSH_INTERVAL_S", 0.02)


def test_a_live_run_that_explodes_is_stopped_as_diverged_with_the_thresholds_noted(workdir, fast_flushes):
    losses = [2.41, 4.4e11, 2.3e8, 7_709.0] + [2.3e3] * 200
    with expdb.start("lr5000", db=str(workdir / "x.db")) as run:
        for step, loss in enumerate(losses, start=1):
            run.log(step, loss=loss)
            time.sleep(0.001)
    assert run.status == "diverged" and run.exit_reason == "loss exploded at step 2: 4.4e+11, from 2.41 at step 1"
    with Database(str(workdir / "x.db")) as db:
        (note,) = cards.card_details(db, "lr5000").notes
    assert (note.step, note.settings) == (2, {"explode_factor": 100, "explode_sustain": 3})


def test_a_live_rise_is_noted_and_the_run_finishes(workdir, fast_flushes):
    with expdb.start("rises", db=str(workdir / "x.db"), diverge={"rise_held": 0.15}) as run:
        for step, values in fell_then_rose():
            run.log(step, **values)
    assert run.status == "finished"
    with Database(str(workdir / "x.db")) as db:
        (note,) = cards.card_details(db, "rises").notes
    assert note.text.startswith("loss rising since step ") and note.settings["rise_held"] == 0.15


def test_diverge_settings_are_checked_before_a_run_starts(workdir):
    with pytest.raises(ExpdbError, match="rise_factor must be above 1"), expdb.start(
        "bad", db=str(workdir / "x.db"), diverge={"rise_factor": 0.5}
    ):
        pass
