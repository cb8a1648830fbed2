"""Queues shared between processes: Queue, JoinableQueue and SimpleQueue.

The items travel through a ring in shared memory (a memfd mapped by every
process that uses the queue), written and read by gomp's Go core with futex
wake-ups: no feeder thread, no pipe, no lock round trips.

- put() pickles the object in the caller's thread (with the ForkingPickler,
  or pickle.dumps for plain atoms, which gives the same bytes) and copies it
  into the ring when it fits. An item that does not fit now waits in this
  process's overflow, which a goroutine feeds into the ring in order: a put
  into an unbounded queue never blocks, like the stdlib's feeder buffer.
  A bounded queue's put waits for a free slot.
- An object that cannot be pickled is handed to the
  _on_queue_feeder_error(e, obj) hook (the stdlib's feeder thread does the
  same), and the queue goes on working.
- At the normal exit of a process, whatever its overflow still holds is fed
  before the process ends, unless cancel_join_thread() was called; close()
  followed by join_thread() waits for it explicitly.
- A bounded queue's put() returns once its item is in the shared ring, so
  that killing the producer afterwards loses nothing: it waits for room in
  the ring as well as for a slot. Two exceptions keep the stdlib's meaning
  of Full (maxsize items) and of a put that nobody consumes: an item that
  would fail with Full while a slot is free (put_nowait(), or the timeout
  ran out), or that waits for room no consumer has made for half a second,
  waits in the process's overflow instead, as in the stdlib's feeder
  buffer.
- get() waits with the GIL released and can be interrupted (Ctrl-C).
- Processes killed at any point (gomp/queue/slots.go has the design): a
  producer killed in put() loses the item it was putting and the items
  waiting in its overflow (as the stdlib's buffer loses them), never an
  item in the ring; the slots of a bounded queue and the task counts of a
  JoinableQueue it held for them come back. A consumer killed in get()
  loses the item only if it had received it: an item is received once the
  consumer has copied it out of the ring and moved the ring's head past it
  (an item larger than half the ring, streamed in fragments: once it took
  the first fragment). A received item counts as got and, in a
  JoinableQueue, stays unfinished until task_done(): a consumer killed
  before task_done() leaves its task to the program, as with the stdlib.
  The others keep using the queue: qsize(), full(), put() and join() are
  right again within milliseconds.
"""

import os
import sys
import types
import weakref
from queue import Empty, Full  # noqa: F401 (multiprocessing.queues.Empty/Full)

from . import _gomp, context
from .util import Finalize, debug, register_after_fork

__all__ = ['Queue', 'SimpleQueue', 'JoinableQueue']

_ForkingPickler = context.reduction.ForkingPickler

# Size of a queue's ring in bytes. Larger items work too: they are streamed
# through the ring. The memfd's pages are committed only once touched: an idle
# queue holds 4 KiB of shared memory (8 KiB after a few small items), a busy
# one the whole ring (68 KiB / 260 KiB / 1028 KiB for rings of 64 KiB /
# 256 KiB / 1 MiB). Smaller rings measured no clear gain and some loss
# (tests_py/bench/NOTES.md, "Queue ring size"): 1 MiB stays.
_RING_BYTES = 1 << 20

# The bound the stdlib reports as the maxsize of an unbounded queue.
_SEM_VALUE_MAX = 2147483647

# Flags of the core's ring (gomp/queue: FlagJoinable).
_FLAG_JOINABLE = 2

# The C side pickles the objects whose pickle cannot depend on the registered
# reducers (None, bool, exact int/float/str/bytes, short tuples and lists of
# those) with pickle.dumps, which gives the same bytes faster; the others go
# through the ForkingPickler.
_dumps = _ForkingPickler.dumps


# ---- the exit ------------------------------------------------------------------------------

_exit_flush_pid = None


def _arm_exit_flush():
    """Make this process's exit wait until its overflow is in the rings."""
    global _exit_flush_pid
    pid = os.getpid()
    if _exit_flush_pid != pid:
        _exit_flush_pid = pid
        Finalize(None, _flush_at_exit, exitpriority=-5)


def _flush_at_exit():
    debug('feeding the queues\' buffered items before exit')
    _gomp.queue_flush_all()
    debug('... done')


