"""The comparison table of the selected cards: which rows and columns, which values, deltas to a baseline.

A metric column is a metric key with a reduction over the run (`iou50:max`: the best point
of its curve) and, when rows are grouped (`group_by`), an aggregate over the group's cards
(`mean`, `std`, `min`, `max`). Renderers take headers, cells and column names from `Column`.
"""

import difflib
import math
import re
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import NamedTuple

from . import conditions as profile_conditions
from . import forked
from .cards import (
    Card,
    Selection,
    card_facts,
    cards_by_id,
    get_card,
    latest_values,
    selected_ids,
    without_gc,
)
from .db import Database
from .errors import ExpdbError
from .metrics import PROFILE_COLUMNS, TRAINING_COST_KEYS, MetricDef, definition, load_definitions
from .series import NO_SAMPLES, Curve, _unpack, read_curve
from .stats import ALPHA, Difference, Summary, compare_many, holm, sample_std
from .values import Value, in_words, same
from .variants import fold, split_keys
from .where import Where, parse_where

PARAM_MODES = ("differing", "all", "none")
CARD_FIELDS = ("name", "status", "runner")
FILTER_FIELDS = (*CARD_FIELDS, "valid", "tag")  # what --where can test besides parameters and metrics
COST_KEYS = frozenset(PROFILE_COLUMNS)  # deltas of costs are shown relative to the baseline
DEFAULT_PROFILE_KEYS = ("params", "flops", "cost_time")  # shown whenever a card has them; peak_mem when asked
REDUCTIONS = ("last", "min", "max")  # which value of a run: `loss:min`
# Convergence, read from the curve: where it first crosses a threshold (on step, epoch or samples),
# its mean over the last part, its area.
CURVE_REDUCTIONS = ("first>=X", "first<=X", "first>=X@epoch", "mean@last10%", "auc")
_FIRST = re.compile(r"first(>=|<=)([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:@(step|epoch|samples))?")
_TAIL = re.compile(r"mean@last(\d+(?:\.\d+)?)%")
SPREADS = ("std", "ci")  # what follows a folded row's mean: its standard deviation or its 95% CI half-width
AGGREGATES = ("mean", "std", "count", "min", "max")  # how a group of cards folds: `--agg mean,std,count`
DEFAULT_AGGREGATES = ("mean", "std", "count")


@dataclass(slots=True)
class Row:
    card: Card
    values: dict[str, float]  # value key (`iou50`, `iou50_max`) -> value, profile columns included
    marks: dict[str, str] = field(default_factory=dict)  # value key -> marks after its value: noisy, shared

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def params(self) -> dict[str, Value]:
        return self.card.params

    @property
    def invalid_reason(self) -> str | None:
        return self.card.invalid_reason

    def number(self, key: str, agg: str = "") -> float | None:
        return self.values.get(key)

    def value(self, key: str) -> Value | None:
        """A metric, a parameter, or a card field, looked up in that order."""
        if key in self.values:
            return self.values[key]
        if key in self.card.params:
            return self.card.params[key]
        return getattr(self.card, key) if key in CARD_FIELDS else None


@dataclass
class GroupRow:
    """Cards with the same values of the grouping parameters (say, seeds of one variant), folded."""

    name: str  # the grouping values: "N=5, L=6"
    params: dict[str, Value]  # the grouping values and every parameter its cards share
    rows: list[Row]
    stats: dict[str, dict[str, float]]  # value key -> aggregate -> number; std only from two values on
    seeds: dict[int, object] = field(default_factory=dict)  # card id -> its seed, which pairs it with the baseline's
    invalid: bool = False  # folded invalid cards (shown only under --all)
    values: dict[str, float] = field(init=False)  # value key -> mean: what sorting, best and deltas go by
    marks: dict[str, str] = field(init=False)
    _summaries: dict[str, Summary] = field(init=False, repr=False, compare=False)  # the tests ask for each more than once

    def __post_init__(self) -> None:
        self._summaries = {}
        self.values = {key: found["mean"] for key, found in self.stats.items()}
        self.marks = {}  # a member's mark marks the group, in one order for every row
        for row in self.rows:
            for key, marks in row.marks.items():
                merged = self.marks.get(key, "") + marks
                self.marks[key] = "".join(mark for mark in profile_conditions.MARK_NAMES if mark in merged)

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def invalid_reason(self) -> str | None:
        if not self.invalid:
            return None
        return "; ".join(dict.fromkeys(row.card.invalid_reason for row in self.rows if row.card.invalid_reason))  # type: ignore[arg-type]

    def summary(self, key: str) -> Summary:
        """The values of `key`, one per card that has it, keyed by the card's seed."""
        found = self._summaries.get(key)
        if found is None:
            seeds, rows = self.seeds, self.rows
            if len(rows) == 1:  # most variants of a study without repeats: no loop
                card_id, value = rows[0].card.id, rows[0].values.get(key)
                values = {seeds.get(card_id, card_id): value} if value is not None and not math.isnan(value) else {}
            else:
                values = {
                    seeds.get(row.card.id, row.card.id): value
                    for row in rows
                    if (value := row.values.get(key)) is not None and not math.isnan(value)
                }
            found = self._summaries[key] = Summary(values)
        return found

    def number(self, key: str, agg: str = "") -> float | None:
        return self.stats.get(key, {}).get(agg or "mean")

    def value(self, key: str) -> Value | None:
        if key in self.values:
            return self.values[key]
        return self.params.get(key)


