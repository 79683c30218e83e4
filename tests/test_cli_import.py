"""`expdb import FORMAT LOGFILE --name NAME [--from BASE]`: runs that already happened, from real training logs."""

import time
from pathlib import Path

import pytest
from conftest import dump, query, refused

from expdb.db import Database
from expdb.series import read_curve

DATA = Path(__file__).resolve().parent / "data"
CASCADE = DATA / "real-logs" / "mmdet2-cascade-nan.log"
MMENGINE = DATA / "real-logs" / "mmengine-deepspeed.log"
SAMPLE = DATA / "mmdet-sample.log"
CASCADE_NAN = "loss became NaN at step 300 (last finite 0.8832 at step 250)"


def runs_of(card):
    return query(
        "SELECT run.id, run.status, run.exit_reason FROM run JOIN card ON card.id = run.card_id "
        "WHERE card.name = ? ORDER BY run.id",
        (card,),
    )


def curve(run_id, key="loss"):
    with Database() as db:
        return read_curve(db, run_id, key)


def test_cascade_log_imports_diverged_with_the_nan_note(cli):
    result = cli("import", "mmdet", str(CASCADE), "--name", "cascade")
    assert result.code == 0, result.err
    assert "into cascade (run 1): diverged" in result.out and CASCADE_NAN in result.out
    assert runs_of("cascade") == [(1, "diverged", CASCADE_NAN)]
    assert query("SELECT text, automatic, step FROM note") == [(CASCADE_NAN, 1, 300)]
    loss = curve(1)
    assert list(loss.steps) == [50, 100, 150, 200, 250, 300, 350, 400]
    assert list(loss.values)[:5] == [1.4106, 0.8306, 1.0013, 0.8342, 0.8832]
    assert "expdb, step 300" in cli("show", "cascade").out


@pytest.mark.parametrize("log, steps", [(MMENGINE, 19), (SAMPLE, 2)], ids=["mmengine", "mmdet-sample"])
def test_finite_logs_import_finished_with_their_points(cli, log, steps):
    result = cli("import", "mmdet", str(log), "--name", "imported")
    assert result.code == 0, result.err
    assert "(run 1): finished" in result.out
    points = int(result.out.split("imported ")[1].split(" points")[0].replace(",", ""))
    assert points > 0
    assert runs_of("imported") == [(1, "finished", None)]
    assert len(curve(1)) == steps
    assert query("SELECT count(*) FROM note")[0][0] == 0


def test_imported_run_records_where_it_came_from(cli):
    assert cli("import", "mmdet", str(CASCADE), "--name", "cascade").code == 0
    command, log_path, started_at, ended_at = query("SELECT command, log_path, started_at, ended_at FROM run")[0]
    assert command == f"imported from {CASCADE.resolve()}" and log_path == str(CASCADE.resolve())
    assert ended_at - started_at == pytest.approx(117.187)  # 19:25:44,459 to 19:27:41,646: its training lines


def test_import_from_forks_the_new_card(cli):
    assert cli("new", "base", "--lr", "0.02", "--runner", "cvt_io").code == 0
    result = cli("import", "mmdet", str(SAMPLE), "--name", "detr3d", "--from", "base")
    assert result.code == 0, result.err
    shown = cli("show", "detr3d").out
    assert "from:    base" in shown and "lr" in shown
    assert "forks:   detr3d" in cli("show", "base").out


def test_importing_into_an_existing_card_adds_a_run(cli):
    assert cli("import", "mmdet", str(CASCADE), "--name", "cascade").code == 0
    result = cli("import", "mmdet", str(SAMPLE), "--name", "cascade")
    assert result.code == 0, result.err
    assert "(run 2): finished" in result.out
    assert runs_of("cascade") == [(1, "diverged", CASCADE_NAN), (2, "finished", None)]
    assert query("SELECT count(*) FROM card")[0][0] == 1


