"""A recorded run's environment (`expdb show --env RUN`), and re-running a card as it ran (`expdb rerun CARD`)."""

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import cards
from .db import Database
from .errors import ExpdbError
from .provenance import capture, differences


@dataclass(frozen=True)
class RunEnvironment:
    """What was recorded of one run's process: its command line, seed, device, host and environment (JSON)."""

    run_id: int
    card: str
    status: str
    command: str | None
    seed: int | None
    device: str | None
    host: str | None
    started_at: float | None
    env: dict


_COLUMNS = "run.id, card.name, run.status, run.command, run.seed, run.device, run.host, run.started_at, run.env"


def _environment(row: tuple) -> RunEnvironment:
    run_id, card, status, command, seed, device, host, started_at, env = row
    return RunEnvironment(run_id, card, status, command, seed, device, host, started_at, json.loads(env or "{}"))


def run_environment(db: Database, reference: str) -> RunEnvironment:
    """The run `reference` names: a run id, or a card's name for its latest run."""
    if reference.isdigit():
        row = db.query_one(f"SELECT {_COLUMNS} FROM run JOIN card ON card.id = run.card_id WHERE run.id = ?", (int(reference),))
        if row is None:
            raise ExpdbError(f"no run {reference}; `expdb show CARD` lists a card's runs")
        return _environment(row)
    card = cards.get_card(db, reference)
    row = db.query_one(
        f"SELECT {_COLUMNS} FROM run JOIN card ON card.id = run.card_id WHERE run.card_id = ? AND run.started_at IS NOT NULL "
        "ORDER BY run.id DESC LIMIT 1",
        (card.id,),
    )
    if row is None:
        raise ExpdbError(f"{card.name} has never run, so no environment was recorded; run it with: expdb run {card.name}")
    return _environment(row)


@dataclass(frozen=True)
class Rerun:
    """How to run a card again as its latest run ran: its seed, the command it ran (None: its runner), and how this
    environment differs from the recorded one."""

    card: cards.Card
    recorded: RunEnvironment
    seed: int | None
    command: list[str] | None
    differences: list[str]


def plan_rerun(db: Database, name: str) -> Rerun:
    """Refused for a card that never ran, and for a run recorded by the user's own script (expdb cannot start it)."""
    card = cards.get_card(db, name)
    recorded = run_environment(db, card.name)
    command = None
    if not card.runner and not card.command:
        if not recorded.env.get("shell_command") or not recorded.command:
            where = f" in {recorded.env['cwd']}" if recorded.env.get("cwd") else ""
            raise ExpdbError(
                f"{card.name}'s run {recorded.run_id} was recorded by its own script ({recorded.command or 'unknown command'}"
                f"{where}); expdb cannot start that: run the script again (expdb show --env {recorded.run_id} shows how it ran)"
            )
        command = shlex.split(recorded.command)
    here = capture(Path.cwd())
    found = differences(recorded.env, here)
    if recorded.env.get("cwd") and recorded.env["cwd"] != str(Path.cwd()):
        found.insert(0, f"working directory: recorded {recorded.env['cwd']}, now {Path.cwd()}")
    return Rerun(card, recorded, recorded.seed, command, found)
