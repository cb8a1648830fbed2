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


def wait_for_file(path):
    """Block until path exists (the test creates it to release the task)."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return os.getpid()
