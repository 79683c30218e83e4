"""Cluster execution through submitit: each card becomes a Slurm job that runs `expdb run` on its node.

The submitting process marks each card's run `queued` (launcher `slurm`), submits the
jobs in one batch (a Slurm job array), and records each job's id on its run. On the
node, the job adopts that run row against the shared database, as the local queue's
jobs do; the database must therefore be one every node reaches. A job that ends before
it began is found in Slurm's accounting by `release_ended_jobs`, which only `expdb run`
and `expdb queue` call: sacct may take long, and reading the database never waits for it.
"""

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Any
from pathlib import Path

from . import lifecycle
from .cards import Card
from .db import Database
from .errors import ExpdbError, last_line
from .lifecycle import QueuedRun, RunStatus
from .queue import job_command, queue_runs, release
from .interrupts import TIME_LIMIT_SIGNAL

SLURM_FOLDER = "slurm"  # in the database's runs directory: submitit's scripts and the jobs' stdout/stderr, one file per job
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_MEM = re.compile(r"\d+[KMGT]?")
SACCT_TIMEOUT_S = 30
CHECKPOINT_WAIT_S = 80.0  # after the time-limit warning (90 s before it), how long `expdb run` may take to checkpoint
ENDED_STATES = {  # sacct's states of a job that will not run (again)
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT",
}


def check_slurm() -> None:
    """submitit is installed and this machine can submit to Slurm."""
    try:
        import submitit  # noqa: F401 - only whether it is there
    except ImportError:
        raise ExpdbError("--launcher slurm needs submitit: pip install 'expdb[slurm]'") from None
    missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]  # submitit needs both
    if missing:
        raise ExpdbError(
            f"--launcher slurm: Slurm is not on this machine (no {' or '.join(missing)} on PATH); "
            "submit from the cluster's login node, or run here with --jobs N"
        )


def parse_time(text: str) -> int:
    """A Slurm time limit ("12:00:00", "90", "1-12:00:00", "2-0") in whole minutes, as submitit takes it."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ExpdbError(f"--time {text!r}: give a Slurm time limit such as 12:00:00, 90 (minutes) or 1-12:00:00")
    days, first, second, third = match.groups()
    numbers = [int(part) for part in (first, second, third) if part is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = (numbers + [0, 0])[:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(numbers) == 3:  # H:M:S
        total = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    else:  # M, M:S
        total = numbers[0] * 60 + (numbers[1] if len(numbers) == 2 else 0)
    if total <= 0:
        raise ExpdbError(f"--time {text!r}: a time limit is longer than zero")
    return -(-total // 60)


def check_mem(text: str) -> str:
    """Memory per job as Slurm takes it: 64G, 500M, 64000 (megabytes)."""
    if not _MEM.fullmatch(text):
        raise ExpdbError(f"--mem {text!r}: give memory per job as Slurm takes it, e.g. 64G, 500M or 64000 (megabytes)")
    return text


@dataclass
class SlurmRequest:
    """What each job asks Slurm for; None leaves it to the cluster's defaults."""

    time_min: int  # submitit would otherwise ask for 5 minutes
    partition: str | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem: str | None = None


def slurm_executor(folder: Path, request: SlurmRequest):
    """A submitit executor for Slurm, one task on one node per job."""
    import submitit

    executor = submitit.SlurmExecutor(folder=folder)
    asked = {
        "partition": request.partition,
        "time": request.time_min,
        "gpus_per_node": request.gpus_per_job,
        "cpus_per_task": request.cpus_per_job,
        "mem": request.mem,
    }
    executor.update_parameters(
        job_name="expdb", nodes=1, ntasks_per_node=1, **{key: value for key, value in asked.items() if value is not None}
    )
    return executor


def shared_location(db: Database) -> str:
    """The database as every node names it: an SQLite file by its absolute path, a server by its URL."""
    return db.dialect.shared_location


@dataclass
class Submitted:
    card: str
    run_id: int
    job: Any  # a submitit Job: job_id, result(), wait()


def submit_cards(
    db: Database, targets: list[Card], executor, run_args: list[str], *, resume: bool = False, requeue: bool = False
) -> list[Submitted]:
    """Queue a run for each card and submit one job per card through `executor`, in one batch; record the job ids.

    `requeue`: a job stopped by its time limit is requeued and resumes its run from its checkpoint (see NodeJob).
    Any submitit executor works: Slurm's on a cluster, submitit.LocalExecutor to try it here.
    If the submission fails, the queued runs are released and nothing stays queued.
    """
    queued = queue_runs(db, targets, resume=resume, launcher="slurm")
    location = shared_location(db)
    try:
        with executor.batch():
            jobs = [executor.submit(NodeJob(location, entry, run_args, requeue)) for entry in queued]
    except Exception as error:  # noqa: BLE001 - sbatch refusing, a folder not writable: one line
        release(db, queued)
        raise ExpdbError(f"submitting to Slurm failed: {last_line(error)}") from None
    except BaseException:  # Ctrl-C while sbatch hangs: nothing stays queued
        release(db, queued)
        raise
    with db.transaction() as connection:
        connection.executemany(
            "UPDATE run SET job_id = ? WHERE id = "
            "?", [(str(job.job_id), entry.run_id) for entry, job in zip(queued, jobs, strict=True)]
        )
    return [Submitted(entry.card.name, entry.run_id, job) for entry, job in zip(queued, jobs, strict=True)]