def _check_fork_ctx(obj):
    if obj._is_fork_ctx:
        popen = context.get_spawning_popen()
        if popen is not None and getattr(popen, 'method', 'fork') != 'fork':
            raise RuntimeError(
                'A SemLock created in a fork context (here: a %s) is being sent to a %s '
                'child; create it with the context of the Process that uses it.'
                % (type(obj).__name__, popen.method)
            )


def _is_fork(ctx):
    try:
        return ctx.get_start_method() == 'fork'
    except Exception:
        return False


class _End:
    """One end of a queue, standing for the stdlib's private _reader/_writer
    connections (see _Reader and _Writer). It refers to its queue weakly, so
    that a queue is freed (its memfd closed, its ring unmapped) as soon as the
    program drops it."""

    __slots__ = ('_queue', '_flag', '__weakref__')

    def __init__(self, queue, flag):
        self._queue = weakref.ref(queue)
        self._flag = flag  # '_get_closed' or '_put_closed'

    @property
    def closed(self):
        q = self._queue()
        return True if q is None else getattr(q, self._flag)

    def close(self):
        q = self._queue()
        if q is not None and not getattr(q, self._flag):
            setattr(q, self._flag, True)
            self._closing(q)
            q._end_closed()

    def _closing(self, q):
        pass

    def _live(self):
        q = self._queue()
        if q is None or getattr(q, self._flag):
            raise OSError('handle is closed')
        return q


class _Reader(_End):
    """The reader end: what connection.wait() and concurrent.futures use.

    fileno() is a descriptor that is readable while the queue holds an
    item, for wait(), select, poll and selectors: the queue's eventfd, one
    for all its processes, kept level with the ring by the puts and gets
    themselves once some process asked for it (see gomp/queue/watch.go;
    queues nobody watches pay nothing). A put makes it readable before it
    returns, so an item put by a process that then exits is readable before
    the process's sentinel is, as with the stdlib's pipe. recv() takes the
    next item, poll(timeout) tells whether one is there; they and get()
    agree with the descriptor: the get that takes the last item makes it
    unreadable before it returns.

    With several consumers, readiness can be spurious, as it is with the
    stdlib's shared pipe: the descriptor is readable, but another consumer
    takes the item first and recv() waits for the next one."""

    __slots__ = ()

    def fileno(self):
        return self._live()._watch()

    def poll(self, timeout=0.0):
        """Whether an item is in the queue, waiting at most timeout seconds
        (None: until there is one)."""
        return self._live()._poll(timeout)

    def recv(self):
        """Remove and return the next item, waiting for it. OSError when the
        item was cut short by the death of the process putting it (get()
        drops such an item silently)."""
        return self._live()._recv()

    def recv_bytes(self, maxlength=None):
        """Like recv(), but the item's pickle (bytes)."""
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        data = self._live()._recv(False)
        if maxlength is not None and len(data) > maxlength:
            raise OSError("bad message length")
        return data

    def _closing(self, q):
        q._reader_closed()


class _Writer(_End):
    """The writer end: send(obj) and send_bytes(pickle) put an item."""

    __slots__ = ()

    def send(self, obj):
        self._live().put(obj)

    def send_bytes(self, buf, offset=0, size=None):
        """Put an item given as its pickle (as the stdlib's queues send it)."""
        q = self._live()
        m = memoryview(buf).cast('B')
        if offset < 0 or offset > len(m):
            raise ValueError("offset is out of bounds")
        if size is None:
            size = len(m) - offset
        elif size < 0 or offset + size > len(m):
            raise ValueError("size is out of bounds")
        if q._put_bytes(m[offset : offset + size]) == 1:
            q._overflowed()


# ---- subclasses from outside ---------------------------------------------------------------

# Marks the end of a queue's buffered items for a feeder thread. gomp's ring
# queues have no feeder; the stdlib-shaped queues (_pipe_queues) do, and so
# do the subclasses that replace their feeder (loky's), which import this
# object to compare with.
_sentinel = object()

# What a subclass may override and still be a ring queue: the constructor and
# the hook concurrent.futures overrides (the suite's SafeQueue too), besides
# the double-underscore names of any class.
_RING_OVERRIDES = frozenset({'__init__', '_on_queue_feeder_error'})
_STATE_METHODS = frozenset({'__getstate__', '__setstate__', '__reduce__', '__reduce_ex__'})

