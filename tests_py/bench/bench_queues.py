"""Queue benchmarks: gomp against the stdlib and faster-fifo, interleaved in
one run (A, B, C, C, B, A, ...).

  1p->1c ints        one producer process puts N small ints, the parent gets
                     them (items/s, higher is better)
  4p->1c ints        four producer processes, N/4 each
  1p->1c tuples      (i, "item", 2.5) tuples
  1p->1c 64 KiB      bytes items of 64 KiB (bytes/s)
  ping-pong          the parent puts into q1, a child echoes into q2
                     (microseconds per round trip, lower is better)
  SimpleQueue ints   1 producer, gomp and stdlib only

Every implementation runs with the fork start method and its own Process.
faster-fifo (pip install faster-fifo) is measured when it is installed, with
a 1 MiB buffer like gomp's ring; it is bounded by bytes, so its producers
block when it is full, where gomp's and the stdlib's never do. The producers
wait at a pipe until every one has started, and the clock runs from their
release to the last item got. Ratios are against the stdlib: above 1 means
better than the stdlib."""

import multiprocessing as std
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import interleave  # noqa: E402

import gomp  # noqa: E402

try:
    import faster_fifo
except ImportError:
    faster_fifo = None

RING = 1 << 20


def make_queue(impl):
    if impl == "gomp":
        return gomp.get_context("fork").Queue()
    if impl == "stdlib":
        return std.get_context("fork").Queue()
    return faster_fifo.Queue(max_size_bytes=RING)


def process_class(impl):
    if impl == "gomp":
        return gomp.get_context("fork").Process
    return std.get_context("fork").Process


def producer(q, gate, n, item):
    os.read(gate, 1)
    put = q.put
    if item is None:
        for i in range(n):
            put(i)
    else:
        for _ in range(n):
            put(item)


def throughput(impl, nprod, n, item=None, simple=False):
    if simple:
        q = (gomp.get_context("fork") if impl == "gomp" else std.get_context("fork")).SimpleQueue()
    else:
        q = make_queue(impl)
    r, w = os.pipe()
    Proc = process_class(impl)
    procs = [Proc(target=producer, args=(q, r, n // nprod, item)) for _ in range(nprod)]
    for p in procs:
        p.start()
    time.sleep(0.05)
    get = q.get
    total = (n // nprod) * nprod
    t0 = time.perf_counter()
    os.write(w, b"x" * nprod)
    for _ in range(total):
        get()
    dt = time.perf_counter() - t0
    for p in procs:
        p.join()
    os.close(r)
    os.close(w)
    if hasattr(q, "close"):
        q.close()
    if hasattr(q, "join_thread"):
        q.join_thread()
    size = len(item) if isinstance(item, bytes) else 1
    return total * size / dt


def echo(q1, q2):
    get, put = q1.get, q2.put
    while True:
        x = get()
        if x is None:
            return
        put(x)


def ping_pong(impl, n=5000):
    q1, q2 = make_queue(impl), make_queue(impl)
    p = process_class(impl)(target=echo, args=(q1, q2))
    p.start()
    for i in range(200):
        q1.put(i)
        q2.get()
    t0 = time.perf_counter()
    for i in range(n):
        q1.put(i)
        q2.get()
    dt = time.perf_counter() - t0
    q1.put(None)
    p.join()
    return dt / n * 1e6


def main():
    quick = "--quick" in sys.argv
    rounds = 3 if quick else 5
    scale = 4 if quick else 1
    impls = ["stdlib", "gomp"] + (["faster-fifo"] if faster_fifo else [])
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    if not faster_fifo:
        print("(faster-fifo is not installed: pip install faster-fifo)")
    res = {}
    res.update(
        interleave(
            [
                ("1p->1c ints", lambda i: throughput(i, 1, 200000 // scale)),
                ("4p->1c ints", lambda i: throughput(i, 4, 200000 // scale)),
                ("1p->1c tuples", lambda i: throughput(i, 1, 100000 // scale, (1, "item", 2.5))),
                ("1p->1c 64 KiB bytes", lambda i: throughput(i, 1, 2000 // scale, b"x" * 65536)),
            ],
            impls,
            rounds=rounds,
            unit="items/s or B/s",
        )
    )
    res.update(
        interleave(
            [
                ("ping-pong via two queues", lambda i: ping_pong(i, 5000 // scale)),
            ],
            impls,
            rounds=rounds,
            higher_is_better=False,
            unit="us",
        )
    )
    res.update(
        interleave(
            [
                (
                    "SimpleQueue 1p->1c ints",
                    lambda i: throughput(i, 1, 200000 // scale, simple=True),
                ),
            ],
            ["stdlib", "gomp"],
            rounds=rounds,
            unit="items/s",
        )
    )
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    return res


if __name__ == "__main__":
    main()
