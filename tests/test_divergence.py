"""The divergence detector: NaN losses, loss spikes and gradient explosions, each reported once."""

import math
import random

import pytest

from expdb.errors import ExpdbError

from expdb.divergence import (
    Divergence,
    DivergenceDetector,
    detect_all,
    format_value,
    is_grad_norm_key,
    is_loss_key,
)

NAN = float("nan")
INF = float("inf")


def stopping(events):
    """The events that stop a run; a flat synthetic loss is also noted as not learning."""
    return [event for event in events if event.stops]


def feed(detector, records):
    """Every event from `records` [(step, values), ...], in order."""
    events = []
    for step, values in records:
        events.extend(detector.observe(step, values))
    return events


def healthy_run(steps=600, seed=0, every=10):
    """A realistic training curve: a fast drop from ~10 in the first 30 steps, then a slow noisy decline.

    The grad norm starts high and settles, with noise; lr, acc and memory ride along.
    """
    rng = random.Random(seed)
    records = []
    for i in range(steps):
        base = 1.5 + 8.5 * math.exp(-i / 8) + 0.5 * math.exp(-i / 300)
        loss = base * rng.uniform(0.7, 1.4)
        cls = 0.4 * loss * rng.uniform(0.8, 1.2)
        grad = (40 * math.exp(-i / 20) + 6) * rng.uniform(0.5, 2.5)
        records.append(
            (
                i * every,
                {
                    "lr": 1e-4 * min(1.0, (i + 1) / 50),
                    "loss_cls": cls,
                    "loss_bbox": loss - cls,
                    "loss": loss,
                    "acc": min(99.0, 50 + i / 5),
                    "memory": 3654 + (i % 7),
                    "grad_norm": grad,
                },
            )
        )
    return records


# ---------------------------------------------------------------- which keys are watched


@pytest.mark.parametrize(
    "key",
    ["loss", "val_loss", "loss_cls", "d0.loss_cls", "s1.loss_bbox", "s0.loss_cls", "loss_rpn_cls", "train/loss",
     "loss/total", "Loss", "kl-loss", "loss-cls", "aux.loss", "loss_weighted"],
)
def test_loss_keys(key):
    assert is_loss_key(key)
    assert not is_grad_norm_key(key)


@pytest.mark.parametrize(
    "key", ["lr", "acc", "s0.acc", "memory", "time", "data_time", "eta", "loss_scale", "scaler/loss_scale",
            "loss_weight", "lossless_ratio", "grad_norm", "iou50"],
)
def test_keys_that_are_not_losses(key):
    assert not is_loss_key(key)


@pytest.mark.parametrize("key", ["grad_norm", "grad-norm", "gradnorm", "train/grad_norm", "total_grad_norm", "GradNorm"])
def test_grad_norm_keys(key):
    assert is_grad_norm_key(key)
    assert not is_loss_key(key)


@pytest.mark.parametrize("key", ["lr", "grad_clip", "norm", "weight_norm", "loss"])
def test_keys_that_are_not_grad_norms(key):
    assert not is_grad_norm_key(key)


# ---------------------------------------------------------------- non-finite


def test_nan_reports_step_and_last_finite_value_with_thousands_separators():
    detector = DivergenceDetector()
    records = [(30_000 + i, {"loss": 2.0 + 0.01 * (i % 5)}) for i in range(119)]
    records.append((30_119, {"loss": 3.2e5}))
    assert feed(detector, records) == []
    events = detector.observe(30_120, {"loss": NAN})
    assert events == [
        Divergence("non-finite", "loss", 30_120, "loss became NaN at step 30,120 (last finite 3.2e+05 at step 30,119)")
    ]
    assert str(events[0]) == events[0].message


def test_inf_and_minus_inf():
    detector = DivergenceDetector()
    detector.observe(411, {"loss": 3.2e5})
    assert [e.message for e in detector.observe(412, {"loss": INF})] == [
        "loss became inf at step 412 (last finite 3.2e+05 at step 411)"
    ]
    detector = DivergenceDetector()
    detector.observe(10, {"loss": 0.8832})
    assert [e.message for e in detector.observe(11, {"loss": -INF})] == [
        "loss became -inf at step 11 (last finite 0.8832 at step 10)"
    ]


