"""Targets for the child processes of test_faults_sync.py (a module of its
own, so that spawned and fork-server children can import them)."""

import os
import threading
import time


def use_all(lock, rlock, sem, bsem, event, cond, barrier, done):
    """Exercises each primitive once from the child side."""
    with lock:
        pass
    with rlock:
        with rlock:
            pass
    sem.release()
    bsem.acquire()
    bsem.release()
    with cond:
        cond.notify_all()
    event.set()
    barrier.wait(30)
    done.release()


def wait_on_condition(cond, ready):
    """Waits on cond forever (until killed); ready is released once the
    wait has begun (with the lock held, so the parent can tell by taking
    the lock that this process sleeps)."""
    with cond:
        ready.release()
        cond.wait()


def wait_on_event(event, ready):
    with event._cond:
        ready.release()
    event.wait()


def wait_on_barrier(barrier):
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        os._exit(3)


def wait_on_condition_and_report(cond, ready, result):
    """A live waiter: reports through result (a Semaphore) once notified."""
    with cond:
        ready.release()
        if cond.wait(60):
            result.release()


def hold_internal_lock(obj, ready):
    """Take the internal lock of an Event or Barrier and keep it (the test
    kills this process while it holds it)."""
    obj._lock.acquire()
    ready.release()
    time.sleep(3600)


def count_self_and_die(barrier):
    """Die holding a Barrier's lock right after counting itself as a party,
    before sleeping in the condition's table (the window a kill can hit)."""
    barrier._lock.acquire()
    barrier._count += 1
    os._exit(0)
