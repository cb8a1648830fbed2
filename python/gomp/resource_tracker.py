"""The resource tracker: a helper process that removes the named resources
(POSIX semaphores, shared memory segments) which processes created and died
without removing.

Processes tell the tracker about resources with one line each on its pipe,
``REGISTER:<name>:<type>`` when a resource is made and ``UNREGISTER:<name>:<type>``
when it is removed (the standard library's format: a stdlib process can use
gomp's tracker and the other way round). A name that such a line cannot carry
(a newline in it, or not ASCII), and every name when a tracker's
_use_simple_format is false, goes as a line of JSON instead,
``{"cmd":"REGISTER","rtype":"<type>","base64_name":"<the name's UTF-8, base64>"}``
(the standard library's other format, from 3.14); the tracker reads both.
Every line is written with a single write() of at most 512 bytes, which a pipe
keeps in one piece, so lines from many processes never mix. A process and all its children share one tracker
(children inherit the pipe). When the last of them has closed the pipe the
tracker removes what is still registered, warns about it, and exits.

The tracker ignores SIGINT and SIGTERM: a Ctrl-C that ends a whole process
group must not end the one process that cleans up after it. If it is killed
anyway, the next use starts a new one (with a warning: what the old one knew
is lost).

A child made by a bare os.fork() closes its copy of the pipe at once, so that
the tracker can end when its starter stops it even while such a child lives;
a child that multiprocessing forks to run a Process keeps it and goes on
using its parent's tracker.
"""

import _signal  # not signal: its enums would cost every spawned child 4 ms
import os
import sys
import threading
import warnings

from . import _helper_process
from ._helper_process import ReentrantCallError
from ._versions import V

__all__ = ['ensure_running', 'register', 'unregister']


def _unlink_semaphore(name):
    from . import _multiprocessing

    _multiprocessing.sem_unlink(name)


def _unlink_shared_memory(name):
    # The same removal as SharedMemory.unlink() (shm_unlink, or the file of
    # the /dev/shm fallback).
    from .shared_memory import _shm_unlink

    _shm_unlink(name)


def _forget(name):
    pass


# How the tracker removes a leaked resource of each type. 'noop' is the type
# of the liveness probe, never registered.
_CLEANUP_FUNCS = {
    'noop': _forget,
    'semaphore': _unlink_semaphore,
    'shared_memory': _unlink_shared_memory,
}
if V.tracker_dummy_type:
    # 3.13's suite registers and leaks a 'dummy' resource to see exit code 1;
    # such leaks are not worth a warning.
    _CLEANUP_FUNCS['dummy'] = _forget
_SILENT_LEAKS = frozenset({'dummy'})

# The tracker's exit code; the highest that applies wins. The process that
# stops the tracker keeps it in ResourceTracker._exitcode.
_CLEAN = 0  # nothing was left registered
_LEAKS_REMOVED = 1  # leaked resources were found (and removed)
_REMOVAL_FAILED = 2  # removing one of them failed
_BAD_LINE = 3  # a line could not be understood

_PIPE_ATOMIC_LIMIT = 512  # bytes a pipe write keeps whole (PIPE_BUF is at least this)
_JSON_NAME_LIMIT = 255  # bytes of a name in a JSON line (the standard library's limit)

# A thread sets preserve_fd on this while it forks a child that goes on using
# the tracker (a multiprocessing Process): see _keeps_tracker_across_fork().
_fork_intent = threading.local()


class ResourceTracker(_helper_process.HelperProcess):
    """This process's link to its resource tracker (see the module's doc)."""

    _MODULE = 'gomp.resource_tracker'
    _WHAT = 'resource tracker'
    _SHIELDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM)

    def __init__(self):
        super().__init__()
        # True: the short 'CMD:name:rtype' lines where the name allows them;
        # False: JSON lines for every name (see the module's doc).
        self._use_simple_format = True

    def ensure_running(self):
        """Start the tracker if this process has none (a child uses its
        parent's), or a new one if it died."""
        self._ensure_helper()

    def getfd(self):
        """The write end of the tracker's pipe, for a child to inherit."""
        self._ensure_helper()
        return self._fd

    def register(self, name, rtype):
        """Have the tracker remove name, a resource of type rtype (a key of
        _CLEANUP_FUNCS), if it is still there when every process is gone."""
        self._send(self._line('REGISTER', name, rtype), name, rtype)

    def unregister(self, name, rtype):
        """Tell the tracker that name was removed."""
        self._send(self._line('UNREGISTER', name, rtype), name, rtype)

    def _line(self, command, name, rtype):
        if self._use_simple_format:
            line = _simple_line(command, name, rtype)
            if line is not None:
                return line
        return _json_line(command, name, rtype)

    def _check_alive(self):
        # Asking the tracker works in every process that shares it, not only
        # in the one that started it: a write fails once nobody reads.
        try:
            os.write(self._fd, self._line('PROBE', None, 'noop'))
        except OSError:
            return False
        return True

    def _helper_died(self):
        warnings.warn(
            'resource_tracker: process died unexpectedly, relaunching.  Some resources might leak.'
        )

    def _after_fork_in_child(self):
        super()._after_fork_in_child()
        self._pid = None  # the parent started it, and reaps it
        if self._fd is not None and not _keeps_tracker_across_fork():
            fd, self._fd = self._fd, None
            os.close(fd)

    def _launch(self, helper_end):
        keep_open = [helper_end]
        try:
            keep_open.append(sys.stderr.fileno())  # for its warnings
        except (AttributeError, ValueError, OSError):
            pass  # no usable stderr: the tracker works without one
        return self._run_main('main(%d)' % helper_end, keep_open)

    def _send(self, line, name, rtype):
        try:
            self._ensure_helper()
        except ReentrantCallError:
            # Called from a finalizer or a signal handler while this thread
            # was starting the tracker: use it only if it runs already.
            warnings.warn(
                'ResourceTracker called reentrantly for resource cleanup, '
                'which is unsupported. The %s object %r might leak.' % (rtype, name)
            )
            if self._fd is None:
                return
        os.write(self._fd, line)