def test_never_finite():
    events = DivergenceDetector().observe(0, {"loss": NAN})
    assert [(e.kind, e.key, e.step, e.message) for e in events] == [
        ("non-finite", "loss", 0, "loss became NaN at step 0 (never finite)")
    ]


def test_several_losses_nan_at_once_make_one_event_naming_the_total():
    detector = DivergenceDetector()
    detector.observe(1, {"loss_cls": 0.5, "loss_bbox": 0.3, "loss": 0.8})
    events = detector.observe(2, {"loss_cls": NAN, "loss_bbox": NAN, "loss": NAN})
    assert [(e.kind, e.key, e.step) for e in events] == [("non-finite", "loss", 2)]
    assert events[0].message == "loss became NaN at step 2 (last finite 0.8 at step 1)"
    # The components that follow the total are no news.
    assert detector.observe(3, {"loss_cls": NAN, "loss_bbox": NAN, "loss": NAN, "d0.loss_cls": NAN}) == []


def test_several_losses_nan_without_the_total_name_the_first_in_order():
    detector = DivergenceDetector()
    detector.observe(5, {"s0.loss_cls": 0.25, "s0.loss_bbox": 0.125})
    events = detector.observe(6, {"s0.loss_bbox": NAN, "s0.loss_cls": INF})
    assert [e.message for e in events] == ["s0.loss_bbox became NaN at step 6 (last finite 0.125 at step 5)"]


def test_nan_grad_norm_with_the_loss_is_part_of_the_same_event():
    detector = DivergenceDetector()
    detector.observe(1, {"grad_norm": 7.0, "loss": 0.9})
    events = detector.observe(2, {"grad_norm": NAN, "loss": NAN})
    assert [(e.kind, e.key) for e in events] == [("non-finite", "loss")]
    assert detector.observe(3, {"grad_norm": NAN, "loss": NAN}) == []


def test_inf_grad_norm_before_the_loss_goes_nan_is_reported_then_the_loss_too():
    detector = DivergenceDetector()
    detector.observe(898, {"grad_norm": 7.0, "loss": 0.9})
    first = detector.observe(899, {"grad_norm": INF, "loss": 0.95})
    assert [e.message for e in first] == ["grad_norm became inf at step 899 (last finite 7 at step 898)"]
    second = detector.observe(900, {"grad_norm": NAN, "loss": NAN})
    assert [e.message for e in second] == ["loss became NaN at step 900 (last finite 0.95 at step 899)"]
    assert detector.observe(901, {"grad_norm": INF, "loss": NAN}) == []


def test_nan_is_reported_once_even_if_the_loss_recovers_and_goes_nan_again():
    detector = DivergenceDetector()
    records = [(0, {"loss": 1.0}), (1, {"loss": NAN}), (2, {"loss": 1.0}), (3, {"loss": NAN}), (4, {"loss": INF})]
    assert [(e.kind, e.step) for e in feed(detector, records)] == [("non-finite", 1)]


