"""Synchronization primitives shared between processes: Lock, RLock,
Semaphore, BoundedSemaphore, Condition, Event and Barrier, with the API and
behaviour of the standard library's multiprocessing.synchronize.

Storage and sharing
    Each Lock, RLock and semaphore is a gomp._multiprocessing.SemLock (these
    classes subclass the C type; `lock._semlock` is the lock itself): a few
    words of shared memory. Objects made for the fork start method live in an
    anonymous shared mapping (a forked child inherits it; they cannot be
    pickled for spawn). Objects made for spawn or forkserver are files
    /dev/shm/gomp-sem.NAME (or in $GOMP_SHM_DIR) with random names, made
    with O_EXCL and mode 0600 and checked for owner and mode when opened, so
    another local user can neither take a name first nor plant a file: they
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

When a waiter dies (beyond the standard library)
    A process killed while waiting in Condition.wait(), Event.wait() or
    Barrier.wait() does not hang the others: Condition keeps a table of its
    waiters, so notify() and notify_all() (and Event.set()) never wait for a
    waiter to acknowledge, and notify(n) passes over a waiter whose process
    is gone (see Condition). Barrier honours the timeout in every wait and
    gives up on a party that died: BrokenBarrierError if it died while the
    barrier filled, and the next round goes on if it died after the barrier
    tripped (see Barrier). The standard library's Condition, Event and
    Barrier hang for good in these cases, timeouts notwithstanding.

Beyond the standard library, Lock and RLock have locked() (Python 3.14), and
Event and Barrier keep their state next to their lock in the same shared
region (an Event is one lock and its condition's table of waiters; the
stdlib's has five semaphores)."""

import os
import sys
import threading
import time

from . import _multiprocessing, context, process, util
from ._gomp import OwnerDiedWarning
from ._multiprocessing import sem_unlink

__all__ = [
    'Lock',
    'RLock',
    'Semaphore',
    'BoundedSemaphore',
    'Condition',
    'Event',
    'Barrier',
    'OwnerDiedWarning',
]

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
    no Python frame in between (bench_sync.py measures `with lock:`).
    `_semlock` is the object itself, for code that
    follows the standard library's layout."""

    # Random names, one draw each: next(SemLock._rand). Libraries that name
    # their own semaphores (joblib's loky) take theirs from here.
    _rand = iter(lambda: os.urandom(4).hex(), None)

    @classmethod
    def _create(cls, kind, value, maxvalue, ctx, robust=False, tracked=False, user_size=64):
        if ctx is None:
            ctx = context._default_context.get_context()
        is_fork_ctx = ctx.get_start_method() == 'fork'
        # For fork the semaphore needs no name: children inherit the mapping.
        for _attempt in range(100):
            try:
                self = _multiprocessing.SemLock.__new__(
                    cls,
                    kind,
                    value,
                    maxvalue,
                    cls._make_name(),
                    is_fork_ctx,
                    robust=robust,
                    tracked=tracked,
                    user_size=user_size,
                )
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
            raise RuntimeError(
                'A SemLock created in a fork context is being shared with a '
                'process in a spawn context. This is not supported. Please use '
                'the same context to create multiprocessing objects and Process.'
            )
        return (
            _rebuild,
            (type(self), (self.handle, self.kind, self.maxvalue, self.name), self.__dict__.copy()),
        )


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


def _rebuild_condition(cls, parts):
    self = cls.__new__(cls)
    self._adopt(*parts)
    return self


# The table of a Condition's waiters: 32-bit words in the shared user region
# of a SemLock of its own (_WaiterTable). Words 0..3 are the header, then
# _SLOT_WORDS words per slot.
_HIGH = 0  # slots 0..HIGH-1 may be in use
_TICKET = 1  # the next ticket (wraps at 2**32): the order of waits
_OCCUPIED = 2  # slots in use
_REAPED_AT = 3  # when a periodic _reap last ran (CLOCK_MONOTONIC ms, wraps)
_HEADER_WORDS = 4
_SLOT_WORDS = 4  # state, owner id, ticket, tag
_FREE, _WAITING, _NOTIFIED = 0, 1, 2
_MASK = 0xFFFFFFFF
_TABLE_BYTES = 16384 - 64  # the whole region is 16 KiB (64 bytes of header): 1019 slots


