"""Start a child process with fork().

The child is supervised through a pidfd: it is the sentinel (readable once
the child exits, usable with wait() and select), signals are sent through
it (so a recycled pid can never be hit), and join() reaps the child through
it (waitid in C, no call into the Go core). A reaper thread in C is the
safety net: a child still unreaped shortly after it exited is reaped by it,
so no zombie is left behind even if nobody joins."""

import _signal  # not signal, whose enums a spawned child unpickling a _DupFd paid for
import os
import sys
import threading
import warnings

from . import _gomp, util
from ._versions import V

__all__ = ['Popen']


def _signalling(method_name, signal_name):
    """The Popen method method_name: send the signal signal_name to the
    child, through _send_signal (which a subclass may replace)."""
    signum = getattr(_signal, signal_name)

    def send(self):
        self._send_signal(signum)

    send.__name__ = method_name
    send.__qualname__ = 'Popen.' + method_name
    send.__doc__ = 'Send %s to the child (nothing if it was reaped already).' % signal_name
    return send


class Popen:
    method = 'fork'

    # Until the child is started and attached: no exit code, nothing to release.
    returncode = None
    finalizer = None
    _child = None

    def __init__(self, process_obj):
        util._flush_std_streams()  # or the child writes the parent's buffers again
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
        """A forked child inherits every descriptor as it is."""
        return fd

    # ---- supervision ---------------------------------------------------------------------

    def _supervise(self, pid, *fds_to_close):
        """Watch the child pid: its pidfd becomes the sentinel. fds_to_close
        are closed with it when this object is closed or collected."""
        self._prepare_supervision(*fds_to_close)
        self._attach(pid)

    def _prepare_supervision(self, *fds_to_close):
        # Made before fork() by the fork start method: in the parent, every
        # object made after it costs copy-on-write faults while the child
        # starts (tests_py/bench/NOTES.md, "Start-up of children").
        self._child = _Child()
        self.finalizer = util.Finalize(self, _release, (self._child,) + fds_to_close)

    def _attach(self, pid):
        self.pid = pid
        try:
            self._child.attach(pid)
        except BaseException:
            self.finalizer()  # closes fds_to_close
            raise
        self.sentinel = self._child.pidfd

    def _wait(self, timeout):
        child = self._child
        if child is None:
            return
        status = _gomp.proc_reap(child, timeout)
        # STATUS_LOST: other code reaped the child (a waitpid(-1) elsewhere):
        # its exit code is gone and stays None, as the stdlib reports it.
        if status is not None and status != _gomp.STATUS_LOST:
            self.returncode = status

    def wait(self, timeout=None):
        """The exit code, waiting up to timeout seconds (None: until the
        child exits); None if it is still running."""
        if self.returncode is None:
            self._wait(timeout)
        return self.returncode

    def poll(self, flag=os.WNOHANG):
        """The exit code if the child exited, else None (with flag 0: wait)."""
        return self.wait(0 if flag == os.WNOHANG else None)

    def _send_signal(self, sig):
        child = self._child
        if self.returncode is not None or child is None or child.pidfd is None:
            return  # reaped, never started or released: its pid may be another's now
        try:
            _signal.pidfd_send_signal(child.pidfd, sig)
        except ProcessLookupError:
            pass  # exited, not reaped yet

    interrupt = _signalling('interrupt', 'SIGINT')
    terminate = _signalling('terminate', 'SIGTERM')
    kill = _signalling('kill', 'SIGKILL')

    def close(self):
        """Release the pidfd and the descriptors kept for the child."""
        finalizer = self.finalizer
        if finalizer is not None:
            finalizer()

    # ---- start ---------------------------------------------------------------------------

    def _launch(self, process_obj):
        code = 1
        util._prepare_child_stdin()
        # The child watches its parent through child_r: end of file when the
        # parent (which holds parent_w) is gone.
        child_r, parent_w = os.pipe()
        self._prepare_supervision(parent_w)
        try:
            pid = _fork()
        except BaseException:
            self.finalizer()
            os.close(child_r)
            raise
        if pid == 0:
            try:
                util._forked_child_begins()
                os.close(parent_w)
                code = process_obj._bootstrap(parent_sentinel=child_r)
            finally:
                util._forked_child_ends()
                os._exit(code)
        os.close(child_r)
        self._attach(pid)


class _Child:
    """The supervision record of one child (kept apart from Popen so that its
    finalizer does not keep the Popen alive): its pidfd, its token with the
    reaper thread, and its exit status once reaped (set by proc_reap)."""

    __slots__ = ('pidfd', 'token', 'status')

    def __init__(self):
        self.pidfd = self.token = self.status = None

    def attach(self, pid):
        pidfd = _gomp.pidfd_open(pid)
        try:
            self.token = _gomp.proc_supervise(pidfd)
        except BaseException:
            os.close(pidfd)
            raise
        self.pidfd = pidfd


def _release(child, *fds):
    _gomp.proc_release(child)
    pidfd, child.pidfd = child.pidfd, None
    if pidfd is not None:  # None: the child was never attached (fork failed)
        os.close(pidfd)
    util.close_fds(*fds)


# Python 3.12+ warns when a process with other threads forks.
_FORK_WARNS = V.fork_warns_threaded


def _fork():
    """os.fork(), without the warning of Python 3.12+ about forking a
    multi-threaded process when the only other threads are the Go runtime's:
    gomp's fork path is built for exactly that case (the child never calls
    the inherited runtime; it loads a fresh one). With other Python threads
    alive the warning is the user's to see, as with the stdlib."""
    # The child is a Process: it keeps using this process's resource tracker
    # (the tracker's at-fork handler lets go of it only in other children).
    tracker = sys.modules.get(__package__ + '.resource_tracker')
    intent = tracker._fork_intent if tracker is not None else None
    if intent is not None:
        intent.preserve_fd = True
    try:
        if not _FORK_WARNS or threading.active_count() > 1:
            return os.fork()
        with warnings.catch_warnings():
            warnings.filterwarnings(
                'ignore', category=DeprecationWarning, message=r'.*multi-threaded.*fork'
            )
            return os.fork()
    finally:
        if intent is not None:
            intent.preserve_fd = False
