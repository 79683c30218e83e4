"""The comparison table: which cards, which columns, which values, deltas to a baseline."""

import difflib
from dataclasses import dataclass, field, replace

from .cards import (
    Card,
    card_facts,
    flops_counters,
    get_card,
    latest_values,
    select_cards,
)
from .db import Database
from .errors import ExpdbError
from .metrics import PROFILE_COLUMNS, MetricDef, definition, load_definitions
from .values import Value, same
from .where import Where, parse_where

PARAM_MODES = ("differing", "all", "none")
CARD_FIELDS = ("name", "status", "runner")
COST_KEYS = frozenset(PROFILE_COLUMNS)
_PARAM_KEYS = "SELECT DISTINCT json_each.key FROM card, json_each(card.params)"  # deltas of costs are shown relative to the baseline


@dataclass
class Row:
    card: Card
    values: dict[str, float]  # metric key -> value, profile columns included

    def value(self, key: str) -> Value | None:
        """A metric, a parameter, or a card field, looked up in that order."""
        if key in self.values:
            return self.values[key]
        if key in self.card.params:
            return self.card.params[key]
        return getattr(self.card, key) if key in CARD_FIELDS else None


@dataclass
class ComparisonTable:
    param_keys: list[str]
    metrics: list[MetricDef]
    rows: list[Row]
    baseline: Row | None = None
    best: dict[str, float] = field(default_factory=dict)  # best value of each metric that has a direction
    filtered: bool = False  # rows were selected by a name pattern, tag or --where

    def delta(self, row: Row, key: str) -> float | None:
        """Row minus baseline; for costs, the relative change in percent."""
        if self.baseline is None or row is self.baseline:
            return None
        value, base = row.values.get(key), self.baseline.values.get(key)
        if value is None or base is None:
            return None
        if key in COST_KEYS:
            return (value - base) / base * 100 if base else None
        return value - base


def _matching_ids(db: Database, predicate: Where, metric_keys: set[str]) -> list[int]:
    """The cards that satisfy `--where`; a key must be a card field, a metric, or some card's parameter."""
    keys = sorted(predicate.keys - set(CARD_FIELDS))
    facts = card_facts(db, keys)
    have_param = {key for found in facts.values() for key in found}
    unknown = [key for key in keys if key not in have_param and key not in metric_keys]
    if unknown:
        candidates = sorted(set(CARD_FIELDS) | metric_keys | {key for (key,) in db.query(_PARAM_KEYS)})
        hint = _did_you_mean(unknown[0], candidates)
        raise ExpdbError(
            f"--where mentions {unknown[0]!r}, which no card has as a parameter or metric"
            + (f"; {hint.strip()}" if hint else "")
        )
    metrics = latest_values(db) if predicate.keys & metric_keys else {}
    matching = []
    for card_id, found in facts.items():
        card_metrics = metrics.get(card_id, {})
        if predicate({key: card_metrics.get(key, found.get(key)) for key in predicate.keys}):
            matching.append(card_id)
    return matching


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def build_table(
    db: Database,
    metrics: list[str] = (),
    where: str | None = None,
    sort: str | None = None,
    baseline: str | None = None,
    params: str = "differing",
    pattern: str | None = None,
    tag: str | None = None,
) -> ComparisonTable:
    """The cards that have any of `metrics` (default: every recorded metric), filtered and sorted.

    Profile columns (Params, FLOPs, Cost-Time) follow whenever a shown card has a profile.
    """
    if params not in PARAM_MODES:
        raise ExpdbError(f"unknown --params {params!r}; use one of: {', '.join(PARAM_MODES)}")
    predicate = parse_where(where) if where else None
    definitions = load_definitions(db)
    recorded = {key for (key,) in db.query("SELECT DISTINCT key FROM metric")}
    known = sorted(recorded | set(definitions) | set(PROFILE_COLUMNS))
    for key in metrics:
        if key not in known:
            raise ExpdbError(
                f"unknown metric {key!r}; {_did_you_mean(key, sorted(recorded)) or _did_you_mean(key, known)}"
                f"recorded metrics: {', '.join(sorted(recorded)) or 'none yet'}"
            )
    requested = list(dict.fromkeys(metrics)) or sorted(recorded)

    matching = _matching_ids(db, predicate, set(known)) if predicate is not None else None
    cards = select_cards(db, pattern=pattern, tag=tag, ids=matching)
    values_by_card = latest_values(db, matching)
    all_rows = [Row(card, values_by_card.get(card.id, {})) for card in cards]
    rows = [row for row in all_rows if any(key in row.values for key in requested)]

    base_row = None
    if baseline is not None:
        base_card = get_card(db, baseline)
        base_row = next((row for row in rows if row.card.id == base_card.id), None)
        if base_row is None:
            base_row = Row(base_card, latest_values(db, [base_card.id]).get(base_card.id, {}))
            rows.insert(0, base_row)

    if sort:
        rows = _sorted(rows, sort, definitions, base_row)

    columns = requested + [key for key in PROFILE_COLUMNS if key not in requested and any(key in r.values for r in rows)]
    shown = [definition(definitions, key) for key in columns]
    if "flops" in columns:
        counters = set(flops_counters(db, [row.card.id for row in rows if "flops" in row.values]).values())
        if len(counters) == 1:
            shown[columns.index("flops")] = replace(shown[columns.index("flops")], source=counters.pop() or "")
    return ComparisonTable(
        param_keys=_param_columns(rows, params),
        metrics=shown,
        rows=rows,
        baseline=base_row,
        best=_best_values(rows, shown),
        filtered=bool(pattern or tag or where),
    )


def _param_columns(rows: list[Row], mode: str) -> list[str]:
    keys = list(dict.fromkeys(key for row in rows for key in row.card.params))
    if mode == "none":
        return []
    if mode == "all" or len(rows) < 2:
        return keys if mode == "all" else []
    first = rows[0].card.params
    return [key for key in keys if any(not same(row.card.params.get(key), first.get(key)) for row in rows)]


def _best_values(rows: list[Row], metrics: list[MetricDef]) -> dict[str, float]:
    best: dict[str, float] = {}
    for metric in metrics:
        present = [row.values[metric.key] for row in rows if metric.key in row.values]
        if metric.direction and present:
            best[metric.key] = max(present) if metric.direction == "higher" else min(present)
    return best


def _sorted(rows: list[Row], sort: str, definitions: dict[str, MetricDef], base_row: Row | None) -> list[Row]:
    """`--sort KEY[:asc|:desc]`; a metric sorts best first by default, anything else ascending.

    Rows without the key go last; the baseline stays on top.
    """
    key, _, order = sort.partition(":")
    if order not in ("", "asc", "desc"):
        raise ExpdbError(f"--sort {sort!r}: the order is :asc or :desc, as in --sort {key}:desc")
    if rows and not any(row.value(key) is not None for row in rows):
        raise ExpdbError(f"--sort {key!r}: no shown card has a parameter or metric named {key!r}")
    if not order:
        order = "desc" if definition(definitions, key).direction == "higher" else "asc"
    body = [row for row in rows if row is not base_row]

    def sort_key(row: Row) -> tuple:
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
