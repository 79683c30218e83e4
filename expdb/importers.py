"""Reading runs that happened elsewhere: training logs, OpenMMLab JSON logs, TensorBoard event files, HF Trainer states.

`read_runs(format, path)` gives the runs a path holds, each a list of `Record`s with where it came
from, and what was read and skipped, before anything is written. Formats:

``mmdet``
    - a text log (`*.log`, MMDetection 2.x or MMEngine; see `expdb.logparse`);
    - an MMDetection 2.x JSON log (`*.log.json`): a line per logging interval, `{"mode": "train",
      "epoch": 1, "iter": 50, "lr": ..., "loss": ...}`, and `{"mode": "val", "epoch": 1, "iter":
      7330, "bbox_mAP": ...}` after an epoch. Its `iter` counts within the epoch, so the step is
      ``(epoch - 1) * iters_per_epoch + iter``, iters_per_epoch being the `iter` of the validation
      lines (mmcv writes the last training iteration of the epoch there), else the largest
      training `iter`. An iteration-based run (mmcv's IterBasedRunner) writes the global iteration
      in `iter`, which then grows on where `epoch` changes: it is the step, and an evaluation line
      (whose `iter` counts its own batches) is placed at the training line before it. In an
      epoch-based run a training line's epochs done are fractional (step / iters_per_epoch), an
      evaluation's the epoch it follows. A first line without `mode` (`env_info`, `config`) is the
      run's header; a value that is not a number (`bbox_mAP_copypaste`'s text) is counted, not kept;
    - an MMEngine `vis_data/scalars.json`: training lines carry `step` (the iteration) and
      `epoch`; validation lines carry only metrics and `step`, which is the epoch in an
      epoch-based run (placed at the last training step of that epoch) and the iteration
      otherwise. Validation and test values get the prefix `val/` (`val/accuracy/top1`);
    - a work_dir folder: its `vis_data/scalars.json` (wall times from the text log beside it),
      else its `*.log.json` files, else its `*.log` files, each file one run, in name order.

    Evaluation fields that describe the loop (`lr`, `eta`, `time`, `data_time`, `memory`) are
    dropped from validation lines, as in the text logs, and counted.

``tensorboard``
    Event files (`events.out.tfevents.*`) under a folder: one run per folder that holds event
    files, its scalars (TF1 `simple_value`, TF2 scalar tensors) with their steps and wall times.
    Consecutive events at one step (`SummaryWriter.add_scalar` writes an event per scalar) are one
    record, at the wall time of its first event; a tag written again at its step keeps its later value
    (a curve holds one value a step), and the account says so. An `epoch` scalar (Lightning logs one
    with every call) is the epoch of the record at its step, not a curve, as `ExpdbLogger` records it.
    A tag written at steps below ones written before it (Lightning's LearningRateMonitor writes the
    epoch as the step) is kept at its steps, and the account says so. Graphs and run metadata are
    skipped and counted.
    Records are read by their length framing and decoded with the `tensorboard` package's
    `Event` protocol buffer; the CRCs are not checked (the package's pure-Python check costs
    ten times the decoding). A record cut short at the end of a file (a run still writing) is
    skipped and counted. Text, image and histogram summaries are skipped and counted. The files
    are read block by block while the run is stored (`ReadRun.stream`), so a 1 GB folder is never
    held in memory as records; several files of one folder are one run, in name (time) order.

``hf``
    A HuggingFace Trainer's `trainer_state.json` (the file, the Trainer's output_dir holding it, or
    an output_dir whose state is in its `checkpoint-N` folders: the last one's): one run, a record
    per entry of its `log_history` at the entry's global `step` with its fractional `epoch`, every
    other number a point (`loss`, `learning_rate`, `grad_norm`, the evaluations' `eval_*`, and the
    closing `train_runtime`, `train_loss`, ...). The Trainer writes no wall time there.

``regex:PATTERN``
    A text log read line by line with `expdb.logparse.RegexParser`.

A text log or JSON log that holds several launches (the training step goes back, as when a run was
started again into the same file) gives a run per launch: nothing is overwritten. Every value kept
is a point; `points` counts them.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .attachments import file_sha256
from .errors import ExpdbError
from .logparse import (
    MMDetParser, Record, RegexParser, make_parser, no_records_message, open_log, parse_number, year_of_log
)
from .values import Value, parse_scalar, plural

FORMATS = "mmdet, tensorboard, hf, regex:PATTERN"
_EVAL_BOOKKEEPING = {"lr", "eta", "time", "data_time", "memory"}
_JSON_COUNTERS = {"mode", "epoch", "iter", "step"}  # where a point is, not what was measured


@dataclass
class ReadRun:
    """One run found in the input: its records in order (or a stream of them), and where they came from."""

    records: list[Record]
    source: str  # the file or folder, resolved
    source_hash: str  # sha256 of what was read (and of the launch, for the second launch of a file on)
    folder: str = ""  # tensorboard: the event folder, relative to the path given ("" for the path itself)
    launch: int = 1  # which launch of the file this is
    started_at: float | None = None  # when the log's name or first line says the run began
    # TensorBoard: the records are read block by block while they are stored, never all held at once.
    stream: Callable[[int], Iterator[list[Record]]] | None = None

    def blocks(self, size: int) -> Iterator[list[Record]]:
        """The records, `size` at a time (a stream's blocks are about that size)."""
        if self.stream is not None:
            yield from self.stream(size)
            return
        for start in range(0, len(self.records), size):
            yield self.records[start : start + size]


@dataclass
class Reading:
    """Everything read from a path, and the account of it: what was read, what was skipped and why."""

    runs: list[ReadRun]
    read: Counter = field(default_factory=Counter)  # "line", "event", "file" -> how many
    skipped: Counter = field(default_factory=Counter)  # reason -> how many
    launches_in: list[str] = field(default_factory=list)  # "x.log: a second launch at line 345"
    unread: list[str] = field(default_factory=list)  # files found and left aside, with why
    not_numbers: Counter = field(default_factory=Counter)  # key -> values of it that are not numbers (left out)
    loop_fields: Counter = field(default_factory=Counter)  # key -> evaluation lines' loop fields left out (`lr`)
    notes: list[str] = field(default_factory=list)  # what the user should know about how points were placed


# ---------------------------------------------------------------- helpers


def _launch_hash(file_hash: str, launch: int) -> str:
    return file_hash if launch == 1 else hashlib.sha256(f"{file_hash}#launch{launch}".encode()).hexdigest()


def _split_launches(records: list[tuple[int, Record]]) -> list[tuple[int, list[Record]]]:
    """(first line, records) per launch: a training step at or below the one before starts a new launch."""
    launches: list[tuple[int, list[Record]]] = []
    current: list[Record] = []
    first_line = records[0][0] if records else 0
    last_train: int | None = None
    for line, record in records:
        if record.mode == "train":
            if last_train is not None and record.step <= last_train:
                launches.append((first_line, current))
                current, first_line = [], line
            last_train = record.step
        current.append(record)
    if current:
        launches.append((first_line, current))
    return launches


def _runs_of(
    path: Path, file_hash: str, numbered: list[tuple[int, Record]], reading: Reading, started_at: float | None = None
) -> list[ReadRun]:
    launches = _split_launches(numbered)
    if len(launches) > 1:
        starts = ", ".join(f"line {line:,}" for line, _ in launches[1:])
        reading.launches_in.append(f"{path.name} holds {len(launches)} launches (a new one from {starts})")
    source = str(path.resolve())
    return [
        ReadRun(records, source, _launch_hash(file_hash, index), launch=index, started_at=started_at if index == 1 else None)
        for index, (_, records) in enumerate(launches, start=1)
    ]


# ---------------------------------------------------------------- text logs


def _read_text(path: Path, spec: str, reading: Reading, year: int | None = None) -> list[ReadRun]:
    parser = make_parser(spec, year=year if year is not None else year_of_log(path))
    numbered: list[tuple[int, Record]] = []
    lines = 0
    with open_log(path) as handle:
        for lines, line in enumerate(handle, start=1):  # noqa: B007 - `lines` counts them
            record = parser.parse(line)
            if record is not None:
                numbered.append((lines, record))
    reading.read["line"] += lines
    reading.skipped["lines other than progress lines"] += lines - len(numbered)
    if not numbered:
        raise ExpdbError(no_records_message(path, parser))
    # A regex log's step may restart every epoch (the parser continues the count): one launch.
    if isinstance(parser, RegexParser):
        return [ReadRun([record for _, record in numbered], str(path.resolve()), file_sha256(path))]
    return _runs_of(path, file_sha256(path), numbered, reading)


# ---------------------------------------------------------------- JSON logs


def _json_lines(path: Path, reading: Reading) -> list[tuple[int, dict]]:
    """The objects of a JSON-lines file; a line that is not a whole JSON object is refused."""
    rows: list[tuple[int, dict]] = []
    loads = json.loads
    with open_log(path) as handle:
        number = 0
        for number, line in enumerate(handle, start=1):  # noqa: B007 - `number` counts them
            if not line.strip():
                continue
            try:
                row = loads(line)
            except ValueError as error:
                cut = "" if line.endswith("\n") else " (the file ends inside it: was it still being written?)"
                raise ExpdbError(f"line {number:,} of {path} is not complete JSON: {error.args[0].split(':')[0]}{cut}") from None
            if not isinstance(row, dict):
                raise ExpdbError(
                    f"line {number:,} of {path} is not a JSON object: this is not a training log "
                    "(expected one object per line, as MMDetection's .log.json and MMEngine's scalars.json)"
                )
            rows.append((number, row))
    reading.read["line"] += number
    return rows


def _numbers(row: dict, drop: set[str], reading: Reading) -> dict[str, float]:
    """The numbers of a JSON line, less the `drop` keys; the other values (`bbox_mAP_copypaste`'s text) are counted."""
    values = {}
    for key, value in row.items():
        if key in drop:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = float(value)
        elif isinstance(value, str) and (number := parse_number(value)) is not None:
            values[key] = number  # json.dumps writes NaN as NaN, but some loggers write "nan"
        else:
            reading.not_numbers[key] += 1
    return values


def _eval_values(mode: str, values: dict[str, float], reading: Reading) -> dict[str, float]:
    prefix = f"{mode}/"
    kept = {}
    for key, value in values.items():
        if key in _EVAL_BOOKKEEPING or key.endswith("_lr"):
            reading.loop_fields[key] += 1
        else:
            kept[key if key.startswith(prefix) else prefix + key] = value
    return kept


def _not_a_log(path: Path, why: str) -> ExpdbError:
    return ExpdbError(
        f'{path} is not a training log: {why} (expected MMDetection\'s .log.json, with "mode" and "epoch", '
        'or MMEngine\'s scalars.json, with "step")'
    )


def _read_json(
    path: Path, reading: Reading, times: dict[int, float] | None = None, started_at: float | None = None
) -> list[ReadRun]:
    rows = _json_lines(path, reading)
    if rows and "mode" not in rows[0][1] and "step" not in rows[0][1]:
        rows = rows[1:]  # the header: env_info, config, seed
        reading.skipped["header lines (environment, config)"] += 1
    if not rows:
        raise _not_a_log(path, "it holds no logged line")
    if any("mode" in row for _, row in rows):
        numbered = _mmdet_json(path, rows, reading)
    elif all("step" in row for _, row in rows):
        numbered = _scalars_json(rows, reading, times or {})
    else:
        raise _not_a_log(path, f'line {rows[0][0]:,} has neither "mode" nor "step"')
    if not numbered:
        raise _not_a_log(path, "no line holds a number")
    return _runs_of(path, file_sha256(path), numbered, reading, started_at)


def _mmdet_json(path: Path, rows: list[tuple[int, dict]], reading: Reading) -> list[tuple[int, Record]]:
    evaluated = [row["iter"] for _, row in rows if row.get("mode") in ("val", "test") and isinstance(row.get("iter"), int)]
    trained = [row["iter"] for _, row in rows if row.get("mode") == "train" and isinstance(row.get("iter"), int)]
    by_epoch = any(isinstance(row.get("epoch"), int) for _, row in rows if row.get("mode") == "train")
    global_iter = by_epoch and _iter_is_global(rows)
    if global_iter:
        by_epoch = False  # the iteration is the step; an evaluation is placed at the training line before it
        evaluated = []
    per_epoch = max(evaluated) if evaluated else max(trained) if trained else None
    numbered: list[tuple[int, Record]] = []
    last_step: int | None = None
    for line, row in rows:
        mode, epoch, inner = row.get("mode"), row.get("epoch"), row.get("iter")
        if mode == "train":
            if not isinstance(inner, int) or (by_epoch and not isinstance(epoch, int)):
                reading.skipped["training lines without epoch and iter"] += 1
                continue
            step = (epoch - 1) * per_epoch + inner if by_epoch and per_epoch and isinstance(epoch, int) else inner
            values = _numbers(row, _JSON_COUNTERS, reading)
            last_step = step
        elif mode in ("val", "test"):
            if by_epoch and isinstance(epoch, int) and per_epoch:
                step = epoch * per_epoch
            elif isinstance(inner, int) and not (global_iter and last_step is not None):
                step = inner  # (an IterBasedRunner's evaluation line counts its own batches in `iter`)
            elif last_step is not None:
                step = last_step
            else:
                reading.skipped[f"{mode} lines before any training line"] += 1
                continue
            values = _eval_values(mode, _numbers(row, _JSON_COUNTERS, reading), reading)
        else:
            reading.skipped[f"lines of mode {mode!r}"] += 1
            continue
        if not values:
            reading.skipped["lines without a number"] += 1
            continue
        # Epochs done as a fraction, as the text logs give them: a training line's iteration / iterations per epoch,
        # an evaluation's the epoch it follows.
        done = None
        if by_epoch and per_epoch and isinstance(epoch, int):
            done = step / per_epoch if mode == "train" else float(epoch)
        numbered.append((line, Record(step, float(epoch) if isinstance(epoch, int) else None, values, None, mode, done)))
    if per_epoch is None and by_epoch:
        raise _not_a_log(path, 'its lines have no "iter"')
    return numbered


def _iter_is_global(rows: list[tuple[int, dict]]) -> bool:
    """Whether a JSON log's `iter` counts on across epochs (mmcv's IterBasedRunner logs the global iteration with
    its data loader's epoch) instead of restarting: at some change of epoch it grows on."""
    previous: tuple[int, int] | None = None
    for _, row in rows:
        epoch, inner = row.get("epoch"), row.get("iter")
        if row.get("mode") != "train" or not isinstance(epoch, int) or not isinstance(inner, int):
            continue
        if previous is not None and epoch > previous[0] and inner > previous[1]:
            return True
        previous = (epoch, inner)
    return False


def _scalars_json(rows: list[tuple[int, dict]], reading: Reading, times: dict[int, float]) -> list[tuple[int, Record]]:
    by_epoch = any("epoch" in row for _, row in rows)
    last_of_epoch: dict[int, int] = {}
    last_step: int | None = None
    numbered: list[tuple[int, Record]] = []
    for line, row in rows:
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            reading.skipped["lines whose step is not an integer"] += 1
            continue
        training = "lr" in row or "loss" in row or "epoch" in row or "iter" in row
        if training:
            epoch = row.get("epoch")
            values = _numbers(row, _JSON_COUNTERS, reading)
            if isinstance(epoch, int):
                last_of_epoch[epoch] = step
            last_step = step
            record_epoch = float(epoch) if isinstance(epoch, int) else None
            mode = "train"
        else:
            # Validation: `step` is the epoch in an epoch-based run.
            mode = "val"
            values = _eval_values(mode, _numbers(row, _JSON_COUNTERS, reading), reading)
            record_epoch = float(step) if by_epoch else None
            if by_epoch:
                placed = last_of_epoch.get(step, last_step)
                if placed is None:
                    placed = step  # evaluation lines only: the epoch is the step
                step = placed
        if not values:
            reading.skipped["lines without a number"] += 1
            continue
        numbered.append((line, Record(step, record_epoch, values, times.get(step), mode)))
    return numbered


# ---------------------------------------------------------------- HuggingFace Trainer state

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _trainer_state_file(path: Path) -> Path:
    """The trainer_state.json that `path` means: itself, the one in the folder, or that of its last checkpoint."""
    if not path.is_dir():
        return path
    if (path / "trainer_state.json").is_file():
        return path / "trainer_state.json"
    checkpoints = [
        (int(match[1]), state)
        for state in path.glob("checkpoint-*/trainer_state.json")
        if (match := _CHECKPOINT.fullmatch(state.parent.name))
    ]
    if not checkpoints:
        raise ExpdbError(
            f"no trainer_state.json in the folder {path}: give the Trainer's output_dir, one of its checkpoint-N "
            "folders, or the file"
        )
    return max(checkpoints)[1]


def _read_trainer_state(path: Path, reading: Reading) -> list[ReadRun]:
    state_file = _trainer_state_file(path)
    with open_log(state_file) as handle:
        text = handle.read()
    try:
        state = json.loads(text)
    except ValueError as error:
        raise ExpdbError(f"{state_file} is not complete JSON: {error.args[0].split(':')[0]}") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ExpdbError(
            f'{state_file} is not a HuggingFace Trainer state: it has no "log_history" (expected the trainer_state.json '
            "that the Trainer writes into its output_dir and each checkpoint)"
        )
    reading.read["log_history item"] += len(history)
    records = []
    for entry in history:
        step = entry.get("step") if isinstance(entry, dict) else None
        if not isinstance(step, int) or isinstance(step, bool):
            reading.skipped["log entries without a step"] += 1
            continue
        values = _numbers(entry, {"step", "epoch"}, reading)
        if not values:
            reading.skipped["log entries without a number"] += 1
            continue
        epoch = entry.get("epoch")
        epoch = float(epoch) if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else None
        mode = "val" if all(is_validation_key(key) for key in values) else "train"
        records.append(Record(step, epoch, values, None, mode))
    if not records:
        raise ExpdbError(f"{state_file} holds no logged number: its log_history is empty (had training begun?)")
    # One run: a resumed Trainer carries its log_history on, and the closing summary repeats the last step.
    return [ReadRun(records, str(state_file.resolve()), file_sha256(state_file))]


# ---------------------------------------------------------------- work_dir folders

_RUN_STAMP = re.compile(r"(\d{8})_(\d{6})")


def _stamp_time(name: str) -> float | None:
    """The time in a work_dir or log name such as 20230604_120745 (local time), or None."""
    match = _RUN_STAMP.search(name)
    if not match:
        return None
    try:
        return datetime.strptime(match[1] + match[2], "%Y%m%d%H%M%S").timestamp()
    except ValueError:
        return None


def _read_work_dir(folder: Path, reading: Reading) -> list[ReadRun]:
    scalars = sorted(folder.glob("vis_data/scalars.json")) or sorted(folder.glob("*/vis_data/scalars.json"))
    json_logs = sorted(folder.glob("*.log.json"))
    text_logs = sorted(path for path in folder.glob("*.log") if path.is_file())
    if scalars:
        runs = []
        for path in scalars:
            run_folder = path.parent.parent
            started = _stamp_time(run_folder.name)
            beside = sorted(run_folder.glob("*.log"))
            times = _text_times(beside[0], started) if beside else {}
            if beside:
                reading.unread.append(
                    f"{beside[0].name} (the same points as scalars.json, rounded; its dates give the wall times)"
                )
            runs += _read_json(path, reading, times, started)
            reading.read["file"] += 1
        return runs
    if json_logs:
        reading.unread += [
            f"{path.name} (the same points as {path.name}.json, rounded)" for path in text_logs if Path(f"{path}.json").exists()
        ]
        runs = []
        for path in json_logs:
            runs += _read_json(path, reading, started_at=_stamp_time(path.name))
            reading.read["file"] += 1
        return runs
    if text_logs:
        runs = []
        for path in text_logs:
            runs += _read_text(path, "mmdet", reading, year=_year_of(path.name))
            reading.read["file"] += 1
        return runs
    raise ExpdbError(
        f"no training log in the folder {folder}: expected vis_data/scalars.json (MMEngine), *.log.json or *.log "
        "(MMDetection 2.x) in it"
    )


def _year_of(name: str) -> int | None:
    match = _RUN_STAMP.search(name)
    return int(match[1][:4]) if match else None


def _text_times(path: Path, started: float | None) -> dict[int, float]:
    """Step -> time of the training lines of an MMEngine text log, its dates' year from the work_dir's name."""
    year = datetime.fromtimestamp(started).year if started is not None else None
    parser = MMDetParser(year=year)
    times = {}
    with open_log(path) as handle:
        for line in handle:
            record = parser.parse(line)
            if record is not None and record.mode == "train" and record.timestamp is not None:
                times[record.step] = record.timestamp
    return times


# ---------------------------------------------------------------- TensorBoard

_DT_FLOAT, _DT_DOUBLE, _DT_HALF, _DT_INT32, _DT_INT64 = 1, 2, 19, 3, 9
_TENSOR_FORMATS = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_INT32: "<i", _DT_INT64: "<q", _DT_HALF: "<e"}


