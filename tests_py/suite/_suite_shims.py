"""TEST-ONLY stand-ins for parts of gomp that other work items deliver
(heap.BufferWrapper, sharedctypes.Value, queues.Queue), so that the CPython
suite's lock/condition/event/barrier tests can run before those land.

They are installed only while the real ones are still placeholders, and
only by this directory's drivers (never by the package). Each is built on
gomp's own primitives: storage in the spare bytes of a SemLock's shared
region (64 bytes), a queue on a Pipe guarded by Locks. They are just enough
for the tests that use them; they are not implementations of those APIs."""

import gomp
from gomp import connection, heap, queues, sharedctypes

__all__ = ['install', 'installed']

_installed = []


def _is_placeholder(obj):
    return (getattr(obj, '__doc__', '') or '').startswith('Placeholder') or \
        obj is heap.BufferWrapper and 'placeholder' in (heap.BufferWrapper.__doc__ or '')


class ShimBufferWrapper(object):
    """heap.BufferWrapper stand-in: up to 64 bytes."""

    def __init__(self, size):
        if size > 64:
            raise ValueError('shim BufferWrapper holds at most 64 bytes')
        self._size = size
        self._store = gomp.get_context().Lock()

    def create_memoryview(self):
        return memoryview(self._store._semlock)[:self._size]


class ShimValue(object):
    """sharedctypes.Value stand-in for simple typecodes."""

    def __init__(self, typecode, value=0, lock=True, ctx=None):
        ctx = ctx or gomp.get_context()
        self._typecode = typecode
        self._store = ctx.Lock()
        self._lock = ctx.RLock() if lock is True else (lock or None)
        self._view = memoryview(self._store._semlock).cast('B').cast(typecode)
        self._view[0] = value

    def __getstate__(self):
        return (self._typecode, self._store, self._lock)

    def __setstate__(self, state):
        self._typecode, self._store, self._lock = state
        self._view = memoryview(self._store._semlock).cast('B').cast(self._typecode)

    @property
    def value(self):
        return self._view[0]

    @value.setter
    def value(self, v):
        self._view[0] = v

    def get_lock(self):
        return self._lock


class ShimQueue(object):
    """queues.Queue stand-in: put/get/close/join_thread over a Pipe."""

    def __init__(self, maxsize=0, *, ctx=None):
        ctx = ctx or gomp.get_context()
        self._reader, self._writer = connection.Pipe(duplex=False)
        self._rlock = ctx.Lock()
        self._wlock = ctx.Lock()

    def __getstate__(self):
        gomp.context.assert_spawning(self)
        return (self._reader, self._writer, self._rlock, self._wlock)

    def __setstate__(self, state):
        self._reader, self._writer, self._rlock, self._wlock = state

    def put(self, obj, block=True, timeout=None):
        with self._wlock:
            self._writer.send(obj)

    def get(self, block=True, timeout=None):
        with self._rlock:
            if (not block or timeout is not None) and not self._reader.poll(
                    timeout if block else 0):
                import queue
                raise queue.Empty
            return self._reader.recv()

    def empty(self):
        return not self._reader.poll()

    def close(self):
        pass

    def join_thread(self):
        pass


def install():
    """Install the stand-ins whose real counterpart is still a placeholder."""
    if _is_placeholder(heap.BufferWrapper):
        heap.BufferWrapper = ShimBufferWrapper
        _installed.append('heap.BufferWrapper')
    if _is_placeholder(sharedctypes.Value):
        sharedctypes.Value = lambda typecode, *args, lock=True, ctx=None: ShimValue(
            typecode, *args, lock=lock, ctx=ctx)
        _installed.append('sharedctypes.Value')
    if _is_placeholder(queues.Queue):
        queues.Queue = ShimQueue
        _installed.append('queues.Queue')
    return list(_installed)


def installed():
    return list(_installed)
