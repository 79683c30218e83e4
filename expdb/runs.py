"""Runs: start one, record it while it trains, and end it with the right status whatever happens.

The training thread only appends to a queue (`Run.log`); a background thread drains it
at least twice a second, writes the points as chunks in one transaction, beats the
heartbeat, and watches the curves for divergence. Ending a run, normally or not, drains
the queue first, so nothing logged is lost. A run whose process died without ending it
(SIGKILL, power loss) is found by `lifecycle.reap` and marked `crashed`. Every change of the
run row's status is the lifecycle module's.
"""

import errno
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import cards, lifecycle
from .db import Database, new_uid, now
from .divergence import SETTINGS_OF, Divergence, DivergenceDetector
from .errors import ExpdbError, last_line
from .lifecycle import RunRow, RunStatus
from .series import build_chunks, write_chunks

FLUSH_INTERVAL_S = 0.5
ON_DIVERGE = ("stop", "note")
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "run.log"

ProgressCallback = Callable[[int, dict[str, float]], None]


class RunStopped(Exception):
    """Raised by `Run.log` once a run must stop: it diverged and the policy is to stop."""


class RecordingFailed(ExpdbError):
    """Raised by `Run.log` once the run's points can no longer be stored (say, a value that is not a number)."""


def recording_error(error: BaseException) -> str:
    """Why the points could not be stored, with what would help: a value that is no number, a full disk."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (TypeError, ValueError)):
        return f"{text} (log() takes numbers)"
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "disk is full" in text or "No space left" in text:
        return f"{text}: the disk is full; free some space, then continue the run with `expdb run CARD --resume`"
    return text


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: flush, mark the run interrupted."""


@dataclass(frozen=True)
class RunPlan:
    """Where a run keeps its log and checkpoint: run-ID/ in its database's runs directory
    (expdb_runs/DATABASE/, beside an SQLite file).

    Keyed by the run, not the card's name: a renamed card still finds its checkpoint, and a
    new card with an old name does not write into the old card's files. Keyed by the
    database too: run 1 of another study in the same folder has a directory of its own.
    """

    directory: Path

    @classmethod
    def for_run(cls, db: Database, run_id: int) -> "RunPlan":
        return cls(db.runs_directory / f"run-{run_id}")

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE


def add_automatic_notes(
    connection, card_id: int, run_id: int, notes: list[tuple[str, int | None]], settings: list[dict | None] | None = None
) -> None:
    """Notes expdb writes itself on a card, from a run: (text, step) each, with the thresholds behind each."""
    behind = settings or [None] * len(notes)
    connection.executemany(
        "INSERT INTO note (uid, card_id, run_id, created_at, text, automatic, step, settings) "
        "VALUES (?, ?, ?, ?, ?, TRUE, ?, ?)",
        [
            (new_uid(), card_id, run_id, now(), text, step, json.dumps(used) if used else None)
            for (text, step), used in zip(notes, behind, strict=True)
        ],
    )


def add_divergence_notes(connection, card_id: int, run_id: int, events: list[Divergence], settings: dict) -> None:
    """The detectors' events as automatic notes, each with the settings of its kind."""
    add_automatic_notes(
        connection, card_id, run_id, [(event.message, event.step) for event in events],
        [{key: settings[key] for key in SETTINGS_OF[event.kind]} for event in events],
    )