def _event_folders(root: Path) -> dict[Path, list[Path]]:
    if root.is_file():
        return {root.parent: [root]} if "tfevents" in root.name else {}
    folders: dict[Path, list[Path]] = {}
    for path in sorted(root.rglob("*tfevents*")):
        if path.is_file():
            folders.setdefault(path.parent, []).append(path)
    return folders


def _tensor_value(tensor) -> float | None:
    """A scalar tensor's value (TF2 writes scalars as tensors: in float_val, double_val or tensor_content)."""
    if tensor.tensor_shape.dim and any(dim.size != 1 for dim in tensor.tensor_shape.dim):
        return None
    if tensor.float_val:
        return tensor.float_val[0]
    if tensor.double_val:
        return tensor.double_val[0]
    if tensor.int64_val:
        return float(tensor.int64_val[0])
    if tensor.int_val and tensor.dtype == _DT_INT32:
        return float(tensor.int_val[0])
    fmt = _TENSOR_FORMATS.get(tensor.dtype)
    if fmt and tensor.tensor_content and len(tensor.tensor_content) == struct.calcsize(fmt):
        return float(struct.unpack(fmt, tensor.tensor_content)[0])
    return None


_NOT_SCALAR_EVENTS = {
    "graph_def": "graphs", "meta_graph_def": "meta graphs", "tagged_run_metadata": "run metadata",
    "session_log": "session logs", "log_message": "log messages",
}


