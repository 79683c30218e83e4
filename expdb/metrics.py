"""Metric definitions (label, unit, better direction, number format) and number formatting."""

import math
import re
from dataclasses import dataclass
from functools import cache

from .db import Database
from .errors import ExpdbError

# Columns filled from a run's profile rather than from its metrics, keyed like metrics.
PROFILE_COLUMNS = {"params": "params_total", "flops": "flops", "cost_time": "cost_time_ms", "peak_mem": "peak_mem_bytes"}
# What a run's training cost, recorded by every run (expdb.runs): samples/s (else steps/s), CUDA peak memory.
TRAINING_COST_KEYS = ("throughput", "train_steps_per_s", "train_peak_mem")
# How expdb measures Cost-Time unless told otherwise, in `expdb profile` and before a run trains.
PROFILE_WARMUP = 10
PROFILE_ITERATIONS = 50
PROFILE_BUDGET_S = 5.0  # seconds of timing at most
# Units written after the number in terminal and markdown cells, as in the researcher's "46.67ms".
CELL_SUFFIX_UNITS = {"ms", "s", "%", "B"}
_SI_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")]
_FORMAT = re.compile(r"(g|f|si)(\d)")


@dataclass(frozen=True)
class MetricDef:
    key: str
    label: str
    unit: str = ""
    direction: str | None = None  # "higher", "lower" or None when neither is better
    format: str = "g4"
    source: str = ""  # how the shown values were measured, e.g. "fvcore" for FLOPs

    def header(self, with_unit: bool = True) -> str:
        """The column head: the label, with the unit in parentheses unless cells carry it: "FLOPs (fvcore, MAC)"."""
        unit = self.unit if self.unit and (with_unit or self.unit not in CELL_SUFFIX_UNITS) else ""
        inside = ", ".join(part for part in (self.source, unit) if part)
        return f"{self.label} ({inside})" if inside else self.label

    def cell(self, value: float | None) -> str:
        """A value as the researcher writes it: `0.328`, `936.94K`, `6.934G`, `46.67ms`; blank if missing."""
        if value is None:
            return ""
        suffix = self.unit if self.unit in CELL_SUFFIX_UNITS else ""
        return format_number(value, self.format) + suffix

    def better(self, a: float, b: float) -> bool:
        """Whether `a` beats `b` (False when this metric has no better direction)."""
        if self.direction == "higher":
            return a > b
        if self.direction == "lower":
            return a < b
        return False


def format_number(value: float, spec: str) -> str:
    """`g3`: 3 significant digits; `f2`: up to 2 decimals; `si2`: SI prefix (K, M, G, T), up to 2 decimals.

    Trailing zeros are dropped (`29.8`, `6.81G`), leading zeros kept (`0.25`).
    """
    kind, digits = _parsed_format(spec)
    if kind == "g":
        return f"{value:.{digits}g}"
    prefix = ""
    if kind == "si":
        for scale, letter in _SI_PREFIXES:
            if abs(value) >= scale:
                value, prefix = value / scale, letter
                break
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + prefix


@cache
def _parsed_format(spec: str) -> tuple[str, int]:
    """`g4` -> ("g", 4); parsed once per spec: a table formats thousands of numbers."""
    match = _FORMAT.fullmatch(spec)
    if not match:
        raise ValueError(f"unknown number format {spec!r}")
    return match.group(1), int(match.group(2))


def _scale(metric: MetricDef, magnitude: float) -> tuple[float, str]:
    """What an SI-formatted metric is divided by, and the prefix that says so, for numbers of this size."""
    if metric.format.startswith("si"):
        for scale, letter in _SI_PREFIXES:
            if magnitude >= scale:
                return scale, letter
    return 1.0, ""


def _unit_text(metric: MetricDef, prefix: str, latex: bool) -> str:
    """The prefix and unit written after each number: "K", "ms" (LaTeX: prefix only, the head has the unit)."""
    if latex:
        return rf"\,\mathrm{{{prefix}}}" if prefix else ""
    return prefix + (metric.unit if metric.unit in CELL_SUFFIX_UNITS else "")


def format_with_spread(metric: MetricDef, mean: float, spread: float, latex: bool = False) -> str:
    """`0.308 ± 0.008`, `264K ± 12K`, `46.7ms ± 1.2ms`; LaTeX `$0.308 \\pm 0.008$`: the spread with 1 or 2
    significant digits, the mean to the same decimal place, both in one unit."""
    from .stats import with_spread

    scale, prefix = _scale(metric, max(abs(mean), spread))
    shown_mean, shown_spread = with_spread(mean / scale, spread / scale)
    unit = _unit_text(metric, prefix, latex)
    if latex:
        return f"${shown_mean}{unit} \\pm {shown_spread}{unit}$"
    return f"{shown_mean}{unit} ± {shown_spread}{unit}"


