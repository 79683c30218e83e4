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
- "loss-explosion": from a loss's second value on, no warm-up: a value above `explode_factor` x the
  smaller of where the curve started (its first value) and its running level, for `explode_sustain`
  consecutive values. Caught even at step 2 ("loss exploded at step 2: 4.4e+11, from 2.41 at step 1");
  a loss that falls fast at the start only lowers both references. Reported once per loss key, and
  the key is no longer examined for spikes.

These four stop a run by default (`--on-diverge stop`). Two slower trends are only noted; they look
at a loss's smoothed curve (`trend_events`): the curve in blocks of `smooth` of its values (at least
10 values a block), each block's mean with its standard error.

- "loss-rising": after its best block, the smoothed loss stayed above `rise_factor` x that best
  value, and above it by more than 3 standard errors, for at least `rise_held` of the steps logged.
  "loss rising since step 12,400: 0.91 at step 20,000, its best was 0.62 at step 12,400". When a
  learning-rate curve rose between the best block and the rise, the note says the rise follows it.
- "not-learning": at `flat_at` of the run (of the card's `steps` when known, else of the steps
  logged), the smoothed loss has not fallen `flat_drop` below its start (the mean of its first
  values). "loss has not improved: 2.3 at step 5,000 against 2.31 at step 50".

Only the total loss is examined for spikes, explosions and trends (`loss`, `total_loss`, `train/loss`),
or every loss key when a run logs no total; every loss key is checked for non-finite values. Every
threshold has a default in `DEFAULTS`, and `parse_settings` reads the `KEY=VALUE` overrides of a card
or a run.

