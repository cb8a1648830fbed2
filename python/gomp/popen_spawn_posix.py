"""Start a child process in a fresh interpreter (the spawn method)."""

import io
import os

from . import popen_fork
from . import spawn
from . import util
from .context import reduction, set_spawning_popen

__all__ = ['Popen']


class _DupFd(object):
    """An fd pickled for a spawn child: the same number, passed at exec."""

    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


class Popen(popen_fork.Popen):
    method = 'spawn'
    DupFd = _DupFd

    def __init__(self, process_obj):
        self._fds = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd):
        self._fds.append(fd)
        return fd

    def _launch(self, process_obj):
        from . import resource_tracker
        tracker_fd = resource_tracker.getfd()
        self._fds.append(tracker_fd)
        prep_data = spawn.get_preparation_data(process_obj._name)
        fp = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, fp)
            reduction.dump(process_obj, fp)
        finally:
            set_spawning_popen(None)

        child_r, parent_w = os.pipe()
        try:
            cmd = spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
            self._fds.append(child_r)
            pid = util.spawnv_passfds(spawn.get_executable(), cmd, self._fds)
            # From here parent_w is closed with this Popen: the child sees end
            # of file on its end when the parent is gone.
            self._supervise(pid, parent_w)
        except BaseException:
            if self.finalizer is None:
                os.close(parent_w)
            raise
        finally:
            os.close(child_r)
        with open(parent_w, 'wb', closefd=False) as f:
            f.write(fp.getbuffer())
