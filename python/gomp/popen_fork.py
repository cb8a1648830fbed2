"""Start a child process with fork().

The child is supervised through a pidfd: it is the sentinel (readable once
the child exits, usable with wait() and select), signals are sent through
it (so a recycled pid can never be hit), and join() reaps the child through
it (waitid in C, no call into the Go core). A reaper thread in C is the
safety net: a child still unreaped shortly after it exited is reaped by it,
so no zombie is left behind even if nobody joins."""

import _signal  # not signal, whose enums a spawned child unpickling a _DupFd paid for
import os
import threading
import warnings

from . import _gomp
from . import util
from ._versions import V

__all__ = ['Popen']


class Popen(object):
    method = 'fork'

    def __init__(self, process_obj):
        util._flush_std_streams()
        self.returncode = None
        self.finalizer = None
        self._child = None
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
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
        # starts (measured: the finalizer alone took 95 us after a fork).
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

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            self._wait(0 if flag == os.WNOHANG else None)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self._wait(timeout)
        return self.returncode

    def _send_signal(self, sig):
        if self.returncode is None and self._child is not None and self._child.pidfd is not None:
            try:
                _signal.pidfd_send_signal(self._child.pidfd, sig)
            except ProcessLookupError:
                pass  # it exited already

    def interrupt(self):
        self._send_signal(_signal.SIGINT)

    def terminate(self):
        self._send_signal(_signal.SIGTERM)

    def kill(self):
        self._send_signal(_signal.SIGKILL)

    def close(self):
        if self.finalizer is not None:
            self.finalizer()

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


class _Child(object):
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
    if not _FORK_WARNS or threading.active_count() > 1:
        return os.fork()
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=DeprecationWarning,
                                message=r'.*multi-threaded.*fork')
        return os.fork()
