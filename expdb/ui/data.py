"""What the pages of `expdb ui` and the HTML report show, as JSON-ready dicts.

Every figure comes from the functions the CLI uses: the cards from `cards.select_cards`, the
table from `table.build_table` laid out by `render` (so "copy as markdown" is byte for byte
`expdb table --format md`; folded over seeds, its rows are tested by `expdb.stats`), the curves
from `series.read_curve` on the axes of `expdb plot`, smoothed by its EMA on every point and cut
to min/max buckets by its `reduce_for_drawing`; folded, the variants of `variants.fold` drawn as
the mean curves in bands of `plot.mean_curve`.

This module imports numpy (through `expdb.plot`, which also brings matplotlib): only the UI
server and the HTML report load it.
"""

import base64
import gc
import io
import math
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from expdb import lifecycle
from expdb.attachments import attachments_of
from expdb.cards import Card, Selection, card_details, select_cards
from expdb.db import Database
from expdb.errors import ExpdbError
from expdb.lifecycle import CARD_STATUSES, RunStatus
from expdb.metrics import definition, format_number, load_definitions
from expdb.plot import (
    BANDS,
    _array,
    _diverged,
    _divergence_steps,
    _Line,
    _lr_drop_steps,
    _value_at_step,
    _x_at_step,
    _x_axis,
    _x_values,
    ema,
    mean_curve,
    reduce_for_drawing,
)
from expdb.queue import queue_entries
from expdb.render import _layout, write_latex, write_markdown
from expdb.series import latest_run_with, read_curve
from expdb.table import Column, ComparisonTable, GroupRow, Row, build_table
from expdb.values import format_value
from expdb.variants import Variant, fold, split_keys
from expdb.views import format_duration, format_time

PAGE_ROWS = 100  # rows of the study table sent at once: a 10,000-card study pages
MAX_BUCKETS = 4000  # per curve: a plot is never wider than this many pixels
X_AXES = ("step", "epoch", "samples", "time")
CACHE_BYTES = 256 * 2**20  # full-resolution curves kept for zooming, at most
WHOLE_KEPT = 4  # reductions of a whole curve kept (per width, log axis, smoothing): a reset zoom is not reduced again
READERS = 2  # curves read at once: this many decompress in parallel, each holding its chunks


# -- the study table ------------------------------------------------------------------------


def _sort_key(column: Column) -> str:
    """What `build_table(sort=...)` takes for this column: `iou50`, `iou50:max`."""
    return f"{column.metric.key}:{column.reduction}" if column.reduction else column.metric.key


def _latest_user_notes(db: Database, card_ids: list[int]) -> dict[int, str]:
    if not card_ids:
        return {}
    among, ids = db.among("card_id", card_ids)
    rows = db.query(f"SELECT card_id, text FROM note WHERE NOT automatic AND {among} ORDER BY created_at, id", ids)
    return {card_id: text for card_id, text in rows}


# What changes whenever anything a table shows does (cards, their parameters and names, runs ending,
# metrics, profiles, curves, tags, notes); read in one query on both backends.
_CHANGES = (
    "SELECT (SELECT count(*) FROM card), (SELECT max(id) FROM card), (SELECT sum(length(params) + length(name)) FROM card), "
    "(SELECT max(id) FROM run), (SELECT count(*) FROM run WHERE ended_at IS NOT NULL), (SELECT count(*) FROM metric), "
    "(SELECT max(id) FROM profile), (SELECT max(id) FROM chunk), (SELECT count(*) FROM tag), (SELECT count(*) FROM note)"
)


@dataclass(frozen=True)
class TableQuery:
    """A table as `expdb table` is asked for it: which cards, metrics, order, baseline and parameter columns."""

    selection: Selection = Selection(invalid=False)  # invalid cards only when asked for (--all)
    metrics: tuple[str, ...] = ()
    sort: str | None = None
    baseline: str | None = None
    params: str = "differing"
    over: str | None = None  # --over seed: one row per variant, with n, mean ± spread and tests against the baseline
    spread: str = "std"


