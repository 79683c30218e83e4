"""Experiment cards: create, fork, find, note, tag, edit while unrun, rename, remove."""

import difflib
import gc
import json
import re
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import values
from .conditions import card_profiles, choose
from .db import Database, new_uid, now
from .errors import ExpdbError
from .lifecycle import CARD_STATUSES, PLANNED, RunStatus
from .metrics import PROFILE_COLUMNS
from .values import Value
from .where import parse_where

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
_LATEST_RUN = "(SELECT max(id) FROM run WHERE run.card_id = card.id)"


@dataclass(slots=True)
class Card:
    id: int
    name: str
    parent: str | None
    runner: str | None
    command: str | None  # a shell command that trains it, with {param} placeholders
    parser: str | None  # how to read the command's log: mmdet, regex:PATTERN
    params: dict[str, Value]
    created_at: float
    status: str
    tags: list[str] = field(default_factory=list)
    diverge: dict[str, float] = field(default_factory=dict)  # its divergence settings (expdb.divergence.DEFAULTS)
    invalid_reason: str | None = None  # set by `expdb invalidate`: its results must not be used

    @property
    def valid(self) -> bool:
        return self.invalid_reason is None


@dataclass
class ParamChange:
    """A parameter of a card next to its parent's value."""

    key: str
    value: Value | None
    parent_value: Value | None
    inherited: bool  # present in the parent with the same value

    @property
    def kind(self) -> str:
        if self.inherited:
            return "inherited"
        return "changed" if self.parent_value is not None else "new"


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ExpdbError(
            f"invalid card name {name!r}: use up to 128 letters, digits, '_', '-' and '.', "
            "starting with a letter, digit or '_'"
        )
    return name


def card_names(db: Database) -> list[str]:
    return [row[0] for row in db.query("SELECT name FROM card ORDER BY id")]


def card_exists(db: Database, name: str) -> bool:
    return db.query_one("SELECT 1 FROM card WHERE name = ?", (name,)) is not None


