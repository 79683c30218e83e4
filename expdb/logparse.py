"""Training-log parsers: turn the lines a training command prints into curve records.

Used by `expdb run --parse SPEC` (lines arrive one at a time while the command runs) and
`expdb import mmdet LOGFILE`. Standard library only: importing this never pulls in torch.

Specs (`make_parser`):

``mmdet``
    MMDetection 2.x / mmcv lines::

        2021-01-25 19:25:44,459 - mmdet - INFO - Epoch [1][50/5455]\tlr: 4.983e-04, eta: 8:02:25, time: 0.443, ...
        ... - mmdet - INFO - Iter [50/90000]\tlr: ...

    (fields separated by ", "; a space instead of the tab is accepted) and MMEngine /
    MMDetection 3.x lines::

        07/03 13:04:17 - mmengine - INFO - Epoch(train)  [1][ 10/196]  lr: 3.3333e-04  eta: 0:13:14  time: 0.4073 ...
        07/03 13:04:17 - mmengine - INFO - Iter(train) [  50/90000]  lr: ...

    (fields separated by two spaces). Colour codes of a terminal are ignored, and so is
    anything before the date (a launcher's rank prefix, say). Every numeric field becomes a
    value; `eta` never does ("2 days, 7:04:24" is a duration, not a metric).

    Step: ``(epoch - 1) * iters_per_epoch + iter`` for `Epoch [e][i/n]` lines, the
    iteration itself for `Iter [i/n]` lines.

    Validation and test lines (`Epoch(val) [e][...]`, `Iter(val) [...]`, `Epoch(test) [...]`,
    and the mmcv 2.x form `Epoch [e][n/n]  lr: ..., bbox_mAP: ...` that has no `time` and no
    loss field) give records with ``mode`` "val" or "test" whose value names get the prefix
    "val/" or "test/" (`val/bbox_mAP`, `val/coco/bbox_mAP`; a name that already starts with
    it keeps it), so that a validation `loss` never lands on the training `loss` curve. Their
    timing fields (`lr`, `eta`, `time`, `data_time`, `memory`) are dropped: they describe the
    evaluation loop, not the model. Their step is where the evaluated weights came from:

    - `Epoch(val) [e][...]`: ``e * iters_per_epoch`` (the last training iteration of epoch e),
      iters_per_epoch taken from the training lines seen before (or from the line itself in
      the mmcv 2.x `Epoch [e][n/n]` form); without it, the last training step seen;
    - `Iter(val) [t][k]` (two counters): the training iteration ``t``;
    - any other val/test line: the last training step seen.

    In a log of evaluation lines only (no training line came before), the step of a line is
    the epoch it names (`Epoch(val) [e][...]`), else the count of such lines so far (1, 2, ...).
    The progress lines of the evaluation loop (those with an `eta`) and val/test lines that
    carry no metric give None. The parser keeps this state, so use one parser per log.

    Timestamps: a date with a year (`2021-01-25 19:25:44,459`, `2023/06/16 12:09:59`) is read
    as local time of this machine (logging writes local time and does not say which zone).
    MMEngine's console date has no year (`07/03 13:04:17`): the timestamp is None unless the
    parser was made with ``year=`` (`expdb run`, which parses a run as it happens, passes the
    current year; `parse_file` takes it from the log's name, MMEngine's `20230703_130417.log`
    or its folder, else from the file's modification time). A date that goes back by more
    than half a year (December to January) moves on to the next year.

``regex:PATTERN``
    A Python regular expression with named groups, searched in each line (use ``^`` to
    anchor). Every named group other than ``step`` (or ``iter``), ``epoch`` and ``total`` is a
    metric read as a float (a value that is not a number is skipped; a line with no numeric
    metric gives None). Example::

        regex:step (?P<step>\\d+) loss (?P<loss>\\S+)

    The step of a line:

    - with ``step``, ``epoch`` and ``total`` (the steps of an epoch, as timm and
      pytorch/examples print `[ 50/1251]`): ``epoch * total + step``;
    - with ``step`` alone: the step, and when it goes back (a log whose count restarts every
      epoch) the count goes on: the first line after the restart is one step after the last
      line before it, and the lines after it keep their distance from it;
    - without ``step`` (the HF Trainer's `{'loss': 0.3, ..., 'epoch': 0.27}` lines): the count
      of lines matched so far, 1, 2, 3, ...

    ``epoch`` may be fractional (`0.27`).

Numbers are decimal floats as Python writes them (`1.2e-04`, `-3`, `.5`), `nan` and `inf`
(any case, with a sign); `float('nan')` and `float('inf')` come out. A line that is not a
progress line gives None; `parse` never raises.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, TextIO

from .errors import ExpdbError

__all__ = [
    "LineParser",
    "MMDetParser",
    "Record",
    "RegexParser",
    "SPECS",
    "make_parser",
    "parse_file",
    "parse_lines",
    "parse_number",
]

SPECS = "mmdet, regex:PATTERN"


@dataclass(frozen=True)
class Record:
    """One logged point: the values of a training (or evaluation) line at a global step."""

    step: int  # the global iteration; for epoch-based logs (epoch-1)*iters_per_epoch + iter
    epoch: float | None  # fractional for the HF Trainer's `'epoch': 0.27`
    values: dict[str, float] = field(hash=False)  # every numeric field; NaN/inf as floats
    timestamp: float | None  # seconds since the epoch if the line has a date, else None
    mode: str = "train"  # "train", or "val"/"test" for evaluation lines (their names are prefixed)
    # Epochs done as a fraction (iteration / iterations per epoch), for an x axis without steps in
    # it: `epoch` alone would put a whole epoch's points at one x.
    epochs_done: float | None = None


class LineParser(Protocol):
    def parse(self, line: str) -> Record | None:
        """The record of a progress line; None for any other line. Never raises."""
        ...


# ---------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)",
    re.IGNORECASE,
)


def parse_number(text: str) -> float | None:
    """`text` as a float if it is a plain number, nan or inf (surrounding spaces allowed), else None.

    Stricter than `float()`: no underscores, no hex, no `1_000`.
    """
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return float(text)
    except (ValueError, OverflowError):  # pragma: no cover - the pattern admits only floats
        return None


def _parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,18}", text):
        return None
    return int(text)


# ---------------------------------------------------------------- mmdet / mmengine

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# The progress header: Epoch [1][50/5455], Epoch(train)  [1][ 10/196], Iter [50/90000],
# Iter(train) [  50/90000], Epoch(val) [1][625], Epoch(test) [625/625], Iter(val) [5000][625].
_HEADER = re.compile(
    r"(?<![\w(])(?P<kind>Epoch|Iter)(?:\((?P<mode>[A-Za-z]+)\))?[ \t]*"
    r"\[[ \t]*(?P<a>\d{1,12})[ \t]*(?:/[ \t]*(?P<a_total>\d{1,12})[ \t]*)?\]"
    r"(?:[ \t]*\[[ \t]*(?P<b>\d{1,12})[ \t]*(?:/[ \t]*(?P<b_total>\d{1,12})[ \t]*)?\])?"
    r"(?=[ \t]|$)"
)

_DATE_WITH_YEAR = re.compile(
    r"(?P<Y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})[ T]"
    r"(?P<H>\d{1,2}):(?P<M>\d{2}):(?P<S>\d{2})(?:[,.](?P<frac>\d{1,6}))?"
)
_DATE_NO_YEAR = re.compile(
    r"(?<![\d/])(?P<m>\d{1,2})/(?P<d>\d{1,2}) (?P<H>\d{1,2}):(?P<M>\d{2}):(?P<S>\d{2})(?:[,.](?P<frac>\d{1,6}))?"
)

# mmcv separates fields with ", "; a split point is ", " followed by `name: `. A name holds
# no comma or colon, so "eta: 2 days, 7:04:24" stays one field ("7" is followed by ":0").
_COMMA_SPLIT = re.compile(r", (?=[^,:\s][^,:]*: )")
# MMEngine separates fields with two spaces; learning rates of several groups with one.
_WIDE_SPLIT = re.compile(r"\t+| {2,}")
_SPACED_NAME = re.compile(r"(?:^|(?<= ))([^\s:]+): ")

_HALF_YEAR_S = 183 * 86400
_YEAR_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d\d)(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\d)")

_NOT_A_VALUE = {"eta"}
_EVAL_BOOKKEEPING = {"lr", "eta", "time", "data_time", "memory"}
_EVAL_MODES = {"val", "test"}


def _fields(text: str) -> dict[str, str]:
    """The `name: value` fields of the text after a progress header, as strings."""
    text = text.strip()
    if not text:
        return {}
    pairs: list[tuple[str, str]] = []
    if _COMMA_SPLIT.search(text) or (": " in text and "  " not in text and "\t" not in text):
        for piece in _COMMA_SPLIT.split(text):
            name, sep, value = piece.partition(": ")
            if sep:
                pairs.append((name.strip(), value.strip()))
    else:
        for piece in _WIDE_SPLIT.split(text):
            piece = piece.strip()
            if not piece:
                continue
            if piece.count(": ") == 1:
                # One field; its name may hold spaces, its value too ("x_copypaste: 0.1 0.2").
                name, _, value = piece.partition(": ")
                pairs.append((name.strip(), value.strip()))
                continue
            # Several fields joined by one space ("base_lr: 2.0e-02 lr: 2.0e-02").
            names = list(_SPACED_NAME.finditer(piece))
            for index, match in enumerate(names):
                name = match.group(1) if index else piece[: match.end(1)]
                end = names[index + 1].start() if index + 1 < len(names) else len(piece)
                pairs.append((name.strip(), piece[match.end() : end].strip()))
    return {name: value for name, value in _unglued(pairs) if name}


# A value glued to the next field's name by a missing separator: "0.9000data_time" (MMAction2's docs print
# `acc/mean1: 0.9000data_time: 1.27`). The name must start with a letter, so "1e-4" stays a number.
_GLUED_NAME = re.compile(r"((?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))([A-Za-z_][^\s:]*)")
_GLUED_VALUE = re.compile(_GLUED_NAME.pattern + r": (.*)")


def _unglued(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The fields with every glued value given back to its own field."""
    result: list[tuple[str, str]] = []
    for name, value in pairs:
        glued = _GLUED_NAME.fullmatch(name)
        if glued and result and not result[-1][1]:
            # "acc/mean1: 0.9000data_time: 1.27" split between spaces: the number closes the field before.
            result[-1] = (result[-1][0], glued[1])
            name = glued[2]
        while (inner := _GLUED_VALUE.fullmatch(value)) is not None:
            # "acc: 0.9000data_time: 1.27" split at commas: the value holds the next field.
            result.append((name, inner[1]))
            name, value = inner[2], inner[3]
        result.append((name, value))
    return result