BAD_IMPORTS = [
    pytest.param(["json", str(SAMPLE), "--name", "x"], "unknown log format 'json'", id="unknown-format"),
    pytest.param(["mmdet", "no_training_lines.log", "--name", "x"], "no MMDetection progress lines", id="no-training-lines"),
    pytest.param(["mmdet", "missing.log", "--name", "x"], "no such log file: missing.log", id="missing-file"),
    pytest.param(["mmdet", "empty", "--name", "x"], "no training log in the folder empty", id="folder-without-log"),
    pytest.param(["mmdet", str(SAMPLE), "--name", "bad name"], "invalid card name 'bad name'", id="bad-name"),
    pytest.param(["mmdet", str(SAMPLE), "--name", "x", "--from", "nosuch"], "no card named 'nosuch'", id="unknown-parent"),
    pytest.param(
        ["regex:zzz (?P<loss>\\S+)", str(SAMPLE), "--name", "x"], "matches the --parse regex", id="regex-matching-nothing"
    ),
]


@pytest.fixture
def no_training_lines(workdir):
    (workdir / "no_training_lines.log").write_text(
        "2021-01-25 19:25:22,220 - mmdet - INFO - workflow: [('train', 1)], max: 12 epochs\nhello\n"
    )
    (workdir / "empty").mkdir()


@pytest.mark.parametrize("args, message", BAD_IMPORTS)
def test_bad_import_is_one_error_line_exit_2_and_writes_nothing(cli, no_training_lines, args, message):
    assert cli("new", "existing").code == 0
    before = dump()
    result = cli("import", *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.err
    assert dump() == before


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["json", str(SAMPLE), "--name", "x"], id="unknown-format"),
        pytest.param(["mmdet", "no_training_lines.log", "--name", "x"], id="no-training-lines"),
        pytest.param(["mmdet", "missing.log", "--name", "x"], id="missing-file"),
        pytest.param(["mmdet", str(SAMPLE), "--name", "x", "--from", "nosuch"], id="unknown-parent"),
    ],
)
def test_refused_first_import_leaves_no_database(cli, workdir, no_training_lines, args):
    assert cli("import", *args).code == 2
    assert not (workdir / "experiments.db").exists()


def test_a_log_is_not_imported_onto_a_card_another_runner_trains(cli):
    assert cli("new", "cvt", "--runner", "cvt_io").code == 0
    regex = "regex:step (?P<step>\\d+) loss (?P<loss>\\S+)"
    assert cli("new", "scripted", "--cmd", "python train.py", "--parse", regex).code == 0
    refused(cli, ["import", "mmdet", str(SAMPLE), "--name", "cvt"], "cvt is trained by runner cvt_io, not by a mmdet log")
    refused(cli, ["import", "mmdet", str(SAMPLE), "--name", "scripted"], "scripted is trained by a command")


def test_imported_mmengine_run_has_fractional_epochs_and_a_duration(cli, workdir):
    log = workdir / "20230703_130417.log"
    log.write_text(MMENGINE.read_text())
    assert cli("import", "mmdet", str(log), "--name", "engine").code == 0
    loss = curve(1)
    assert list(loss.epochs) == pytest.approx([step / 196 for step in range(10, 191, 10)])
    started, ended = query("SELECT started_at, ended_at FROM run WHERE id = 1")[0]
    assert ended - started == 36.0  # 13:04:17 to 13:04:53
    assert time.localtime(started).tm_year == 2023
    assert list(loss.walls)[-1] == 36.0


# ---------------------------------------------------------------- JSON logs, work_dirs, TensorBoard, regex

SCALARS = DATA / "real-logs" / "mmengine-detection-scalars.json"
EVAL_FIELDS = {"lr", "eta", "time", "data_time", "memory"}


def imported_points(out: str) -> list[int]:
    return [
        int(line.split("imported ")[1].split(" points")[0].replace(",", ""))
        for line in out.splitlines()
        if line.startswith("imported ")
    ]