def missing_card_error(db: Database, name: str) -> ExpdbError:
    close = difflib.get_close_matches(name, card_names(db), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; `expdb list` shows the cards"
    return ExpdbError(f"no card named {name!r}{hint}")


_STATUS = f"(SELECT status FROM run WHERE run.id = {_LATEST_RUN})"  # its latest run's; NULL for a planned card
_CARD_COLUMNS = f"""card.id, card.name, parent.name, card.runner, card.command, card.parser, card.params,
    card.created_at, {_STATUS}, card.diverge, card.invalid_reason"""
_CARD_FROM = "card LEFT JOIN card AS parent ON parent.id = card.parent_id"


def _among(db: Database, column: str, ids: list[int] | None, keyword: str = "") -> tuple[str, list]:
    """`column IN ids` as SQL with one bound parameter (no limit on how many); nothing for None."""
    if ids is None:
        return "", []
    clause, parameters = db.among(column, ids)
    return f" {keyword} {clause}", parameters


def _card_from_row(row: tuple, tags: list[str]) -> Card:
    card_id, name, parent, runner, command, parser, params, created_at, status, diverge, invalid_reason = row
    return Card(
        card_id, name, parent, runner, command, parser, values.loads(params), created_at, status or PLANNED, tags,
        json.loads(diverge) if diverge else {}, invalid_reason,
    )


def _tags_of(db: Database, card_ids: list[int] | None) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {}
    restrict, parameters = _among(db, "card_id", card_ids, "WHERE")
    for card_id, tag in db.query(f"SELECT card_id, name FROM tag {restrict} ORDER BY name", parameters):
        tags.setdefault(card_id, []).append(tag)
    return tags


def get_card(db: Database, name: str) -> Card:
    row = db.query_one(f"SELECT {_CARD_COLUMNS} FROM {_CARD_FROM} WHERE card.name = ?", (name,))
    if row is None:
        raise missing_card_error(db, name)
    return _card_from_row(row, _tags_of(db, [row[0]]).get(row[0], []))


@dataclass(frozen=True)
class Selection:
    """Which cards a command works on, as `expdb table`, `list`, `plot`, `report`, `copy`, `run` and `rm` take them.

    Names and globs together form one set (any of them); each of `tag`, `where` and `status`
    given narrows it (all of them). Nothing given: every card. See `selected_ids`.
    """

    names: tuple[str, ...] = ()  # card names and globs ('cvt_io_v2_*')
    tag: str | None = None
    where: str | None = None  # the filter of `expdb table --where`
    status: str | None = None
    # Invalid cards too: `table`, `plot` and `report` leave them out unless --all or --where tests `valid`.
    invalid: bool = True

    @property
    def given(self) -> bool:
        return bool(self.names) or any(value is not None for value in (self.tag, self.where, self.status))

    def __str__(self) -> str:
        """The selection as it is typed: `'cvt_io_*' --tag latent --where 'N>=5'`."""
        options = [("--tag", self.tag), ("--where", self.where), ("--status", self.status)]
        words = [shlex.quote(name) for name in self.names]
        words += [f"{option} {shlex.quote(value)}" for option, value in options if value is not None]
        return " ".join(words)


def is_glob(name: str) -> bool:
    return any(char in name for char in "*?[")


def _named_ids(db: Database, names: tuple[str, ...]) -> list[int]:
    """The ids of the cards named or matching a glob, in the order given (a glob's oldest first), each once."""
    ids: dict[int, None] = {}
    for name in names:
        if is_glob(name):
            clause, parameters = db.glob("name", name)
            matched = [card_id for (card_id,) in db.query(f"SELECT id FROM card WHERE {clause} ORDER BY id", parameters)]
            if not matched:
                raise ExpdbError(f"no card name matches {name!r}; `expdb list` shows the cards")
        else:
            row = db.query_one("SELECT id FROM card WHERE name = ?", (name,))
            if row is None:
                raise missing_card_error(db, name)
            matched = [row[0]]
        ids.update(dict.fromkeys(matched))
    return list(ids)


def _filtered_ids(db: Database, tag: str | None, status: str | None) -> set[int]:
    """The ids of the cards with the tag and the status given; user text is only ever bound."""
    clauses, parameters = [], []
    if status == PLANNED:
        clauses.append(f"{_STATUS} IS NULL")
    elif status is not None:
        clauses.append(f"{_STATUS} = ?")
        parameters.append(status)
    if tag is not None:
        clauses.append("EXISTS (SELECT 1 FROM tag WHERE tag.card_id = card.id AND tag.name = ?)")
        parameters.append(tag)
    return {card_id for (card_id,) in db.query(f"SELECT card.id FROM card WHERE {' AND '.join(clauses)}", parameters)}


def selected_ids(db: Database, selection: Selection) -> list[int]:
    """The ids of the cards `selection` picks, in the order named, else oldest first.

    A name that is no card, or a glob that matches none, is an error; so is a selection that
    matches no card (an empty database included): every command then stops with one line.
    """
    if selection.status is not None and selection.status not in CARD_STATUSES:
        raise ExpdbError(f"unknown status {selection.status!r}; use one of: {', '.join(CARD_STATUSES)}")
    if selection.names:
        ids = _named_ids(db, selection.names)
    else:
        ids = [card_id for (card_id,) in db.query("SELECT id FROM card ORDER BY id")]
    if selection.tag is not None or selection.status is not None:
        kept = _filtered_ids(db, selection.tag, selection.status)
        ids = [card_id for card_id in ids if card_id in kept]
    if selection.where is not None:
        from .table import cards_where  # the --where language is evaluated with the table's values

        kept = set(cards_where(db, selection.where))
        ids = [card_id for card_id in ids if card_id in kept]
    if not selection.invalid and not (selection.where and "valid" in parse_where(selection.where).keys):
        invalid = dict(db.query("SELECT id, name FROM card WHERE invalid_reason IS NOT NULL"))
        if ids and all(card_id in invalid for card_id in ids):
            names = ", ".join(invalid[card_id] for card_id in ids[:5]) + (" ..." if len(ids) > 5 else "")
            raise ExpdbError(f"every card selected is invalid ({names}); give --all to include invalid cards")
        ids = [card_id for card_id in ids if card_id not in invalid]
    if not ids:
        if not selection.given:
            raise ExpdbError(f"no cards in {db.name} yet: create one with `expdb new NAME --KEY VALUE`")
        raise ExpdbError(f"no card in {db.name} matches {selection}")
    return ids


@contextmanager
def without_gc() -> Iterator[None]:
    """For the views over a whole study: building 100,000 rows makes millions of objects and no
    cycles, and the collector's passes over them cost a quarter of the time (a folded table of
    10,000 cards in a long-lived `expdb ui`: half). Nests: the collector is on again only if it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@without_gc()
def cards_by_id(db: Database, ids: list[int]) -> list[Card]:
    """The cards with these ids, in the order of `ids`.

    Read in bulk: the parents' names and the latest runs' statuses are looked up once for all the
    cards rather than joined card by card, and the parameters of all are decoded together (`values.loads_many`).
    """
    restricted = None if db.every_row("card", ids) else ids
    restrict, parameters = _among(db, "id", restricted, "WHERE")
    rows = {
        row[0]: row
        for row in db.each(
            f"SELECT id, name, parent_id, runner, command, parser, params, created_at, diverge, invalid_reason FROM card"
            f"{restrict}",
            parameters,
        )
    }
    parents = {row[2] for row in rows.values()} - {None}
    names = {parent: rows[parent][1] for parent in parents if parent in rows}
    unread = list(parents - names.keys())
    if unread:
        among, parameters = db.among("id", unread)
        names.update(db.query(f"SELECT id, name FROM card WHERE {among}", parameters))
    restrict, parameters = _among(db, "card_id", restricted, "WHERE")
    statuses = dict(db.each(f"SELECT card_id, status FROM run{restrict} ORDER BY id", parameters))  # the latest wins
    tags = _tags_of(db, restricted)
    ordered = [rows[card_id] for card_id in ids if card_id in rows]
    params = values.loads_many([row[6] for row in ordered])
    return [
        Card(
            card_id, name, names.get(parent_id) if parent_id is not None else None, runner, command, parser, card_params,
            created_at, statuses.get(card_id) or PLANNED, tags.get(card_id, []), json.loads(diverge) if diverge else {},
            invalid_reason,
        )
        for (card_id, name, parent_id, runner, command, parser, _, created_at, diverge, invalid_reason), card_params in zip(
            ordered, params, strict=True
        )
    ]


def select_cards(db: Database, selection: Selection = Selection()) -> list[Card]:
    """The cards `selection` picks, in its order (see `selected_ids`): every card by default."""
    return cards_by_id(db, selected_ids(db, selection))


def card_facts(db: Database, keys: list[str], tags: bool = False) -> dict[int, dict[str, Value | frozenset]]:
    """Every card's name, status, runner, validity, tags (a frozenset, which `--where tag=bs` tests for
    membership) and parameters `keys` (absent ones left out).

    The database's JSON functions pick the keys out, so a filter over thousands of cards does not
    decode every card's parameters in Python.
    """
    picks, bound, decode = db.json_values("card.params", keys)
    facts: dict[int, dict[str, Value | frozenset]] = {}
    tags_of = _tags_of(db, None) if tags else {}
    for card_id, name, runner, status, reason, *picked in db.query(
        f"SELECT card.id, card.name, card.runner, {_STATUS}, card.invalid_reason{picks} FROM card", bound
    ):
        facts[card_id] = {"name": name, "runner": runner, "status": status or PLANNED, "valid": reason is None, **decode(picked)}
        if tags:
            facts[card_id]["tag"] = frozenset(tags_of.get(card_id, ()))
    return facts


def validate_card_input(name: str, tags: Sequence[str] = (), note: str | None = None) -> None:
    """What `create_card` checks before touching the database."""
    validate_name(name)
    for tag in tags:
        validate_tag(tag)
    if note is not None:
        validate_note(note)


def validate_note(text: str) -> str:
    if not text.strip():
        raise ExpdbError("the note is empty; write it as: expdb note NAME \"what happened\"")
    return text


def create_card(
    db: Database,
    name: str,
    params: dict[str, Value],
    typed: dict[str, str] | None = None,
    parent: str | None = None,
    runner: str | None = None,
    note: str | None = None,
    tags: Sequence[str] = (),
    created_at: float | None = None,
    command: str | None = None,
    parser: str | None = None,
    diverge: dict[str, float] | None = None,
) -> Card:
    """A new card; with `parent`, it starts from the parent's parameters, runner or command, parser and
    divergence settings (`diverge` overrides them key by key)."""
    validate_card_input(name, tags, note)
    if card_exists(db, name):
        raise ExpdbError(f"a card named {name!r} exists already; pick another name, or fork it with --from {name}")
    parent_id = None
    merged: dict[str, Value] = {}
    if parent is not None:
        base = get_card(db, parent)
        parent_id = base.id
        if runner is None and command is None:
            runner, command = base.runner, base.command
        parser = parser if parser is not None else base.parser
        merged = dict(base.params)
        diverge = {**base.diverge, **(diverge or {})}
    merged.update(_coerced(params, merged, typed))
    if runner:
        from .launch import check_runner

        check_runner(runner, merged)
    created = created_at if created_at is not None else now()
    lost_race: tuple[type[BaseException], ...] = (ExpdbError, *db.driver_errors)
    try:
        with db.transaction() as connection:
            card_id = connection.execute(
                "INSERT INTO card (uid, name, parent_id, runner, command, parser, params, created_at, diverge) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (new_uid(), name, parent_id, runner, command, parser, values.dumps(merged), created,
                 json.dumps(diverge) if diverge else None),
            ).fetchone()[0]
            connection.executemany("INSERT INTO tag (card_id, name) VALUES (?, ?)", [(card_id, t) for t in set(tags)])
            if note:
                connection.execute(
                    "INSERT INTO note (uid, card_id, created_at, text, automatic) VALUES (?, ?, ?, ?, FALSE)",
                    (new_uid(), card_id, created, note),
                )
    except lost_race as error:
        # Another process made a card of this name since it was looked for: its unique name is what failed.
        # Within a caller's transaction the database cannot be asked again (PostgreSQL refuses until it ends).
        taken = "unique" in str(error).lower() if db.in_transaction else card_exists(db, name)
        if taken:
            raise ExpdbError(f"a card named {name!r} was just created by someone else; pick another name") from None
        raise
    return get_card(db, name)


def _coerced(params: dict[str, Value], current: dict[str, Value], typed: dict[str, str] | None) -> dict[str, Value]:
    """New values keep the type the parameter already has (a float stays a float)."""
    typed = typed or {}
    return {
        key: values.coerce_like(value, current[key], key, typed.get(key, str(value))) if key in current else value
        for key, value in params.items()
    }


def run_count(db: Database, card: Card) -> int:
    return db.query("SELECT count(*) FROM run WHERE card_id = ?", (card.id,))[0][0]


def set_params(db: Database, name: str, params: dict[str, Value], typed: dict[str, str] | None = None) -> Card:
    """Change parameters of a card that has never run; a card that has run is forked instead."""
    card = get_card(db, name)
    if run_count(db, card):
        raise ExpdbError(
            f"{name!r} has run, so its parameters are part of its results; fork it instead: "
            f"expdb new NEW_NAME --from {name} {' '.join(f'--{key} {text}' for key, text in (typed or {}).items())}".rstrip()
        )
    if not params:
        raise ExpdbError("nothing to set: give parameters as --KEY VALUE")
    merged = dict(card.params)
    merged.update(_coerced(params, merged, typed))
    if card.runner:
        from .launch import check_runner

        check_runner(card.runner, merged)
    with db.transaction() as connection:
        connection.execute("UPDATE card SET params = ? WHERE id = ?", (values.dumps(merged), card.id))
        connection.execute("DELETE FROM profile WHERE card_id = ?", (card.id,))  # it measured the old model
    return get_card(db, name)


def set_diverge(db: Database, name: str, settings: dict[str, float]) -> Card:
    """Set some of a card's divergence thresholds (expdb.divergence.DEFAULTS) for its runs to come."""
    card = get_card(db, name)
    with db.transaction() as connection:
        connection.execute("UPDATE card SET diverge = ? WHERE id = ?", (json.dumps({**card.diverge, **settings}), card.id))
    return get_card(db, name)


