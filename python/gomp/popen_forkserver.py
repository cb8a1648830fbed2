"""Start a child process through the fork server."""

import io
import os
import signal

from .context import reduction, set_spawning_popen

if not reduction.HAVE_SEND_HANDLE:
    raise ImportError('No support for sending fds between processes')

from . import forkserver
from . import popen_fork
from . import spawn
from . import util

__all__ = ['Popen']


class _DupFd(object):
    """An fd pickled for a fork server child: its index among the fds sent
    to the server with the request."""

    def __init__(self, ind):
        self.ind = ind

    def detach(self):
        return forkserver.get_inherited_fds()[self.ind]


class Popen(popen_fork.Popen):
    """A child of the fork server. It is not our child, so it cannot be
    reaped here: the server reports its pid and exit code through the status
    pipe, which is the sentinel."""

    method = 'forkserver'
    DupFd = _DupFd

    def __init__(self, process_obj):
        self._fds = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd):
        self._fds.append(fd)
        return len(self._fds) - 1

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)

        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        # Keep a copy of the data pipe: the child sees end of file on it when
        # this parent is gone.
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, 'wb', closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            self._wait(0 if flag == os.WNOHANG else None)
        return self.returncode

    def _wait(self, timeout):
        from .connection import wait
        if not wait([self.sentinel], timeout):
            return
        try:
            self.returncode = forkserver.read_signed(self.sentinel)
        except (OSError, EOFError):
            # The server died before the child did: its code is unknown.
            self.returncode = 255

    def _send_signal(self, sig):
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            except OSError:
                if self.wait(timeout=0.1) is None:
                    raise
