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

Beyond the standard library, Lock and RLock have locked() (Python 3.14), and
Event and Barrier keep their state next to their lock in the same shared
region (an Event is one lock and its condition's three semaphores; the
stdlib's has a fifth semaphore for the flag)."""

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

    # Random names, one draw each: next(SemLock._rand). Libraries that name
    # their own semaphores (joblib's loky) take theirs from here.
    _rand = iter(lambda: os.urandom(4).hex(), None)

    @classmethod
    def _create(cls, kind, value, maxvalue, ctx, robust=False, tracked=False):
        if ctx is None:
            ctx = context._default_context.get_context()
        is_fork_ctx = ctx.get_start_method() == 'fork'
        # For fork the semaphore needs no name: children inherit the mapping.
        for _attempt in range(100):
            try:
                self = _multiprocessing.SemLock.__new__(cls, kind, value, maxvalue,
                                                         cls._make_name(), is_fork_ctx,
                                                         robust=robust, tracked=tracked)
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
    may release it. If its holder dies, it stays held, as with the standard
    library, and the first waiter to find that out warns once with the dead
    holder's pid; with robust=True a waiter takes it over instead (see the
    module documentation)."""

    def __new__(cls, *, ctx, robust=False):
        return cls._create(SEMAPHORE, 1, 1, ctx, robust=robust, tracked=True)

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
    dies, it stays held as with the standard library (with a warning), or,
    with robust=True, a waiter takes it over (see the module documentation)."""

    def __new__(cls, *, ctx, robust=False):
        return cls._create(RECURSIVE_MUTEX, 1, 1, ctx, robust=robust)

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


# ---- Condition, Event, Barrier ------------------------------------------------------------------

def _context(ctx):
    return context._default_context.get_context() if ctx is None else ctx


def _acquire_n(sem, n):
    for _ in range(n):
        sem.acquire()


def _release_n(sem, n):
    for _ in range(n):
        sem.release()


def _drain(sem):
    """Take every unit sem has, without blocking; return how many there were."""
    taken = 0
    while sem.acquire(False):
        taken += 1
    return taken


def _rebuild_condition(cls, parts):
    self = cls.__new__(cls)
    self._adopt(*parts)
    return self