def param_changes(db: Database, card: Card) -> list[ParamChange]:
    """The card's parameters next to its parent's, in the card's order."""
    parent_params = get_card(db, card.parent).params if card.parent else {}
    return [
        ParamChange(key, value, parent_params.get(key), card.parent is not None and values.same(parent_params.get(key), value))
        for key, value in card.params.items()
    ]


def changed_keys(db: Database, shown: list[Card]) -> dict[int, list[str]]:
    """For each card, the parameters it sets or changes vs its parent (all of them for a root card)."""
    parents = sorted({card.parent for card in shown if card.parent})
    among, parameters = db.among("name", parents)
    base = {
        name: values.loads(params)
        for name, params in db.query("SELECT name, params FROM card WHERE " + among, parameters)
    }
    return {
        card.id: [
            key
            for key, value in card.params.items()
            if not card.parent or key not in base[card.parent] or not values.same(base[card.parent][key], value)
        ]
        for card in shown
    }


def add_note(db: Database, name: str, text: str) -> None:
    validate_note(text)
    card = get_card(db, name)
    with db.transaction() as connection:
        connection.execute(
            "INSERT INTO note (uid, card_id, created_at, text, automatic) VALUES (?, ?, ?, ?, FALSE)",
            (new_uid(), card.id, now(), text),
        )