def test_the_mmdetection_cascade_log_that_went_nan_at_iteration_300():
    # mmdet2-cascade-nan.log: Cascade R-CNN, epoch 1, logged every 50 iterations.
    def line(rpn_cls, rpn_bbox, s0, s1, s2, loss, grad_norm, acc):
        s0_cls, s0_bbox = s0
        s1_cls, s1_bbox = s1
        s2_cls, s2_bbox = s2
        return {
            "lr": 4.983e-04, "time": 0.443, "data_time": 0.047, "memory": 3654,
            "loss_rpn_cls": rpn_cls, "loss_rpn_bbox": rpn_bbox,
            "s0.loss_cls": s0_cls, "s0.acc": acc, "s0.loss_bbox": s0_bbox,
            "s1.loss_cls": s1_cls, "s1.acc": acc, "s1.loss_bbox": s1_bbox,
            "s2.loss_cls": s2_cls, "s2.acc": acc, "s2.loss_bbox": s2_bbox,
            "loss": loss, "grad_norm": grad_norm,
        }

    records = [
        (50, line(0.1925, 0.0304, (0.5629, 0.1178), (0.2588, 0.0968), (0.1165, 0.0351), 1.4106, 10.6679, 87.7969)),
        (100, line(0.0565, 0.0194, (0.2479, 0.1215), (0.1272, 0.1315), (0.0633, 0.0634), 0.8306, 6.3832, 92.6836)),
        (150, line(0.0738, 0.0234, (0.2896, 0.1508), (0.1442, 0.1669), (0.0735, 0.0791), 1.0013, 8.8747, 91.3672)),
        (200, line(0.0615, 0.0221, (0.2475, 0.1243), (0.1164, 0.1407), (0.0559, 0.0658), 0.8342, 7.5786, 93.0781)),
        (250, line(0.0812, 0.0254, (0.2639, 0.1250), (0.1282, 0.1348), (0.0610, 0.0637), 0.8832, 7.2209, 92.2188)),
        (300, line(0.6478, 0.0342, (NAN, NAN), (NAN, NAN), (NAN, NAN), NAN, NAN, 14.7109)),
        (350, line(0.7337, 0.0419, (NAN, NAN), (NAN, NAN), (NAN, NAN), NAN, NAN, 0.1523)),
        (400, line(0.7058, 0.0391, (NAN, NAN), (NAN, NAN), (NAN, NAN), NAN, NAN, 0.0742)),
    ]
    assert detect_all(records) == [
        Divergence("non-finite", "loss", 300, "loss became NaN at step 300 (last finite 0.8832 at step 250)")
    ]
    # The same with the values as the log's text, as an importer might pass them on.
    as_text = [(step, {key: str(value) for key, value in values.items()}) for step, values in records]
    assert [e.message for e in detect_all(as_text)] == ["loss became NaN at step 300 (last finite 0.8832 at step 250)"]


# ---------------------------------------------------------------- loss spikes


def test_a_healthy_run_with_an_early_fast_drop_and_noise_reports_nothing():
    for seed in range(5):
        assert detect_all(healthy_run(seed=seed)) == []


def test_a_single_outlier_batch_is_not_a_spike():
    records = healthy_run(300)
    records[150][1]["loss"] *= 80
    records[150][1]["loss_cls"] *= 80
    records[200][1]["loss"] = 1e4
    records[201][1]["loss"] = 1e4  # two in a row is still shorter than sustain=3
    records[250][1]["grad_norm"] = 1e6
    assert detect_all(records) == []


def test_a_sustained_20x_jump_after_warmup_is_one_spike_at_the_step_it_began():
    detector = DivergenceDetector()
    records = [(i * 10, {"loss": 2.0}) for i in range(100)] + [(i * 10, {"loss": 40.0}) for i in range(100, 200)]
    events = []
    for step, values in records:
        found = detector.observe(step, values)
        if found:
            assert step == 1_020  # confirmed on the third high value
        events.extend(found)
    assert events == [
        Divergence("loss-spike", "loss", 1_000, "loss shot up at step 1,000: 40, 20x its recent level 2, and stayed up")
    ]


def test_spike_on_a_noisy_curve_reports_the_median_level_and_ratio():
    rng = random.Random(1)
    records = [(i, {"loss": 78.5 * rng.uniform(0.9, 1.1)}) for i in range(1_200)]
    records += [(1_200 + i, {"loss": 4.1e3 * rng.uniform(0.95, 1.05)}) for i in range(10)]
    records[1_200] = (1_200, {"loss": 4.1e3})
    events = detect_all(records)
    assert [(e.kind, e.key, e.step) for e in events] == [("loss-spike", "loss", 1_200)]
    message = events[0].message
    assert message.startswith("loss shot up at step 1,200: 4.1e+03, ")
    assert message.endswith(" and stayed up")
    ratio, level = message.split(", ")[1].split("x its recent level ")
    assert 49 <= int(ratio) <= 55
    assert abs(float(level) - 78.5) < 2.5


def test_a_jump_during_warmup_is_not_a_spike():
    records = [(i, {"loss": 1.0}) for i in range(5)] + [(i, {"loss": 50.0}) for i in range(5, 200)]
    assert stopping(detect_all(records)) == []


def test_spikes_below_the_factor_are_not_reported():
    records = [(i, {"loss": 1.0, "grad_norm": 5.0}) for i in range(50)]
    records += [(i, {"loss": 9.0, "grad_norm": 450.0}) for i in range(50, 100)]
    assert stopping(detect_all(records)) == []