@dataclass(frozen=True)
class Column:
    """One column of numbers: a metric, reduced over each run, aggregated over each group."""

    metric: MetricDef
    reduction: str = ""  # "" (the recorded value, else the curve's last point), "last", "min", "max", or one of CURVE_REDUCTIONS
    agg: str = ""  # "" for ungrouped rows, else "mean", "std", "min" or "max"
    requested: bool = True  # False for a cost column shown because a card has a profile

    @property
    def key(self) -> str:
        """The key of a row's value: `iou50`, `iou50_max`, `iou50_first_ge_0.5`, `loss_mean_last10pct`."""
        return value_key(self.metric.key, self.reduction)

    @property
    def name(self) -> str:
        """The machine-readable name, with the unit: `iou50_max`, `iou50_mean`, `cost_time_mean_ms`,
        `iou50_first_ge_0.5_step`, `iou50_first_ge_0.5_epoch` (a crossing on another axis than steps names it already)."""
        name = f"{self.key}_{self.agg}" if self.agg else self.key
        first = _FIRST.fullmatch(self.reduction)
        return f"{name}_{self.metric.unit.lower()}" if self.metric.unit and not (first and first.group(3)) else name

    @property
    def delta_name(self) -> str:
        name = f"{self.key}_{self.agg}" if self.agg else self.key
        return f"{name}_delta_pct" if self.is_cost else f"{name}_delta"

    @property
    def is_cost(self) -> bool:
        return self.metric.key in COST_KEYS

    @property
    def label(self) -> str:
        return f"{self.metric.label} ({self.reduction})" if self.reduction else self.metric.label

    def header(self, with_unit: bool = True) -> str:
        """The head: "IOU@0.50", "IOU@0.50 (max)", "FLOPs (fvcore, MAC)", "Loss (first<=2, epoch)"; a group's std,
        min or max says so after it."""
        reduction = self.reduction.removesuffix(f"@{self.metric.unit}") if self.metric.unit else self.reduction
        source = ", ".join(part for part in (reduction, self.metric.source) if part)
        text = replace(self.metric, source=source).header(with_unit)
        return f"{text} {self.agg}" if self.agg not in ("", "mean") else text

    def value(self, row: Row | GroupRow) -> float | None:
        return row.number(self.key, self.agg)

    @property
    def ranked(self) -> bool:
        """Whether the best value is marked and deltas are taken: not for a spread."""
        return self.agg != "std"


@dataclass
class ComparisonTable:
    param_keys: list[str]
    columns: list[Column]
    rows: list[Row | GroupRow]
    baseline: Row | GroupRow | None = None
    group_keys: list[str] = field(default_factory=list)  # rows are GroupRows, grouped by these parameters
    counted: bool = False  # grouped rows show their number of cards, `n`
    condition_notes: list[str] = field(default_factory=list)  # said under the table: the profiles' conditions, marks
    total_rows: int = 0  # rows before `limit` kept the first ones (the baseline's not counted twice)
    over: list[str] = field(default_factory=list)  # rows are GroupRows, folded over these parameters (seed)
    spread: str = "std"  # after a folded row's mean: "std", or "ci" (the 95% CI half-width)
    # (id(row), column key) -> the folded row's difference to the baseline, tested, Holm-corrected
    differences: dict[tuple[int, str], Difference] = field(default_factory=dict)
    _best: dict[str, float] | None = None  # column name -> best value, for columns with a direction
    _bold: dict[str, set[int]] | None = None  # folded: column name -> id() of its rows not worse than the best

    @property
    def best(self) -> dict[str, float]:
        """Worked out when first asked, by a format that marks the best (csv and json do not)."""
        if self._best is None:
            self._best = _best_values(self.rows, self.columns)
        return self._best

    @property
    def bold(self) -> dict[str, set[int]]:
        """Worked out when first asked, by a format that marks the best."""
        if self._bold is None:
            self._bold = not_worse_than_best(self) if self.grouped else {}
        return self._bold

    @property
    def marks_bold(self) -> bool:
        """Whether some folded rows are bold as not worse than the best: known without the tests `bold` runs."""
        return bool(self._bold) if self._bold is not None else self.grouped and any(_bold_candidates(self))

    @property
    def grouped(self) -> bool:
        return bool(self.group_keys or self.over)

    def difference(self, row: "Row | GroupRow", column: "Column") -> Difference | None:
        return self.differences.get((id(row), column.key))

    def delta(self, row: Row | GroupRow, column: "Column") -> float | None:
        """Row minus baseline; for costs, the relative change in percent."""
        if not column.ranked or self.baseline is None or row is self.baseline:
            return None
        value, base = column.value(row), column.value(self.baseline)
        if value is None or base is None:
            return None
        if column.is_cost:
            return (value - base) / base * 100 if base else None
        return value - base

    def is_best(self, row: Row | GroupRow, column: Column) -> bool:
        """The best value; among folded rows, every row not significantly worse than the best. Never an invalid row."""
        if row.invalid_reason:
            return False
        if column.name in self.bold:
            return id(row) in self.bold[column.name]
        value = column.value(row)
        return value is not None and self.best.get(column.name) == value and len(self.rows) > 1


SIGNIFICANT = "†"  # marks a difference to the baseline with p < ALPHA after Holm's correction