`observe` costs O(number of values) plus, per watched value, a bisect into a sorted window of at most
`window` floats; it takes a lock, so it may be called from any thread. Events are returned in step
order (non-finite before spikes at the same step).
"""

from __future__ import annotations

import itertools
import math
import operator
import re
import threading
from array import array
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Divergence", "DivergenceDetector", "detect_all", "is_loss_key", "is_grad_norm_key", "DEFAULTS"]

NON_FINITE = "non-finite"
LOSS_EXPLOSION = "loss-explosion"
LOSS_SPIKE = "loss-spike"
GRAD_EXPLOSION = "grad-explosion"
LOSS_RISING = "loss-rising"
NOT_LEARNING = "not-learning"
STOPPING = (NON_FINITE, LOSS_EXPLOSION, LOSS_SPIKE, GRAD_EXPLOSION)  # what --on-diverge stop stops a run for
_KIND_ORDER = {NON_FINITE: 0, LOSS_EXPLOSION: 1, LOSS_SPIKE: 2, GRAD_EXPLOSION: 3, LOSS_RISING: 4, NOT_LEARNING: 5}

# Every threshold, with its default: what `--diverge KEY=VALUE` sets. Chosen on the real curves in
# tests/data (healthy detection and classification runs must stay silent) and documented in the README.
DEFAULTS: dict[str, float] = {
    "spike_factor": 10.0,  # a loss this many times its running level (median of `window` values) ...
    "sustain": 3,  # ... for this many values in a row is a spike
    "window": 50,
    "warmup": 20,  # values of a loss before spikes are looked for (explosions are looked for at once)
    "grad_factor": 100.0,  # the spike rule for gradient norms
    "explode_factor": 100.0,  # a loss this many times its start or running level ...
    "explode_sustain": 3,  # ... for this many values in a row has exploded
    "smooth": 0.05,  # a trend block: this fraction of a curve's values (at least 10)
    "rise_factor": 1.25,  # the smoothed loss this many times its best ...
    "rise_held": 0.10,  # ... for this fraction of the steps is a rise
    "flat_at": 0.25,  # at this fraction of the run ...
    "flat_drop": 0.10,  # ... a loss that has not fallen this fraction below its start is not learning
}
_INTEGERS = {"sustain", "window", "warmup", "explode_sustain"}
_FRACTIONS = {"smooth", "rise_held", "flat_at", "flat_drop"}
# Which settings produced each kind of note, shown beside it by `expdb show`.
SETTINGS_OF = {
    NON_FINITE: (),
    LOSS_EXPLOSION: ("explode_factor", "explode_sustain"),
    LOSS_SPIKE: ("spike_factor", "sustain", "window", "warmup"),
    GRAD_EXPLOSION: ("grad_factor", "sustain", "window", "warmup"),
    LOSS_RISING: ("smooth", "rise_factor", "rise_held"),
    NOT_LEARNING: ("smooth", "flat_at", "flat_drop"),
}
_MIN_BLOCK = 10  # values in a trend block at least
_START_VALUES = 10  # the first values whose mean is where a loss started

_SEGMENTS = re.compile(r"[./:\s]+")
_NOT_LOSS = re.compile(r"loss[_-]?(scale|scaler|scaling|weight|weights|coef|coeff|lambda)(?![a-z])")
_GRAD_NAMES = {"grad_norm", "grad-norm", "gradnorm"}

_LOSS = "loss"
_GRAD = "grad"


@dataclass(frozen=True)
class Divergence:
    kind: str  # one of _KIND_ORDER
    key: str  # the curve it was seen on, e.g. "loss" or "grad_norm"
    step: int
    message: str  # one line, for the notebook

    def __str__(self) -> str:
        return self.message

    @property
    def stops(self) -> bool:
        """Whether `--on-diverge stop` ends the run for it (rising and not learning are only noted)."""
        return self.kind in STOPPING


def parse_settings(pairs: Iterable[str]) -> dict[str, float]:
    """`["rise_factor=1.5", "warmup=0"]` as settings; an unknown key or a bad value is one ExpdbError line."""
    from .errors import ExpdbError

    settings: dict[str, float] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in DEFAULTS:
            raise ExpdbError(f"--diverge {pair!r}: write KEY=VALUE with KEY one of {', '.join(DEFAULTS)}")
        settings[key] = _setting_value(key, text.strip(), f"--diverge {pair!r}")
    return settings


def check_settings(settings: Mapping[str, object], where: str) -> dict[str, float]:
    """Stored or given settings, checked like `parse_settings` (for the Python API)."""
    from .errors import ExpdbError

    checked: dict[str, float] = {}
    for key, value in settings.items():
        if key not in DEFAULTS:
            raise ExpdbError(f"{where}: unknown setting {key!r}; use one of {', '.join(DEFAULTS)}")
        checked[key] = _setting_value(key, str(value), f"{where} {key}={value!r}")
    return checked


def _setting_value(key: str, text: str, where: str) -> float:
    from .errors import ExpdbError

    try:
        value = int(text) if key in _INTEGERS else float(text)
    except ValueError:
        kind = "a whole number" if key in _INTEGERS else "a number"
        raise ExpdbError(f"{where}: {key} takes {kind}, e.g. {key}={DEFAULTS[key]:g}") from None
    if not math.isfinite(value) or abs(value) >= 2**63:  # inf, nan, or an integer the database cannot keep
        raise ExpdbError(f"{where}: {key} takes a finite number below 2^63, e.g. {key}={DEFAULTS[key]:g}")
    if key in _FRACTIONS and not 0 < value < 1:
        raise ExpdbError(f"{where}: {key} is a fraction between 0 and 1, e.g. {key}={DEFAULTS[key]:g}")
    if key.endswith("factor") and not value > 1:
        raise ExpdbError(f"{where}: {key} must be above 1, e.g. {key}={DEFAULTS[key]:g}")
    if key in _INTEGERS and value < (0 if key == "warmup" else 1):
        raise ExpdbError(f"{where}: {key} must be at least {0 if key == 'warmup' else 1}")
    return value


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

    __slots__ = (
        "key", "family", "last_value", "last_step", "first", "seen", "sorted", "recent", "spike", "burst", "done", "dead"
    )

    def __init__(self, key: str, family: str):
        self.key = key
        self.family = family
        self.last_value: float | None = None
        self.last_step: int | None = None
        self.first: tuple[int, float] | None = None  # (step, value) of its first finite value
        self.seen = 0  # finite observations so far
        self.sorted: list[float] = []  # the window, sorted, for the median
        self.recent: deque[float] = deque()  # the window, in arrival order, for eviction
        self.spike: _Spike | None = None
        self.burst: _Spike | None = None  # an explosion in progress (losses only)
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

    def explode(self, step: int, value: float, factor: float, sustain: int) -> _Spike | None:
        """The explosion, once this value makes it `sustain` long. Checked before `push`, which the
        value still goes to: a burst too short to be an explosion may be a spike."""
        if self.first is None:
            self.first = (step, value)
            return None
        reference = min(self.first[1], self.level()) if self.sorted else self.first[1]
        if reference > 0 and value > factor * reference:
            if self.burst is None:
                self.burst = _Spike(step, value, reference)
            self.burst.held.append(value)
            return self.burst if len(self.burst.held) >= sustain else None
        self.burst = None
        return None

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

    def absorb(self, steps: Sequence[int], values: Sequence[float], factor: float, window: int, explode: float) -> bool:
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
        if self.spike is not None or self.burst is not None:
            return False
        if self.family == _LOSS:
            if self.first is None:
                self.first = (steps[0], values[0])
            # An explosion is above `explode` x its first value or x a median; the floor check below
            # (with the smaller factor) covers every median.
            if self.first[1] > 0 and max(values) > explode * self.first[1]:
                return False
            factor = min(factor, explode)
        # Block by block: a median of the last `window` values lies within this block and the one
        # before, so it is at least the smaller of their minimums.
        block = max(window, 1024)
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
        self.burst = None
        self.sorted = []
        self.recent.clear()


def is_lr_key(key: str) -> bool:
    """Whether `key` names a learning rate (`lr`, `train/lr`, `learning_rate`, `base_lr`)."""
    last = _SEGMENTS.split(key.strip().lower())[-1]
    return last == "lr" or last.endswith("_lr") or last.endswith("learning_rate")


def _is_total_loss(key: str) -> bool:
    return _SEGMENTS.split(key.strip().lower())[-1] in ("loss", "total_loss")


@dataclass(frozen=True)
class _Blocks:
    """A curve smoothed: consecutive blocks of `size` values, each with its mean, standard error and last step."""

    size: int
    means: list[float]
    errors: list[float]
    ends: list[int]

    @classmethod
    def of(cls, steps: Sequence[int], values: Sequence[float], fraction: float) -> _Blocks:
        size = max(_MIN_BLOCK, math.ceil(fraction * len(values)))
        means, errors, ends = [], [], []
        for start in range(0, len(values) - size + 1, size):
            part = values[start : start + size]
            mean = sum(part) / size
            variance = max(0.0, sum(map(operator.mul, part, part)) / size - mean * mean)
            means.append(mean)
            errors.append(math.sqrt(variance / (size - 1)))
            ends.append(steps[start + size - 1])
        return cls(size, means, errors, ends)


def rising(steps: Sequence[int], values: Sequence[float], settings: Mapping[str, float]) -> tuple[int, int] | None:
    """(best block, the block where a rise was confirmed) of a loss that turned back up, or None.

    Blocks are `smooth` of the values. After its best block so far, the smoothed loss must stay above
    `rise_factor` x that best, by more than 3 standard errors, for `rise_held` of the steps logged.
    """
    blocks = _Blocks.of(steps, values, settings["smooth"])
    if len(blocks.means) < 4 or not steps or steps[-1] <= steps[0]:
        return None
    held = settings["rise_held"] * (steps[-1] - steps[0])
    best, since = 0, None
    for i in range(1, len(blocks.means)):
        mean, top = blocks.means[i], blocks.means[best]
        noise = 3 * math.hypot(blocks.errors[i], blocks.errors[best])
        if top > 0 and mean > settings["rise_factor"] * top and mean - top > noise:
            since = i if since is None else since
            if i > since and blocks.ends[i] - blocks.ends[since - 1] >= held:
                return best, i
            continue
        since = None
        if mean < top:
            best = i
    return None


def not_learning(
    steps: Sequence[int], values: Sequence[float], settings: Mapping[str, float], total_steps: int | None, final: bool
) -> tuple[float, int, float] | None:
    """(start, step, smoothed value there) of a loss that had not fallen `flat_drop` below its start by
    `flat_at` of the run (of `total_steps` when known; of the steps logged when the run ended short of
    that point, or has no planned length); None when it had, or when the run has not got that far."""
    if not steps:
        return None
    last = total_steps if total_steps is not None else steps[-1]
    checked_at = steps[0] + settings["flat_at"] * (last - steps[0])
    if steps[-1] < checked_at:
        if not final:
            return None
        checked_at = steps[0] + settings["flat_at"] * (steps[-1] - steps[0])
    prefix = bisect_left(steps, math.floor(checked_at) + 1)
    if prefix < 2 * _MIN_BLOCK:
        return None
    start = math.fsum(values[:_START_VALUES]) / min(_START_VALUES, prefix)
    size = max(_MIN_BLOCK, math.ceil(settings["smooth"] * prefix))
    reached = math.fsum(values[prefix - size : prefix]) / size
    if start > 0 and reached > (1 - settings["flat_drop"]) * start:
        return start, steps[prefix - 1], reached
    return None


def _extend(kept: array, more: Sequence) -> None:
    if isinstance(more, array) and more.typecode == kept.typecode:
        kept.extend(more)
    else:
        kept.fromlist(list(more))


class TrendWatch:
    """The finite values of a run's losses and learning rates, for the trend notes: a loss that turned
    back up, a loss that is not learning. Each is reported once per key."""

    def __init__(self, settings: Mapping[str, float], total_steps: int | None):
        self.settings = settings
        self.total_steps = total_steps
        self.curves: dict[str, tuple[array, array]] = {}
        self._reported: set[tuple[str, str]] = set()
        self._checked_at = 0  # values of the losses at the last check

    def add(self, key: str, steps: Sequence[int], values: Sequence[float]) -> None:
        """The next points of a curve, steps ascending; a loss or learning rate is kept, its finite values."""
        if not steps or not (is_loss_key(key) or is_lr_key(key)):
            return
        kept_steps, kept_values = self.curves.setdefault(key, (array("q"), array("d")))
        if kept_steps and steps[0] <= kept_steps[-1]:  # logged again from an earlier step: a resumed run
            del kept_steps[bisect_left(kept_steps, steps[0]) :]
            del kept_values[len(kept_steps) :]
        if math.isfinite(sum(values)):
            _extend(kept_steps, steps)
            _extend(kept_values, values)
            return
        for step, value in zip(steps, values, strict=True):
            if math.isfinite(value):
                kept_steps.append(step)
                kept_values.append(value)

    def events(self, skipped: set[str], final: bool) -> list[Divergence]:
        losses = [key for key in self.curves if is_loss_key(key)]
        losses = [key for key in losses if _is_total_loss(key)] or losses
        count = sum(len(self.curves[key][1]) for key in losses)
        if not final and count < max(2 * _MIN_BLOCK, 1.1 * self._checked_at):
            return []
        self._checked_at = count
        found = []
        for key in losses:
            if key in skipped:
                continue
            steps, values = self.curves[key]
            if (LOSS_RISING, key) not in self._reported and (rise := rising(steps, values, self.settings)):
                self._reported.add((LOSS_RISING, key))
                found.append(self._rising_event(key, steps, values, *rise))
            if (NOT_LEARNING, key) not in self._reported and (
                flat := not_learning(steps, values, self.settings, self.total_steps, final)
            ):
                self._reported.add((NOT_LEARNING, key))
                start, step, reached = flat
                message = (
                    f"{key} has not improved: {format_value(reached)} at step {format_step(step)} "
                    f"against {format_value(start)} at step {format_step(steps[0])}"
                )
                found.append(Divergence(NOT_LEARNING, key, step, message))
        return found

    def _rising_event(self, key: str, steps: array, values: array, best: int, risen: int) -> Divergence:
        blocks = _Blocks.of(steps, values, self.settings["smooth"])
        since, now = blocks.ends[best], blocks.ends[risen]
        message = (
            f"{key} rising since step {format_step(since)}: {format_value(blocks.means[risen])} at step "
            f"{format_step(now)}, its best was {format_value(blocks.means[best])} at step {format_step(since)}"
        )
        rise = self._lr_rise(blocks.ends[best - 1] if best else steps[0], blocks.ends[min(best + 1, risen)])
        if rise is not None:
            before, after, at = rise
            message += (
                f"; it follows the learning rate's rise from {format_value(before)} to {format_value(after)} "
                f"at step {format_step(at)}"
            )
        return Divergence(LOSS_RISING, key, since, message)

    def _lr_rise(self, start: int, end: int) -> tuple[float, float, int] | None:
        """The learning rate's rise between steps `start` and `end`, if it rose by a tenth or more."""
        keys = [key for key in self.curves if is_lr_key(key)]
        for key in sorted(keys, key=lambda key: key.strip().lower() != "lr"):
            steps, values = self.curves[key]
            first, last = bisect_left(steps, start), bisect_left(steps, end + 1)
            if first == last:
                continue
            before = values[first]
            for i in range(first, last):
                if before > 0 and values[i] > 1.1 * before:
                    return before, values[i], steps[i]
        return None


