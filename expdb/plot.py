"""Curves of several cards drawn in one figure: `expdb plot`.

Each card contributes its latest run that logged the metric; several metrics make one
subplot each, sharing the x axis, with a card's colour the same in every subplot. Smoothing
(TensorBoard's debiased EMA) runs on the full-resolution curve, then every line is cut to
about 2,000 min/max buckets, which keeps each spike and dip while drawing a few thousand
points instead of millions. The figure is written beside its destination and moved into
place, so a failure never leaves half a file.

The y range of a subplot is chosen from the healthy data: the runs that never diverged (a
diverged run's points before its divergence may only lower it, since a loss often climbs for a
few steps before the NaN is noted; with no steady run, they set it). A diverged run's values
(1e12, inf) would otherwise squash every other curve flat at 0; they are clipped to the edge
of the range instead, and the point where a line leaves the range is marked (a triangle,
"beyond the y range" in the legend). `ylim` sets
either limit by hand; points outside it are clipped and marked the same way.

This module imports numpy and matplotlib at the top: the CLI imports it only for `plot`.
It uses `matplotlib.figure.Figure` directly (no pyplot, no global backend state).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .cards import Card
from .db import Database
from .errors import ExpdbError
from .metrics import definition, load_definitions
from .outputs import (
    beside,
    check_output,
    YLim,
    check_plot_options,
    fill,
    replace_all,
    staging,
)
from .lifecycle import RunStatus
from .series import NO_SAMPLES, Curve, latest_run_with, read_curve
from .variants import Variant, fold, split_keys

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
BUCKETS = 2000  # per line: at most about 2 * BUCKETS points are drawn
ROW_SIZE = (8.0, 4.5)  # inches per subplot row
DPI = 120
RAW_ALPHA = 0.25
Y_MARGIN = 0.05  # of the healthy data's range, above and below it
LR_DROP = 0.5  # an lr falling below this fraction of its previous logged value is a drop
MAX_LR_DROPS = 50  # per run: a cyclic schedule does not cover the plot in lines
_X_LABELS = {"step": "step", "epoch": "epoch", "samples": "samples seen"}
BANDS = ("ci", "std")  # the shaded band around a variant's mean curve: its 95% CI, or +- one std
INVALID_COLOUR = "0.65"  # an invalid card's line (with --all), grey
GRID = 2000  # points of a mean curve when its seeds do not share their x values


@dataclass
class PlottedLine:
    """One card's curve as drawn in one subplot."""

    card: str
    metric: str
    run_id: int
    x: str  # the axis it was drawn against: the one asked for, or "step" when the run lacks it
    points: int  # points of the curve as stored
    drawn: int  # points of the drawn line after reduction
    divergences: int = 0
    lr_drops: int = 0
    clipped: int = 0  # drawn points outside the y range, drawn at its edge


@dataclass
class PlottedBand:
    """A variant's mean curve over its seeds, with its band, as drawn in one subplot."""

    variant: str
    metric: str
    cards: list[str]  # the seeds averaged
    diverged: list[str]  # the seeds drawn on their own: their run diverged or their curve has NaN or inf
    xs: np.ndarray
    mean: np.ndarray
    low: np.ndarray  # the band; equal to the mean with one seed
    high: np.ndarray


@dataclass
class PlotResult:
    path: Path
    warnings: list[str] = field(default_factory=list)  # "cvt_io_v2_5 has no samples axis; drawn against step"
    lines: list[PlottedLine] = field(default_factory=list)
    bands: list[PlottedBand] = field(default_factory=list)
    x_label: str = ""
    y_labels: list[str] = field(default_factory=list)  # one per subplot, in the order of `metrics`
    y_limits: list[tuple[float | None, float | None]] = field(default_factory=list)  # one per subplot; None: matplotlib's


# -- numerical helpers ---------------------------------------------------------------------


