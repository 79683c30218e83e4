"""The local queue: planned cards run in parallel as child `expdb run` processes, one per slot.

A slot is a GPU (the job's CUDA_VISIBLE_DEVICES) or a share of the free CPU cores (the job's
OMP_NUM_THREADS and MKL_NUM_THREADS, which torch takes as its thread count; expdb.cpus). The scheduler
takes its slots as data, so that GPU pinning is exercised on machines without a GPU.

What the database holds: when the queue starts, each card gets a run row with status
`queued` (launcher `local`, this host, the queue's pid, and the queue's pid as its job id);
the child `expdb run CARD --queued-run ID` adopts that row, and its status becomes
`running` with the child's pid. A queued row that never started is removed when the queue
stops (its card is planned again); a queue killed outright leaves rows whose pid is gone,
and `lifecycle.reap` removes them the same way. Every change of a row's status is
`expdb.lifecycle`'s.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from . import cards, lifecycle
from .cards import Card, Selection
from .db import Database
from .cpus import THREAD_VARIABLES, ThreadBudget, thread_budget
from .errors import ExpdbError
from .lifecycle import PLANNED, QueuedRun, RunStatus

TAIL_BYTES = 4096  # of a job's output, read for the line that says why it did not start
POLL_S = 0.05  # how often ended children are looked for: a slot waits at most this long for its next job
STOP_GRACE_S = 60.0  # after SIGTERM, how long a job may take to record its end before it is killed
RESUMABLE = RunStatus.INTERRUPTED  # with --resume, a selection continues these runs from their checkpoints


@dataclass(frozen=True)
class Slot:
    """Where one job runs at a time: its label in the queue's lines, and what its process's environment adds."""

    label: str
    env: dict[str, str]


def gpu_slots(gpus: list[str], jobs: int | None = None, budget: ThreadBudget | None = None) -> list[Slot]:
    """One slot per GPU id (as CUDA_VISIBLE_DEVICES names it); `jobs` more than GPUs share them in turn.

    Each job also gets its share of the free cores as its thread budget (expdb.cpus): the CPU side of several
    trainings at once (data, the optimizer's bookkeeping) would otherwise oversubscribe the cores."""
    count = jobs or len(gpus)
    threads = dict.fromkeys(THREAD_VARIABLES, str((budget or thread_budget(count)).threads))
    shared = {"EXPDB_SHARED_SLOT": "1"} if count > len(gpus) else {}  # its profiles say another job used the GPU
    return [
        Slot(f"GPU {gpus[i % len(gpus)]}", {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)], **threads, **shared})
        for i in range(count)
    ]


def cpu_slots(jobs: int, budget: ThreadBudget | None = None) -> list[Slot]:
    """`jobs` slots that share the free cores (expdb.cpus): each job's threads are the free cores // jobs, so that
    they do not oversubscribe the machine."""
    threads = str((budget or thread_budget(jobs)).threads)
    shared = {"EXPDB_SHARED_SLOT": "1"} if jobs > 1 else {}  # they share caches and memory bandwidth: their profiles say so
    return [Slot(f"CPU {i + 1}", {**dict.fromkeys(THREAD_VARIABLES, threads), **shared}) for i in range(jobs)]


def parse_gpus(text: str) -> list[int]:
    try:
        gpus = [int(item) for item in text.split(",")]
    except ValueError:
        gpus = []
    if not gpus or any(gpu < 0 for gpu in gpus):
        raise ExpdbError(f"--gpus {text!r}: give GPU numbers separated by commas, e.g. --gpus 0,1,2,3")
    if len(set(gpus)) != len(gpus):
        raise ExpdbError(f"--gpus {text!r} names a GPU twice; to run two jobs on each GPU, use --jobs")
    return gpus


def check_gpus(gpus: list[int], available: int) -> None:
    """Every requested GPU is among the `available` ones this machine has."""
    for gpu in gpus:
        if gpu >= available:
            has = f"it has {available}: {', '.join(map(str, range(available)))}" if available else "it has none"
            hint = "" if available else "; without --gpus, --jobs N runs N jobs on the CPU"
            raise ExpdbError(f"--gpus: GPU {gpu} is not on this machine ({has}){hint}")


def visible_gpu_ids(gpus: list[int]) -> list[str]:
    """What each GPU number is called in a child's CUDA_VISIBLE_DEVICES.

    The numbers count the GPUs this process sees: under an inherited CUDA_VISIBLE_DEVICES
    ("4,5" on a cluster node), GPU 1 is the device named 5.
    """
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    names = [name.strip() for name in inherited.split(",")] if inherited else None
    return [names[gpu] if names else str(gpu) for gpu in gpus]


def local_gpu_count() -> int:
    import torch  # only for --gpus: counting GPUs is torch's job

    return torch.cuda.device_count()