class TableCache:
    """The last tables built, so that paging through 10,000 rows builds the table once; any change to
    the database (see _CHANGES) builds it again."""

    def __init__(self, size: int = 8):
        self.size = size
        self._tables: OrderedDict[tuple, tuple[tuple | None, ComparisonTable]] = OrderedDict()
        self._lock = threading.Lock()
        self._building = threading.Lock()

    def _cached(self, key: tuple, token: tuple | None) -> ComparisonTable | None:
        with self._lock:
            found = self._tables.get(key)
            if found is not None and found[0] == token:
                self._tables.move_to_end(key)
                return found[1]
        return None

    def table(self, db: Database, query: TableQuery) -> ComparisonTable:
        key = (db.location, query)
        token = db.query_one(_CHANGES)
        found = self._cached(key, token)
        if found is not None:
            return found
        # One build at a time: the page's request for the table its page started building (see app.py)
        # waits for it rather than building it again.
        with self._building:
            found = self._cached(key, token)
            return found if found is not None else self._build(db, query, key, token)

    def _build(self, db: Database, query: TableQuery, key: tuple, token: tuple | None) -> ComparisonTable:
        gc.disable()  # as the CLI's views: millions of objects and no cycles; the collector's passes cost a quarter
        try:
            built = build_table(
                db,
                select_cards(db, query.selection),
                list(query.metrics),
                sort=query.sort,
                baseline=query.baseline,
                params=query.params,
                over=query.over,
                spread=query.spread,
            )
        finally:
            gc.enable()
        with self._lock:
            self._tables[key] = (token, built)
            while len(self._tables) > self.size:
                self._tables.popitem(last=False)
        return built


def _column_head(source: tuple[Column, bool] | None) -> tuple[str | None, str]:
    """What a head sorts by (`build_table(sort=...)`; None: not sortable) and its metric's direction."""
    if source is None:
        return None, ""
    column, test = source
    return (None, "") if test else (_sort_key(column), column.metric.direction or "")


def table_page(
    db: Database, query: TableQuery, *, offset: int = 0, limit: int = PAGE_ROWS, cache: TableCache | None = None
) -> dict:
    """One page of the comparison table: heads (with the `sort` each takes), cells as `expdb table` shows them,
    and the notes it prints under them. Folded (`over`), a row is a variant with its cards."""
    table = (cache or TableCache()).table(db, query)
    table.bold  # noqa: B018 -- folded, "not worse than the best" is worked out over the whole table, not the page
    offset, limit = max(0, offset), max(1, limit)
    rows = table.rows[offset : offset + limit]
    # Only this page's cells are laid out (10,000 rows take seconds); with a neighbour when it is one row,
    # since a lone row is never marked best.
    extra = table.rows[offset - 1 : offset] or table.rows[offset + 1 : offset + 2] if len(rows) == 1 else []
    layout = _layout(replace(table, rows=[*rows, *extra]))
    page = list(zip(rows, layout.rows[: len(rows)], strict=True))
    members = [member for row in rows for member in (row.rows if isinstance(row, GroupRow) else [row])]
    notes = _latest_user_notes(db, [member.card.id for member in members])
    heads = [_column_head(source) for source in layout.sources]
    heads[1 : 1 + len(table.param_keys)] = [(key, "") for key in table.param_keys]
    if not table.grouped:  # a variant's name is no value to sort by
        heads[0] = ("name", "")
    return {
        "columns": [
            {"header": header, "numeric": numeric, "sort": sort_by, "direction": direction}
            for header, numeric, (sort_by, direction) in zip(layout.headers, layout.numeric, heads, strict=True)
        ],
        "rows": [_page_row(table, row, cells, notes) for row, cells in page],
        "notes": layout.notes,
        "folded": table.grouped,
        "total": len(table.rows),
        "offset": offset,
        "limit": limit,
    }


