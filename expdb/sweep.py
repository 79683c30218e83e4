"""Sweeps: a card for each point of a grid of parameter values, all children of one base card.

`--N 3,5,10 --L 4,6` makes 6 cards named by their values (`SWEEP_N3_L4`, ...). A parameter's
values are a comma list (`3,5,10`, or lists `[3,5],[5,5]`), a range `START:STOP:N`, a log
range `START:STOP:logN`, or a mix of those; a parameter with a single value is set on every
card. Everything is checked before the first card is written.
"""

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from . import cards, values
from .db import Database
from .errors import ExpdbError
from .values import Value

RANGE_DIGITS = 3  # significant digits of the points a range makes: lr3.16e-4, not lr3.1622776601683794e-4
_RANGE_COUNT = re.compile(r"(log)?(\d+)")
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_.\-]+")  # what cards.NAME_PATTERN does not allow
_SHOWN_COLLISIONS = 5


@dataclass
class SweepCard:
    name: str
    params: dict[str, Value]  # what it sets on top of the base card: every parameter of the sweep
    typed: dict[str, str]  # each value as typed, or as a range made it


@dataclass
class Grid:
    """The cards of a sweep, before the database is looked at."""

    name: str
    varying: list[str]  # the parameters with several values, in the order given
    cards: list[SweepCard]


@dataclass
class SweepPlan:
    """The cards a sweep creates, checked against the database, their values typed like the base card's."""

    name: str
    base: str
    varying: list[str]
    cards: list[SweepCard]
    tags: list[str]  # the sweep's name first
    note: str | None

    @property
    def fixed(self) -> dict[str, Value]:
        """The parameters set to the same value on every card."""
        return {key: value for key, value in self.cards[0].params.items() if key not in self.varying}


def split_items(text: str, key: str) -> list[str]:
    """`3,5,10` -> ['3', '5', '10']; commas inside brackets or quotes do not split: `[3,5],[5,5]` is two lists."""
    items, current, depth, quote = [], "", 0, None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[]":
            depth += 1 if char == "[" else -1
        elif char == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        current += char
    items.append(current.strip())
    if depth or quote:
        raise ExpdbError(f"--{key} {text!r} has an unclosed bracket or quote; write lists as [3, 5],[5, 5]")
    if not all(items):
        raise ExpdbError(f"--{key} {text!r} has an empty value; write several values as --{key} 3,5,10")
    return items


def _is_number(value: Value) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_or_none(text: str) -> Value | None:
    """What an end of a range is: a number; a word such as nan or inf (which is no end); None for other text."""
    try:
        value = values.parse_scalar(text)
    except ExpdbError:
        return text  # nan, inf: meant as a number, but none a range can end at
    return value if _is_number(value) or isinstance(value, bool) else None