def format_interval(metric: MetricDef, difference: float, low: float, high: float, latex: bool = False) -> str:
    """A difference with its confidence interval, `-0.005 [-0.031, 0.021]`, rounded as `format_with_spread`
    rounds a mean by the interval's half-width."""
    from .stats import round_to, spread_exponent

    scale, prefix = _scale(metric, max(abs(low), abs(high)))
    half = (high - low) / 2 / scale
    exponent = spread_exponent(half) if half > 0 else -3
    unit = _unit_text(metric, prefix, latex)

    def shown(value: float, signed: bool = False) -> str:
        text = round_to(value / scale, exponent)
        zero = not text.strip("-0.")
        return ("+" + text if signed and not text.startswith("-") and not zero else text) + unit

    if latex:
        return f"${shown(difference, True)}\\ [{shown(low)}, {shown(high)}]$"
    return f"{shown(difference, True)} [{shown(low)}, {shown(high)}]"


def load_definitions(db: Database) -> dict[str, MetricDef]:
    rows = db.query("SELECT key, label, unit, direction, format FROM metric_def")
    return {row[0]: MetricDef(*row) for row in rows}


def definition(definitions: dict[str, MetricDef], key: str) -> MetricDef:
    """The definition of `key`, or a plain one for a metric nobody defined."""
    return definitions.get(key) or MetricDef(key=key, label=key)


DIRECTIONS = ("higher", "lower")
_METRIC_KEY = re.compile(r"[A-Za-z_][^\s]{0,127}")
_UNIT = re.compile(r"[^\s\d.+-][^\s]{0,31}")


def define_metric(
    db: Database, key: str, label: str | None = None, unit: str | None = None, direction: str | None = None,
    digits: int | None = None, si: bool = False,
) -> MetricDef:
    """Create or change how `key` is shown; what is not given is kept (a new one: its key, no unit, no direction, g4).

    `digits`: decimals ("f2"), or with `si` decimals after an SI prefix ("si2": 6.93G). Returns the definition.
    """
    if not _METRIC_KEY.fullmatch(key):
        raise ExpdbError(f"invalid metric key {key!r}: start with a letter or '_', no spaces, at most 128 characters")
    if unit is not None and unit != "" and not _UNIT.fullmatch(unit):
        raise ExpdbError(f"invalid unit {unit!r}: a word such as %, ms or img/s, without spaces, not starting with a digit")
    if direction is not None and direction not in DIRECTIONS:
        raise ExpdbError(f"unknown direction {direction!r}: higher or lower")
    if digits is not None and not 0 <= digits <= 9:
        raise ExpdbError(f"--digits {digits} is out of range: 0 to 9")
    if si and digits is None:
        raise ExpdbError("--si needs --digits: the decimals shown after the prefix, e.g. --digits 2 for 6.93G")
    if label is not None and not label.strip():
        raise ExpdbError("--label is empty: give the column head, e.g. --label 'Top-1'")
    current = load_definitions(db).get(key) or MetricDef(key=key, label=key)
    updated = MetricDef(
        key,
        label if label is not None else current.label,
        unit if unit is not None else current.unit,
        direction if direction is not None else current.direction,
        (f"si{digits}" if si else f"f{digits}") if digits is not None else current.format,
    )
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO metric_def (key, label, unit, direction, format) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET label = excluded.label, unit = excluded.unit, direction = excluded.direction, format = excluded.format",
            (updated.key, updated.label, updated.unit, updated.direction, updated.format),
        )
    return updated


def metric_keys_in_use(db: Database) -> dict[str, int]:
    """Every summary metric key the runs have, with how many runs have it."""
    return dict(db.query("SELECT key, count(*) FROM metric GROUP BY key ORDER BY key"))


_SI_SCALE = {"K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_QUANTITY = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([KkMGT](?![a-z]))?\s*(\S*)\s*")


def parse_quantity(text: str, key: str, definition: MetricDef | None) -> float:
    """A value as a table prints it: `670.32K`, `6.934G`, `34.12ms`, `81.8%`, `0.328`.

    K, M, G and T multiply (10^3 .. 10^12); a unit after the number must be the metric's own
    (`expdb metric define KEY --unit ms`): the value is kept in that unit, never converted.
    """
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ExpdbError(
            f"cannot read --{key} {text!r}: write a number, with K, M, G or T and the metric's unit if any (670.32K, 34.12ms)"
        )
    number = float(match[1]) * (_SI_SCALE[match[2]] if match[2] else 1.0)
    if not math.isfinite(number):  # 1e999: too large for a float
        raise ExpdbError(f"cannot read --{key} {text!r}: it is beyond the largest number a float holds (about 1.8e308)")
    unit = match[3]
    if unit:
        has = definition.unit if definition is not None else ""
        if unit != has:
            why = f"is in {has!r}" if has else "has no unit"
            raise ExpdbError(
                f"--{key} {text!r} is in {unit!r}, but {key} {why}: write the value in {has or 'plain numbers'}"
                + ("" if has else f", or define the unit with `expdb metric define {key} --unit {unit}`")
            )
    return number