def git_state(directory: Path) -> dict:
    """The commit and dirty flag of the git work tree around `directory`, if any."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def cpu_name() -> str:
    """The processor's model name ("AMD EPYC 7B13"), as precise as this system says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """What a run ran on: Python, the processor or GPU, and torch/CUDA when the process has imported torch."""
    env = {"python": sys.version.split()[0], "argv": sys.argv, "cwd": os.getcwd(), **git_state(Path.cwd())}
    env["device_name"] = cpu_name()
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        env["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["cudnn"] = torch.backends.cudnn.version()
            env["device_name"] = torch.cuda.get_device_name()
    return env


class Run:
    """A run being recorded; also the context a runner trains with (`device`, `log`, `summary`, ...)."""

    def __init__(
        self,
        db: Database,
        card: cards.Card,
        run_id: int,
        plan: RunPlan,
        device: str | None,
        seed: int,
        resume: bool,
        on_diverge: str,
        started_at: float,
        progress: ProgressCallback | None = None,
        diverge: dict[str, float] | None = None,
    ):
        self.db = db
        self.card = card
        self.id = run_id
        self.params = dict(card.params)
        self.device = device
        self.seed = seed
        self.resume = resume
        self.checkpoint_path = plan.checkpoint_path
        self.log_path = plan.log_path
        self.on_diverge = on_diverge
        self.divergences: list[Divergence] = []  # what stops a run (--on-diverge stop)
        self.trends: list[Divergence] = []  # noted only: a loss rising, not learning
        self.status: RunStatus = RunStatus.RUNNING
        self.exit_reason: str | None = None
        self._started_at = started_at
        self._queue: deque = deque()
        self._stop: Exception | None = None  # what log() raises from now on: RunStopped or RecordingFailed
        self.summary_metrics: dict[str, float] = {}
        self._progress = progress
        # The card's divergence settings, then this run's (`--diverge`, `expdb.start(diverge=)`).
        steps = card.params.get("steps")
        self._detector = DivergenceDetector(steps if type(steps) is int else None, **{**card.diverge, **(diverge or {})})
        self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by end()
        self._flusher_error: BaseException | None = None
        self._stop_flusher = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"expdb-run-{run_id}", daemon=True)
        self._flusher.start()
        self.write_log(f"run {run_id} of {card.name} started on {device}, seed {seed}")

    # -- the runner's side ---------------------------------------------------------------

    def log(self, step: int, *, epoch: float | None = None, samples: int | None = None, **scalars: float) -> None:
        """Record the scalars of one training step. Costs a tuple and an append; raises RunStopped once diverged."""
        if self._stop is not None:
            raise self._stop
        self._queue.append((step, epoch, samples, time.time() - self._started_at, scalars))

    def summary(self, **metrics: float) -> None:
        """Final metrics of the run (iou50=0.34); written when the run ends."""
        self.summary_metrics.update({key: float(value) for key, value in metrics.items()})

    def profile(self, model, inputs, **options):
        """Measure Params, FLOPs and Cost-Time of `model` on `inputs` (see `expdb.profiler.profile`) and keep
        them with this run. Imports torch and fvcore."""
        from .profiler import profile
        from .results import store_profile

        measured = profile(model, inputs, **{"device": self.device or "cpu", **options})
        store_profile(self.db, self.card.id, self.id, measured)
        self.write_log(
            f"profile: {measured.params_total:,} params, {measured.flops} FLOPs ({measured.flops_counter}), "
            f"{measured.cost_time_ms} ms" + (f"; FLOPs not counted: {measured.flops_error}" if measured.flops_error else "")
        )
        return measured

    def note(self, text: str, step: int | None = None) -> None:
        """An automatic note on the card, from this run."""
        with self.db.transaction() as connection:
            add_automatic_notes(connection, self.card.id, self.id, [(text, step)])
        self.write_log(text)

    def raise_if_stopped(self) -> None:
        """What `log` raises once the run must stop, for code that stops logging before it notices."""
        if self._stop is not None:
            raise self._stop

    @property
    def should_stop(self) -> bool:
        return self._stop is not None

    def write_log(self, line: str) -> None:
        self._log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self._log_file.flush()

    # -- the background flusher -------------------------------------------------------------

    def _flush_loop(self) -> None:
        # sqlite3 connections belong to the thread that made them: the flusher has its own.
        try:
            with Database(self.db.location) as db:
                series_ids: dict[str, int] = {}
                while not self._stop_flusher.wait(FLUSH_INTERVAL_S):
                    self._flush(db, series_ids)
                self._flush(db, series_ids, final=True)
        except BaseException as error:  # noqa: BLE001 - reported by end(), the training thread must not die silently
            self._flusher_error = error
            self._stop = RecordingFailed(f"expdb could not record run {self.id}: {recording_error(error)}")

    def _flush(self, db: Database, series_ids: dict[str, int], final: bool = False) -> None:
        queue = self._queue
        points = [queue.popleft() for _ in range(len(queue))]
        chunks = build_chunks(points)
        detector = self._detector
        events = detector.feed({key: chunk.in_step_order() for key, chunk in chunks.items()})
        events += detector.trend_events(final)
        with db.transaction() as connection:
            write_chunks(connection, self.id, chunks, series_ids)
            lifecycle.heartbeat(db, self.id)
            add_divergence_notes(connection, self.card.id, self.id, events, detector.settings)
        for event in events:
            self.write_log(event.message)
            if not event.stops:
                self.trends.append(event)
                continue
            self.divergences.append(event)
            if self.on_diverge == "stop" and self._stop is None:
                self._stop = RunStopped(event.message)
        if points and self._progress is not None:
            step, _epoch, _samples, _wall, scalars = points[-1]
            self._progress(step, scalars)

    # -- ending ---------------------------------------------------------------------------

    def end(self, status: RunStatus, exit_reason: str | None = None) -> RunStatus:
        """Drain the queue, store the summary, set the final status. Returns the status stored."""
        self._stop_flusher.set()
        self._flusher.join()
        if self._flusher_error is not None and status != RunStatus.INTERRUPTED:
            status, exit_reason = RunStatus.FAILED, f"recording failed: {self._flusher_error}"
        if status == RunStatus.FINISHED and self.on_diverge == "stop" and self.divergences:
            status = RunStatus.DIVERGED
        if status == RunStatus.DIVERGED and exit_reason is None and self.divergences:
            exit_reason = self.divergences[0].message
        with self.db.transaction() as connection:
            connection.executemany(
                "INSERT INTO metric (run_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                [(self.id, key, value) for key, value in self.summary_metrics.items()],
            )
            if status == RunStatus.FINISHED:
                lifecycle.finish(self.db, self.id)
            elif status == RunStatus.DIVERGED:
                lifecycle.diverge(self.db, self.id, exit_reason)
            elif status == RunStatus.INTERRUPTED:
                lifecycle.interrupt(self.db, self.id, exit_reason)
            else:
                lifecycle.fail(self.db, self.id, exit_reason)
        self.write_log(f"run {self.id} {status}" + (f": {exit_reason}" if exit_reason else ""))
        self._log_file.close()
        self.status, self.exit_reason = status, exit_reason
        return status

    def end_from_exception(self, error: BaseException | None) -> RunStatus:
        """The status a run ends with, given how its training code ended."""
        if error is None:
            return self.end(RunStatus.FINISHED)
        if isinstance(error, RunStopped):
            return self.end(RunStatus.DIVERGED)
        if isinstance(error, KeyboardInterrupt):
            reason = "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted (Ctrl-C)"
            return self.end(RunStatus.INTERRUPTED, reason)
        return self.end(RunStatus.FAILED, last_line(error))


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class sigterm_as_interrupt:
    """While a run trains in the main thread, SIGTERM ends it like Ctrl-C."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _raise_terminated)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def check_on_diverge(on_diverge: str) -> str:
    if on_diverge not in ON_DIVERGE:
        raise ExpdbError(f"unknown --on-diverge {on_diverge!r}; use one of: {', '.join(ON_DIVERGE)}")
    return on_diverge


def run_seed(card: cards.Card, seed: int | None) -> int:
    """The seed of a run: the one given, else the card's `seed` parameter, else 0."""
    if seed is None:
        given = card.params.get("seed", 0)
        if type(given) is not int:
            raise ExpdbError(f"{card.name} has seed={given!r}; a seed is an int: expdb set {card.name} --seed 0, or pass --seed")
        seed = given
    if not -(2**63) <= seed < 2**63:
        raise ExpdbError(f"seed {seed} does not fit in 64 bits, as torch and the database keep it; pick a smaller one")
    return seed


