"""Where the start of a Pool goes: Pool(2) create + first task + close + join
(fork), split into the CPU of the pool's process and of its workers.

Three pools, interleaved in one run (harness.interleave):

  stdlib   multiprocessing.Pool
  gomp     gomp.Pool (tasks and results through rings in the Go core: each
           worker loads its own Go runtime at its first get)
  no-Go    gomp.Pool over pipe queues (gomp._pipe_queues: C only, so its
           workers never load a Go runtime) and without claims: not a
           product, the bound of what a worker that never enters Go would
           save (tests_py/bench/NOTES.md, "Pool start time")

Then the CPU of one gomp worker at each step of its start, read in the worker
(getrusage), medians over the workers of a few pools.

    python tests_py/bench/bench_pool_start.py [--quick]
"""

import multiprocessing as std
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import interleave  # noqa: E402

import gomp  # noqa: E402
from gomp import pool as gpool  # noqa: E402
from gomp._pipe_queues import PipeSimpleQueue  # noqa: E402


def inc(x):
    return x + 1


class NoGoPool(gpool.Pool):
    """A gomp Pool whose workers never enter the Go core."""

    def _setup_queues(self):
        self._inqueue = PipeSimpleQueue(ctx=self._ctx)
        self._outqueue = PipeSimpleQueue(ctx=self._ctx)


GCTX = gomp.get_context("fork")
MAKE = {
    "stdlib": std.get_context("fork").Pool,
    "gomp": GCTX.Pool,
    "no-Go": lambda n: NoGoPool(n, context=GCTX),
}
CPU = {impl: [] for impl in MAKE}


def cpu_ms(who):
    r = resource.getrusage(who)
    return (r.ru_utime + r.ru_stime) * 1e3


def cycle(impl):
    parent, children = cpu_ms(resource.RUSAGE_SELF), cpu_ms(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = MAKE[impl](2)
    p.apply(inc, (1,))
    p.close()
    p.join()
    wall = (time.perf_counter() - t0) * 1e3
    CPU[impl].append(
        (cpu_ms(resource.RUSAGE_SELF) - parent, cpu_ms(resource.RUSAGE_CHILDREN) - children)
    )
    return wall


def worker_steps(pools):
    """CPU (ms) of gomp workers at each step of their start, medians."""
    r, w = os.pipe()
    real = gpool._owned_worker

    def timed_worker(owner, inqueue, outqueue, *rest):
        marks = [cpu_ms(resource.RUSAGE_SELF)]
        gpool._deathwatch.follow(owner, 15)
        marks.append(cpu_ms(resource.RUSAGE_SELF))
        task = inqueue._get_task(rest[-1])
        marks.append(cpu_ms(resource.RUSAGE_SELF))
        if task is None:  # the other worker took both tasks
            return None
        job, i, func, args, kwds = task
        outqueue.put((job, i, (True, func(*args))))
        marks.append(cpu_ms(resource.RUSAGE_SELF))
        os.write(w, (" ".join("%.3f" % m for m in marks) + "\n").encode())
        return real(owner, inqueue, outqueue, *rest)

    gpool._owned_worker = timed_worker
    try:
        for _ in range(pools):
            p = GCTX.Pool(2)
            p.apply(inc, (1,))
            p.apply(inc, (2,))
            p.close()
            p.join()
    finally:
        gpool._owned_worker = real
    os.close(w)
    rows = []
    with os.fdopen(r) as f:
        for line in f:
            m = [float(x) for x in line.split()]
            rows.append([m[0], m[1] - m[0], m[2] - m[1], m[3] - m[2]])
    names = (
        "forked child until the worker function",
        "deathwatch (pidfd, watcher thread)",
        "first get: Go runtime load + wait",
        "first result put",
    )
    for k, name in enumerate(names):
        print("  %-40s %.2f ms CPU" % (name, statistics.median(row[k] for row in rows)))


def main():
    quick = "--quick" in sys.argv
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    for impl in MAKE:
        cycle(impl)  # warm up
        CPU[impl].clear()
    interleave(
        [("Pool(2) create + first task + close + join", cycle)],
        list(MAKE),
        rounds=9 if quick else 31,
        higher_is_better=False,
        unit="ms",
    )
    for impl, rows in CPU.items():
        print(
            "  %-7s CPU per cycle: pool's process %.2f ms, its 2 workers %.2f ms"
            % (
                impl,
                statistics.median(r[0] for r in rows),
                statistics.median(r[1] for r in rows),
            )
        )
    print("gomp worker, CPU by step of its start (medians):")
    worker_steps(4 if quick else 20)
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg(), flush=True)


if __name__ == "__main__":
    main()
