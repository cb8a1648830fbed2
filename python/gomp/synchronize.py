"""Synchronization primitives shared between processes: Lock, RLock,
Semaphore, BoundedSemaphore, Condition, Event and Barrier, with the API and
behaviour of the standard library's multiprocessing.synchronize.

Storage and sharing
    Each Lock, RLock and semaphore is a gomp._multiprocessing.SemLock (these
    classes subclass the C type; `lock._semlock` is the lock itself): a few
    words of shared memory. Objects made for the fork start method live in an
    anonymous shared mapping (a forked child inherits it; they cannot be
    pickled for spawn). Objects made for spawn or forkserver are files in a
    private directory, /dev/shm/gomp-sem-UID/ (or under $GOMP_SHM_DIR): they
    are pickled for a child that is being started (and only then:
    context.assert_spawning), the child opens them again by name, and the
    name is removed when the creating object is garbage collected or its
    process exits; the resource tracker removes it if that process dies
    first. Condition, Event and Barrier are built from these, and are shared
    the same ways.

Waiting
    acquire(), wait() and friends release the GIL while they block, wake up
    at least every 20 ms to run signal handlers (Ctrl-C raises
    KeyboardInterrupt promptly), and honour their timeout across those
    slices to a fraction of a millisecond. An uncontended acquire() and
    release() are one atomic operation each; sleeping and waking are
    futex(2) calls. The Go core is used only to decide whether the owner of
    a Lock or RLock is dead, so a process loads it only when it has waited
    for one longer than a slice.

When the holder of a Lock or RLock dies (beyond the standard library)
    The standard library's locks stay locked forever when a process dies
    holding one (SIGKILL, os._exit, a crash), and every waiter hangs. gomp's
    Lock and RLock record their owner process (pid and start time) in the
    shared word. A process blocked in acquire() checks, about every 20 ms
    after its first slice of waiting, whether that owner still exists; if it
    is gone (or is a zombie, or its pid now belongs to another process), the
    waiter takes the lock over:

      * acquire() returns True: the caller now holds the lock (an RLock with
        a recursion count of 1), and
      * an OwnerDiedWarning (a RuntimeWarning) is issued, naming the dead
        process, because the data the lock protected may be half-updated.

    If warnings are turned into errors (python -W error, or a
    warnings.simplefilter('error', OwnerDiedWarning)), acquire() raises
    OwnerDiedWarning instead, and the lock is released again before the
    exception propagates, so it is left free and consistent for the next
    acquirer. Only the first waiter that notices is told; later acquirers
    see an ordinary lock.

    A Lock may be released by another process than the one that acquired it
    (it is a semaphore, as in the standard library); if the acquirer exits
    before the releaser releases, a waiter may take the lock over in the
    meantime. Counting semaphores (Semaphore, BoundedSemaphore) have no
    owner and behave exactly as the standard library's. A process that
    cannot identify itself (no /proc, or a lock made in another pid
    namespace) is never declared dead: its locks behave like the standard
    library's.

Beyond the standard library, Lock and RLock have locked() (Python 3.14) and
Barrier keeps its state next to its lock in the same shared region."""

import os
import sys
import threading
import time

from . import _multiprocessing
from . import context
from . import process
from . import util
from ._gomp import OwnerDiedWarning
from ._multiprocessing import sem_unlink

__all__ = ['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event', 'Barrier',
           'OwnerDiedWarning']

RECURSIVE_MUTEX, SEMAPHORE = 0, 1
SEM_VALUE_MAX = _multiprocessing.SemLock.SEM_VALUE_MAX


def _owner_name():
    """The name the stdlib shows for the current process/thread in a repr."""
    name = process.current_process().name
    thread = threading.current_thread().name
    if thread != 'MainThread':
        name += '|' + thread
    return name