def check_can_start(card: cards.Card, latest: RunRow | None, queued_run: int | None) -> None:
    """Refuse to start a card whose latest run has not ended, unless this process adopts it as the queued run it was given."""
    name = card.name
    if latest is not None and latest.status == RunStatus.RUNNING:
        raise ExpdbError(f"{name} is already running (run {latest.id}); wait for it, or stop it first")
    if latest is not None and latest.status == RunStatus.QUEUED and queued_run is None:
        raise ExpdbError(f"{name} is queued (run {latest.id}); `expdb queue` shows where, `expdb queue --stop` stops a local "
                         "queue")
    if queued_run is not None and (latest is None or (latest.id, latest.status) != (queued_run, RunStatus.QUEUED)):
        raise ExpdbError(f"run {queued_run} is not {name}'s queued run (its queue stopped?): run {name} again")


def resume_plan(card: cards.Card, latest: RunRow | None) -> RunPlan:
    """Where the run to resume keeps its files; refused without a checkpoint to resume from."""
    if latest is None:
        raise ExpdbError(f"--resume: {card.name} has never run; run it without --resume")
    plan = RunPlan(Path(latest.checkpoint_dir)) if latest.checkpoint_dir else None
    if plan is None or not plan.checkpoint_path.exists():
        where = f" at {plan.checkpoint_path}" if plan else ""
        raise ExpdbError(f"--resume: {card.name} has no checkpoint{where}; run it without --resume")
    return plan


