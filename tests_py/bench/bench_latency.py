"""Latencies of gomp's core that the design depends on:

  fork rebirth   time from fork() in the parent to the end of the child's
                 first call into the Go core (which loads a fresh runtime);
                 against a child that never touches the core
  Ctrl-C         time from SIGINT to KeyboardInterrupt in a main thread
                 blocked in Connection.recv() (the core waits in slices)"""

import os
import signal
import statistics
import struct
import sys
import threading
import time

import gomp
from gomp import _gomp


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def report(name, ms):
    print("%-44s median %6.2f ms  p90 %6.2f ms  max %6.2f ms  (n=%d)"
          % (name, statistics.median(ms), pct(ms, 0.9), max(ms), len(ms)), flush=True)


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


def sigint_latency(n):
    a, b = gomp.Pipe()
    out = []
    for _ in range(n):
        sent = []

        def fire():
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        t = threading.Timer(0.05, fire)
        t.start()
        try:
            b.recv()
        except KeyboardInterrupt:
            out.append((time.monotonic() - sent[0]) * 1e3)
        t.join()
    a.close()
    b.close()
    return out


def main():
    n = int(os.environ.get("BENCH_N", "100"))
    _gomp._core_load()  # the parent's runtime is running, as in real use
    report("fork -> exit, child never calls the core", fork_latency(n, False))
    report("fork -> first core call done (rebirth)", fork_latency(n, True))
    report("SIGINT -> KeyboardInterrupt in recv()", sigint_latency(max(20, n // 3)))


if __name__ == "__main__":
    main()