# The ring classes (filled in once they exist, at the end of the module).
_RING_CLASSES = frozenset()

# The ring classes' twins in the stdlib's shape, by ring class name.
_TWIN_NAMES = {
    'Queue': 'PipeQueue',
    'JoinableQueue': 'PipeJoinableQueue',
    'SimpleQueue': 'PipeSimpleQueue',
}


def _is_gomp_module(modname):
    return modname == 'gomp' or modname.startswith('gomp.')


def _overrides_internals(clsname, namespace):
    """Whether a class body overrides a private part of the stdlib's queue
    design (its feeder, its pipe ends, its locks, its pickled state), which a
    ring queue does not have."""
    own_private = '_%s__' % clsname.lstrip('_')  # name-mangled: the class's own
    for name in namespace:
        if name in _RING_OVERRIDES:
            continue
        if name in _STATE_METHODS:
            return True
        if name.startswith('__') and name.endswith('__'):
            continue
        if name.startswith('_') and not name.startswith(own_private):
            return True
    return False


def _twin(ring_class):
    """The stdlib-shaped class standing for one of the ring classes."""
    from . import _pipe_queues

    return getattr(_pipe_queues, _TWIN_NAMES[ring_class.__name__])


class _QueueType(type):
    """The metaclass of the ring queues: a class defined outside gomp that
    subclasses Queue, JoinableQueue or SimpleQueue and overrides the
    stdlib's queue internals (loky's Queue replaces the feeder thread and
    pickles the locks and pipe ends itself; torch's SimpleQueue wraps the
    pipe ends) is built on the stdlib-shaped twin of that class instead
    (gomp._pipe_queues), which has those parts. Other subclasses (such as
    concurrent.futures' call queue) keep the ring.

    isinstance() and issubclass() count the twins' subclasses as subclasses
    of the ring class they stand for."""

    def __new__(mcls, name, bases, namespace, **kwds):
        if (
            not _is_gomp_module(namespace.get('__module__', ''))
            and any(b in _RING_CLASSES for b in bases)
            and _overrides_internals(name, namespace)
        ):
            bases = tuple(_twin(b) if b in _RING_CLASSES else b for b in bases)
        return super().__new__(mcls, name, bases, namespace, **kwds)

    def __instancecheck__(cls, obj):
        return cls.__subclasscheck__(type(obj))

    def __subclasscheck__(cls, sub):
        if type.__subclasscheck__(cls, sub):
            return True
        # No stdlib-shaped queue exists until that module is loaded.
        if cls in _RING_CLASSES and 'gomp._pipe_queues' in sys.modules:
            return issubclass(sub, _twin(cls))
        return False


def _make_ends(queue):
    """The stdlib's _reader and _writer of a ring queue: closing one closes
    this process's get or put side (see _Reader and _Writer)."""
    queue._reader = _Reader(queue, '_get_closed')
    queue._writer = _Writer(queue, '_put_closed')


def _close_when_both_ends_closed(queue):
    """Called when an end closes: the ring goes once both have."""
    if queue._put_closed and queue._get_closed:
        queue._close_ring()


# ---- Queue ---------------------------------------------------------------------------------


