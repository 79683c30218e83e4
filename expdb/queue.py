"""The local queue: planned cards run in parallel as child `expdb run` processes, one per slot.

A slot is a GPU (the job's CUDA_VISIBLE_DEVICES) or a share of the CPU cores (the job's
OMP_NUM_THREADS and MKL_NUM_THREADS, which torch takes as its thread count). The scheduler
takes its slots as data, so that GPU pinning is exercised on machines without a GPU.

What the database holds: when the queue starts, each card gets a run row with status
`queued` (launcher `local`, this host, the queue's pid, and the queue's pid as its job id);
the child `expdb run CARD --queued-run ID` adopts that row, and its status becomes
`running` with the child's pid. A queued row that never started is removed when the queue
stops (its card is planned again); a queue killed outright leaves rows whose pid is gone,
and `runs.reap_crashed_runs` removes them the same way.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import cards
from .cards import Card
from .db import Database, new_uid, now
from .errors import ExpdbError

TAIL_BYTES = 4096  # of a job's output, read for the line that says why it did not start
POLL_S = 0.05  # how often ended children are looked for: a slot waits at most this long for its next job
STOP_GRACE_S = 60.0  # after SIGTERM, how long a job may take to record its end before it is killed
RESUMABLE = "interrupted"  # with --resume, a selection continues these runs from their checkpoints


@dataclass(frozen=True)
class Slot:
    """Where one job runs at a time: its label in the queue's lines, and what its process's environment adds."""

    label: str
    env: dict[str, str]


def gpu_slots(gpus: list[str], jobs: int | None = None) -> list[Slot]:
    """One slot per GPU id (as CUDA_VISIBLE_DEVICES names it); `jobs` more than GPUs share them in turn."""
    count = jobs or len(gpus)
    return [Slot(f"GPU {gpus[i % len(gpus)]}", {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]}) for i in range(count)]


def cpu_count() -> int:
    """The cores this process may use (a Slurm allocation or taskset may give it fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_slots(jobs: int, cores: int | None = None) -> list[Slot]:
    """`jobs` slots that share the cores: each job's thread budget is cores // jobs, so they do not oversubscribe."""
    threads = str(max(1, (cores or cpu_count()) // jobs))
    return [Slot(f"CPU {i + 1}", {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}) for i in range(jobs)]


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


def local_slots(jobs: int | None, gpus: str | None) -> list[Slot]:
    """The slots of `--jobs N` (CPU) or `--gpus 0,1,2,3` (one job per GPU, or --jobs of them sharing the GPUs)."""
    if gpus is None:
        return cpu_slots(jobs or 1)
    numbers = parse_gpus(gpus)
    if jobs is not None and jobs < len(numbers):
        raise ExpdbError(
            f"--jobs {jobs} would leave some of the {len(numbers)} GPUs of --gpus idle: name only the GPUs to use "
            f"(--gpus {','.join(map(str, numbers[:jobs]))}), or leave out --jobs for one job per GPU"
        )
    check_gpus(numbers, local_gpu_count())
    return gpu_slots(visible_gpu_ids(numbers), jobs)


def run_arguments(*, device: str, on_diverge: str, profile_budget: float, seed: int | None) -> list[str]:
    """The options every job's `expdb run` gets, checked here so that a bad one is refused before anything is queued."""
    from .devices import check_device
    from .runs import check_on_diverge

    check_device(device)
    check_on_diverge(on_diverge)
    arguments = ["--device", device, "--on-diverge", on_diverge, "--profile-budget", repr(profile_budget)]
    return arguments + (["--seed", str(seed)] if seed is not None else [])


def select_to_run(db: Database, name: str | None, tag: str | None, resume: bool) -> tuple[list[Card], bool]:
    """The cards `expdb run` runs, and whether they are a selection (a glob, --tag or --all) rather than one named card.

    One named card runs whatever its status; a selection runs its planned cards, and with
    `resume` its interrupted ones too.
    """
    if name is not None and tag is None and not any(char in name for char in "*?["):
        return [cards.get_card(db, name)], False
    selected = cards.select_cards(db, name, None, tag)
    if not selected and (name is not None or tag is not None):
        wanted = ([f"a name matching {name!r}"] if name is not None else []) + ([f"the tag {tag!r}"] if tag is not None else [])
        raise ExpdbError(f"no card has {' and '.join(wanted)}; `expdb list` shows the cards and their tags")
    runnable = {cards.PLANNED, RESUMABLE} if resume else {cards.PLANNED}
    return [card for card in selected if card.status in runnable], True


# -- queued rows ---------------------------------------------------------------------------


@dataclass
class Queued:
    card: Card
    run_id: int
    resumed_from: str | None  # a resumed run's status before it was queued, restored if it never starts


def queue_runs(db: Database, targets: list[Card], *, resume: bool, launcher: str) -> list[Queued]:
    """Mark every target `queued`, in one transaction: a new run row each, or, with `resume`, its latest run.

    A card that is queued or running already is refused, and then nothing is queued.
    """
    local = launcher == "local"
    host = socket.gethostname()  # where it was queued from, until its job adopts it
    pid = os.getpid() if local else None  # a cluster job has no process yet
    job_id = str(os.getpid()) if local else None  # a local queue's job is the queue itself: `expdb queue --stop` finds it
    moment = now()
    queued = []
    with db.transaction() as connection:
        for card in targets:
            latest = connection.execute(
                "SELECT id, status FROM run WHERE card_id = ? ORDER BY id DESC LIMIT 1", (card.id,)
            ).fetchone()
            if latest is not None and latest[1] in ("queued", "running"):
                raise ExpdbError(f"{card.name} is {latest[1]} already (run {latest[0]}); `expdb queue` shows where")
            if resume and latest is not None:
                connection.execute(
                    "UPDATE run SET status = 'queued', queued_at = ?, launcher = ?, host = ?, pid = ?, job_id = ? WHERE id = ?",
                    (moment, launcher, host, pid, job_id, latest[0]),
                )
                queued.append(Queued(card, latest[0], latest[1]))
                continue
            run_id = connection.execute(
                "INSERT INTO run (uid, card_id, status, queued_at, launcher, host, pid, job_id, env) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, '{}') RETURNING id",
                (new_uid(), card.id, moment, launcher, host, pid, job_id),
            ).fetchone()[0]
            queued.append(Queued(card, run_id, None))
    return queued


def release(db: Database, never_started: list[Queued]) -> None:
    """Undo the queuing of runs that never started: a new row is removed (its card is planned again), a resumed
    run gets its status back. Rows a job adopted in the meantime are left alone."""
    if not never_started:
        return
    with db.transaction() as connection:
        for entry in never_started:
            if entry.resumed_from is None:
                connection.execute("DELETE FROM run WHERE id = ? AND status = 'queued'", (entry.run_id,))
            else:
                connection.execute(
                    "UPDATE run SET status = ? WHERE id = ? AND status = 'queued'", (entry.resumed_from, entry.run_id)
                )


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
        return not self.stopped and all(end.status == "finished" for end in self.ends)


@dataclass
class _Job:
    entry: Queued
    slot_index: int
    slot: Slot
    process: subprocess.Popen
    output: Path  # what it prints


def output_directory(db: Database) -> Path:
    """Where this queue's jobs write what they print, a file each: beside the runs' directories."""
    return db.runs_directory / f"queue-{os.getpid()}"


def run_queue(
    db: Database,
    queued: list[Queued],
    slots: list[Slot],
    run_args: list[str],
    output: Path,
    *,
    on_start: Callable[[Queued, Slot], None] | None = None,
    on_end: Callable[[JobEnd], None] | None = None,
) -> QueueResult:
    """Run the queued cards, at most one job per slot; a slot takes its next card as soon as its job ends.

    Each job's stdout and stderr go to `output`/run-ID-CARD.log. SIGINT or SIGTERM to this
    process stops the queue: running jobs get SIGTERM and end `interrupted`, and the runs
    that never started are released.
    """
    output.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, lambda *_: stop.set())
    pending, free, running, ends = deque(queued), list(range(len(slots))), [], []
    # Per slot, its next job: started while the slot's job runs, it imports Python, expdb and the
    # runner (torch) meanwhile, and begins the moment the slot is free.
    standby: dict[int, _Job] = {}
    try:
        while (pending or running or standby) and not stop.is_set():
            ended = [job for job in running if job.process.poll() is not None]
            for job in ended:
                running.remove(job)
                free.append(job.slot_index)
            for index in list(free):  # start the next jobs before recording the ended ones
                if stop.is_set():
                    break
                job = standby.pop(index, None)
                if job is None and pending:
                    job = _start(db, pending.popleft(), index, slots[index], run_args, output)
                if job is None:
                    continue
                free.remove(index)
                _go(job)
                running.append(job)
                if on_start is not None:
                    on_start(job.entry, job.slot)
            for job in running:  # then, in the order the slots started, each busy slot's next job
                if pending and job.slot_index not in standby and not stop.is_set():
                    standby[job.slot_index] = _start(db, pending.popleft(), job.slot_index, job.slot, run_args, output)
            for job in ended:
                ends.append(_finish(db, job, on_end))
            if not ended:
                time.sleep(POLL_S)
    finally:
        for job in standby.values():
            _go(job, start=False)
        for job in running:
            if job.process.poll() is None:
                job.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for job in [*running, *standby.values()]:
            try:
                job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
        for job in running:
            ends.append(_finish(db, job, on_end))
        pending.extendleft(reversed([job.entry for job in standby.values()]))
        release(db, list(pending))
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    return QueueResult(ends, [entry.card.name for entry in pending], stop.is_set())


def job_command(location: str, entry: Queued, run_args: list[str]) -> list[str]:
    """The job's `expdb run`, adopting its queued run (and continuing it from its checkpoint, if it was resumed)."""
    return [
        sys.executable, "-m", "expdb", "run", entry.card.name, "--db", location, "--queued-run", str(entry.run_id),
        *run_args, *(["--resume"] if entry.resumed_from is not None else []),
    ]


def _start(db: Database, entry: Queued, index: int, slot: Slot, run_args: list[str], output: Path) -> _Job:
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
    try:
        if start:
            job.process.stdin.write(b"go\n")
        job.process.stdin.close()
    except BrokenPipeError:
        pass  # it ended already; how is recorded when it is reaped


def _finish(db: Database, job: _Job, on_end: Callable[[JobEnd], None] | None) -> JobEnd:
    """Record how a job ended: a run its process left `running` is crashed, a run it never started is released."""
    from .runs import reap_crashed_runs

    reap_crashed_runs(db)
    entry, code = job.entry, job.process.returncode
    with job.output.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - TAIL_BYTES))
        said = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
    killed = f"killed by {signal.Signals(-code).name}" if code < 0 else None
    row = db.query_one("SELECT status, exit_reason FROM run WHERE id = ?", (entry.run_id,))
    status, reason = row or ("removed", "its card was deleted while it ran")
    if status == "queued":
        release(db, [entry])
        status = "not started"
        reason = killed or (said[-1].removeprefix("error: ") if said else f"its process exited with status {code}")
    elif killed and status == "crashed":
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
    status: str
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
        "WHERE run.status IN ('queued', 'running')"
    ):
        where = ""
        if status == "running":
            gpu = json.loads(env or "{}").get("cuda_visible_devices")
            where = f"GPU {gpu}" if gpu else device or ""
        entries.append(QueueEntry(card, run_id, status, host, where, launcher, job_id, pid, queued_at, started_at))

    def order(entry: QueueEntry) -> tuple:
        if entry.status == "running":
            return (0, entry.started_at or 0, entry.run_id)
        return (1, entry.queued_at or 0, entry.run_id)

    return sorted(entries, key=order)


def stop_local_queues(db: Database) -> list[str]:
    """SIGTERM to this machine's local queues that have runs queued or running, and to the running jobs of a
    queue that died (they run on without it); what was signalled ("queue 123", "run 7")."""
    rows = db.query(
        "SELECT id, status, pid, job_id FROM run WHERE status IN ('queued', 'running') AND launcher = 'local' AND host = ?",
        (socket.gethostname(),),
    )
    stopped, alive = [], set()
    for queue_pid in sorted({int(job_id) for _, _, _, job_id in rows}):
        if _terminate(queue_pid):
            stopped.append(f"queue {queue_pid}")
            alive.add(queue_pid)
    for run_id, status, pid, job_id in rows:
        if status == "running" and int(job_id) not in alive and _terminate(pid):
            stopped.append(f"run {run_id}")
    return stopped


def _terminate(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):  # gone, or the pid is someone else's process now
        return False
    return True
