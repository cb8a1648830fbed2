"""The package's plumbing: its logger, finalizers and the exit sequence of a
process, hooks run in a forked child, the per-process temporary directory,
a child's standard streams, and starting helper interpreters with chosen
file descriptors.

Several private names here are read by other modules of the package and by
CPython's multiprocessing test suite (`_finalizer_registry`,
`_afterfork_registry`, `_run_finalizers`, `_exit_function`,
`_cleanup_tests`, `_logger`, `_log_to_stderr`); they keep the meaning the
standard library gives them."""

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
    'sub_debug',
    'debug',
    'info',
    'sub_warning',
    'get_logger',
    'log_to_stderr',
    'get_temp_dir',
    'register_after_fork',
    'is_exiting',
    'Finalize',
    'ForkAwareThreadLock',
    'ForkAwareLocal',
    'close_all_fds_except',
    'SUBDEBUG',
    'SUBWARNING',
]


# ==== logging ================================================================================
#
# The package logs through one logger named like the stdlib's, so that a
# logging configuration written for multiprocessing applies to gomp as is.
# Nothing is set up until someone asks for the logger: until then the log
# functions below cost one global lookup.

NOTSET, SUBDEBUG, DEBUG, INFO, SUBWARNING = 0, 5, 10, 20, 25

# The two levels logging does not know by name.
_EXTRA_LEVEL_NAMES = {SUBDEBUG: 'SUBDEBUG', SUBWARNING: 'SUBWARNING'}

LOGGER_NAME = 'multiprocessing'
DEFAULT_LOGGING_FORMAT = '[%(levelname)s/%(processName)s] %(message)s'

_logger = None  # the logger, once get_logger() made it
_log_to_stderr = False  # log_to_stderr() was called (spawn children repeat it)

# From 3.13 a record names the file and line that called debug(), info()...,
# not this module (the suite's test_filename checks it).
_RECORD_CALLER = {'stacklevel': 2} if V.log_names_caller else {}


def _log_function(level, name):
    """A module-level log function for one level: msg % args is logged at
    level if a logger exists, and nothing happens otherwise."""

    def log(msg, *args):
        logger = _logger
        if logger is not None:
            logger.log(level, msg, *args, **_RECORD_CALLER)

    log.__name__ = log.__qualname__ = name
    log.__doc__ = 'Log msg %% args at level %d (%s) on the package logger.' % (level, name)
    return log


sub_debug = _log_function(SUBDEBUG, 'sub_debug')
debug = _log_function(DEBUG, 'debug')
info = _log_function(INFO, 'info')
sub_warning = _log_function(SUBWARNING, 'sub_warning')


def get_logger():
    """The package logger ('multiprocessing'), made on first use."""
    return _logger if _logger is not None else _make_logger()


def _make_logger():
    global _logger
    import logging

    # logging's module lock (an RLock in every version served) makes two
    # threads asking at once agree on one set-up.
    with logging._lock:
        if _logger is None:
            for level, name in _EXTRA_LEVEL_NAMES.items():
                logging.addLevelName(level, name)
            logger = logging.getLogger(LOGGER_NAME)
            logger.propagate = False
            # atexit runs its handlers last registered first: registering the
            # exit sequence again, now that logging has registered its own
            # shutdown, lets the exit sequence still log.
            atexit.unregister(_exit_function)
            atexit.register(_exit_function)
            _logger = logger
    return _logger


def log_to_stderr(level=None):
    """Send the package's log records to stderr (formatted with
    DEFAULT_LOGGING_FORMAT), at level if one is given; return the logger."""
    global _log_to_stderr
    import logging

    logger = get_logger()
    stream_handler = logging.StreamHandler()
    stream_handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    logger.addHandler(stream_handler)
    _log_to_stderr = True
    if level:
        logger.setLevel(level)
    return logger


# ==== socket addresses =======================================================================


def _platform_supports_abstract_sockets():
    """Linux (and Android) have a socket namespace apart from the file system."""
    return sys.platform == 'linux' or hasattr(sys, 'getandroidapilevel')


abstract_sockets_supported = _platform_supports_abstract_sockets()


def is_abstract_socket_namespace(address):
    """Whether address (str or bytes) names an abstract socket: its first
    character is NUL. An empty or missing address is not one."""
    if not address:
        return False
    if isinstance(address, (str, bytes)):
        return address[:1] in ('\0', b'\0')
    raise TypeError(f'address type of {address!r} unrecognized')


# ==== finalizers =============================================================================
#
# Every live Finalize is in _finalizer_registry under the key
# (exitpriority, creation number). The suite saves, clears and restores that
# dict around its tests, so it is one object for the life of the module.