class _WaiterTable(SemLock):
    """The shared memory of a Condition's table of waiters (a SemLock only
    for its storage, its name and its pickling: its value stays 0). Pages of
    it that no slot reaches are never touched, so they cost no memory."""

    def __new__(cls, *, ctx):
        return cls._create(SEMAPHORE, 0, 1, ctx, user_size=_TABLE_BYTES)

    def get_value(self):
        return self._get_value()


class _Reading:
    """A read-only stand-in with get_value(), for the stdlib's layout of a
    Condition (_sleeping_count, _woken_count), which tests inspect."""

    __slots__ = ('get_value',)

    def __init__(self, get_value):
        self.get_value = get_value


class Condition:
    """A condition variable shared between processes.

    It is its lock and a table of waiters in shared memory (_WaiterTable):
    one slot per wait() in progress, holding its state (waiting, notified),
    the owner id of its process (pid and start time, as a Lock records its
    owner), a ticket giving the order of the waits, and a tag (Barrier uses
    it). The table is read and written only with the lock held.

    wait() takes a free slot, releases the lock and sleeps on the slot's
    state word (a futex) until a notifier changes it or the timeout passes;
    then it takes the lock back, reads whether it was notified, and frees
    the slot. notify(n) marks the n oldest waiting slots notified and wakes
    each. It never waits for the woken to acknowledge, so it cannot hang on
    a waiter that was killed, and a wait() that begins later cannot take a
    notification meant for an earlier waiter (it has a slot of its own). A
    waiter that times out at the moment it is notified returns True: the
    notification was its and is not lost.

    A waiter killed while waiting leaves its slot behind. notify(n) with
    more waiters than n checks that the waiters it chose are alive (the Go
    core judges, as for a Lock's owner) and gives a dead one's notification
    to the next waiter; the slot of a dead waiter is freed then, or when the
    table is full. Barrier asks the table for dead waiters (_reap) to give
    up on a party that died. The standard library's Condition instead waits
    in notify() for each woken waiter to acknowledge, and hangs for good
    when one was killed."""

    def __init__(self, lock=None, *, ctx):
        ctx = _context(ctx)
        self._adopt(lock or ctx.RLock(), _WaiterTable(ctx=ctx))

    def _adopt(self, lock, table):
        self._lock = lock
        self._table = table
        self._words = memoryview(table).cast('I')
        self._nslots = (len(self._words) - _HEADER_WORDS) // _SLOT_WORDS
        # The lock's own methods: no Python frame in between.
        self.acquire = lock.acquire
        self.release = lock.release
        self._semlock = lock._semlock

    def __reduce__(self):
        context.assert_spawning(self)
        return _rebuild_condition, (type(self), (self._lock, self._table))

    # The stdlib's layout: waits that began minus waits that ended, and a
    # semaphore of wake-up tokens (always 0 here). The CPython suite checks
    # both are 0 when nobody waits.
    @property
    def _sleeping_count(self):
        return _Reading(lambda: self._words[_OCCUPIED])

    @property
    def _woken_count(self):
        return _Reading(lambda: 0)

    @property
    def _wait_semaphore(self):
        return self._table

    def __repr__(self):
        try:
            waiting = self._words[_OCCUPIED]
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

    # ---- the table (the lock held) ----

    def _take_slot(self, tag):
        """A free slot filled for a wait of this process, or None if the
        table is full even after freeing the slots of dead waiters."""
        w = self._words
        for attempt in (0, 1):
            high = w[_HIGH]
            i = 0
            while i < high and w[_HEADER_WORDS + _SLOT_WORDS * i] != _FREE:
                i += 1
            if i == high:
                if high == self._nslots:
                    if attempt == 0:
                        self._reap()
                    continue
                w[_HIGH] = high + 1
            at = _HEADER_WORDS + _SLOT_WORDS * i
            w[at + 1] = self._table._owner_token()
            w[at + 2] = w[_TICKET]
            w[_TICKET] = (w[_TICKET] + 1) & _MASK
            w[at + 3] = tag
            w[at] = _WAITING
            w[_OCCUPIED] += 1
            return at
        return None

    def _free_slot(self, at):
        """Frees the slot at word `at`; returns its state before."""
        w = self._words
        state = w[at]
        w[at] = _FREE
        w[_OCCUPIED] -= 1
        high = w[_HIGH]
        while high and w[_HEADER_WORDS + _SLOT_WORDS * (high - 1)] == _FREE:
            high -= 1
        w[_HIGH] = high
        return state

    def _slots(self, state):
        """The word offsets of the slots in that state."""
        w = self._words
        return [
            at
            for at in range(_HEADER_WORDS, _HEADER_WORDS + _SLOT_WORDS * w[_HIGH], _SLOT_WORDS)
            if w[at] == state
        ]

    def _tagged(self, tag):
        """How many slots hold a wait with that tag (waiting or notified)."""
        w = self._words
        return sum(
            1
            for at in range(_HEADER_WORDS, _HEADER_WORDS + _SLOT_WORDS * w[_HIGH], _SLOT_WORDS)
            if w[at] != _FREE and w[at + 3] == tag
        )

    def _reap(self, every=None):
        """Frees the slots of waiters whose process is gone; returns the
        (state, tag) pair of each. With every (seconds), does nothing if any
        process sharing the table did it less than that long ago: waiters
        that look for dead ones periodically share the work."""
        w = self._words
        if every is not None:
            # CLOCK_MONOTONIC is one clock for every process of the machine.
            now = int(time.monotonic() * 1000) & _MASK
            if (now - w[_REAPED_AT]) & _MASK < every * 1000:
                return []
            w[_REAPED_AT] = now
        me = self._table._owner_token()
        dead = []
        for at in range(_HEADER_WORDS, _HEADER_WORDS + _SLOT_WORDS * w[_HIGH], _SLOT_WORDS):
            if w[at] != _FREE and w[at + 1] != me and not self._table._owner_alive(w[at + 1]):
                dead.append((w[at], w[at + 3]))
                self._free_slot(at)
        return dead

    # ---- the API ----

    def wait(self, timeout=None):
        """Release the lock, wait until notified or until timeout seconds
        passed, take the lock again; return False on timeout."""
        return self._wait_tagged(timeout, 0)

    def _wait_tagged(self, timeout, tag):
        depth = self._held_depth('must acquire() condition before using wait()')
        at = self._take_slot(tag)
        if at is None:
            # The table is full of live waiters (a thousand): try again for
            # a slot every few milliseconds, within the timeout.
            end = None if timeout is None else time.monotonic() + timeout
            while at is None:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                _release_n(self._lock, depth)
                try:
                    time.sleep(0.005 if left is None else min(0.005, left))
                finally:
                    _acquire_n(self._lock, depth)
                at = self._take_slot(tag)
            timeout = None if end is None else max(0, end - time.monotonic())
        _release_n(self._lock, depth)
        try:
            self._table._wait_word(at, _WAITING, timeout)
        finally:
            _acquire_n(self._lock, depth)
            notified = self._free_slot(at) == _NOTIFIED
        return notified

    def notify(self, n=1):
        """Wake up to n waiters (the caller must hold the lock)."""
        self._held_depth('lock is not owned')
        if not n > 0 or not self._words[_OCCUPIED]:
            return
        w = self._words
        waiting = self._slots(_WAITING)
        if len(waiting) > n:
            # The oldest first (the largest distance back from the next
            # ticket); a waiter that was killed gets no notification: its
            # slot is freed and the next one gets it.
            ticket = w[_TICKET]
            waiting.sort(key=lambda at: (ticket - w[at + 2]) & _MASK, reverse=True)
            chosen = []
            for at in waiting:
                if len(chosen) >= n:
                    break
                if self._table._owner_alive(w[at + 1]):
                    chosen.append(at)
                else:
                    self._free_slot(at)
            waiting = chosen
        for at in waiting:
            w[at] = _NOTIFIED
            self._table._wake_word(at, 1)

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


