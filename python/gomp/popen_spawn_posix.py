"""Start a child process in a fresh interpreter (the spawn method).

The child is exec'd with exactly the descriptors it needs (the data pipe,
the resource tracker's pipe, and any descriptor pickled with the Process
object), so it is supervised like a forked child: through its pidfd (see
popen_fork)."""

import os

from . import popen_fork, spawn, util

__all__ = ['Popen']


class _DupFd:
    """A descriptor pickled for a spawned child: the child inherits it under
    the same number, so the number is all that travels."""

    __slots__ = ('fd',)

    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


def _write_all(fd, data):
    """Write all of data to the pipe fd (os.write may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Popen(popen_fork.Popen):
    method = 'spawn'
    DupFd = _DupFd

    def _launch(self, process_obj):
        from . import resource_tracker

        tracker_fd = resource_tracker.getfd()
        # Descriptors the child inherits besides the two pipes: collected
        # while the Process object is pickled (duplicate_for_child).
        self._fds = []
        payload = spawn.child_payload(self, process_obj)
        child_r, parent_w = os.pipe()
        try:
            pid = util.spawnv_passfds(
                spawn.get_executable(),
                spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r),
                self._fds + [tracker_fd, child_r],
            )
            # parent_w now belongs to the supervision: it stays open while
            # this Popen lives, and the child reads end of file from its end
            # of the pipe once the parent is gone.
            self._supervise(pid, parent_w)
        except BaseException:
            if self.finalizer is None:  # nobody took parent_w over
                os.close(parent_w)
            raise
        finally:
            os.close(child_r)
        _write_all(parent_w, payload)

    def duplicate_for_child(self, fd):
        self._fds.append(fd)
        return fd
