"""The resource tracker: a helper process that unlinks named resources
(semaphores, shared memory segments) that processes registered and did not
unlink before they died.

Processes write "REGISTER:name:rtype" / "UNREGISTER:name:rtype" lines to a
pipe; the tracker keeps the set of names and, when every writer is gone (end
of file), warns about and removes what is left. One tracker serves a process
and all its children; it ignores SIGINT and SIGTERM so that Ctrl-C on a
process group does not leak resources, and is restarted if it was killed."""

import _signal  # not signal: its enums cost a spawned child 4 ms
import os
import sys
import threading
import warnings

from . import spawn
from . import util
from ._versions import V

__all__ = ['ensure_running', 'register', 'unregister']

_HAVE_SIGMASK = hasattr(_signal, 'pthread_sigmask')
_IGNORED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM)


def _shm_unlink(name):
    """Remove the POSIX shared memory object name (shm_unlink(3)), the way
    shared_memory.SharedMemory.unlink() does."""
    from .shared_memory import _shm_unlink
    _shm_unlink(name)


def _sem_unlink(name):
    from . import _multiprocessing
    _multiprocessing.sem_unlink(name)


_CLEANUP_FUNCS = {
    'noop': lambda: None,
    'semaphore': _sem_unlink,
    'shared_memory': _shm_unlink,
}
if V.tracker_dummy_type:
    # 3.13's suite registers this type to check the tracker's exit code.
    _CLEANUP_FUNCS['dummy'] = lambda name: None

# The tracker's exit status: 0 when nothing was left, 1 when it removed leaked
# resources, 2 when removing one failed, 3 when it got a bad command (the
# stdlib's codes; the stopping process keeps it in ResourceTracker._exitcode).
_OK, _LEAKED, _CLEANUP_FAILED, _BAD_COMMAND = 0, 1, 2, 3


class ReentrantCallError(RuntimeError):
    pass


class ResourceTracker(object):

    def __init__(self):
        self._lock = threading.RLock()
        self._fd = None
        self._pid = None
        self._exitcode = None

    def _reentrant_call_error(self):
        # A signal handler or finalizer may run while the lock is held.
        raise ReentrantCallError("Reentrant call into the multiprocessing resource tracker")

    def _stop(self):
        with self._lock:
            if self._lock._is_owned() and _recursion_count(self._lock) > 1:
                return self._reentrant_call_error()
            if self._fd is None:
                return
            os.close(self._fd)
            self._fd = None
            _, status = os.waitpid(self._pid, 0)
            self._pid = None
            try:
                self._exitcode = os.waitstatus_to_exitcode(status)
            except ValueError:
                self._exitcode = None

    def getfd(self):
        self.ensure_running()
        return self._fd

    def ensure_running(self):
        """Start the tracker if this process has none, or restart it if it
        died. Children inherit their parent's tracker."""
        with self._lock:
            if _recursion_count(self._lock) > 1:
                return self._reentrant_call_error()
            if self._fd is not None:
                if self._check_alive():
                    return
                # Killed: every resource it knew about may leak.
                os.close(self._fd)
                try:
                    if self._pid is not None:
                        os.waitpid(self._pid, 0)
                except ChildProcessError:
                    pass  # not our child (we are a child of its starter)
                self._fd = None
                self._pid = None
                self._exitcode = None
                warnings.warn('resource_tracker: process died unexpectedly, '
                              'relaunching.  Some resources might leak.')
            fds_to_pass = []
            try:
                fds_to_pass.append(sys.stderr.fileno())
            except Exception:
                pass
            r, w = os.pipe()
            try:
                fds_to_pass.append(r)
                exe = spawn.get_executable()
                prog = spawn._child_program('from gomp.resource_tracker import main',
                                            'main(%d)' % r)
                args = [exe] + util._args_from_interpreter_flags() + ['-c', prog]
                # The tracker must not get the SIGINT of a Ctrl-C aimed at
                # its starter's process group: block it while it starts.
                try:
                    if _HAVE_SIGMASK:
                        _signal.pthread_sigmask(_signal.SIG_BLOCK, _IGNORED_SIGNALS)
                    pid = util.spawnv_passfds(exe, args, fds_to_pass)
                finally:
                    if _HAVE_SIGMASK:
                        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _IGNORED_SIGNALS)
            except BaseException:
                os.close(w)
                raise
            else:
                self._fd = w
                self._pid = pid
            finally:
                os.close(r)

    def _check_alive(self):
        """Whether the tracker still reads its pipe (a probe write succeeds)."""
        try:
            os.write(self._fd, b'PROBE:0:noop\n')
        except OSError:
            return False
        return True

    def register(self, name, rtype):
        """Have the tracker remove name (of type rtype) if it is leaked."""
        self._send('REGISTER', name, rtype)

    def unregister(self, name, rtype):
        """Tell the tracker that name was removed."""
        self._send('UNREGISTER', name, rtype)

    def _send(self, cmd, name, rtype):
        try:
            self.ensure_running()
        except ReentrantCallError:
            warnings.warn(f"ResourceTracker called reentrantly for resource cleanup, "
                          f"which is unsupported. The {rtype} object {name!r} might leak.")
        msg = '{0}:{1}:{2}\n'.format(cmd, name, rtype).encode('ascii')
        if len(msg) > 512:
            # A single write of at most PIPE_BUF bytes is atomic: lines from
            # several processes never interleave.
            raise ValueError('msg too long')
        nbytes = os.write(self._fd, msg)
        assert nbytes == len(msg), "nbytes {0:n} but len(msg) {1:n}".format(nbytes, len(msg))