class SemLock(_multiprocessing.SemLock):
    """Base of the semaphores and locks.

    Unlike the standard library, which wraps a _multiprocessing.SemLock in
    a Python object, these classes are subclasses of the C type itself: so
    acquire(), release() and `with lock:` call the C methods directly, with
    no Python frame in between (`with` is about 4x faster than a Python
    __enter__/__exit__ pair). `_semlock` is the object itself, for code that
    follows the standard library's layout."""

    @classmethod
    def _create(cls, kind, value, maxvalue, ctx, robust=False):
        if ctx is None:
            ctx = context._default_context.get_context()
        is_fork_ctx = ctx.get_start_method() == 'fork'
        # For fork the semaphore needs no name: children inherit the mapping.
        for _attempt in range(100):
            try:
                self = _multiprocessing.SemLock.__new__(cls, kind, value, maxvalue,
                                                         cls._make_name(), is_fork_ctx,
                                                         robust=robust)
            except FileExistsError:
                continue
            break
        else:
            raise FileExistsError('cannot find name for semaphore')
        self._is_fork_ctx = is_fork_ctx
        util.debug('created semlock with handle %s', self.handle)
        if self.name is not None:
            from .resource_tracker import register
            register(self.name, 'semaphore')
            util.Finalize(self, SemLock._cleanup, (self.name,), exitpriority=0)
        # A forked child's count of acquisitions is reset by the C type
        # itself (no register_after_fork needed).
        return self

    @staticmethod
    def _cleanup(name):
        from .resource_tracker import unregister
        sem_unlink(name)
        unregister(name, 'semaphore')

    @staticmethod
    def _make_name():
        return '%s-%s' % (process.current_process()._config['semprefix'], os.urandom(6).hex())

    @property
    def _semlock(self):
        return self

    def __reduce__(self):
        context.assert_spawning(self)
        if self._is_fork_ctx:
            raise RuntimeError('A SemLock created in a fork context is being shared with a '
                               'process in a spawn context. This is not supported. Please use '
                               'the same context to create multiprocessing objects and Process.')
        return (_rebuild, (type(self), (self.handle, self.kind, self.maxvalue, self.name),
                           self.__dict__.copy()))


def _rebuild(cls, state, attrs):
    """Unpickles a SemLock subclass in a child: attaches to it by name."""
    self = cls._rebuild(*state)
    util.debug('recreated blocker with handle %r', state[0])
    self.__dict__.update(attrs)
    # It may be pickled again, for a grandchild.
    self._is_fork_ctx = False
    return self


class Semaphore(SemLock):
    """A counting semaphore shared between processes."""

    def __new__(cls, value=1, *, ctx):
        return cls._create(SEMAPHORE, value, SEM_VALUE_MAX, ctx)

    def get_value(self):
        return self._get_value()

    def __repr__(self):
        try:
            value = self._get_value()
        except Exception:
            value = 'unknown'
        return '<%s(value=%s)>' % (type(self).__name__, value)


class BoundedSemaphore(Semaphore):
    """A semaphore whose release() raises ValueError above its initial value."""

    def __new__(cls, value=1, *, ctx):
        return cls._create(SEMAPHORE, value, value, ctx)

    def __repr__(self):
        try:
            value = self._get_value()
        except Exception:
            value = 'unknown'
        return '<%s(value=%s, maxvalue=%s)>' % (type(self).__name__, value, self.maxvalue)


class Lock(SemLock):
    """A non-recursive lock shared between processes. Any process or thread
    may release it. If its holder dies, a waiter takes it over (see the
    module documentation)."""

    def __new__(cls, *, ctx):
        return cls._create(SEMAPHORE, 1, 1, ctx, robust=True)

    def locked(self):
        """Whether the lock is held (by anyone)."""
        return self._is_zero()

    def __repr__(self):
        try:
            if self._is_mine():
                owner = _owner_name()
            elif self._get_value() == 1:
                owner = 'None'
            elif self._count() > 0:
                owner = 'SomeOtherThread'
            else:
                owner = 'SomeOtherProcess'
        except Exception:
            owner = 'unknown'
        return '<%s(owner=%s)>' % (type(self).__name__, owner)


class RLock(SemLock):
    """A recursive lock shared between processes: the thread that holds it may
    acquire it again, and must release it as many times. If its holder
    dies, a waiter takes it over (see the module documentation)."""

    def __new__(cls, *, ctx):
        return cls._create(RECURSIVE_MUTEX, 1, 1, ctx)

    def locked(self):
        """Whether the lock is held (by anyone)."""
        return self._is_zero()

    def __repr__(self):
        try:
            if self._is_mine():
                owner, count = _owner_name(), self._count()
            elif self._get_value() == 1:
                owner, count = 'None', 0
            elif self._count() > 0:
                owner, count = 'SomeOtherThread', 'nonzero'
            else:
                owner, count = 'SomeOtherProcess', 'nonzero'
        except Exception:
            owner, count = 'unknown', 'unknown'
        return '<%s(%s, %s)>' % (type(self).__name__, owner, count)


