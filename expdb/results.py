"""Recording results that exist already: a run's status, final metrics and profile."""

import json

from .cards import get_card
from .db import Database
from .errors import ExpdbError
from .metrics import PROFILE_COLUMNS

RUN_STATUSES = ("queued", "running", "finished", "diverged", "failed", "interrupted", "crashed")


def record_run(
    db: Database,
    card_name: str,
    status: str,
    metrics: dict[str, float],
    exit_reason: str | None = None,
    started_at: float | None = None,
    ended_at: float | None = None,
    flops_counter: str | None = None,
) -> int:
    """A run of `card_name` with its final metrics; `params`, `flops` and `cost_time` go to its profile,
    with `flops_counter` saying who counted the FLOPs.

    Returns the run's id.
    """
    if status not in RUN_STATUSES:
        raise ExpdbError(f"unknown run status {status!r}; use one of: {', '.join(RUN_STATUSES)}")
    card = get_card(db, card_name)
    profile = {PROFILE_COLUMNS[key]: value for key, value in metrics.items() if key in PROFILE_COLUMNS}
    if "flops" in profile:
        profile["flops_counter"] = flops_counter
    summary = {key: float(value) for key, value in metrics.items() if key not in PROFILE_COLUMNS}
    with db.transaction() as connection:
        run_id = connection.execute(
            "INSERT INTO run (card_id, status, started_at, ended_at, exit_reason, env) "
            "VALUES (?, ?, ?, ?, ?, '{}') RETURNING id",
            (card.id, status, started_at, ended_at, exit_reason),
        ).fetchone()[0]
        connection.executemany(
            "INSERT INTO metric (run_id, key, value) VALUES (?, ?, ?)",
            [(run_id, key, value) for key, value in summary.items()],
        )
        if profile:
            columns = ", ".join(profile)
            connection.execute(
                f"INSERT INTO profile (run_id, {columns}, details) VALUES (?, {', '.join('?' * len(profile))}, ?)",
                (run_id, *profile.values(), json.dumps({})),
            )
    return run_id
