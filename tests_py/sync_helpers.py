"""Targets for test_sync.py: importable by spawn and forkserver children."""

import mmap
import os
import signal
import struct
import time


class Counter:
    """Integers in a file that every process maps (fork, spawn, forkserver
    alike). Increments are read-modify-write on purpose: only a lock keeps
    them exact."""

    def __init__(self, path, slots=8):
        self.path = path
        if not os.path.exists(path):
            with open(path, 'wb') as f:
                f.write(b'\0' * mmap.PAGESIZE)
        self._open()

    def _open(self):
        with open(self.path, 'r+b') as f:
            self._mm = mmap.mmap(f.fileno(), mmap.PAGESIZE)

    def __getstate__(self):
        return self.path

    def __setstate__(self, path):
        self.path = path
        self._open()

    def __getitem__(self, i):
        return struct.unpack_from('q', self._mm, 8 * i)[0]

    def __setitem__(self, i, v):
        struct.pack_into('q', self._mm, 8 * i, v)


def count_under_lock(lock, counter, n, slot=0):
    for _ in range(n):
        with lock:
            v = counter[slot]
            if v % 97 == 0:
                time.sleep(0)  # let the other side run while we hold the lock
            counter[slot] = v + 1


def count_under_rlock(lock, counter, n):
    for _ in range(n):
        lock.acquire()
        lock.acquire()  # recursion
        v = counter[0]
        counter[0] = v + 1
        lock.release()
        lock.release()


def contend_for(lock, counter, slot, seconds, start_sem):
    start_sem.acquire()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        with lock:
            counter[7] = counter[7] + 1
            n += 1
    counter[slot] = n


def hold_and_die(lock, conn, times=1):
    for _ in range(times):
        lock.acquire()
    conn.send('held')
    os.kill(os.getpid(), signal.SIGKILL)


def hold_until_told(lock, conn):
    lock.acquire()
    conn.send('held')
    conn.recv()


def try_acquire(lock, conn):
    conn.send(lock.acquire(False))


def acquire_and_report(lock, conn, timeout, release=True):
    t0 = time.monotonic()
    got = lock.acquire(timeout=timeout)
    conn.send((got, time.monotonic() - t0))
    if got and release:
        lock.release()


def release_it(lock):
    lock.release()


def cond_waiter(cond, sleeping, woken, timeout=None):
    with cond:
        sleeping.release()
        cond.wait(timeout)
        woken.release()


def event_waiter(event, conn):
    conn.send('waiting')
    conn.send(event.wait(30))


def barrier_party(barrier, conn):
    try:
        conn.send(('passed', barrier.wait()))
    except Exception as e:
        conn.send(('error', type(e).__name__))


def barrier_abort_party(barrier, conn):
    # After a first pass, the party that got index 0 aborts the barrier; the
    # others get BrokenBarrierError, from their second wait or, if they wake
    # from the first one only after the abort, from that one (as with
    # threading.Barrier).
    try:
        i = barrier.wait()
        if i == 0:
            barrier.abort()
            conn.send('aborted')
            return
        barrier.wait()
        conn.send('passed')
    except Exception as e:
        conn.send(type(e).__name__)


def rlock_state(lock, conn):
    conn.send((lock._semlock._count(), lock._semlock._is_mine(), lock.locked()))


def use_uncontended_and_report_core(lock, sem, conn):
    from gomp import _gomp

    for _ in range(100):
        with lock:
            pass
        sem.release()
        sem.acquire()
    conn.send(_gomp._core_info()['loaded'])


def count_until_stopped(lock, counter, slot, stop_slot):
    """Count under the lock into counter[0] and counter[slot] (both under
    the lock, so they stay in step) until counter[stop_slot] is set."""
    import warnings

    warnings.simplefilter('ignore')  # takeovers from killed holders are expected
    while counter[stop_slot] == 0:
        with lock:
            counter[0] = counter[0] + 1
            counter[slot] = counter[slot] + 1


def hold_repeatedly(lock):
    while True:
        lock.acquire()
        time.sleep(0.001)
        lock.release()
