"""Folding cards into variants: repetitions of one setting (its seeds) become one row or one curve.

`--over seed` folds cards that differ only in `seed`; `--group-by N` folds cards with the same N,
and refuses a group whose cards differ in anything but N and what is folded over (`seed` unless
`--over` says otherwise). Cards that differ in anything else are never averaged together, and an
invalid card is never folded with valid ones.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from .cards import Card
from .errors import ExpdbError
from .values import Value, format_value, same

DEFAULT_OVER = ("seed",)  # what --group-by folds over unless --over names something else


@dataclass
class Variant:
    name: str
    cards: list[Card]
    params: dict[str, Value]  # the parameters every card of it has the same value of
    seeds: dict[int, object] = field(default_factory=dict)  # card id -> what it repeats (its seed), for pairing
    invalid: bool = False  # a variant of invalid cards, shown only under --all

    def seed_of(self, card: Card) -> object:
        return self.seeds[card.id]


def split_keys(value: str | Sequence[str] | None) -> list[str]:
    """`"N,L"` or `["N", "L"]` -> ["N", "L"]."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [part for item in value for part in item.split(",")]
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def _hashable(value: Value | None) -> tuple:
    """A value as a dict key that keeps types apart: 5 and 5.0, true and 1 are different settings."""
    return (type(value).__name__, tuple(map(_hashable, value)) if isinstance(value, list) else value)


def _settings(cards: list[Card], leave_out: set[str]) -> list[tuple]:
    """Each card's setting, its parameters but `leave_out`, as a dict key: the keys (sorted), their types and
    their values (a list as a tuple of _hashable), so that 5 and 5.0 differ and the order of the keys does not
    matter. Per card only C-level tuple and map calls; the sorted keys and the lists' places are worked out once
    per order of keys and per types (10,000 cards of 20 parameters)."""
    orders: dict[tuple[str, ...], tuple[str, ...]] = {}
    lists: dict[tuple[type, ...], list[int]] = {}
    settings = []
    for card in cards:
        params = card.params
        keys = tuple(params)
        order = orders.get(keys)
        if order is None:
            order = orders[keys] = tuple(sorted(key for key in keys if key not in leave_out))
        values: tuple[object, ...] = tuple(map(params.__getitem__, order))
        types = tuple(map(type, values))
        places = lists.get(types)
        if places is None:
            places = lists[types] = [index for index, kind in enumerate(types) if kind is list]
        if places:
            listed: list[object] = list(values)
            for index in places:
                listed[index] = tuple(map(_hashable, values[index]))  # type: ignore[call-overload]
            values = tuple(listed)
        settings.append((order, types, values))
    return settings


def _order(value: Value | None) -> tuple:
    """Numbers in numeric order (3 before 10), then text, then missing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, format_value(value)) if value is not None else (2, 0, "")


def _seeds(cards: list[Card], over: list[str]) -> dict[int, object]:
    """card id -> its values of the folded-over keys; cards that repeat those values pair with nothing."""
    keys = {card.id: tuple(_hashable(card.params.get(key)) for key in over) for card in cards}
    if len(set(keys.values())) < len(keys):
        return {card.id: ("card", card.id) for card in cards}
    return dict(keys)


def _shared(cards: list[Card], check: set[str] | None = None) -> dict[str, Value]:
    """The parameters all `cards` have the same value of; only the keys in `check` are compared, when the
    others are known to agree (cards folded over `check` agree on everything else)."""
    first = cards[0].params
    return {
        key: value
        for key, value in first.items()
        if (check is not None and key not in check) or all(key in card.params and same(card.params[key], value) for card in cards)
    }


def fold(cards: list[Card], over: Sequence[str] = (), group_by: Sequence[str] = ()) -> list[Variant]:
    """The variants of `cards`: by `group_by` values when given (in numeric order), else by every parameter
    but `over` (in the order of their first card). A `group_by` group whose cards differ in another
    parameter than `over` (default: seed) is refused, naming the parameter."""
    over, group_by = list(over), list(group_by)
    if not over and not group_by:
        raise ExpdbError("nothing to fold over: give --over seed (or the parameters that repeat a setting)")
    for key in set(over) & set(group_by):
        raise ExpdbError(f"{key!r} is both grouped by and folded over; give it to --group-by or to --over, not both")
    folded_over = over or list(DEFAULT_OVER)
    members: dict[tuple, list[Card]] = {}
    if group_by:
        settings = [tuple(_hashable(card.params.get(k)) for k in group_by) for card in cards]
    else:
        settings = _settings(cards, set(over))
    for card, setting in zip(cards, settings, strict=True):
        members.setdefault((card.invalid_reason is not None, setting), []).append(card)
    groups = list(members.values())
    if group_by:
        for group in groups:
            _check_unmixed(group, group_by, folded_over)
        groups.sort(key=lambda group: [_order(group[0].params.get(k)) for k in group_by] + [group[0].invalid_reason is not None])
    compared = None if group_by else set(over)  # folded over `over`, a group agrees on everything else
    variants = [
        Variant("", group, _shared(group, compared), _seeds(group, folded_over), group[0].invalid_reason is not None)
        for group in groups
    ]
    _name(variants, over, group_by)
    return variants


def _check_unmixed(group: list[Card], group_by: list[str], over: list[str]) -> None:
    allowed = set(group_by) | set(over)
    first = group[0]
    for card in group[1:]:
        for key in dict.fromkeys([*first.params, *card.params]):
            if key in allowed or same(first.params.get(key), card.params.get(key)):
                continue
            where = ", ".join(f"{k}={format_value(first.params.get(k))}" for k in group_by)
            raise ExpdbError(
                f"--group-by {','.join(group_by)}: the group {where} mixes cards that differ in {key} "
                f"({first.name} has {format_value(first.params.get(key))}, "
                f"{card.name} has {format_value(card.params.get(key))}); "
                f"add {key} to --group-by to split them, or give --over {','.join([*over, key])} to average over it"
            )


def _name(variants: list[Variant], over: list[str], group_by: list[str]) -> None:
    """"N=5, L=6" for groups; for folded seeds the cards' common name without the folded part
    (`v3_N10` of `v3_N10_seed0`...), else the parameters that tell the variants apart."""
    from .sweep import name_part

    if group_by:
        for variant in variants:
            variant.name = ", ".join(f"{key}={format_value(variant.cards[0].params.get(key))}" for key in group_by)
    else:
        differing: list[str] | None = None  # worked out when a name needs it: 2,000 variants x 20 parameters
        for variant in variants:
            if len(variant.cards) == 1:
                variant.name = variant.cards[0].name
                continue
            stripped = set()
            for card in variant.cards:
                name = card.name
                for key in over:
                    if key in card.params:
                        name = name.replace("_" + name_part(key, card.params[key]), "", 1)
                stripped.add(name)
            if len(stripped) == 1:
                variant.name = stripped.pop()
            else:
                if differing is None:
                    differing = [
                        key
                        for key in dict.fromkeys(key for other in variants for key in other.params)
                        if any(not same(other.params.get(key), variants[0].params.get(key)) for other in variants)
                    ]
                described = ", ".join(f"{key}={format_value(variant.params.get(key))}" for key in differing)
                variant.name = described or variant.cards[0].name
    for variant in variants:
        if variant.invalid:
            variant.name += " (invalid)"
    taken: dict[str, int] = {}
    for variant in variants:  # two variants never share a name: the later ones are numbered
        count = taken[variant.name] = taken.get(variant.name, 0) + 1
        if count > 1:
            variant.name += f" #{count}"
