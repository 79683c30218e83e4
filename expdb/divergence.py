"""Streaming divergence detection: the moment a run went wrong, as a researcher notes it.

A `DivergenceDetector` is fed every logged step, `observe(step, {"loss": 0.83, "grad_norm": 7.2, ...})`,
either live (from the logging thread) or while an old log is imported (`detect_all`). It returns the
new `Divergence` events, each reported once, with a one-line message for the notebook:

    loss became NaN at step 30,120 (last finite 3.2e+05 at step 30,119)
    loss shot up at step 1,200: 4.1e+03, 52x its recent level 78.5, and stayed up
    gradient norm exploded at step 900: 3.2e+06, 450x its recent level 7.1e+03

Which curves are watched (case-insensitive; a key is split into segments at `.`, `/`, `:` and spaces):

- Loss curves: a segment that is `loss`, ends in `loss` or contains `loss_` / `loss-`, e.g. `loss`,
  `val_loss`, `loss_cls`, `d0.loss_cls`, `s1.loss_bbox`, `train/loss`, `loss/total`. Settings that
  merely mention the loss are not losses: `loss_scale` / `loss_scaler` (mixed-precision loss
  scaling), `loss_weight`, `loss_coef`, `loss_lambda`.
- Gradient norms: a segment that, without `_` and `-`, ends in `gradnorm` or `gradientnorm`, e.g.
  `grad_norm`, `grad-norm`, `gradnorm`, `train/grad_norm`, `total_grad_norm`.
- Everything else (`lr`, `acc`, `memory`, `time`, ...) is ignored, even when NaN or huge. Values
  that are not numbers (None, booleans, unparsable strings) are skipped; numeric strings such as
  "nan" or "1e5" from imported logs are read as numbers.

Events (`Divergence.kind`):

- "non-finite": the first NaN / inf / -inf on a watched curve. Message
  "<key> became NaN at step 412 (last finite 3.2e+05 at step 411)", or "became inf" / "became -inf",
  or "... at step 0 (never finite)" when the curve never had a finite value. A diverging model turns
  every loss (and its gradient norm) NaN at once, so the non-finite curves of one `observe` call make
  ONE event, named after `loss` (the total) when it is among them, else the first loss key in the
  order given, else the first gradient-norm key. The losses report non-finite once per run (a
  component going NaN after the total did is a consequence, not news); the gradient norms report
  once, and never after the losses did. A gradient norm going inf before the loss does is reported on
  its own (under mixed precision an occasional inf gradient norm is an overflow the scaler skips, so
  a later NaN loss is still reported). A curve is no longer examined for spikes or explosions once it
  has had a non-finite value.
- "loss-spike": a loss value above `spike_factor` x the curve's running level, for `sustain`
  consecutive observations of that key. The running level is the median of the last `window` finite
  values of that key. Nothing is examined before the key has `warmup` finite observations (the fast
  drop at the start of training is downward anyway, and the median resists a single noisy batch), nor
  while the level is zero or negative (a loss that is exactly 0, or a signed loss, has no ratio).
  Values of a run still above the threshold are held out of the window, so a long spike cannot raise
  its own baseline; when the run ends before `sustain` (an outlier batch), they join the window. The
  event carries the step where the spike began, its value there and the ratio to the level then.
  Reported once per loss key; when several loss keys confirm a spike in the same call, one event
  (`loss` preferred, else the earliest start, else the first in order), and the loss keys that were
  above their threshold at that moment are counted as part of it.
- "grad-explosion": the same rule on each gradient-norm curve with `grad_factor`; once per key.

`observe` costs O(number of values) plus, per watched value, a bisect into a sorted window of at most
`window` floats; it takes a lock, so it may be called from any thread. Events are returned in step
order (non-finite before spikes at the same step).
"""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Divergence", "DivergenceDetector", "detect_all", "detect_block", "is_loss_key", "is_grad_norm_key"]

NON_FINITE = "non-finite"
LOSS_SPIKE = "loss-spike"
GRAD_EXPLOSION = "grad-explosion"
_KIND_ORDER = {NON_FINITE: 0, LOSS_SPIKE: 1, GRAD_EXPLOSION: 2}

