"""Seeing that a thread is blocked where a test wants it, from outside.

A test that kills, signals or wakes a call must first know the call is
waiting; a sleep only makes that likely. gomp's blocking calls (locks,
semaphores, conditions, queue joins and waits for room) end in a futex wait
on a word of a shared mapping, while a thread waiting for the GIL, or the
Go runtime parking a thread, waits on a private futex. So "in the futex
system call, on an address that lies in a shared mapping" tells the call we
test from a thread that merely waits to run.

Linux only: it reads /proc/PID/task/TID/syscall (the system call a sleeping
thread is in, with its arguments) and /proc/PID/maps."""

import os
import platform

# The futex system call's number (the kernel ABI of the machine).
_FUTEX = {"x86_64": 202, "aarch64": 98, "ppc64le": 221, "s390x": 238}.get(platform.machine())


def _shared_ranges(pid):
    ranges = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            span, perms = line.split()[:2]
            if "s" in perms:
                lo, hi = span.split("-")
                ranges.append((int(lo, 16), int(hi, 16)))
    return ranges


def futex_wait_address(pid, tid=None):
    """The address that thread tid of process pid (its main thread if tid is
    None) waits on in a futex system call, or None if it is not in one."""
    if _FUTEX is None:
        raise RuntimeError("futex system call number unknown on " + platform.machine())
    path = "/proc/%d/task/%d/syscall" % (pid, pid if tid is None else tid)
    try:
        with open(path) as f:
            fields = f.read().split()
    except (FileNotFoundError, ProcessLookupError):
        return None  # gone
    # "running", or the number and six arguments (and sp, pc)
    if not fields or fields[0] != str(_FUTEX):
        return None
    return int(fields[1], 16)


def blocked_in_shared_futex(pid, tid=None):
    """Whether the thread waits in a futex on a word of a shared mapping: a
    gomp primitive's wait (not the GIL's, nor the Go runtime's)."""
    addr = futex_wait_address(pid, tid)
    if addr is None:
        return False
    try:
        return any(lo <= addr < hi for lo, hi in _shared_ranges(pid))
    except (FileNotFoundError, ProcessLookupError):
        return False


def thread_blocked(thread):
    """blocked_in_shared_futex for a threading.Thread of this process."""
    return blocked_in_shared_futex(os.getpid(), thread.native_id)


def _state(pid, tid):
    with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def futex_key(pid, tid=None):
    """What thread tid of process pid sleeps on, as (device, inode, offset in
    the file) of a futex word in a shared mapping, the same in every process
    that maps the file wherever it maps it; None if the thread is not asleep
    in a futex wait on a shared word (a woken thread, runnable but not yet
    out of the system call, is not asleep)."""
    tid = pid if tid is None else tid
    addr = futex_wait_address(pid, tid)
    if addr is None:
        return None
    try:
        if _state(pid, tid) != "S":
            return None
        with open("/proc/%d/maps" % pid) as f:
            for line in f:
                span, perms, offset, dev, inode = line.split()[:5]
                lo, hi = (int(x, 16) for x in span.split("-"))
                if "s" in perms and lo <= addr < hi:
                    return (dev, int(inode), int(offset, 16) + addr - lo)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None
