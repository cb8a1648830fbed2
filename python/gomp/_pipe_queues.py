"""Queues in the standard library's *shape*: a pipe, two locks, a semaphore
and a feeder thread per process that puts.

gomp's own Queue and SimpleQueue (gomp.queues) move items through a ring in
shared memory and have none of these parts. Some libraries, though, subclass
multiprocessing.queues.Queue or SimpleQueue and override its internals: loky
(bundled in joblib, so under scikit-learn) replaces the feeder thread and
pickles the queue's locks and pipe ends itself; torch wraps the pipe ends. A
ring has nothing for such overrides to hook into, so gomp.queues hands those
subclasses the classes here instead (see queues._QueueType): the same private
parts under the same names, doing the same jobs.

The private names and their roles are facts of the stdlib's layout that such
libraries rely on:

  _reader, _writer       the two ends of a one-way Pipe
  _rlock                 held by a getter while it reads a message
  _wlock                 held by the feeder while it writes a message
  _sem                   a BoundedSemaphore(maxsize): free slots
  _buffer, _notempty     the items put and not yet written, and the condition
                         the feeder sleeps on
  _thread, _jointhread   the feeder thread, and the Finalize that joins it at
                         exit
  _close                 the Finalize that tells the feeder to stop
  _send_bytes, _recv_bytes, _poll   the pipe methods a Queue uses
  _start_thread(), _feed(...), _finalize_join(twr), _finalize_close(buffer,
  notempty), _reset(after_fork=False), _after_fork(), _on_queue_feeder_error()

The objects put travel pickled by the ForkingPickler, so a pipe queue and a
stdlib one put the same bytes on the wire."""

import collections
import errno
import os
import threading
import time
import weakref
from queue import Empty, Full

from . import connection, context
from .queues import _sentinel
from .util import Finalize, debug, info, is_exiting, register_after_fork

__all__ = ['PipeQueue', 'PipeJoinableQueue', 'PipeSimpleQueue']

_ForkingPickler = context.reduction.ForkingPickler

# The maxsize of an "unbounded" queue: the largest value a semaphore can hold.
_SEM_VALUE_MAX = 2147483647


