"""Work on the machine's other core: a forked child computes a value while this process goes on.

A table of 100,000 cards spends its time in Python, on one core: reading the database and writing
csv. With two cores or more, a forked child reads the metrics and profiles while this process reads
the cards, and writes half the csv while this process writes the other half (`benchmarks/bench_cli.py`).

The child is only ever a shortcut. Where a fork is not safe (see `can_fork`), or when the child
fails in any way, this process computes the value itself, so the result, and any error, is always
what `work()` gives here. Standard library only.
"""

import marshal
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import NoReturn, TypeVar

from .cpus import usable_cores

T = TypeVar("T")
# Cards or rows. At 10,000 a child saves nothing: csv of 10,000 cards took 0.67 s with children, 0.62 s without.
FORK_FROM = 20_000


def can_fork() -> bool:
    """Linux (on macOS, system libraries that libpq and others load are not safe to use after a fork), two usable
    cores, one thread (a fork copies only the thread that forks: a lock another thread held would never be released
    in the child), and SIGCHLD as it is by default (ignored, the kernel would reap the child before this process
    asks how it ended)."""
    return (
        sys.platform == "linux"
        and usable_cores() >= 2
        and threading.active_count() == 1
        and signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    )


def worth_a_child(count: int) -> bool:
    """Whether work over `count` cards or rows is worth splitting with a child, and one can be made."""
    return count >= FORK_FROM and can_fork()


@contextmanager
def in_child(work: Callable[[], T]) -> Iterator[Callable[[], T]]:
    """Start `work()` in a forked child. Inside the block, the function this yields waits for the child's result
    (made of what marshal carries: numbers, strings, tuples, lists, dicts), or computes it here. Leaving the block ends
    the child.

    `work` must not use anything the fork copied that is shared with this process, such as a database
    connection: it opens its own."""
    if not can_fork():
        yield work
        return
    read_end, write_end = os.pipe()
    # Ctrl-C waits until both sides are ready for it: the child ignoring it, this process able to end the child.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        child: int | None = os.fork()
    except OSError:  # no memory or processes left for a child
        child = None
    if child == 0:
        _run_child(work, write_end, mask)
    os.close(write_end)
    reaped = child is None

    def result() -> T:
        nonlocal reaped
        if child is None:
            return work()
        with open(read_end, "rb", closefd=False) as pipe:
            sent = pipe.read()
        _, status = os.waitpid(child, 0)
        reaped = True
        if status == 0:
            with suppress(EOFError, ValueError, TypeError):  # a truncated or garbled result: not trusted
                return marshal.loads(sent)
        return work()

    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        yield result
    finally:
        os.close(read_end)
        if child is not None and not reaped:  # the block ended before it asked for the result (an error, Ctrl-C)
            with suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            with suppress(ChildProcessError):  # reaped already: Ctrl-C came just after it ended
                os.waitpid(child, 0)


def _run_child(work: Callable[[], T], write_end: int, mask: set[int | signal.Signals]) -> NoReturn:
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the child
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        result = memoryview(marshal.dumps(work()))  # type: ignore[arg-type]  # what marshal carries, as documented
        while result:
            result = result[os.write(write_end, result) :]
        status = 0
    finally:
        os._exit(status)  # never back into the parent's code, its `finally` blocks and exit handlers
