"""The run lifecycle: the statuses a run has, and every change of a run row's status. Nothing else writes them.

    (none)  --queue-->  queued  --adopt-->  running  --finish / diverge / fail / interrupt-->  ended
    (none)  --start------------------------>  running  --crash (the reaper: its process is gone)-->  crashed
    ended   --queue (to resume)--> queued;   ended --start (resuming)--> running
    queued  --release--> (none), or back to its status before it was queued to resume
    interrupted  --requeue (its cluster job is requeued after its time limit)-->  queued

A run's own process changes its row with start, adopt, heartbeat and the endings; they raise
`TransitionRefused` when the row is not in the state they need. The reaper and the queues change
the rows of other processes (crash, release): a row that has moved on meanwhile is left alone,
and they return whether they changed it.

Cheap to import, and it never asks a cluster: the reaper runs on the path of every command.
"""

import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from .db import Database, new_uid, now
from .errors import ExpdbError

if TYPE_CHECKING:
    from .cards import Card


class RunStatus(StrEnum):
    QUEUED = "queued"  # waiting for a process (a local queue's job, a Slurm job) to adopt it
    RUNNING = "running"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM, after flushing; it can resume
    CRASHED = "crashed"  # its process died without ending it; what it flushed is kept

    def __str__(self) -> str:  # the value in messages, on every Python version
        return self.value


PLANNED = "planned"  # the status of a card that has no run; never a run's
CARD_STATUSES = (PLANNED, *(status.value for status in RunStatus))
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)  # not ended: nothing else may start or queue its card
ENDED = tuple(status for status in RunStatus if status not in ACTIVE)
# Where a run that did not happen here came from: read from its log, or typed in by hand (a paper's table).
IMPORTED = "imported"
BY_HAND = "by-hand"
ORIGINS = (None, IMPORTED, BY_HAND)
# A run taken for crashed (its heartbeat late) that turns out alive still beats and ends as it ends.
_ALIVE = (RunStatus.RUNNING, RunStatus.CRASHED)
STALE_HEARTBEAT_S = 60.0  # a run on another host is crashed once its heartbeat is this old
STALLED_AFTER_S = 1800.0  # a running run that logged no step for this long is reported stalled
CRASH_REASON = (
    "the process stopped without ending the run (killed, or its machine went down); "
    "everything logged until its last heartbeat is kept"
)


class TransitionRefused(ExpdbError):
    """A run row is not in the state a change of it needs (it is running already, it ended, it is gone)."""


class RunRow(NamedTuple):
    id: int
    status: RunStatus
    started_at: float | None
    exit_reason: str | None
    checkpoint_dir: str | None


class ActiveRun(NamedTuple):
    """A queued or running run, as the reaper and the queues see it: where it runs, by which process."""

    id: int
    status: RunStatus
    host: str | None
    pid: int | None
    heartbeat_at: float | None
    started_at: float | None
    launcher: str | None  # "local" or "slurm" while queued by one; None when started by hand
    job_id: str | None  # a local queue's pid, a Slurm job's id


@dataclass(frozen=True)
class QueuedRun:
    """A run a local queue or a cluster launcher made `queued`, for a job's process to adopt."""

    card: "Card"
    run_id: int
    resumed_from: RunStatus | None  # a resumed run's status before it was queued; it gets it back if it never starts


@dataclass(frozen=True)
class Process:
    """The process that runs a run, written on its row when it starts it."""

    host: str
    pid: int
    device: str | None
    seed: int
    command: str
    env: str  # JSON


def _in(statuses) -> tuple[str, list]:
    """`status IN (?, ...)`, the statuses bound."""
    return f"status IN ({', '.join('?' * len(statuses))})", list(statuses)


_RUN_ROW = "SELECT id, status, started_at, exit_reason, checkpoint_dir FROM run"


def _run_row(row: tuple | None) -> RunRow | None:
    return RunRow(row[0], RunStatus(row[1]), *row[2:]) if row is not None else None


# -- reading -----------------------------------------------------------------------------------


def latest_run(db: Database, card_id: int) -> RunRow | None:
    """The card's latest run, whose status is the card's."""
    return _run_row(db.query_one(f"{_RUN_ROW} WHERE card_id = ? ORDER BY id DESC LIMIT 1", (card_id,)))


def get_run(db: Database, run_id: int) -> RunRow | None:
    return _run_row(db.query_one(f"{_RUN_ROW} WHERE id = ?", (run_id,)))


