"""Curves stored as chunks: each flush writes, per curve, its new points as packed arrays.

A chunk holds int64 steps, float64 values and float64 wall times (seconds since the run
started), plus epochs and samples when they were logged, each compressed with zlib. When
a resumed run logs a step again, the later chunk wins.
"""

import itertools
import math
import sys
import zlib
from array import array
from collections.abc import Collection
from dataclasses import dataclass

from .db import Database
from .errors import ExpdbError

_BIG_ENDIAN = sys.byteorder == "big"
NO_SAMPLES = -1  # in samples_data: this point was logged without a sample count


def _pack(values: array, level: int = 1) -> bytes:
    if _BIG_ENDIAN:
        values = array(values.typecode, values)
        values.byteswap()
    return zlib.compress(values.tobytes(), level)


def _pack_values(values: array) -> bytes:
    """Measured values: compressed when they repeat (a learning rate), stored as they are when they
    look random (a loss), which zlib cannot shrink but would spend most of a flush on."""
    return _pack(values, 1 if len(set(values[:64])) <= 32 else 0)


def _unpack(typecode: str, data: bytes) -> array:
    values = array(typecode)
    values.frombytes(zlib.decompress(data))
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _unpack_onto(column: array, data: bytes, count: int) -> None:
    """Appends a chunk's `count` packed numbers to `column`, decompressed straight into it: with its size
    known zlib allocates once instead of regrowing, and no array is made in between."""
    if _BIG_ENDIAN:
        column.extend(_unpack(column.typecode, data))
    else:
        column.frombytes(zlib.decompress(data, bufsize=max(1, count * column.itemsize)))


@dataclass
class Columns:
    """Steps logged with the same keys, column by column; every key of the group shares these arrays."""

    steps: array
    walls: array
    epochs: array | None  # None when no point of the group has an epoch
    samples: array | None
    ordered: bool  # steps strictly increasing, as a training loop logs them


def _group_columns(group: list) -> Columns:
    steps = array("q", [point[0] for point in group])
    epochs = [point[1] for point in group]
    samples = [point[2] for point in group]
    has_epochs = any(epoch is not None for epoch in epochs)
    has_samples = any(count is not None for count in samples)
    return Columns(
        steps,
        array("d", [point[3] for point in group]),
        array("d", [math.nan if epoch is None else epoch for epoch in epochs]) if has_epochs else None,
        array("q", [NO_SAMPLES if count is None else count for count in samples]) if has_samples else None,
        all(a < b for a, b in itertools.pairwise(steps)),
    )


@dataclass
class ChunkBuilder:
    """The points of one curve gathered between two flushes."""

    columns: Columns
    values: array

    def extend(self, columns: Columns, values: array) -> None:
        """More points of this curve, from a later group of steps (copies what is shared before changing it)."""
        mine, theirs = self.columns, columns
        ordered = mine.ordered and theirs.ordered and theirs.steps[0] > mine.steps[-1]
        self.columns = Columns(
            mine.steps + theirs.steps,
            mine.walls + theirs.walls,
            _joined(mine.epochs, theirs.epochs, len(mine.steps), len(theirs.steps), "d", math.nan),
            _joined(mine.samples, theirs.samples, len(mine.steps), len(theirs.steps), "q", NO_SAMPLES),
            ordered,
        )
        self.values = self.values + values

    @property
    def steps(self) -> array:
        return self.columns.steps

    def in_step_order(self) -> tuple[array, array]:
        """(steps, values), steps strictly ascending: a step logged again keeps its last value, as stored."""
        if self.columns.ordered:
            return self.columns.steps, self.values
        order = _last_per_step(self.columns.steps)
        return _pick(self.columns.steps, order), _pick(self.values, order)

    def row(self, series_id: int, packed: dict[int, bytes]) -> tuple:
        """The values of a `chunk` row, in the column order of INSERT_CHUNK; its steps sorted and unique.

        `packed` remembers compressed arrays by identity: curves logged together share their steps.
        """
        columns, values = self.columns, self.values
        if not columns.ordered:
            order = _last_per_step(columns.steps)
            columns = Columns(
                _pick(columns.steps, order), _pick(columns.walls, order),
                _pick_optional(columns.epochs, order), _pick_optional(columns.samples, order), True,
            )
            values = _pick(values, order)
            packed = {}  # these arrays are this curve's own

        def pack(column: array | None) -> bytes | None:
            if column is None:
                return None
            if id(column) not in packed:
                packed[id(column)] = _pack(column)
            return packed[id(column)]

        return (
            series_id,
            columns.steps[0],
            columns.steps[-1],
            len(columns.steps),
            pack(columns.steps),
            _pack_values(values),
            pack(columns.walls),
            pack(columns.epochs),
            pack(columns.samples),
        )


