"""Helper processes: the fork server and the resource tracker share one story.

A helper is a fresh interpreter that a process starts the first time it needs
it, and only once. The starter keeps one end of a pipe (``_fd``) and the helper
the other; the helper runs until every process holding the starter's end has
closed it, so it never outlives the processes it serves and nobody has to tell
it to stop. Before each use the starter checks that the helper still runs and,
if it was killed, forgets it and starts a new one.

This module holds the starter's side of that story (HelperProcess) and the
helper's first act (shield). The subclasses say how to start their helper and
how to tell whether it is alive; forkserver.ForkServer and
resource_tracker.ResourceTracker are the two.

In a child made by fork() each helper's lock starts free (the thread that
may have held it at the fork does not exist there), and each subclass decides
in _after_fork_in_child() what else the child keeps of its parent's helper.

A spawned child imports the resource tracker, hence this module: it imports
nothing a spawned child would not load anyway.
"""

import _signal
import os
import threading
import weakref

from . import spawn, util

__all__ = ['HelperProcess', 'ReentrantCallError', 'shield']

_CAN_MASK = hasattr(_signal, 'pthread_sigmask')


class ReentrantCallError(RuntimeError):
    """A helper was called into by the thread that is already inside it (from
    a signal handler, or a finalizer run by the garbage collector)."""


class _OneEntryLock:
    """A lock that a thread which holds it cannot take again: the nested
    attempt raises ReentrantCallError instead of deadlocking (a plain lock) or
    running the helper's bookkeeping twice at once (a plain RLock)."""

    __slots__ = ('_rlock', '_depth', '_what')

    def __init__(self, what):
        self._rlock = threading.RLock()
        self._depth = 0
        self._what = what

    def acquire(self, blocking=True, timeout=-1):
        if not self._rlock.acquire(blocking, timeout):
            return False
        self._depth += 1
        if self._depth > 1:
            self.release()
            raise ReentrantCallError('Reentrant call into the multiprocessing %s' % self._what)
        return True

    def release(self):
        self._depth -= 1
        self._rlock.release()

    __enter__ = acquire

    def __exit__(self, *exc_info):
        self.release()

    def _at_fork_reinit(self):
        # In a forked child: whichever thread held the lock at the fork does
        # not exist here, so the lock starts free.
        self._rlock._at_fork_reinit()
        self._depth = 0


def _exit_code(pid):
    """Wait for our child pid to end and return its exit code. Raises
    ChildProcessError if pid is not our child: a forked process inherits its
    parent's helpers, with their pids."""
    _, status = os.waitpid(pid, 0)
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        return None


def _exit_code_within(pid, timeout):
    """_exit_code(pid), waiting at most timeout seconds (None: no limit);
    TimeoutError if pid still runs then."""
    if timeout is not None and not _ends_within(pid, timeout):
        raise TimeoutError
    return _exit_code(pid)