def footnotes(table: ComparisonTable) -> list[str]:
    """What the table's marks and spreads mean, and why a test is missing: printed under it in every format."""
    notes: list[str] = list(table.condition_notes)
    if table.baseline is not None:
        base = table.baseline
        lacking = [column.header() for column in table.columns if column.ranked and column.value(base) is None]
        if lacking:
            notes.append(f"{base.name}, the baseline, has no {in_words(lacking, 'or')}: no row shows a difference to it there.")
    invalid = [f"{row.name}: invalid, {row.invalid_reason}; never marked best." for row in table.rows if row.invalid_reason]
    if not table.grouped:
        return notes + invalid
    means = [column for column in table.columns if column.agg == "mean"]
    if any(c.key == m.key and c.agg == "std" for m in means for c in table.columns):
        notes.append(
            "± is the half-width of the 95% confidence interval of the mean (t distribution)."
            if table.spread == "ci"
            else "± is the standard deviation over the folded cards (n - 1)."
        )
    found = list(table.differences.values())
    if found:
        count = sum(1 for difference in found if difference.tested)
        tests = sorted({difference.test for difference in found if difference.test})
        how = {"paired": "a paired t-test on matching seeds", "welch": "Welch's t-test"}
        notes.append(
            f"vs {table.baseline.name}: difference of means [95% CI], by {' or '.join(how[t] for t in tests) or 'no test'}; "  # type: ignore[union-attr]
            f"p-values Holm-corrected over the {count} comparison{'s' if count != 1 else ''} of the table. "
            f"{SIGNIFICANT} p < {ALPHA:g} after correction."
        )
        if any(difference.reason == "n < 2" for difference in found):
            notes.append("n < 2: one value on a side has no spread, so no test is possible; only the difference is shown.")
        if any(difference.reason == "no spread" for difference in found):
            notes.append("no spread: the values (or their per-seed differences) are all equal, so no test is possible.")
    if table.marks_bold and len(table.rows) > 1:
        notes.append(f"Bold: the best mean, and every mean not significantly worse than it (p ≥ {ALPHA:g}, Holm-corrected).")
    return notes + [note.replace("never marked best", "left out of every comparison") for note in invalid]


def parse_metric(text: str) -> tuple[str, str]:
    """`iou50` -> ("iou50", ""), `loss:min` -> ("loss", "min"), `iou50:first>=0.5` -> ("iou50", "first>=0.5")."""
    key, colon, reduction = text.partition(":")
    tail = _TAIL.fullmatch(reduction)
    if (colon and not _is_reduction(reduction)) or (tail and not 0 < float(tail.group(1)) <= 100):
        raise ExpdbError(
            f"--metric {text!r}: unknown reduction {reduction!r}; use one of: {', '.join(REDUCTIONS + CURVE_REDUCTIONS)}"
        )
    return key, reduction


def _is_reduction(text: str) -> bool:
    return text in REDUCTIONS or text == "auc" or bool(_FIRST.fullmatch(text) or _TAIL.fullmatch(text))


def value_key(key: str, reduction: str) -> str:
    """The key a reduced value is kept under, also its column's name: `iou50_first_ge_0.5_epoch`."""
    if not reduction:
        return key
    slug = reduction.replace(">=", "_ge_").replace("<=", "_le_").replace("@", "_").replace("%", "pct")
    return f"{key}_{slug}"


def reduce_curve(curve: Curve, reduction: str) -> float | None:
    """A curve reduced to one number (NaN points left out): where it first reaches a threshold (its step,
    epoch or samples), its mean over the last part of its steps, or its area over steps (trapezoids)."""
    pairs = enumerate(zip(curve.steps, curve.values, strict=True))
    points = [(step, value, index) for index, (step, value) in pairs if not math.isnan(value)]
    if not points:
        return None
    first = _FIRST.fullmatch(reduction)
    if first:
        op, threshold, axis = first.group(1), float(first.group(2)), first.group(3) or "step"
        for step, value, index in points:
            if (value >= threshold) if op == ">=" else (value <= threshold):
                return _position(curve, step, index, axis)
        return None  # never reached
    if reduction == "auc":
        return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(points, points[1:], strict=False))
    tail = _TAIL.fullmatch(reduction)
    if tail:
        start = points[-1][0] - (points[-1][0] - points[0][0]) * float(tail.group(1)) / 100
        return statistics.fmean(value for step, value, _ in points if step >= start)
    raise ValueError(f"not a curve reduction: {reduction!r}")


def _position(curve: Curve, step: int, index: int, axis: str) -> float | None:
    if axis == "step":
        return step
    column = curve.epochs if axis == "epoch" else curve.samples
    if column is None:
        return None
    found = column[index]
    return None if (axis == "epoch" and math.isnan(found)) or found == NO_SAMPLES else found