def _page_row(table: ComparisonTable, row: Row | GroupRow, cells: list, notes: dict[int, str]) -> dict:
    shown = {
        "baseline": row is table.baseline,
        "invalid": row.invalid_reason or "",
        "cells": [{"text": cell.text, "delta": cell.delta, "best": cell.best} for cell in cells],
    }
    if isinstance(row, GroupRow):  # a variant: its cards, their statuses and tags
        return {
            "variant": row.name,
            "card": None,
            "cards": [member.card.name for member in row.rows],
            "status": "",
            "tags": sorted({tag for member in row.rows for tag in member.card.tags}),
            "note": "",
            **shown,
        }
    return {"card": row.card.name, "status": row.card.status, "tags": row.card.tags, "note": notes.get(row.card.id, ""), **shown}


def table_text(db: Database, query: TableQuery, fmt: str, cache: TableCache | None = None) -> str:
    """The whole table as `expdb table --format md|latex` prints it."""
    table = (cache or TableCache()).table(db, query)
    buffer = io.StringIO()
    (write_markdown if fmt == "md" else write_latex)(table, buffer)
    return buffer.getvalue()


def chips(db: Database) -> dict:
    """The tags in use and the statuses a card can have: the study page's filter chips."""
    tags = [name for (name,) in db.query("SELECT DISTINCT name FROM tag ORDER BY name")]
    keys = [key for (key,) in db.query("SELECT DISTINCT key FROM series ORDER BY key")]
    return {"tags": tags, "statuses": list(CARD_STATUSES), "curves": keys}


# -- a card ---------------------------------------------------------------------------------


def _lineage(db: Database, card: Card, limit: int = 200) -> dict:
    """The card's ancestors, oldest first, and the tree of its forks (at most `limit` of them)."""
    rows = db.query("SELECT id, name, parent_id FROM card")
    names = {card_id: name for card_id, name, _ in rows}
    parent_of = {card_id: parent for card_id, _, parent in rows}
    children: dict[int, list[int]] = {}
    for card_id, _, parent in rows:
        if parent is not None:
            children.setdefault(parent, []).append(card_id)
    ancestors, seen, at = [], {card.id}, parent_of.get(card.id)
    while at is not None and at not in seen:
        seen.add(at)
        ancestors.append(names[at])
        at = parent_of.get(at)
    count = 0

    def tree(card_id: int) -> dict:
        nonlocal count
        kept = []
        for child in children.get(card_id, []):
            if count >= limit:
                break
            count += 1
            kept.append(tree(child))
        return {"name": names[card_id], "children": kept}

    return {"ancestors": ancestors[::-1], "tree": tree(card.id), "cut": count >= limit}


LONG_ENV = ("git_diff", "git_untracked", "packages")  # a run's environment, besides its short facts


def _long_env(key: str, value: object) -> str:
    if isinstance(value, dict):
        joiner = "==" if key == "packages" else "="
        return "\n".join(f"{name}{joiner}{version}" for name, version in value.items())
    if isinstance(value, list):
        return "\n".join(str(item) for item in value)
    return str(value)