def active_runs(db: Database) -> list[ActiveRun]:
    """The queued and running runs, oldest first."""
    clause, statuses = _in(ACTIVE)
    rows = db.query(
        f"SELECT id, status, host, pid, heartbeat_at, started_at, launcher, job_id FROM run WHERE {clause} ORDER BY id",
        statuses,
    )
    return [ActiveRun(row[0], RunStatus(row[1]), *row[2:]) for row in rows]


class Stall(NamedTuple):
    """A running run that beats but has logged no step since `progress_at` (hung in CUDA or NCCL, or a deadlock)."""

    card_id: int
    card: str
    run_id: int
    step: int | None  # the last step it logged; None if it logged none
    progress_at: float


def stalls(db: Database, after_s: float = STALLED_AFTER_S) -> list[Stall]:
    """The running runs that made no progress (started, or logged a step) for `after_s` seconds."""
    rows = db.query(
        "SELECT card.id, card.name, run.id, run.progress_step, run.progress_at FROM run JOIN card ON card.id = run.card_id "
        "WHERE run.status = ? AND run.progress_at < ? ORDER BY run.id",
        (RunStatus.RUNNING, now() - after_s),
    )
    return [Stall(*row) for row in rows]


# -- queued ------------------------------------------------------------------------------------


def queue(db: Database, card: "Card", *, launcher: str, resume: bool) -> QueuedRun:
    """Queue a run of `card` for a job to adopt: a new run row, or, with `resume`, its latest run.

    Refused while the card's latest run is queued or running.
    """
    local = launcher == "local"
    host = socket.gethostname()  # where it was queued from, until its job adopts it
    pid = os.getpid() if local else None  # a cluster job has no process yet
    job_id = str(os.getpid()) if local else None  # a local queue's job is the queue itself: `expdb queue --stop` finds it
    with db.transaction() as connection:
        latest = latest_run(db, card.id)
        if latest is not None and latest.status in ACTIVE:
            raise TransitionRefused(f"{card.name} is {latest.status} already (run {latest.id}); `expdb queue` shows where")
        if resume and latest is not None:
            connection.execute(
                "UPDATE run SET status = ?, queued_at = ?, launcher = ?, host = ?, pid = ?, job_id = ? WHERE id = ?",
                (RunStatus.QUEUED, now(), launcher, host, pid, job_id, latest.id),
            )
            return QueuedRun(card, latest.id, latest.status)
        run_id = connection.execute(
            "INSERT INTO run (uid, card_id, status, queued_at, launcher, host, pid, job_id, env) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}') RETURNING id",
            (new_uid(), card.id, RunStatus.QUEUED, now(), launcher, host, pid, job_id),
        ).fetchone()[0]
    return QueuedRun(card, run_id, None)


def requeue(db: Database, run_id: int, submitted_from: str | None) -> bool:
    """An interrupted run of a cluster job that is requeued: queued again, for the requeued job to adopt and resume.
    `submitted_from`: the host the job was submitted from, which asks the cluster about it. False if it did not stop
    interrupted (it finished, failed, diverged: nothing to resume)."""
    with db.transaction() as connection:
        queued = connection.execute(
            "UPDATE run SET status = ?, queued_at = ?, host = coalesce(?, host), pid = NULL WHERE id = ? AND status = ? "
            "RETURNING id",
            (RunStatus.QUEUED, now(), submitted_from, run_id, RunStatus.INTERRUPTED),
        ).fetchone()
    return queued is not None


def release(db: Database, run_id: int, resumed_from: RunStatus | None) -> bool:
    """A queued run that will never start: removed if it was new (its card is planned again), else given back
    `resumed_from`, its status before it was queued to resume. False if a process adopted it meanwhile."""
    with db.transaction() as connection:
        if resumed_from is None:
            released = connection.execute(
                "DELETE FROM run WHERE id = ? AND status = ? RETURNING id", (run_id, RunStatus.QUEUED)
            ).fetchone()
        else:
            released = connection.execute(
                "UPDATE run SET status = ? WHERE id = ? AND status = ? RETURNING id", (resumed_from, run_id, RunStatus.QUEUED)
            ).fetchone()
    return released is not None


def release_orphan(db: Database, run: ActiveRun) -> bool:
    """A queued run whose queue or job is gone, its status before it was queued unknown here: removed if it never
    started, else interrupted (it was queued to resume, so it had stopped, and it can resume again)."""
    return release(db, run.id, RunStatus.INTERRUPTED if run.started_at is not None else None)