class Condition(object):
    """A condition variable shared between processes.

    Made of its lock and three counting semaphores: a waiter announces
    itself in _sleeping_count, sleeps on _wait_semaphore, and reports in
    _woken_count when it wakes (notified or timed out). notify(n) first
    matches the reports of waiters that timed out against their
    announcements, then hands out up to n tokens on _wait_semaphore, waits
    until each woken waiter has reported, and takes back the tokens that a
    waiter timing out at the same moment left unused. So when nobody waits,
    _sleeping_count - _woken_count and _wait_semaphore are both 0 (the
    CPython suite checks that invariant)."""

    def __init__(self, lock=None, *, ctx):
        if ctx is None:
            ctx = context._default_context.get_context()
        self._lock = lock or ctx.RLock()
        self._sleeping_count = ctx.Semaphore(0)
        self._woken_count = ctx.Semaphore(0)
        self._wait_semaphore = ctx.Semaphore(0)
        self._make_methods()

    def __getstate__(self):
        context.assert_spawning(self)
        return (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore)

    def __setstate__(self, state):
        self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore = state
        self._make_methods()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def _make_methods(self):
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._semlock = self._lock._semlock  # looked up once: wait/notify use it

    def __repr__(self):
        try:
            waiters = (self._sleeping_count._semlock._get_value() -
                       self._woken_count._semlock._get_value())
        except Exception:
            waiters = 'unknown'
        return '<%s(%s, %s)>' % (type(self).__name__, self._lock, waiters)

    def wait(self, timeout=None):
        """Release the lock, wait until notified or until timeout seconds
        passed, take the lock again; return False on timeout."""
        semlock = self._semlock
        if not semlock._is_mine():
            raise AssertionError('must acquire() condition before using wait()')
        self._sleeping_count.release()
        depth = semlock._count()  # an RLock may be held several times
        for _ in range(depth):
            self._lock.release()
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            self._woken_count.release()
            for _ in range(depth):
                self._lock.acquire()

    def notify(self, n=1):
        """Wake up to n waiters (the caller must hold the lock)."""
        if not self._semlock._is_mine():
            raise AssertionError('lock is not owned')
        if self._wait_semaphore.acquire(False):
            raise AssertionError('notify: Should not have been able to acquire _wait_semaphore')
        # Waiters that timed out reported in _woken_count without being
        # handed a token: cancel their announcements.
        while self._woken_count.acquire(False):
            if not self._sleeping_count.acquire(False):
                raise AssertionError('notify: Bug in sleeping_count.acquire'
                                     '- res should not be False')
        woken = 0
        while woken < n and self._sleeping_count.acquire(False):
            self._wait_semaphore.release()
            woken += 1
        if woken:
            for _ in range(woken):
                self._woken_count.acquire()
            # A waiter that timed out just as we released may have left its
            # token: take such tokens back.
            while self._wait_semaphore.acquire(False):
                pass

    def notify_all(self):
        """Wake every waiter."""
        self.notify(n=sys.maxsize)

    def wait_for(self, predicate, timeout=None):
        """Wait until predicate() is true or timeout seconds passed; return the
        last value of predicate()."""
        result = predicate()
        if result:
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        wait_time = None
        while not result:
            if deadline is not None:
                wait_time = deadline - time.monotonic()
                if wait_time <= 0:
                    break
            self.wait(wait_time)
            result = predicate()
        return result


class Event(object):
    """An event flag shared between processes."""

    def __init__(self, *, ctx):
        if ctx is None:
            ctx = context._default_context.get_context()
        self._cond = ctx.Condition(ctx.Lock())
        self._flag = ctx.Semaphore(0)  # value 1 when set

    def is_set(self):
        with self._cond:
            return self._flag.get_value() != 0

    def set(self):
        with self._cond:
            if self._flag.get_value() == 0:
                self._flag.release()
            self._cond.notify_all()

    def clear(self):
        with self._cond:
            self._flag.acquire(False)

    def wait(self, timeout=None):
        """Wait until the flag is set or timeout seconds passed; return the flag."""
        with self._cond:
            if self._flag.get_value() == 0:
                self._cond.wait(timeout)
            return self._flag.get_value() != 0

    def __repr__(self):
        state = 'set' if self.is_set() else 'unset'
        return f"<{type(self).__qualname__} at {id(self):#x} {state}>"


class Barrier(threading.Barrier):
    """A barrier shared between processes: threading.Barrier's algorithm on a
    shared Condition, with its state and count kept in the spare bytes of
    the shared region of the condition's lock."""

    def __init__(self, parties, action=None, timeout=None, *, ctx):
        if ctx is None:
            ctx = context._default_context.get_context()
        self.__setstate__((parties, action, timeout, ctx.Condition(ctx.Lock())))
        self._state = 0   # filling
        self._count = 0

    def __getstate__(self):
        return (self._parties, self._action, self._timeout, self._cond)

    def __setstate__(self, state):
        self._parties, self._action, self._timeout, self._cond = state
        self._array = memoryview(self._cond._lock._semlock).cast('i')

    @property
    def _state(self):
        return self._array[0]

    @_state.setter
    def _state(self, value):
        self._array[0] = value

    @property
    def _count(self):
        return self._array[1]

    @_count.setter
    def _count(self, value):
        self._array[1] = value