_SEGMENTS = re.compile(r"[./:\s]+")
_NOT_LOSS = re.compile(r"loss[_-]?(scale|scaler|scaling|weight|weights|coef|coeff|lambda)(?![a-z])")
_GRAD_NAMES = {"grad_norm", "grad-norm", "gradnorm"}

_LOSS = "loss"
_GRAD = "grad"


@dataclass(frozen=True)
class Divergence:
    kind: str  # "non-finite", "loss-spike", "grad-explosion"
    key: str  # the curve it was seen on, e.g. "loss" or "grad_norm"
    step: int
    message: str  # one line, for the notebook

    def __str__(self) -> str:
        return self.message


def is_loss_key(key: str) -> bool:
    """Whether `key` names a loss curve (`loss`, `val_loss`, `loss_cls`, `d0.loss_cls`, not `loss_scale`)."""
    lowered = key.strip().lower()
    if _NOT_LOSS.search(lowered):
        return False
    return any(
        segment.endswith("loss") or "loss_" in segment or "loss-" in segment
        for segment in _SEGMENTS.split(lowered)
    )


def is_grad_norm_key(key: str) -> bool:
    """Whether `key` names a gradient norm (`grad_norm`, `grad-norm`, `gradnorm`, `train/grad_norm`)."""
    for segment in _SEGMENTS.split(key.strip().lower()):
        squeezed = segment.replace("_", "").replace("-", "")
        if squeezed.endswith("gradnorm") or squeezed.endswith("gradientnorm"):
            return True
    return False


def format_step(step: int) -> str:
    """A step with thousands separators: 30,120."""
    return f"{step:,}"