def automatic_notes(db: Database, names: list[str]) -> list[tuple[str, str]]:
    """(card, text) of the notes expdb wrote itself on these cards, oldest first."""
    among, parameters = db.among("card.name", names)
    return db.query(
        f"SELECT card.name, note.text FROM note JOIN card ON card.id = note.card_id WHERE note.automatic AND {among} "
        "ORDER BY note.id",
        parameters,
    )


def validate_tag(tag: str) -> str:
    if not NAME_PATTERN.fullmatch(tag):
        raise ExpdbError(f"invalid tag {tag!r}: use up to 128 letters, digits, '_', '-' and '.'")
    return tag


def tag_card(db: Database, name: str, tags: list[str], remove: bool = False) -> Card:
    for tag in tags:
        validate_tag(tag)
    card = get_card(db, name)
    with db.transaction() as connection:
        if remove:
            connection.executemany("DELETE FROM tag WHERE card_id = ? AND name = ?", [(card.id, t) for t in tags])
        else:
            connection.executemany(
                "INSERT INTO tag (card_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING", [(card.id, t) for t in tags]
            )
    return get_card(db, name)


def invalidate_card(db: Database, name: str, reason: str) -> Card:
    """Mark a card whose results must not be used (left out of tables, plots and reports; never best)."""
    if not reason.strip():
        raise ExpdbError(f'say why {name} is invalid: expdb invalidate {name} --reason "L = 1 was a mistake"')
    card = get_card(db, name)
    with db.transaction() as connection:
        connection.execute(
            "UPDATE card SET invalid_reason = ?, invalidated_at = ? WHERE id = ?", (" ".join(reason.split()), now(), card.id)
        )
    return get_card(db, name)