def card_page(db: Database, name: str) -> dict:
    details = card_details(db, name)
    card = details.card
    definitions = load_definitions(db)
    runs = []
    for run in details.runs:
        duration = run.ended_at - run.started_at if run.started_at is not None and run.ended_at is not None else None
        runs.append(
            {
                "id": run.id,
                "status": run.status,
                "started": format_time(run.started_at) if run.started_at else "",
                "duration": format_duration(duration) if duration is not None else "",
                "exit_reason": run.exit_reason or "",
                "environment": {
                    key: format_value(value) for key, value in run.env.items() if key != "argv" and key not in LONG_ENV
                },
                # The git diff and the packages run to thousands of lines: the page folds them away.
                "environment_long": {key: _long_env(key, run.env[key]) for key in LONG_ENV if run.env.get(key)},
                "metrics": [
                    {"label": definition(definitions, key).header(), "value": definition(definitions, key).cell(value)}
                    for key, value in run.metrics.items()
                ],
            }
        )
    curve_keys = [
        key
        for (key,) in db.query(
            "SELECT DISTINCT series.key FROM series JOIN run ON run.id = series.run_id WHERE run.card_id = ? ORDER BY series.key",
            (card.id,),
        )
    ]
    profile = None
    if details.profile is not None:
        profile = {key: format_value(value) if not isinstance(value, dict) else value for key, value in details.profile.items()}
    return {
        "name": card.name,
        "parent": card.parent,
        "status": card.status,
        "invalid": card.invalid_reason or "",
        "runner": card.runner or card.command or "",
        "tags": card.tags,
        "created": format_time(card.created_at),
        "params": [
            {
                "key": change.key,
                "value": format_value(change.value),
                "parent": format_value(change.parent_value) if change.parent_value is not None else "",
                "kind": change.kind,
            }
            for change in details.changes
        ],
        "lineage": _lineage(db, card),
        "runs": runs,
        "notes": [
            {"created": format_time(note.created_at), "text": note.text, "automatic": bool(note.automatic), "step": note.step}
            for note in details.notes
        ],
        "profile": profile,
        "curves": curve_keys,
        "attachments": [
            {
                "id": attachment.id,
                "name": attachment.name,
                "size": format_number(attachment.size, "si1") + "B",  # as `expdb show` writes it
                "run": attachment.run_id,
                "note": attachment.note or "",
                "image": attachment.is_image,
                "url": f"/api/attachment/{attachment.id}",
            }
            for attachment in attachments_of(db, [card.id]).get(card.id, [])
        ],
    }


# -- curves ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    """A curve read at full resolution on its x axis, with what every request of it needs worked out once."""

    line: _Line
    ordered: bool  # x finite and never decreasing: a range is a slice
    divergences: list[dict]  # {"step", "x", "y"}: where the run diverged, on this axis, at its unscaled x
    divergence_step: int | None  # the first; later values do not set the y scale
    lr_drops: list[float]
    whole: dict = field(default_factory=dict)  # (buckets, log_y, smooth) -> the whole curve reduced: drawn without a zoom
    smoothed: tuple[float, np.ndarray] | None = None  # the last EMA asked for, on every point: zooms reuse it

    @property
    def nbytes(self) -> int:
        extra = self.smoothed[1].nbytes if self.smoothed is not None else 0
        return self.line.steps.nbytes + self.line.xs.nbytes + self.line.values.nbytes + extra

    def ema(self, weight: float) -> np.ndarray:
        if self.smoothed is None or self.smoothed[0] != weight:
            self.smoothed = (weight, ema(self.line.values, weight))
        return self.smoothed[1]


def _entry(db: Database, line: _Line) -> _Entry:
    finite_x = np.isfinite(line.xs)
    divergences, steps = [], []
    for step in _divergence_steps(db, line.run_id):
        at, value = _x_at_step(line, step, finite_x), _value_at_step(line, step, False)
        if at is not None and value is not None:
            divergences.append({"step": step, "x": at, "y": value})
            steps.append(step)
    drops = [at for step in _lr_drop_steps(db, line.run_id) if (at := _x_at_step(line, step, finite_x)) is not None]
    ordered = bool(finite_x.all()) and bool((line.xs[1:] >= line.xs[:-1]).all())  # no copy of the differences
    return _Entry(line, ordered, divergences, min(steps, default=None), drops)


