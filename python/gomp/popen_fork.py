"""Start a child process with fork().

The child is supervised through a pidfd: it is the sentinel (readable once
the child exits, usable with wait() and select), signals are sent through
it (so a recycled pid can never be hit), and gomp's Go core reaps the child
the moment it exits, so no zombie is left behind even if nobody joins."""

import os
import signal
import sys
import threading
import warnings

from . import _gomp
from . import util

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
        self.pid = pid
        self._child = _Child(pid)
        self.sentinel = self._child.pidfd
        self.finalizer = util.Finalize(self, _release, (self._child,) + fds_to_close)

    def _wait(self, timeout):
        child = self._child
        if child is None or child.token is None:
            return
        try:
            status = _gomp.proc_wait(child.token, child.pidfd, timeout)
        except ChildProcessError:
            # Another thread joining this child got the status first: it sets
            # returncode before it forgets the token.
            if self.returncode is not None or child.token is None:
                return
            raise
        if status is None:
            return
        if status != _gomp.STATUS_LOST:
            self.returncode = status
        # Otherwise other code reaped the child (a waitpid(-1) elsewhere): its
        # exit code is gone and stays None, as the stdlib reports it.
        child.forget()

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
                signal.pidfd_send_signal(self._child.pidfd, sig)
            except ProcessLookupError:
                pass  # it exited already

    def interrupt(self):
        self._send_signal(signal.SIGINT)

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def close(self):
        if self.finalizer is not None:
            self.finalizer()

    # ---- start ---------------------------------------------------------------------------

    def _launch(self, process_obj):
        code = 1
        # The child watches its parent through child_r: end of file when the
        # parent (which holds parent_w) is gone.
        child_r, parent_w = os.pipe()
        try:
            pid = _fork()
        except BaseException:
            os.close(child_r)
            os.close(parent_w)
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
        try:
            self._supervise(pid, parent_w)
        except BaseException:
            os.close(parent_w)
            raise


class _Child(object):
    """The supervision record of one child: its pidfd and reaper token (kept
    apart from Popen so that its finalizer does not keep the Popen alive)."""

    __slots__ = ('pidfd', 'token')

    def __init__(self, pid):
        self.pidfd = _gomp.pidfd_open(pid)
        try:
            self.token = _gomp.proc_watch(pid, self.pidfd)
        except BaseException:
            os.close(self.pidfd)
            raise

    def forget(self):
        if self.token is not None:
            _gomp.proc_forget(self.token)
            self.token = None


def _release(child, *fds):
    child.forget()
    pidfd, child.pidfd = child.pidfd, None
    util.close_fds(pidfd, *fds)


# Python 3.12+ warns when a process with other threads forks.
_FORK_WARNS = sys.version_info >= (3, 12)


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
