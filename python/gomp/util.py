"""Helpers shared by the package: logging, finalizers, after-fork hooks, the
temporary directory, and the exit sequence of a process."""

import atexit
import errno
import itertools
import os
import sys
import threading
import weakref

from . import process
from ._versions import V

__all__ = [
    'sub_debug', 'debug', 'info', 'sub_warning', 'get_logger', 'log_to_stderr',
    'get_temp_dir', 'register_after_fork', 'is_exiting', 'Finalize',
    'ForkAwareThreadLock', 'ForkAwareLocal', 'close_all_fds_except',
    'SUBDEBUG', 'SUBWARNING',
]

# ---- logging -------------------------------------------------------------------------------

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25

LOGGER_NAME = 'multiprocessing'
DEFAULT_LOGGING_FORMAT = '[%(levelname)s/%(processName)s] %(message)s'

# 3.13+ (as its stdlib): a record names the caller's file and line, not util's.
_CALLER = {'stacklevel': 2} if V.log_names_caller else {}

_logger = None
_log_to_stderr = False


def sub_debug(msg, *args):
    if _logger:
        _logger.log(SUBDEBUG, msg, *args, **_CALLER)


def debug(msg, *args):
    if _logger:
        _logger.log(DEBUG, msg, *args, **_CALLER)


def info(msg, *args):
    if _logger:
        _logger.log(INFO, msg, *args, **_CALLER)


def sub_warning(msg, *args):
    if _logger:
        _logger.log(SUBWARNING, msg, *args, **_CALLER)


def get_logger():
    """Return the 'multiprocessing' logger, creating it on first use.

    The logger has the stdlib's name so that logging configuration written for
    multiprocessing applies unchanged."""
    global _logger
    import logging
    with logging._lock:  # an RLock in every supported version
        if not _logger:
            _logger = logging.getLogger(LOGGER_NAME)
            _logger.propagate = 0
            logging.addLevelName(SUBDEBUG, 'SUBDEBUG')
            logging.addLevelName(SUBWARNING, 'SUBWARNING')
            # Run the exit sequence after logging's own atexit handler is
            # registered, so that it still logs during shutdown.
            atexit.unregister(_exit_function)
            atexit.register(_exit_function)
    return _logger


def log_to_stderr(level=None):
    """Turn on logging to stderr, at level if given; return the logger."""
    global _log_to_stderr
    import logging
    logger = get_logger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    _log_to_stderr = True
    return _logger


# ---- addresses -----------------------------------------------------------------------------

abstract_sockets_supported = sys.platform == 'linux' or hasattr(sys, 'getandroidapilevel')


def is_abstract_socket_namespace(address):
    """Whether address names a Linux abstract socket (starts with a NUL)."""
    if not address:
        return False
    if isinstance(address, bytes):
        return address[0] == 0
    if isinstance(address, str):
        return address[0] == '\0'
    raise TypeError(f'address type of {address!r} unrecognized')


# ---- temporary directory -------------------------------------------------------------------

def _remove_temp_dir(rmtree, tempdir):
    rmtree(tempdir)
    current = process.current_process()
    if current is not None:
        current._config['tempdir'] = None


def get_temp_dir():
    """A private directory of this process (and its fork children), removed at exit."""
    tempdir = process.current_process()._config.get('tempdir')
    if tempdir is None:
        import shutil
        import tempfile
        tempdir = tempfile.mkdtemp(prefix='pymp-')
        info('created temp directory %s', tempdir)
        Finalize(None, _remove_temp_dir, args=(shutil.rmtree, tempdir), exitpriority=-100)
        process.current_process()._config['tempdir'] = tempdir
    return tempdir


# ---- after-fork hooks ----------------------------------------------------------------------

# (sequence number, id(obj), func) -> obj; weak, so a dead object drops out.
_afterfork_registry = weakref.WeakValueDictionary()
_afterfork_counter = itertools.count()


def _run_after_forkers():
    for (_index, _ident, func), obj in sorted(_afterfork_registry.items()):
        try:
            func(obj)
        except Exception as e:
            info('after forker raised exception %s', e)


def register_after_fork(obj, func):
    """Call func(obj) in a child process started by fork, while obj is alive."""
    _afterfork_registry[(next(_afterfork_counter), id(obj), func)] = obj


# ---- finalizers ----------------------------------------------------------------------------

# (exitpriority, sequence number) -> Finalize
_finalizer_registry = {}
_finalizer_counter = itertools.count()