class CurveCache:
    """Full-resolution curves on their x axis, most recently used kept, so that a zoom reads no chunk.

    A curve is read again when its run has written a chunk since (a live run).
    """

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit = limit
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._reading = threading.Lock()

    def entries(self, db: Database, cards: list[Card], metrics: list[str], x: str) -> dict[str, list[tuple[int, Card, _Entry]]]:
        """metric -> (colour index, card, curve) of each card that logged it; the curves not in memory are
        read in parallel (decompressing releases the GIL), each reader on a connection of its own."""
        wanted = []
        for index, card in enumerate(cards):
            for metric in metrics:
                run_id = latest_run_with(db, card.id, metric)
                if run_id is not None:
                    wanted.append((metric, index, card, run_id, self._key(db, run_id, metric, x)))
        with self._lock:
            found = {key: self._entries[key] for *_, key in wanted if key in self._entries}
            for key in found:
                self._entries.move_to_end(key)
        missing = list({key: (card, metric, run_id) for metric, _, card, run_id, key in wanted if key not in found}.items())

        def read(item: tuple) -> _Entry | None:
            _, (card, metric, run_id) = item
            with Database(db.location) as own:
                line = _read_line(own, card, metric, run_id, x)
                return _entry(own, line) if line is not None else None

        if missing:
            # One batch of reads at a time: a request for curves being read (by its page's early read, see
            # app.py) waits for them rather than reading them again, which would also hold them twice.
            with self._reading:
                with self._lock:
                    found.update({key: self._entries[key] for key, _ in missing if key in self._entries})
                missing = [item for item in missing if item[0] not in found]
                with ThreadPoolExecutor(max_workers=max(1, min(READERS, len(missing)))) as pool:
                    made = list(pool.map(read, missing))
                with self._lock:
                    for (key, _), entry in zip(missing, made, strict=True):
                        if entry is not None:
                            found[key] = self._entries[key] = entry
                    while sum(entry.nbytes for entry in self._entries.values()) > self.limit and len(self._entries) > 1:
                        self._entries.popitem(last=False)
        by_metric: dict[str, list[tuple[int, Card, _Entry]]] = {metric: [] for metric in metrics}
        for metric, index, card, _, key in wanted:
            if key in found:
                by_metric[metric].append((index, card, found[key]))
        return by_metric

    @staticmethod
    def _key(db: Database, run_id: int, metric: str, x: str) -> tuple:
        """What a curve in memory is known by: it is read again once its run has written a chunk or a note since."""
        state = db.query_one(
            "SELECT count(chunk.id), max(chunk.id) FROM chunk JOIN series ON series.id = chunk.series_id "
            "WHERE series.run_id = ? AND series.key = ?",
            (run_id, metric),
        )
        notes = db.query_one("SELECT count(*) FROM note WHERE run_id = ?", (run_id,))
        return (db.location, run_id, metric, x, state, notes)


def _read_line(db: Database, card: Card, metric: str, run_id: int, x: str) -> _Line | None:
    # Only the x axis asked for is decompressed besides steps and values.
    curve = read_curve(db, run_id, metric, axes=(x,))
    if not len(curve):
        return None
    steps = _array(curve.steps, np.int64)
    values = _array(curve.values, np.float64)
    axis, xs = x, _x_values(card, curve, steps, x)
    if xs is None:
        axis, xs = "step", steps.astype(np.float64)
    xs = np.ascontiguousarray(xs, dtype=np.float64)
    return _Line(card, 0, metric, run_id, curve, steps, xs, values, axis)  # its colour is the request's


def _json_numbers(values: np.ndarray) -> list:
    """Numbers for JSON (a folded variant's mean and band): NaN and infinities as null (a gap in the line)."""
    out = values.tolist()
    if not np.isfinite(values).all():
        out = [value if math.isfinite(value) else None for value in out]
    return out