def local_slots(jobs: int | None, gpus: str | None, budget: ThreadBudget | None = None) -> list[Slot]:
    """The slots of `--jobs N` (CPU, sharing `budget`'s free cores) or `--gpus 0,1,2,3` (one job per GPU, or --jobs of
    them sharing the GPUs)."""
    if gpus is None:
        return cpu_slots(jobs or 1, budget)
    numbers = parse_gpus(gpus)
    if jobs is not None and jobs < len(numbers):
        raise ExpdbError(
            f"--jobs {jobs} would leave some of the {len(numbers)} GPUs of --gpus idle: name only the GPUs to use "
            f"(--gpus {','.join(map(str, numbers[:jobs]))}), or leave out --jobs for one job per GPU"
        )
    check_gpus(numbers, local_gpu_count())
    return gpu_slots(visible_gpu_ids(numbers), jobs)  # its own budget: as many jobs as slots


def run_arguments(
    *, device: str, on_diverge: str, profile_budget: float, seed: int | None, diverge: list[str] | None = None
) -> list[str]:
    """The options every job's `expdb run` gets, checked here so that a bad one is refused before anything is queued."""
    from .devices import check_device
    from .runs import check_on_diverge

    check_device(device)
    check_on_diverge(on_diverge)
    arguments = ["--device", device, "--on-diverge", on_diverge, "--profile-budget", repr(profile_budget)]
    arguments += [part for pair in diverge or [] for part in ("--diverge", pair)]
    return arguments + (["--seed", str(seed)] if seed is not None else [])


def select_to_run(db: Database, selection: Selection, resume: bool) -> tuple[list[Card], bool]:
    """The cards `expdb run` runs, and whether they are a selection (a glob, --tag, --where or --all) rather than one named card.

    One card named alone runs whatever its status; of a selection (`cards.select_cards`), the
    planned cards run, and with `resume` the interrupted ones too.
    """
    one_name = len(selection.names) == 1 and not cards.is_glob(selection.names[0])
    if one_name and selection.tag is None and selection.where is None and selection.status is None:
        return [cards.get_card(db, selection.names[0])], False
    runnable = {PLANNED, RESUMABLE} if resume else {PLANNED}
    return [card for card in cards.select_cards(db, selection) if card.status in runnable], True


# -- queued rows ---------------------------------------------------------------------------


def queue_runs(db: Database, targets: list[Card], *, resume: bool, launcher: str) -> list[QueuedRun]:
    """Queue a run of every target, in one transaction: a new run row each, or, with `resume`, its latest run.

    A card that is queued or running already is refused, and then nothing is queued.
    """
    with db.transaction():
        return [lifecycle.queue(db, card, launcher=launcher, resume=resume) for card in targets]


def release(db: Database, never_started: list[QueuedRun]) -> None:
    """Undo the queuing of runs that never started: a new row is removed (its card is planned again), a resumed
    run gets its status back. Rows a job adopted in the meantime are left alone."""
    for entry in never_started:
        lifecycle.release(db, entry.run_id, entry.resumed_from)


# -- the scheduler -----------------------------------------------------------------------


@dataclass
class JobEnd:
    """How one job ended; `status` is its run's, or `not started` when its process ended before the run began."""

    card: str
    run_id: int
    slot: str
    status: str
    exit_reason: str | None
    summary: dict[str, float] = field(default_factory=dict)


@dataclass
class QueueResult:
    ends: list[JobEnd]
    never_started: list[str]  # cards still waiting when the queue stopped; planned again
    stopped: bool  # by SIGINT or SIGTERM

    @property
    def all_finished(self) -> bool:
        return not self.stopped and all(end.status == RunStatus.FINISHED for end in self.ends)


@dataclass
class _Job:
    entry: QueuedRun
    slot_index: int
    slot: Slot
    process: subprocess.Popen
    output: Path  # what it prints


def output_directory(db: Database) -> Path:
    """Where this queue's jobs write what they print, a file each: beside the runs' directories."""
    return db.runs_directory / f"queue-{os.getpid()}"


