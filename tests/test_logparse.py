"""Training-log parsers (expdb.logparse) on the real logs in tests/data and on made-up lines."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from expdb.errors import ExpdbError
from expdb.logparse import (
    MMDetParser,
    Record,
    RegexParser,
    make_parser,
    parse_file,
    parse_lines,
    parse_number,
)

DATA = Path(__file__).resolve().parent / "data"
CASCADE = DATA / "real-logs" / "mmdet2-cascade-nan.log"
MMENGINE = DATA / "real-logs" / "mmengine-deepspeed.log"
SAMPLE = DATA / "mmdet-sample.log"


def local(*when):
    """Seconds since the epoch of a naive local date, as the parser reads dates with a year."""
    return datetime(*when).timestamp()


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message and message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- the real logs


def test_cascade_log_gives_every_training_line_and_the_nan():
    records = parse_file(CASCADE, "mmdet")
    # The file holds 8 progress lines (iterations 50..400, every 50) between a `workflow`
    # line and an `Exp name` line; those two are not progress lines.
    assert [r.step for r in records] == [50, 100, 150, 200, 250, 300, 350, 400]
    assert {r.epoch for r in records} == {1}
    assert {r.mode for r in records} == {"train"}
    by_step = {r.step: r for r in records}
    assert by_step[250].values["loss"] == 0.8832
    assert all(math.isfinite(by_step[s].values["loss"]) for s in (50, 100, 150, 200, 250))
    assert all(math.isnan(by_step[s].values["loss"]) for s in (300, 350, 400))
    first_nan = next(r.step for r in records if math.isnan(r.values["loss"]))
    assert first_nan == 300
    assert all("s0.loss_cls" in r.values for r in records)
    assert by_step[300].values["s0.acc"] == 14.7109
    assert math.isnan(by_step[300].values["grad_norm"])
    assert by_step[300].values["loss_rpn_cls"] == 0.6478


def test_cascade_first_record_exactly():
    first = parse_file(CASCADE, "mmdet")[0]
    assert first == Record(
        step=50,
        epoch=1,
        values={
            "lr": 4.983e-04,
            "time": 0.443,
            "data_time": 0.047,
            "memory": 3654.0,
            "loss_rpn_cls": 0.1925,
            "loss_rpn_bbox": 0.0304,
            "s0.loss_cls": 0.5629,
            "s0.acc": 87.7969,
            "s0.loss_bbox": 0.1178,
            "s1.loss_cls": 0.2588,
            "s1.acc": 90.2930,
            "s1.loss_bbox": 0.0968,
            "s2.loss_cls": 0.1165,
            "s2.acc": 94.1406,
            "s2.loss_bbox": 0.0351,
            "loss": 1.4106,
            "grad_norm": 10.6679,
        },
        timestamp=local(2021, 1, 25, 19, 25, 44, 459000),
        mode="train",
        epochs_done=50 / 5455,
    )
    assert list(first.values)[:4] == ["lr", "time", "data_time", "memory"]  # log order, no eta


def test_cascade_timestamps_keep_milliseconds():
    records = parse_file(CASCADE, "mmdet")
    # 19:25:44,459 -> 19:26:04,422
    assert records[1].timestamp - records[0].timestamp == pytest.approx(19.963, abs=1e-6)


def test_mmengine_log():
    records = parse_file(MMENGINE, "mmdet")
    assert len(records) == 19
    assert [r.step for r in records] == list(range(10, 191, 10))
    assert {r.epoch for r in records} == {1}
    assert records[0] == Record(
        step=10,
        epoch=1,
        values={"lr": 3.3333e-04, "time": 0.4073, "data_time": 0.0335, "memory": 970.0, "loss": 6.1887},
        timestamp=local(YEAR_OF_MMENGINE, 7, 3, 13, 4, 17),  # "07/03 13:04:17": the year of the file
        mode="train",
        epochs_done=10 / 196,
    )
    assert records[-1].values["loss"] == 1.7523
    assert records[9].step == 100 and records[9].values["loss"] == 2.0891


YEAR_OF_MMENGINE = datetime.fromtimestamp(MMENGINE.stat().st_mtime).year


def test_epochs_are_fractional_iteration_over_iterations_per_epoch():
    records = parse_file(MMENGINE, "mmdet")
    assert [r.epochs_done for r in records] == pytest.approx([step / 196 for step in range(10, 191, 10)])
    assert all(r.epoch == 1 for r in records)


def test_a_date_without_a_year_takes_it_from_the_file_name_else_its_mtime(tmp_path):
    named = tmp_path / "20191231_235950" / "20191231_235950.log"
    named.parent.mkdir()
    lines = MMENGINE.read_text().splitlines()[:2]
    # across new year: 12/31 23:59:50, then 01/01 00:00:10 of the next year
    december, january = lines[0].replace("07/03 13:04:17", "12/31 23:59:50"), lines[1].replace("07/03 13:04:19", "01/01 00:00:10")
    named.write_text(f"{december}\n{january}\n")
    first, second = parse_file(named, "mmdet")
    assert first.timestamp == local(2019, 12, 31, 23, 59, 50)
    assert second.timestamp == local(2020, 1, 1, 0, 0, 10)
    unnamed = tmp_path / "train.log"
    unnamed.write_text(lines[0] + "\n")
    os.utime(unnamed, (local(2022, 8, 1, 0, 0, 0), local(2022, 8, 1, 0, 0, 0)))
    assert parse_file(unnamed, "mmdet")[0].timestamp == local(2022, 7, 3, 13, 4, 17)


def test_mmengine_dates_use_the_year_given():
    records = parse_file(MMENGINE, "mmdet", year=2023)
    assert records[0].timestamp == local(2023, 7, 3, 13, 4, 17)
    assert records[-1].timestamp == local(2023, 7, 3, 13, 4, 53)
    parser = make_parser("mmdet", year=2024)
    line = MMENGINE.read_text().splitlines()[0]
    assert parser.parse(line).timestamp == local(2024, 7, 3, 13, 4, 17)


def test_researcher_sample_with_a_space_instead_of_the_tab():
    records = parse_file(SAMPLE, "mmdet")
    assert [r.step for r in records] == [(20 - 1) * 1069 + 1000, (21 - 1) * 1069 + 100]
    assert [r.step for r in records] == [21311, 21480]
    assert [r.epoch for r in records] == [20, 21]
    first, second = records
    assert first.values["d0.loss_cls"] == 0.3011
    assert first.values["d4.loss_bbox"] == 0.4376
    assert first.values["grad_norm"] == 197.8638
    assert first.values["loss"] == 4.2288
    assert first.values["lr"] == 2.000e-04
    assert "eta" not in first.values  # "2 days, 7:04:24"
    assert second.values["d0.loss_cls"] == 0.2881
    assert second.values["d4.loss_bbox"] == 0.3860
    assert second.values["grad_norm"] == 100.7063
    assert second.values["lr"] == 2.000e-05
    assert list(first.values) == [
        "lr", "time", "data_time", "memory", "loss_cls", "loss_bbox",
        "d0.loss_cls", "d0.loss_bbox", "d1.loss_cls", "d1.loss_bbox", "d2.loss_cls", "d2.loss_bbox",
        "d3.loss_cls", "d3.loss_bbox", "d4.loss_cls", "d4.loss_bbox", "loss", "grad_norm",
    ]  # fmt: skip
    assert first.timestamp == local(2024, 4, 7, 18, 21, 18, 692000)
    assert second.timestamp == local(2024, 4, 7, 18, 23, 51, 636000)


def test_tab_and_space_after_the_counter_parse_alike():
    line = SAMPLE.read_text().splitlines()[0]
    with_tab = line.replace("/1069] lr:", "/1069]\tlr:")
    assert with_tab != line
    assert MMDetParser().parse(with_tab) == MMDetParser().parse(line)


def test_lines_arrive_one_at_a_time_with_their_newlines():
    parser = make_parser("mmdet")
    out = [parser.parse(line) for line in CASCADE.read_text().splitlines(keepends=True)]
    assert out[0] is None and out[-1] is None  # workflow, Exp name
    assert [r.step for r in out[1:-1]] == [50, 100, 150, 200, 250, 300, 350, 400]
    crlf = CASCADE.read_text().splitlines()[1] + "\r\n"
    assert make_parser("mmdet").parse(crlf).values["grad_norm"] == 10.6679


# ---------------------------------------------------------------- other MMDetection forms

ENGINE_TRAIN = (
    "07/03 13:04:17 - mmengine - INFO - Epoch(train)  [1][196/196]  "
    "lr: 3.3333e-04  eta: 0:13:14  time: 0.4073  data_time: 0.0335  memory: 970  loss: 1.5"
)


def test_mmengine_colour_codes_are_ignored():
    coloured = (
        "\x1b[32m07/03 13:04:17\x1b[0m - mmengine - \x1b[4m\x1b[97mINFO\x1b[0m - "
        "Epoch(train)  [1][ 10/196]  lr: 3.3333e-04  eta: 0:13:14  time: 0.4073  data_time: 0.0335  memory: 970  loss: 6.1887"
    )
    assert make_parser("mmdet", year=YEAR_OF_MMENGINE).parse(coloured) == parse_file(MMENGINE, "mmdet")[0]


def test_mmengine_iteration_based_training():
    line = (
        "2023/06/16 12:09:59 - mmengine - INFO - Iter(train) [  50/90000]  base_lr: 2.0000e-02 lr: 2.0000e-02  "
        "eta: 1 day, 2:03:04  time: 0.5780  data_time: 0.0083  memory: 3614  loss: 0.0365  decode.loss_ce: 0.0365"
    )
    assert make_parser("mmdet").parse(line) == Record(
        step=50,
        epoch=None,
        values={
            "base_lr": 0.02,
            "lr": 0.02,
            "time": 0.578,
            "data_time": 0.0083,
            "memory": 3614.0,
            "loss": 0.0365,
            "decode.loss_ce": 0.0365,
        },
        timestamp=local(2023, 6, 16, 12, 9, 59),
    )


def test_mmcv_iteration_based_training():
    line = (
        "2021-01-25 19:25:44,459 - mmseg - INFO - Iter [16000/160000]\tlr: 9.104e-03, eta: 1 day, 0:11:45, "
        "time: 0.601, data_time: 0.006, memory: 4230, decode.loss_seg: 0.2345, loss: 0.3456"
    )
    record = make_parser("mmdet").parse(line)
    assert (record.step, record.epoch) == (16000, None)
    assert record.values == {
        "lr": 9.104e-03,
        "time": 0.601,
        "data_time": 0.006,
        "memory": 4230.0,
        "decode.loss_seg": 0.2345,
        "loss": 0.3456,
    }


def test_mmdet2_val_line_lands_at_the_end_of_its_epoch():
    parser = make_parser("mmdet")
    train = parser.parse(
        "2021-01-25 19:25:44,459 - mmdet - INFO - Epoch [1][5450/5455]\t"
        "lr: 2.000e-02, eta: 8:02:25, time: 0.443, data_time: 0.047, memory: 3654, loss: 0.5"
    )
    assert train.step == 5450
    val = parser.parse(
        "2021-01-25 20:03:28,939 - mmdet - INFO - Epoch(val) [1][625]\tbbox_mAP: 0.3800, bbox_mAP_50: 0.4210, "
        "bbox_mAP_s: -1.0000, bbox_mAP_copypaste: 0.380 0.421 0.409 -1.000 0.388 0.376, segm_mAP: 0.3670"
    )
    assert val == Record(
        step=5455,  # 1 * 5455: the last training iteration of epoch 1
        epoch=1,
        values={"val/bbox_mAP": 0.38, "val/bbox_mAP_50": 0.421, "val/bbox_mAP_s": -1.0, "val/segm_mAP": 0.367},
        timestamp=local(2021, 1, 25, 20, 3, 28, 939000),
        mode="val",
        epochs_done=1.0,
    )
    # The next epoch's training lines still count from the start.
    later = parser.parse("2021-01-25 21:00:00,000 - mmdet - INFO - Epoch [2][50/5455]\tlr: 2.000e-02, time: 0.4, loss: 0.4")
    assert (later.step, later.epoch, later.mode) == (5505, 2, "train")


def test_mmdet2_val_losses_never_reach_the_training_loss_curve():
    parser = make_parser("mmdet")
    parser.parse(
        "2021-10-11 21:00:00,000 - mmdet - INFO - Epoch [11][450/489]\t"
        "lr: 2.000e-03, eta: 0:10:00, time: 0.5, data_time: 0.01, memory: 9000, loss: 0.6"
    )
    val = parser.parse(
        "2021-10-11 21:07:55,372 - mmdet - INFO - Epoch(val) [11][489]   loss_rpn_cls: 0.0547, acc: 92.9791, loss: 0.5580"
    )
    assert (val.step, val.epoch, val.mode) == (11 * 489, 11, "val")
    assert val.values == {"val/loss_rpn_cls": 0.0547, "val/acc": 92.9791, "val/loss": 0.558}


def test_old_mmcv_evaluation_in_an_epoch_line_is_not_a_training_iteration():
    line = (
        "2020-01-30 20:46:55,123 - mmdet - INFO - Epoch [12][7330/7330]\t"
        "lr: 2.000e-04, bbox_mAP: 0.3740, bbox_mAP_50: 0.5810, bbox_mAP_copypaste: 0.374 0.581 0.404 0.212 0.410 0.481"
    )
    record = make_parser("mmdet").parse(line)
    assert (record.step, record.epoch, record.mode) == (12 * 7330, 12, "val")
    assert record.values == {"val/bbox_mAP": 0.374, "val/bbox_mAP_50": 0.581}


def test_mmengine_val_progress_is_skipped_and_its_result_kept():
    parser = make_parser("mmdet", year=2023)
    for line in MMENGINE.read_text().splitlines():
        parser.parse(line)
    progress = (
        "07/03 13:05:00 - mmengine - INFO - Epoch(val)  [1][ 10/625]    "
        "eta: 0:01:00  time: 0.1000  data_time: 0.0100  memory: 970"
    )
    assert parser.parse(progress) is None
    result = parser.parse(
        "07/03 13:06:00 - mmengine - INFO - Epoch(val) [1][625/625]    coco/bbox_mAP: 0.0010  coco/bbox_mAP_50: 0.0040  "
        "coco/bbox_mAP_copypaste: 0.001 0.004 0.000 0.000 0.001 0.002  data_time: 0.0019  time: 0.0297"
    )
    assert result == Record(
        step=196,  # after the 196 iterations of epoch 1
        epoch=1,
        values={"val/coco/bbox_mAP": 0.001, "val/coco/bbox_mAP_50": 0.004},
        timestamp=local(2023, 7, 3, 13, 6, 0),
        mode="val",
        epochs_done=1.0,
    )


def test_iteration_based_val_and_test_take_the_last_training_step():
    parser = make_parser("mmdet")
    train = "06/16 08:20:00 - mmengine - INFO - Iter(train) [2900/3000]  lr: 9.3518e-03  eta: 0:00:57  time: 0.5780  loss: 0.0365"
    assert parser.parse(train).step == 2900
    val = parser.parse(
        "06/16 08:23:02 - mmengine - INFO - Iter(val) [17/17]    aAcc: 86.3900  mIoU: 51.1200  val/mAcc: 58.3200  "
        "data_time: 0.0052  time: 0.4238"
    )
    assert (val.step, val.epoch, val.mode) == (2900, None, "val")
    assert val.values == {"val/aAcc": 86.39, "val/mIoU": 51.12, "val/mAcc": 58.32}  # an existing val/ is kept
    test = parser.parse("06/16 08:30:00 - mmengine - INFO - Epoch(test) [625/625]    coco/bbox_mAP: 0.4000  time: 0.1")
    assert (test.step, test.mode, test.values) == (2900, "test", {"test/coco/bbox_mAP": 0.4})
    two_counters = parser.parse("2021-01-01 00:00:00,000 - mmdet - INFO - Iter(val) [5000][625]\tbbox_mAP: 0.2000")
    assert (two_counters.step, two_counters.values) == (5000, {"val/bbox_mAP": 0.2})


def test_val_lines_before_any_training_line_take_their_epoch_or_count_as_step():
    parser = make_parser("mmdet")
    val = "07/03 13:06:00 - mmengine - INFO - Epoch(val) [3][625/625]    coco/bbox_mAP: 0.0010  time: 0.0297"
    assert (parser.parse(val).step, parser.parse(val).epoch) == (3, 3)
    test = parser.parse("2021-01-01 00:00:00,000 - mmdet - INFO - Epoch(test) [625/625]\tbbox_mAP: 0.2000")
    assert (test.step, test.values) == (3, {"test/bbox_mAP": 0.2})  # no epoch: the third evaluation line
    parser.parse(ENGINE_TRAIN)
    assert parser.parse("07/03 13:06:00 - mmengine - INFO - Epoch(val) [1][625/625]    data_time: 0.0019  time: 0.0297") is None
    assert parser.parse("07/03 13:06:00 - mmengine - INFO - Epoch(predict) [1][625/625]    acc: 0.5") is None


def test_a_file_of_validation_lines_only_is_a_log(tmp_path):
    log = tmp_path / "val.log"
    log.write_text(
        "".join(
            f"2021-10-27 22:03:28,939 - mmdet - INFO - Epoch(val) [{epoch}][464]    bbox_mAP: 0.{epoch}800, bbox_mAP_50: 0.4210\n"
            for epoch in range(1, 101)
        )
    )
    records = parse_file(log, "mmdet")
    assert len(records) == 100 and [record.step for record in records] == list(range(1, 101))
    assert records[-1].values == {"val/bbox_mAP": 0.1008, "val/bbox_mAP_50": 0.421}
    log.write_text("2021-10-27 22:03:28,939 - mmdet - INFO - Environment info\n")
    with pytest.raises(ExpdbError) as excinfo:
        parse_file(log, "mmdet")
    assert_one_line_error(excinfo, f"no MMDetection progress lines in {log}: ")


def test_parse_file_keeps_val_records_in_order(tmp_path):
    log = tmp_path / "run.log"
    lines = MMENGINE.read_text().splitlines()
    lines.append("07/03 13:06:00 - mmengine - INFO - Epoch(val) [1][625/625]    coco/bbox_mAP: 0.0010  time: 0.0297")
    log.write_text("\n".join(lines) + "\n")
    records = parse_file(log, "mmdet")
    assert [r.mode for r in records] == ["train"] * 19 + ["val"]
    assert records[-1].step == 196


def test_special_numbers_in_a_line():
    parser = make_parser("mmdet")
    record = parser.parse(
        "Epoch [1][10/100]\tlr: 1.2e-04, time: 0.5, "
        "loss: inf, loss_cls: -inf, loss_bbox: NaN, acc: 97.5%, note: n/a, count: 1_000"
    )
    assert record.step == 10 and record.timestamp is None  # no date on the line
    assert record.values["lr"] == 1.2e-04
    assert record.values["loss"] == math.inf
    assert record.values["loss_cls"] == -math.inf
    assert math.isnan(record.values["loss_bbox"])
    assert set(record.values) == {"lr", "time", "loss", "loss_cls", "loss_bbox"}  # 97.5%, n/a, 1_000 skipped


def test_dates():
    parser = make_parser("mmdet")
    tail = " - mmdet - INFO - Epoch [1][10/100]\tlr: 1.0e-04, time: 0.5, loss: 1.0"
    assert parser.parse("2023-06-16 12:09:59,5" + tail).timestamp == local(2023, 6, 16, 12, 9, 59, 500000)
    assert parser.parse("2023/06/16 12:09:59" + tail).timestamp == local(2023, 6, 16, 12, 9, 59)
    assert parser.parse("[rank0]: 2023-06-16 12:09:59,001" + tail).timestamp == local(2023, 6, 16, 12, 9, 59, 1000)
    bad = parser.parse("2021-13-45 25:61:61,000" + tail)
    assert bad.step == 10 and bad.timestamp is None  # an impossible date: no timestamp, still a record
    assert make_parser("mmdet", year=2023).parse("02/29 10:00:00" + tail).timestamp is None  # 2023 is no leap year
    assert make_parser("mmdet", year=2024).parse("02/29 10:00:00" + tail).timestamp == local(2024, 2, 29, 10, 0, 0)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "\n",
        "hello world",
        "2021-01-25 19:25:22,220 - mmdet - INFO - workflow: [('train', 1)], max: 12 epochs",
        "2021-01-25 19:31:10,917 - mmdet - INFO - Exp name: cascade_r50_fpn_1x.py",
        "2021-01-25 19:31:10,917 - mmdet - INFO - Epoch [1][50/5455]",
        "2021-01-25 19:31:10,917 - mmdet - INFO - Epoch [1][50/5455]\tlr: abc, eta: 1:00:00",
        "Epoch [0][50/100]\tlr: 1.0e-04, time: 0.5, loss: 1.0",
        "Epoch [1][50]\tlr: 1.0e-04, time: 0.5, loss: 1.0",
        "Epoch [1][50/0]\tlr: 1.0e-04, time: 0.5, loss: 1.0",
        "Epoch [1][" + "9" * 5000 + "/100]\tlr: 1.0e-04, time: 0.5, loss: 1.0",
        "myEpoch [1][50/100]\tloss: 1.0",
        "Epoch 1/12, loss: 0.5",
        "[>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>] 5000/5000, 20.1 task/s, elapsed: 250s, ETA:     0s",
        "Loading and preparing results...",
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.374",
        "Traceback (most recent call last):",
        "\x00\x01\x02 Epoch(train) [\udcff",
    ],
)
def test_noise_lines_give_none(line):
    assert make_parser("mmdet").parse(line) is None


def test_non_strings_give_none():
    parser = make_parser("mmdet")
    assert parser.parse(None) is None
    assert parser.parse(42) is None
    regex = make_parser("regex:(?P<step>\\d+) (?P<loss>\\S+)")
    assert regex.parse(None) is None


# ---------------------------------------------------------------- regex

MADE_UP_LOG = """\
starting training on 8 GPUs
[10:00:01] ep 1 it 100 | loss 2.5000 | acc 0.125 | lr 1e-3
[10:00:02] ep 1 it 200 | loss nan | acc n/a | lr 1e-3
validation done
[10:00:03] ep 2 it 300 | loss 1.2500 | acc 0.500 | lr 5E-4
[10:00:04] ep 2 it 400 | loss ??? | acc ??? | lr ???
"""
PATTERN = r"ep (?P<epoch>\d+) it (?P<step>\d+) \| loss (?P<loss>\S+) \| acc (?P<acc>\S+) \| lr (?P<lr>\S+)"


def test_regex_spec_on_a_made_up_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(MADE_UP_LOG)
    records = parse_file(log, "regex:" + PATTERN)
    assert [(r.step, r.epoch) for r in records] == [(100, 1), (200, 1), (300, 2)]
    assert records[0] == Record(step=100, epoch=1, values={"loss": 2.5, "acc": 0.125, "lr": 1e-3}, timestamp=None)
    assert math.isnan(records[1].values["loss"])
    assert set(records[1].values) == {"loss", "lr"}  # acc "n/a" skipped
    assert records[2].values == {"loss": 1.25, "acc": 0.5, "lr": 5e-4}
    # The line where no metric is a number gives nothing.
    assert make_parser("regex:" + PATTERN).parse(MADE_UP_LOG.splitlines()[-1]) is None


def test_regex_iter_group_and_no_epoch():
    parser = make_parser(r"regex:iter=(?P<iter>\d+)\s+loss=(?P<loss>[^\s,]+)")
    assert isinstance(parser, RegexParser)
    assert parser.parse("iter=7 loss=0.25, whatever") == Record(7, None, {"loss": 0.25}, None)
    assert parser.parse("iter=x loss=0.25") is None
    assert parser.parse("nothing to see") is None


def test_regex_step_that_is_not_an_integer_gives_none():
    parser = make_parser(r"regex:step (?P<step>\S+) loss (?P<loss>\S+)(?: epoch (?P<epoch>\S+))?")
    assert parser.parse("step 1.5 loss 0.1") is None
    assert parser.parse("step 3 loss 0.1") == Record(3, None, {"loss": 0.1}, None)
    assert parser.parse("step 3 loss 0.1 epoch one") == Record(3, None, {"loss": 0.1}, None)
    assert parser.parse("step 3 loss 0.1 epoch 2") == Record(3, 2, {"loss": 0.1}, None)


def test_regex_file_without_a_match(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("nothing\nhere\n")
    with pytest.raises(ExpdbError) as excinfo:
        parse_file(log, "regex:" + PATTERN)
    assert_one_line_error(excinfo, str(log), "regex")


# ---------------------------------------------------------------- specs and errors


@pytest.mark.parametrize("spec", ["mmdet3", "", "json", "csv:x", "regex", "mmdet:foo", "mm\ndet"])
def test_unknown_specs(spec):
    with pytest.raises(ExpdbError) as excinfo:
        make_parser(spec)
    assert_one_line_error(excinfo, "mmdet", "regex:PATTERN")


def test_mmdet_spec_is_case_insensitive():
    assert isinstance(make_parser("mmdet"), MMDetParser)
    assert isinstance(make_parser("MMDet"), MMDetParser)


def test_regex_that_does_not_compile():
    with pytest.raises(ExpdbError) as excinfo:
        make_parser(r"regex:(?P<step>\d+ loss (?P<loss>\S+)")
    assert_one_line_error(excinfo, "missing ), unterminated subpattern at position 0")
    with pytest.raises(ExpdbError) as excinfo:
        make_parser("regex:(?x)\n(?P<step>\\d+)\n(?P<loss>[")
    assert_one_line_error(excinfo, "unterminated character set")


def test_regex_without_a_step_counts_the_lines_it_matched():
    parser = make_parser(r"regex:'loss': (?P<loss>[^,]+), 'learning_rate': (?P<lr>[^,]+), 'epoch': (?P<epoch>[\d.]+)")
    first = parser.parse("{'loss': 0.6931, 'learning_rate': 4.8e-05, 'epoch': 0.27}")
    assert parser.parse("{'eval_loss': 0.41, 'epoch': 1.0}") is None
    second = parser.parse("{'loss': 0.5312, 'learning_rate': 4.6e-05, 'epoch': 0.53}")
    assert (first.step, first.epoch, first.values) == (1, 0.27, {"loss": 0.6931, "lr": 4.8e-05})
    assert (second.step, second.epoch) == (2, 0.53)


def test_regex_step_that_restarts_every_epoch_goes_on():
    # pytorch/examples' MNIST: the offset within the epoch, in samples.
    parser = make_parser(r"regex:Train Epoch: (?P<epoch>\d+) \[(?P<step>\d+)/\d+.*Loss: (?P<loss>\S+)")
    lines = ["Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.30", "Train Epoch: 1 [59520/60000 (99%)]\tLoss: 0.31",
             "Train Epoch: 2 [0/60000 (0%)]\tLoss: 0.29", "Train Epoch: 2 [640/60000 (1%)]\tLoss: 0.20"]
    assert [parser.parse(line).step for line in lines] == [0, 59520, 59521, 60161]
    # timm: the batch within the epoch and the epoch's length give the global step exactly.
    parser = make_parser(r"regex:Train: (?P<epoch>\d+) \[\s*(?P<step>\d+)/(?P<total>\d+).*Loss: (?P<loss>\S+)")
    assert parser.parse("Train: 0 [1250/1251 (100%)]  Loss: 6.81 (6.90)").step == 1250
    assert parser.parse("Train: 1 [   0/1251 (  0%)]  Loss: 6.75 (6.75)").step == 1251
    with pytest.raises(ExpdbError) as excinfo:
        make_parser(r"regex:(?P<total>\d+) loss (?P<loss>\S+)")
    assert_one_line_error(excinfo, "(?P<epoch>")


def test_regex_without_a_metric_group():
    with pytest.raises(ExpdbError) as excinfo:
        make_parser(r"regex:step (?P<step>\d+) epoch (?P<epoch>\d+)")
    assert_one_line_error(excinfo, "metric")


def test_empty_regex():
    with pytest.raises(ExpdbError) as excinfo:
        make_parser("regex:")
    assert_one_line_error(excinfo, "(?P<step>")


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.log"
    with pytest.raises(ExpdbError) as excinfo:
        parse_file(missing, "mmdet")
    assert_one_line_error(excinfo, str(missing))


def test_directory_is_not_a_log(tmp_path):
    with pytest.raises(ExpdbError) as excinfo:
        parse_file(tmp_path, "mmdet")
    assert_one_line_error(excinfo, str(tmp_path))


def test_file_of_noise_has_no_training_lines(tmp_path):
    log = tmp_path / "noise.log"
    log.write_text("hello\n2021-01-25 19:25:22,220 - mmdet - INFO - workflow: [('train', 1)], max: 12 epochs\n\n")
    with pytest.raises(ExpdbError) as excinfo:
        parse_file(log, "mmdet")
    assert_one_line_error(excinfo, f"no MMDetection progress lines in {log}: ")


def test_bad_spec_is_reported_before_the_file(tmp_path):
    with pytest.raises(ExpdbError) as excinfo:
        parse_file(tmp_path / "nope.log", "tensorboard")
    assert_one_line_error(excinfo, "mmdet", "regex:PATTERN")


def test_undecodable_bytes_do_not_stop_the_file(tmp_path):
    log = tmp_path / "mixed.log"
    log.write_bytes(b"\xff\xfe garbage\n" + CASCADE.read_bytes())
    assert len(parse_file(log, "mmdet")) == 8


# ---------------------------------------------------------------- small parts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1.2e-04", 1.2e-04),
        ("4.983e-04", 4.983e-04),
        ("3654", 3654.0),
        ("-1.0000", -1.0),
        ("+2", 2.0),
        ("1.", 1.0),
        (".5", 0.5),
        ("5E-4", 5e-4),
        (" 0.25 ", 0.25),
        ("inf", math.inf),
        ("-inf", -math.inf),
        ("Infinity", math.inf),
        ("", None),
        ("1_000", None),
        ("0x10", None),
        ("7:04:24", None),
        ("2 days, 7:04:24", None),
        ("97.5%", None),
        ("n/a", None),
        ("1e", None),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_parse_number_nan():
    assert math.isnan(parse_number("nan"))
    assert math.isnan(parse_number("NaN"))
    assert math.isnan(parse_number("-nan"))


def test_record_is_frozen_and_hashable():
    record = Record(1, None, {"loss": 1.0}, None)
    assert record.mode == "train"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.step = 2
    assert hash(record) == hash(Record(1, None, {"loss": 2.0}, None))  # values are not hashed
    assert record != Record(1, None, {"loss": 2.0}, None)


def test_parse_lines_shares_one_parser():
    lines = [ENGINE_TRAIN, "07/03 13:06:00 - mmengine - INFO - Epoch(val) [1][625/625]    coco/bbox_mAP: 0.0010"]
    assert [(r.step, r.mode) for r in parse_lines(lines, "mmdet")] == [(196, "train"), (196, "val")]


def test_imports_only_the_standard_library():
    code = (
        "import json, sys; before = set(sys.modules); import expdb.logparse; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    added = json.loads(out)
    outside = [m for m in added if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "expdb"]
    assert outside == []


def test_metric_names_with_spaces():
    parser = make_parser("mmdet")
    parser.parse(ENGINE_TRAIN)
    engine = parser.parse(
        "07/03 13:06:00 - mmengine - INFO - Epoch(val) [1][625/625]    Vehicle/L1 mAP: 0.2532  Vehicle/L1 mAPH: 0.2503  time: 0.1"
    )
    assert engine.values == {"val/Vehicle/L1 mAP": 0.2532, "val/Vehicle/L1 mAPH": 0.2503}
    mmcv = parser.parse(
        "2024-02-24 06:55:38,403 - mmdet - INFO - Epoch(val) [1][2824] Vehicle/L1 mAP: 0.2532, OpenLane-V2 Score: 0.2734"
    )
    assert mmcv.values == {"val/Vehicle/L1 mAP": 0.2532, "val/OpenLane-V2 Score": 0.2734}