def _packed(values: np.ndarray) -> str:
    """A curve's numbers as base64 of little-endian float64s (chart.js unpacks them; NaN and infinities
    are gaps): no number is printed here nor parsed in the page (printing took a third of a zoom's time)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")


def _visible(entry: _Entry, x0: float | None, x1: float | None) -> slice | np.ndarray:
    """The points in [x0, x1] and one on either side, so that the line runs to the edges: a slice
    (no copy) when x only grows, as it does for steps, samples, epochs and time in a training loop."""
    xs = entry.line.xs
    if x0 is None and x1 is None:
        return slice(None) if entry.ordered else np.nonzero(np.isfinite(xs))[0]
    low = -np.inf if x0 is None else x0
    high = np.inf if x1 is None else x1
    if entry.ordered:
        start = max(0, int(np.searchsorted(xs, low, side="left")) - 1)
        end = min(len(xs), int(np.searchsorted(xs, high, side="right")) + 1)
        return slice(start, end)
    finite = np.nonzero(np.isfinite(xs))[0]
    inside = finite[(xs[finite] >= low) & (xs[finite] <= high)]
    if not len(inside):
        return inside
    position = np.searchsorted(finite, [inside[0], inside[-1]])
    extra = [finite[p] for p in (position[0] - 1, position[1] + 1) if 0 <= p < len(finite)]
    return np.union1d(inside, np.array(extra, dtype=np.int64))


def _scale(entry: _Entry, picked: slice | np.ndarray, log_y: bool) -> list[float] | None:
    """The range of the shown values that may set the y scale: those before the run diverged (unless
    only later ones are shown), finite, and above 0 on a log axis."""
    values, steps = entry.line.values[picked], entry.line.steps[picked]
    if entry.divergence_step is not None and len(steps) and steps[0] < entry.divergence_step:
        cut = int(np.searchsorted(steps, entry.divergence_step, side="left")) if entry.ordered else None
        values = values[:cut] if cut is not None else values[steps < entry.divergence_step]
    usable = values[np.isfinite(values)] if not np.isfinite(values).all() else values
    if log_y:
        usable = usable[usable > 0]
    if not len(usable):
        return None
    return [float(usable.min()), float(usable.max())]


def _series(
    entry: _Entry,
    index: int,
    card: Card,
    x_scale: float,
    x0: float | None,
    x1: float | None,
    buckets: int,
    smooth: float,
    log_y: bool,
) -> dict:
    """One card's curve as the page draws it."""
    line = entry.line
    scale = x_scale if line.x == "time" else 1.0
    memo = (buckets, log_y, smooth) if x0 is None and x1 is None else None
    if memo in entry.whole:
        return {**entry.whole[memo], "card": card.name, "index": index}
    picked = _visible(entry, None if x0 is None else x0 * scale, None if x1 is None else x1 * scale)
    xs, raw = line.xs[picked], line.values[picked]
    if scale != 1.0:
        xs = xs / scale
    if log_y:
        raw = np.where(raw > 0, raw, np.nan)
    rx, ry = reduce_for_drawing(xs, raw, buckets)
    item = {
        "card": card.name,
        "index": index,
        "run": line.run_id,
        "x_axis": line.x,
        "points": len(line.values),
        "shown": len(raw),
        "x": _packed(rx),
        "y": _packed(ry),
        "smooth": None,
        "scale": _scale(entry, picked, log_y),
        "divergences": [{**event, "x": event["x"] / scale} for event in entry.divergences],
        "lr_drops": [at / scale for at in entry.lr_drops],
    }
    if smooth > 0:
        smoothed = entry.ema(smooth)[picked]  # on every point of the curve, then cut to the range
        if log_y:
            smoothed = np.where(smoothed > 0, smoothed, np.nan)
        sx, sy = reduce_for_drawing(xs, smoothed, buckets)
        item["smooth"] = {"x": _packed(sx), "y": _packed(sy)}
    if memo is not None:
        # The oldest go: a smoothing slider must not keep one of each of its positions.
        for stale in list(entry.whole)[: max(0, len(entry.whole) + 1 - WHOLE_KEPT)]:
            entry.whole.pop(stale, None)
        entry.whole[memo] = item
    return item