@dataclass
class _Stream:
    """What reading one run's event files carries from event to event and file to file."""

    label: str  # the event folder, for what is said about it
    plugins: dict[str, str] = field(default_factory=dict)  # tag -> plugin: TF2 names it on a tag's first summary only
    modes: dict[tuple, str] = field(default_factory=dict)  # an event's tags -> "val" when every one is a validation curve
    front: int = -1  # the highest step written so far
    # tag -> (points, lowest step, highest step) of its points written at a step below `front`
    behind: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    epochs: int = 0  # `epoch` scalars taken as their points' epoch
    replaced: dict[str, tuple[int, int]] = field(default_factory=dict)  # tag -> (values replaced, first step)


def _event_blocks(files: list[Path], reading: Reading, size: int, label: str) -> Iterator[list[Record]]:
    """The scalar records of event files, in file order, `size` or so at a time."""
    stream = _Stream(label)
    block: list[Record] = []
    for path in files:
        if path.stat().st_size == 0:
            continue
        stream.front = -1  # a later file may resume the run at an earlier step: its steps are no tag falling behind
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for record in _read_events(data, path, reading, stream):
                block.append(record)
                if len(block) >= size:
                    yield block
                    block = []
    if block:
        yield block
    _say_how_placed(stream, reading)


def _say_how_placed(stream: _Stream, reading: Reading) -> None:
    if stream.epochs:
        reading.notes.append(
            f"{stream.label}: {plural(stream.epochs, '`epoch` scalar')} taken as the epoch of the points at "
            "their step (as Lightning logs it), not as a curve"
        )
    for tag, (count, first) in stream.replaced.items():
        reading.notes.append(
            f"{stream.label}: {plural(count, 'value')} of {tag} written at a step it already had (first at step "
            f"{first:,}): the later kept, as a curve holds one value a step"
        )
    for tag, (points, low, high) in stream.behind.items():
        # Lightning's LearningRateMonitor with logging_interval="epoch" writes the epoch as the step.
        reading.notes.append(
            f"{stream.label}: {plural(points, 'point')} of {tag} (steps {low:,}..{high:,}) written after points at "
            f"higher steps (up to {stream.front:,}): its step counts something else (epochs?); kept at the steps written"
            " (where one was written before, the later value)"
        )


