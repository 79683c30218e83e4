"""expdb.importers: folder names as parameters, TensorBoard records, JSON logs, launches."""

import struct
from pathlib import Path

import pytest

from expdb.errors import ExpdbError
from expdb.importers import folder_params, is_validation_key, read_runs

DATA = Path(__file__).resolve().parent / "data" / "real-logs"


def test_folder_names_give_typed_parameters():
    assert folder_params("lr{lr}_bs{batch}", "runs/lr0.1_bs32") == {"lr": 0.1, "batch": 32}
    assert folder_params("{model}-{depth}", "resnet-50") == {"model": "resnet", "depth": 50}
    with pytest.raises(ExpdbError, match="does not fit"):
        folder_params("lr{lr}_bs{batch}", "baseline")
    with pytest.raises(ExpdbError, match="names no parameter"):
        folder_params("lr", "lr")
    with pytest.raises(ExpdbError, match="names a parameter twice"):
        folder_params("{a}_{a}", "1_2")


def test_validation_curves_are_named_so():
    assert all(map(is_validation_key, ["val/acc", "eval_loss", "Test loss (avg on test)", "valid-acc"]))
    assert not any(map(is_validation_key, ["loss", "interval", "latest", "evaluator_time"]))


def event_file(folder: Path, events) -> Path:
    """An event file written by the tensorboard package's own writer."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    for step, values in events:
        writer.add_event(
            Event(
                wall_time=1000.0 + step,
                step=step,
                summary=Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()]),
            )
        )
    writer.close()
    return next(folder.glob("*tfevents*"))


def test_an_event_file_cut_short_keeps_its_whole_records_and_counts_the_cut(tmp_path):
    path = event_file(tmp_path, [(step, {"loss": 1.0 / step}) for step in range(1, 11)])
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # a writer killed in the middle of its last record
    reading = read_runs("tensorboard", tmp_path)
    (run,) = reading.runs
    records = [record for block in run.blocks(4) for record in block]
    assert [record.step for record in records] == list(range(1, 10))
    assert reading.skipped["records cut short at the end of a file"] == 1
    assert records[0].timestamp == 1001.0 and records[0].values == {"loss": 1.0}


def test_scalars_written_an_event_each_are_one_record_per_step(tmp_path):
    # SummaryWriter.add_scalar writes an event per scalar; a tag logged again at its step keeps its later value (a
    # curve holds one value a step), and that is said.
    events = [
        (1, {"loss": 2.0}), (1, {"lr": 0.125}), (2, {"loss": 1.5}), (2, {"lr": 0.125}), (2, {"loss": 1.25}),
        (3, {"val/acc": 0.5}),
    ]
    event_file(tmp_path, events)
    reading = read_runs("tensorboard", tmp_path)
    (run,) = reading.runs
    records = [record for block in run.blocks(2) for record in block]
    assert [(record.step, record.values, record.mode) for record in records] == [
        (1, {"loss": 2.0, "lr": 0.125}, "train"), (2, {"loss": 1.25, "lr": 0.125}, "train"), (3, {"val/acc": 0.5}, "val"),
    ]
    assert sum(len(record.values) for record in records) == len(events) - 1
    assert reading.notes == [
        f"{tmp_path.name}: 1 value of loss written at a step it already had (first at step 2): the later kept, as a "
        "curve holds one value a step"
    ]
    assert reading.read["event"] == len(events) + 1  # and the writer's file-version event


def test_tf2_scalar_tensors_are_read_from_their_bytes(tmp_path):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path))
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    for step in (1, 2):
        tensor = TensorProto(dtype=2, tensor_content=struct.pack("<d", step * 0.25))  # DT_DOUBLE
        value = Summary.Value(tag="epoch_loss", tensor=tensor, metadata=metadata if step == 1 else None)
        writer.add_event(Event(wall_time=5.0, step=step, summary=Summary(value=[value])))
    writer.close()
    (run,) = read_runs("tensorboard", tmp_path).runs
    assert [record.values for block in run.blocks(10) for record in block] == [{"epoch_loss": 0.25}, {"epoch_loss": 0.5}]


def test_a_json_log_holding_two_launches_gives_two_runs(tmp_path):
    lines = (DATA.parent / "mmdet2-eltd-retinanet" / "20210421_200459.log.json").read_text().splitlines(keepends=True)
    log = tmp_path / "twice.log.json"
    log.write_text("".join(lines[1:101] + lines[1:51]))  # without the header line
    reading = read_runs("mmdet", log)
    assert [len(run.records) for run in reading.runs] == [100, 50]
    assert reading.launches_in == ["twice.log.json holds 2 launches (a new one from line 101)"]
    assert reading.runs[0].source_hash != reading.runs[1].source_hash