def curves(
    db: Database,
    cards: list[Card],
    metrics: list[str],
    *,
    x: str = "step",
    smooth: float = 0.0,
    log_y: bool = False,
    x0: float | None = None,
    x1: float | None = None,
    width: int = 1000,
    cache: CurveCache | None = None,
    over: str | None = None,
    band: str = "ci",
) -> dict:
    """One panel per metric, one series per card: the points in [x0, x1] (all by default) reduced to
    min/max buckets of about one per pixel of `width`, raw and (with `smooth`) EMA-smoothed on every point.
    `over` (seed): one mean curve per variant instead, in a band (`band`: the 95% CI of the mean, or std)."""
    if band not in BANDS:
        raise ExpdbError(f"unknown band {band!r}; use one of: {', '.join(BANDS)}")
    if x not in X_AXES:
        raise ExpdbError(f"unknown x axis {x!r}; use one of: {', '.join(X_AXES)}")
    if not 0.0 <= smooth < 1.0:
        raise ExpdbError(f"smoothing must be in [0, 1), not {smooth}")
    if not metrics:
        raise ExpdbError("no metric to draw; pick one, such as loss")
    buckets = max(10, min(int(width), MAX_BUCKETS))
    definitions = load_definitions(db)
    entries = (cache or CurveCache()).entries(db, cards, metrics, x)
    drawn = [entry.line for found in entries.values() for _, _, entry in found]
    x_label, x_scale = _x_axis(drawn, x) if drawn else (x, 1.0)
    variants = fold(cards, split_keys(over)) if over else []

    def drawn_series(metric: str) -> list[dict]:
        if not variants:
            found = entries[metric]
            return [_series(entry, index, card, x_scale, x0, x1, buckets, smooth, log_y) for index, card, entry in found]
        by_card = {card.id: entry for _, card, entry in entries[metric]}
        return [
            item
            for index, variant in enumerate(variants)
            for item in _variant_series(
                db,
                variant,
                index,
                [(card, by_card[card.id]) for card in variant.cards if card.id in by_card],
                x_scale,
                x0,
                x1,
                buckets,
                smooth,
                log_y,
                band,
            )
        ]

    panels = [
        {"metric": metric, "label": definition(definitions, metric).header(), "series": drawn_series(metric)}
        for metric in metrics
    ]
    folded = {"over": split_keys(over), "band": band} if variants else None
    return {"x": x, "x_label": x_label, "smooth": smooth, "log_y": log_y, "folded": folded, "panels": panels}