def validate_card(db: Database, name: str) -> Card:
    """Undo `invalidate_card`."""
    card = get_card(db, name)
    if card.valid:
        raise ExpdbError(f"{name} is not invalid; nothing to undo")
    with db.transaction() as connection:
        connection.execute("UPDATE card SET invalid_reason = NULL, invalidated_at = NULL WHERE id = ?", (card.id,))
    return get_card(db, name)


def rename_card(db: Database, old: str, new: str) -> Card:
    card = get_card(db, old)
    validate_name(new)
    if card_exists(db, new):
        raise ExpdbError(f"a card named {new!r} exists already; pick another name")
    with db.transaction() as connection:
        connection.execute("UPDATE card SET name = ? WHERE id = ?", (new, card.id))
    return get_card(db, new)


def children(db: Database, card: Card) -> list[str]:
    return [row[0] for row in db.query("SELECT name FROM card WHERE parent_id = ? ORDER BY id", (card.id,))]


def typed_like(card: Card, params: dict[str, Value]) -> dict[str, Value]:
    """`params` with the types the card's parameters have (an int given for a float parameter is a float)."""
    return _coerced(params, card.params, None)


def agrees(card: Card, params: dict[str, Value]) -> bool:
    """Every one of `params` is the card's value (same type too)."""
    return all(values.same(card.params.get(key), value) for key, value in params.items())


