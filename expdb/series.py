"""Curves stored as chunks: each flush writes, per curve, its new points as packed arrays.

A chunk holds int64 steps, float64 values and float64 wall times (seconds since the run
started), plus epochs and samples when they were logged, each compressed with zlib. When
a resumed run logs a step again, the later chunk wins.
"""

import math
import sys
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from .db import Database
from .errors import ExpdbError

_BIG_ENDIAN = sys.byteorder == "big"
NO_SAMPLES = -1  # in samples_data: this point was logged without a sample count


def _pack(values: array) -> bytes:
    if _BIG_ENDIAN:
        values = array(values.typecode, values)
        values.byteswap()
    return zlib.compress(values.tobytes(), 1)


def _unpack(typecode: str, data: bytes) -> array:
    values = array(typecode)
    values.frombytes(zlib.decompress(data))
    if _BIG_ENDIAN:
        values.byteswap()
    return values


@dataclass
class ChunkBuilder:
    """The points of one curve gathered between two flushes."""

    steps: array = field(default_factory=lambda: array("q"))
    values: array = field(default_factory=lambda: array("d"))
    walls: array = field(default_factory=lambda: array("d"))
    epochs: array = field(default_factory=lambda: array("d"))
    samples: array = field(default_factory=lambda: array("q"))
    has_epochs: bool = False
    has_samples: bool = False
    ordered: bool = True  # steps strictly increasing, as a training loop logs them

    def add(self, step: int, value: float, wall: float, epoch: float | None, samples: int | None) -> None:
        if self.steps and step <= self.steps[-1]:
            self.ordered = False
        self.steps.append(step)
        self.values.append(value)
        self.walls.append(wall)
        if epoch is not None:
            self.has_epochs = True
        if samples is not None:
            self.has_samples = True
        self.epochs.append(math.nan if epoch is None else epoch)
        self.samples.append(NO_SAMPLES if samples is None else samples)

    def row(self, series_id: int) -> tuple:
        """The values of a `chunk` row, in the column order of INSERT_CHUNK; its steps sorted and unique."""
        if not self.ordered:
            self._keep_last_per_step()
        return (
            series_id,
            self.steps[0],
            self.steps[-1],
            len(self.steps),
            _pack(self.steps),
            _pack(self.values),
            _pack(self.walls),
            _pack(self.epochs) if self.has_epochs else None,
            _pack(self.samples) if self.has_samples else None,
        )


    def _keep_last_per_step(self) -> None:
        order = _last_per_step(self.steps)
        for name in ("steps", "values", "walls", "epochs", "samples"):
            setattr(self, name, _pick(getattr(self, name), order))
        self.ordered = True


INSERT_CHUNK = (
    "INSERT INTO chunk (series_id, first_step, last_step, count, step_data, value_data, wall_data, "
    "epoch_data, samples_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def build_chunks(points: Iterable[tuple[int, float | None, int | None, float, dict[str, float]]]) -> dict[str, ChunkBuilder]:
    """Points as logged, (step, epoch, samples, wall, {key: value}), gathered into one chunk per key."""
    chunks: dict[str, ChunkBuilder] = {}
    for step, epoch, samples, wall, scalars in points:
        for key, value in scalars.items():
            chunk = chunks.get(key)
            if chunk is None:
                chunk = chunks[key] = ChunkBuilder()
            chunk.add(step, value, wall, epoch, samples)
    return chunks


def write_points(connection, run_id: int, points: list, series_ids: dict[str, int]) -> None:
    """Store logged points as one chunk per curve; `series_ids` caches the curves' ids across calls."""
    rows = []
    for key, chunk in build_chunks(points).items():
        if key not in series_ids:
            connection.execute("INSERT INTO series (run_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING", (run_id, key))
            series_ids[key] = connection.execute(
                "SELECT id FROM series WHERE run_id = ? AND key = ?", (run_id, key)
            ).fetchone()[0]
        rows.append(chunk.row(series_ids[key]))
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


def series_keys(db: Database, run_id: int) -> list[str]:
    return [key for (key,) in db.query("SELECT key FROM series WHERE run_id = ? ORDER BY id", (run_id,))]


def read_curve(db: Database, run_id: int, key: str) -> Curve:
    row = db.query_one("SELECT id FROM series WHERE run_id = ? AND key = ?", (run_id, key))
    if row is None:
        keys = series_keys(db, run_id)
        raise ExpdbError(f"run {run_id} has no curve {key!r}; it has: {', '.join(keys) or 'no curves'}")
    chunks = db.query(
        "SELECT first_step, last_step, count, step_data, value_data, wall_data, epoch_data, samples_data "
        "FROM chunk WHERE series_id = ? ORDER BY id",
        (row[0],),
    )
    steps, values, walls = array("q"), array("d"), array("d")
    epochs = array("d") if any(chunk[6] is not None for chunk in chunks) else None
    samples = array("q") if any(chunk[7] is not None for chunk in chunks) else None
    in_order, last = True, None
    for first_step, last_step, count, step_data, value_data, wall_data, epoch_data, samples_data in chunks:
        # Each chunk's steps are sorted and unique; the curve is in order unless chunks overlap.
        in_order = in_order and (last is None or first_step > last)
        last = last_step if last is None else max(last, last_step)
        steps.extend(_unpack("q", step_data))
        values.extend(_unpack("d", value_data))
        walls.extend(_unpack("d", wall_data))
        if epochs is not None:
            epochs.extend(_unpack("d", epoch_data) if epoch_data is not None else array("d", [math.nan] * count))
        if samples is not None:
            samples.extend(_unpack("q", samples_data) if samples_data is not None else array("q", [NO_SAMPLES] * count))
    curve = Curve(key, steps, values, walls, epochs, samples)
    return curve if in_order else _latest_per_step(curve)


def _last_per_step(steps: array) -> list[int]:
    """The index of each step's last point, in step order: a step logged again replaces the earlier point."""
    latest = {step: index for index, step in enumerate(steps)}
    return [latest[step] for step in sorted(latest)]


def _pick(column: array | None, order: list[int]) -> array | None:
    return None if column is None else array(column.typecode, (column[i] for i in order))


def _latest_per_step(curve: Curve) -> Curve:
    """A curve whose steps were logged again (a resumed run), cleaned the same way as a chunk."""
    order = _last_per_step(curve.steps)
    columns = (curve.steps, curve.values, curve.walls, curve.epochs, curve.samples)
    return Curve(curve.key, *(_pick(column, order) for column in columns))