class PipeQueue:
    """multiprocessing.queues.Queue as the stdlib builds it.

    put() appends to a per-process buffer that a daemon feeder thread pickles
    and writes to the pipe (under _wlock); get() reads one message (under
    _rlock). The bounded semaphore _sem counts the free slots: put takes
    one, get gives it back.

    Every process that uses the queue holds the parts named in _SHARED (made
    once by the creator, pickled to the children) and builds its own buffer
    and feeder (_reset)."""

    # The state a child receives, in the order of the pickled tuple (loky
    # reads and writes this tuple itself, with its reducers in the middle).
    _SHARED = (
        '_ignore_epipe',
        '_maxsize',
        '_reader',
        '_writer',
        '_rlock',
        '_wlock',
        '_sem',
        '_opid',
    )

    def __init__(self, maxsize=0, *, ctx):
        bound = maxsize if maxsize > 0 else _SEM_VALUE_MAX
        reader, writer = connection.Pipe(duplex=False)
        self._adopt(
            (
                False,
                bound,
                reader,
                writer,
                ctx.Lock(),
                ctx.Lock(),
                ctx.BoundedSemaphore(bound),
                os.getpid(),
            )
        )
        register_after_fork(self, PipeQueue._after_fork)

    def _adopt(self, state):
        """Take the shared parts (a _SHARED tuple) and start this process's
        half afresh: what the creator and every child do."""
        for name, value in zip(self._SHARED, state):
            setattr(self, name, value)
        self._reset()

    def __getstate__(self):
        context.assert_spawning(self)
        return tuple(getattr(self, name) for name in self._SHARED)

    def __setstate__(self, state):
        self._adopt(state)

    def _after_fork(self):
        debug('PipeQueue._after_fork()')
        self._reset(after_fork=True)

    def _reset(self, after_fork=False):
        """This process's half: no feeder yet, an empty buffer, the pipe
        methods at hand."""
        self._poll = self._reader.poll
        self._recv_bytes = self._reader.recv_bytes
        self._send_bytes = self._writer.send_bytes
        self._closed = self._joincancelled = False
        self._thread = self._jointhread = self._close = None
        self._buffer = collections.deque()
        if not after_fork:
            self._notempty = threading.Condition(threading.Lock())
        else:
            # The condition's lock may have been held by a thread that does
            # not exist in this child.
            self._notempty._at_fork_reinit()

    # -- the public methods --

    def _check_open(self):
        if self._closed:
            raise ValueError('Queue %r is closed' % (self,))

    def put(self, obj, block=True, timeout=None):
        self._check_open()
        if not self._sem.acquire(block, timeout):
            raise Full
        self._hand_to_feeder(obj)

    def _hand_to_feeder(self, obj):
        notempty = self._notempty
        with notempty:
            if self._thread is None:
                # (Before the append: a feeder starts on an empty buffer.)
                self._start_thread()
            notempty.notify()
            self._buffer.append(obj)

    def get(self, block=True, timeout=None):
        self._check_open()
        data = self._read_one(block, timeout)
        self._sem.release()
        return _ForkingPickler.loads(data)

    def _read_one(self, block, timeout):
        """The next message's bytes, read under _rlock; Empty if there is
        none within the time allowed."""
        if block and timeout is None:
            with self._rlock:
                return self._recv_bytes()
        limit = (time.monotonic() + timeout) if block else None
        if not self._rlock.acquire(block, timeout):
            raise Empty
        try:
            left = 0.0 if limit is None else max(0.0, limit - time.monotonic())
            if not self._poll(left):
                raise Empty
            return self._recv_bytes()
        finally:
            self._rlock.release()

    def put_nowait(self, obj):
        return self.put(obj, block=False)

    def get_nowait(self):
        return self.get(block=False)

    def empty(self):
        return not self._poll()

    def qsize(self):
        """Items put and not yet got, by any process (including those still
        in a feeder's buffer)."""
        taken = self._sem._semlock._get_value()
        return self._maxsize - taken

    def full(self):
        return self.qsize() >= self._maxsize

    def close(self):
        """No more puts or gets from this process; its feeder writes what is
        buffered, then closes this process's pipe ends."""
        self._closed = True
        finalizer = self._close
        if finalizer is not None:
            self._close = None
            finalizer()

    def join_thread(self):
        """After close(): wait for this process's feeder to finish."""
        debug('PipeQueue.join_thread()')
        assert self._closed, f'Queue {self!r} not closed'
        joiner = self._jointhread
        if joiner is not None:
            joiner()

    def cancel_join_thread(self):
        """Let this process exit without waiting for its feeder (what it
        still buffers is lost)."""
        debug('PipeQueue.cancel_join_thread()')
        self._joincancelled = True
        joiner = self._jointhread
        if joiner is not None:
            joiner.cancel()

    def _terminate_broken(self):
        # concurrent.futures (3.12+), when its pool broke: nobody reads this
        # queue any more, so the feeder must not wait on the pipe for them.
        self._reader.close()
        self.close()
        if self._jointhread is not None:
            self._jointhread()

    # -- the feeder --

    def _feeder_inputs(self):
        """What the feeder thread is given, by the names of _feed's
        parameters, in their order: libraries that override _feed take
        them positionally."""
        return {
            'buffer': self._buffer,
            'notempty': self._notempty,
            'send_bytes': self._send_bytes,
            'writelock': self._wlock,
            'reader_close': self._reader.close,
            'writer_close': self._writer.close,
            'ignore_epipe': self._ignore_epipe,
            'onerror': self._on_queue_feeder_error,
            'queue_sem': self._sem,
        }

    def _start_thread(self):
        debug('PipeQueue._start_thread()')
        self._buffer.clear()
        feeder = threading.Thread(
            target=type(self)._feed,
            name='QueueFeederThread',
            daemon=True,
            args=tuple(self._feeder_inputs().values()),
        )
        self._thread = feeder
        try:
            feeder.start()
        except BaseException:
            self._thread = None
            raise
        # Exiting waits until the feeder has written everything, unless
        # cancel_join_thread() said not to.
        self._close = Finalize(
            self, PipeQueue._finalize_close, args=(self._buffer, self._notempty), exitpriority=10
        )
        if not self._joincancelled:
            self._jointhread = Finalize(
                feeder, PipeQueue._finalize_join, args=(weakref.ref(feeder),), exitpriority=-5
            )

    @staticmethod
    def _finalize_join(twr):
        # At exit: wait for the feeder (held weakly: it may be gone).
        feeder = twr()
        debug('queue feeder thread: %s', 'joining' if feeder else 'gone')
        if feeder:
            feeder.join()

    @staticmethod
    def _finalize_close(buffer, notempty):
        # The sentinel goes after every item already buffered.
        with notempty:
            buffer.append(_sentinel)
            notempty.notify()

    @staticmethod
    def _feed(
        buffer,
        notempty,
        send_bytes,
        writelock,
        reader_close,
        writer_close,
        ignore_epipe,
        onerror,
        queue_sem,
    ):
        """The feeder thread: take the buffered items in order, pickle each
        outside the lock, write it under the lock; stop at the sentinel."""
        while True:
            with notempty:
                notempty.wait_for(lambda: buffer)
            # popleft is atomic: put() may append meanwhile.
            while buffer:
                obj = buffer.popleft()
                if obj is _sentinel:
                    debug('queue feeder: sentinel, closing the pipe ends')
                    reader_close()
                    writer_close()
                    return
                try:
                    data = _ForkingPickler.dumps(obj)
                    with writelock:
                        send_bytes(data)
                except Exception as e:
                    if ignore_epipe and getattr(e, 'errno', None) == errno.EPIPE:
                        return
                    if is_exiting():
                        # The interpreter is tearing down what the pipe needs.
                        info('error in queue thread: %s', e)
                        return
                    # The item is dropped: give its slot back.
                    queue_sem.release()
                    onerror(e, obj)
                # Drop the references before sleeping again.
                obj = data = None

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        """Called when an item cannot be pickled or written (then dropped).
        Private hook, overridden by concurrent.futures and loky."""
        import traceback

        traceback.print_exc()