_finalizer_registry = {}
_finalizer_counter = itertools.count()


class Finalize:
    """Call callback(*args, **kwargs) once, at the first of: obj being
    garbage collected, the finalizer being called, or (if exitpriority is
    not None) the process exiting, where higher priorities run first and
    equal priorities newest first. A finalizer inherited by a forked child
    never calls its callback there."""

    # The module's globals may already be torn down when a weak reference
    # fires late in interpreter shutdown; the class keeps what __call__ needs.
    _registry = _finalizer_registry
    _getpid = staticmethod(os.getpid)

    def __init__(self, obj, callback, args=(), kwargs=None, exitpriority=None):
        if not (exitpriority is None or isinstance(exitpriority, int)):
            raise TypeError(
                f'Exitpriority ({exitpriority!r}) must be None or int, not {type(exitpriority)!s}'
            )
        if obj is None and exitpriority is None:
            raise ValueError('Without object, exitpriority cannot be None')
        self._pid = os.getpid()
        self._callback, self._args, self._kwargs = callback, args, kwargs or {}
        # The weak reference calls us (with itself as the argument) when obj dies.
        self._weakref = None if obj is None else weakref.ref(obj, self)
        self._key = (exitpriority, next(_finalizer_counter))
        self._registry[self._key] = self

    def _take_call(self):
        """Unregister; return (callback, args, kwargs) if this caller is the
        one to run it, None if it ran or was cancelled already. Popping the
        key is atomic, so two threads can never both run the callback."""
        if self._registry.pop(self._key, None) is None:
            return None
        call = self._callback, self._args, self._kwargs
        # Drop our references now: what they keep alive may be large.
        self._weakref = self._callback = self._args = self._kwargs = None
        return call

    def __call__(self, wr=None):
        """Run the callback (once); return its result."""
        call = self._take_call()
        if call is None:
            sub_debug('finalizer no longer registered')
            return None
        if self._pid != self._getpid():
            sub_debug('finalizer ignored because different process')
            return None
        callback, args, kwargs = call
        sub_debug('finalizer calling %s with args %s and kwargs %s', callback, args, kwargs)
        return callback(*args, **kwargs)

    def cancel(self):
        """Forget the callback without calling it."""
        self._take_call()

    def still_active(self):
        """Whether the callback is still to be called."""
        return self._key in self._registry

    def __repr__(self):
        name = type(self).__name__
        ref = self._weakref
        if not self.still_active() or (ref is not None and ref() is None):
            return f'<{name} object, dead>'
        parts = ['callback=%s' % getattr(self._callback, '__name__', self._callback)]
        if self._args:
            parts.append(f'args={self._args}')
        if self._kwargs:
            parts.append(f'kwargs={self._kwargs}')
        if self._key[0] is not None:
            parts.append(f'exitpriority={self._key[0]}')
        return f'<{name} object, {", ".join(parts)}>'


def _run_finalizers(minpriority=None):
    """Run the finalizers that have an exit priority (at least minpriority,
    if given): highest priority first, equal priorities newest first. An
    exception in one is printed and the others still run. Without
    minpriority every finalizer is then forgotten, prioritized or not."""
    # Work on a copy: a garbage collection during the loop may run
    # finalizers of dead objects, which take themselves out of the registry.
    # dict.copy() copies the table in one step, without running Python code.
    due = [
        (key, finalizer)
        for key, finalizer in _finalizer_registry.copy().items()
        if _is_due(key[0], minpriority)
    ]
    due.sort(key=_registry_key, reverse=True)
    for _key, finalizer in due:
        if finalizer.still_active():
            sub_debug('calling %s', finalizer)
            _call_reporting_errors(finalizer)
    if minpriority is None:
        _finalizer_registry.clear()


def _is_due(priority, minpriority):
    if priority is None:
        return False  # runs only when its object dies (or when called)
    return minpriority is None or priority >= minpriority


def _registry_key(entry):
    return entry[0]


def _call_reporting_errors(function):
    try:
        function()
    except Exception:
        import traceback

        traceback.print_exc()


# ==== the exit sequence ======================================================================

_exiting = False


def is_exiting():
    """Whether this process has begun its exit sequence."""
    return bool(_exiting)


def _exit_function():
    """The exit sequence (atexit, and the end of a child's _bootstrap): the
    finalizers of priority >= 0, then the children (daemons terminated, all
    joined), then every remaining prioritized finalizer. Runs once."""
    global _exiting
    if _exiting:
        return
    _exiting = True
    info('process shutting down')
    debug('running all "atexit" finalizers with priority >= 0')
    _run_finalizers(0)
    if process.current_process() is not None:
        _end_children()
    debug('running the remaining "atexit" finalizers')
    _run_finalizers()


