"""Process start+join, gomp against the stdlib, interleaved in one run.

  no-op child        start() + join() of a child that does nothing
  child using pipe   the child sends one object on a Pipe made by the parent
                     (for gomp: the child's first core call loads a fresh
                     Go runtime)

for the fork, spawn and forkserver start methods (milliseconds per child,
lower is better; ratio = stdlib / gomp, above 1 means gomp is faster).

Each measurement runs in a fresh interpreter that imports only the
implementation measured: what a parent has loaded changes the cost of every
fork (a Go runtime in it costs each fork about 0.25 ms in the parent and
0.4 ms in the child), so the stdlib is not measured in a process that has
gomp's core loaded, nor the other way round. The runs still alternate
(stdlib, gomp, gomp, stdlib, ...) within one run of this script."""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import interleave  # noqa: E402


def noop():
    pass


def send_one(conn):
    conn.send(1)


def measure(impl, method, use_pipe, n):
    """In this (fresh) interpreter: ms per start+join, after one child that
    starts the fork server / resource tracker."""
    if impl == "stdlib":
        import multiprocessing as mp
    else:
        import gomp as mp
    ctx = mp.get_context(method)
    p = ctx.Process(target=noop)
    p.start()
    p.join()
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


def start_join(impl, method, use_pipe, n):
    out = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            impl,
            method,
            str(int(use_pipe)),
            str(n),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    return float(out.stdout.split()[-1])


def main():
    if sys.argv[1:2] == ["--worker"]:
        impl, method, use_pipe, n = sys.argv[2:6]
        print(measure(impl, method, use_pipe == "1", int(n)))
        return
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    cases = []
    for method, n in (("fork", 100), ("forkserver", 40), ("spawn", 10)):
        cases.append(
            ("%s no-op child" % method, lambda i, m=method, n=n: start_join(i, m, False, n))
        )
        cases.append(
            ("%s child using a pipe" % method, lambda i, m=method, n=n: start_join(i, m, True, n))
        )
    print("Process start+join (ms per child, lower is better; ratio = stdlib/gomp)")
    interleave(cases, ["stdlib", "gomp"], rounds=rounds, higher_is_better=False, unit="ms")


if __name__ == "__main__":
    main()