def parse_range(text: str, key: str, max_points: int) -> list[int | float] | None:
    """`1:10:4` -> [1, 4, 7, 10]; `1e-4:1e-2:log5` -> [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]; None when `text` is no range.

    A range is what starts with two numbers separated by ':'; an A:B:C with a number (or nan,
    inf, true) at one end or a count N after the second colon is a malformed range, refused rather
    than taken for a string (`nan:1:3`, `1:inf:3`, `x:1:5`). Its ends are kept exactly; the
    points between are rounded to 3 significant digits (of the step, for an even range). Its
    points are ints when both ends are ints and every point is whole.
    """
    parts = text.split(":")
    if len(parts) < 2 or text.strip()[:1] in ("'", '"', "["):
        return None  # no colon, a quoted string, a list
    ends = [_number_or_none(part) for part in parts[:2]]
    start, stop = ends
    if start is None or stop is None or not (_is_number(start) and _is_number(stop)):
        meant_as_range = len(parts) == 3 and (
            any(end is not None for end in ends) or _RANGE_COUNT.fullmatch(parts[2].strip()) is not None
        )
        if not meant_as_range:
            return None  # a string with colons in it: 'regex:x:y', 'bdhw:x'
        raise ExpdbError(
            f"--{key} {text!r} is not a range: START and STOP must be finite numbers, as in 1e-4:1e-2:log5 or 1:10:4; "
            f"a string with colons goes in quotes, --{key} '\"{text}\"'"
        )
    match = _RANGE_COUNT.fullmatch(parts[2].strip()) if len(parts) == 3 else None
    if match is None:
        raise ExpdbError(
            f"--{key} {text!r} is not a range: write START:STOP:N for N evenly spaced points, "
            "or START:STOP:logN for log-spaced ones, e.g. 1e-4:1e-2:log5"
        )
    log, count = match[1] is not None, int(match[2])
    if count < 2:
        raise ExpdbError(f"--{key} {text!r} asks for {count} point(s): a range has at least 2, its two ends")
    if count > max_points:
        raise ExpdbError(f"--{key} {text!r} asks for {count:,} points, more than --max-cards {max_points:,}")
    if log and (start <= 0 or stop <= 0):
        raise ExpdbError(f"--{key} {text!r}: a log range needs ends above 0; START:STOP:{count} spaces them evenly")
    try:
        if log:
            low, span = math.log(start), math.log(stop) - math.log(start)  # in logs: 1e-300:1e300 does not overflow
            inner = [float(f"{math.exp(low + span * i / (count - 1)):.{RANGE_DIGITS}g}") for i in range(1, count - 1)]
        else:
            step = (stop - start) / (count - 1)
            digits = RANGE_DIGITS - 1 - math.floor(math.log10(abs(step))) if step else 0
            inner = [round(start + step * i, digits) or 0.0 for i in range(1, count - 1)]  # `or`: 0.0, not -0.0
    except OverflowError:
        inner = [math.inf]
    if not all(math.isfinite(point) for point in inner):
        raise ExpdbError(f"--{key} {text!r}: the points between its ends are beyond a float's range; narrow the range")
    points = [start, *inner, stop]
    if isinstance(start, int) and isinstance(stop, int) and all(float(point).is_integer() for point in points):
        return [int(point) for point in points]
    return [float(point) for point in points]


def parse_values(key: str, text: str, max_points: int) -> list[tuple[Value, str]]:
    """A parameter's values, each with its text: `3,5,10`, `[3,5],[5,5]`, `1e-4:1e-2:log5`, `1,2:10:5`, or one value."""
    parsed = []
    for item in split_items(text, key):
        points = parse_range(item, key, max_points)
        if points is None:
            parsed.append((values.parse_value(item, key), item))
        else:
            parsed.extend((point, values.format_value(point)) for point in points)
    return parsed


def _name_text(value: Value) -> str:
    if isinstance(value, list):
        return "x".join(_name_text(item) for item in value)  # [3, 5] -> 3x5, like an input shape
    # A whole float is named like the int it equals (lr1, not lr1.0): the name is the same whether
    # `1` was typed or a range made 1.0, and whichever type the base card gives the parameter.
    return _NOT_IN_NAMES.sub("-", values.format_value(value).removesuffix(".0"))


def name_part(key: str, value: Value) -> str:
    """`N3`, `lr1e-4`, `lr3.16e-4`, `ks3x5`; `shape-bdhw` and `w1-0.5`, where joining them would hide where the key ends."""
    text = _name_text(value)
    joiner = "-" if text[:1].isalpha() or key[-1].isdigit() else ""
    return key + joiner + text