# -- started -----------------------------------------------------------------------------------


def _process_columns(process: Process) -> dict:
    moment = now()
    return {
        # Starting counts as progress: a run that logs nothing for long after it (re)started is stalled.
        "heartbeat_at": moment, "progress_at": moment, "host": process.host, "pid": process.pid, "device": process.device,
        "seed": process.seed, "command": process.command, "env": process.env,
    }


def start(db: Database, card: "Card", process: Process, resuming: RunRow | None = None) -> RunRow:
    """This process runs `card`: a new run row, or (`resuming`) the card's ended latest run again, from its start time."""
    if resuming is None:
        columns = _process_columns(process)
        columns = {"status": RunStatus.RUNNING, "started_at": columns["progress_at"], **columns}
        with db.transaction() as connection:
            run_id = connection.execute(
                f"INSERT INTO run (uid, card_id, {', '.join(columns)}) VALUES (?, ?, {', '.join('?' * len(columns))}) RETURNING "
                "id",
                (new_uid(), card.id, *columns.values()),
            ).fetchone()[0]
        return RunRow(run_id, RunStatus.RUNNING, columns["started_at"], None, None)
    if resuming.status not in ENDED:
        raise TransitionRefused(f"{card.name}'s run {resuming.id} is {resuming.status}: only an ended run resumes")
    # Started by hand: whatever queued it before no longer does.
    return _take_over(db, card, resuming, process, resuming.started_at or now(), queued_at=None, launcher=None, job_id=None)


def adopt(db: Database, card: "Card", queued: RunRow, process: Process, *, resume: bool) -> RunRow:
    """This process takes over `queued`, the run a queue or cluster launcher queued for it; continuing it (`resume`)
    keeps its start time."""
    if queued.status != RunStatus.QUEUED:
        raise TransitionRefused(f"run {queued.id} is not {card.name}'s queued run (its queue stopped?): run {card.name} again")
    return _take_over(db, card, queued, process, (resume and queued.started_at) or now())


def _take_over(db: Database, card: "Card", run: RunRow, process: Process, started_at: float, **cleared) -> RunRow:
    columns = {
        "status": RunStatus.RUNNING, "started_at": started_at, "ended_at": None, "exit_reason": None,
        **_process_columns(process), **cleared,
    }
    assignments = ", ".join(f"{column} = ?" for column in columns)
    with db.transaction() as connection:
        # Only if the row is as read: a queue may have released its queued row meanwhile.
        taken = connection.execute(
            f"UPDATE run SET {assignments} WHERE id = ? AND status = ? RETURNING id", (*columns.values(), run.id, run.status)
        ).fetchone()
    if taken is None:
        raise TransitionRefused(f"run {run.id} of {card.name} changed while it was starting (its queue stopped?): run "
                                f"{card.name} again")
    return RunRow(run.id, RunStatus.RUNNING, started_at, None, run.checkpoint_dir)


def heartbeat(db: Database, run_id: int, progress: tuple[int, float] | None = None) -> None:
    """The run's process is alive: the reaper of another host leaves its run running. `progress`: the last step
    it logged and when; a process alive without progress (hung in CUDA or NCCL) is reported as stalled."""
    clause, statuses = _in(_ALIVE)
    progressed = ", progress_step = ?, progress_at = ?" if progress is not None else ""
    with db.transaction() as connection:
        beat = connection.execute(
            f"UPDATE run SET heartbeat_at = ?{progressed} WHERE id = ? AND {clause} RETURNING id",
            (now(), *(progress or ()), run_id, *statuses),
        ).fetchone()
    if beat is None:
        raise TransitionRefused(f"run {run_id} is not running (it ended, or it was removed)")


def progress(db: Database, run_id: int, step: int, at: float) -> bool:
    """The last step a process attached to the run (a script inside `expdb run --cmd`) logged; False once the run ended."""
    with db.transaction() as connection:
        moved = connection.execute(
            "UPDATE run SET progress_step = ?, progress_at = ? WHERE id = ? AND status = ? RETURNING id",
            (step, at, run_id, RunStatus.RUNNING),
        ).fetchone()
    return moved is not None


# -- ended -------------------------------------------------------------------------------------


def finish(db: Database, run_id: int) -> None:
    _end(db, run_id, RunStatus.FINISHED, None)


def diverge(db: Database, run_id: int, reason: str | None) -> None:
    _end(db, run_id, RunStatus.DIVERGED, reason)