class Finalize(object):
    """Calls callback(*args, **kwargs) once: when obj is garbage collected, when
    called, or at exit (if exitpriority is not None: higher priorities first,
    equal ones in reverse order of creation). Never in another process than
    the one that created it."""

    def __init__(self, obj, callback, args=(), kwargs=None, exitpriority=None):
        if exitpriority is not None and not isinstance(exitpriority, int):
            raise TypeError(
                f"Exitpriority ({exitpriority!r}) must be None or int, "
                f"not {type(exitpriority)!s}")
        if obj is not None:
            self._weakref = weakref.ref(obj, self)
        elif exitpriority is None:
            raise ValueError("Without object, exitpriority cannot be None")
        self._callback = callback
        self._args = args
        self._kwargs = kwargs or {}
        self._key = (exitpriority, next(_finalizer_counter))
        self._pid = os.getpid()
        _finalizer_registry[self._key] = self

    def __call__(self, wr=None, _finalizer_registry=_finalizer_registry,
                 sub_debug=sub_debug, getpid=os.getpid):
        """Run the callback unless it already ran or was cancelled."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            sub_debug('finalizer no longer registered')
            return None
        if self._pid != getpid():
            sub_debug('finalizer ignored because different process')
            res = None
        else:
            sub_debug('finalizer calling %s with args %s and kwargs %s',
                      self._callback, self._args, self._kwargs)
            res = self._callback(*self._args, **self._kwargs)
        self._weakref = self._callback = self._args = self._kwargs = self._key = None
        return res

    def cancel(self):
        """Cancel the finalizer without running it."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            return
        self._weakref = self._callback = self._args = self._kwargs = self._key = None

    def still_active(self):
        """Whether the callback is still to be called."""
        return self._key in _finalizer_registry

    def __repr__(self):
        try:
            obj = self._weakref()
        except (AttributeError, TypeError):
            obj = None
        if obj is None:
            return '<%s object, dead>' % type(self).__name__
        text = '<%s object, callback=%s' % (
            type(self).__name__, getattr(self._callback, '__name__', self._callback))
        if self._args:
            text += ', args=' + str(self._args)
        if self._kwargs:
            text += ', kwargs=' + str(self._kwargs)
        if self._key[0] is not None:
            text += ', exitpriority=' + str(self._key[0])
        return text + '>'


def _run_finalizers(minpriority=None):
    """Run the finalizers whose exitpriority is not None (and >= minpriority),
    highest priority first, the same priority in reverse order of creation.
    Without minpriority, the registry is cleared afterwards."""
    if _finalizer_registry is None:
        return
    if minpriority is None:
        keys = [k for k in list(_finalizer_registry) if k[0] is not None]
    else:
        keys = [k for k in list(_finalizer_registry) if k[0] is not None and k[0] >= minpriority]
    keys.sort(reverse=True)
    for key in keys:
        finalizer = _finalizer_registry.get(key)
        if finalizer is not None:
            sub_debug('calling %s', finalizer)
            try:
                finalizer()
            except Exception:
                import traceback
                traceback.print_exc()
    if minpriority is None:
        _finalizer_registry.clear()


# ---- exit sequence -------------------------------------------------------------------------

_exiting = False


def is_exiting():
    """Whether this process is shutting down."""
    return _exiting or _exiting is None


def _exit_function(info=info, debug=debug, _run_finalizers=_run_finalizers,
                   active_children=process.active_children,
                   current_process=process.current_process):
    # Defaults bind the globals: at interpreter shutdown module globals may
    # already be gone when this runs.
    global _exiting
    if _exiting:
        return
    _exiting = True
    info('process shutting down')
    debug('running all "atexit" finalizers with priority >= 0')
    _run_finalizers(0)
    if current_process() is not None:
        # Daemonic children are terminated, the others joined.
        for p in active_children():
            if p.daemon:
                info('calling terminate() for daemon %s', p.name)
                p._popen.terminate()
        for p in active_children():
            info('calling join() for process %s', p.name)
            p.join()
    debug('running the remaining "atexit" finalizers')
    _run_finalizers()


atexit.register(_exit_function)

# On 3.13+ a forked child (fork or forkserver) runs the atexit handlers that it
# registered itself when it finishes, and never its parent's (as the stdlib
# there does since gh-83856). Earlier versions run none in such a child.
_FORKED_CHILD_ATEXIT = V.forked_child_runs_own_atexit


