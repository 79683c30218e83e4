"""The comparison table of the selected cards: which rows and columns, which values, deltas to a baseline.

A metric column is a metric key with a reduction over the run (`iou50:max`: the best point
of its curve) and, when rows are grouped (`group_by`), an aggregate over the group's cards
(`mean`, `std`, `min`, `max`). Renderers take headers, cells and column names from `Column`.
"""

import difflib
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .cards import (
    Card,
    card_facts,
    flops_counters,
    get_card,
    latest_values,
)
from .db import Database
from .errors import ExpdbError
from .metrics import PROFILE_COLUMNS, MetricDef, definition, load_definitions
from .series import _unpack, read_curve
from .values import Value, format_value, same
from .where import Where, parse_where

PARAM_MODES = ("differing", "all", "none")
CARD_FIELDS = ("name", "status", "runner")
COST_KEYS = frozenset(PROFILE_COLUMNS)  # deltas of costs are shown relative to the baseline
REDUCTIONS = ("last", "min", "max")  # which value of a run: `loss:min`
AGGREGATES = ("mean", "std", "count", "min", "max")  # how a group of cards folds: `--agg mean,std,count`
DEFAULT_AGGREGATES = ("mean", "std", "count")


@dataclass
class Row:
    card: Card
    values: dict[str, float]  # value key (`iou50`, `iou50_max`) -> value, profile columns included

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def params(self) -> dict[str, Value]:
        return self.card.params

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
    values: dict[str, float] = field(init=False)  # value key -> mean: what sorting, best and deltas go by

    def __post_init__(self) -> None:
        self.values = {key: found["mean"] for key, found in self.stats.items()}

    @property
    def count(self) -> int:
        return len(self.rows)

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
    reduction: str = ""  # "" (the recorded value, else the curve's last point), "last", "min" or "max"
    agg: str = ""  # "" for ungrouped rows, else "mean", "std", "min" or "max"

    @property
    def key(self) -> str:
        """The key of a row's value: `iou50`, `iou50_max`."""
        return f"{self.metric.key}_{self.reduction}" if self.reduction else self.metric.key

    @property
    def name(self) -> str:
        """The machine-readable name, with the unit: `iou50_max`, `iou50_mean`, `cost_time_mean_ms`."""
        name = f"{self.key}_{self.agg}" if self.agg else self.key
        return f"{name}_{self.metric.unit.lower()}" if self.metric.unit else name

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
        """The head: "IOU@0.50", "IOU@0.50 (max)", "FLOPs (fvcore, MAC)"; a group's std, min or max says so after it."""
        source = ", ".join(part for part in (self.reduction, self.metric.source) if part)
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
    best: dict[str, float] = field(default_factory=dict)  # column name -> best value, for columns with a direction
    group_keys: list[str] = field(default_factory=list)  # rows are GroupRows, grouped by these parameters
    counted: bool = False  # grouped rows show their number of cards, `n`

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
        value = column.value(row)
        return value is not None and self.best.get(column.name) == value and len(self.rows) > 1