def _split(value: str | list[str] | tuple | None) -> list[str]:
    """`"N,L"` or `["N", "L"]` -> ["N", "L"]."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [part for item in value for part in item.split(",")]
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def _curve_ids(db: Database, key: str, card_ids: list[int]) -> dict[int, tuple[int, int]]:
    """card id -> (series id, run id) of the curve `key` in the latest run of the card that logged it."""
    among, ids = db.among("run.card_id", card_ids)
    # The latest run's comes last, and wins.
    rows = db.query(
        "SELECT run.card_id, series.id, series.run_id FROM series JOIN run ON run.id = series.run_id "
        f"WHERE series.key = ? AND {among} ORDER BY run.id",
        [key, *ids],
    )
    return {card_id: (series_id, run_id) for card_id, series_id, run_id in rows}


def _last_points(db: Database, key: str, card_ids: list[int]) -> dict[int, float]:
    """card id -> the value at the largest step of its curve `key`, reading one chunk per card."""
    curves = _curve_ids(db, key, card_ids)
    if not curves:
        return {}
    series_ids, ids = db.id_table("s", [series for series, _ in curves.values()])
    # Per series, the chunk holding its largest step; of chunks ending on the same step
    # (a resumed run that logged it again) the later one wins, as in read_curve.
    last_chunks = (
        "SELECT chunk.series_id, chunk.value_data FROM chunk WHERE chunk.id IN ("
        "SELECT (SELECT c.id FROM chunk AS c WHERE c.series_id = s.value ORDER BY c.last_step DESC, c.id DESC LIMIT 1) "
        f"FROM {series_ids})"
    )
    values = {series_id: _unpack("d", data)[-1] for series_id, data in db.query(last_chunks, ids)}
    return {card_id: values[series_id] for card_id, (series_id, _) in curves.items() if series_id in values}


def _extremes(db: Database, key: str, card_ids: list[int], reduction: str) -> dict[int, float]:
    """card id -> the min or max of its curve `key` (NaN points left out)."""
    pick = min if reduction == "min" else max
    found = {}
    for card_id, (_, run_id) in _curve_ids(db, key, card_ids).items():
        points = [value for value in read_curve(db, run_id, key).values if not math.isnan(value)]
        if points:
            found[card_id] = pick(points)
    return found


def _fill_values(db: Database, rows: list[Row], key: str, reduction: str, curve_keys: set[str]) -> None:
    """Set each row's value of `key` reduced by `reduction`, stored under Column(key, reduction).key.

    "" and "last": the recorded summary value, else (only for cards without one) the curve's last
    point; "min" and "max": over the curve, else the summary value; the others (`reduce_curve`) from the curve.
    """
    target = value_key(key, reduction)
    if reduction and reduction not in REDUCTIONS:  # convergence: from the curve alone
        by_id = {row.card.id: row for row in rows}
        for card_id, (_, run_id) in (_curve_ids(db, key, [row.card.id for row in rows]) if key in curve_keys else {}).items():
            value = reduce_curve(read_curve(db, run_id, key), reduction)
            if value is not None:
                by_id[card_id].values[target] = value
        return
    if reduction in ("min", "max"):
        extremes = _extremes(db, key, [row.card.id for row in rows], reduction) if key in curve_keys else {}
        for row in rows:
            value = extremes.get(row.card.id, row.values.get(key))
            if value is not None:
                row.values[target] = value
        return
    if target == key and key not in curve_keys:  # the recorded values are all there is: in place already
        return
    lacking = [row for row in rows if key not in row.values]
    last = _last_points(db, key, [row.card.id for row in lacking]) if lacking and key in curve_keys else {}
    for row in lacking if target == key else rows:  # a recorded value is its own target already
        value = row.values.get(key, last.get(row.card.id))
        if value is not None:
            row.values[target] = value


def _matching_ids(db: Database, predicate: Where, metric_keys: set[str], curve_keys: set[str]) -> list[int]:
    """The cards that satisfy `--where`; a key must be a card field, a metric, or some card's parameter."""
    keys = sorted(predicate.keys - set(FILTER_FIELDS))
    facts = card_facts(db, keys, tags="tag" in predicate.keys)
    have_param = {key for found in facts.values() for key in found}
    unknown = [key for key in keys if key not in have_param and key not in metric_keys]
    if unknown:
        candidates = sorted(set(FILTER_FIELDS) | metric_keys | {key for (key,) in db.query(db.json_keys("card", "params"))})
        hint = _did_you_mean(unknown[0], candidates)
        raise ExpdbError(
            f"--where mentions {unknown[0]!r}, which no card has as a parameter or metric"
            + (f"; {hint.strip()}" if hint else "")
        )
    metrics = latest_values(db) if predicate.keys & metric_keys else {}
    for key in predicate.keys & curve_keys:  # a metric only logged as a curve: its last point
        lacking = [card_id for card_id in facts if key not in metrics.get(card_id, {})]
        for card_id, value in _last_points(db, key, lacking).items():
            metrics.setdefault(card_id, {})[key] = value
    matching = []
    for card_id, found in facts.items():
        card_metrics = metrics.get(card_id, {})
        if predicate({key: card_metrics.get(key, found.get(key)) for key in predicate.keys}):
            matching.append(card_id)
    return matching


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _known_keys(db: Database, definitions: dict[str, MetricDef]) -> tuple[set[str], set[str], list[str]]:
    """Recorded summary metrics, logged curves, and every key a table may show."""
    recorded = {key for (key,) in db.query("SELECT DISTINCT key FROM metric")}
    curve_keys = _curve_keys(db)
    return recorded, curve_keys, sorted(recorded | curve_keys | set(definitions) | set(PROFILE_COLUMNS))


def _curve_keys(db: Database) -> set[str]:
    return {key for (key,) in db.query("SELECT DISTINCT key FROM series")}


def cards_where(db: Database, where: str) -> list[int]:
    """The ids of the cards that satisfy a `--where` expression, read as `expdb table` reads it."""
    _, curve_keys, known = _known_keys(db, load_definitions(db))
    return _matching_ids(db, parse_where(where), set(known), curve_keys)


class ReadAhead(NamedTuple):
    """What `build_table` reads of the cards (`_read_ahead`), in numbers and text, which a forked child can hand over."""

    values_by_card: dict[int, dict[str, float]]  # as `latest_values` reads them without profiles
    profile_rows: list[tuple]  # as `conditions.profile_rows` reads them