def _ema_finite(x: np.ndarray, weight: float) -> np.ndarray:
    """y[n] = weight * y[n-1] + (1 - weight) * x[n], y[-1] = 0, for finite x, without a Python loop per point.

    The curve is cut into blocks short enough that weight**-j stays below ~1e12; within a block
    the recurrence is a cumulative sum of x[j] * weight**-j, and the blocks are chained by their
    last values (one scalar step per block).
    """
    n = len(x)
    if weight == 0.0 or n == 0:
        return x.astype(np.float64, copy=True)
    block = max(1, min(n, int(27.6 / -math.log(weight))))  # weight ** -block <= e ** 27.6 ~ 1e12
    blocks = -(-n // block)
    padded = np.zeros(blocks * block)
    padded[:n] = x
    grid = padded.reshape(blocks, block)
    j = np.arange(block, dtype=np.float64)
    within = grid * weight ** -j
    np.cumsum(within, axis=1, out=within)  # in place: a million-point curve makes no more copies of itself
    within *= (1.0 - weight) * weight**j
    if blocks > 1:
        ends = within[:, -1]
        carry = np.empty(blocks)
        previous, across = 0.0, weight**block
        for index in range(blocks):
            previous = ends[index] + across * previous
            carry[index] = previous
        within[1:] += np.outer(carry[:-1], weight ** (j + 1))
    return within.reshape(-1)[:n]


def ema(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average debiased by 1 - weight**k after k points.

    Non-finite points (NaN, inf) are passed through as they are and skipped by the average, so a
    NaN does not poison the points after it. `weight` in [0, 1); 0 returns the values unchanged.
    """
    if not 0.0 <= weight < 1.0 or math.isnan(weight):
        raise ExpdbError(f"smoothing must be in [0, 1), not {weight}")
    raw = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(raw)
    if weight == 0.0 or not finite.any():
        return raw.copy()
    whole = bool(finite.all())
    kept = raw if whole else raw[finite]  # a curve without gaps is not copied first
    averaged = _ema_finite(kept, weight)
    # Debias by 1 - weight**k; past the point where weight**k < 1e-17 the factor is exactly 1.
    biased = min(len(kept), int(40.0 / -math.log(weight)) + 1)
    averaged[:biased] /= 1.0 - weight ** np.arange(1, biased + 1, dtype=np.float64)
    if whole:
        return averaged
    out = raw.copy()
    out[finite] = averaged
    return out


def reduce_for_drawing(xs, ys, buckets: int = BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 * buckets + 2 points of a line: the minimum and maximum of each run of consecutive points.

    Every extreme survives (a lone spike, a dip), points stay in their order, and a line with
    few enough points is returned whole. NaN values are ignored when picking extremes (a bucket
    that is all NaN keeps one NaN, which matplotlib draws as a gap).
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    n = len(ys)
    if len(xs) != n:
        raise ValueError(f"xs and ys differ in length ({len(xs)} and {n})")
    buckets = max(1, int(buckets))
    if n <= 2 * buckets:
        return xs, ys
    size = -(-n // buckets)  # ceil: at most `buckets` full buckets, then one partial
    full = n // size
    body = ys[: full * size].reshape(full, size)
    isnan = np.isnan(body)
    if isnan.any():
        low = np.where(isnan, np.inf, body).argmin(axis=1)
        high = np.where(isnan, -np.inf, body).argmax(axis=1)
    else:  # the usual curve: no copies of a million points
        low, high = body.argmin(axis=1), body.argmax(axis=1)
    offsets = np.arange(full) * size
    first, second = np.minimum(low, high) + offsets, np.maximum(low, high) + offsets
    # Each bucket's two extremes in their order, once when they are one point: sorted and unique with no sort.
    both = np.stack([first, second], axis=1).ravel()
    keep = np.ones(len(both), dtype=bool)
    keep[1::2] = second != first
    picked = [both[keep]]
    if full * size < n:
        tail = ys[full * size :]
        start = full * size
        if np.isnan(tail).all():
            picked.append(np.array([start]))
        else:
            picked.append(np.array(sorted({start + int(np.nanargmin(tail)), start + int(np.nanargmax(tail))})))
    indices = np.concatenate(picked)
    return xs[indices], ys[indices]


# -- gathering the curves ------------------------------------------------------------------


@dataclass
class _Line:
    card: Card
    colour_index: int
    metric: str
    run_id: int
    curve: Curve
    steps: np.ndarray
    xs: np.ndarray  # in seconds for "time"
    values: np.ndarray
    x: str


def _array(column, dtype) -> np.ndarray:
    return np.frombuffer(column, dtype=dtype) if len(column) else np.zeros(0, dtype=dtype)


def _batch_of(card: Card) -> float | None:
    batch = card.params.get("batch")
    if isinstance(batch, bool) or not isinstance(batch, int | float) or not batch > 0:
        return None
    return float(batch)


def _x_values(card: Card, curve: Curve, steps: np.ndarray, x: str) -> np.ndarray | None:
    """The curve's x coordinates on axis `x` (NaN where a point lacks it), or None when the run lacks the axis."""
    if x == "step":
        return steps.astype(np.float64)
    if x == "time":
        return _array(curve.walls, np.float64)
    if x == "epoch":
        if curve.epochs is None:
            return None
        epochs = _array(curve.epochs, np.float64)
        return spread_whole_epochs(steps, epochs) if np.isfinite(epochs).any() else None
    # samples
    if curve.samples is not None:
        samples = _array(curve.samples, np.int64)
        logged = samples != NO_SAMPLES
        if logged.any():
            return np.where(logged, samples.astype(np.float64), np.nan)
    batch = _batch_of(card)
    return None if batch is None else steps * batch


def spread_whole_epochs(steps: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Epochs logged as whole numbers (Lightning's count) put an epoch's points at one x: on a curve where an epoch
    number repeats, each point is spread over its epoch by its steps since the epoch's first point, at the steps an
    epoch takes (the median from one epoch's first point to the next's, but the first epoch's; at least the steps
    any epoch's points cover), so each stays within the epoch logged.

    A curve with one point an epoch (a validation metric, the HF Trainer's evaluations) has no bar to spread and
    is left as logged, as are fractional epochs (the HF Trainer's, the importers', expdb's runners')."""
    logged = np.flatnonzero(np.isfinite(epochs))
    whole, at = epochs[logged], steps[logged].astype(np.float64)
    if not np.array_equal(whole, np.floor(whole)):
        return epochs
    order = np.argsort(whole, kind="stable")
    numbers, firsts = np.unique(whole[order], return_index=True)
    if len(numbers) < 2 or len(numbers) == len(whole):
        return epochs
    by_epoch = at[order]
    starts = np.minimum.reduceat(by_epoch, firsts)  # each epoch's first step
    if not np.all(np.diff(starts) > 0):  # epochs that do not follow the steps (a resumed run counting again)
        return epochs
    spans = np.diff(starts) / np.diff(numbers)
    typical = float(np.median(spans[1:] if len(spans) > 1 else spans))  # the first epoch's may be cut by the start of logging
    # Long enough for every epoch's points: none reaches the next epoch's x.
    length = max(typical, float(np.max(np.maximum.reduceat(by_epoch, firsts) - starts)) + 1.0)
    since = at - starts[np.searchsorted(numbers, whole)]
    spread = epochs.copy()
    spread[logged] = whole + since / length
    return spread


def _no_metric_error(db: Database, cards: list[Card], metrics: list[str]) -> ExpdbError:
    wanted = " or ".join(repr(metric) for metric in metrics)
    parts, shown, limit = [], 0, 20
    for card in cards:
        runs = db.query("SELECT id FROM run WHERE card_id = ? ORDER BY id", (card.id,))
        if not runs:
            parts.append(f"{card.name} has no runs")
            continue
        for (run_id,) in runs:
            shown += 1
            if shown > limit:
                continue
            keys = [key for (key,) in db.query("SELECT key FROM series WHERE run_id = ? ORDER BY key", (run_id,))]
            parts.append(f"{card.name} run {run_id} has {', '.join(keys) if keys else 'no curves'}")
    if shown > limit:
        parts.append(f"and {shown - limit} more runs")
    return ExpdbError(f"no run has a {wanted} curve: {'; '.join(parts)}")


def _gather(db: Database, cards: list[Card], metrics: list[str], x: str, warnings: list[str]) -> dict[str, list[_Line]]:
    by_metric: dict[str, list[_Line]] = {metric: [] for metric in metrics}
    fell_back: set[str] = set()
    for colour_index, card in enumerate(cards):
        for metric in metrics:
            run_id = latest_run_with(db, card.id, metric)
            if run_id is None:
                continue
            curve = read_curve(db, run_id, metric)
            if not len(curve):
                continue
            steps = _array(curve.steps, np.int64)
            values = _array(curve.values, np.float64)
            axis, xs = x, _x_values(card, curve, steps, x)
            if xs is None:
                axis, xs = "step", steps.astype(np.float64)
                if card.name not in fell_back:
                    fell_back.add(card.name)
                    warnings.append(f"{card.name} has no {x} axis; drawn against step")
            by_metric[metric].append(_Line(card, colour_index, metric, run_id, curve, steps, xs, values, axis))
    if not any(by_metric.values()):
        raise _no_metric_error(db, cards, metrics)
    for metric, lines in by_metric.items():
        drawn = {line.card.name for line in lines}
        missing = [card.name for card in cards if card.name not in drawn]
        if not lines:
            warnings.append(f"no run has a {metric!r} curve; its subplot is empty")
        elif missing:
            warnings.append(f"{', '.join(missing)}: no run with a {metric!r} curve")
    return by_metric


# -- events on the curves ------------------------------------------------------------------


def _divergence_steps(db: Database, run_id: int) -> list[int]:
    rows = db.query("SELECT DISTINCT step FROM note WHERE run_id = ? AND automatic AND step IS NOT NULL ORDER BY step", (run_id,))
    return [row[0] for row in rows]


def _lr_drop_steps(db: Database, run_id: int) -> list[int]:
    if db.query_one("SELECT 1 FROM series WHERE run_id = ? AND key = 'lr'", (run_id,)) is None:
        return []
    curve = read_curve(db, run_id, "lr", axes=())  # its steps and values: no other axis is decompressed
    lr = _array(curve.values, np.float64)
    steps = _array(curve.steps, np.int64)
    finite = np.isfinite(lr)
    lr, steps = lr[finite], steps[finite]
    if len(lr) < 2:
        return []
    drops = np.nonzero((lr[:-1] > 0) & (lr[1:] < LR_DROP * lr[:-1]))[0] + 1
    return [int(step) for step in steps[drops[:MAX_LR_DROPS]]]


def _x_at_step(line: _Line, step: int, finite_x: np.ndarray) -> float | None:
    """The x coordinate of `step` on the line's axis (interpolated between the points that have one)."""
    if finite_x.all():
        # The steps are in order: the points on either side of `step` are all np.interp needs (no copy of the curve).
        at = int(np.searchsorted(line.steps, step))
        around = slice(max(at - 1, 0), at + 1)
        return float(np.interp(step, line.steps[around], line.xs[around]))
    if not finite_x.any():
        return None
    steps = line.steps[finite_x].astype(np.float64)
    return float(np.interp(step, steps, line.xs[finite_x]))


def _value_at_step(line: _Line, step: int, log_y: bool) -> float | None:
    """The raw value at `step` (the last point at or before it); when not finite, the last finite one before."""
    index = int(np.searchsorted(line.steps, step, side="right")) - 1
    index = max(index, 0)
    window = line.values[: index + 1]
    usable = np.isfinite(window) & (window > 0) if log_y else np.isfinite(window)
    candidates = np.nonzero(usable)[0]
    return float(window[candidates[-1]]) if len(candidates) else None


# -- drawing -------------------------------------------------------------------------------


def _time_unit(lines: list[_Line]) -> tuple[str, float]:
    longest = 0.0
    for line in lines:
        if line.x == "time" and len(line.xs):
            finite = line.xs[np.isfinite(line.xs)]
            if len(finite):
                longest = max(longest, float(finite.max()))
    if longest > 3 * 3600:
        return "time (h)", 3600.0
    if longest > 3 * 60:
        return "time (min)", 60.0
    return "time (s)", 1.0


def _colour(index: int) -> tuple[str, str]:
    """A card's colour and line style: ten colours, then the same colours dashed, then dotted."""
    return f"C{index % 10}", ("-", "--", "-.", ":")[(index // 10) % 4]


def _save(figure: Figure, output: Path, fmt: str) -> None:
    """Write beside the destination, then move into place: the destination is whole or untouched."""
    with staging() as staged:
        staged.append((beside(output), output))
        fill(staged[0][0], lambda handle: figure.savefig(handle, format=fmt, dpi=DPI), binary=True, shown=output)
        replace_all(staged)


def _x_axis(lines: list[_Line], x: str) -> tuple[str, float]:
    """The x axis's label, and what time is divided by to be shown in its unit."""
    if x == "time":
        x_label, x_scale = _time_unit(lines)
    else:
        x_label, x_scale = _X_LABELS[x], 1.0
    if any(line.x != x for line in lines):
        x_label += " (step where missing)"
    return x_label, x_scale


def _healthy(line: _Line, divergence_steps: list[int], log_y: bool) -> np.ndarray:
    """The values that may set the y range: those before the run's first divergence, finite (above 0 on a log scale)."""
    values = line.values[line.steps < divergence_steps[0]] if divergence_steps else line.values
    usable = np.isfinite(values) & (values > 0) if log_y else np.isfinite(values)
    return values[usable]


def y_limits(steady: list[np.ndarray], diverged: list[np.ndarray], ylim: YLim | None, log_y: bool) -> YLim:
    """The y range, where `ylim` does not set a limit (None: left to matplotlib): the values of the runs that never
    diverged, with a margin. A diverged run's values before its divergence may lower the range but not raise it:
    a loss often climbs for a few steps before the NaN that is noted. With no steady run, those values set it."""
    given_low, given_high = ylim if ylim is not None else (None, None)
    steady_pool = np.concatenate(steady) if steady else np.zeros(0)
    diverged_pool = np.concatenate(diverged) if diverged else np.zeros(0)
    pool = steady_pool if len(steady_pool) else diverged_pool
    if not len(pool):
        return given_low, given_high
    low, high = float(min(pool.min(), diverged_pool.min() if len(diverged_pool) else np.inf)), float(pool.max())
    if log_y:
        a, b = math.log10(low), math.log10(high)
        pad = (b - a) * Y_MARGIN or 0.05
        low, high = 10 ** (a - pad), 10 ** (b + pad)
    else:
        pad = (high - low) * Y_MARGIN or (abs(high) * Y_MARGIN or 1.0)
        low, high = low - pad, high + pad
    # A limit given by hand wins; the other one is kept when it still lies on its side of it.
    if given_low is not None:
        return given_low, given_high if given_high is not None else (high if high > given_low else None)
    if given_high is not None:
        return (low if low < given_high else None), given_high
    return low, high


def _clipped(ys: np.ndarray, limits: YLim) -> tuple[np.ndarray, int | None, int]:
    """`ys` held inside the limits, the index of the first point that was outside, and how many were."""
    low, high = limits
    outside = np.zeros(len(ys), dtype=bool)
    if low is not None:
        outside |= ys < low
    if high is not None:
        outside |= ys > high
    if not outside.any():
        return ys, None, 0
    return np.clip(ys, low, high), int(np.argmax(outside)), int(outside.sum())


def _draw_line(
    ax, line: _Line, finite_x: np.ndarray, scale: float, smooth: float, log_y: bool, buckets: int, limits: YLim, label: str
) -> tuple[int, bool, int]:
    """The line's curve, raw and faint under its smoothed curve when `smooth`, held inside `limits` with a
    triangle where it first leaves them: how many points the top curve has, whether any can be seen, and how
    many of its points were clipped."""
    colour, style = _colour(line.colour_index)
    if line.card.invalid_reason:  # shown under --all only, greyed, saying why
        colour, label = INVALID_COLOUR, f"{label} (invalid: {line.card.invalid_reason})"
    xs = line.xs[finite_x] / scale
    raw = line.values[finite_x]
    if log_y:
        raw = np.where(raw > 0, raw, np.nan)
    rx, ry = reduce_for_drawing(xs, raw, buckets)
    visible = bool(np.isfinite(ry).any())
    top_x, top_y = rx, ry
    if smooth > 0:
        ax.plot(rx, _clipped(ry, limits)[0], color=colour, linestyle=style, linewidth=0.8, alpha=RAW_ALPHA)
        smoothed = ema(line.values, smooth)[finite_x]
        if log_y:
            smoothed = np.where(smoothed > 0, smoothed, np.nan)
        top_x, top_y = reduce_for_drawing(xs, smoothed, buckets)
    shown, first_out, clipped = _clipped(top_y, limits)
    ax.plot(top_x, shown, color=colour, linestyle=style, linewidth=1.4 if smooth > 0 else 1.2, label=label)
    if first_out is not None:
        above = limits[1] is not None and top_y[first_out] > limits[1]
        ax.plot([top_x[first_out]], [shown[first_out]], marker="^" if above else "v", markersize=8, color=colour,
                linestyle="none", zorder=5, clip_on=False)
    return len(top_x), visible, clipped


def _mark_events(
    ax, line: _Line, finite_x: np.ndarray, scale: float, log_y: bool, limits: YLim,
    divergence_steps: list[int], drop_steps: list[int],
) -> tuple[int, int]:
    """A cross where the run diverged, a dotted vertical line where its learning rate dropped: how many of each."""
    colour, _ = _colour(line.colour_index)
    marked = 0
    for step in divergence_steps:
        at, value = _x_at_step(line, step, finite_x), _value_at_step(line, step, log_y)
        if at is None or value is None:
            continue
        value = float(_clipped(np.array([value]), limits)[0][0])  # at the edge, over the clipped curve's triangle
        ax.plot([at / scale], [value], marker="x", markersize=9, markeredgewidth=2, color=colour, linestyle="none", zorder=6,
                clip_on=False)
        marked += 1
    drops = 0
    for step in drop_steps:
        at = _x_at_step(line, step, finite_x)
        if at is None:
            continue
        ax.axvline(at / scale, color=colour, linestyle=":", linewidth=1.0, alpha=0.35)
        drops += 1
    return marked, drops


def _label_axes(ax, y_label: str, log_y: bool, limits: YLim, has_divergence: bool, has_drop: bool, has_clipped: bool) -> None:
    """The subplot's y label, grid, scale and range, and its legend: the cards, and the marks when there are any."""
    ax.set_ylabel(y_label)
    ax.grid(True, which="major", alpha=0.3)
    if log_y:
        ax.set_yscale("log")
    if limits != (None, None):
        ax.set_ylim(bottom=limits[0], top=limits[1])
    handles, labels = ax.get_legend_handles_labels()
    if has_clipped:
        handles.append(Line2D([], [], marker="^", color="0.3", linestyle="none"))
        labels.append("beyond the y range (clipped)")
    if has_divergence:
        handles.append(Line2D([], [], marker="x", color="0.3", linestyle="none", markeredgewidth=2))
        labels.append("divergence")
    if has_drop:
        handles.append(Line2D([], [], color="0.3", linestyle=":", alpha=0.6))
        labels.append("lr drop")
    if handles:
        ax.legend(handles, labels, loc="best", fontsize="small", ncols=1 if len(handles) <= 8 else 2)


# -- folded seeds: a mean curve and its band per variant -----------------------------------


def _diverged(db: Database, line: _Line) -> bool:
    status = db.query_one("SELECT status FROM run WHERE id = ?", (line.run_id,))
    return (status is not None and status[0] == RunStatus.DIVERGED) or not bool(np.isfinite(line.values).all())


def mean_curve(lines: list[_Line], smooth: float, band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, mean, band low and band high of `lines` (at least one): on the x values they share, else on a grid
    over the range they all cover; the band is the 95% CI of the mean (t) or +- one std, none for one line."""
    from .stats import t_quantile

    curves = []
    for line in lines:
        keep = np.isfinite(line.xs)
        values = ema(line.values, smooth) if smooth > 0 else line.values
        curves.append((line.xs[keep], values[keep]))
    first = curves[0][0]
    if all(len(xs) == len(first) and np.array_equal(xs, first) for xs, _ in curves) and len(first) <= 2 * GRID:
        grid, stacked = first, np.vstack([values for _, values in curves])
    else:
        low, high = max(float(xs.min()) for xs, _ in curves), min(float(xs.max()) for xs, _ in curves)
        if low > high:
            raise ExpdbError("the seeds of a variant cover no common x range; plot them without --over")
        grid = np.linspace(low, high, GRID)
        stacked = np.vstack([np.interp(grid, xs, values) for xs, values in curves])
    mean = stacked.mean(axis=0)
    n = len(curves)
    if n < 2:
        return grid, mean, mean, mean
    spread = stacked.std(axis=0, ddof=1)
    if band == "ci":
        spread = spread * t_quantile(0.975, n - 1) / math.sqrt(n)
    return grid, mean, mean - spread, mean + spread


def _draw_variants(
    db: Database, ax, variants: list[Variant], lines: list[_Line], metric: str, scale: float, smooth: float, band: str,
    limits: YLim,
) -> list[PlottedBand]:
    by_card = {line.card.id: line for line in lines}
    drawn = []
    for index, variant in enumerate(variants):
        present = [by_card[card.id] for card in variant.cards if card.id in by_card]
        if not present:
            continue
        colour, style = _colour(index)
        if variant.invalid:
            colour = INVALID_COLOUR
        healthy = [line for line in present if not _diverged(db, line)]
        diverged = [line for line in present if line not in healthy]
        for line in diverged:  # shown, not averaged in
            finite_x = np.isfinite(line.xs)
            rx, ry = reduce_for_drawing(line.xs[finite_x] / scale, line.values[finite_x])
            ax.plot(rx, _clipped(ry, limits)[0], color=colour, linestyle=":", linewidth=0.9, alpha=0.7)
            marked = replace(line, colour_index=index)
            _mark_events(ax, marked, finite_x, scale, False, limits, _divergence_steps(db, line.run_id), [])
        label = f"{variant.name} (n={len(healthy)}" + (f", {len(diverged)} diverged: dotted" if diverged else "") + ")"
        if not healthy:
            ax.plot([], [], color=colour, linestyle=":", label=label)
            continue
        xs, mean, low, high = mean_curve(healthy, smooth, band)
        ax.plot(xs / scale, mean, color=colour, linestyle=style, linewidth=1.4, label=label)
        if len(healthy) > 1:
            ax.fill_between(xs / scale, low, high, color=colour, alpha=0.2, linewidth=0)
        drawn.append(
            PlottedBand(
                variant.name, metric, [line.card.name for line in healthy], [line.card.name for line in diverged],
                xs, mean, low, high,
            )
        )
    _fit_to_bands(ax, drawn)
    return drawn


def _fit_to_bands(ax, drawn: list[PlottedBand]) -> None:
    """A diverged seed may fly far off; the y axis keeps to the mean curves and their bands, the comparison."""
    if not any(band.diverged for band in drawn):
        return
    finite = np.concatenate([values[np.isfinite(values)] for band in drawn for values in (band.low, band.high)])
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        margin = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
        ax.set_ylim(low - margin, high + margin)


def plot_curves(
    db: Database,
    cards: list[Card],
    metrics: list[str],
    output: Path,
    *,
    x: str = "step",
    smooth: float = 0.0,
    log_y: bool = False,
    ylim: YLim | None = None,
    title: str | None = None,
    buckets: int = BUCKETS,
    over: str | list[str] | None = None,
    band: str = "ci",
) -> PlotResult:
    """Draw `metrics` (one subplot each) of `cards` (one line each) into `output` (.png, .svg or .pdf).

    `ylim`: (low, high), either None, from `outputs.parse_ylim`; the rest of the range comes from the healthy data.
    `over` (seed): one mean curve per variant instead, on the x values its seeds share (else on a grid
    over their common range), in a band (`band`: its 95% CI, or +- one std); seeds that diverged are
    drawn dotted on their own and counted in the legend, not averaged in.
    """
    output = Path(output)
    check_plot_options(x, smooth)
    if band not in BANDS:
        raise ExpdbError(f"unknown --band {band!r}; use one of: {', '.join(BANDS)}")
    if not cards:
        raise ExpdbError("no cards to plot")
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise ExpdbError("no metric to plot; give one with --metric")
    fmt = FORMATS[check_output(output, tuple(FORMATS)).suffix.lower()]

    warnings: list[str] = []
    by_metric = _gather(db, cards, metrics, x, warnings)
    x_label, x_scale = _x_axis([line for lines in by_metric.values() for line in lines], x)
    result = PlotResult(output, warnings, x_label=x_label)
    events: dict[int, tuple[list[int], list[int]]] = {}  # run id -> (divergence steps, lr drop steps)
    visible = False  # some line has a point that can be drawn
    definitions = load_definitions(db)

    rc: dict[Any, Any] = {"svg.fonttype": "none", "pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "expdb"}
    with matplotlib.rc_context(rc):
        figure = Figure(figsize=(ROW_SIZE[0], ROW_SIZE[1] * len(metrics)), dpi=DPI, layout="constrained")
        axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
        variants = fold(cards, split_keys(over)) if over else []
        for ax, metric in zip(axes, metrics, strict=True):
            y_label = definition(definitions, metric).header()
            result.y_labels.append(y_label)
            has_divergence = has_drop = has_clipped = False
            for line in by_metric[metric]:
                if line.run_id not in events:
                    events[line.run_id] = (_divergence_steps(db, line.run_id), _lr_drop_steps(db, line.run_id))
            steady = [_healthy(line, [], log_y) for line in by_metric[metric] if not events[line.run_id][0]]
            diverged = [_healthy(line, events[line.run_id][0], log_y) for line in by_metric[metric] if events[line.run_id][0]]
            limits = y_limits(steady, diverged, ylim, log_y)
            result.y_limits.append(limits)
            if variants:
                bands = _draw_variants(
                    db, ax, variants, by_metric[metric], metric, x_scale if x == "time" else 1.0, smooth, band, limits
                )
                result.bands += bands
                visible = visible or any(bool(np.isfinite(drawn.mean).any()) for drawn in bands)
                what = "95% CI of the mean" if band == "ci" else "+- one std"
                ax.set_title(f"mean over {', '.join(split_keys(over))}; band: {what}", fontsize="small", color="0.35")
            for line in by_metric[metric] if not variants else []:
                finite_x = np.isfinite(line.xs)
                scale = x_scale if line.x == "time" else 1.0
                label = line.card.name if line.x == x else f"{line.card.name} (no {x} axis: by step)"
                drawn, line_visible, clipped = _draw_line(ax, line, finite_x, scale, smooth, log_y, buckets, limits, label)
                visible = visible or line_visible
                marked, drops = _mark_events(ax, line, finite_x, scale, log_y, limits, *events[line.run_id])
                has_divergence |= marked > 0
                has_drop |= drops > 0
                has_clipped |= clipped > 0
                result.lines.append(
                    PlottedLine(line.card.name, metric, line.run_id, line.x, len(line.values), drawn, marked, drops, clipped)
                )
            _label_axes(ax, y_label, log_y, limits, has_divergence, has_drop, has_clipped)
            if not by_metric[metric]:
                ax.text(0.5, 0.5, f"no run has {metric!r}", transform=ax.transAxes, ha="center", va="center", color="0.5")
        if not visible:
            why = " on a log scale (no value above 0)" if log_y else " (every value is NaN or inf)"
            raise ExpdbError(f"nothing to draw of {', '.join(metrics)}{why}; nothing written")
        axes[-1].set_xlabel(x_label)
        if title:
            figure.suptitle(title)
        _save(figure, output, fmt)
    return result