def parse_metric(text: str) -> tuple[str, str]:
    """`iou50` -> ("iou50", ""), `loss:min` -> ("loss", "min")."""
    key, colon, reduction = text.partition(":")
    if colon and reduction not in REDUCTIONS:
        raise ExpdbError(f"--metric {text!r}: unknown reduction {reduction!r}; use one of: {', '.join(REDUCTIONS)}")
    return key, reduction


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
    point; "min" and "max": over the curve, else the summary value.
    """
    target = f"{key}_{reduction}" if reduction else key
    if reduction in ("min", "max"):
        extremes = _extremes(db, key, [row.card.id for row in rows], reduction) if key in curve_keys else {}
        for row in rows:
            value = extremes.get(row.card.id, row.values.get(key))
            if value is not None:
                row.values[target] = value
        return
    lacking = [row for row in rows if key not in row.values]
    last = _last_points(db, key, [row.card.id for row in lacking]) if lacking and key in curve_keys else {}
    for row in rows:
        value = row.values.get(key, last.get(row.card.id))
        if value is not None:
            row.values[target] = value


def _matching_ids(db: Database, predicate: Where, metric_keys: set[str], curve_keys: set[str]) -> list[int]:
    """The cards that satisfy `--where`; a key must be a card field, a metric, or some card's parameter."""
    keys = sorted(predicate.keys - set(CARD_FIELDS))
    facts = card_facts(db, keys)
    have_param = {key for found in facts.values() for key in found}
    unknown = [key for key in keys if key not in have_param and key not in metric_keys]
    if unknown:
        candidates = sorted(set(CARD_FIELDS) | metric_keys | {key for (key,) in db.query(db.json_keys("card", "params"))})
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
    curve_keys = {key for (key,) in db.query("SELECT DISTINCT key FROM series")}
    return recorded, curve_keys, sorted(recorded | curve_keys | set(definitions) | set(PROFILE_COLUMNS))


def cards_where(db: Database, where: str) -> list[int]:
    """The ids of the cards that satisfy a `--where` expression, read as `expdb table` reads it."""
    _, curve_keys, known = _known_keys(db, load_definitions(db))
    return _matching_ids(db, parse_where(where), set(known), curve_keys)


def build_table(
    db: Database,
    cards: list[Card],
    metrics: Sequence[str] = (),
    sort: str | None = None,
    baseline: str | None = None,
    params: str = "differing",
    group_by: str | list[str] | None = None,
    aggs: str | list[str] | None = None,
) -> ComparisonTable:
    """The rows of `cards` (as `select_cards` picks them, in that order) that have any of `metrics`
    (default: every recorded metric), sorted by `sort` if given.

    `metrics`: keys, each optionally `KEY:last|min|max`; a card without a recorded value of
    KEY shows its curve's last point. `group_by`: parameter keys ("N,L" or a list) whose
    values fold cards into one row each; `aggs`: what each group shows (default mean, std,
    count). Profile columns (Params, FLOPs, Cost-Time) follow whenever a shown card has a profile.
    `baseline` is shown on top, selected or not.
    """
    group_keys, agg_names = _grouping(group_by, aggs)
    if params not in PARAM_MODES:
        raise ExpdbError(f"unknown --params {params!r}; use one of: {', '.join(PARAM_MODES)}")
    definitions = load_definitions(db)
    requested, curve_keys = _requested_metrics(db, metrics, definitions)
    rows, base_row = _card_rows(db, cards, requested, curve_keys, baseline, definitions)
    if not rows:
        raise ExpdbError(
            f"no card of the {len(cards)} selected has {' or '.join(key for key, _ in requested) or 'a metric'}"
        )
    columns = _columns(db, rows, requested, definitions)
    shown: list[Row | GroupRow]
    shown_base: Row | GroupRow | None
    if group_keys:
        groups, shown_base = _grouped(db, rows, group_keys, base_row)
        param_keys = _group_param_columns(groups, group_keys, params)
        columns = [replace(column, agg=agg) for column in columns for agg in agg_names if agg != "count"]
        shown = list(groups)
    else:
        param_keys, shown, shown_base = _param_columns(rows, params), list(rows), base_row
    if sort:
        shown = _sorted(shown, sort, definitions, shown_base)
    return ComparisonTable(
        param_keys=param_keys,
        columns=columns,
        rows=shown,
        baseline=shown_base,
        best=_best_values(shown, columns),
        group_keys=group_keys,
        counted="count" in agg_names,
    )


def _grouping(group_by: str | list[str] | None, aggs: str | list[str] | None) -> tuple[list[str], list[str]]:
    """The keys rows are grouped by and the aggregates each group shows, checked."""
    group_keys, agg_names = _split(group_by), _split(aggs)
    if agg_names and not group_keys:
        raise ExpdbError("--agg folds groups of cards; give the parameters to group by with --group-by, as in --group-by N")
    for name in agg_names:
        if name not in AGGREGATES:
            raise ExpdbError(f"unknown --agg {name!r}; use one of: {', '.join(AGGREGATES)}")
    return group_keys, agg_names or (list(DEFAULT_AGGREGATES) if group_keys else [])