def _numeric(fields: dict[str, str]) -> dict[str, float]:
    values = {}
    for name, text in fields.items():
        if name in _NOT_A_VALUE:
            continue
        number = parse_number(text)
        if number is not None:
            values[name] = number
    return values


def _timestamp(prefix: str, year: int | None) -> float | None:
    """Seconds since the epoch of the first date in `prefix` (local time), or None."""
    match = _DATE_WITH_YEAR.search(prefix)
    if match:
        year_found: int | None = int(match["Y"])
    else:
        match = _DATE_NO_YEAR.search(prefix)
        if not match:
            return None
        year_found = year
    if year_found is None:
        return None
    frac = match["frac"] or ""
    try:
        when = datetime(
            year_found,
            int(match["m"]),
            int(match["d"]),
            int(match["H"]),
            int(match["M"]),
            int(match["S"]),
            int(frac.ljust(6, "0")) if frac else 0,
        )
        return when.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _is_mmcv_eval(fields: dict[str, str]) -> bool:
    """A mode-less mmcv line that reports evaluation (`Epoch [12][7330/7330]  lr: ..., bbox_mAP: ...`)."""
    if "time" in fields:
        return False
    names = [name for name in fields if name not in _EVAL_BOOKKEEPING]
    return bool(names) and not any("loss" in name for name in names)