def _end_children():
    # A daemonic child does not outlive its parent: it is terminated, then
    # joined with the others (a non-daemonic child is waited for).
    children = process.active_children()
    for child in children:
        if child.daemon:
            info('calling terminate() for daemon %s', child.name)
            child._popen.terminate()
    for child in process.active_children():
        info('calling join() for process %s', child.name)
        child.join()


atexit.register(_exit_function)

# A forked child (fork, forkserver) leaves through os._exit(), which skips
# atexit. From 3.13 such a child still runs the atexit handlers registered in
# it (never the ones inherited from its parent), as the stdlib does since
# gh-83856; before, it runs none. process._bootstrap runs the exit sequence
# itself either way.
_FORKED_CHILD_ATEXIT = V.forked_child_runs_own_atexit


def _forked_child_begins():
    """First thing in a forked child: forget the parent's atexit handlers."""
    if _FORKED_CHILD_ATEXIT:
        atexit._clear()
        atexit.register(_exit_function)


def _forked_child_ends():
    """Last thing in a forked child, before os._exit(): its own atexit handlers."""
    if _FORKED_CHILD_ATEXIT:
        atexit._run_exitfuncs()


# ==== temporary directory ====================================================================


def get_temp_dir():
    """This process's private temporary directory (shared with its forked
    children), made on first use and removed when the process exits."""
    config = process.current_process()._config
    tempdir = config.get('tempdir')
    return tempdir if tempdir is not None else _make_temp_dir(config)


def _make_temp_dir(config):
    import shutil
    import tempfile

    tempdir = tempfile.mkdtemp(prefix='pymp-')
    info('created temp directory %s', tempdir)
    # Priority -100: after everything that may still use files in it.
    Finalize(None, _remove_temp_dir, args=(shutil.rmtree, tempdir), exitpriority=-100)
    config['tempdir'] = tempdir
    return tempdir


def _remove_temp_dir(rmtree, tempdir):
    rmtree(tempdir)
    # None late in shutdown; otherwise a later get_temp_dir() makes a new one.
    me = process.current_process()
    if me is not None:
        me._config['tempdir'] = None


# ==== after-fork hooks =======================================================================
#
# (registration number, id(obj), func) -> obj. The values are weak: an object
# that dies takes its hook with it, so the registry cannot grow from one
# generation of forked children to the next.

_afterfork_registry = weakref.WeakValueDictionary()
_afterfork_counter = itertools.count()


def register_after_fork(obj, func):
    """Have func(obj) called in every child forked while obj is alive."""
    _afterfork_registry[(next(_afterfork_counter), id(obj), func)] = obj


def _run_after_forkers():
    """In a forked child: the hooks, oldest first; one that fails is logged."""
    hooks = sorted(_afterfork_registry.items(), key=_registration_number)
    for (_number, _ident, func), obj in hooks:
        try:
            func(obj)
        except Exception as exc:
            info('after forker raised exception %s', exc)


def _registration_number(item):
    return item[0][0]


class ForkAwareThreadLock:
    """A threading.Lock that a forked child finds released, whoever held
    it in the parent."""

    def __init__(self):
        lock = self._lock = threading.Lock()
        self.acquire, self.release = lock.acquire, lock.release
        register_after_fork(self, ForkAwareThreadLock._at_fork_reinit)

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()

    def __enter__(self):
        return self._lock.acquire()

    def __exit__(self, *exc_info):
        self._lock.release()


def _forget_thread_values(local):
    local.__dict__.clear()


class ForkAwareLocal(threading.local):
    """A threading.local that is empty again in a forked child."""

    def __init__(self):
        register_after_fork(self, _forget_thread_values)

    def __reduce__(self):
        return type(self), ()


# ==== file descriptors =======================================================================

try:
    MAXFD = os.sysconf('SC_OPEN_MAX')
except (AttributeError, ValueError, OSError):
    MAXFD = 256


def close_all_fds_except(fds):
    """Close every file descriptor below MAXFD that is not in fds."""
    start = 0
    for kept in sorted(set(fds)) + [MAXFD]:
        if kept > MAXFD:
            raise ValueError('fd too large')
        os.closerange(start, kept)
        start = kept + 1


def close_fds(*fds):
    """Close each of the given file descriptors."""
    for fd in fds:
        os.close(fd)