def _requested_metrics(
    db: Database, metrics: Sequence[str], definitions: dict[str, MetricDef]
) -> tuple[list[tuple[str, str]], set[str]]:
    """The (key, reduction) of each metric column, checked, and the keys logged as curves."""
    specs = list(dict.fromkeys(parse_metric(text) for text in metrics))
    recorded, curve_keys, known = _known_keys(db, definitions)
    logged = sorted(recorded | curve_keys)
    for key, reduction in specs:
        if key not in known:
            raise ExpdbError(
                f"unknown metric {key!r}; {_did_you_mean(key, logged) or _did_you_mean(key, known)}"
                f"recorded metrics: {', '.join(logged) or 'none yet'}"
            )
        if reduction and key in COST_KEYS:
            raise ExpdbError(f"--metric {key}:{reduction}: {key} is measured once per profile; use --metric {key}")
    # By default every recorded summary metric; a study that only logged curves shows their last points.
    return specs or [(key, "") for key in sorted(recorded or curve_keys)], curve_keys


def _card_rows(
    db: Database,
    cards: list[Card],
    requested: list[tuple[str, str]],
    curve_keys: set[str],
    baseline: str | None,
    definitions: dict[str, MetricDef],
) -> tuple[list[Row], Row | None]:
    """A row per card that has a value of a requested metric (the baseline's on top when it is not one of them),
    and the baseline's row."""
    values_by_card = latest_values(db, [card.id for card in cards])
    all_rows = [Row(card, values_by_card.get(card.id, {})) for card in cards]
    base_row = None
    if baseline is not None:
        base_card = get_card(db, baseline)
        base_row = next((row for row in all_rows if row.card.id == base_card.id), None)
        if base_row is None:
            base_row = Row(base_card, latest_values(db, [base_card.id]).get(base_card.id, {}))
    extra = [base_row] if base_row is not None and not any(row is base_row for row in all_rows) else []
    for key, reduction in requested:
        _fill_values(db, all_rows + extra, key, reduction, curve_keys)
    keys = [Column(definition(definitions, key), reduction).key for key, reduction in requested]
    rows = [row for row in all_rows if any(key in row.values for key in keys)]
    if base_row is not None and not any(row is base_row for row in rows):
        rows.insert(0, base_row)
    return rows, base_row


def _columns(db: Database, rows: list[Row], requested: list[tuple[str, str]], definitions: dict[str, MetricDef]) -> list[Column]:
    """The requested metrics, then the profile columns some row has; FLOPs say their counter when all rows share it."""
    columns = [Column(definition(definitions, key), reduction) for key, reduction in requested]
    columns += [
        Column(definition(definitions, key))
        for key in PROFILE_COLUMNS
        if (key, "") not in requested and any(key in row.values for row in rows)
    ]
    if any(column.metric.key == "flops" for column in columns):
        counters = set(flops_counters(db, [row.card.id for row in rows if "flops" in row.values]).values())
        if len(counters) == 1:
            source = counters.pop() or ""
            columns = [replace(c, metric=replace(c.metric, source=source)) if c.metric.key == "flops" else c for c in columns]
    return columns


def _grouped(db: Database, rows: list[Row], keys: list[str], base_row: Row | None) -> tuple[list[GroupRow], GroupRow | None]:
    """Rows folded by the values of parameters `keys`, in the order their first card comes; and the baseline's group."""
    present = {key for row in rows for key in row.card.params}
    for key in keys:
        if key not in present:
            everywhere = sorted({key for (key,) in db.query(db.json_keys("card", "params"))})
            raise ExpdbError(
                f"--group-by {key!r}: no shown card has a parameter {key!r}; "
                + (_did_you_mean(key, sorted(present)) or _did_you_mean(key, everywhere))
                + f"parameters: {', '.join(sorted(present)) or 'none'}"
            )
    members: dict[str, list[Row]] = {}
    for row in rows:
        name = ", ".join(f"{key}={format_value(row.card.params.get(key))}" for key in keys)
        members.setdefault(name, []).append(row)
    groups = [group_rows(name, found) for name, found in members.items()]
    base_group = next((group for group in groups if base_row in group.rows), None)
    return groups, base_group


