"""What GOMP_AS_MULTIPROCESSING=1 costs, interleaved in one run:

CPU milliseconds (user + system of the interpreters measured), and for the
spawned child also the wall time of start() + join().

  interpreter start   `python -c pass`, a program that never uses
                      multiprocessing: without the variable ("stdlib") and
                      with it ("alias": gomp.pth installs the alias at start).
                      The alias should add at most a few milliseconds.
  import              `python -c "import multiprocessing"`: the stdlib's
                      package, and gomp's under the alias.
  spawn child start   start() + join() of a no-op child with the spawn start
                      method, from a program that imports multiprocessing:
                      the stdlib's, gomp's under the alias, and gomp imported
                      as itself (`import gomp as multiprocessing`, no alias).

Milliseconds, lower is better; ratio = stdlib / other, above 1 means faster
than the stdlib. Every measurement runs in a fresh interpreter."""

import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import interleave  # noqa: E402

ALIAS = "GOMP_AS_MULTIPROCESSING"


def env_for(impl):
    env = dict(os.environ)
    env.pop(ALIAS, None)
    if impl == "alias":
        env[ALIAS] = "1"
    return env


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def interpreter_ms(impl, code, n):
    """Median of n runs of `python -c code`: the CPU time (user + system) of
    the interpreter, in ms. CPU time rather than wall time: a start takes
    milliseconds, and on a loaded machine the wait for a CPU adds tens."""
    env = env_for(impl)
    cmd = [sys.executable, "-c", code]
    times = []
    for _ in range(n):
        c0 = children_cpu()
        subprocess.run(cmd, env=env, check=True)
        times.append(children_cpu() - c0)
    return statistics.median(times) * 1e3


def noop():
    pass


def measure_spawn(impl, n):
    """In a fresh interpreter: (wall ms per start+join of a spawned no-op
    child, CPU ms of each child)."""
    if impl == "gomp":
        import gomp as mp
    else:
        import multiprocessing as mp
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=noop)
    p.start()  # the first one also starts the resource tracker
    p.join()
    t0 = time.perf_counter()
    c0 = children_cpu()
    for _ in range(n):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    return (time.perf_counter() - t0) / n * 1e3, (children_cpu() - c0) / n * 1e3


def spawn_ms(impl, n, which):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", impl, str(n)],
        env=env_for(impl),
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    return float(out.stdout.split()[-2 + which])


def main():
    if sys.argv[1:2] == ["--worker"]:
        impl, n = sys.argv[2], int(sys.argv[3])
        import multiprocessing

        expected = "gomp" if impl == "alias" else "multiprocessing"
        assert multiprocessing.__name__ == expected, multiprocessing.__name__
        print(*measure_spawn(impl, n))
        return
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    print("GOMP_AS_MULTIPROCESSING (ms, lower is better; ratio = stdlib/other)")
    interleave(
        [
            ("interpreter start (-c pass)", lambda i: interpreter_ms(i, "pass", 20)),
            ("import multiprocessing", lambda i: interpreter_ms(i, "import multiprocessing", 10)),
        ],
        ["stdlib", "alias"],
        rounds=rounds,
        higher_is_better=False,
        unit="ms",
    )
    interleave(
        [
            ("spawn child start+join (wall)", lambda i: spawn_ms(i, 10, 0)),
            ("spawned child (CPU)", lambda i: spawn_ms(i, 10, 1)),
        ],
        ["stdlib", "alias", "gomp"],
        rounds=rounds,
        higher_is_better=False,
        unit="ms",
    )


if __name__ == "__main__":
    main()
