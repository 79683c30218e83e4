"""How many CPU threads a training gets: the cores actually free, not only the cores that exist.

torch starts one thread per core. On a shared machine whose cores are busy with other work, those
threads fight over the cores and a training is slower than with fewer threads (a 600-step card
took 6 min of CPU instead of 51 s with the load around 10 on 2 cores). So the runner, the queue
and the demo ask how busy the machine is (the 1-minute load average, `os.getloadavg`) once, before
they train anything (their own training would count as load afterwards), and give each training
the cores left free: round(cores - load), at least 1, shared among the jobs that run at once.
OMP_NUM_THREADS, when the user sets it, wins. Standard library only.
"""

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch (OpenMP, MKL) reads when it is imported


def usable_cores() -> int:
    """The cores this process may use (a Slurm allocation or taskset may give it fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average: runnable (and waiting) tasks, over the last minute; None where there is none."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


@dataclass(frozen=True)
class ThreadBudget:
    threads: int  # per job
    cores: int
    load: float | None
    jobs: int = 1
    given: bool = False  # OMP_NUM_THREADS was set by the user

    def describe(self) -> str:
        """One line saying how many threads and why, for the user to see before a training starts."""
        each = " each" if self.jobs > 1 else ""
        if self.given:
            return f"CPU threads: {self.threads}{each}, as OMP_NUM_THREADS says"
        busy = f"load average {self.load:.1f}" if self.load is not None else "load unknown"
        return f"CPU threads: {self.threads}{each} ({self.cores} cores, {busy}; set OMP_NUM_THREADS to choose)"


def thread_budget(
    jobs: int = 1, *, cores: int | None = None, load: float | None = None, environ: Mapping[str, str] = os.environ
) -> ThreadBudget:
    """The threads each of `jobs` trainings at once should use: the free cores shared among them."""
    cores = cores or usable_cores()
    given = environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return ThreadBudget(int(given), cores, load, jobs, given=True)
    if load is None:
        load = load_average()
    free = cores if load is None else max(1, min(cores, round(cores - load)))
    return ThreadBudget(max(1, free // jobs), cores, load, jobs)


@contextmanager
def kept_threads() -> Iterator[None]:
    """Puts back what `use_threads` changes once the trainings are done (a process that goes on, as a test's or
    a notebook's, keeps its own settings): the variables, and torch's count when torch was loaded before."""
    variables = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if torch is not None and threads is not None:
            torch.set_num_threads(threads)


def use_threads(budget: ThreadBudget) -> None:
    """Make this process's trainings, and the commands it starts, use `budget.threads` threads."""
    if budget.given:
        return
    for name in THREAD_VARIABLES:
        os.environ[name] = str(budget.threads)
    torch = sys.modules.get("torch")  # already imported: it read the variables then; tell it directly
    if torch is not None:
        torch.set_num_threads(budget.threads)
