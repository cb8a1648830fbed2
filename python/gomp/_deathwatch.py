"""Processes that must not outlive their owner.

gomp starts some processes only to serve another one: a Pool's workers, a
manager's server (BaseManager.start()), the fork server. Their **owner** is
the process that started them (for a pool worker, the process that owns the
Pool, even under forkserver, where the worker's parent is the fork server).
When the owner exits normally it stops them itself; when it dies of a signal
(SIGKILL, or a SIGTERM it does not handle) nothing runs there, and with
nothing else watching they would live on, each waiting for work that never
comes. So each of them follows its owner: through a pidfd of the owner,
which becomes readable the moment the owner has exited, or, for a pool worker
whose parent is the owner, through the kernel's parent-death signal:

- a pool worker has itself sent SIGTERM when the owner is gone, as
  Pool.terminate() would, and SIGKILL a second later if it still runs; the
  worker's own waits are untouched, so nothing is paid per task and no Go
  runtime is loaded. A worker whose parent is its owner (fork, spawn) asks
  the kernel for a signal at its parent's death (_gomp.owner_watch_parent:
  no thread, so nothing to start and nothing to end at exit); a worker of
  the fork server hands the pidfd to a C thread that waits on it
  (_gomp.owner_watch);
- the fork server and a manager's server add the pidfd to what they already
  wait on, and shut down as if asked to (a SharedMemoryManager's server
  still unlinks its segments).

The resource tracker is not among them: it removes what its users leaked
once the last of them has gone, and the processes above, which used to hold
it open after their owner's death, now end with it.

An owner is named by its pid and its start time (field 22 of /proc/PID/stat,
in clock ticks since boot), so that a child that starts after its owner died
never follows another process that got the same pid.
"""

import os

__all__ = ['identity', 'open_owner', 'follow']

_identity = None  # (pid, start time) of this process, once asked for


def _start_time(pid):
    """The start time of process pid (clock ticks since boot), from
    /proc/PID/stat: OSError if it cannot be read."""
    with open('/proc/%d/stat' % pid, 'rb') as f:
        stat = f.read()
    # The command name (field 2) may hold spaces and parentheses: the fields
    # after it start after the last ')', with field 3 (the state).
    fields = stat[stat.rindex(b')') + 1 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        raise OSError('unexpected contents of /proc/%d/stat' % pid) from None


def identity():
    """This process as an owner: (pid, start time), the start time None if
    /proc cannot tell it (then the pid alone names the owner)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:  # made before a fork: the parent's
        try:
            start = _start_time(pid)
        except OSError:
            start = None
        _identity = (pid, start)
    return _identity


def open_owner(owner):
    """A pidfd of owner (an identity()), or None if the owner has exited
    already. OSError if this system cannot watch a process (no pidfds)."""
    pid, start = owner
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except AttributeError:
        raise OSError('no pidfd_open on this system') from None
    if start is None or os.getppid() == pid:
        # The owner is our parent (fork, spawn) and still is, so the pidfd,
        # opened before, is the owner's: no need to read /proc (a tenth of
        # a millisecond in a newly forked child).
        return fd
    # The pidfd names whatever process has the pid now: if its start time
    # is not the owner's, the owner died and the pid went to another. (The
    # pidfd was opened first: should the owner die after this check, it is
    # the owner's pidfd that becomes readable.)
    try:
        same = _start_time(pid) == start
    except OSError:
        same = False  # gone (reaped) since pidfd_open
    if not same:
        os.close(fd)
        return None
    return fd


def follow(owner, signum, grace=1.0):
    """Have this process sent signum when owner exits (and SIGKILL grace
    seconds later, if it still runs). Returns False if the owner has exited
    already (nothing is sent then: the caller should end); True otherwise,
    also where the owner cannot be watched (no pidfds), which is left as it
    was before gomp watched owners."""
    from . import _gomp

    if owner[0] == os.getppid():
        # The owner is our parent (fork, spawn): the kernel's parent-death
        # signal serves, without a thread (see _gomp.owner_watch_parent).
        try:
            return _gomp.owner_watch_parent(owner[0], signum, grace)
        except OSError:
            pass  # refused: watch through a pidfd and a thread instead
    try:
        fd = open_owner(owner)
    except OSError:
        return True
    if fd is None:
        return False
    try:
        _gomp.owner_watch(fd, signum, grace)
    except OSError:
        pass  # no thread to be had: the process goes on unwatched
    finally:
        os.close(fd)
    return True
