"""SIGTERM, SIGINT and a cluster's SIGUSR2 in a process that records runs: what each stops, and when.

`expdb run` handles them from its first line (expdb/__main__.py): a cluster sends SIGUSR2
before a job's time limit, or to preempt it, and SIGTERM to cancel it, at any moment,
also while Python imports torch. Whenever one comes:

- no run trains: it stops the process there (Terminated, TimeLimitNear, KeyboardInterrupt:
  one line, exit 130); nothing was recorded, or what was is already ended;
- a run row is being written (started, adopted, ended): the signal waits (`hold`) until it
  is, then acts;
- a run trains: SIGTERM and SIGINT end it `interrupted` (raised in the training code, caught
  where the run ends); SIGUSR2 asks it to stop (`request_stop`): the runner checkpoints and
  returns, and the run ends `interrupted`.

Only the standard library here: __main__ imports this before anything else.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

TIME_LIMIT_SIGNAL = signal.SIGUSR2  # what submitit has Slurm send before a job's time limit (--signal=USR2@90)
TIME_LIMIT_REASON = "the cluster's time limit is near (SIGUSR2)"
NO_RUN = "before a run began"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: flush, mark the run interrupted."""


class TimeLimitNear(KeyboardInterrupt):
    """SIGUSR2 while no run trains: the job stops before it starts a run."""


_STOPS: dict[int, tuple[type[KeyboardInterrupt], str]] = {
    TIME_LIMIT_SIGNAL: (TimeLimitNear, TIME_LIMIT_REASON), signal.SIGTERM: (Terminated, "terminated (SIGTERM)"),
}


class Stoppable(Protocol):
    @property
    def ended(self) -> bool: ...

    def request_stop(self, reason: str) -> None: ...


class _Handler:
    """The one handler of the three signals in this process; signals run it in the main thread."""

    def __init__(self) -> None:
        self.run: Stoppable | None = None  # the run training now
        self.holding = 0
        self.pending: list[int] = []
        self.why: str | None = None  # what stopped this process, said by `expdb run` as it exits
        # The stop raised into the training now: code that catches it (an import cut short, say) may fail
        # otherwise later, and the run still ends interrupted.
        self.raised: KeyboardInterrupt | None = None

    def __call__(self, signum: int, frame=None) -> None:
        if self.holding:
            self.pending.append(signum)
            return
        training = self.run is not None and not self.run.ended
        if signum == TIME_LIMIT_SIGNAL and training:
            assert self.run is not None
            self.run.request_stop(TIME_LIMIT_REASON)  # nothing else here: the interrupted code may be writing its log
            return
        kind, said = _STOPS.get(signum, (KeyboardInterrupt, None))
        self.why = None if said is None else said if training else f"{said}, {NO_RUN}"
        stop = kind(self.why or "")
        if training:
            self.raised = stop
        raise stop


_handler = _Handler()
_SIGNALS = (signal.SIGTERM, TIME_LIMIT_SIGNAL, signal.SIGINT)


def raised_into(run: Stoppable) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM raised into `run`'s training, while it trains, if one was."""
    return _handler.raised if _handler.run is run else None


def why_stopped() -> str | None:
    """What the last signal that stopped this process's work was, once: "terminated (SIGTERM)"; None for Ctrl-C."""
    why, _handler.why = _handler.why, None
    return why


def install() -> dict:
    """This module's handling of the signals, from now on, in the main thread (elsewhere, nothing); the handlers it
    replaced. SIGINT only where Python raises KeyboardInterrupt for it (not ignored, as under nohup)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    replaced = {}
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if current is _handler or (signum == signal.SIGINT and current is not signal.default_int_handler):
            continue
        replaced[signum] = signal.signal(signum, _handler)
    return replaced


@contextmanager
def handled() -> Iterator[None]:
    """This module's handling while the block runs (a run started from Python, not by `expdb run`); then as before."""
    replaced = install()
    try:
        yield
    finally:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)


def hold() -> None:
    """From now until `release`, the signals wait: a run row is being written, which they must not cut in half."""
    _handler.holding += 1


def release() -> None:
    """The signals that came while held act now, in the order they came (SIGTERM raises Terminated here)."""
    _handler.holding -= 1
    if not _handler.holding:
        pending, _handler.pending = _handler.pending, []
        for signum in pending:
            _handler(signum)


@contextmanager
def held() -> Iterator[None]:
    hold()
    try:
        yield
    finally:
        release()


@contextmanager
def training(run: Stoppable) -> Iterator[None]:
    """While the block runs, `run` trains: SIGUSR2 asks it to stop."""
    previous, _handler.run, _handler.raised = _handler.run, run, None
    try:
        yield
    finally:
        _handler.run, _handler.raised = previous, None
