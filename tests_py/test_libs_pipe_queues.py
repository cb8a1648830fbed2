"""Subclasses of multiprocessing.queues.Queue / SimpleQueue defined outside
gomp that override the stdlib's queue internals get a queue of the stdlib's
shape (gomp._pipe_queues: pipe, locks, feeder thread); the others, and
gomp's own Queue, keep the ring (issue 15)."""

import os
import pickle
import threading

import pytest

import gomp
from gomp import queues
from gomp._pipe_queues import PipeJoinableQueue, PipeQueue, PipeSimpleQueue

METHODS = ["fork", "spawn"]


class FeederQueue(queues.Queue):
    """loky's pattern: its own constructor, state and feeder start."""

    def __init__(self, maxsize=0, reducers=None, ctx=None):
        super().__init__(maxsize=maxsize, ctx=ctx)
        self._reducers = reducers
        self.started = 0

    def __getstate__(self):
        return super().__getstate__() + (self._reducers,)

    def __setstate__(self, state):
        super().__setstate__(state[:-1])
        self._reducers = state[-1]
        self.started = 0

    def _start_thread(self):
        self.started += 1
        super()._start_thread()


class HookOnlyQueue(queues.Queue):
    """concurrent.futures' pattern: only the feeder-error hook."""

    def __init__(self, maxsize=0, *, ctx):
        super().__init__(maxsize, ctx=ctx)
        self.errors = []

    def _on_queue_feeder_error(self, e, obj):
        self.errors.append(e)


class WrappedSimpleQueue(queues.SimpleQueue):
    """loky's pattern: its own put and state."""

    def __init__(self, reducers=None, ctx=None):
        super().__init__(ctx=ctx)
        self._reducers = reducers

    def __getstate__(self):
        return super().__getstate__() + (self._reducers,)

    def __setstate__(self, state):
        (self._reader, self._writer, self._rlock, self._wlock, self._reducers) = state

    def put(self, obj):
        with self._wlock:
            self._writer.send_bytes(pickle.dumps((self._reducers, obj)))


class WithPrivateState(queues.JoinableQueue):
    """A module outside gomp overriding the stdlib's feeder."""

    def _feed(*args):  # the stdlib's feeder
        return PipeJoinableQueue._feed(*args)


def put_from_child(q, items):
    for item in items:
        q.put(item)
    q.close()
    q.join_thread()


def check_child_state(q, conn):
    conn.send((type(q).__name__, q._reducers, q._maxsize, q.started))
    q.put("from child")
    q.close()
    q.join_thread()


def test_class_choice():
    ctx = gomp.get_context("fork")
    assert issubclass(FeederQueue, PipeQueue) and not issubclass(
        FeederQueue, gomp.queues._gomp.QueueCore
    )
    assert issubclass(HookOnlyQueue, gomp.queues._gomp.QueueCore)
    assert issubclass(WrappedSimpleQueue, PipeSimpleQueue)
    assert issubclass(WithPrivateState, PipeJoinableQueue)
    # Still subclasses of what they subclassed, for isinstance checks such
    # as the suite's `isinstance(q, multiprocessing.queues.Queue)`.
    assert issubclass(FeederQueue, queues.Queue)
    assert isinstance(FeederQueue(ctx=ctx), queues.Queue)
    assert isinstance(WrappedSimpleQueue(ctx=ctx), queues.SimpleQueue)
    assert isinstance(WithPrivateState(ctx=ctx), queues.JoinableQueue)
    assert not isinstance(PipeSimpleQueue(ctx=ctx), queues.Queue)
    assert not isinstance(object(), queues.Queue)
    # gomp's own queues are the ring.
    assert type(ctx.Queue()) is queues.Queue
    assert type(ctx.SimpleQueue()) is queues.SimpleQueue


@pytest.mark.parametrize("method", METHODS)
def test_feeder_queue_across_processes(method):
    ctx = gomp.get_context(method)
    q = FeederQueue(maxsize=50, reducers={"r": 1}, ctx=ctx)
    items = [1, "two", (3, [4.0]), b"x" * 100000, None]
    p = ctx.Process(target=put_from_child, args=(q, items))
    p.start()
    got = [q.get(timeout=60) for _ in items]
    p.join(60)
    assert got == items and p.exitcode == 0
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=check_child_state, args=(q, w))
    p.start()
    assert r.recv() == ("FeederQueue", {"r": 1}, 50, 0)
    assert q.get(timeout=60) == "from child"
    p.join(60)
    q.put("here")
    assert q.get(timeout=10) == "here" and q.started == 1


def test_feeder_queue_methods():
    ctx = gomp.get_context("fork")
    q = FeederQueue(maxsize=2, ctx=ctx)
    assert q.empty() and q.qsize() == 0 and not q.full()
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queues.Full):
        q.put(3, timeout=0.01)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(queues.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queues.Empty):
        q.get_nowait()
    q.close()
    with pytest.raises(ValueError):
        q.put(1)
    q.join_thread()
    with pytest.raises(RuntimeError):
        pickle.dumps(q)  # only to a child being started


def test_unpicklable_item_goes_to_the_hook_and_the_queue_goes_on():
    ctx = gomp.get_context("fork")
    seen = []

    class Hooked(FeederQueue):
        def _on_queue_feeder_error(self, e, obj):
            seen.append((type(e), obj))

    q = Hooked(maxsize=1, ctx=ctx)
    lock = threading.Lock()
    q.put(lock)
    q.put("next")  # the failed item's slot was given back
    assert q.get(timeout=30) == "next"
    assert seen == [(TypeError, lock)]


def test_hook_only_subclass_keeps_the_ring():
    q = HookOnlyQueue(ctx=gomp.get_context("fork"))
    q.put(threading.Lock())
    q.put(1)
    assert q.get(timeout=30) == 1 and len(q.errors) == 1


@pytest.mark.parametrize("method", METHODS)
def test_joinable_twin(method):
    ctx = gomp.get_context(method)
    q = WithPrivateState(ctx=ctx)
    p = ctx.Process(target=put_from_child, args=(q, list(range(5))))
    p.start()
    assert [q.get(timeout=60) for _ in range(5)] == list(range(5))
    for _ in range(5):
        q.task_done()
    q.join()
    with pytest.raises(ValueError):
        q.task_done()
    p.join(60)


@pytest.mark.parametrize("method", METHODS)
def test_simple_queue_twin(method):
    ctx = gomp.get_context(method)
    q = WrappedSimpleQueue(reducers="r", ctx=ctx)
    assert q.empty()
    p = ctx.Process(target=put_from_child_simple, args=(q, ["a", 2]))
    p.start()
    assert [q.get(), q.get()] == [("r", "a"), ("r", 2)]
    p.join(60)
    assert p.exitcode == 0
    q.close()
    assert q._reader.closed and q._writer.closed


def put_from_child_simple(q, items):
    for item in items:
        q.put(item)


def test_sentinel_is_shared():
    # loky's feeder compares with multiprocessing.queues._sentinel.
    from gomp import _pipe_queues

    assert _pipe_queues._sentinel is queues._sentinel


def test_child_made_queue_feeder_is_joined_at_exit():
    # A queue pickled into a child: the child's exit waits for its feeder,
    # so that every item it put is in the pipe.
    ctx = gomp.get_context("spawn")
    q = FeederQueue(ctx=ctx)
    p = ctx.Process(target=put_many, args=(q, 2000))
    p.start()
    got = [q.get(timeout=60) for _ in range(2000)]
    p.join(60)
    assert got == list(range(2000)) and p.exitcode == 0


def put_many(q, n):
    for i in range(n):
        q.put(i)
    os.getpid()