def run_queue(
    db: Database,
    queued: list[QueuedRun],
    slots: list[Slot],
    run_args: list[str],
    output: Path,
    *,
    on_start: Callable[[QueuedRun, Slot], None] | None = None,
    on_end: Callable[[JobEnd], None] | None = None,
) -> QueueResult:
    """Run the queued cards, at most one job per slot; a slot takes its next card as soon as its job ends.

    Each job's stdout and stderr go to `output`/run-ID-CARD.log. SIGINT or SIGTERM to this
    process stops the queue: running jobs get SIGTERM and end `interrupted`, and the runs
    that never started are released.
    """
    output.mkdir(parents=True, exist_ok=True)
    scheduler = _Scheduler(db, slots, run_args, output, on_start, on_end, deque(queued), list(range(len(slots))))
    stop = threading.Event()
    with _stopped_by_signals(stop):
        try:
            while scheduler.busy and not stop.is_set():
                if not scheduler.step(stop):
                    time.sleep(POLL_S)
        finally:
            scheduler.shut_down()
    return QueueResult(scheduler.ends, [entry.card.name for entry in scheduler.pending], stop.is_set())


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """While the queue runs, SIGINT and SIGTERM set `stop` (in the main thread, where signals arrive)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class _Scheduler:
    """A running queue: the cards waiting, the free slots, the jobs running, and each busy slot's next job."""

    db: Database
    slots: list[Slot]
    run_args: list[str]
    output: Path
    on_start: Callable[[QueuedRun, Slot], None] | None
    on_end: Callable[[JobEnd], None] | None
    pending: deque[QueuedRun]
    free: list[int]
    running: list[_Job] = field(default_factory=list)
    # Per slot, its next job: started while the slot's job runs, it imports Python, expdb and the
    # runner (torch) meanwhile, and begins the moment the slot is free.
    standby: dict[int, _Job] = field(default_factory=dict)
    ends: list[JobEnd] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.running or self.standby)

    def step(self, stop: threading.Event) -> bool:
        """Free the slots whose job ended, give each free slot its next job, get the next job of each busy slot
        ready, then record how the ended jobs ended (starting comes first: a GPU is not kept waiting for the
        database), and only then say which started, so that a slot's job is said to end before its next starts.
        Whether any job ended."""
        ended = [job for job in self.running if job.process.poll() is not None]
        for job in ended:
            _signal_group(job.process.pid, signal.SIGKILL)  # a worker the job left behind would keep the slot's GPU
            self.running.remove(job)
            self.free.append(job.slot_index)
        started = self._start_free_slots(stop)
        self._ready_next_jobs(stop)
        for job in ended:
            self.ends.append(_finish(self.db, job, self.on_end))
        if self.on_start is not None:
            for job in started:
                self.on_start(job.entry, job.slot)
        return bool(ended)

    def _start_free_slots(self, stop: threading.Event) -> list[_Job]:
        started = []
        for index in list(self.free):
            if stop.is_set():
                break
            job = self.standby.pop(index, None)
            if job is None and self.pending:
                job = self._launch(index, self.slots[index])
            if job is None:
                continue
            self.free.remove(index)
            _go(job)
            self.running.append(job)
            started.append(job)
        return started

    def _ready_next_jobs(self, stop: threading.Event) -> None:
        for job in self.running:  # in the order the slots started
            if self.pending and job.slot_index not in self.standby and not stop.is_set():
                self.standby[job.slot_index] = self._launch(job.slot_index, job.slot)

    def _launch(self, index: int, slot: Slot) -> _Job:
        return _start(self.db, self.pending.popleft(), index, slot, self.run_args, self.output)

    def shut_down(self) -> None:
        """Stop every job: standby ones exit untouched, running ones get SIGTERM (killed after STOP_GRACE_S);
        record how the running ones ended and release the runs that never started."""
        for job in self.standby.values():
            _go(job, start=False)
        for job in self.running:
            if job.process.poll() is None:
                _signal_group(job.process.pid, signal.SIGTERM)  # the job's --cmd command and its workers too
        deadline = time.monotonic() + STOP_GRACE_S
        for job in [*self.running, *self.standby.values()]:
            with suppress(subprocess.TimeoutExpired):
                job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            _signal_group(job.process.pid, signal.SIGKILL)  # whatever of it is left would keep its GPU
            job.process.wait()
        for job in self.running:
            self.ends.append(_finish(self.db, job, self.on_end))
        self.pending.extendleft(reversed([job.entry for job in self.standby.values()]))
        release(self.db, list(self.pending))


def job_command(location: str, entry: QueuedRun, run_args: list[str]) -> list[str]:
    """The job's `expdb run`, adopting its queued run (and continuing it from its checkpoint, if it was resumed)."""
    return [
        sys.executable, "-m", "expdb", "run", entry.card.name, "--db", location, "--queued-run", str(entry.run_id),
        *run_args, *(["--resume"] if entry.resumed_from is not None else []),
    ]


def _start(db: Database, entry: QueuedRun, index: int, slot: Slot, run_args: list[str], output: Path) -> _Job:
    """The job's process, started on standby: it gets ready, then waits for `_go`."""
    path = output / f"run-{entry.run_id}-{entry.card.name}.log"
    with open(path, "ab") as log:
        # Its own session: a Ctrl-C at the terminal reaches the queue only, which stops each job once, with SIGTERM.
        process = subprocess.Popen(
            [*job_command(db.location, entry, run_args), "--standby"], stdin=subprocess.PIPE, stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, **slot.env}, start_new_session=True,
        )
    return _Job(entry, index, slot, process, path)


