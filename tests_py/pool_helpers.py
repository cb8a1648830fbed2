"""Targets for test_pool.py: importable by spawn and forkserver workers."""

import os
import signal
import time

_initialized = None


def square(x):
    return x * x


def mul(x, y):
    return x * y


def add_kw(x, y=0):
    return x + y


def fail(x):
    raise ValueError("bad %r" % (x,))


def fail_with_marker():
    raise RuntimeError(123)  # marker: fail_with_marker raised here


def unpicklable_result():
    return lambda: 42


def pid_after(x):
    return os.getpid()


def set_initialized(value):
    global _initialized
    _initialized = value


def get_initialized(_=None):
    return _initialized


def exit_now(code):
    os._exit(code)


def square_or_exit(x):
    if x == 3:
        os._exit(7)
    return x * x


def announce_and_block(path):
    """Write this worker's pid to path, then wait to be killed."""
    with open(path + '.tmp', 'w') as f:
        f.write(str(os.getpid()))
    os.replace(path + '.tmp', path)
    while True:
        time.sleep(1)


def kill_self(_=None):
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def sleep_with_payload(arg):
    seconds, _payload = arg
    time.sleep(seconds)
    return seconds


def wait_for_file(path):
    """Block until path exists (the test creates it to release the task)."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return os.getpid()


class PipeTaskQueue:
    """A task queue of the stdlib's shape, as joblib's MemmappingPool
    installs through Pool._setup_queues: a one-way pipe, a lock for each
    end, and put/get that send and receive pickled objects."""

    def __init__(self, ctx):
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._rlock = ctx.Lock()
        self._wlock = ctx.Lock()

    def __getstate__(self):
        return self._reader, self._writer, self._rlock, self._wlock

    def __setstate__(self, state):
        self._reader, self._writer, self._rlock, self._wlock = state

    def put(self, obj):
        with self._wlock:
            self._writer.send(obj)

    def get(self):
        with self._rlock:
            return self._reader.recv()

    def empty(self):
        return not self._reader.poll()


def pipe_queue_pool_class(base):
    """A Pool subclass whose queues are PipeTaskQueues."""

    class PipeQueuePool(base):
        def _setup_queues(self):
            self._inqueue = PipeTaskQueue(self._ctx)
            self._outqueue = PipeTaskQueue(self._ctx)

    return PipeQueuePool


class DieOnUnpickle:
    """An argument whose unpickling SIGKILLs the process unpickling it: a
    worker dies after it took the task out of the queue and before any of
    its own code ran (the window an atomic claim closes)."""

    def __reduce__(self):
        return kill_self, ()


def square_after(arg):
    """x * x after sleeping seconds (arg is (x, seconds))."""
    x, seconds = arg
    if seconds:
        time.sleep(seconds)
    return x * x


def square_after2(x, seconds):
    return square_after((x, seconds))