def numbers_in_json_log(path: Path) -> int:
    """Counted independently of expdb: every number of a line, less the counters, less the loop's fields of evaluation lines."""
    import json

    total = 0
    for number, line in enumerate(path.read_text().splitlines()):
        row = json.loads(line)
        if number == 0 and "mode" not in row and "step" not in row:
            continue  # mmcv's header line: env_info, config, seed
        evaluation = row.get("mode", "train") != "train" if "mode" in row else not ({"lr", "loss", "epoch"} & set(row))
        for key, value in row.items():
            if key in {"mode", "epoch", "iter", "step"} or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if evaluation and key in EVAL_FIELDS:
                continue
            total += 1
    return total


ELTD_JSON = DATA / "mmdet2-eltd-retinanet" / "20210421_200459.log.json"


def test_an_epoch_based_json_log_keeps_every_line_at_its_global_step_with_fractional_epochs(cli):
    import json

    # A real EpochBasedRunner log: `iter` restarts every epoch; each validation line names the epoch's length.
    rows = [json.loads(line) for line in ELTD_JSON.read_text().splitlines()]
    training = [row for row in rows if row.get("mode") == "train"]
    validation = [row for row in rows if row.get("mode") == "val"]
    assert (len(rows), len(training), len(validation)) == (385, 372, 12)
    result = cli("import", "mmdet", str(ELTD_JSON), "--name", "retinanet")
    assert result.code == 0, result.err
    assert f"read {len(rows)} lines, 1 file" in result.out
    assert imported_points(result.out) == [numbers_in_json_log(ELTD_JSON)]
    texts = [key for row in rows[1:] for key, value in row.items() if isinstance(value, str) and key != "mode"]
    assert set(texts) == {"bbox_mAP_copypaste"}  # "0.353 0.524 ..." : the six numbers beside it, as text
    loop = [key for row in validation for key in row if key in EVAL_FIELDS]
    assert (
        f"skipped 1 header line (environment, config); {len(texts)} non-numeric values (bbox_mAP_copypaste); "
        f"{len(loop)} loop fields of evaluation lines (lr)"
    ) in result.out
    per_epoch = validation[0]["iter"]
    assert {row["iter"] for row in validation} == {per_epoch} and max(row["iter"] for row in training) < per_epoch
    with Database() as db:
        loss = read_curve(db, 1, "loss")
        mapped = read_curve(db, 1, "val/bbox_mAP")
        keys = {key for (key,) in query("SELECT key FROM series")}
    assert len(keys) == len({key for row in rows[1:] for key in row} - {"mode", "epoch", "iter", "bbox_mAP_copypaste"})
    steps = [(row["epoch"] - 1) * per_epoch + row["iter"] for row in training]
    assert list(loss.steps) == steps and list(loss.values) == [row["loss"] for row in training]
    assert list(loss.epochs) == [step / per_epoch for step in steps]  # fractional: 50 / 1581 = 0.032 at the first line
    # Each epoch's validation at the training iteration that ended it.
    assert list(mapped.steps) == [row["epoch"] * per_epoch for row in validation]
    assert list(mapped.epochs) == [float(row["epoch"]) for row in validation]
    assert list(mapped.values) == [row["bbox_mAP"] for row in validation]
    best = max(validation, key=lambda row: row["bbox_mAP"])
    metrics = dict((key, (value, step)) for key, value, step in query("SELECT key, value, step FROM metric"))
    assert metrics["val/bbox_mAP.best"] == (best["bbox_mAP"], best["epoch"] * per_epoch)
    assert metrics["loss"] == (training[-1]["loss"], steps[-1]) and "loss.best" not in metrics
    assert f"val/bbox_mAP.best={best['bbox_mAP']:.4g}" in cli("list").out


VIT_JSON = DATA / "real-logs" / "mmseg-vit-adapter-20240213_151202.log.json"


