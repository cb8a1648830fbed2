"""Process start+join, gomp against the stdlib, interleaved in one run.

  no-op child        start() + join() of a child that does nothing
  child using pipe   the child sends one object on a Pipe made by the parent
                     (for gomp: the child's first core call loads a fresh
                     Go runtime)

for the fork, spawn and forkserver start methods (milliseconds per child,
lower is better; ratio = stdlib / gomp, above 1 means gomp is faster)."""

import multiprocessing as std
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gomp  # noqa: E402
from harness import interleave  # noqa: E402


def noop():
    pass


def send_one(conn):
    conn.send(1)


def start_join(impl, method, use_pipe, n):
    ctx = (std if impl == "stdlib" else gomp).get_context(method)
    a, b = ctx.Pipe()
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=send_one, args=(b,)) if use_pipe else ctx.Process(target=noop)
        p.start()
        if use_pipe:
            a.recv()
        p.join()
    dt = time.perf_counter() - t0
    a.close()
    b.close()
    return dt / n * 1e3


def main():
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    cases = []
    for method, n in (("fork", 100), ("forkserver", 40), ("spawn", 10)):
        # one child first: starts the fork server / resource tracker
        for impl in ("stdlib", "gomp"):
            start_join(impl, method, False, 1)
        cases.append(("%s no-op child" % method, lambda i, m=method, n=n: start_join(i, m, False, n)))
        cases.append(("%s child using a pipe" % method,
                      lambda i, m=method, n=n: start_join(i, m, True, n)))
    print("Process start+join (ms per child, lower is better; ratio = stdlib/gomp)")
    interleave(cases, ["stdlib", "gomp"], rounds=rounds, higher_is_better=False, unit="ms")


if __name__ == "__main__":
    main()
