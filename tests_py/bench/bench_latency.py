"""Latencies of gomp's core that the design depends on:

  fork rebirth   time from fork() in the parent to the end of the child's
                 first call into the Go core (which loads a fresh runtime);
                 against a child that never touches the core
  Ctrl-C         time from SIGINT to KeyboardInterrupt in a main thread
                 blocked in Connection.recv(), Lock.acquire(), Queue.get()
                 and Connection.poll() (the waits run in slices)
  timeouts       how late a wait with a timeout returns past it
  reaper         time from a child's start to its reaping without a join

gomp's tests assert none of these (a test checks what happens, with a
generous hang guard); this is where their speed is watched."""

import os
import queue
import signal
import statistics
import struct
import threading
import time

import gomp
from gomp import _gomp


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def report(name, ms):
    print(
        "%-50s median %6.2f ms  p90 %6.2f ms  max %6.2f ms  (n=%d)"
        % (name, statistics.median(ms), pct(ms, 0.9), max(ms), len(ms)),
        flush=True,
    )


def fork_latency(n, touch_core):
    r, w = os.pipe()
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            if touch_core:
                _gomp._core_load()
            os.write(w, struct.pack("d", time.monotonic() - t0))
            os._exit(0)
        out.append(struct.unpack("d", os.read(r, 8))[0] * 1e3)
        os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    return out


def sigint_latency(n, block=None):
    """ms from SIGINT to KeyboardInterrupt in block() (default: recv() on an
    idle pipe) in the main thread."""
    a, b = gomp.Pipe()
    block = block or b.recv
    out = []
    for _ in range(n):
        sent = []

        def fire(sent=sent):
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        t = threading.Timer(0.05, fire)
        t.start()
        try:
            block()
        except KeyboardInterrupt:
            out.append((time.monotonic() - sent[0]) * 1e3)
        t.join()
    a.close()
    b.close()
    return out


def _get_empty(q, timeout):
    try:
        q.get(timeout=timeout)
    except queue.Empty:
        pass


def overshoot(n, wait, timeout=0.05):
    """ms by which wait(timeout), which times out, returns late."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        wait(timeout)
        out.append((time.monotonic() - t0 - timeout) * 1e3)
    return out


def reaping(n):
    """ms from a fork child's start() to the reaper having collected it
    (nobody joins; the reaper waits its grace period first)."""
    ctx = gomp.get_context("fork")
    out = []
    for _ in range(n):
        p = ctx.Process(target=os._exit, args=(0,))
        p.start()
        t0 = time.monotonic()
        while os.path.exists("/proc/%d" % p.pid):
            time.sleep(0.0005)
        out.append((time.monotonic() - t0) * 1e3)
        p.join()
    return out


def main():
    n = int(os.environ.get("BENCH_N", "100"))
    _gomp._core_load()  # the parent's runtime is running, as in real use
    report("fork -> exit, child never calls the core", fork_latency(n, False))
    report("fork -> first core call done (rebirth)", fork_latency(n, True))
    k = max(20, n // 3)
    report("SIGINT -> KeyboardInterrupt in recv()", sigint_latency(k))
    held = gomp.Lock()
    held.acquire()
    report("SIGINT -> KeyboardInterrupt in Lock.acquire()", sigint_latency(k, held.acquire))
    q = gomp.Queue()
    report("SIGINT -> KeyboardInterrupt in Queue.get()", sigint_latency(k, q.get))
    a, b = gomp.Pipe()
    report("SIGINT -> KeyboardInterrupt in poll(3600)", sigint_latency(k, lambda: b.poll(3600)))
    report(
        "late past the timeout: Lock.acquire(timeout=0.05)",
        overshoot(k, lambda t: held.acquire(timeout=t)),
    )
    report(
        "late past the timeout: Semaphore(0).acquire(0.05)",
        overshoot(k, lambda t: gomp.Semaphore(0).acquire(timeout=t)),
    )
    report(
        "late past the timeout: Queue.get(timeout=0.05)", overshoot(k, lambda t: _get_empty(q, t))
    )
    report("late past the timeout: poll(0.05)", overshoot(k, b.poll))
    report("child start -> reaped without join", reaping(k))


if __name__ == "__main__":
    main()