def test_an_iteration_based_json_log_keeps_its_global_iteration_as_the_step(cli):
    import json

    # mmcv's IterBasedRunner writes the global iteration with its data loader's epoch, and counts an evaluation's own
    # batches in the evaluation line's `iter`.
    rows = [json.loads(line) for line in VIT_JSON.read_text().splitlines()]
    result = cli("import", "mmdet", str(VIT_JSON), "--name", "vit_adapter")
    assert result.code == 0, result.err
    assert imported_points(result.out) == [numbers_in_json_log(VIT_JSON)]
    training = [row for row in rows if row.get("mode") == "train"]
    validated_at = [rows[index - 1]["iter"] for index, row in enumerate(rows) if row.get("mode") == "val"]
    with Database() as db:
        loss = read_curve(db, 1, "loss")
        miou = read_curve(db, 1, "val/mIoU")
    assert list(loss.steps) == [row["iter"] for row in training] and list(loss.values) == [row["loss"] for row in training]
    assert list(miou.steps) == validated_at == list(range(200, 2601, 200))  # its config: evaluation every 200 iterations
    assert list(miou.values) == [row["mIoU"] for row in rows if row.get("mode") == "val"]


def test_scalars_json_holds_training_and_validation_in_one_run(cli):
    import json

    result = cli("import", "mmdet", str(SCALARS), "--name", "detection")
    assert result.code == 0, result.err
    assert imported_points(result.out) == [numbers_in_json_log(SCALARS)]
    assert runs_of("detection") == [(1, "finished", None)]
    rows = [json.loads(line) for line in SCALARS.read_text().splitlines()]
    training = [row for row in rows if "loss" in row]
    validation = [row for row in rows if "loss" not in row]
    last_of_epoch = {row["epoch"]: row["step"] for row in training}
    with Database() as db:
        recall = read_curve(db, 1, "val/AR@100")
        loss = read_curve(db, 1, "loss")
    # 10 epochs of 70 iterations, a training line every 10; each epoch validated after it, at its last iteration.
    assert len(loss) == len(training) and list(loss.steps) == [row["step"] for row in training]
    assert list(recall.steps) == [last_of_epoch[row["step"]] for row in validation] == [70 * epoch for epoch in range(1, 11)]
    assert list(recall.epochs) == [float(row["step"]) for row in validation]
    assert list(recall.values) == [row["AR@100"] for row in validation]
    best = query("SELECT value, step FROM metric WHERE key = 'val/AR@100.best'")[0]
    assert best == (max(recall.values), recall.steps[list(recall.values).index(max(recall.values))])
    assert "val/AR@100" in cli("list").out


def test_a_work_dir_is_found_its_scalars_read_and_its_text_log_dates_kept(cli, workdir):
    run = workdir / "work_dirs" / "detection" / "20230604_120745"
    (run / "vis_data").mkdir(parents=True)
    (run / "vis_data" / "scalars.json").write_bytes(SCALARS.read_bytes())
    (run / "20230604_120745.log").write_text(
        "06/04 12:08:10 - mmengine - INFO - Epoch(train)   [1][10/70]  lr: 5.0000e-03  eta: 0:10:00  time: 0.3778  "
        "data_time: 0.0125  memory: 1223  loss: 0.8063\n"
    )
    result = cli("import", "mmdet", str(run), "--name", "detection_run")
    assert result.code == 0, result.err
    assert "not read: 20230604_120745.log" in result.out
    started, ended = query("SELECT started_at, ended_at FROM run")[0]
    from datetime import datetime

    assert started == datetime(2023, 6, 4, 12, 7, 45).timestamp() and ended == datetime(2023, 6, 4, 12, 8, 10).timestamp()
    with Database() as db:
        assert read_curve(db, 1, "loss").walls[0] == 25.0  # 12:08:10, 25 s after the run's folder was made


def test_importing_the_same_file_twice_adds_nothing(cli):
    assert cli("import", "mmdet", str(SCALARS), "--name", "detection").code == 0
    before = dump()
    result = cli("import", "mmdet", str(SCALARS), "--name", "other")
    assert result.code == 0, result.err
    assert "already imported as run 1 of detection: nothing added" in result.out
    assert dump() == before