def this_process(device: str | None, seed: int, command: str | None) -> lifecycle.Process:
    """This process, as the row of the run it starts records it: host, pid, device, seed, command line, environment."""
    env = environment()
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        env["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]  # the GPU "cuda" is: a queue pins each job to one
    return lifecycle.Process(socket.gethostname(), os.getpid(), device, seed, command or " ".join(sys.argv), json.dumps(env))


def begin_run(
    db: Database,
    name: str,
    *,
    device: str | None,
    seed: int | None = None,
    resume: bool = False,
    on_diverge: str = "stop",
    command: str | None = None,
    progress: ProgressCallback | None = None,
    queued_run: int | None = None,
    diverge: dict[str, float] | None = None,
) -> Run:
    """Start recording a run of card `name` (or continue its latest run with `resume`).

    `diverge`: divergence settings of this run, over the card's (see `expdb.divergence.DEFAULTS`).

    `queued_run`: the card's run row a queue or a cluster launcher made `queued`; this process adopts it.
    Runs whose process died are the caller's to reap first (`lifecycle.reap`): their cards would seem running.
    """
    check_on_diverge(on_diverge)
    card = cards.get_card(db, name)
    seed = run_seed(card, seed)
    latest = lifecycle.latest_run(db, card.id)
    check_can_start(card, latest, queued_run)
    plan = resume_plan(card, latest) if resume else None
    process = this_process(device, seed, command)
    with db.transaction() as connection:
        if queued_run is not None:
            assert latest is not None  # check_can_start: the queued run is the latest
            run = lifecycle.adopt(db, card, latest, process, resume=resume)
        else:
            run = lifecycle.start(db, card, process, resuming=latest if resume else None)
        if plan is None:
            plan = RunPlan.for_run(db, run.id)
            connection.execute(
                "UPDATE run SET log_path = ?, checkpoint_dir = ? WHERE id = ?", (str(plan.log_path), str(plan.directory), run.id)
            )
    plan.directory.mkdir(parents=True, exist_ok=True)
    assert run.started_at is not None  # a started run has its start time
    return Run(db, card, run.id, plan, device, seed, resume, on_diverge, run.started_at, progress, diverge)
