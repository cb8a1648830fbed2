"""The multiprocessing API backed by threads (``multiprocessing.dummy``).

A "process" here is a thread with the Process API; the locks, conditions,
events and barriers are the threading module's, the queues are queue.Queue,
connections are pairs of queues (dummy.connection), and Pool is a ThreadPool.
Nothing is pickled and nothing needs to be shared: every thread sees the same
objects, so Value, Array and Manager() are plain containers.
"""

import array
import queue
import sys
import threading
import weakref
from threading import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore

from .connection import Pipe

__all__ = [
    'Process',
    'current_process',
    'active_children',
    'freeze_support',
    'Lock',
    'RLock',
    'Semaphore',
    'BoundedSemaphore',
    'Condition',
    'Event',
    'Barrier',
    'Queue',
    'Manager',
    'Pipe',
    'Pool',
    'JoinableQueue',
]

# queue.Queue already has task_done() and join().
Queue = JoinableQueue = queue.Queue

# Manager().dict() and Manager().list(): the builtins (see Manager below).
dict = dict
list = list

current_process = threading.current_thread


def _children_of(thread):
    """The DummyProcess objects started by thread (created on first use:
    threads not started as a DummyProcess have none yet)."""
    children = getattr(thread, '_children', None)
    if children is None:
        children = thread._children = weakref.WeakKeyDictionary()
    return children


class DummyProcess(threading.Thread):
    """A thread with the API of Process: it belongs to the thread that created
    it, which alone may start it and sees it in active_children()."""

    def __init__(self, group=None, target=None, name=None, args=(), kwargs=None):
        super().__init__(group, target, name, args, kwargs)
        self._parent = current_process()
        self._children = weakref.WeakKeyDictionary()
        self._start_called = False

    def start(self):
        caller = current_process()
        if caller is not self._parent:
            raise RuntimeError('Parent is %r but current_process is %r' % (self._parent, caller))
        self._start_called = True
        _children_of(caller)[self] = None
        super().start()

    @property
    def exitcode(self):
        """0 once the thread has run and finished, None before and while it
        runs (a thread has no exit status of its own)."""
        finished = self._start_called and not self.is_alive()
        return 0 if finished else None


Process = DummyProcess


def active_children():
    """The DummyProcess threads started by the calling thread that still run."""
    children = _children_of(current_process())
    for finished in [child for child in children if not child.is_alive()]:
        del children[finished]
    return [*children]


def freeze_support():
    """Nothing to do for threads."""


class Namespace:
    """A plain object whose attributes are the keyword arguments."""

    def __init__(self, /, **attributes):
        vars(self).update(attributes)

    def __repr__(self):
        shown = sorted('%s=%r' % item for item in vars(self).items() if not item[0].startswith('_'))
        return '%s(%s)' % (type(self).__name__, ', '.join(shown))


class Value:
    """A box with a ``value`` attribute: what sharedctypes.Value offers, for
    threads that share memory anyway (typecode is only shown, lock ignored)."""

    def __init__(self, typecode, value, lock=True):
        self._typecode = typecode
        self.value = value

    def __repr__(self):
        return '<%s(%r, %r)>' % (type(self).__name__, self._typecode, self.value)


def Array(typecode, sequence, lock=True):
    """An array.array (the lock argument is accepted and ignored)."""
    return array.array(typecode, sequence)


def Manager():
    """Threads need no server process: the "manager" is this module, whose
    attributes (Queue, Lock, dict, list, Namespace, ...) make the objects."""
    return sys.modules[__name__]


def shutdown():
    """The counterpart of Manager(): nothing to stop."""


def Pool(processes=None, initializer=None, initargs=()):
    """A pool of worker threads (gomp.pool.ThreadPool)."""
    from ..pool import ThreadPool

    return ThreadPool(processes, initializer, initargs)
