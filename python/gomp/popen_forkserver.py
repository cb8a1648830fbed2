"""Start a child process through the fork server (the forkserver method).

The child is the server's child, not ours, so only the server can wait for
it. The server reports the child's pid, and its exit code when it has ended,
on the status pipe, and that pipe is the child's sentinel.
"""

import os

from . import forkserver, popen_fork, spawn, util
from .context import reduction

if not reduction.HAVE_SEND_HANDLE:
    raise ImportError('No support for sending fds between processes')

__all__ = ['Popen']


class _InheritedFd(int):
    """A descriptor pickled for a fork server child: its position among the
    descriptors sent to the server with the request for that child."""

    __slots__ = ()

    def detach(self):
        return forkserver.get_inherited_fds()[self]


class Popen(popen_fork.Popen):
    method = 'forkserver'
    DupFd = _InheritedFd

    def duplicate_for_child(self, fd):
        position = len(self._fds)
        self._fds.append(fd)
        return position

    def _launch(self, process_obj):
        # Pickled first: pickling collects (duplicate_for_child) the
        # descriptors that go with the request, in this order.
        self._fds = []
        start_data = spawn.child_payload(self, process_obj)
        self.sentinel, data_w = forkserver.connect_to_new_process(self._fds)
        # data_w stays open as long as this Popen: the child watches its end
        # of the pipe to learn that its parent is gone.
        self.finalizer = util.Finalize(self, util.close_fds, (data_w, self.sentinel))
        with open(data_w, 'wb', closefd=False) as pipe:
            pipe.write(start_data)
        self.pid = forkserver.read_signed(self.sentinel)

    def _wait(self, timeout):
        from .connection import wait

        if not wait([self.sentinel], timeout):
            return
        try:
            self.returncode = forkserver.read_signed(self.sentinel)
        except (OSError, EOFError):
            # The server ended before it could report the exit code.
            self.returncode = 255

    def _send_signal(self, sig):
        if self.returncode is not None:
            return
        try:
            os.kill(self.pid, sig)
        except OSError as e:
            # No such process: it has exited. Another error (EPERM) once
            # the child has exited concerns whoever reuses its pid, not us.
            if not isinstance(e, ProcessLookupError) and self.wait(timeout=0.1) is None:
                raise