class Queue(_gomp.QueueCore, metaclass=_QueueType):
    """A FIFO queue for any number of producer and consumer processes.

    put(obj, block=True, timeout=None), get(block=True, timeout=None),
    put_nowait(obj), get_nowait(), qsize(), empty() and full() are the C
    methods of the base class."""

    _flags = 0

    def __init__(self, maxsize=0, *, ctx):
        bound = maxsize if maxsize > 0 else 0
        self._maxsize = bound or _SEM_VALUE_MAX
        _gomp.QueueCore.__init__(self, _RING_BYTES, bound, self._flags, _dumps)
        self._opid = os.getpid()
        self._is_fork_ctx = _is_fork(ctx)
        # For concurrent.futures (it sets it; there is no pipe to break here).
        self._ignore_epipe = False
        self._reset()
        register_after_fork(self, Queue._after_fork)

    def __getstate__(self):
        context.assert_spawning(self)
        _check_fork_ctx(self)
        return (
            self._ignore_epipe,
            self._maxsize,
            context.reduction.DupFd(self._fileno()),
            context.reduction.DupFd(self._eventfd()),
            self._opid,
        )

    def __setstate__(self, state):
        self._ignore_epipe, self._maxsize, df, de, self._opid = state
        _gomp.QueueCore.__init__(self, 0, dumps=_dumps, fd=df.detach(), efd=de.detach())
        self._is_fork_ctx = False  # a child may hand it on to its own children
        self._reset()

    def _after_fork(self):
        debug('Queue._after_fork()')
        self._reset()

    def _reset(self):
        self._closed = False
        self._used = False
        self._joincancelled = False
        _make_ends(self)

    _end_closed = _close_when_both_ends_closed

    def _reader_closed(self):
        self._unwatch()
        if self._ignore_epipe:
            # concurrent.futures closes the reader of its call queue when the
            # pool breaks, so that the stdlib's feeder thread, whose readers
            # are gone, gives up (EPIPE) instead of blocking: give up the
            # items that wait in this process's overflow too.
            self._discard()

    def _overflowed(self):
        # Called (once per process) when an item first waits in an overflow.
        _arm_exit_flush()

    def close(self):
        """No more put or get from this process. Items this process put keep
        being fed into the queue (join_thread() waits for that)."""
        self._closed = True
        self._unwatch()
        self._close_ring()

    def _terminate_broken(self):
        """Close the queue on error (concurrent.futures, 3.12+, when its pool
        breaks): the items buffered in this process are dropped rather than
        waited for, since no consumer may be left to make room."""
        self._discard()
        self._reader.close()
        self.close()
        self.join_thread()

    def join_thread(self):
        """Wait until the items this process put are all in the queue (after
        close()). The stdlib joins its feeder thread here."""
        debug('Queue.join_thread()')
        assert self._closed, f"Queue {self!r} not closed"
        if not self._joincancelled:
            self._flush()

    def cancel_join_thread(self):
        """Do not wait at exit for the items this process put to be fed into
        the queue (they are lost if they are still buffered)."""
        debug('Queue.cancel_join_thread()')
        self._joincancelled = True
        self._cancel_join()

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        """Called with the exception when an item cannot be pickled (the item
        is dropped). Private hook, overridden by concurrent.futures."""
        import traceback

        traceback.print_exc()


class JoinableQueue(Queue):
    """A Queue whose consumers report each item done (task_done), so that a
    producer can wait for all of them (join)."""

    _flags = _FLAG_JOINABLE

    def __init__(self, maxsize=0, *, ctx):
        Queue.__init__(self, maxsize, ctx=ctx)

    def task_done(self):
        """Mark one item got from the queue as processed."""
        self._task_done()

    def join(self):
        """Wait until every item put has been marked done."""
        self._join_tasks()


# ---- SimpleQueue ---------------------------------------------------------------------------


class SimpleQueue(_gomp.SimpleQueueCore, metaclass=_QueueType):
    """An unbounded FIFO queue without the Queue extras: put() writes into the
    ring itself, waiting for room when it is full. put(obj), get() and empty()
    are the C methods of the base class."""

    def __init__(self, *, ctx):
        _gomp.SimpleQueueCore.__init__(self, _RING_BYTES, 0, 0, _dumps)
        self._is_fork_ctx = _is_fork(ctx)
        _make_ends(self)

    _end_closed = _close_when_both_ends_closed

    def _reader_closed(self):
        self._unwatch()

    def close(self):
        self._reader.close()
        self._writer.close()

    def __getstate__(self):
        context.assert_spawning(self)
        _check_fork_ctx(self)
        return (
            context.reduction.DupFd(self._fileno()),
            context.reduction.DupFd(self._eventfd()),
            self._get_closed,
            self._put_closed,
        )

    def __setstate__(self, state):
        df, de, rclosed, wclosed = state
        _gomp.SimpleQueueCore.__init__(self, 0, dumps=_dumps, fd=df.detach(), efd=de.detach())
        self._is_fork_ctx = False
        _make_ends(self)
        self._get_closed = rclosed
        self._put_closed = wclosed

    __class_getitem__ = classmethod(types.GenericAlias)


_RING_CLASSES = frozenset({Queue, JoinableQueue, SimpleQueue})