def expand_grid(name: str, texts: dict[str, str], max_cards: int) -> Grid:
    """The cards of sweep `name` over the parameters' `texts` ({'N': '3,5,10', 'lr': '4e-3'}).

    Every combination of the varying parameters' values, the first parameter varying slowest;
    each card named `name` + `_` + its varying values (`cvt_io_v3_N3_L4`).
    """
    cards.validate_name(name)
    parsed = {key: parse_values(key, text, max_cards) for key, text in texts.items()}
    varying = [key for key, options in parsed.items() if len(options) > 1]
    if not varying:
        colons = [(key, text) for key, text in texts.items() if text.count(":") == 2 and text.strip()[:1] not in "'\"["]
        if colons:
            key, text = colons[0]
            raise ExpdbError(
                f"--{key} {text!r} is not a range (START:STOP:N, with numbers: 1e-4:1e-2:log5), so sweep {name} varies "
                f"nothing; a string with colons goes in quotes, --{key} '\"{text}\"', beside a parameter with several values"
            )
        raise ExpdbError(
            f"sweep {name} varies nothing: give a parameter several values, as --N 3,5,10 or --lr 1e-4:1e-2:log5"
        )
    count = math.prod(len(parsed[key]) for key in varying)
    if count > max_cards:
        sizes = " x ".join(f"{len(parsed[key])} {key}" for key in varying)
        raise ExpdbError(
            f"sweep {name} would create {count:,} cards ({sizes}), more than --max-cards {max_cards:,}; "
            "narrow the grid, or raise --max-cards"
        )
    fixed = {key: options[0] for key, options in parsed.items() if key not in varying}
    made: dict[str, SweepCard] = {}
    for point in itertools.product(*(parsed[key] for key in varying)):
        chosen = {**fixed, **dict(zip(varying, point, strict=True))}
        card = SweepCard(
            cards.validate_name(
                f"{name}_" + "_".join(name_part(key, value) for key, (value, _) in zip(varying, point, strict=True))
            ),
            {key: chosen[key][0] for key in texts},
            {key: chosen[key][1] for key in texts},
        )
        if card.name in made:
            raise ExpdbError(
                f"two cards of sweep {name} would be named {card.name!r} "
                f"({_varied(made[card.name], varying)} and {_varied(card, varying)}); give values whose names differ"
            )
        made[card.name] = card
    return Grid(name, varying, list(made.values()))


def _varied(card: SweepCard, varying: list[str]) -> str:
    return " ".join(f"{key}={card.typed[key]}" for key in varying)


def plan_sweep(db: Database, grid: Grid, base: str, tags: Sequence[str] = (), note: str | None = None) -> SweepPlan:
    """The grid's cards as children of `base`: their values typed like the base card's (an int stays an int),
    tagged with the sweep's name and `tags`. Refuses names that exist already."""
    for tag in tags:
        cards.validate_tag(tag)
    if note is not None:
        cards.validate_note(note)
    base_card = cards.get_card(db, base)
    typed_cards = [
        SweepCard(
            card.name,
            {
                key: values.coerce_like(value, base_card.params[key], key, card.typed[key]) if key in base_card.params else value
                for key, value in card.params.items()
            },
            card.typed,
        )
        for card in grid.cards
    ]
    clause, parameters = db.among("name", [card.name for card in grid.cards])
    existing = [row[0] for row in db.query(f"SELECT name FROM card WHERE {clause} ORDER BY id", parameters)]
    if existing:
        shown = ", ".join(existing[:_SHOWN_COLLISIONS]) + (", ..." if len(existing) > _SHOWN_COLLISIONS else "")
        raise ExpdbError(
            f"{len(existing)} of sweep {grid.name}'s {len(grid.cards)} card names exist already ({shown}); "
            "pick another sweep name, or remove those cards with `expdb rm`"
        )
    return SweepPlan(grid.name, base_card.name, grid.varying, typed_cards, list(dict.fromkeys([grid.name, *tags])), note)


def create_sweep(db: Database, plan: SweepPlan) -> list[cards.Card]:
    """Create the planned cards, each as `expdb new --from BASE` would; all of them, or none."""
    with db.transaction():
        return [
            cards.create_card(db, card.name, card.params, card.typed, parent=plan.base, note=plan.note, tags=plan.tags)
            for card in plan.cards
        ]