class _NeverRaises(ABC):
    """A parser whose `parse` keeps the LineParser contract: a line it cannot read gives None."""

    @abstractmethod
    def _parse(self, line: str) -> Record | None:
        """The line's record; may raise on a line of another shape."""

    def parse(self, line: str) -> Record | None:
        try:
            return self._parse(line)
        except Exception:  # noqa: BLE001 - logs hold anything; one odd line must not end a run
            return None


class MMDetParser(_NeverRaises):
    """Parses MMDetection 2.x and MMEngine (MMDetection 3.x) log lines; see the module docstring.

    Keeps the iterations per epoch and the last training step it saw, to place evaluation
    lines: use one parser per log.
    """

    def __init__(self, year: int | None = None) -> None:
        self.year = year  # for MMEngine dates without a year; None: such lines get no timestamp
        self.iters_per_epoch: int | None = None
        self.last_step: int | None = None
        self.last_epoch: int | None = None
        self.eval_lines = 0  # evaluation lines seen before any training line
        self.last_time: float | None = None

    def _parse(self, line: str) -> Record | None:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if not isinstance(line, str) or ("Epoch" not in line and "Iter" not in line):
            return None
        line = _ANSI.sub("", line).rstrip("\r\n")
        header = _HEADER.search(line)
        if not header:
            return None
        fields = _fields(line[header.end() :])
        if not fields:
            return None
        timestamp = _timestamp(line[: header.start()], self.year)
        went_back = self.last_time is not None and timestamp is not None and timestamp < self.last_time - _HALF_YEAR_S
        if went_back and self.year is not None:
            self.year += 1  # the log went on past new year
            timestamp = _timestamp(line[: header.start()], self.year)
        if timestamp is not None:
            self.last_time = timestamp
        mode = (header["mode"] or "").lower()
        if mode == "":
            mode = "val" if header["kind"] == "Epoch" and _is_mmcv_eval(fields) else "train"
        if mode == "train":
            return self._train(header, fields, timestamp)
        if mode in _EVAL_MODES:
            return self._eval(mode, header, fields, timestamp)
        return None

    def _train(self, header: re.Match, fields: dict[str, str], timestamp: float | None) -> Record | None:
        if header["kind"] == "Epoch":
            # Epoch [e][i/n]: both counters and the epoch length are needed for a global step.
            if header["b"] is None or header["b_total"] is None or header["a_total"] is not None:
                return None
            epoch, inner, per_epoch = int(header["a"]), int(header["b"]), int(header["b_total"])
            if epoch < 1 or per_epoch < 1:
                return None
            step = (epoch - 1) * per_epoch + inner
        else:
            # Iter [i/n]: the iteration is the step.
            if header["b"] is not None:
                return None
            epoch, per_epoch, step = None, None, int(header["a"])
        values = _numeric(fields)
        if not values:
            return None
        if per_epoch is not None:
            self.iters_per_epoch = per_epoch
        self.last_step, self.last_epoch = step, epoch
        return Record(step, epoch, values, timestamp, "train", step / per_epoch if per_epoch else None)

    def _eval(self, mode: str, header: re.Match, fields: dict[str, str], timestamp: float | None) -> Record | None:
        if "eta" in fields:
            return None  # a progress line of the evaluation loop, not its result
        epoch: int | None = None
        step: int | None = None
        if header["kind"] == "Epoch" and header["b"] is not None:
            # Epoch(val) [e][...]: after epoch e.
            epoch = int(header["a"])
            per_epoch = self.iters_per_epoch
            if per_epoch is None and header["mode"] is None and header["b_total"] is not None:
                per_epoch = int(header["b_total"])  # mmcv 2.x: Epoch [e][n/n] with the train length
            step = epoch * per_epoch if per_epoch is not None else self.last_step
        elif header["kind"] == "Iter" and header["b"] is not None:
            step = int(header["a"])  # Iter(val) [t][k]: the training iteration t
        else:
            step = self.last_step
            epoch = self.last_epoch
        if step is None and self.last_step is None:
            # A log of evaluation lines only: the epoch they name, else their count.
            self.eval_lines += 1
            step = epoch if epoch is not None else self.eval_lines
        if step is None:
            return None
        prefix = f"{mode}/"
        values = {
            (name if name.startswith(prefix) else prefix + name): value
            for name, value in _numeric(fields).items()
            if name not in _EVAL_BOOKKEEPING and not name.endswith("_lr")
        }
        if not values:
            return None
        done = float(epoch) if header["kind"] == "Epoch" and epoch is not None else None
        if self.iters_per_epoch:
            done = step / self.iters_per_epoch
        return Record(step, epoch, values, timestamp, mode, done)


