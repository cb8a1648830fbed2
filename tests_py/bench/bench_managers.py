"""Manager benchmark, gomp against the stdlib, interleaved in one run.

A child process (fork) calls a proxy method of a manager's shared object in a
loop: dict set and get, list append, Value get (operations per second,
higher is better). Each library's child talks to its own library's manager
(the wire protocol is the same). Ratio = gomp/stdlib: above 1, gomp is
faster.

Where the scheduler puts the two processes decides most of the figure on a
small machine: on one CPU a call costs two context switches; on two CPUs,
an idle CPU's wake-up (tens of microseconds in a VM). BENCH_PIN=same or
BENCH_PIN=cross pins the server's threads to CPU 0 and the child to CPU 0 or
1 for the timed loop, to measure each case on purpose (NOTES.md, "Manager
proxy calls")."""

import multiprocessing as std
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import interleave  # noqa: E402

import gomp  # noqa: E402

IMPLS = {"stdlib": std.get_context("fork"), "gomp": gomp.get_context("fork")}
N = int(os.environ.get("BENCH_MANAGER_CALLS", "5000"))
PIN = os.environ.get("BENCH_PIN") or None  # None, "same" or "cross"

OPS = {
    "dict set": lambda d, l, v, i: d.__setitem__("k", i),
    "dict get": lambda d, l, v, i: d["k"],
    "list append": lambda d, l, v, i: l.append(i),
    "Value get": lambda d, l, v, i: v.value,
}


def _pin(server_pid, cpus):
    for tid in os.listdir("/proc/%d/task" % server_pid):
        os.sched_setaffinity(int(tid), cpus)


def child(op, d, l, v, w, server_pid):
    if PIN:
        _pin(server_pid, {0})
        os.sched_setaffinity(0, {0} if PIN == "same" else {1})
    fn = OPS[op]
    d["k"] = 0
    fn(d, l, v, 0)  # the connection to the server is made here, not timed
    t0 = time.perf_counter()
    for i in range(N):
        fn(d, l, v, i)
    w.send(N / (time.perf_counter() - t0))
    if PIN:
        _pin(server_pid, set(range(os.cpu_count())))


_managers = {}


def rate(impl, op):
    ctx = IMPLS[impl]
    d, l, v = _managers[impl][1:]
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=(op, d, l, v, w, _managers[impl][0]._process.pid))
    p.start()
    result = r.recv()
    p.join()
    l[:] = []
    return result


def main():
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    for impl, ctx in IMPLS.items():
        m = ctx.Manager()
        _managers[impl] = (m, m.dict(), m.list(), m.Value("i", 0))
    try:
        where = {None: "", "same": ", both on CPU 0", "cross": ", server CPU 0, child CPU 1"}[PIN]
        print(
            "Manager proxy calls from a child (ops/s, higher is better; ratio = gomp/stdlib%s)"
            % where
        )
        interleave(
            [("manager %s" % op, lambda i, o=op: rate(i, o)) for op in OPS],
            ["stdlib", "gomp"],
            rounds=rounds,
            unit="op/s",
        )
    finally:
        for m, *_ in _managers.values():
            m.shutdown()


if __name__ == "__main__":
    main()
