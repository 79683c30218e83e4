"""expdb.forked: work in a forked child, and this process's own result whenever the child cannot give one."""

import os
import signal
import threading
import time

import pytest

from expdb import forked

pytestmark = pytest.mark.skipif(not forked.can_fork(), reason="needs Linux and two usable cores, as CI has")


def test_the_result_is_the_childs():
    with forked.in_child(lambda: {"pid": os.getpid(), "values": [1.5, None, True, "ü\udcff", 2**70]}) as result:
        found = result()
    assert found["pid"] != os.getpid()
    assert repr(found["values"]) == repr([1.5, None, True, "ü\udcff", 2**70])  # as it was: True, not 1


def test_a_failed_child_is_replaced_by_this_process():
    parent = os.getpid()

    def work() -> int:
        if os.getpid() != parent:
            raise MemoryError("only in the child")
        return os.getpid()

    with forked.in_child(work) as result:
        assert result() == parent


def test_an_error_in_this_process_is_this_processs():
    parent = os.getpid()

    def work() -> int:
        if os.getpid() == parent:
            raise ValueError("the real error")
        os._exit(3)  # the child dies without a result

    with forked.in_child(work) as result, pytest.raises(ValueError, match="the real error"):
        result()


def test_leaving_the_block_early_ends_the_child(tmp_path):
    started = tmp_path / "child"

    def work() -> None:
        (tmp_path / "writing").write_text(str(os.getpid()))
        (tmp_path / "writing").replace(started)  # whole, or not there yet
        time.sleep(60)

    with pytest.raises(KeyError), forked.in_child(work):
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise KeyError("an error before the result was asked for")
    child = int(started.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped: not even a zombie is left
        os.kill(child, 0)


def test_ctrl_c_is_left_to_this_process():
    """The child ignores Ctrl-C (this process ends it); SIGINT, held back while the fork is made, reaches both again."""
    def child_sees() -> list:
        return [signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])]

    with forked.in_child(child_sees) as result:
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert result() == [True, False]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_a_child_that_ends_well_without_a_result_is_replaced_by_this_process():
    parent = os.getpid()

    def work() -> int:
        if os.getpid() != parent:
            os._exit(0)  # nothing sent, yet a clean exit
        return 7

    with forked.in_child(work) as result:
        assert result() == 7


def test_no_child_beside_a_thread():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not forked.can_fork()
        with forked.in_child(os.getpid) as result:
            assert result() == os.getpid()
    finally:
        stop.set()
        thread.join()


def test_no_child_when_the_system_would_reap_it():
    before = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert not forked.can_fork()
    finally:
        signal.signal(signal.SIGCHLD, before)
    assert forked.can_fork()


def test_a_fork_refused_leaves_the_work_here_and_no_pipe_open(monkeypatch):
    def refused():
        raise BlockingIOError("Resource temporarily unavailable")

    open_before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", refused)
    with forked.in_child(os.getpid) as result:
        assert result() == os.getpid()
    assert len(os.listdir("/proc/self/fd")) == open_before