def _recursion_count(rlock):
    count = getattr(rlock, '_recursion_count', None)
    if count is not None:
        return count()
    return 1 if rlock._is_owned() else 0


_resource_tracker = ResourceTracker()
ensure_running = _resource_tracker.ensure_running
register = _resource_tracker.register
unregister = _resource_tracker.unregister
getfd = _resource_tracker.getfd


def main(fd):
    """Run the resource tracker, reading commands from fd."""
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    if _HAVE_SIGMASK:
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _IGNORED_SIGNALS)
    for f in (sys.stdin, sys.stdout):
        try:
            f.close()
        except Exception:
            pass

    cache = {rtype: set() for rtype in _CLEANUP_FUNCS}
    status = _OK
    try:
        with open(fd, 'rb') as f:
            for line in f:
                try:
                    cmd, name, rtype = line.strip().decode('ascii').split(':')
                    cleanup_func = _CLEANUP_FUNCS.get(rtype, None)
                    if cleanup_func is None:
                        raise ValueError(f'Cannot register {name} for automatic cleanup: '
                                         f'unknown resource type {rtype}')
                    if cmd == 'REGISTER':
                        cache[rtype].add(name)
                    elif cmd == 'UNREGISTER':
                        cache[rtype].remove(name)
                    elif cmd == 'PROBE':
                        pass
                    else:
                        raise RuntimeError('unrecognized command %r' % cmd)
                except Exception:
                    status = _BAD_COMMAND
                    try:
                        sys.excepthook(*sys.exc_info())
                    except BaseException:
                        pass
    finally:
        # Every writer is gone: remove what was not unregistered.
        for rtype, names in cache.items():
            if names:
                status = max(status, _LEAKED)
                if rtype != 'dummy':  # leaked on purpose by the suite
                    try:
                        warnings.warn('resource_tracker: There appear to be %d '
                                      'leaked %s objects to clean up at shutdown'
                                      % (len(names), rtype))
                    except Exception:
                        pass
            for name in names:
                try:
                    _CLEANUP_FUNCS[rtype](name)
                except Exception as e:
                    status = max(status, _CLEANUP_FAILED)
                    warnings.warn('resource_tracker: %r: %s' % (name, e))
        sys.exit(status)
