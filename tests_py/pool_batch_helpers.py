"""Targets for test_pool_batch.py: importable by spawn and forkserver workers."""

import os
import signal


def inc(x):
    return x + 1


def pid_of(_):
    return os.getpid()


def kill_at(arg):
    """x + 1, except that the item (x, True) kills its worker."""
    x, die = arg
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


def fail_at(arg):
    x, bad = arg
    if bad:
        raise ValueError('bad %d' % x)
    return x + 1


def unpicklable_at(arg):
    x, bad = arg
    if bad:
        return lambda: x
    return x + 1