def _read_events(data, path: Path, reading: Reading, stream: _Stream) -> Iterator[Record]:
    """The records of one event file's bytes (an mmap: pages, not a copy of the file)."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto.event_pb2 import Event

    position, end, events = 0, len(data), 0
    unpack, parse = struct.unpack_from, Event.FromString
    skipped, plugins, behind, replaced = reading.skipped, stream.plugins, stream.behind, stream.replaced
    # A writer's add_scalar makes an event per scalar: the scalars of one step, in a row, are one record
    # (at the wall time of the first). This loop runs once per scalar: it touches each field once.
    step, wall = -1, 0.0
    values: dict[str, float] = {}
    try:
        while position < end:
            if position + 12 > end:
                skipped["records cut short at the end of a file"] += 1
                break
            (length,) = unpack("<Q", data, position)
            start = position + 12  # length (8), its CRC (4)
            stop = start + length
            if stop + 4 > end:
                skipped["records cut short at the end of a file"] += 1
                break
            try:
                event = parse(data[start:stop])
            except DecodeError:
                raise ExpdbError(
                    f"{path} is not a TensorBoard event file: its record at byte {position:,} does not decode"
                ) from None
            position = stop + 4
            events += 1
            summary_values = event.summary.value  # empty for the file's version, a graph, a session log
            if not summary_values:
                kind = _NOT_SCALAR_EVENTS.get(event.WhichOneof("what") or "")
                if kind:
                    skipped[f"{kind} (not scalars)"] += 1
                continue
            if values and event.step != step:
                if (record := _event_record(step, wall, values, stream)) is not None:
                    yield record
                values = {}
            if not values:
                step, wall = event.step, event.wall_time
            late = step < stream.front
            if not late:
                stream.front = step
            for value in summary_values:
                tag = value.tag
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    number = value.simple_value
                else:
                    if value.HasField("metadata") and (plugin := value.metadata.plugin_data.plugin_name):
                        plugins[tag] = plugin  # TF2 names a tag's plugin on its first summary only
                    scalar = kind == "tensor" and plugins.get(tag, "scalars") == "scalars"
                    number = _tensor_value(value.tensor) if scalar else None
                    if number is None:
                        skipped[f"{plugins.get(tag) or kind} summaries (not scalars)"] += 1
                        continue
                if tag in values:  # written again at its step: a curve holds one value a step
                    if tag == "epoch":
                        stream.epochs += 1  # (the record counts the one it keeps)
                    else:
                        count, first = replaced.get(tag, (0, step))
                        replaced[tag] = (count + 1, first)
                values[tag] = number
                if late:
                    points, low, high = behind.get(tag, (0, step, step))
                    behind[tag] = (points + 1, min(low, step), max(high, step))
        if values and (record := _event_record(step, wall, values, stream)) is not None:
            yield record
    finally:
        reading.read["event"] += events


def _event_record(step: int, wall: float, values: dict[str, float], stream: _Stream) -> Record | None:
    """The record of a step's scalars; an `epoch` scalar is its epoch (Lightning logs one with every call), not a curve."""
    epoch = values.pop("epoch", None)
    if epoch is not None:
        stream.epochs += 1
        if not values:
            return None
    tags = tuple(values)
    mode = stream.modes.get(tags)
    if mode is None:
        mode = stream.modes[tags] = "val" if all(is_validation_key(key) for key in values) else "train"
    return Record(step, epoch, values, wall, mode)


