"""Behaviour pinned down while connection, reduction and synchronize
(Condition, Event, Barrier) were rewritten from their fact sheet: the edges
the other test files do not reach."""

import array
import os
import pickle
import socket
import threading

import pytest

import blocked_helpers
import gomp
import sync_helpers as h
from conftest import wait_until
from gomp import connection, reduction


def check_no_sleepers(cond):
    assert cond._sleeping_count.get_value() - cond._woken_count.get_value() == 0
    assert cond._wait_semaphore.get_value() == 0


# ---- Condition ----------------------------------------------------------------------------------


def test_timed_out_waiter_does_not_absorb_a_later_notify():
    cond = gomp.Condition()
    with cond:
        assert cond.wait(0.01) is False  # reported, never notified
    woke = []
    ready = threading.Event()

    def sleeper():
        with cond:
            ready.set()
            woke.append(cond.wait(60))

    t = threading.Thread(target=sleeper)
    t.start()
    ready.wait(60)
    with cond:  # the sleeper is inside wait() now
        cond.notify()
    t.join(60)
    assert woke == [True]
    check_no_sleepers(cond)


def test_notify_n_wakes_exactly_n_threads():
    cond = gomp.Condition(gomp.Lock())
    sleeping, woken = gomp.Semaphore(0), gomp.Semaphore(0)
    threads = [
        threading.Thread(target=h.cond_waiter, args=(cond, sleeping, woken)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for _ in threads:
        assert sleeping.acquire(timeout=60)
    with cond:
        cond.notify(2)  # returns once both have left their sleep
    assert woken.acquire(timeout=60) and woken.acquire(timeout=60)
    # Exactly two: the third is asleep on the condition again (not woken and
    # runnable), with no wake-up left in the semaphore for it.
    wait_until(
        lambda: (
            [blocked_helpers.thread_blocked(t) for t in threads if t.is_alive()] == [True]
            and cond._wait_semaphore.get_value() == 0
        ),
        "one waiter left, asleep in cond.wait()",
    )
    assert woken.get_value() == 0
    with cond:
        cond.notify_all()
    for t in threads:
        t.join(60)
    assert woken.get_value() == 1
    check_no_sleepers(cond)


def test_wait_for_zero_timeout_calls_predicate_once():
    cond = gomp.Condition()
    calls = []
    with cond:
        assert cond.wait_for(lambda: calls.append(1), 0) is None
    assert calls == [1]


def test_condition_is_only_pickled_for_a_child():
    with pytest.raises(RuntimeError):
        pickle.dumps(gomp.get_context("spawn").Condition())


# ---- Event and Barrier: state in the lock's shared bytes ---------------------------------------


def _set_event_and_report(event, barrier, conn):
    conn.send((event.is_set(), barrier.parties, barrier.n_waiting, barrier.broken))
    event.set()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_event_and_barrier_state_is_shared(method):
    ctx = gomp.get_context(method)
    event, barrier = ctx.Event(), ctx.Barrier(2, timeout=30)
    event.set()
    event.clear()
    barrier.abort()
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_set_event_and_report, args=(event, barrier, w))
    p.start()
    assert r.recv() == (False, 2, 0, True)
    p.join(60)
    assert p.exitcode == 0
    assert event.is_set() and event.wait(0)
    barrier.reset()
    assert not barrier.broken and barrier.n_waiting == 0


def test_event_wait_timeout_returns_false():
    event = gomp.Event()
    assert event.wait(0.01) is False
    assert repr(event).endswith(" unset>")
    event.set()
    assert repr(event).endswith(" set>")


# ---- connections ------------------------------------------------------------------------------


def test_direction_and_closed_errors():
    r, w = gomp.Pipe(duplex=False)
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv_bytes()
    with pytest.raises(OSError, match="connection is read-only"):
        r.send(1)
    r.close()
    r.close()
    assert r.closed
    with pytest.raises(OSError, match="handle is closed"):
        r.poll()
    with pytest.raises(OSError, match="handle is closed"):
        r.fileno()
    w.close()


def test_oversized_frame_closes_a_read_only_connection():
    r, w = gomp.Pipe(duplex=False)
    w.send_bytes(b"x" * 100)
    with pytest.raises(OSError, match="bad message length"):
        r.recv_bytes(10)
    assert r.closed
    w.close()


def test_arbitrary_address_and_address_type():
    assert connection.arbitrary_address("AF_INET") == ("localhost", 0)
    assert connection.address_type(connection.arbitrary_address("AF_UNIX")) == "AF_UNIX"
    for bad in ("AF_PIPE", "AF_FOO", None):
        with pytest.raises(ValueError):
            connection.arbitrary_address(bad)
    assert connection.address_type(b"\0abstract") == "AF_UNIX"
    assert connection.address_type("\\\\.\\pipe\\x") == "AF_PIPE"
    with pytest.raises(ValueError, match="unrecognized"):
        connection.address_type(b"path as bytes")
    with pytest.raises(TypeError):  # as the stdlib's (from util)
        connection.address_type(42)


def test_listener_path_removed_on_close_and_address_after_close():
    with connection.Listener(family="AF_UNIX") as listener:
        path = listener.address
        assert os.path.exists(path)
    assert not os.path.exists(path)
    with pytest.raises(OSError, match="listener is closed"):
        listener.accept()


# ---- reduction --------------------------------------------------------------------------------


def test_recvfds_checks_the_count_byte():
    a, b = socket.socketpair()
    with a, b:
        fds = array.array("i", [a.fileno()])
        a.sendmsg([bytes([5])], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        with pytest.raises(AssertionError, match="Len is 1 but msg"):
            reduction.recvfds(b, 1)


def test_abstract_reducer_has_the_module_api():
    class Reducer(reduction.AbstractReducer):
        pass

    Reducer()
    for name in (
        "ForkingPickler",
        "register",
        "dump",
        "send_handle",
        "recv_handle",
        "sendfds",
        "recvfds",
        "DupFd",
        "_reduce_socket",
        "_rebuild_socket",
    ):
        assert hasattr(Reducer, name), name
    assert reduction.ForkingPickler._extra_reducers[socket.socket] is reduction._reduce_socket
