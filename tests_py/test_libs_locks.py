"""A Lock or RLock whose holder died keeps the standard library's meaning by
default: it stays held (acquire blocks or times out), and gomp says so once
per process, with the dead holder's pid (OwnerDiedWarning). Taking the lock
over is the opt-in of a robust lock (robust=True): see test_sync.py.

pebble depends on the default: a worker that dies holding the RLock of its
result channel must leave the channel locked, so that the pool sees it as
broken instead of reading a message the dead writer left half-written."""

import os
import signal
import warnings

import pytest

import gomp
import sync_helpers as h
from conftest import stdlib_peer
from gomp import synchronize
from gomp._gomp import SemLock

RECURSIVE_MUTEX, SEMAPHORE = 0, 1

METHODS = ["fork", "spawn"]


def hold_and_die_kind(ctx, lock, times=1):
    r, w = ctx.Pipe()
    p = ctx.Process(target=h.hold_and_die, args=(lock, w, times), daemon=True)
    p.start()
    assert r.recv() == "held"
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    return p.pid


def owner_died_warnings(caught):
    return [c for c in caught if issubclass(c.category, synchronize.OwnerDiedWarning)]


@pytest.mark.parametrize("method", METHODS)
def test_rlock_of_a_dead_holder_stays_held(method):
    ctx = gomp.get_context(method)
    lock = ctx.RLock()
    pid = hold_and_die_kind(ctx, lock, times=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Long enough for the waiter to check the owner (from its second
        # slice of waiting on).
        assert lock.acquire(timeout=0.6) is False
        assert lock.acquire(timeout=0.6) is False
        assert lock.acquire(False) is False
    died = owner_died_warnings(caught)
    assert len(died) == 1, [str(c.message) for c in caught]
    assert "process %d " % pid in str(died[0].message)
    assert "stays held" in str(died[0].message)
    assert lock._owner() == pid and not lock._is_mine()


def test_the_stdlib_does_the_same():
    # The behaviour the default copies, observed on the standard library.
    multiprocessing = stdlib_peer("multiprocessing")
    ctx = multiprocessing.get_context("fork")
    lock = ctx.RLock()
    r, w = ctx.Pipe()
    p = ctx.Process(target=h.hold_and_die, args=(lock, w))
    p.start()
    assert r.recv() == "held"
    p.join(60)
    assert lock.acquire(timeout=0.3) is False


@pytest.mark.parametrize("kind", [RECURSIVE_MUTEX, SEMAPHORE])
def test_tracked_semlock_of_a_dead_holder_stays_held(kind):
    # tracked=True is what a non-recursive Lock is made with: an owner-tracked
    # lock that is not robust.
    ctx = gomp.get_context("fork")
    lock = SemLock(kind, 1, 1, "unused", True, tracked=True)
    assert lock.robust is False
    pid = hold_and_die_kind(ctx, lock)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lock.acquire(timeout=0.6) is False
    died = owner_died_warnings(caught)
    assert len(died) == 1 and "process %d " % pid in str(died[0].message)


def test_warning_as_error_raises_and_leaves_the_lock_held():
    ctx = gomp.get_context("fork")
    lock = ctx.RLock()
    pid = hold_and_die_kind(ctx, lock)
    with warnings.catch_warnings():
        warnings.simplefilter("error", synchronize.OwnerDiedWarning)
        with pytest.raises(synchronize.OwnerDiedWarning, match="process %d " % pid):
            lock.acquire(timeout=5)
        # Said once: the next wait just times out.
        assert lock.acquire(timeout=0.6) is False
    assert lock._owner() == pid


def test_robust_flag_travels_with_the_lock_to_a_spawned_child():
    # The flag lives in the shared region, so a child that attaches by name
    # agrees with its creator.
    for robust in (False, True):
        lock = SemLock(
            RECURSIVE_MUTEX,
            1,
            1,
            "/gomp-libs-test-%d-%d" % (os.getpid(), robust),
            False,
            robust=robust,
        )
        try:
            again = SemLock._rebuild(lock.handle, RECURSIVE_MUTEX, 1, lock.name)
            assert (lock.robust, again.robust) == (robust, robust)
        finally:
            gomp._multiprocessing.sem_unlink(lock.name)


def test_robust_needs_a_lock_shape():
    with pytest.raises(ValueError):
        SemLock(SEMAPHORE, 2, 2, "unused", True, robust=True)
    with pytest.raises(ValueError):
        SemLock(SEMAPHORE, 1, 3, "unused", True, tracked=True)
    assert SemLock(SEMAPHORE, 1, 1, "unused", True, robust=True).robust is True
    assert SemLock(SEMAPHORE, 1, 5, "unused", True).robust is False


def test_default_lock_of_a_dead_holder_stays_held():
    ctx = gomp.get_context("fork")
    lock = ctx.Lock()
    hold_and_die_kind(ctx, lock)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert lock.acquire(timeout=0.6) is False


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_robust_keyword(kind):
    ctx = gomp.get_context("fork")
    assert getattr(ctx, kind)(robust=True).robust is True
    assert getattr(ctx, kind)().robust is False