def _ends_within(pid, timeout):
    """Whether our child pid ends (or has ended) within timeout seconds. It
    stays unreaped either way."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # no pidfds here: look now and then
    if pidfd is None:
        import time

        deadline = time.monotonic() + timeout
        pause = 0.001
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
        return True
    try:
        import select

        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(max(0, timeout) * 1000))
    finally:
        os.close(pidfd)


# Every helper of this process, for the fork handler below.
_helpers = weakref.WeakSet()


def _after_fork_in_child():
    for helper in list(_helpers):
        helper._after_fork_in_child()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class HelperProcess:
    """The starter's side of a helper process.

    _fd is this process's end of the helper's pipe (None before the first
    start), _pid the helper's pid when this process started it (None in a
    process that inherited _fd), _exitcode the helper's exit code once _stop()
    has waited for it, _waitpid_timed_out whether the last _stop() gave up
    waiting for it.

    Subclasses set _MODULE (the gomp module whose main() the helper runs),
    _WHAT (what to call the helper in messages), _SHIELDED_SIGNALS (signals
    the helper must survive: blocked while it starts, ignored by it after),
    and implement _launch().
    """

    _MODULE = None
    _WHAT = 'helper process'
    _SHIELDED_SIGNALS = ()

    def __init__(self):
        self._lock = _OneEntryLock(self._WHAT)
        self._fd = None
        self._pid = None
        self._exitcode = None
        self._waitpid_timed_out = False
        _helpers.add(self)

    # ---- what subclasses provide ---------------------------------------------------------

    def _launch(self, helper_end):
        """Start the helper, giving it helper_end (the read end of its pipe);
        return its pid. Use _run_main() to start the interpreter."""
        raise NotImplementedError

    def _check_alive(self):
        """Whether the helper still serves us. This default knows only a
        helper this process started and has not reaped."""
        if self._pid is None:
            return False
        try:
            return os.waitpid(self._pid, os.WNOHANG)[0] == 0
        except ChildProcessError:
            return False

    def _helper_died(self):
        """Called when a helper found dead is forgotten, before a new one
        starts."""

    def _helper_stopped(self):
        """Called by _stop() after a helper this process started has ended."""

    def _after_fork_in_child(self):
        """Called in the child of every fork of this process. The lock may
        have been held by a thread the child does not have."""
        self._lock._at_fork_reinit()

    # ---- the story -----------------------------------------------------------------------

    def _ensure_helper(self):
        """Start the helper unless one serves us already; restart it if it
        died."""
        with self._lock:
            if self._fd is not None:
                if self._check_alive():
                    return
                self._forget_dead_helper()
            helper_end, our_end = os.pipe()
            try:
                pid = self._launch(helper_end)
            except BaseException:
                os.close(our_end)
                raise
            finally:
                os.close(helper_end)
            self._fd, self._pid, self._exitcode = our_end, pid, None

    def _forget_dead_helper(self):
        fd, pid = self._fd, self._pid
        self._fd = self._pid = None
        os.close(fd)
        if pid is not None:
            try:
                _exit_code(pid)  # reap it
            except ChildProcessError:
                pass  # reaped by someone else, or our parent's
        self._helper_died()

    def _stop(self, use_blocking_lock=True, wait_timeout=None):
        """Close our end of the helper's pipe, which ends the helper once no
        other process holds a copy, and wait for it if we started it.

        With use_blocking_lock false, do nothing if another thread is using
        the helper. With wait_timeout (seconds), give up waiting after that
        long (a child still holding a copy of the pipe keeps the helper
        alive): _waitpid_timed_out then says so and _exitcode stays None."""
        if not self._lock.acquire(use_blocking_lock):
            return
        try:
            fd, pid = self._fd, self._pid
            if fd is None:
                return
            self._fd = self._pid = None
            self._waitpid_timed_out = False
            os.close(fd)
            if pid is None:
                return  # our parent's helper: not ours to wait for
            try:
                self._exitcode = _exit_code_within(pid, wait_timeout)
            except ChildProcessError:
                return  # reaped elsewhere
            except TimeoutError:
                self._waitpid_timed_out = True
                return
            self._helper_stopped()
        finally:
            self._lock.release()

    def _run_main(self, call, pass_fds):
        """Start `python -c "from <_MODULE> import main; <call>"` with this
        interpreter's flags, keeping pass_fds open in it; return its pid."""
        exe = spawn.get_executable()
        program = spawn._child_program('from %s import main' % self._MODULE, call)
        argv = [exe, *util._args_from_interpreter_flags(), '-c', program]
        masked = self._SHIELDED_SIGNALS if _CAN_MASK else ()
        if not masked:
            return util.spawnv_passfds(exe, argv, pass_fds)
        # With the signals blocked here, the new interpreter starts with them
        # blocked and cannot die of a Ctrl-C sent to our process group before
        # shield() has set them to be ignored. Afterwards the caller's own
        # mask comes back as it was: a signal it had blocked stays blocked.
        callers_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, masked)
        try:
            return util.spawnv_passfds(exe, argv, pass_fds)
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, callers_mask)


def shield(signals):
    """In a helper, first thing: ignore signals (its class's
    _SHIELDED_SIGNALS) and unblock them, as the starter blocked them."""
    for sig in signals:
        _signal.signal(sig, _signal.SIG_IGN)
    if signals and _CAN_MASK:
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, signals)