def fork_for(db: Database, card: Card, params: dict[str, Value]) -> Card:
    """The fork of `card` that has `params`: its existing `NAME.K` child that agrees, else a new one with
    the next free K from 2 (`detr3d_bs8.2`), forked from `card` with `params` over its parameters."""
    prefix = f"{card.name}."
    for name in children(db, card):
        if name.startswith(prefix) and name[len(prefix):].isdigit() and agrees(fork := get_card(db, name), params):
            return fork
    number = 2
    while card_exists(db, f"{prefix}{number}"):
        number += 1
    return create_card(db, f"{prefix}{number}", params, parent=card.name)


def removal_summary(db: Database, card_ids: list[int]) -> str:
    """What removing these cards deletes, for the question asked first: "2 cards (a, b) with 1 run; ..."."""
    targets = cards_by_id(db, card_ids)
    names = [card.name for card in targets]
    runs = sum(run_count(db, card) for card in targets)
    forks = orphaned_forks(db, card_ids)
    what = f"{values.plural(len(targets), 'card')} ({', '.join(names)}) with {values.plural(runs, 'run')}"
    if forks:
        what += f"; {', '.join(forks)} will keep {'their' if len(forks) > 1 else 'its'} parameters but lose the parent link"
    return what


def orphaned_forks(db: Database, card_ids: list[int]) -> list[str]:
    """The forks of these cards that are not among them: removing the cards leaves them without a parent."""
    targets = cards_by_id(db, card_ids)
    names = {card.name for card in targets}
    return list(dict.fromkeys(child for card in targets for child in children(db, card) if child not in names))


def remove_cards(db: Database, card_ids: list[int]) -> list[Card]:
    """Delete cards with their runs, notes, metrics and curves; forks keep their own parameters."""
    cards = cards_by_id(db, list(dict.fromkeys(card_ids)))
    running = [card.name for card in cards if card.status == RunStatus.RUNNING]
    if running:
        raise ExpdbError(f"{running[0]} is running; stop its run first, then remove it")
    with db.transaction() as connection:
        connection.executemany("DELETE FROM card WHERE id = ?", [(card.id,) for card in cards])
    return cards


@dataclass
class RunSummary:
    id: int
    status: str
    started_at: float | None
    ended_at: float | None
    exit_reason: str | None
    env: dict
    metrics: dict[str, float]
    origin: str | None = None  # imported, by-hand, or None for a run made here
    source: str | None = None  # the file imported, or where numbers typed by hand come from


@dataclass
class NoteRecord:
    created_at: float
    text: str
    automatic: bool
    step: int | None
    settings: dict[str, float]  # the thresholds behind an automatic note


@dataclass
class CardDetails:
    card: Card
    changes: list[ParamChange]
    children: list[str]
    notes: list[NoteRecord]
    runs: list[RunSummary]
    profile: dict | None  # the latest, with its `details`


def card_details(db: Database, name: str) -> CardDetails:
    card = get_card(db, name)
    notes = [
        NoteRecord(created_at, text, bool(automatic), step, json.loads(settings) if settings else {})
        for created_at, text, automatic, step, settings in db.query(
            "SELECT created_at, text, automatic, step, settings FROM note WHERE card_id = ? ORDER BY created_at, id",
            (card.id,),
        )
    ]
    metrics: dict[int, dict[str, float]] = {}
    for run_id, key, value in db.query(
        "SELECT metric.run_id, metric.key, metric.value FROM metric JOIN run ON run.id = metric.run_id "
        "WHERE run.card_id = ? ORDER BY metric.key",
        (card.id,),
    ):
        metrics.setdefault(run_id, {})[key] = value
    runs = [
        RunSummary(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), metrics.get(row[0], {}), row[6], row[7])
        for row in db.query(
            "SELECT id, status, started_at, ended_at, exit_reason, env, origin, source FROM run WHERE card_id = ? ORDER BY id",
            (card.id,),
        )
    ]
    return CardDetails(card, param_changes(db, card), children(db, card), notes, runs, latest_profile(db, card.id))