# ---------------------------------------------------------------- regex


class RegexParser(_NeverRaises):
    """Parses lines with a user's regular expression; see the module docstring."""

    def __init__(self, pattern: str) -> None:
        try:
            self.regex = re.compile(pattern)
        except (re.error, RecursionError, OverflowError, ValueError) as error:
            raise ExpdbError(f"bad --parse regex {pattern!r}: {_one_line(str(error))}") from None
        groups = set(self.regex.groupindex)
        self.step_group = "step" if "step" in groups else "iter" if "iter" in groups else None
        if "total" in groups and (self.step_group is None or "epoch" not in groups):
            raise ExpdbError(
                f"bad --parse regex {pattern!r}: (?P<total>...) is the steps of an epoch; it needs (?P<epoch>\\d+) "
                "and (?P<step>\\d+) beside it"
            )
        self.metric_groups = [name for name in self.regex.groupindex if name not in {"step", "iter", "epoch", "total"}]
        if not self.metric_groups:
            raise ExpdbError(
                f"bad --parse regex {pattern!r}: it has no named group for a metric, such as (?P<loss>\\S+)"
            )
        self.pattern = pattern
        self.matched = 0  # lines with a metric so far: the step of a log that prints none
        self.offset = 0  # added to a step that restarts every epoch
        self.last_local: int | None = None
        self.last_step: int | None = None

    def _parse(self, line: str) -> Record | None:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if not isinstance(line, str):
            return None
        match = self.regex.search(line.rstrip("\r\n"))
        if not match:
            return None
        epoch = _parse_epoch(match["epoch"]) if "epoch" in self.regex.groupindex else None
        local = _parse_int(match[self.step_group]) if self.step_group else None
        if self.step_group and local is None:
            return None
        values = {}
        for name in self.metric_groups:
            text = match[name]
            number = parse_number(text) if text is not None else None
            if number is not None:
                values[name] = number
        if not values:
            return None
        self.matched += 1
        step = self._step(local, epoch, _parse_int(match["total"]) if "total" in self.regex.groupindex else None)
        return Record(step, epoch, values, None, "train")

    def _step(self, local: int | None, epoch: float | None, total: int | None) -> int:
        """The global step: see `make_parser`'s rules for steps that restart and for logs without one."""
        if local is None:
            return self.matched
        if total is not None and epoch is not None:
            return int(epoch) * total + local
        if self.last_local is not None and self.last_step is not None and local < self.last_local:
            self.offset = self.last_step + 1 - local  # an epoch began again: go on after the last step
        self.last_local, self.last_step = local, self.offset + local
        return self.last_step