def test_several_losses_spiking_together_make_one_event_naming_the_total():
    records = [(i, {"loss_cls": 0.5, "loss_bbox": 0.5, "loss": 1.0}) for i in range(60)]
    records += [(i, {"loss_cls": 50.0, "loss_bbox": 0.5 if i < 61 else 60.0, "loss": 50.5 if i < 61 else 110.0})
                for i in range(60, 120)]
    events = detect_all(records)
    assert [(e.kind, e.key, e.step) for e in events] == [("loss-spike", "loss", 60)]


def test_a_long_spike_does_not_raise_its_own_baseline():
    # sustain close to window: the held values stay out of the median.
    records = [(i, {"loss": 1.0}) for i in range(30)] + [(i, {"loss": 30.0}) for i in range(30, 80)]
    events = detect_all(records, window=20, sustain=25, warmup=10)
    assert [e.message for e in events] == ["loss shot up at step 30: 30, 30x its recent level 1, and stayed up"]


def test_zero_and_negative_levels_have_no_spikes():
    zero = [(i, {"loss_mask": 0.0}) for i in range(40)] + [(i, {"loss_mask": 0.7}) for i in range(40, 80)]
    signed = [(i, {"g_loss": -2.0}) for i in range(40)] + [(i, {"g_loss": 3.0}) for i in range(40, 80)]
    assert detect_all(zero) == []
    assert detect_all(signed) == []


def test_no_spike_examined_on_a_loss_after_it_went_non_finite():
    records = [(i, {"loss": 1.0}) for i in range(50)] + [(50, {"loss": NAN})]
    records += [(i, {"loss": 1e6}) for i in range(51, 100)]
    assert [e.kind for e in detect_all(records)] == ["non-finite"]


def test_a_spike_then_nan_reports_both_in_order():
    records = [(i, {"loss": 1.0}) for i in range(50)] + [(i, {"loss": 100.0}) for i in range(50, 60)]
    records.append((60, {"loss": NAN}))
    events = detect_all(records)
    assert [(e.kind, e.step) for e in events] == [("loss-spike", 50), ("non-finite", 60)]
    assert events[1].message == "loss became NaN at step 60 (last finite 100 at step 59)"


# ---------------------------------------------------------------- gradient explosion


def test_gradient_explosion():
    records = [(i * 10, {"loss": 1.0, "grad_norm": 8e3}) for i in range(90)]
    records += [(i * 10, {"loss": 1.0, "grad_norm": 3.2e6}) for i in range(90, 95)]
    assert stopping(detect_all(records)) == [
        Divergence("grad-explosion", "grad_norm", 900, "gradient norm exploded at step 900: 3.2e+06, 400x its recent level 8e+03")
    ]


def test_gradient_explosion_on_a_named_grad_norm_key_keeps_its_name():
    records = [(i, {"encoder/grad-norm": 2.0}) for i in range(30)] + [(i, {"encoder/grad-norm": 1e4}) for i in range(30, 40)]
    assert [e.message for e in stopping(detect_all(records))] == [
        "encoder/grad-norm exploded at step 30: 1e+04, 5,000x its recent level 2"
    ]


# ---------------------------------------------------------------- once each, ignored keys, detect_all


def test_each_kind_is_reported_once():
    records = []
    step = 0

    def add(n, loss, grad):
        nonlocal step
        for _ in range(n):
            records.append((step, {"loss": loss, "grad_norm": grad}))
            step += 1

    add(40, 1.0, 5.0)
    add(10, 50.0, 5.0)  # loss spike at 40
    add(40, 1.0, 5.0)
    add(10, 50.0, 5.0)  # again: not reported
    add(60, 1.0, 5.0)
    add(10, 1.0, 5e3)  # grad explosion at 160
    add(60, 1.0, 5.0)
    add(10, 1.0, 5e3)  # again: not reported
    add(1, NAN, 5.0)  # non-finite at 240
    add(5, 1.0, 5.0)
    add(1, NAN, 5.0)  # again: not reported
    events = detect_all(records)
    assert [(e.kind, e.key, e.step) for e in events] == [
        ("loss-spike", "loss", 40),
        ("grad-explosion", "grad_norm", 160),
        ("non-finite", "loss", 240),
    ]