class NodeJob:
    """The job on the compute node: `expdb run CARD` adopting its queued run, as a child process; returns its exit status.

    Before the time limit, Slurm sends SIGUSR2 (submitit's --signal=USR2@90) and submitit calls `checkpoint` in this
    process. It forwards the signal to `expdb run`, whose runner checkpoints and returns (the run ends `interrupted`),
    and waits for it. With `requeue`, the run is queued again and submitit requeues the job, which resumes the run
    from its checkpoint; without, the job ends there. SIGTERM (scancel, the limit itself) reaches `expdb run` from
    Slurm directly: the run ends `interrupted` too. A run that `expdb run` never adopted (a signal while it
    started) is requeued as it is with `requeue`, else released: nothing stays queued.
    """

    def __init__(self, location: str, entry: QueuedRun, run_args: list[str], requeue: bool = False):
        self.location, self.entry, self.run_args, self.requeue = location, entry, run_args, requeue
        self._process: subprocess.Popen | None = None
        self._checkpointing = False  # then `checkpoint` decides what becomes of a run still queued

    def __getstate__(self) -> dict:  # pickled by submitit: the child process stays here
        return {**self.__dict__, "_process": None}

    def __call__(self) -> int:
        self._process = subprocess.Popen(job_command(self.location, self.entry, self.run_args))
        code = self._process.wait()
        if self._checkpointing or not self._still_queued():
            return code
        # `expdb run` stopped before it adopted the run (scancel while it started): nothing will run it.
        with Database(self.location) as db:
            lifecycle.release(db, self.entry.run_id, self.entry.resumed_from)
        return code

    def _still_queued(self) -> bool:
        with Database(self.location) as db:
            run = lifecycle.get_run(db, self.entry.run_id)
        return run is not None and run.status == RunStatus.QUEUED

    def checkpoint(self):
        """submitit's hook on the time-limit signal: stop the run with a checkpoint; the job to requeue, or None."""
        import submitit

        self._checkpointing = True
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(TIME_LIMIT_SIGNAL)
            try:
                process.wait(timeout=CHECKPOINT_WAIT_S)
            except subprocess.TimeoutExpired:  # the runner never looks at should_stop: end it as Slurm would
                process.terminate()
                process.wait()
        if self._still_queued():  # stopped before it adopted its run (SIGUSR2 while it started)
            if self.requeue:
                return submitit.helpers.DelayedSubmission(NodeJob(self.location, self.entry, self.run_args, self.requeue))
            with Database(self.location) as db:
                lifecycle.release(db, self.entry.run_id, self.entry.resumed_from)
            return None
        if not self.requeue:
            return None
        with Database(self.location) as db:
            if not lifecycle.requeue(db, self.entry.run_id, os.environ.get("SLURM_SUBMIT_HOST")):
                return None  # it finished, failed or diverged meanwhile: nothing to resume
        resumed = QueuedRun(self.entry.card, self.entry.run_id, RunStatus.INTERRUPTED)
        return submitit.helpers.DelayedSubmission(NodeJob(self.location, resumed, self.run_args, self.requeue))


def ended_jobs(job_ids: list[str]) -> set[str]:
    """The jobs among `job_ids` that Slurm's accounting says have ended. A job sacct does not know, or a
    machine without sacct, is not among them."""
    if shutil.which("sacct") is None:
        return set()
    try:
        answer = subprocess.run(
            ["sacct", "--noheader", "--allocations", "--parsable2", "--format=JobID,State", "--jobs", ",".join(job_ids)],
            capture_output=True, text=True, timeout=SACCT_TIMEOUT_S, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    states = {}
    for line in answer.splitlines():
        job_id, _, state = line.partition("|")
        states[job_id] = state.split(" ", 1)[0]  # "CANCELLED by 1000"
    return {job_id for job_id in job_ids if states.get(job_id) in ENDED_STATES}


def release_ended_jobs(db: Database) -> list[int]:
    """Release the queued Slurm runs submitted from this machine whose job ended without `expdb run` adopting
    its run (cancelled, failed, timed out); returns their ids. Asks sacct only when there are such runs."""
    host = socket.gethostname()
    queued = [
        run for run in lifecycle.active_runs(db)
        if run.status == RunStatus.QUEUED and run.launcher == "slurm" and run.job_id is not None and run.host == host
    ]
    if not queued:
        return []
    ended = ended_jobs([run.job_id for run in queued if run.job_id is not None])
    return [run.id for run in queued if run.job_id in ended and lifecycle.release_orphan(db, run)]