@without_gc()
def build_table(
    db: Database,
    cards: list[Card],
    metrics: Sequence[str] = (),
    sort: str | None = None,
    baseline: str | None = None,
    params: str = "differing",
    group_by: str | list[str] | None = None,
    aggs: str | list[str] | None = None,
    over: str | list[str] | None = None,
    spread: str = "std",
    invalid_baseline: bool = False,
    conditions: str | None = None,
    limit: int | None = None,
    checked: "Requested | None" = None,
    read_ahead: ReadAhead | None = None,
) -> ComparisonTable:
    """The rows of `cards` (as `select_cards` picks them, in that order) that have any of `metrics`
    (default: every recorded metric), sorted by `sort` if given.

    `metrics`: keys, each optionally `KEY:last|min|max` or a convergence reduction (`KEY:first>=0.5`,
    `KEY:mean@last10%`, `KEY:auc`); a card without a recorded value of KEY shows its curve's last
    point. `over`: parameters (seed) whose cards fold into one row per variant, the cards that
    differ only in them; `group_by`: parameter keys ("N,L" or a list) whose values fold cards into
    one row each, refused when a group's cards differ in anything but those and `over` (default
    seed); `aggs`: what each folded row shows (default mean, std, count); `spread`: "std" or "ci"
    after the mean. Folded rows are tested against the baseline (a card, whose variant it is, or a
    variant's name) and the best. Profile columns (Params, FLOPs, Cost-Time) follow whenever a shown
    card has a profile. `baseline` is shown on top, selected or not; an invalid one only with
    `invalid_baseline`. Profile columns come from each card's profile under one set of conditions:
    `conditions` ("dtype=fp16,batch=8"), else the one most cards have (expdb.conditions); a folded
    row's Cost-Time is marked when any of its cards' is. `limit`: only the first rows (the baseline's
    kept on top), of which the parameter columns and the best marks are taken; `total_rows` says how
    many there were. `checked`: `metrics` as `requested_metrics` checked them already (not read again);
    `read_ahead`: the cards' metrics and profiles, read already.
    """
    group_keys, agg_names = _grouping(group_by, aggs, over)
    over_keys = split_keys(over)
    if params not in PARAM_MODES:
        raise ExpdbError(f"unknown --params {params!r}; use one of: {', '.join(PARAM_MODES)}")
    if spread not in SPREADS:
        raise ExpdbError(f"unknown --spread {spread!r}; use one of: {', '.join(SPREADS)}")
    folded = bool(group_keys or over_keys)
    requested, curve_keys, definitions = checked or requested_metrics(db, metrics)
    base_card = baseline if baseline is not None and (not folded or _is_card(db, baseline)) else None
    card_rows, base_card_row, choice = _card_rows(
        db, cards, requested, curve_keys, base_card, definitions, conditions, read_ahead
    )
    if not card_rows:
        asked = " or ".join(f"{key}:{reduction}" if reduction else key for key, reduction in requested) or "a metric"
        curveless = sorted({key for key, reduction in requested if reduction and key not in curve_keys})
        why = f" (a reduction reads the curve, and no run logged {' or '.join(curveless)} as one)" if curveless else ""
        raise ExpdbError(f"no card of the {len(cards)} selected has {asked}{why}")
    if not metrics:  # every metric the database recorded: those of these cards
        requested = [(key, reduction) for key, reduction in requested if any(key in row.values for row in card_rows)]
    columns = _with_conditions(_columns(card_rows, requested, definitions), choice, card_rows)
    rows: list[Row | GroupRow] = list(card_rows)
    base_row: Row | GroupRow | None = base_card_row
    if folded:
        groups, base_row = _grouped(db, card_rows, group_keys, over_keys, base_card_row, baseline)
        rows = list(groups)
        columns = [replace(column, agg=agg) for column in columns for agg in agg_names if agg != "count"]
    if base_row is not None and base_row.invalid_reason and not invalid_baseline:
        raise ExpdbError(
            f"the baseline {baseline} is invalid ({base_row.invalid_reason}); compare with a valid card, "
            "or give --invalid-baseline to compare with it anyway"
        )
    if sort:
        rows = _sorted(rows, sort, definitions, base_row)
    total_rows = len(rows)
    if limit is not None and len(rows) > limit:
        kept = rows[:limit]
        if base_row is not None and not any(row is base_row for row in kept):
            kept.insert(0, base_row)
        rows = kept
    shown_cards = [card_row for row in rows for card_row in (row.rows if isinstance(row, GroupRow) else [row])]
    notes = profile_conditions.footnotes(choice, shown_cards, {column.metric.key for column in columns})
    if folded:  # in their shown order
        param_keys = _group_param_columns([row for row in rows if isinstance(row, GroupRow)], group_keys, params)
    else:
        param_keys = _param_columns([row for row in rows if isinstance(row, Row)], params)
    table = ComparisonTable(
        param_keys=param_keys,
        columns=columns,
        rows=rows,
        baseline=base_row,
        group_keys=group_keys,
        counted="count" in agg_names,
        condition_notes=notes,
        total_rows=total_rows,
        over=over_keys,
        spread=spread,
    )
    if folded:
        _test(table)
    return table


def _is_card(db: Database, name: str) -> bool:
    return db.query_one("SELECT 1 FROM card WHERE name = ?", (name,)) is not None


def _test(table: ComparisonTable) -> None:
    """Each folded row's difference to the baseline, tested, Holm-corrected over the table."""
    tested = [column for column in table.columns if column.agg == "mean"]
    if table.baseline is not None:
        base = table.baseline
        keys, pairs = [], []
        for column in tested:
            key = column.key
            if key not in base.values:
                continue
            base_summary = base.summary(key)  # type: ignore[union-attr]
            for row in table.rows:
                if row is not base and key in row.values and not row.invalid_reason:
                    keys.append((id(row), key))
                    pairs.append((row.summary(key), base_summary))  # type: ignore[union-attr]
        found = compare_many(pairs)
        adjusted = holm([difference.p for difference in found])
        table.differences = {key: replace(d, p_adjusted=p) for key, d, p in zip(keys, found, adjusted, strict=True)}


@without_gc()
def not_worse_than_best(table: ComparisonTable) -> dict[str, set[int]]:
    """Column name -> id() of the folded rows not significantly worse than the column's best (Holm-corrected over
    each column). Asked for by the formats that mark the best, only: csv and json carry the p-values instead."""
    found: dict[str, set[int]] = {}
    for column, candidates in _bold_candidates(table):
        sign, key = 1 if column.metric.direction == "higher" else -1, column.key
        best = max(candidates, key=lambda row: sign * row.values[key])
        others = [row for row in candidates if row is not best]
        best_summary = best.summary(key)  # type: ignore[union-attr]
        tests = compare_many([(row.summary(key), best_summary) for row in others])  # type: ignore[union-attr]
        adjusted = holm([test.p for test in tests])
        found[column.name] = {id(best)} | {
            id(row)
            for row, test, p in zip(others, tests, adjusted, strict=True)
            if (p is not None and p >= ALPHA) or test.difference == 0
        }
    return found