class Condition(object):
    """A condition variable shared between processes.

    It is its lock and three counting semaphores that only it uses:

    _sleeping_count  one unit for every wait() that began: the waiter
                     releases it while it still holds the lock;
    _woken_count     one unit for every wait() that ended, notified or
                     timed out: the waiter releases it before it takes the
                     lock back;
    _wait_semaphore  wake-up tokens, on which waiters sleep.

    notify() runs with the lock held, so no wait() begins meanwhile. It
    first retires the waits that ended on their own (timed out): a unit off
    each count. _sleeping_count then counts the waiters still asleep; notify
    hands out a token to up to n of them, taking their units off
    _sleeping_count, and waits for as many units of _woken_count. So when
    it returns, the waiters it woke have left their sleep, and a wait() that
    begins later cannot take a token meant for them. A waiter that timed out
    at the same moment may have reported without taking its token; notify
    takes such a token back. With nobody waiting, _sleeping_count -
    _woken_count and _wait_semaphore are both 0 (the CPython suite checks
    this)."""

    def __init__(self, lock=None, *, ctx):
        ctx = _context(ctx)
        self._adopt(lock or ctx.RLock(), ctx.Semaphore(0), ctx.Semaphore(0), ctx.Semaphore(0))

    def _adopt(self, lock, sleeping, woken, tokens):
        self._lock = lock
        self._sleeping_count = sleeping
        self._woken_count = woken
        self._wait_semaphore = tokens
        # The lock's own methods: no Python frame in between.
        self.acquire = lock.acquire
        self.release = lock.release
        self._semlock = lock._semlock

    def __reduce__(self):
        context.assert_spawning(self)
        parts = (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore)
        return _rebuild_condition, (type(self), parts)

    def __repr__(self):
        try:
            waiting = self._sleeping_count.get_value() - self._woken_count.get_value()
        except Exception:
            waiting = 'unknown'
        return '<%s(%s, %s)>' % (type(self).__name__, self._lock, waiting)

    def _held_depth(self, message):
        """How many times the calling thread holds the lock (an RLock may be
        held several times); AssertionError(message) if it does not."""
        held = self._semlock
        if not held._is_mine():
            raise AssertionError(message)
        return held._count()

    # `with cond:` holds the lock.
    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)

    def wait(self, timeout=None):
        """Release the lock, wait until notified or until timeout seconds
        passed, take the lock again; return False on timeout."""
        depth = self._held_depth('must acquire() condition before using wait()')
        self._sleeping_count.release()
        _release_n(self._lock, depth)
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            self._woken_count.release()
            _acquire_n(self._lock, depth)

    def notify(self, n=1):
        """Wake up to n waiters (the caller must hold the lock)."""
        self._held_depth('lock is not owned')
        if not self._sleeping_count.get_value():
            return      # every wait that began was retired already: nobody to wake
        timed_out = _drain(self._woken_count)
        asleep = self._sleeping_count.get_value() - timed_out
        woken = min(n, asleep)
        # Units the semaphores have: these acquisitions do not block.
        _acquire_n(self._sleeping_count, timed_out + woken)
        if woken > 0:
            _release_n(self._wait_semaphore, woken)
            _acquire_n(self._woken_count, woken)
            _drain(self._wait_semaphore)

    def notify_all(self):
        """Wake every waiter."""
        self.notify(sys.maxsize)

    def wait_for(self, predicate, timeout=None):
        """Wait until predicate() is true or timeout seconds passed; return the
        last value of predicate()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return result
            self.wait(left)


class _Word(object):
    """An int attribute kept in the shared region of the object's
    condition's lock (the spare bytes its buffer interface exposes, zeros at
    creation), so every process that shares the object sees one value. Only
    read or written with that lock held."""

    __slots__ = ('_index',)

    def __init__(self, index):
        self._index = index

    def __get__(self, obj, owner=None):
        return self if obj is None else obj._words[self._index]

    def __set__(self, obj, value):
        obj._words[self._index] = value


class _StateInLock(object):
    """Base of Event and Barrier, whose state is _Word attributes: no shared
    memory of their own, and one lock operation covers state and waiting."""

    def _attach(self, cond):
        self._cond = cond
        self._lock = cond._lock   # `with self._lock:` skips the condition's Python __enter__
        self._words = memoryview(cond._lock._semlock).cast('i')

    def __getstate__(self):
        state = dict(self.__dict__)
        del state['_words']       # a view of this process's mapping
        del state['_lock']        # travels inside the condition
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._attach(self._cond)


class Event(_StateInLock):
    """An event flag shared between processes."""

    _flag = _Word(0)      # 1 when set

    def __init__(self, *, ctx):
        ctx = _context(ctx)
        self._attach(ctx.Condition(ctx.Lock()))

    def is_set(self):
        with self._lock:
            return self._flag == 1

    def set(self):
        """Set the flag and wake every waiter."""
        with self._cond:
            self._flag = 1
            self._cond.notify_all()

    def clear(self):
        with self._lock:
            self._flag = 0

    def wait(self, timeout=None):
        """Wait until the flag is set or timeout seconds passed; return the flag."""
        with self._cond:
            if self._flag == 0:
                self._cond.wait(timeout)
            return self._flag == 1

    def __repr__(self):
        return '<%s at %#x %s>' % (type(self).__qualname__, id(self),
                                   'set' if self.is_set() else 'unset')


class Barrier(_StateInLock, threading.Barrier):
    """A barrier shared between processes: threading.Barrier's algorithm on a
    shared Condition, with its state (filling, draining, resetting, broken)
    and count of waiters kept in the shared region of the condition's lock."""

    _state = _Word(0)     # 0 at creation: filling
    _count = _Word(1)

    def __init__(self, parties, action=None, timeout=None, *, ctx):
        ctx = _context(ctx)
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._attach(ctx.Condition(ctx.Lock()))