def _parse_epoch(text: str | None) -> float | None:
    number = parse_number(text) if text is not None else None
    return number if number is not None and math.isfinite(number) else None


# ---------------------------------------------------------------- entry points


def open_log(path: Path) -> TextIO:
    """The log as text (undecodable bytes replaced); ExpdbError, one line, when it cannot be opened."""
    try:
        return path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ExpdbError(f"no such log file: {path}") from None
    except IsADirectoryError:
        raise ExpdbError(f"{path} is a directory, not a log file") from None
    except OSError as error:
        raise ExpdbError(f"cannot read log file {path}: {_one_line(error.strerror or str(error))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def make_parser(spec: str, *, year: int | None = None) -> LineParser:
    """The parser for `spec`: "mmdet" or "regex:PATTERN". ExpdbError (one line) for anything else.

    `year` only matters for "mmdet": the year of MMEngine dates that have none.
    """
    if not isinstance(spec, str):
        raise ExpdbError(f"unknown log format {spec!r}: use one of {SPECS}")
    if spec.strip().lower() == "mmdet":
        return MMDetParser(year=year)
    if spec.startswith("regex:"):
        pattern = spec[len("regex:") :]
        if not pattern:
            raise ExpdbError("empty --parse regex: write regex:PATTERN with a named group (?P<step>\\d+)")
        return RegexParser(pattern)
    raise ExpdbError(f"unknown log format {_one_line(spec)!r}: use one of {SPECS}")


def parse_lines(lines: Iterable[str], spec: str | LineParser, *, year: int | None = None) -> list[Record]:
    """The records of `lines`, in order, with one parser (so evaluation lines find their step)."""
    parser = make_parser(spec, year=year) if isinstance(spec, str) else spec
    records = []
    for line in lines:
        record = parser.parse(line)
        if record is not None:
            records.append(record)
    return records


def year_of_log(path: Path) -> int | None:
    """The year a log was written: from a YYYYMMDD date in its name or its folder's (MMEngine names
    both `20230703_130417`), else from its modification time; None if the file cannot be read."""
    for name in (path.name, path.parent.name):
        found = _YEAR_IN_NAME.search(name)
        if found:
            return int(found[1])
    try:
        return datetime.fromtimestamp(path.stat().st_mtime).year
    except (OSError, ValueError, OverflowError):
        return None


def parse_file(path: str | Path, spec: str, *, year: int | None = None) -> list[Record]:
    """The records of the log at `path`, in file order (a resumed run may repeat steps).

    `year`: of MMEngine's dates without one [default: `year_of_log`]. ExpdbError (one line) if
    the spec is bad, the file cannot be read, or no line of it is a progress line of that format. A log of
    validation lines only is a log: see MMDetParser.
    """
    path = Path(path)
    parser = make_parser(spec, year=year if year is not None else year_of_log(path))
    with open_log(path) as handle:
        try:
            records = parse_lines(handle, parser)
        except OSError as error:
            raise ExpdbError(f"cannot read log file {path}: {_one_line(error.strerror or str(error))}") from None
    if not records:
        raise ExpdbError(no_records_message(path, parser))
    return records


def no_records_message(path: Path, parser: LineParser) -> str:
    """Why a log gave nothing, and what lines were expected."""
    if isinstance(parser, RegexParser):
        return f"no line of {path} matches the --parse regex {parser.pattern!r} with a numeric metric"
    return (
        f"no MMDetection progress lines in {path}: expected lines like "
        "'Epoch [1][50/5455]<TAB>lr: ..., loss: ...' (MMDetection 2.x) or "
        "'Epoch(train) [1][10/196]  lr: ...  loss: ...' (MMEngine), or a .log.json / scalars.json"
    )