def test_a_log_of_validation_lines_only_is_imported(cli, workdir):
    log = workdir / "val.log"
    log.write_text(
        "".join(
            f"2024-04-07 10:{epoch // 60:02d}:{epoch % 60:02d},000 - mmaction - INFO - Epoch(val) [{epoch}][30/30]    "
            f"acc/top1: 0.{500 + epoch}  acc/top5: 0.9000\n"
            for epoch in range(1, 101)
        )
    )
    result = cli("import", "mmdet", str(log), "--name", "val_only")
    assert result.code == 0, result.err
    assert imported_points(result.out) == [200]
    with Database() as db:
        assert len(read_curve(db, 1, "val/acc/top1")) == 100
    assert query("SELECT value, step FROM metric WHERE key = 'val/acc/top1.best'") == [(0.6, 100)]


def test_a_log_with_two_launches_gives_two_runs_and_says_so(cli, workdir):
    log = workdir / "relaunched.log"
    log.write_text(CASCADE.read_text() + MMENGINE.read_text().replace("07/03", "2023/07/03"))
    result = cli("import", "mmdet", str(log), "--name", "twice")
    assert result.code == 0, result.err
    assert "relaunched.log holds 2 launches (a new one from line 11)" in result.out
    assert [run[1] for run in runs_of("twice")] == ["diverged", "finished"]
    assert sum(imported_points(result.out)) == 136 + sum(
        imported_points(cli("import", "mmdet", str(MMENGINE), "--name", "e").out)
    )
    with Database() as db:
        assert len(read_curve(db, 1, "loss")) == 8 and len(read_curve(db, 2, "loss")) == 19


def test_a_value_glued_to_the_next_field_does_not_become_a_metric(cli, workdir):
    log = workdir / "mmaction.log"
    log.write_text(
        "2023/05/08 10:00:00 - mmengine - INFO - Epoch(train) [1][20/20]  lr: 1.0000e-02  eta: 0:00:00  time: 1.5000  "
        "data_time: 0.2000  memory: 1000  loss: 0.9000\n"
        "2023/05/08 10:01:00 - mmengine - INFO - Epoch(val) [1][5/5]    acc/top1: 0.8000  acc/top5: 0.9500  "
        "acc/mean1: 0.9000data_time: 1.2700  time: 1.5000\n"
    )
    assert cli("import", "mmdet", str(log), "--name", "glued").code == 0
    keys = {key for (key,) in query("SELECT key FROM series")}
    assert keys >= {"val/acc/mean1", "val/acc/top1"} and not any("0.9000" in key for key in keys)
    with Database() as db:
        assert list(read_curve(db, 1, "val/acc/mean1").values) == [0.9]