def _go(job: _Job, start: bool = True) -> None:
    """Let a standby job begin its run, or (start=False) tell it the queue stopped, so that it exits untouched."""
    stdin = job.process.stdin
    assert stdin is not None  # started with stdin=PIPE
    try:
        if start:
            stdin.write(b"go\n")
        stdin.close()
    except BrokenPipeError:
        pass  # it ended already; how is recorded when it is reaped


def _finish(db: Database, job: _Job, on_end: Callable[[JobEnd], None] | None) -> JobEnd:
    """Record how a job ended: a run its process left `running` is crashed, a run it never started is released."""
    lifecycle.reap(db)
    entry, code = job.entry, job.process.returncode
    with job.output.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - TAIL_BYTES))
        said = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
    killed = f"killed by {signal.Signals(-code).name}" if code < 0 else None
    run = lifecycle.get_run(db, entry.run_id)
    status, reason = (run.status, run.exit_reason) if run is not None else ("removed", "its card was deleted while it ran")
    if status == RunStatus.QUEUED:
        lifecycle.release(db, entry.run_id, entry.resumed_from)
        status = "not started"
        reason = killed or (said[-1].removeprefix("error: ") if said else f"its process exited with status {code}")
    elif killed and status == RunStatus.CRASHED:
        reason = killed
    summary = dict(db.query("SELECT key, value FROM metric WHERE run_id = ? ORDER BY key", (entry.run_id,)))
    end = JobEnd(entry.card.name, entry.run_id, job.slot.label, status, reason, summary)
    if on_end is not None:
        on_end(end)
    return end


# -- `expdb queue` ---------------------------------------------------------------------------


@dataclass
class QueueEntry:
    """A queued or running run, where it runs and since when."""

    card: str
    run_id: int
    status: RunStatus
    host: str | None
    where: str  # "GPU 2", "cpu", "cuda"; empty while queued
    launcher: str | None
    job_id: str | None
    pid: int | None
    queued_at: float | None
    started_at: float | None


def queue_entries(db: Database) -> list[QueueEntry]:
    """Running runs first (longest running first), then the queued ones in the order they will start."""
    import json

    entries = []
    for run_id, card, status, host, device, env, launcher, job_id, pid, queued_at, started_at in db.query(
        "SELECT run.id, card.name, run.status, run.host, run.device, run.env, run.launcher, run.job_id, run.pid, "
        "run.queued_at, run.started_at FROM run JOIN card ON card.id = run.card_id "
        f"WHERE run.status IN ({', '.join('?' * len(lifecycle.ACTIVE))})",
        lifecycle.ACTIVE,
    ):
        status = RunStatus(status)
        where = ""
        if status == RunStatus.RUNNING:
            gpu = json.loads(env or "{}").get("cuda_visible_devices")
            where = f"GPU {gpu}" if gpu else device or ""
        entries.append(QueueEntry(card, run_id, status, host, where, launcher, job_id, pid, queued_at, started_at))

    def order(entry: QueueEntry) -> tuple:
        if entry.status == RunStatus.RUNNING:
            return (0, entry.started_at or 0, entry.run_id)
        return (1, entry.queued_at or 0, entry.run_id)

    return sorted(entries, key=order)


def stop_local_queues(db: Database) -> list[str]:
    """SIGTERM to this machine's local queues that have runs queued or running, and to the running jobs of a
    queue that died (they run on without it); what was signalled ("queue 123", "run 7")."""
    host = socket.gethostname()
    # A local queue's runs carry the queue's pid as their job id.
    runs = [
        run for run in lifecycle.active_runs(db) if run.launcher == "local" and run.host == host and run.job_id is not None
    ]
    stopped, alive = [], set()
    for queue_pid in sorted({int(str(run.job_id)) for run in runs}):
        if _terminate(queue_pid):
            stopped.append(f"queue {queue_pid}")
            alive.add(queue_pid)
    for run in runs:
        alone = run.status == RunStatus.RUNNING and int(str(run.job_id)) not in alive  # its queue died
        if alone and run.pid is not None and _terminate_job(run.pid):
            stopped.append(f"run {run.id}")
    return stopped


def _terminate(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):  # gone, or the pid is someone else's process now
        return False
    return True


def _terminate_job(pid: int) -> bool:
    """SIGTERM to a queue's job: to its process group, which it leads (its own session), else to it alone."""
    try:
        leads = os.getpgid(pid) == pid
    except ProcessLookupError:
        return False
    return _signal_group(pid, signal.SIGTERM) if leads else _terminate(pid)


def _signal_group(group: int, signum: int) -> bool:
    """`signum` to every process of group `group` (a job started in a session of its own: its pid)."""
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):  # the group is empty
        return False
    return True