_VALIDATION_WORDS = re.compile(r"(?:^|[^a-z])(val|valid|validation|eval|evaluation|test)(?:$|[^a-z])", re.IGNORECASE)


def is_validation_key(key: str) -> bool:
    """Whether a curve is measured on held-out data: a word val, valid, validation, eval or test in its name."""
    return bool(_VALIDATION_WORDS.search(key))


def _read_tensorboard(root: Path, reading: Reading) -> list[ReadRun]:
    if not root.exists():
        raise ExpdbError(f"no such folder: {root}")
    folders = _event_folders(root)
    if not folders:
        raise ExpdbError(f"no TensorBoard event file (events.out.tfevents.*) in {root}")
    try:
        import tensorboard  # noqa: F401 - its Event protocol buffer decodes the records
    except ImportError:
        raise ExpdbError(
            'importing TensorBoard event files needs the tensorboard package: pip install "expdb[tensorboard]"'
        ) from None
    base = root if root.is_dir() else root.parent
    runs = []
    for folder, files in folders.items():
        digest = hashlib.sha256()
        for path in files:
            digest.update(file_sha256(path).encode())
        reading.read["file"] += len(files)
        relative = "" if folder == base else str(folder.relative_to(base))
        # Several event files in one folder (a resumed writer) are one run, in name (time) order: where they
        # hold a step twice, the later file wins, as a resumed run's later points do.
        stream = _streamer(files, reading, relative or folder.name)
        runs.append(ReadRun([], str(folder.resolve()), digest.hexdigest(), folder=relative, stream=stream))
    return runs