PROFILE_FIELDS = (
    "params_total",
    "params_trainable",
    "flops",
    "flops_counter",
    "cost_time_ms",
    "cost_time_p10_ms",
    "cost_time_p90_ms",
    "batch",
    "input_shape",
    "dtype",
    "device",
    "warmup",
    "iterations",
    "threads",
    "param_dtype",
    "flags",
    "peak_mem_bytes",
    "shared",
)


def latest_profile(db: Database, card_id: int) -> dict | None:
    row = db.query_one(
        f"SELECT {', '.join(PROFILE_FIELDS)}, details FROM profile WHERE card_id = ? ORDER BY id DESC LIMIT 1",
        (card_id,),
    )
    return {**dict(zip(PROFILE_FIELDS, row[:-1], strict=True)), "details": json.loads(row[-1])} if row else None


def latest_values(db: Database, card_ids: list[int] | None = None, profiles: bool = True) -> dict[int, dict[str, float]]:
    """Each card's metrics, each from the latest run that recorded it, and (unless not `profiles`) its latest profile.

    `card_ids`: only these cards (default: all).
    """
    if card_ids is not None and db.every_row("card", card_ids):
        card_ids = None
    restrict, parameters = _among(db, "run.card_id", card_ids, " WHERE")
    by_card: dict[int, dict[str, float]] = {}
    keys: dict[str, str] = {}  # each key's text once, not once per card
    # In the order of metric.run_id (the latest run comes last, and wins), which SQLite reads from the
    # index on (run_id, key, value) alone.
    for card_id, key, value in db.each(
        f"SELECT run.card_id, metric.key, metric.value FROM metric JOIN run ON run.id = metric.run_id{restrict} "
        "ORDER BY metric.run_id",
        parameters,
    ):
        found = by_card.get(card_id)
        if found is None:  # not setdefault: it would make a dict for each of 500,000 metrics
            found = by_card[card_id] = {}
        found[keys.get(key) or keys.setdefault(key, key)] = value
    if not profiles:
        return by_card
    columns = ", ".join(PROFILE_COLUMNS.values())
    restrict, parameters = _among(db, "card_id", card_ids, " AND")
    # The latest profile of each card, whole: figures measured together stay together.
    latest = f"id IN (SELECT max(id) FROM profile GROUP BY card_id){restrict}"
    for card_id, *measured in db.query(f"SELECT card_id, {columns} FROM profile WHERE {latest}", parameters):
        card_values = by_card.setdefault(card_id, {})
        for key, value in zip(PROFILE_COLUMNS, measured, strict=True):
            if value is not None:
                card_values[key] = value
    return by_card


@dataclass
class CardDiff:
    a: Card
    b: Card
    params: list[tuple[str, Value | None, Value | None]]  # (key, value in a, value in b)
    values_a: dict[str, float]  # metrics and profile columns
    values_b: dict[str, float]
    flops_counter: str | None  # who counted both cards' FLOPs, when it is the same counter


def diff_cards(db: Database, a: str, b: str, all_params: bool = False) -> CardDiff:
    """The parameters where two cards differ (or all), and both cards' results."""
    card_a, card_b = get_card(db, a), get_card(db, b)
    keys = list(dict.fromkeys([*card_a.params, *card_b.params]))
    params = [
        (key, card_a.params.get(key), card_b.params.get(key))
        for key in keys
        if all_params or not values.same(card_a.params.get(key), card_b.params.get(key))
    ]
    results = latest_values(db, [card_a.id, card_b.id], profiles=False)
    chosen = choose(card_profiles(db, [card_a.id, card_b.id])).chosen  # both cards' profiles under one set of conditions
    for card_id, measured in chosen.items():
        results.setdefault(card_id, {}).update(measured.values)
    counters = {measured.flops_counter for measured in chosen.values() if "flops" in measured.values}
    counter = counters.pop() if len(counters) == 1 else None
    return CardDiff(card_a, card_b, params, results.get(card_a.id, {}), results.get(card_b.id, {}), counter)