def _forked_child_begins():
    if _FORKED_CHILD_ATEXIT:
        atexit._clear()
        atexit.register(_exit_function)


def _forked_child_ends():
    if _FORKED_CHILD_ATEXIT:
        atexit._run_exitfuncs()


# ---- fork-aware thread helpers -------------------------------------------------------------

class ForkAwareThreadLock(object):
    """A threading.Lock that is reset (released) in a forked child."""

    def __init__(self):
        self._lock = threading.Lock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        register_after_fork(self, ForkAwareThreadLock._at_fork_reinit)

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)


class ForkAwareLocal(threading.local):
    """A threading.local whose attributes are cleared in a forked child."""

    def __init__(self):
        register_after_fork(self, lambda obj: obj.__dict__.clear())

    def __reduce__(self):
        return type(self), ()


# ---- file descriptors and standard streams -------------------------------------------------

try:
    MAXFD = os.sysconf("SC_OPEN_MAX")
except Exception:
    MAXFD = 256


def close_all_fds_except(fds):
    """Close every file descriptor of this process except those in fds."""
    keep = sorted(set(fds) | {-1, MAXFD})
    if keep[-1] != MAXFD:
        raise ValueError('fd too large')
    for low, high in zip(keep, keep[1:]):
        os.closerange(low + 1, high)


# A child's stdin is /dev/null: a child must not compete with its parent for
# the terminal. A parent that forks makes that file object once, before its
# first fork, and each forked child takes the inherited object over. Opened in
# the child instead (as spawned children still do), it costs every forked
# child four system calls and three new objects with their decoder, written
# into pages the child shares with its parent (copy-on-write faults).
# Measured: a no-op child starts and joins 12% faster with the object made
# before the fork (medians of 8 interleaved runs of 200 children each).
_child_stdin = None


def _prepare_child_stdin():
    """Before fork(): make the /dev/null stdin forked children take over."""
    global _child_stdin
    if sys.stdin is not None and (_child_stdin is None or _child_stdin.closed):
        # Closed: this is a forked child whose code closed its stdin (this
        # object); its own children get a new one.
        _child_stdin = _open_devnull()


def _open_devnull():
    try:
        fd = os.open(os.devnull, os.O_RDONLY)  # not inherited by exec()
        try:
            return open(fd, encoding="utf-8")
        except BaseException:
            os.close(fd)
            raise
    except (OSError, ValueError):
        return None


def _close_stdin():
    """Close this (child) process's stdin and replace it by /dev/null."""
    stdin = sys.stdin
    if stdin is None:
        return
    devnull = _child_stdin  # None, or open: _prepare_child_stdin renews it
    if stdin is devnull:
        return  # a child of a forked child: stdin is /dev/null already
    try:
        stdin.close()
    except (OSError, ValueError):
        pass
    if devnull is None:
        devnull = _open_devnull()
    if devnull is not None:
        sys.stdin = devnull


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass


def _args_from_interpreter_flags():
    """The command line options that reproduce this interpreter's flags."""
    import subprocess
    return subprocess._args_from_interpreter_flags()


def spawnv_passfds(path, args, passfds):
    """Start path with args in a new process that inherits only stdin, stdout,
    stderr and passfds; return its pid (vfork+exec in C: gomp._gomp)."""
    from . import _gomp
    return _gomp.spawnv_passfds(path, args, passfds)


def close_fds(*fds):
    """Close each file descriptor given."""
    for fd in fds:
        os.close(fd)


def _cleanup_tests():
    """Release what the test suite's processes left behind (used by CPython's
    multiprocessing tests at module teardown)."""
    from test import support
    process._cleanup()
    from . import forkserver
    forkserver._forkserver._stop()
    from . import resource_tracker
    resource_tracker._resource_tracker._stop()
    _run_finalizers()
    support.gc_collect()
    support.reap_children()


def _reserve_file(fd, size):
    """Give the file fd (a shared memory file: a heap arena, a SharedMemory
    segment) its size, with its pages reserved where the file system
    supports it: out of memory is an OSError here, not a SIGBUS later."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise OSError(e.errno, 'cannot reserve %d bytes of shared memory: %s'
                          % (size, os.strerror(e.errno))) from None
        os.ftruncate(fd, size)
    except AttributeError:  # no posix_fallocate on this platform
        os.ftruncate(fd, size)