def scalars_in_event_files(folder: Path) -> int:
    """Counted with TensorBoard's own loader, independently of expdb's reader."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    count = 0
    for path in folder.glob("*tfevents*"):
        for event in EventFileLoader(str(path)).Load():
            count += sum(1 for value in event.summary.value if value.metadata.plugin_data.plugin_name == "scalars")
    return count


# For what the real event files (tests/test_cli_import_tensorboard.py) lack, text summaries and folder names
# with several parameters: written by the tensorboard package's own writer and summary functions, shaped as
# PyTorch's SummaryWriter writes a U-Net training. See tests/data/README.md.
UNET_RUNS = {"UNet_dr01_bs16_lr2e_4": 12, "UNet_dr01_bs8_lr1e_4": 10, "UNet_dr015_bs32_lr3e_4": 14}  # folder -> epochs
UNET_EPOCH = 230  # steps an epoch


@pytest.fixture
def unet_runs(workdir) -> Path:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.plugins.text.summary_v2 import text_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    root = workdir / "runs"
    for index, (name, epochs) in enumerate(UNET_RUNS.items()):
        writer = EventFileWriter(str(root / name))
        start = 1.738e9 + index * 86400
        writer.add_event(Event(wall_time=start, step=0, summary=text_pb("Hyperparameters", f"run {name}")))
        for epoch in range(1, epochs + 1):
            for step in range((epoch - 1) * UNET_EPOCH + 23, epoch * UNET_EPOCH + 1, 23):
                loss = 1.0 / (1 + step / 500) + 0.01 * (step % 7)
                writer.add_event(Event(wall_time=start + step, step=step, summary=scalar_pb("Training loss", loss)))
            step = epoch * UNET_EPOCH
            iou = 0.4 + 0.4 * epoch / epochs - 0.02 * (epoch % 3)
            writer.add_event(Event(wall_time=start + step + 5, step=step, summary=scalar_pb("IoU (avg on test)", iou)))
            writer.add_event(Event(wall_time=start + step + 6, step=step, summary=text_pb("Epoch", f"epoch {epoch} done")))
        writer.close()
    return root


def test_a_resumed_tensorboard_run_says_which_points_a_later_file_wrote_again(cli, workdir):
    """A second event file that resumes the run at an earlier step: the steps written twice keep the later value, and
    the import says how many; nothing is called a tag falling behind."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder = workdir / "resumed"
    first, resumed = range(0, 101, 10), range(50, 151, 10)
    for suffix, steps, value in ((".a", first, 1.0), (".b", resumed, 2.0)):  # named in time order
        writer = EventFileWriter(str(folder), filename_suffix=suffix)
        for step in steps:
            summary = Summary(value=[Summary.Value(tag="loss", simple_value=value)])
            writer.add_event(Event(wall_time=1000.0 + step, step=step, summary=summary))
        writer.close()
    result = cli("import", "tensorboard", str(folder), "--name", "resumed")
    assert result.code == 0, result.err
    again = len(set(first) & set(resumed))
    kept = len(set(first) | set(resumed))
    assert f": {len(first) + len(resumed)} points in 1 run" in result.out
    assert f"imported {kept} points into resumed" in result.out
    assert f"{again} points read at a step their curve already had (a resumed run?): the later kept" in result.out
    assert "behind" not in result.out and "higher steps" not in result.out
    with Database() as db:
        loss = read_curve(db, query("SELECT id FROM run")[0][0], "loss")
    assert list(loss.steps) == sorted(set(first) | set(resumed))
    assert [value for step, value in zip(loss.steps, loss.values, strict=True) if step in resumed] == [2.0] * len(resumed)


def test_tensorboard_folders_become_a_card_each_with_parameters_from_their_names(cli, unet_runs):
    result = cli("import", "tensorboard", str(unet_runs), "--name", "unet", "--params", "UNet_dr{dropout}_bs{batch}_lr{lr}")
    assert result.code == 0, result.err
    folders = sorted(path for path in unet_runs.iterdir())
    assert imported_points(result.out) == [scalars_in_event_files(folder) for folder in folders]
    assert f"skipped {sum(epochs + 1 for epochs in UNET_RUNS.values())} text summaries (not scalars)" in result.out
    assert [name for (name,) in query("SELECT name FROM card ORDER BY name")] == [f"unet_{folder.name}" for folder in folders]
    shown = cli("show", "unet_UNet_dr01_bs16_lr2e_4").out
    assert "batch" in shown and "16" in shown
    (run_id,) = query(
        "SELECT run.id FROM run JOIN card ON card.id = run.card_id WHERE card.name = 'unet_UNet_dr01_bs16_lr2e_4'"
    )[0]
    with Database() as db:
        iou = read_curve(db, run_id, "IoU (avg on test)")
    assert len(iou) == UNET_RUNS["UNet_dr01_bs16_lr2e_4"] and iou.steps[0] == UNET_EPOCH and iou.walls[0] > 0
    assert query("SELECT count(*) FROM metric WHERE key = 'IoU (avg on test).best'")[0][0] == 3