def format_value(value: float) -> str:
    """A logged value, short: 0.8832, 78.5, 3.2e+05, NaN, inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 1e3 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def format_ratio(ratio: float) -> str:
    """How many times the level: 52x, 1,450x, 3.5x, 2.1e+07x."""
    if ratio >= 1e6:
        return f"{ratio:.2g}x"
    if ratio >= 10:
        return f"{round(ratio):,}x"
    return f"{ratio:.2g}x"


def _as_float(raw: object) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        return raw
    try:
        return float(raw.strip() if isinstance(raw, str) else raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def _as_step(step: object) -> int:
    if isinstance(step, float) and step.is_integer():
        return int(step)
    return step  # type: ignore[return-value]


class _Spike:
    __slots__ = ("step", "value", "level", "held")

    def __init__(self, step: int, value: float, level: float):
        self.step = step
        self.value = value
        self.level = level
        self.held: list[float] = []


class _Curve:
    """One watched key: its last finite value, its running window and a spike in progress."""

    __slots__ = ("key", "family", "last_value", "last_step", "seen", "sorted", "recent", "spike", "done", "dead")

    def __init__(self, key: str, family: str):
        self.key = key
        self.family = family
        self.last_value: float | None = None
        self.last_step: int | None = None
        self.seen = 0  # finite observations so far
        self.sorted: list[float] = []  # the window, sorted, for the median
        self.recent: deque[float] = deque()  # the window, in arrival order, for eviction
        self.spike: _Spike | None = None
        self.done = False  # its spike / explosion was reported (or folded into one)
        self.dead = False  # it had a non-finite value

    def level(self) -> float:
        values, n = self.sorted, len(self.sorted)
        middle = n // 2
        return values[middle] if n % 2 else (values[middle - 1] + values[middle]) / 2

    def _remember(self, value: float, window: int) -> None:
        insort(self.sorted, value)
        self.recent.append(value)
        if len(self.recent) > window:
            old = self.recent.popleft()
            del self.sorted[bisect_left(self.sorted, old)]

    def push(self, step: int, value: float, factor: float, window: int, sustain: int, warmup: int) -> _Spike | None:
        """Take one finite value; return the spike when this value makes it `sustain` long."""
        if self.seen >= warmup and self.sorted:
            level = self.level()
            if level > 0 and value > factor * level:
                self.seen += 1
                if self.spike is None:
                    self.spike = _Spike(step, value, level)
                self.spike.held.append(value)
                return self.spike if len(self.spike.held) >= sustain else None
        if self.spike is not None:  # the run ended short: those were noisy batches after all
            for held in self.spike.held:
                self._remember(held, window)
            self.spike = None
        self.seen += 1
        self._remember(value, window)
        return None

    def absorb(self, steps: Sequence[int], values: Sequence[float], factor: float, window: int) -> bool:
        """Take many values at once if none of them can raise an event; False when they might.

        Leaves the same state as pushing them one by one. A median is never below the
        smallest value in its window, so no value below `factor` x that floor can spike.
        """
        if not values:
            return True
        if self.dead:  # only its last finite value still matters
            for step, value in zip(reversed(steps), reversed(values), strict=True):
                if math.isfinite(value):
                    self.last_value, self.last_step = value, step
                    break
            return True
        if not math.isfinite(sum(values)):
            return False
        if self.done:
            self.last_value, self.last_step = values[-1], steps[-1]
            return True
        if self.spike is not None:
            return False
        # Block by block: a median of the last `window` values lies within this block and the one
        # before, so it is at least the smaller of their minimums.
        block = max(window, 256)
        floor = self.sorted[0] if self.sorted else math.inf
        for start in range(0, len(values), block):
            part = values[start : start + block]
            lowest = min(part)
            if min(floor, lowest) <= 0 or max(part) > factor * min(floor, lowest):
                return False
            floor = lowest
        self.seen += len(values)
        self.recent = deque((list(self.recent) + list(values[-window:]))[-window:])
        self.sorted = sorted(self.recent)
        self.last_value, self.last_step = values[-1], steps[-1]
        return True

    def retire(self) -> None:
        """Stop examining for spikes; drop the window."""
        self.done = True
        self.spike = None
        self.sorted = []
        self.recent.clear()


class DivergenceDetector:
    """Watches the values logged at each step and reports NaN losses, loss spikes and gradient explosions."""

    def __init__(
        self,
        spike_factor: float = 10.0,
        grad_factor: float = 100.0,
        window: int = 50,
        sustain: int = 3,
        warmup: int = 20,
    ):
        if not spike_factor > 1 or not grad_factor > 1:
            raise ValueError("spike_factor and grad_factor must be greater than 1")
        if window < 1 or sustain < 1 or warmup < 0:
            raise ValueError("window and sustain must be at least 1, warmup at least 0")
        self.spike_factor = float(spike_factor)
        self.grad_factor = float(grad_factor)
        self.window = int(window)
        self.sustain = int(sustain)
        self.warmup = int(warmup)
        self._curves: dict[str, _Curve | None] = {}  # None: a key that is not watched
        self._loss_non_finite = False  # the losses reported their non-finite event
        self._grad_non_finite = False
        self._events: list[Divergence] = []
        self._lock = threading.Lock()

    @property
    def events(self) -> list[Divergence]:
        """Every event reported so far, in the order reported."""
        with self._lock:
            return list(self._events)

    def _curve(self, key: str) -> _Curve | None:
        try:
            return self._curves[key]
        except KeyError:
            pass
        family = _LOSS if is_loss_key(key) else _GRAD if is_grad_norm_key(key) else None
        curve = _Curve(key, family) if family else None
        self._curves[key] = curve
        return curve

    def absorb(self, key: str, steps: Sequence[int], values: Sequence[float]) -> bool:
        """Take a run of one curve's finite, unremarkable values at once (the usual case, and cheap).

        False when some value might raise an event: observe those steps one by one instead.
        A key that is not watched is always absorbed.
        """
        with self._lock:
            curve = self._curve(key)
            if curve is None:
                return True
            factor = self.spike_factor if curve.family == _LOSS else self.grad_factor
            return curve.absorb(steps, values, factor, self.window)

    def observe(self, step: int, values: Mapping[str, float]) -> list[Divergence]:
        """All the values logged at one step; returns the events this step reveals (usually none)."""
        step = _as_step(step)
        with self._lock:
            non_finite: list[tuple[_Curve, float]] = []
            loss_spikes: list[tuple[_Curve, _Spike]] = []
            grad_spikes: list[tuple[_Curve, _Spike]] = []
            for key, raw in values.items():
                curve = self._curve(key)
                if curve is None:
                    continue
                value = _as_float(raw)
                if value is None:
                    continue
                if not math.isfinite(value):
                    if not curve.dead:
                        curve.dead = True
                        curve.retire()
                        non_finite.append((curve, value))
                    continue
                curve.last_value, curve.last_step = value, step
                if curve.dead or curve.done:
                    continue
                if curve.family == _LOSS:
                    spike = curve.push(step, value, self.spike_factor, self.window, self.sustain, self.warmup)
                    if spike is not None:
                        loss_spikes.append((curve, spike))
                else:
                    spike = curve.push(step, value, self.grad_factor, self.window, self.sustain, self.warmup)
                    if spike is not None:
                        grad_spikes.append((curve, spike))

            found: list[Divergence] = []
            if non_finite:
                event = self._non_finite_event(step, non_finite)
                if event is not None:
                    found.append(event)
            if loss_spikes:
                found.append(self._loss_spike_event(loss_spikes))
            for curve, spike in grad_spikes:
                curve.retire()
                found.append(self._grad_event(curve, spike))
            found.sort(key=lambda event: (event.step, _KIND_ORDER[event.kind]))
            self._events.extend(found)
            return found

    def _non_finite_event(self, step: int, candidates: list[tuple[_Curve, float]]) -> Divergence | None:
        losses = [item for item in candidates if item[0].family == _LOSS]
        grads = [item for item in candidates if item[0].family == _GRAD]
        if losses and not self._loss_non_finite:
            self._loss_non_finite = True
            self._grad_non_finite = True  # a gradient norm going NaN with or after the loss is no news
            total = [item for item in losses if item[0].key.strip().lower() == "loss"]
            curve, value = (total or losses)[0]
        elif grads and not self._grad_non_finite and not self._loss_non_finite:
            self._grad_non_finite = True
            curve, value = grads[0]
        else:
            return None
        if curve.last_value is None:
            since = "never finite"
        else:
            since = f"last finite {format_value(curve.last_value)} at step {format_step(curve.last_step or 0)}"
        message = f"{curve.key} became {format_value(value)} at step {format_step(step)} ({since})"
        return Divergence(NON_FINITE, curve.key, step, message)

    def _loss_spike_event(self, confirmed: list[tuple[_Curve, _Spike]]) -> Divergence:
        total = [item for item in confirmed if item[0].key.strip().lower() == "loss"]
        curve, spike = (total or sorted(confirmed, key=lambda item: item[1].step))[0]  # stable: call order
        # The other losses confirming now, or still rising with it, are the same event.
        for other in self._curves.values():
            if other is not None and other.family == _LOSS and (other.spike is not None or other is curve):
                other.retire()
        for other, _ in confirmed:
            other.retire()
        message = (
            f"{curve.key} shot up at step {format_step(spike.step)}: {format_value(spike.value)}, "
            f"{format_ratio(spike.value / spike.level)} its recent level {format_value(spike.level)}, and stayed up"
        )
        return Divergence(LOSS_SPIKE, curve.key, spike.step, message)

    def _grad_event(self, curve: _Curve, spike: _Spike) -> Divergence:
        name = "gradient norm" if curve.key.strip().lower() in _GRAD_NAMES else curve.key
        message = (
            f"{name} exploded at step {format_step(spike.step)}: {format_value(spike.value)}, "
            f"{format_ratio(spike.value / spike.level)} its recent level {format_value(spike.level)}"
        )
        return Divergence(GRAD_EXPLOSION, curve.key, spike.step, message)


def detect_all(records: Iterable[tuple[int, Mapping[str, float]]], **options: float) -> list[Divergence]:
    """Every divergence in an imported log: `records` are (step, values) in logged order.

    `options` are the `DivergenceDetector` settings (spike_factor, grad_factor, window, sustain, warmup).
    """
    detector = DivergenceDetector(**options)  # type: ignore[arg-type]
    events: list[Divergence] = []
    for step, values in records:
        events.extend(detector.observe(step, values))
    return events


def detect_block(detector: DivergenceDetector, points: Sequence[tuple], chunks: Mapping) -> list[Divergence]:
    """Divergence in a block of points, `(step, epoch, samples, wall, {key: value})`, given with their
    `expdb.series.build_chunks` columns: whole curves at once where nothing can have happened
    (`DivergenceDetector.absorb`), the others step by step."""
    stepwise = [key for key, chunk in chunks.items() if not detector.absorb(key, chunk.steps, chunk.values)]
    events: list[Divergence] = []
    if stepwise:
        for step, _epoch, _samples, _wall, scalars in points:
            watched = {key: scalars[key] for key in stepwise if key in scalars}
            if watched:
                events.extend(detector.observe(step, watched))
    return events