def _keeps_tracker_across_fork():
    """In a child being forked: whether it is a multiprocessing Process, which
    keeps its parent's tracker. The forking thread says so with
    _fork_intent.preserve_fd (gomp's fork start method does, in
    popen_fork._fork)."""
    return getattr(_fork_intent, 'preserve_fd', False)


def _simple_line(command, name, rtype):
    """The line 'CMD:name:rtype' (name None: '0'), or None if the name cannot
    go in one (a newline, or not ASCII). ValueError if it is too long for one
    write."""
    text = '%s:%s:%s\n' % (command, '0' if name is None else name, rtype)
    if text.count('\n') > 1 or not text.isascii():
        return None
    line = text.encode('ascii')
    if len(line) > _PIPE_ATOMIC_LIMIT:
        raise ValueError('msg too long')
    return line


def _json_line(command, name, rtype):
    """The JSON line for a command; the name (if any) as base64 of its UTF-8."""
    import binascii
    import json

    message = {'cmd': command, 'rtype': rtype}
    if name is not None:
        raw = name.encode('utf-8')
        if len(raw) > _JSON_NAME_LIMIT:
            raise ValueError('shared memory name too long (max %d bytes)' % _JSON_NAME_LIMIT)
        message['base64_name'] = binascii.b2a_base64(raw, newline=False).decode('ascii')
    line = (json.dumps(message, separators=(',', ':')) + '\n').encode('ascii')
    if len(line) > _PIPE_ATOMIC_LIMIT:
        raise ValueError('msg too long')
    return line


def _parse(line):
    """(command, name, rtype) of a line in either format. In a simple line
    the name may contain colons: the command ends at the first, the type
    starts after the last."""
    if line.startswith(b'{'):
        import binascii
        import json

        try:
            message = json.loads(line.decode('ascii'))
            name = binascii.a2b_base64(message.get('base64_name', '')).decode('utf-8')
            return message['cmd'], name, message['rtype']
        except Exception as e:
            raise ValueError('malformed resource_tracker message: %r' % (line,)) from e
    command, _, rest = line.rstrip(b'\n').decode('ascii').partition(':')
    name, _, rtype = rest.rpartition(':')
    return command, name, rtype


_resource_tracker = ResourceTracker()
ensure_running = _resource_tracker.ensure_running
register = _resource_tracker.register
unregister = _resource_tracker.unregister
getfd = _resource_tracker.getfd


# ---- the tracker process ------------------------------------------------------------------


class _Ledger:
    """What the tracker knows: the registered names of each type, and the
    exit code so far."""

    def __init__(self):
        self.names = {rtype: set() for rtype in _CLEANUP_FUNCS}
        self.exit_code = _CLEAN

    def _worse(self, code):
        self.exit_code = max(self.exit_code, code)

    def take(self, line):
        """Apply one command line; a bad one is reported on stderr."""
        try:
            command, name, rtype = _parse(line)
            names = self.names.get(rtype)
            if names is None:
                raise ValueError(
                    'Cannot register %s for automatic cleanup: '
                    'unknown resource type %s' % (name, rtype)
                )
            if command == 'REGISTER':
                names.add(name)
            elif command == 'UNREGISTER':
                names.remove(name)
            elif command != 'PROBE':
                raise ValueError('unrecognized command %r' % command)
        except Exception:
            self._worse(_BAD_LINE)
            try:
                sys.excepthook(*sys.exc_info())
            except BaseException:
                pass  # stderr gone: the exit code still says it

    def remove_leftovers(self):
        """Remove every resource still registered, with a warning per type
        and per failure."""
        for rtype, names in self.names.items():
            if not names:
                continue
            self._worse(_LEAKS_REMOVED)
            if rtype not in _SILENT_LEAKS:
                message = (
                    'resource_tracker: There appear to be %d leaked %s objects '
                    'to clean up at shutdown' % (len(names), rtype)
                )
                if V.tracker_lists_leaks:
                    message += ': %r' % (names,)
                warnings.warn(message)
            unlink = _CLEANUP_FUNCS[rtype]
            for name in names:
                try:
                    unlink(name)
                except Exception as e:
                    self._worse(_REMOVAL_FAILED)
                    warnings.warn('resource_tracker: %r: %s' % (name, e))


def main(fd):
    """Run the resource tracker: read command lines from fd until every
    process has closed its end, then clean up and exit with the ledger's
    code."""
    _helper_process.shield(ResourceTracker._SHIELDED_SIGNALS)
    for stream in (sys.stdin, sys.stdout):  # a tracker reads and prints nothing
        try:
            stream.close()
        except (AttributeError, OSError, ValueError):
            pass
    ledger = _Ledger()
    try:
        with open(fd, 'rb') as commands:
            for line in commands:
                ledger.take(line)
    finally:
        ledger.remove_leftovers()
    sys.exit(ledger.exit_code)