def _variant_series(
    db: Database,
    variant: Variant,
    index: int,
    members: list[tuple[Card, _Entry]],
    x_scale: float,
    x0: float | None,
    x1: float | None,
    buckets: int,
    smooth: float,
    log_y: bool,
    band: str,
) -> list[dict]:
    """A variant's mean curve over its seeds in its band, as `expdb plot --over` draws it (`plot.mean_curve`), on
    the range shown at full resolution, each seed smoothed on every point first; its diverged seeds drawn on their
    own (dotted), not averaged in."""
    split = [(card, entry, _diverged(db, entry.line)) for card, entry in members]
    healthy = [(card, entry) for card, entry, bad in split if not bad]
    diverged = [(card, entry) for card, entry, bad in split if bad]
    items = [
        {
            **_series(entry, index, card, x_scale, x0, x1, buckets, smooth, log_y),
            "label": f"{card.name} (diverged: not averaged in)",
            "dotted": True,
            "invalid": variant.invalid,
        }
        for card, entry in diverged
    ]

    def label(seeds: int) -> str:
        return f"{variant.name} (n={seeds}" + (f", {len(diverged)} diverged: dotted" if diverged else "") + ")"

    if len(healthy) == 1:  # no mean to take: the curve itself, cut to buckets with its spikes
        card, entry = healthy[0]
        single = _series(entry, index, card, x_scale, x0, x1, buckets, smooth, log_y)
        return [
            {
                **single,
                "card": variant.name,
                "label": label(1),
                "variant": True,
                "cards": [card.name],
                "band": None,
                "invalid": variant.invalid,
            },
            *items,
        ]
    if not healthy:
        return items
    scale = x_scale if healthy[0][1].line.x == "time" else 1.0
    low, high = None if x0 is None else x0 * scale, None if x1 is None else x1 * scale

    def shown(entry: _Entry, values: np.ndarray) -> _Line:
        picked = _visible(entry, low, high)
        line = entry.line
        return replace(line, steps=line.steps[picked], xs=line.xs[picked], values=values[picked])

    raw = [shown(entry, entry.line.values) for _, entry in healthy]
    kept = [number for number, line in enumerate(raw) if np.isfinite(line.xs).any()]  # seeds with points in the range
    if not kept:
        return items

    def masked(values: np.ndarray) -> list:
        return _json_numbers(np.where(values > 0, values, np.nan) if log_y else values)

    xs, mean, band_low, band_high = mean_curve([raw[number] for number in kept], 0.0, band)
    band_xs, smoothed = xs, None
    if smooth > 0:  # the band goes with the curve drawn on top: the smoothed mean
        band_xs, top, band_low, band_high = mean_curve(
            [shown(healthy[number][1], healthy[number][1].ema(smooth)) for number in kept], 0.0, band
        )
        smoothed = {"x": _json_numbers(band_xs / scale), "y": masked(top)}
    bounds = np.concatenate([band_low, band_high])
    bounds = bounds[np.isfinite(bounds) & ((bounds > 0) | (not log_y))]
    seeds = len(kept)
    item = {
        "card": variant.name,
        "label": label(seeds),
        "variant": True,
        "cards": [healthy[number][0].name for number in kept],
        "index": index,
        "run": None,
        "runs": [healthy[number][1].line.run_id for number in kept],  # watched while they run
        "x_axis": healthy[0][1].line.x,
        "points": sum(len(healthy[number][1].line.values) for number in kept),
        "shown": sum(len(raw[number].values) for number in kept),
        "x": _json_numbers(xs / scale),
        "y": masked(mean),
        "smooth": smoothed,
        "band": {"x": _json_numbers(band_xs / scale), "low": masked(band_low), "high": masked(band_high)} if seeds > 1 else None,
        "scale": [float(bounds.min()), float(bounds.max())] if len(bounds) else None,
        "divergences": [],
        "lr_drops": [],
        "invalid": variant.invalid,
    }
    return [item, *items]


def cards_for_curves(db: Database, names: list[str], selection: Selection) -> list[Card]:
    """The cards a curve page shows: those named, else the selection (by tag or filter)."""
    return select_cards(db, Selection(tuple(names)) if names else selection)


# -- live -----------------------------------------------------------------------------------


def _since(entry, moment: float) -> str:
    """How long a run has been running, or queued."""
    since = entry.started_at if entry.status == RunStatus.RUNNING else entry.queued_at
    return format_duration(max(0.0, moment - since)) if since is not None else ""


def live(db: Database) -> dict:
    """The running and queued runs: for each running one, how far it has come (its last logged step and points)."""
    lifecycle.reap(db)  # a run whose process died shows as crashed, not running
    entries = queue_entries(db)
    progress: dict[int, tuple] = {}
    running = [entry.run_id for entry in entries if entry.status == RunStatus.RUNNING]
    if running:
        among, ids = db.among("series.run_id", running)
        for run_id, last_step, points in db.query(
            "SELECT series.run_id, max(chunk.last_step), sum(chunk.count) FROM series JOIN chunk ON chunk.series_id = series.id "
            f"WHERE {among} GROUP BY series.run_id, series.id",
            ids,
        ):
            step, most = progress.get(run_id, (last_step, points))
            progress[run_id] = (max(step, last_step), max(most, points))
    moment = time.time()
    return {
        "runs": [
            {
                "card": entry.card,
                "run": entry.run_id,
                "status": str(entry.status),
                "host": entry.host or "",
                "where": entry.where,
                "launcher": entry.launcher or "",
                "since": _since(entry, moment),
                "step": progress.get(entry.run_id, (None, None))[0],
                "points": progress.get(entry.run_id, (None, None))[1],
            }
            for entry in entries
        ],
    }