def test_regex_import_of_a_log_whose_step_restarts_every_epoch(cli, workdir):
    log = workdir / "mnist.log"
    log.write_text(
        "".join(
            f"Train Epoch: {epoch} [{seen}/60000 ({seen // 600}%)]\tLoss: {1.0 / (epoch * 100 + seen / 600):.6f}\n"
            for epoch in (1, 2)
            for seen in range(0, 60000, 640 * 10)
        )
    )
    result = cli(
        "import", r"regex:Train Epoch: (?P<epoch>\d+) \[(?P<step>\d+)/\d+.*Loss: (?P<loss>\S+)", str(log), "--name", "mnist"
    )
    assert result.code == 0, result.err
    with Database() as db:
        loss = read_curve(db, 1, "loss")
    assert len(loss) == 20 and list(loss.steps) == sorted(set(loss.steps))  # the second epoch did not overwrite the first


def test_regex_import_of_hf_trainer_lines_without_a_step(cli, workdir):
    log = workdir / "trainer.log"
    log.write_text(
        "{'loss': 0.6931, 'learning_rate': 4.8e-05, 'epoch': 0.27}\n"
        "{'eval_loss': 0.52, 'eval_runtime': 1.2, 'epoch': 1.0}\n"
        "{'loss': 0.5312, 'learning_rate': 4.6e-05, 'epoch': 0.53}\n"
    )
    pattern = r"regex:'loss': (?P<loss>[^,]+), 'learning_rate': (?P<lr>[^,]+), 'epoch': (?P<epoch>[\d.]+)"
    result = cli("import", pattern, str(log), "--name", "bert")
    assert result.code == 0, result.err
    assert "skipped 1 line other than progress lines" in result.out
    with Database() as db:
        loss = read_curve(db, 1, "loss")
    assert list(loss.steps) == [1, 2] and list(loss.epochs) == [0.27, 0.53]


MORE_BAD_IMPORTS = [
    pytest.param(["tensorboard", "empty"], "no TensorBoard event file (events.out.tfevents.*) in empty", id="no-event-file"),
    pytest.param(["mmdet", "coco.json"], "coco.json is not a training log", id="json-not-a-log"),
    pytest.param(["mmdet", "cut.log.json"], "line 2 of cut.log.json is not complete JSON", id="truncated-json"),
    pytest.param(["mmdet", "list.json"], "line 1 of list.json is not a JSON object", id="json-list"),
    pytest.param(["tensorboard", "runs", "--params", "lr{lr}"], "does not fit --params", id="params-not-fitting"),
    pytest.param(["mmdet", str(SCALARS), "--params", "lr{lr}"], "--params reads parameters from TensorBoard", id="params-not-tb"),
    pytest.param(["hf", "empty"], "no trainer_state.json in the folder", id="hf-folder-without-state"),
    pytest.param(["hf", "coco.json"], 'coco.json is not a HuggingFace Trainer state: it has no "log_history"', id="hf-not-state"),
    pytest.param(["hf", "cut.log.json"], "cut.log.json is not complete JSON", id="hf-truncated"),
]


@pytest.mark.parametrize("args, message", MORE_BAD_IMPORTS)
def test_bad_inputs_of_the_new_importers_change_nothing(cli, workdir, unet_runs, args, message):
    (workdir / "empty").mkdir()
    (workdir / "coco.json").write_text('{"images": [], "annotations": [], "categories": []}\n')
    (workdir / "cut.log.json").write_text('{"mode": "train", "epoch": 1, "iter": 50, "loss": 1.0}\n{"mode": "train", "epo')
    (workdir / "list.json").write_text("[1, 2, 3]\n")
    assert cli("new", "existing").code == 0
    refused(cli, ["import", *args], message)


TIMM = DATA / "real-logs" / "timm-resnet50-hpu.log"
TIMM_PATTERN = r"regex:^Train: (?P<epoch>\d+) \[\s*(?P<step>\d+)/(?P<total>\d+).*Loss: (?P<loss>\S+) .*LR: (?P<lr>\S+)"