def _bold_candidates(table: ComparisonTable) -> Iterator[tuple[Column, list[Row | GroupRow]]]:
    """The folded mean columns with a direction, each with its valid rows that have a value: two at least."""
    for column in table.columns:
        if column.agg == "mean" and column.metric.direction:
            key = column.key
            candidates = [row for row in table.rows if key in row.values and not row.invalid_reason]
            if len(candidates) >= 2:
                yield column, candidates


def comparison(
    db: Database,
    selection: Selection,
    metrics: Sequence[str] = (),
    sort: str | None = None,
    baseline: str | None = None,
    params: str = "differing",
    group_by: str | list[str] | None = None,
    aggs: str | list[str] | None = None,
    over: str | list[str] | None = None,
    spread: str = "std",
    invalid_baseline: bool = False,
    limit: int | None = None,
    conditions: str | None = None,
) -> ComparisonTable:
    """`build_table` of the cards `selection` picks. With `limit` and neither `sort` nor `group_by`, only
    the cards of the first rows are read: a screenful of a study of 100,000 cards is quick."""
    ids = selected_ids(db, selection)
    having: list[int] = []
    checked = requested_metrics(db, metrics)
    if limit is not None and not sort and not group_by and not over:
        having = _ids_having(db, ids, checked.columns, checked.curve_keys)
        ids = having[:limit] or ids  # none has them: every card, for the error saying so
    read_ahead = None
    if forked.worth_a_child(len(ids)):
        with forked.in_child(partial(_read_anew, db.location, ids)) as read_by_child:
            selected = cards_by_id(db, ids)  # while the child reads the metrics and the profiles
            read_ahead = ReadAhead(*read_by_child())
    else:
        selected = cards_by_id(db, ids)
    table = build_table(
        db, selected, metrics, sort=sort, baseline=baseline, params=params, group_by=group_by, aggs=aggs, over=over,
        spread=spread, invalid_baseline=invalid_baseline, limit=limit, conditions=conditions, checked=checked,
        read_ahead=read_ahead,
    )
    if having:
        unselected_baseline = isinstance(table.baseline, Row) and table.baseline.card.id not in set(having)
        table.total_rows = len(having) + unselected_baseline
    return table


def _read_anew(location: str, ids: list[int]) -> tuple[dict[int, dict[str, float]], list[tuple]]:
    """`_read_ahead` over a connection of its own, as a forked child needs. The child's SQLite counts the file locks
    that this process's connection held at the fork as its own: that connection stays open until the child has ended
    (`forked.in_child` ends it before its block is left)."""
    with Database(location, upgrade="no") as db:
        values_by_card, profile_rows = _read_ahead(db, ids)
    return values_by_card, profile_rows  # a plain tuple: marshal carries no NamedTuple


def _read_ahead(db: Database, ids: list[int]) -> ReadAhead:
    """The cards' metrics and their profiles' rows."""
    return ReadAhead(latest_values(db, ids, profiles=False), profile_conditions.profile_rows(db, ids))


def _ids_having(db: Database, ids: list[int], requested: list[tuple[str, str]], curve_keys: set[str]) -> list[int]:
    """Of `ids`, in order, the cards that have a value of a requested metric: recorded, logged as a curve,
    or (for a cost) in the card's latest profile; as `_card_rows` finds them."""
    keys = sorted({key for key, _ in requested})
    among, bound = db.among("metric.key", keys)
    # Whether each run has one of the keys, which stops at the first found: not 500,000 rows joined and made distinct.
    sources = [f"SELECT run.card_id FROM run WHERE EXISTS (SELECT 1 FROM metric WHERE metric.run_id = run.id AND {among})"]
    curves = [key for key in keys if key in curve_keys]
    if curves:
        among, more = db.among("series.key", curves)
        sources.append(
            f"SELECT run.card_id FROM run WHERE EXISTS (SELECT 1 FROM series WHERE series.run_id = run.id AND {among})"
        )
        bound += more
    costs = [PROFILE_COLUMNS[key] for key in keys if key in COST_KEYS]
    if costs:
        present = " OR ".join(f"{column} IS NOT NULL" for column in costs)
        sources.append(f"SELECT card_id FROM profile WHERE id IN (SELECT max(id) FROM profile GROUP BY card_id) AND ({present})")
    found = {card_id for (card_id,) in db.query(" UNION ALL ".join(sources), bound)}  # the set keeps each card once
    return [card_id for card_id in ids if card_id in found]


def _grouping(
    group_by: str | list[str] | None, aggs: str | list[str] | None, over: str | list[str] | None
) -> tuple[list[str], list[str]]:
    """The keys rows are grouped by and the aggregates each folded row shows, checked."""


    group_keys, agg_names = _split(group_by), _split(aggs)
    folded = bool(group_keys or _split(over))
    if agg_names and not folded:
        raise ExpdbError(
            "--agg folds groups of cards; give the parameters to group by with --group-by, as in --group-by N, or --over seed"
        )
    for name in agg_names:
        if name not in AGGREGATES:
            raise ExpdbError(f"unknown --agg {name!r}; use one of: {', '.join(AGGREGATES)}")
    return group_keys, agg_names or (list(DEFAULT_AGGREGATES) if folded else [])


class Requested(NamedTuple):
    columns: list[tuple[str, str]]  # (key, reduction) of each metric column
    curve_keys: set[str]  # the keys logged as curves
    definitions: dict[str, MetricDef]