class PipeJoinableQueue(PipeQueue):
    """JoinableQueue in the stdlib's shape: _unfinished_tasks is a semaphore
    counting the items not yet marked done, _cond the condition join() waits
    on."""

    _SHARED = PipeQueue._SHARED + ('_cond', '_unfinished_tasks')

    def __init__(self, maxsize=0, *, ctx):
        # Made before the base class adopts the state, which includes them.
        self._cond = ctx.Condition()
        self._unfinished_tasks = ctx.Semaphore(0)
        PipeQueue.__init__(self, maxsize, ctx=ctx)

    def _adopt(self, state):
        if len(state) == len(PipeQueue._SHARED):
            # From PipeQueue.__init__: keep the two made above.
            state = state + (self._cond, self._unfinished_tasks)
        PipeQueue._adopt(self, state)

    def _hand_to_feeder(self, obj):
        # Counted before the item can be seen, so that join() never finds
        # zero while an item is on its way.
        with self._cond:
            self._unfinished_tasks.release()
            PipeQueue._hand_to_feeder(self, obj)

    def _all_done(self):
        return self._unfinished_tasks._semlock._is_zero()

    def task_done(self):
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError('task_done() called too many times')
            if self._all_done():
                self._cond.notify_all()

    def join(self):
        with self._cond:
            self._cond.wait_for(self._all_done)


class PipeSimpleQueue:
    """multiprocessing.queues.SimpleQueue as the stdlib builds it: put()
    pickles and writes under _wlock in the caller's thread, get() reads under
    _rlock. Its instances hold _reader, _writer, _rlock, _wlock and _poll,
    nothing else."""

    _SHARED = ('_reader', '_writer', '_rlock', '_wlock')

    def __init__(self, *, ctx):
        reader, writer = connection.Pipe(duplex=False)
        self._adopt((reader, writer, ctx.Lock(), ctx.Lock()))

    def _adopt(self, state):
        # Not through __setstate__, which subclasses (loky) override with
        # their own, longer state.
        for name, value in zip(self._SHARED, state):
            setattr(self, name, value)
        self._poll = self._reader.poll

    def __getstate__(self):
        context.assert_spawning(self)
        return tuple(getattr(self, name) for name in self._SHARED)

    def __setstate__(self, state):
        self._adopt(state)

    def close(self):
        for end in (self._reader, self._writer):
            end.close()

    def empty(self):
        return not self._poll()

    def put(self, obj):
        data = _ForkingPickler.dumps(obj)
        with self._wlock:
            self._writer.send_bytes(data)

    def get(self):
        with self._rlock:
            data = self._reader.recv_bytes()
        return _ForkingPickler.loads(data)