def _streamer(files: list[Path], reading: Reading, label: str) -> Callable[[int], Iterator[list[Record]]]:
    def stream(size: int) -> Iterator[list[Record]]:
        return _event_blocks(files, reading, size, label)

    return stream


# ---------------------------------------------------------------- entry point


def read_runs(spec: str, location: str | Path) -> Reading:
    """The runs at `location` in the format `spec` (see the module docstring). ExpdbError (one line) if
    the format is unknown, nothing is there, or it is not a training log of that format."""
    path = Path(location)
    if path.exists() and not (path.is_file() or path.is_dir()):  # reading a pipe would wait for a writer
        raise ExpdbError(f"{path} is neither a file nor a folder (a pipe or a device): give a training log or its folder")
    reading = Reading([])
    kind = spec.strip().lower() if isinstance(spec, str) else ""
    if kind == "tensorboard":
        reading.runs = _read_tensorboard(path, reading)
        return reading
    if kind == "hf":
        reading.runs = _read_trainer_state(path, reading)
        reading.read["file"] += 1
        return reading
    if kind != "mmdet" and not (isinstance(spec, str) and spec.startswith("regex:")):
        raise ExpdbError(f"unknown log format {' '.join(str(spec).split())!r}: use one of {FORMATS}")
    make_parser(spec)  # a bad regex is refused before the file is read
    if kind == "mmdet" and path.is_dir():
        reading.runs = _read_work_dir(path, reading)
        return reading
    if kind == "mmdet" and _starts_with_brace(path):
        reading.runs = _read_json(path, reading, started_at=_stamp_time(path.name))
    else:
        reading.runs = _read_text(path, spec, reading)
    reading.read["file"] += 1
    return reading