def _reserve_file(fd, size):
    """Give the file fd (a shared memory file: a heap arena, a SharedMemory
    segment) its size, with its pages reserved where the file system
    supports it: out of memory is an OSError here, not a SIGBUS later."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise OSError(
                e.errno,
                'cannot reserve %d bytes of shared memory: %s' % (size, os.strerror(e.errno)),
            ) from None
        os.ftruncate(fd, size)
    except AttributeError:  # no posix_fallocate on this platform
        os.ftruncate(fd, size)


# ==== a child's standard streams =============================================================


def _flush_std_streams():
    """Flush stdout and stderr (before a fork, so that nothing buffered is
    written twice); a missing or closed stream is skipped."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass


# A child's stdin is /dev/null: a child must not compete with its parent for
# the terminal. A parent that forks makes that file object once, before its
# first fork, and each forked child takes the inherited object over. Opened in
# the child instead (as spawned children still do), it costs every forked
# child four system calls and three new objects with their decoder, written
# into pages the child shares with its parent (copy-on-write faults); see
# tests_py/bench/NOTES.md, "Start-up of children".
# The file is closed again once the parent has no child left
# (_release_child_stdin), so a program whose children are gone holds no
# descriptor for them; the next fork opens another.
_child_stdin = None
_child_stdin_closer = None
_opened_stdin = None  # the /dev/null a child opened for itself (_close_stdin)


def _prepare_child_stdin():
    """Before fork(): make the /dev/null stdin forked children take over."""
    global _child_stdin, _child_stdin_closer
    if sys.stdin is not None and (_child_stdin is None or _child_stdin.closed):
        # Closed: this is a forked child whose code closed its stdin (this
        # object); its own children get a new one.
        _child_stdin = _open_devnull()
        if _child_stdin is not None:
            # Closed at exit at the latest: an open file left to the
            # interpreter's teardown is a ResourceWarning under -X dev.
            _child_stdin_closer = Finalize(None, _child_stdin.close, exitpriority=0)


def _release_child_stdin():
    """The last child is gone: close the /dev/null kept for forked children.
    Not in a forked child whose own stdin it is."""
    global _child_stdin, _child_stdin_closer
    closer = _child_stdin_closer
    if _child_stdin is None or _child_stdin is sys.stdin or closer is None:
        return
    _child_stdin = _child_stdin_closer = None
    closer()  # closes the file and leaves the exit registry


def _open_devnull():
    """/dev/null as a text file for reading, or None if it cannot be had."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)  # not inherited by exec()
    except OSError:
        return None
    try:
        return open(fd, encoding='utf-8')
    except (OSError, ValueError):
        os.close(fd)
        return None


def _close_stdin():
    """In a child: close the stdin it inherited and read /dev/null instead."""
    stdin = sys.stdin
    replacement = _child_stdin
    if stdin is None or stdin is replacement:
        return  # no stdin, or a forked child's child: /dev/null already
    try:
        stdin.close()
    except (OSError, ValueError):
        pass
    if replacement is None or replacement.closed:
        # Closed: another thread of the parent released it (its last child
        # had gone) between this fork's _prepare_child_stdin and the fork.
        global _opened_stdin
        replacement = _opened_stdin = _open_devnull()
    if replacement is not None:
        sys.stdin = replacement


def _put_away_stdin():
    """At the end of a child (or of a helper process): close its /dev/null
    stdin. Left to the interpreter's teardown, an open file it finds is a
    ResourceWarning under -X dev."""
    stdin = sys.stdin
    if stdin is not None and (stdin is _child_stdin or stdin is _opened_stdin):
        stdin.close()


# ==== starting helper interpreters ===========================================================


def _args_from_interpreter_flags():
    """The command line options that give a new interpreter this one's flags."""
    import subprocess

    return subprocess._args_from_interpreter_flags()


def spawnv_passfds(path, args, passfds):
    """Run the program path with argv args in a new process that inherits
    only stdin, stdout, stderr and the descriptors passfds; return its pid.
    vfork+exec in C (gomp._gomp, pybind/ext/spawn.c); a program that cannot
    be executed raises OSError here."""
    from . import _gomp

    return _gomp.spawnv_passfds(path, args, passfds)


# ==== for CPython's test suite ===============================================================


def _cleanup_tests():
    """Release what the test suite's processes left behind (CPython's
    multiprocessing tests call it when a test module ends)."""
    from test import support

    from . import forkserver, resource_tracker

    process._cleanup()
    # The fork server first: its children hold the resource tracker's pipe.
    for server in (forkserver._forkserver, resource_tracker._resource_tracker):
        server._stop()
    _run_finalizers()
    support.gc_collect()
    support.reap_children()