def test_a_real_timm_log_whose_batch_counter_restarts_every_epoch(cli):
    result = cli("import", TIMM_PATTERN, str(TIMM), "--name", "resnet50_timm")
    assert result.code == 0, result.err
    train_lines = [line for line in TIMM.read_text().splitlines() if line.startswith("Train:")]
    assert imported_points(result.out) == [2 * len(train_lines)]  # loss and lr of every training line
    with Database() as db:
        loss = read_curve(db, 1, "loss")
    assert list(loss.steps) == [0, 50, 73, 123] and list(loss.values) == [6.86, 6.77, 6.69, 3.23]


# ---------------------------------------------------------------- the HuggingFace Trainer, real outputs

HF_STATE = DATA / "real-logs" / "hf-qlora-trainer_state.json"
HF_LOG = DATA / "real-logs" / "hf-lora-alpaca-record.log"


def numbers_in_log_history(history: list[dict]) -> int:
    """Counted independently of expdb: every number of every entry but its step and epoch."""
    return sum(
        1
        for entry in history
        for key, value in entry.items()
        if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool)
    )


def test_a_real_trainer_state_keeps_every_number_of_its_log_history(cli):
    import json

    history = json.loads(HF_STATE.read_text())["log_history"]
    result = cli("import", "hf", str(HF_STATE), "--name", "qlora")
    assert result.code == 0, result.err
    assert f"read {len(history):,} log_history items" in result.out
    assert imported_points(result.out) == [numbers_in_log_history(history)]
    logged = [entry for entry in history if "loss" in entry]
    with Database() as db:
        loss = read_curve(db, 1, "loss")
    assert list(loss.steps) == [entry["step"] for entry in logged]
    assert list(loss.values) == [entry["loss"] for entry in logged]
    assert list(loss.epochs) == [entry["epoch"] for entry in logged]  # fractional, as the Trainer wrote them
    closing = history[-1]
    metrics = dict((key, (value, step)) for key, value, step in query("SELECT key, value, step FROM metric"))
    assert metrics["train_loss"] == (closing["train_loss"], closing["step"])
    assert metrics["loss"] == (logged[-1]["loss"], logged[-1]["step"])


def test_an_output_dir_is_read_from_its_last_checkpoint(cli, workdir):
    import json

    state = json.loads(HF_STATE.read_text())
    output = workdir / "qlora_out"
    for step in (500, 10000):  # named by number: checkpoint-10000 comes after checkpoint-500
        (output / f"checkpoint-{step}").mkdir(parents=True)
    earlier = {**state, "log_history": [entry for entry in state["log_history"] if entry["step"] <= 500]}
    (output / "checkpoint-500" / "trainer_state.json").write_text(json.dumps(earlier))
    (output / "checkpoint-10000" / "trainer_state.json").write_bytes(HF_STATE.read_bytes())
    result = cli("import", "hf", str(output))
    assert result.code == 0, result.err
    assert imported_points(result.out) == [numbers_in_log_history(state["log_history"])]
    assert query("SELECT name FROM card") == [("qlora_out",)]


def test_a_real_trainer_text_log_imports_with_the_documented_line_counter(cli):
    import ast

    lines = [line for line in HF_LOG.read_text().splitlines() if "{'loss': " in line]
    logged = [ast.literal_eval(line[line.index("{") :]) for line in lines]
    pattern = r"regex:\{'loss': (?P<loss>[^,]+), 'learning_rate': (?P<learning_rate>[^,]+), 'epoch': (?P<epoch>[\d.]+)\}"
    result = cli("import", pattern, str(HF_LOG), "--name", "lora_alpaca")
    assert result.code == 0, result.err
    assert imported_points(result.out) == [2 * len(lines)]  # loss and learning rate of every logging line
    with Database() as db:
        loss = read_curve(db, 1, "loss")
        rate = read_curve(db, 1, "learning_rate")
    assert list(loss.steps) == list(range(1, len(lines) + 1))  # no step in the lines: the lines matched are counted
    assert list(loss.values) == [entry["loss"] for entry in logged]
    assert list(rate.values) == [entry["learning_rate"] for entry in logged]
    assert list(loss.epochs) == [entry["epoch"] for entry in logged]
