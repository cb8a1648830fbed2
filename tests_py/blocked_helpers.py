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
import sys

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


# poll(2) and ppoll(2): both take the pollfd array and its length first. A
# gomp connection waits in one of them (the C extension's poll between
# slices, or the core's); which one depends on the libc and Go's x/sys.
_POLLS = {
    "x86_64": (7, 271),
    "aarch64": (73,),
    "ppc64le": (167, 281),
    "s390x": (168, 302),
}.get(platform.machine(), ())

POLLIN, POLLOUT = 0x1, 0x4


def polled_fds(pid, tid=None):
    """What thread tid of process pid (its main thread if tid is None) is
    asleep polling for, as {fd: events}; None if it is not asleep in poll or
    ppoll. The pollfd array is read from the process's memory (this needs
    the right to trace it: our own children, or root)."""
    if not _POLLS:
        raise RuntimeError("poll system call numbers unknown on " + platform.machine())
    tid = pid if tid is None else tid
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            fields = f.read().split()
        if not fields or not fields[0].isdigit() or int(fields[0]) not in _POLLS:
            return None
        if _state(pid, tid) != "S":
            return None
        addr, nfds = int(fields[1], 16), int(fields[2], 16)
        if not 0 < nfds <= 1024:
            return None
        with open("/proc/%d/mem" % pid, "rb") as mem:
            mem.seek(addr)
            raw = mem.read(8 * nfds)
    except (FileNotFoundError, ProcessLookupError, OSError):
        return None  # gone, or it left the call while we read
    # struct pollfd {int fd; short events; short revents;}
    return {
        int.from_bytes(raw[i : i + 4], sys.byteorder, signed=True): int.from_bytes(
            raw[i + 4 : i + 6], sys.byteorder
        )
        for i in range(0, len(raw), 8)
    }


def polls_for(pid, fd, events, tid=None):
    """Whether the thread is asleep in poll waiting for `events` (POLLIN,
    POLLOUT) on descriptor fd: a connection's recv or send that blocks."""
    got = polled_fds(pid, tid)
    return bool(got) and bool(got.get(fd, 0) & events)


def signal_when(predicate, signum, what="the call to block", timeout=60):
    """Send signum to this process from a daemon thread as soon as
    predicate() is true (say, once the main thread is asleep in the call a
    test interrupts), so the signal cannot land before the call starts. If
    it never is within `timeout` seconds (a hang guard), the process exits
    with status 97 saying so. Returns the thread."""
    import threading
    import time

    def run():
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                sys.stderr.write("hung: %s never happened in %s s\n" % (what, timeout))
                sys.stderr.flush()
                os._exit(97)
            time.sleep(0.005)
        os.kill(os.getpid(), signum)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def threads_blocked_in_shared_futex(pid):
    """The ids of the threads of process pid that wait in a futex on a word
    of a shared mapping (blocked_in_shared_futex), any thread: a queue's
    overflow is fed by a goroutine, which waits for room on a thread of the
    Go runtime, not on the caller's."""
    try:
        tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [tid for tid in tids if blocked_in_shared_futex(pid, tid)]


def private_dirty_kib(pid):
    """How much memory process pid has written of its own (Private_Dirty,
    KiB): it grows while a consumer copies a large item out of a queue, so
    it tells a get that has started receiving from one still waiting.
    None once the process is gone."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Private_Dirty:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def dead(pid):
    """Whether process pid has died: a zombie (its descriptors closed, its
    parent not told yet) or gone. A SIGKILL only starts that."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


# write, writev, sendto, sendmsg: a blocking send sleeps in one of them.
_WRITES = {"x86_64": (1, 20, 44, 46), "aarch64": (64, 66, 206, 211)}.get(platform.machine(), ())


def waits_to_send(pid, fd, tid=None):
    """Whether the thread waits for room to send on descriptor fd: asleep in
    poll for POLLOUT on it, or in a blocking write to it (the core writes
    with a blocking writev where a non-blocking one is refused)."""
    if polls_for(pid, fd, POLLOUT, tid):
        return True
    tid = pid if tid is None else tid
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            fields = f.read().split()
        return (
            len(fields) > 1
            and fields[0].isdigit()
            and int(fields[0]) in _WRITES
            and int(fields[1], 16) == fd
            and _state(pid, tid) == "S"
        )
    except (FileNotFoundError, ProcessLookupError, OSError):
        return False