def fail(db: Database, run_id: int, reason: str | None) -> None:
    _end(db, run_id, RunStatus.FAILED, reason)


def interrupt(db: Database, run_id: int, reason: str | None) -> None:
    _end(db, run_id, RunStatus.INTERRUPTED, reason)


def end(db: Database, run_id: int, status: RunStatus, reason: str | None) -> tuple[RunStatus, str | None]:
    """End the run its process ran with `status`, unless a script attached to it ended it first (it diverged: only
    the script knew); the status and reason it has now."""
    try:
        if status == RunStatus.FINISHED:
            finish(db, run_id)
        elif status == RunStatus.DIVERGED:
            diverge(db, run_id, reason)
        elif status == RunStatus.INTERRUPTED:
            interrupt(db, run_id, reason)
        else:
            status = RunStatus.FAILED
            fail(db, run_id, reason)
    except TransitionRefused:
        row = get_run(db, run_id)
        if row is None or row.status not in ENDED or row.status == RunStatus.CRASHED:
            raise
        return row.status, row.exit_reason
    return status, reason


def _end(db: Database, run_id: int, status: RunStatus, reason: str | None) -> None:
    clause, statuses = _in(_ALIVE)
    moment = now()
    with db.transaction() as connection:
        ended = connection.execute(
            f"UPDATE run SET status = ?, ended_at = ?, heartbeat_at = ?, exit_reason = ? WHERE id = ? AND {clause} RETURNING id",
            (status, moment, moment, reason, run_id, *statuses),
        ).fetchone()
    if ended is None:
        raise TransitionRefused(f"run {run_id} is not running (it ended, or it was removed): it cannot become {status}")


def record(
    db: Database,
    card_id: int,
    status: str,
    *,
    started_at: float | None = None,
    ended_at: float | None = None,
    exit_reason: str | None = None,
    command: str | None = None,
    log_path: str | None = None,
    env: str = "{}",
    origin: str | None = None,
    source: str | None = None,
    source_hash: str | None = None,
) -> int:
    """A run that happened elsewhere (typed in, read from its log), stored as it ended. Returns its id.

    `origin`: IMPORTED or BY_HAND; `source`: the file, or a citation; `source_hash`: the file's sha256.
    """
    if status not in ENDED:
        raise TransitionRefused(f"unknown run status {status!r}; use one of: {', '.join(ENDED)}")
    if origin not in ORIGINS:
        raise TransitionRefused(f"unknown run origin {origin!r}; use one of: {', '.join(map(str, ORIGINS))}")
    with db.transaction() as connection:
        return connection.execute(
            "INSERT INTO run (uid, card_id, status, started_at, ended_at, exit_reason, command, log_path, env, origin, source, "
            "source_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                new_uid(), card_id, RunStatus(status), started_at, ended_at, exit_reason, command, log_path, env, origin, source,
                source_hash,
            ),
        ).fetchone()[0]


# -- the reaper ----------------------------------------------------------------------------------


def crash(db: Database, run_id: int) -> bool:
    """A running run whose process is gone: crashed, ended at its last heartbeat. False if it ended meanwhile."""
    with db.transaction() as connection:
        crashed = connection.execute(
            "UPDATE run SET status = ?, ended_at = heartbeat_at, exit_reason = ? WHERE id = ? AND status = ? RETURNING id",
            (RunStatus.CRASHED, CRASH_REASON, run_id, RunStatus.RUNNING),
        ).fetchone()
    return crashed is not None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(db: Database) -> list[int]:
    """Crash the running runs whose process is gone (this host) or whose heartbeat is stale (another host), and
    release the queued runs of a local queue that died; returns the ids of the runs crashed.

    Only local facts: a Slurm job's fate is asked of Slurm by `expdb.slurm.release_ended_jobs`, where a command may wait.
    """
    host, moment = socket.gethostname(), now()
    crashed = []
    for run in active_runs(db):
        if run.status == RunStatus.QUEUED:
            if run.launcher == "local" and run.host == host and run.pid is not None and not process_alive(run.pid):
                release_orphan(db, run)
            continue
        gone = run.host == host and run.pid is not None and not process_alive(run.pid)
        stale = run.host != host and (run.heartbeat_at is None or moment - run.heartbeat_at > STALE_HEARTBEAT_S)
        if (gone or stale) and crash(db, run.id):
            crashed.append(run.id)
    return crashed
