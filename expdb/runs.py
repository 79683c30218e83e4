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
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import cards, interrupts, lifecycle
from .db import Database, new_uid, now
from .divergence import SETTINGS_OF, Divergence, DivergenceDetector
from .errors import ExpdbError, last_line
from .lifecycle import RunRow, RunStatus
from .provenance import capture
from .ranks import launch_group, world_size
from .series import build_chunks, write_chunks
from .sysmetrics import SAMPLE_INTERVAL_S, SystemSampler

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
    """What a run ran on: Python, and torch/CUDA when the process has imported torch. The device's name is the
    run's device's (this_process, record_device): never a guess from the machine."""
    env = {"python": sys.version.split()[0], "argv": sys.argv, "cwd": os.getcwd(), **capture(Path.cwd())}
    group = launch_group()
    if group is not None and world_size() > 1:  # the other ranks find this run by it (expdb.start(all_ranks=True))
        env.update(launch_group=group, world_size=world_size())
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        env["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["cudnn"] = torch.backends.cudnn.version()
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
        *,
        owner: bool = True,
        key_prefix: str = "",
        system_metrics: bool = True,
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
        self.stop_requested: str | None = None  # why, once asked to stop (request_stop)
        self._started_at = started_at
        self._queue: deque = deque()
        self._stop: Exception | None = None  # what log() raises from now on: RunStopped or RecordingFailed
        self.summary_metrics: dict[str, float] = {}
        self._progress = progress
        # The card's divergence settings, then this run's (`--diverge`, `expdb.start(diverge=)`).
        steps = card.params.get("steps")
        self._detector = DivergenceDetector(steps if type(steps) is int else None, **{**card.diverge, **(diverge or {})})
        self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by end()
        # The process that started the run owns its status and beats its heartbeat; a script inside `expdb run
        # --cmd` and the other ranks of a torchrun attach to it: they add points, and only their own.
        self._owner = owner
        self._key_prefix = key_prefix
        self._system_metrics = system_metrics
        self._flusher_error: BaseException | None = None
        self._first_point: tuple | None = None  # (step, epoch, samples, wall, scalars): the training speed's ends
        self._last_point: tuple | None = None
        self._cuda_peak = 0  # bytes: the training's peak before a profile reset the allocator's count
        self._reset_cuda_peak()
        self._stop_flusher = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"expdb-run-{run_id}", daemon=True)
        self._flusher.start()
        if owner:
            self.write_log(f"run {run_id} of {card.name} started on {device or 'a device not known yet'}, seed {seed}")
        else:
            self.write_log(f"process {os.getpid()}{f' ({key_prefix[:-1]})' if key_prefix else ''} attached to run {run_id}")

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
        from .devices import device_of, torch_device
        from .profiler import profile
        from .results import store_profile

        # On the run's device; a script's run whose device is not known yet trains where its model is.
        device = options.pop("device", None) or self.device or device_of(model, inputs)
        self._cuda_peak = max(self._cuda_peak, self._cuda_peak_now() or 0)  # profiling resets the count
        measured = profile(model, inputs, device=device, **options)
        if self.device is None:
            self._learn_device(self.db, str(torch_device(device)))  # "cuda" as "cuda:0"
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
        """True once the run must stop: it diverged, or it was asked to (`request_stop`); checkpoint and return."""
        return self._stop is not None or self.stop_requested is not None

    def request_stop(self, reason: str) -> None:
        """Ask the training to stop at its next check of `should_stop`; the run then ends interrupted, for `reason`."""
        # Called from a signal handler: nothing here may write the log file, which the interrupted code may be writing.
        if self.stop_requested is None:
            self.stop_requested = reason

    def _learn_device(self, db: Database, device: str) -> None:
        """The device the training was seen to use, recorded with its name where the run's was not known."""
        if self._key_prefix:  # another rank's device is not the run's
            return
        self.device = device
        record_device(db, self.id, device)
        self.write_log(f"training on {device}")

    def write_log(self, line: str) -> None:
        self._log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self._log_file.flush()

    # -- the background flusher -------------------------------------------------------------

    def _flush_loop(self) -> None:
        # sqlite3 connections belong to the thread that made them: the flusher has its own.
        sampler = None
        try:
            if self._system_metrics:
                sampler = SystemSampler(gpus=self.device != "cpu")
                sampler.sample()  # CPU use is measured between two samples: this is the first
            next_sample = time.monotonic() + SAMPLE_INTERVAL_S
            with Database(self.db.location) as db:
                series_ids: dict[str, int] = {}
                while not self._stop_flusher.wait(FLUSH_INTERVAL_S):
                    system = None
                    if sampler is not None and time.monotonic() >= next_sample:
                        next_sample = time.monotonic() + SAMPLE_INTERVAL_S
                        system = sampler.sample()
                    self._flush(db, series_ids, system)
                self._flush(db, series_ids, final=True)
        except BaseException as error:  # noqa: BLE001 - reported by end(), the training thread must not die silently
            self._flusher_error = error
            self._stop = RecordingFailed(f"expdb could not record run {self.id}: {recording_error(error)}")
        finally:
            if sampler is not None:
                sampler.close()

    def _flush(
        self, db: Database, series_ids: dict[str, int], system: dict[str, float] | None = None, final: bool = False
    ) -> None:
        queue = self._queue
        points = [queue.popleft() for _ in range(len(queue))]
        if points:
            self._first_point = self._first_point or points[0]
            self._last_point = points[-1]
            if self.device is None:  # a tensor logged as it is says where the training runs
                seen = next((value.device for value in points[-1][4].values() if hasattr(value, "device")), None)
                if seen is not None:
                    self._learn_device(db, str(seen))
        chunks = build_chunks(points)
        prefix = self._key_prefix
        detector = self._detector
        events = []
        if not prefix:  # rank 0's curves are watched; another rank's copies of them are only kept
            events = detector.feed({key: chunk.in_step_order() for key, chunk in chunks.items()})
            events += detector.trend_events(final)
        else:
            chunks = {prefix + key: chunk for key, chunk in chunks.items()}
        if system:
            wall = time.time() - self._started_at
            chunks.update(build_chunks([(int(wall), None, None, wall, system)]))  # a second of the run each: see sysmetrics
        progress = (points[-1][0], self._started_at + points[-1][3]) if points and not prefix else None
        with db.transaction() as connection:
            write_chunks(connection, self.id, chunks, series_ids)
            if self._owner:
                lifecycle.heartbeat(db, self.id, progress)
            elif progress is not None:
                lifecycle.progress(db, self.id, *progress)
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

    @property
    def ended(self) -> bool:
        return self.status != RunStatus.RUNNING

    def end(self, status: RunStatus, exit_reason: str | None = None) -> RunStatus:
        """Drain the queue, store the summary, set the final status. Returns the status stored.

        A signal that comes meanwhile acts once the run has ended (see expdb.interrupts)."""
        with interrupts.held():
            return self._end(status, exit_reason)

    def _end(self, status: RunStatus, exit_reason: str | None) -> RunStatus:
        self._stop_flusher.set()
        self._flusher.join()
        if self._flusher_error is not None and status != RunStatus.INTERRUPTED:
            status, exit_reason = RunStatus.FAILED, f"recording failed: {self._flusher_error}"
        if status == RunStatus.FINISHED and self.on_diverge == "stop" and self.divergences:
            status = RunStatus.DIVERGED
        elif status in (RunStatus.FINISHED, RunStatus.FAILED) and self.stop_requested and self._flusher_error is None:
            # It stopped because it was asked to (a command asked to stop exits with an error): it can resume.
            status, exit_reason = RunStatus.INTERRUPTED, self.stop_requested
        if status == RunStatus.DIVERGED and exit_reason is None and self.divergences:
            exit_reason = self.divergences[0].message
        recorded = {**self._training_costs(), **self.summary_metrics}  # the runner's own figures win
        with self.db.transaction() as connection:
            connection.executemany(
                "INSERT INTO metric (run_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                [(self.id, self._key_prefix + key, value) for key, value in recorded.items()],
            )
            if self._owner:
                status, exit_reason = lifecycle.end(self.db, self.id, status, exit_reason)
            elif status == RunStatus.DIVERGED and not self._key_prefix:
                # Only the script knows it diverged: `expdb run` around it sees a command that exited.
                lifecycle.diverge(self.db, self.id, exit_reason)
        if self._owner:
            self.write_log(f"run {self.id} {status}" + (f": {exit_reason}" if exit_reason else ""))
        else:
            self.write_log(f"process {os.getpid()} detached from run {self.id}")
        self._log_file.close()
        self.status, self.exit_reason = status, exit_reason
        return status

    # -- what training cost -----------------------------------------------------------------

    def _cuda_device(self):
        torch = sys.modules.get("torch")
        if torch is None or not (self.device or "").startswith("cuda") or not torch.cuda.is_available():
            return None
        return torch.device(self.device)

    def _reset_cuda_peak(self) -> None:
        device = self._cuda_device()
        if device is not None:
            sys.modules["torch"].cuda.reset_peak_memory_stats(device)

    def _cuda_peak_now(self) -> int | None:
        device = self._cuda_device()
        return None if device is None else int(sys.modules["torch"].cuda.max_memory_allocated(device))

    def _training_costs(self) -> dict[str, float]:
        """Samples (else steps) per second between the first and the last point logged, and on CUDA
        the peak memory torch's allocator held while the run trained."""
        costs: dict[str, float] = {}
        first, last = self._first_point, self._last_point
        if first is not None and last is not None and last[3] > first[3]:
            seconds = last[3] - first[3]
            if first[2] is not None and last[2] is not None and last[2] > first[2]:
                costs["throughput"] = (last[2] - first[2]) / seconds
            elif last[0] > first[0]:
                costs["train_steps_per_s"] = (last[0] - first[0]) / seconds
        peak = self._cuda_peak_now()
        if peak is not None:
            costs["train_peak_mem"] = float(max(peak, self._cuda_peak))
        return costs

    def end_from_exception(self, error: BaseException | None) -> RunStatus:
        """The status a run ends with, given how its training code ended."""
        if error is None:
            return self.end(RunStatus.FINISHED)
        if isinstance(error, RunStopped):
            return self.end(RunStatus.DIVERGED)
        error = interrupts.raised_into(self) or error  # a Ctrl-C caught on its way up, failing the code later
        if isinstance(error, KeyboardInterrupt):
            reason = "terminated (SIGTERM)" if isinstance(error, interrupts.Terminated) else "interrupted (Ctrl-C)"
            return self.end(RunStatus.INTERRUPTED, reason)
        return self.end(RunStatus.FAILED, last_line(error))


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
    from .devices import device_name

    env = environment()
    name = device_name(device)
    if name is not None:  # the device the run uses, not whichever GPU the machine has
        env["device_name"] = name
    if command is not None:
        env["shell_command"] = True  # `expdb rerun` runs it again; otherwise a runner or the user's script ran
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        env["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]  # the GPU "cuda" is: a queue pins each job to one
    return lifecycle.Process(socket.gethostname(), os.getpid(), device, seed, command or " ".join(sys.argv), json.dumps(env))


def record_device(db: Database, run_id: int, device: str) -> None:
    """Run `run_id`, whose device was not known when it started, trains on `device`: its column, and the device's
    name in its environment. A run whose device is known already is left as it is."""
    from .devices import device_name

    name = device_name(device)
    with db.transaction() as connection:
        row = connection.execute("SELECT env FROM run WHERE id = ? AND device IS NULL", (run_id,)).fetchone()
        if row is None:
            return
        env = json.loads(row[0] or "{}")
        if name is not None:
            env["device_name"] = name
        connection.execute("UPDATE run SET device = ?, env = ? WHERE id = ?", (device, json.dumps(env), run_id))


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
    system_metrics: bool = True,
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
    return Run(
        db, card, run.id, plan, device, seed, resume, on_diverge, run.started_at, progress, diverge,
        system_metrics=system_metrics,
    )


def attach_run(
    db: Database, name: str, run_id: int, *, key_prefix: str = "", on_diverge: str = "stop",
    diverge: dict[str, float] | None = None,
) -> Run:
    """This process adds to run `run_id` of card `name`, which another process started and owns: a script inside
    `expdb run --cmd` (EXPDB_RUN_ID), or a rank of torchrun other than 0 (its keys prefixed `rankN/`)."""
    check_on_diverge(on_diverge)
    card = cards.get_card(db, name)
    row = db.query_one(
        "SELECT card_id, status, started_at, checkpoint_dir, device, seed FROM run WHERE id = ?", (run_id,)
    )
    if row is None or row[0] != card.id:
        raise ExpdbError(f"run {run_id} is not a run of {name} (EXPDB_RUN_ID names the run to attach to)")
    _card_id, status, started_at, checkpoint_dir, device, seed = row
    if status != RunStatus.RUNNING:
        raise ExpdbError(f"run {run_id} of {name} is {status}, not running: there is nothing to attach to")
    resume = os.environ.get("EXPDB_RESUME") == "1"
    plan = RunPlan(Path(checkpoint_dir)) if checkpoint_dir else RunPlan.for_run(db, run_id)
    plan.directory.mkdir(parents=True, exist_ok=True)
    return Run(
        db, card, run_id, plan, device, seed or 0, resume, on_diverge, started_at or now(),
        None, diverge, owner=False, key_prefix=key_prefix, system_metrics=False,  # the owner samples the process tree
    )