def _starts_with_brace(path: Path) -> bool:
    with open_log(path) as handle:
        for line in handle:
            if line.strip():
                return line.lstrip()[:1] in ("{", "[")
    return False


# ---------------------------------------------------------------- folder names as parameters

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")


def params_pattern(pattern: str) -> re.Pattern:
    """`lr{lr}_bs{batch}` as a regular expression with a named group per field. ExpdbError if malformed."""
    names = _FIELD.findall(pattern)
    if not names:
        raise ExpdbError(f"--params {pattern!r} names no parameter: write it like 'lr{{lr}}_bs{{batch}}'")
    if len(set(names)) != len(names):
        raise ExpdbError(f"--params {pattern!r} names a parameter twice")
    parts, position = [], 0
    for index, match in enumerate(_FIELD.finditer(pattern)):
        parts.append(re.escape(pattern[position : match.start()]))
        parts.append(f"(?P<p{index}>.+?)")
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts))


def folder_params(pattern: str, folder: str) -> dict[str, Value]:
    """The typed parameters a folder name gives under `pattern` ("lr{lr}_bs{batch}" on lr0.1_bs32: lr=0.1, batch=32).

    The pattern is matched against the folder's own name; ExpdbError when it does not fit."""
    regex = params_pattern(pattern)
    names = _FIELD.findall(pattern)
    name = Path(folder).name
    match = regex.fullmatch(name)
    if not match:
        raise ExpdbError(
            f"the folder name {name!r} does not fit --params {pattern!r}: give a pattern that matches every event folder"
        )
    return {key: parse_scalar(match[f"p{index}"]) for index, key in enumerate(names)}