def requested_metrics(db: Database, metrics: Sequence[str]) -> Requested:
    """The metric columns `metrics` asks for (every recorded metric when none), checked against what the database holds."""
    definitions = load_definitions(db)
    specs = list(dict.fromkeys(parse_metric(text) for text in metrics))
    for key, reduction in specs:
        if reduction and key in COST_KEYS:
            raise ExpdbError(f"--metric {key}:{reduction}: {key} is measured once per profile; use --metric {key}")
    if specs and all(key in definitions or key in COST_KEYS for key, _ in specs):
        # Metrics that have a definition: no need to read which keys 500,000 recorded metrics have.
        return Requested(specs, _curve_keys(db), definitions)
    recorded, curve_keys, known = _known_keys(db, definitions)
    logged = sorted(recorded | curve_keys)
    for key, _ in specs:
        if key not in known:
            raise ExpdbError(
                f"unknown metric {key!r}; {_did_you_mean(key, logged) or _did_you_mean(key, known)}"
                f"recorded metrics: {', '.join(logged) or 'none yet'}"
            )
    # By default every recorded summary metric; a study that only logged curves shows their last points.
    shown = recorded - set(TRAINING_COST_KEYS) or curve_keys  # what training cost: a column when asked for
    return Requested(specs or [(key, "") for key in sorted(shown)], curve_keys, definitions)


def _card_rows(
    db: Database,
    cards: list[Card],
    requested: list[tuple[str, str]],
    curve_keys: set[str],
    baseline: str | None,
    definitions: dict[str, MetricDef],
    conditions: str | None,
    read_ahead: ReadAhead | None,
) -> tuple[list[Row], Row | None, profile_conditions.Choice]:
    """A row per card that has a value of a requested metric (the baseline's on top when it is not one of them),
    the baseline's row, and the profiles chosen."""
    values_by_card, profile_rows = read_ahead or _read_ahead(db, [card.id for card in cards])
    profiles = profile_conditions.profiles_of(profile_rows)
    all_rows = [Row(card, values_by_card.get(card.id, {})) for card in cards]
    base_row = None
    if baseline is not None:
        base_card = get_card(db, baseline)
        base_row = next((row for row in all_rows if row.card.id == base_card.id), None)
        if base_row is None:  # not one of `cards`: its metrics and profiles are read apart
            base_row = Row(base_card, latest_values(db, [base_card.id], profiles=False).get(base_card.id, {}))
            profiles = {**profiles, **profile_conditions.card_profiles(db, [base_card.id])}
    extra = [base_row] if base_row is not None and not any(row is base_row for row in all_rows) else []
    choice = profile_conditions.fill_rows(all_rows + extra, conditions, profiles)
    for key, reduction in requested:
        _fill_values(db, all_rows + extra, key, reduction, curve_keys)
    keys = {Column(definition(definitions, key), reduction).key for key, reduction in requested}
    rows = [row for row in all_rows if not keys.isdisjoint(row.values)]
    if base_row is not None and not any(row is base_row for row in rows):
        rows.insert(0, base_row)
    return rows, base_row, choice


def _columns(rows: list[Row], requested: list[tuple[str, str]], definitions: dict[str, MetricDef]) -> list[Column]:
    """The requested metrics, then the profile columns some row has."""
    columns = [Column(_reduced_metric(definition(definitions, key), reduction), reduction) for key, reduction in requested]
    return columns + [
        Column(definition(definitions, key), requested=False)
        for key in PROFILE_COLUMNS
        if key in DEFAULT_PROFILE_KEYS and (key, "") not in requested and any(key in row.values for row in rows)
    ]


def _with_conditions(columns: list[Column], choice: profile_conditions.Choice, rows: list[Row]) -> list[Column]:
    """Profile columns say what they were measured under: "Cost-Time (A100, fp16, bs 1)", "FLOPs (fvcore, bs 8)";
    FLOPs name their counter when the rows' profiles share it."""
    if choice.conditions is None:
        return columns
    timed = choice.conditions.short()
    batch = f"bs {choice.conditions.batch}" if choice.conditions.batch else ""
    counters = {
        measured.flops_counter for row in rows if (measured := choice.chosen.get(row.card.id)) and "flops" in measured.values
    }
    counted = ", ".join(filter(None, ((counters.pop() or "") if len(counters) == 1 else "", batch)))  # "fvcore, bs 8"
    shown = []
    for column in columns:
        key = column.metric.key
        extra = timed if key in profile_conditions.TIMED_KEYS else counted if key == "flops" else ""
        if extra:
            column = replace(column, metric=replace(column.metric, source=", ".join(filter(None, (column.metric.source, extra)))))
        shown.append(column)
    return shown


def _reduced_metric(metric: MetricDef, reduction: str) -> MetricDef:
    """What a convergence reduction measures: the first crossing is a position on the x axis, and earlier is better."""
    first = _FIRST.fullmatch(reduction)
    if first:  # a step or a count of samples is a whole number; an epoch a fraction (iteration / iterations per epoch)
        axis = first.group(3) or "step"
        return replace(metric, direction="lower", unit=axis, format="g4" if axis == "epoch" else "g6")
    return replace(metric, format="g4") if reduction == "auc" else metric


def _grouped(
    db: Database, rows: list[Row], keys: list[str], over: list[str], base_row: Row | None, baseline: str | None
) -> tuple[list[GroupRow], GroupRow | None]:
    """Rows folded into variants (see `variants.fold`); and the baseline's: the variant of the baseline card,
    or the variant named `baseline`."""
    present = set(_keys_in_order(row.card.params for row in rows))
    for option, key in [*(("--group-by", key) for key in keys), *(("--over", key) for key in over)]:
        if key not in present:
            everywhere = sorted({key for (key,) in db.query(db.json_keys("card", "params"))})
            raise ExpdbError(
                f"{option} {key!r}: no shown card has a parameter {key!r}; "
                + (_did_you_mean(key, sorted(present)) or _did_you_mean(key, everywhere))
                + f"parameters: {', '.join(sorted(present)) or 'none'}"
            )
    by_id = {row.card.id: row for row in rows}
    groups = [
        group_rows(variant.name, [by_id[card.id] for card in variant.cards], variant.seeds, variant.invalid, variant.params)
        for variant in fold([row.card for row in rows], over, keys)
    ]
    base_group = next((group for group in groups if base_row in group.rows), None)
    if baseline is not None and base_group is None:
        base_group = next((group for group in groups if group.name == baseline), None)
        if base_group is None:
            names = [group.name for group in groups]
            hint = _did_you_mean(baseline, names)
            raise ExpdbError(
                f"--baseline {baseline!r} is neither a card nor a variant of the table; {hint}variants: {', '.join(names[:10])}"
            )
    if base_group is not None:  # on top, as the rows are read against it
        groups.remove(base_group)
        groups.insert(0, base_group)
    return groups, base_group


