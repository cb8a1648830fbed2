"""Stands in for CPython's C module _multiprocessing (gomp.install() makes
`import _multiprocessing` return this module).

SemLock(kind, value, maxvalue, name, unlink, *, robust=False) is a semaphore
(kind SEMAPHORE = 1) or recursive lock (kind RECURSIVE_MUTEX = 0) whose state
lives in shared memory: an anonymous shared mapping when unlink is true (the
object is then shared by fork only and its name is None), otherwise a file
named after `name` in a private directory on /dev/shm, which a spawned child
re-attaches to with SemLock._rebuild(handle, kind, maxvalue, name).
sem_unlink(name) removes that file (FileNotFoundError if there is none).

The type is implemented in C (gomp._gomp, pybind/ext/sync.c): acquire() and
release() without contention are one atomic operation on the shared word; a
blocked acquire() sleeps on it (futex) with the GIL released, in slices that
keep it interruptible. See gomp.synchronize for the semantics, including
what happens when the holder of a lock dies (OwnerDiedWarning, decided by
the Go core)."""

from ._gomp import SemLock, sem_unlink

__all__ = ['SemLock', 'sem_unlink', 'flags']

# What CPython's module reports on Linux: sem_open and sem_timedwait exist
# (here: their equivalents), sem_getvalue works (no HAVE_BROKEN_SEM_GETVALUE).
flags = {'HAVE_SEM_OPEN': 1, 'HAVE_SEM_TIMEDWAIT': 1}