class DivergenceDetector:
    """Watches the values logged at each step and reports NaN losses, loss spikes and gradient explosions."""

    def __init__(self, total_steps: int | None = None, **settings: float):
        """`settings` override `DEFAULTS` (checked by `check_settings`); `total_steps` is the run's
        planned length, when known, for the not-learning check."""
        chosen = {**DEFAULTS, **check_settings(settings, "divergence settings")}
        self.settings = chosen
        self.spike_factor = float(chosen["spike_factor"])
        self.grad_factor = float(chosen["grad_factor"])
        self.explode_factor = float(chosen["explode_factor"])
        self.window = int(chosen["window"])
        self.sustain = int(chosen["sustain"])
        self.explode_sustain = int(chosen["explode_sustain"])
        self.warmup = int(chosen["warmup"])
        self.trends = TrendWatch(chosen, total_steps)
        self._curves: dict[str, _Curve | None] = {}  # None: a key that is not watched
        self._has_total = False  # a total loss is logged: spikes and explosions are looked for on it alone
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
        if curve is not None and family == _LOSS:
            # A run that logs its total loss is judged by it: a component that jumps by orders of
            # magnitude while it is still negligible (a distillation term growing from 1e-6) is no
            # explosion, and one that matters moves the total. Components are still checked for NaN.
            if _is_total_loss(key):
                if not self._has_total:
                    self._has_total = True
                    for other in self._curves.values():
                        if other is not None and other.family == _LOSS and not _is_total_loss(other.key):
                            other.done = True
            elif self._has_total:
                curve.done = True
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
            return curve.absorb(steps, values, factor, self.window, self.explode_factor)

    def observe(self, step: int, values: Mapping[str, float]) -> list[Divergence]:
        """All the values logged at one step; returns the events this step reveals (usually none)."""
        step = _as_step(step)
        with self._lock:
            for key in values:  # a total logged at this step is known before its components are judged
                self._curve(key)
            non_finite: list[tuple[_Curve, float]] = []
            explosions: list[tuple[_Curve, _Spike]] = []
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
                    burst = curve.explode(step, value, self.explode_factor, self.explode_sustain)
                    if burst is not None:
                        explosions.append((curve, burst))
                        continue
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
            if explosions:  # the losses spiking with it are part of it
                found.append(self._explosion_event(explosions))
            elif loss_spikes:
                found.append(self._loss_spike_event(loss_spikes))
            for curve, spike in grad_spikes:
                curve.retire()
                found.append(self._grad_event(curve, spike))
            found.sort(key=lambda event: (event.step, _KIND_ORDER[event.kind]))
            self._events.extend(found)
            return found

    def feed(self, curves: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> list[Divergence]:
        """The events in the next points of some curves, key -> (steps, values), steps strictly
        ascending (`in_step_order` makes them so).

        The steps are cut into segments of `_FEED_BLOCK` values of the longest curve; in each segment
        a curve is taken whole where nothing can have happened (`absorb`, at C speed), and the curves
        where something might are examined step by step together, so that losses going NaN at one
        step make one event. Feeds the trends too.
        """
        ordered = curves
        for key, (steps, values) in ordered.items():
            self.trends.add(key, steps, values)
            with self._lock:
                self._curve(key)
        if not ordered:
            return []
        longest = max(ordered.values(), key=lambda curve: len(curve[0]))[0]
        bounds = list(longest[_FEED_BLOCK::_FEED_BLOCK])
        events: list[Divergence] = []
        starts = dict.fromkeys(ordered, 0)
        for bound in [*bounds, None]:
            stepwise: list[tuple[int, str, float]] = []
            for key, (steps, values) in ordered.items():
                start = starts[key]
                end = len(steps) if bound is None else bisect_left(steps, bound, start)
                starts[key] = end
                if start < end and not self.absorb(key, steps[start:end], values[start:end]):
                    stepwise += zip(steps[start:end], itertools.repeat(key), values[start:end])
            stepwise.sort(key=lambda point: point[0])  # stable: the curves' order at one step
            for step, group in itertools.groupby(stepwise, key=lambda point: point[0]):
                events += self.observe(step, {key: value for _, key, value in group})
        return events

    def trend_events(self, final: bool = False) -> list[Divergence]:
        """Rising and not-learning notes on the losses that have not diverged; each reported once.

        Checked when a loss has grown by a tenth since the last check, or `final`ly at the run's end.
        """
        with self._lock:
            skipped = {key for key, curve in self._curves.items() if curve is not None and (curve.done or curve.dead)}
            return self.trends.events(skipped, final)

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

    def _explosion_event(self, confirmed: list[tuple[_Curve, _Spike]]) -> Divergence:
        total = [item for item in confirmed if item[0].key.strip().lower() == "loss"]
        curve, burst = (total or sorted(confirmed, key=lambda item: item[1].step))[0]
        for other in self._curves.values():  # the losses exploding or spiking with it are the same event
            if other is not None and other.family == _LOSS and (other.burst or other.spike or other is curve):
                other.retire()
        assert curve.first is not None  # an explosion is measured against a first value
        first_step, first_value = curve.first
        if burst.level == first_value:
            reference = f"from {format_value(first_value)} at step {format_step(first_step)}"
        else:
            reference = f"{format_ratio(burst.value / burst.level)} its recent level {format_value(burst.level)}"
        message = f"{curve.key} exploded at step {format_step(burst.step)}: {format_value(burst.value)}, {reference}"
        return Divergence(LOSS_EXPLOSION, curve.key, burst.step, message)

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


def in_step_order(steps: Sequence[int], values: Sequence[float]) -> tuple[Sequence[int], Sequence[float]]:
    """The curve with ascending steps, the last value of a step logged again winning (as it is stored)."""
    if all(map(operator.lt, steps, itertools.islice(steps, 1, None))):
        return steps, values
    last = {step: value for step, value in zip(steps, values, strict=True)}
    ordered = sorted(last)
    return ordered, [last[step] for step in ordered]


def _curves_of(points: Iterable[tuple[int, Mapping[str, float]]]) -> dict[str, tuple[list[int], list[float]]]:
    """The points as key -> (steps, values), values read as numbers (those that are not are left out)."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for step, values in points:
        for key, raw in values.items():
            value = raw if type(raw) is float else _as_float(raw)
            if value is None:
                continue
            found = curves.get(key)
            if found is None:
                found = curves[key] = ([], [])
            found[0].append(_as_step(step))
            found[1].append(value)
    return curves


def detect_all(
    records: Iterable[tuple[int, Mapping[str, float]]], total_steps: int | None = None, **settings: float
) -> list[Divergence]:
    """Every divergence and trend in a log: `records` are (step, values) in logged order.

    `settings` override `DEFAULTS`; `total_steps` is the planned length of the run, when known.
    """
    detector = DivergenceDetector(total_steps, **settings)
    curves = {key: in_step_order(steps, values) for key, (steps, values) in _curves_of(records).items()}
    return detector.feed(curves) + detector.trend_events(final=True)


_FEED_BLOCK = 2048  # values a segment: large enough for absorb to be cheap, small enough that a segment that
# must be examined step by step is a small one