def group_rows(name: str, rows: list[Row]) -> GroupRow:
    """One row for `rows`: the parameters they share, and for each value key its mean, std, count, min and max."""
    keys = list(dict.fromkeys(key for row in rows for key in row.card.params))
    first = rows[0].card.params
    shared = {
        key: first[key]
        for key in keys
        if first.get(key) is not None and all(same(row.card.params.get(key), first[key]) for row in rows)
    }
    stats: dict[str, dict[str, float]] = {}
    for key in dict.fromkeys(key for row in rows for key in row.values):
        numbers = [row.values[key] for row in rows if key in row.values and not math.isnan(row.values[key])]
        if not numbers:
            continue
        found = {"mean": statistics.fmean(numbers), "count": len(numbers), "min": min(numbers), "max": max(numbers)}
        if len(numbers) > 1:
            found["std"] = statistics.stdev(numbers)
        stats[key] = found
    return GroupRow(name, shared, rows, stats)


def _group_param_columns(groups: list[GroupRow], keys: list[str], mode: str) -> list[str]:
    """The grouping keys, then the parameters constant within every group (and, unless `all`, differing between groups)."""
    if mode == "none":
        return []
    every = list(dict.fromkeys(key for group in groups for row in group.rows for key in row.card.params))
    constant = [
        key
        for key in every
        if key not in keys
        and all(all(same(r.card.params.get(key), g.rows[0].card.params.get(key)) for r in g.rows) for g in groups)
    ]
    if mode == "differing":
        first = groups[0].rows[0].card.params if groups else {}
        constant = [key for key in constant if any(not same(g.rows[0].card.params.get(key), first.get(key)) for g in groups)]
    return keys + constant


def _param_columns(rows: list[Row], mode: str) -> list[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row.card.params))
    if mode == "none":
        return []
    if mode == "all" or len(rows) < 2:
        return keys if mode == "all" else []
    first = rows[0].card.params
    return [key for key in keys if any(not same(row.card.params.get(key), first.get(key)) for row in rows)]


def _best_values(rows: list[Row | GroupRow], columns: list[Column]) -> dict[str, float]:
    best: dict[str, float] = {}
    for column in columns:
        present = [value for row in rows if (value := column.value(row)) is not None]
        if column.metric.direction and column.ranked and present:
            best[column.name] = max(present) if column.metric.direction == "higher" else min(present)
    return best


def _sorted(rows: list, sort: str, definitions: dict[str, MetricDef], base_row) -> list:
    """`--sort KEY[:asc|:desc]`, KEY a parameter or a metric column (`iou50`, `iou50:max`); a metric sorts
    best first by default, anything else ascending. Rows without the key go last; the baseline stays on top.
    """
    parts = sort.split(":")
    order = parts.pop() if len(parts) > 1 and parts[-1] in ("asc", "desc") else ""
    if len(parts) > 2 or (len(parts) == 2 and parts[1] not in REDUCTIONS):
        raise ExpdbError(f"--sort {sort!r}: the order is :asc or :desc, as in --sort {parts[0]}:desc")
    metric_key = parts[0]
    key = "_".join(parts)
    if rows and not any(row.value(key) is not None for row in rows):
        raise ExpdbError(f"--sort {':'.join(parts)!r}: no shown card has a parameter or metric named {':'.join(parts)!r}")
    if not order:
        order = "desc" if definition(definitions, metric_key).direction == "higher" else "asc"
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