def describe(reading: Reading, points: int) -> list[str]:
    """What was read (`points` kept from it) and skipped, as lines for the user."""
    read = ", ".join(plural(count, noun) for noun, count in reading.read.items() if count)
    if reading.runs and reading.runs[0].stream is not None and not reading.read["event"]:
        # TensorBoard files imported before are hashed, not decoded again
        lines = [f"read {read}: imported before, their events not decoded again"]
    else:
        lines = [f"read {read}: {plural(points, 'point')} in {plural(len(reading.runs), 'run')}"]
    skipped = [_counted(count, reason) for reason, count in reading.skipped.items() if count]
    for what, counter in (("non-numeric values", reading.not_numbers), ("loop fields of evaluation lines", reading.loop_fields)):
        if counter:
            skipped.append(_counted(sum(counter.values()), f"{what} ({', '.join(sorted(counter))})"))
    if skipped:
        lines.append("skipped " + "; ".join(skipped))
    lines += reading.launches_in
    if reading.unread:
        lines.append("not read: " + "; ".join(reading.unread))
    return lines + reading.notes


_SINGULAR = {
    "lines": "line", "entries": "entry", "records": "record", "summaries": "summary", "graphs": "graph", "values": "value",
    "fields": "field", "logs": "log", "messages": "message",
}


def _counted(count: int, reason: str) -> str:
    """`3 header lines (...)`, `1 header line (...)`: the first plural noun of a reason made singular for one."""
    if count == 1:
        words = reason.split(" ")
        for index, word in enumerate(words):
            if word in _SINGULAR:
                words[index] = _SINGULAR[word]
                return f"1 {' '.join(words)}"
    return f"{count:,} {reason}"