def test_keys_that_are_not_losses_are_ignored_even_when_nan_or_huge():
    records = [(i, {"lr": 1e-3, "acc": 90.0, "memory": 3654, "loss_scale": 65536.0, "loss": 1.0}) for i in range(50)]
    records += [(i, {"lr": NAN, "acc": 1e9, "memory": 1e12, "time": INF, "loss_scale": 1e15, "loss": 1.0})
                for i in range(50, 100)]
    assert stopping(detect_all(records)) == []


def test_values_that_are_not_numbers_are_skipped():
    detector = DivergenceDetector()
    detector.observe(1, {"loss": "0.5", "loss_cls": None, "grad_norm": True, "val_loss": "n/a"})
    assert [e.message for e in detector.observe(2, {"loss": "nan"})] == [
        "loss became NaN at step 2 (last finite 0.5 at step 1)"
    ]


def test_detect_all_over_a_record_list_and_the_events_property():
    records = [(i * 50, {"loss": 1.0 - i * 0.001, "grad_norm": 7.0}) for i in range(100)]
    records.append((5_000, {"loss": NAN, "grad_norm": INF}))
    events = detect_all(records)
    assert events == [
        Divergence("non-finite", "loss", 5_000, "loss became NaN at step 5,000 (last finite 0.901 at step 4,950)")
    ]
    detector = DivergenceDetector()
    feed(detector, records)
    assert detector.events == events


def test_detect_all_passes_settings_through():
    records = [(i, {"loss": 1.0}) for i in range(30)] + [(i, {"loss": 5.0}) for i in range(30, 40)]
    assert detect_all(records) == []
    assert [e.step for e in detect_all(records, spike_factor=4)] == [30]


def test_float_steps_are_written_as_integers():
    detector = DivergenceDetector()
    detector.observe(30_119.0, {"loss": 2.5})
    assert detector.observe(30_120.0, {"loss": NAN})[0].message == (
        "loss became NaN at step 30,120 (last finite 2.5 at step 30,119)"
    )


@pytest.mark.parametrize(
    "options", [{"spike_factor": 1.0}, {"grad_factor": 0.5}, {"window": 0}, {"sustain": 0}, {"warmup": -1}]
)
def test_bad_settings_are_refused(options):
    (key, value), = options.items()
    with pytest.raises(ExpdbError, match=f"{key}={value}: {key} must be"):
        DivergenceDetector(**options)


@pytest.mark.parametrize(
    "value, text",
    [(0.8832, "0.8832"), (78.5, "78.5"), (3.2e5, "3.2e+05"), (4.1e3, "4.1e+03"), (7.1e3, "7.1e+03"), (2.0, "2"),
     (1.4106, "1.411"), (0.0, "0"), (NAN, "NaN"), (INF, "inf"), (-INF, "-inf")],
)
def test_value_format(value, text):
    assert format_value(value) == text


def _stream(seed: int, length: int, blowup_at: int | None, kind: str) -> list[tuple[int, dict[str, float]]]:
    rng = random.Random(seed)
    records = []
    for step in range(length):
        loss = 2.0 * math.exp(-step / 300) + 0.1 + rng.random() * 0.05
        grad = 5.0 + rng.random()
        if blowup_at is not None and step >= blowup_at:
            loss = math.nan if kind == "nan" else loss * 40
            grad = grad * 1000 if kind == "grad" else grad
        records.append((step, {"loss": loss, "grad_norm": grad, "lr": 1e-3, "acc": rng.random()}))
    return records


@pytest.mark.parametrize("blowup_at", [None, 5, 150, 777, 1999])
@pytest.mark.parametrize("kind", ["nan", "spike", "grad"])
@pytest.mark.parametrize("chunk", [1, 37, 500])
def test_absorbing_chunks_finds_what_observing_each_step_finds(blowup_at, kind, chunk):
    records = _stream(3, 2000, blowup_at, kind)
    expected = detect_all(records)
    detector = DivergenceDetector()
    found = []
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        steps = [step for step, _ in part]
        stepwise = [
            key for key in part[0][1] if not detector.absorb(key, steps, [values[key] for _, values in part])
        ]
        for step, values in part:
            watched = {key: values[key] for key in stepwise}
            if watched:
                found.extend(detector.observe(step, watched))
    assert found == expected
