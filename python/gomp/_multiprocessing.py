"""Stands in for CPython's C module _multiprocessing (gomp.install() makes
`import _multiprocessing` return this module).

SemLock(kind, value, maxvalue, name, unlink, *, tracked=False, robust=False)
is a semaphore (kind SEMAPHORE = 1) or recursive lock (kind RECURSIVE_MUTEX =
0) whose state lives in shared memory: an anonymous shared mapping when unlink
is true (the object is then shared by fork only and its name is None),
otherwise a file /dev/shm/gomp-sem.NAME (made with O_EXCL, mode 0600), which
a spawned child re-attaches to with SemLock._rebuild(handle, kind, maxvalue,
name). sem_unlink(name) removes that file (FileNotFoundError if there is
none).

A recursive lock, and a SEMAPHORE with maxvalue 1 made with tracked=True,
records its owner. If the owner dies holding it, it stays held (as the
stdlib's does) and the first waiter in each process to find the owner dead
warns once (OwnerDiedWarning, with the dead owner's pid). robust=True (which
implies tracked) makes it a robust mutex: that waiter takes the lock over
instead, and is warned so that it can repair what the lock protects. The
flag lives in the shared memory, so every process agrees on it; `robust`
tells it.

The type is implemented in C (gomp._gomp, pybind/ext/sync.c): acquire() and
release() without contention are one atomic operation on the shared word; a
blocked acquire() sleeps on it (futex) with the GIL released, in slices that
keep it interruptible. Whether an owner is dead is decided by the Go core
(gomp/semlock)."""

from ._gomp import SemLock, sem_unlink

__all__ = ['SemLock', 'sem_unlink', 'flags']

# What CPython's module reports on Linux: sem_open and sem_timedwait exist
# (here: their equivalents), sem_getvalue works (no HAVE_BROKEN_SEM_GETVALUE).
flags = {'HAVE_SEM_OPEN': 1, 'HAVE_SEM_TIMEDWAIT': 1}