class _Word:
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


class _StateInLock:
    """Base of Event and Barrier, whose state is _Word attributes: no shared
    memory of their own, and one lock operation covers state and waiting."""

    def _attach(self, cond):
        self._cond = cond
        self._lock = cond._lock  # `with self._lock:` skips the condition's Python __enter__
        self._words = memoryview(cond._lock._semlock).cast('i')

    def __getstate__(self):
        state = dict(self.__dict__)
        del state['_words']  # a view of this process's mapping
        del state['_lock']  # travels inside the condition
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._attach(self._cond)


class Event(_StateInLock):
    """An event flag shared between processes."""

    _flag = _Word(0)  # 1 when set

    def __init__(self, *, ctx):
        ctx = _context(ctx)
        self._attach(ctx.Condition(ctx.Lock(robust=True)))

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
        return '<%s at %#x %s>' % (
            type(self).__qualname__,
            id(self),
            'set' if self.is_set() else 'unset',
        )


class Barrier(_StateInLock, threading.Barrier):
    """A barrier shared between processes: threading.Barrier's algorithm on a
    shared Condition, with its state (filling, draining, resetting, broken)
    and count of waiters kept in the shared region of the condition's lock.

    Unlike threading.Barrier (and the standard library's multiprocessing
    Barrier), a party that dies while waiting does not hang the others.
    Every wait honours the timeout, also the wait for the previous round to
    drain (which threading.Barrier does without one), and a waiting party
    looks for dead parties in the condition's table of waiters every
    _REAP_INTERVAL seconds: a party that died while the barrier was filling
    breaks it (the others get BrokenBarrierError, as when a wait times out);
    one that died after the barrier tripped is only taken off the count, so
    that the next round can begin."""

    _state = _Word(0)  # 0 at creation: filling
    _count = _Word(1)

    # Tags of the waits in the condition's table: a wait to enter (not yet
    # counted) and a wait for the barrier to trip (counted in _count).
    _ENTERING, _COUNTED = 0, 1
    _REAP_INTERVAL = 0.5

    def __init__(self, parties, action=None, timeout=None, *, ctx):
        ctx = _context(ctx)
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._attach(ctx.Condition(ctx.Lock(robust=True)))

    def wait(self, timeout=None):
        """Wait until `parties` parties have called wait(); return this
        party's index (0 to parties-1). BrokenBarrierError if the barrier is
        broken or reset meanwhile, or if timeout (default: the barrier's)
        passes first, which breaks it."""
        if timeout is None:
            timeout = self._timeout
        start = time.monotonic()
        with self._cond:
            self._enter_within(start, timeout)
            index = self._count
            self._count += 1
            try:
                if index + 1 == self._parties:
                    self._release()
                else:
                    if not self._sleep(lambda: self._state != 0, self._COUNTED, start, timeout):
                        self._break()
                        raise threading.BrokenBarrierError
                    if self._state < 0:
                        raise threading.BrokenBarrierError
                return index
            finally:
                self._count -= 1
                self._exit()

    def _enter_within(self, start, timeout):
        """threading.Barrier._enter with the timeout: wait while the barrier
        drains or resets, then refuse a broken one."""
        # Not reaping here: a party that died asleep still counts until the
        # waits look for the dead (a barrier it arrived at may trip without it).
        self._give_up_on_dead(mine=0, reap=False)
        if not self._sleep(lambda: self._state not in (-1, 1), self._ENTERING, start, timeout):
            self._break()
            raise threading.BrokenBarrierError
        if self._state < 0:
            raise threading.BrokenBarrierError

    def _sleep(self, predicate, tag, start, timeout):
        """Waits (the lock held) until predicate() is true; False if timeout
        seconds since start passed first. Between slices of _REAP_INTERVAL,
        gives up on parties that died."""
        if predicate():
            return True
        # As threading.Barrier, the deadline is computed only when a wait
        # is needed: a timeout of a wrong type is a TypeError only then.
        end = None if timeout is None else start + timeout
        mine = 1 if tag == self._COUNTED else 0
        while True:
            left = self._REAP_INTERVAL
            if end is not None:
                left = min(left, end - time.monotonic())
                if left <= 0:
                    self._give_up_on_dead(mine=mine)
                    return predicate()
            self._cond._wait_tagged(left, tag)
            if predicate():
                return True
            self._give_up_on_dead(self._REAP_INTERVAL, mine)

    def _give_up_on_dead(self, every=None, mine=0, reap=True):
        """Takes the parties that died off the count; breaks the barrier if
        one died while it was filling (the others could only hang or trip
        without it). The caller holds the lock; mine: whether it is counted
        itself (it has no slot in the table at this moment).

        Every counted party other than the lock's holder sleeps in a slot of
        the condition's table tagged _COUNTED, so the count beyond those
        slots is parties that are gone: those that died asleep (their slots
        are freed here; with every, at most once per `every` seconds among
        all the parties, Condition._reap), those whose slot a notify or a
        full table's reap freed, and one that died holding the lock between
        counting itself and sleeping, or between waking and leaving (the
        lock is robust: the next party takes it over). reap=False: only the
        last two kinds."""
        reaped = reap and sum(1 for _state, tag in self._cond._reap(every) if tag == self._COUNTED)
        if self._parties > self._cond._nslots:
            # More parties than slots: a live party may be waiting for a
            # slot outside the table. Only the reaped ones are known gone.
            gone = reaped
        else:
            gone = self._count - mine - self._cond._tagged(self._COUNTED)
        if gone <= 0:
            return
        self._count -= gone
        if self._state == 0:
            self._break()
        else:
            self._exit()