def _joined(
    first: array | None, second: array | None, first_count: int, second_count: int, typecode: str, missing
) -> array | None:
    if first is None and second is None:
        return None
    return (first if first is not None else array(typecode, [missing] * first_count)) + (
        second if second is not None else array(typecode, [missing] * second_count)
    )


INSERT_CHUNK = (
    "INSERT INTO chunk (series_id, first_step, last_step, count, step_data, value_data, wall_data, "
    "epoch_data, samples_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def build_chunks(points: list[tuple[int, float | None, int | None, float, dict[str, float]]]) -> dict[str, ChunkBuilder]:
    """Points as logged, (step, epoch, samples, wall, {key: value}), gathered into one chunk per key.

    Consecutive points with the same keys (a training loop's usual case) are turned into
    columns at once, and their steps, wall times, epochs and samples are shared by every key.
    """
    chunks: dict[str, ChunkBuilder] = {}
    start = 0
    while start < len(points):
        keys = points[start][4].keys()
        end = start + 1
        while end < len(points) and points[end][4].keys() == keys:
            end += 1
        group = points[start:end]
        columns = _group_columns(group)
        for key in keys:
            values = array("d", [point[4][key] for point in group])
            if key in chunks:
                chunks[key].extend(columns, values)
            else:
                chunks[key] = ChunkBuilder(columns, values)
        start = end
    return chunks


def write_chunks(connection, run_id: int, chunks: dict[str, ChunkBuilder], series_ids: dict[str, int]) -> None:
    """Store the chunks of `build_chunks`, one row per curve; `series_ids` caches the curves' ids across calls."""
    rows: list[tuple] = []
    packed: dict[int, bytes] = {}  # compressed shared arrays, alive as long as `chunks`
    for key, chunk in chunks.items():
        if key not in series_ids:
            connection.execute("INSERT INTO series (run_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING", (run_id, key))
            series_ids[key] = connection.execute(
                "SELECT id FROM series WHERE run_id = ? AND key = ?", (run_id, key)
            ).fetchone()[0]
        rows.append(chunk.row(series_ids[key], packed))
    connection.executemany(INSERT_CHUNK, rows)


@dataclass
class Curve:
    """One curve of a run, in step order: steps, values, and epochs/samples/wall times where known."""

    key: str
    steps: array
    values: array
    walls: array
    epochs: array | None  # NaN where a point had no epoch
    samples: array | None  # NO_SAMPLES where a point had no sample count

    def __len__(self) -> int:
        return len(self.steps)


def latest_run_with(db: Database, card_id: int, key: str) -> int | None:
    """The id of the card's latest run that logged the curve `key`, if any."""
    row = db.query_one(
        "SELECT max(run.id) FROM series JOIN run ON run.id = series.run_id WHERE run.card_id = ? AND series.key = ?",
        (card_id, key),
    )
    return row[0] if row else None


def latest_curve(db: Database, card_id: int, key: str) -> Curve | None:
    """The curve `key` of the card's latest run that logged it, if any."""
    run_id = latest_run_with(db, card_id, key)
    return read_curve(db, run_id, key) if run_id is not None else None


def series_keys(db: Database, run_id: int) -> list[str]:
    return [key for (key,) in db.query("SELECT key FROM series WHERE run_id = ? ORDER BY id", (run_id,))]


OPTIONAL_AXES = ("time", "epoch", "samples")
_AXIS_COLUMNS = (("wall_data", "time"), ("epoch_data", "epoch"), ("samples_data", "samples"))


def read_curve(db: Database, run_id: int, key: str, axes: Collection[str] = OPTIONAL_AXES) -> Curve:
    """The curve `key` of the run. `axes`: which of wall time, epochs and samples to read; the others
    come back empty (walls) or None, and are not decompressed (a million-point curve drawn against
    its steps skips two thirds of the work)."""
    row = db.query_one("SELECT id FROM series WHERE run_id = ? AND key = ?", (run_id, key))
    if row is None:
        keys = series_keys(db, run_id)
        raise ExpdbError(f"run {run_id} has no curve {key!r}; it has: {', '.join(keys) or 'no curves'}")
    # The axes not asked for are not even read out of the database.
    optional = ", ".join(column if axis in axes else "NULL" for column, axis in _AXIS_COLUMNS)
    chunks = db.query(
        f"SELECT first_step, last_step, count, step_data, value_data, {optional} FROM chunk WHERE series_id = ? ORDER BY id",
        (row[0],),
    )
    # Where numpy is loaded already (`expdb plot`, `expdb ui`), a chunk of consecutive steps (a training
    # loop's) is written out rather than inflated: 2 ms a million points instead of 20. Elsewhere
    # importing numpy would cost more than it saves.
    numpy = sys.modules.get("numpy")
    steps, values, walls = array("q"), array("d"), array("d")
    epochs = array("d") if "epoch" in axes and any(chunk[6] is not None for chunk in chunks) else None
    samples = array("q") if "samples" in axes and any(chunk[7] is not None for chunk in chunks) else None
    with_walls = "time" in axes
    in_order, last = True, None
    for first_step, last_step, count, step_data, value_data, wall_data, epoch_data, samples_data in chunks:
        # Each chunk's steps are sorted and unique; the curve is in order unless chunks overlap.
        in_order = in_order and (last is None or first_step > last)
        last = last_step if last is None else max(last, last_step)
        if numpy is not None and last_step - first_step + 1 == count:  # sorted, unique and this many: consecutive
            steps.frombytes(memoryview(numpy.arange(first_step, last_step + 1, dtype=numpy.int64)).cast("B"))
        else:
            _unpack_onto(steps, step_data, count)
        _unpack_onto(values, value_data, count)
        if with_walls:
            _unpack_onto(walls, wall_data, count)
        if epochs is not None:
            if epoch_data is not None:
                _unpack_onto(epochs, epoch_data, count)
            else:
                epochs.extend(array("d", [math.nan] * count))
        if samples is not None:
            if samples_data is not None:
                _unpack_onto(samples, samples_data, count)
            else:
                samples.extend(array("q", [NO_SAMPLES] * count))
    curve = Curve(key, steps, values, walls, epochs, samples)
    return curve if in_order else _latest_per_step(curve)


def _last_per_step(steps: array) -> list[int]:
    """The index of each step's last point, in step order: a step logged again replaces the earlier point."""
    latest = {step: index for index, step in enumerate(steps)}
    return [latest[step] for step in sorted(latest)]


def _pick(column: array, order: list[int]) -> array:
    return array(column.typecode, (column[i] for i in order))


def _pick_optional(column: array | None, order: list[int]) -> array | None:
    return None if column is None else _pick(column, order)


def _latest_per_step(curve: Curve) -> Curve:
    """A curve whose steps were logged again (a resumed run), cleaned the same way as a chunk."""
    order = _last_per_step(curve.steps)
    return Curve(
        curve.key, _pick(curve.steps, order), _pick(curve.values, order),
        _pick(curve.walls, order) if len(curve.walls) else curve.walls,  # wall times not read stay so
        _pick_optional(curve.epochs, order), _pick_optional(curve.samples, order),
    )