def group_rows(
    name: str,
    rows: list[Row],
    seeds: dict[int, object] | None = None,
    invalid: bool = False,
    shared: dict[str, Value] | None = None,
) -> GroupRow:
    """One row for `rows`: the parameters they share (`shared`, when known already), and for each value key its
    mean, std, count, min and max."""
    if shared is None:
        first = rows[0].card.params
        shared = {
            key: value
            for key, value in first.items()
            if value is not None and all(same(row.card.params.get(key), value) for row in rows)
        }
    stats: dict[str, dict[str, float]] = {}
    if len(rows) == 1:  # a variant of one card (a study without repeats: most of them); the sums as below
        stats = {
            key: {"mean": math.fsum((value,)) / 1, "count": 1, "min": value, "max": value}
            for key, value in rows[0].values.items()
            if value is not None and value == value
        }
        return GroupRow(name, shared, rows, stats, seeds or {}, invalid)
    for key in _keys_in_order(row.values for row in rows):
        numbers = [value for row in rows if (value := row.values.get(key)) is not None and value == value]  # not NaN
        if not numbers:
            continue
        found = {"mean": math.fsum(numbers) / len(numbers), "count": len(numbers), "min": min(numbers), "max": max(numbers)}
        if len(numbers) > 1:
            found["std"] = sample_std(numbers)
        stats[key] = found
    return GroupRow(name, shared, rows, stats, seeds or {}, invalid)


def _keys_in_order(mappings: Iterable[Mapping[str, object]]) -> list[str]:
    """Every key of the mappings, in the order they first appear (most mappings add none: a quick test in C)."""
    found: dict[str, None] = {}
    for mapping in mappings:
        if not mapping.keys() <= found.keys():
            found.update(dict.fromkeys(mapping))
    return list(found)


def _group_param_columns(groups: list[GroupRow], keys: list[str], mode: str) -> list[str]:
    """The grouping keys, then the parameters constant within every group (and, unless `all`, differing between groups)."""
    if mode == "none":
        return []
    every = _keys_in_order(row.card.params for group in groups for row in group.rows)
    # A group's `params` are those all its cards share: a key is constant within it when there, or when none has it.
    constant = [
        key
        for key in every
        if key not in keys and all(key in g.params or all(key not in r.card.params for r in g.rows) for g in groups)
    ]
    if mode == "differing":
        first = groups[0].params if groups else {}
        constant = [key for key in constant if any(not same(g.params.get(key), first.get(key)) for g in groups)]
    return keys + constant


def _param_columns(rows: list[Row], mode: str) -> list[str]:
    keys = _keys_in_order(row.card.params for row in rows)
    if mode == "none":
        return []
    if mode == "all" or len(rows) < 2:
        return keys if mode == "all" else []
    first = rows[0].card.params
    return [key for key in keys if any(not same(row.card.params.get(key), first.get(key)) for row in rows)]


def _best_values(rows: list[Row | GroupRow], columns: list[Column]) -> dict[str, float]:
    best: dict[str, float] = {}
    for column in columns:
        present = [value for row in rows if (value := column.value(row)) is not None and not row.invalid_reason]
        if column.metric.direction and column.ranked and present:
            best[column.name] = max(present) if column.metric.direction == "higher" else min(present)
    return best


def _sorted(rows: list, sort: str, definitions: dict[str, MetricDef], base_row) -> list:
    """`--sort KEY[:asc|:desc]`, KEY a parameter or a metric column (`iou50`, `iou50:max`, `iou50:first>=0.5`);
    a metric sorts best first by default, anything else ascending. Rows without the key go last; the baseline
    stays on top.
    """
    parts = sort.split(":")
    order = parts.pop() if len(parts) > 1 and parts[-1] in ("asc", "desc") else ""
    if len(parts) > 2 or (len(parts) == 2 and not _is_reduction(parts[1])):
        raise ExpdbError(f"--sort {sort!r}: the order is :asc or :desc, as in --sort {parts[0]}:desc")
    metric_key, reduction = parts[0], parts[1] if len(parts) == 2 else ""
    key = value_key(metric_key, reduction)
    if rows and not any(row.value(key) is not None for row in rows):
        raise ExpdbError(f"--sort {':'.join(parts)!r}: no shown card has a parameter or metric named {':'.join(parts)!r}")
    if not order:
        direction = _reduced_metric(definition(definitions, metric_key), reduction).direction
        order = "desc" if direction == "higher" else "asc"
    body = [row for row in rows if row is not base_row]

    def sort_key(row) -> tuple:
        value = row.value(key)
        if value is None:
            return (2, 0, "")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (0, value, "") if number else (1, 0, str(value))

    present = [row for row in body if row.value(key) is not None]
    absent = [row for row in body if row.value(key) is None]
    numbers = sorted((r for r in present if sort_key(r)[0] == 0), key=sort_key, reverse=order == "desc")
    others = sorted((r for r in present if sort_key(r)[0] == 1), key=sort_key, reverse=order == "desc")
    return ([base_row] if base_row else []) + numbers + others + absent
