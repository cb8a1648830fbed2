"""Pool benchmarks: gomp.Pool against the stdlib's multiprocessing.Pool,
interleaved in one run (A, B, B, A, ...), both with the fork start method and
2 workers, each pool created once and reused by every round.

  map 100k, default chunksize   pool.map(f, range(100000)), f(x) = x + 1
                                (tasks/s, higher is better)
  map 100k, chunksize=1         the same, one task per item
  imap_unordered 20k, cs=1      list(pool.imap_unordered(f, range(20000)))
  apply_async 20k + get         20000 apply_async, then every get()
  map 64 x 1 MiB                pool.map(same, 64 bytes objects of 1 MiB),
                                same(x) = x (argument bytes/s; each MiB
                                also comes back as the result)
  apply round trip              one pool.apply(f, (1,)) at a time
                                (microseconds, lower is better)
  create + close + join         Pool(2), close(), join() (ms, lower is better),
                                for fork, spawn and forkserver
  with Pool(2): map 10          with Pool(2) as p: p.map(f, range(10)) (the
                                terminate path of __exit__; ms)
  terminate, pending work       terminate() of a warm pool with 20 sleeping
                                tasks queued (ms)

The throughput cases and "create + first task + close + join" also run
concurrent.futures.ProcessPoolExecutor(2) ("futures", fork) and mpire's
WorkerPool(2) ("mpire", fork; skipped with a message when mpire is not
installed): each case with its closest call (executor.map with chunksize,
submit + result, WorkerPool.map / imap_unordered / apply_async).

The start and shutdown cases (create, first task, close, join, terminate) run
in one child interpreter per implementation ("start server"), which imports
only that implementation and has no other pool alive, still interleaved in
one run. A fork's cost grows with everything the forking process holds: in
the benchmark's own process every pool would be started by a process that
also holds the other implementations (gomp's Go runtime makes every fork in
that process dearer, the stdlib's included), the throughput cases' pools and
their memory, and mpire's kept-alive workers, which wake every 10 ms. Each
sample of these cases is the median of START_CYCLES cycles.

Ratios are against the stdlib: above 1 means better than the stdlib. The run
writes a chart of every case (tests_py/bench/pool.png, shown by the README)
when matplotlib is installed; --chart PATH writes it elsewhere. --start-only
runs the start and shutdown cases alone (no chart), --quick fewer rounds and
smaller throughput cases."""

import concurrent.futures as cf
import gc
import importlib
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import chart, interleave  # noqa: E402


def inc(x):
    return x + 1


# Imported by main() only. A spawned or forkserver child re-imports this
# module, and mpire imports the stdlib's multiprocessing (and more) with it:
# at the top it made every spawn child pay for mpire, and a gomp child for two
# multiprocessing packages.
mpire = None

MODULES = {"stdlib": "multiprocessing", "gomp": "gomp"}
POOLS = {}


def mod(impl):
    """The package of "stdlib" or "gomp", imported when first needed (a start
    server imports only its own)."""
    return importlib.import_module(MODULES[impl])


def fork_ctx(impl):
    return mod(impl).get_context("fork")


def new_pool(impl, kind="map"):
    """A pool of 2 workers (fork) of impl, started (mpire's for kind)."""
    if impl == "futures":
        ex = cf.ProcessPoolExecutor(2, mp_context=fork_ctx("stdlib"))
        ex.submit(inc, 0).result()
        return ex
    if impl == "mpire":
        wp = mpire.WorkerPool(n_jobs=2, start_method="fork", keep_alive=True)
        if kind == "map":
            wp.map(inc, range(10))
        elif kind == "imap_unordered":
            sum(1 for _ in wp.imap_unordered(inc, range(10), chunk_size=1))
        else:
            wp.apply_async(inc, (1,)).get()
        return wp
    return fork_ctx(impl).Pool(2)


def close_pool(impl, p):
    if impl == "futures":
        p.shutdown()
    elif impl == "mpire":
        p.terminate()
    else:
        p.close()
        p.join()


def pool(impl, kind="map"):
    # mpire's kept-alive workers serve one kind of call (a WorkerPool that ran
    # map() fails an apply_async() afterwards): one WorkerPool per kind.
    key = (impl, kind) if impl == "mpire" else (impl, "")
    if key not in POOLS:
        POOLS[key] = new_pool(impl, kind)
        if impl in MODULES:
            POOLS[key].map(inc, range(100))  # warm up
    return POOLS[key]


def map_rate(impl, n, chunksize=None, repeat=1):
    p = pool(impl)
    t0 = time.perf_counter()
    for _ in range(repeat):
        if impl == "futures":
            out = list(p.map(inc, range(n), chunksize=chunksize or max(1, n // 8)))
        elif impl == "mpire":
            out = p.map(inc, range(n), chunk_size=chunksize)
        else:
            out = p.map(inc, range(n), chunksize)
    dt = time.perf_counter() - t0
    assert out[-1] == n
    return n * repeat / dt


MIB = b"\x01" * (1 << 20)


def same(x):
    return x


def bytes_rate(impl, n):
    """pool.map(same, n arguments of 1 MiB): argument bytes per second (each
    MiB travels to a worker and back as the result)."""
    p = pool(impl)
    items = [MIB] * n
    t0 = time.perf_counter()
    out = p.map(same, items)
    dt = time.perf_counter() - t0
    assert len(out) == n and len(out[-1]) == len(MIB)
    return n * len(MIB) / dt


def imap_unordered_rate(impl, n):
    p = pool(impl, "imap_unordered")
    t0 = time.perf_counter()
    if impl == "futures":
        total = sum(1 for _ in cf.as_completed([p.submit(inc, i) for i in range(n)]))
    elif impl == "mpire":
        total = sum(1 for _ in p.imap_unordered(inc, range(n), chunk_size=1))
    else:
        total = sum(1 for _ in p.imap_unordered(inc, range(n)))
    dt = time.perf_counter() - t0
    assert total == n
    return n / dt


def apply_async_rate(impl, n):
    p = pool(impl, "apply_async")
    t0 = time.perf_counter()
    if impl == "futures":
        futures = [p.submit(inc, i) for i in range(n)]
        for f in futures:
            f.result()
    else:
        results = [p.apply_async(inc, (i,)) for i in range(n)]
        for r in results:
            r.get()
    return n / (time.perf_counter() - t0)


START_CYCLES = 5


def cycles(fn):
    """fn -> a case whose sample is the median of START_CYCLES runs of fn
    (a start takes milliseconds: single runs are noisy here)."""
    return lambda *args: statistics.median(fn(*args) for _ in range(START_CYCLES))


def close_pools():
    for (impl, _), p in POOLS.items():
        close_pool(impl, p)
    POOLS.clear()
    gc.collect()


@cycles
def create_first_task_join(impl):
    t0 = time.perf_counter()
    p = new_pool(impl)
    if impl in MODULES:
        p.apply(inc, (1,))
    close_pool(impl, p)
    return (time.perf_counter() - t0) * 1e3


def apply_latency(impl, n):
    p = pool(impl)
    for i in range(50):
        p.apply(inc, (i,))
    t0 = time.perf_counter()
    for i in range(n):
        p.apply(inc, (i,))
    return (time.perf_counter() - t0) / n * 1e6


@cycles
def create_close_join(impl, method="fork"):
    ctx = mod(impl).get_context(method)
    t0 = time.perf_counter()
    p = ctx.Pool(2)
    p.close()
    p.join()
    return (time.perf_counter() - t0) * 1e3


@cycles
def with_map(impl):
    t0 = time.perf_counter()
    with fork_ctx(impl).Pool(2) as p:
        p.map(inc, range(10))
    return (time.perf_counter() - t0) * 1e3


@cycles
def terminate_pending(impl):
    p = fork_ctx(impl).Pool(2)
    p.map(inc, range(4))
    p.map_async(time.sleep, [0.05] * 20, chunksize=1)
    t0 = time.perf_counter()
    p.terminate()
    dt = time.perf_counter() - t0
    p.join()
    return dt * 1e3


START_CASES = {
    "create_first_task_join": create_first_task_join,
    "create_close_join": create_close_join,
    "with_map": with_map,
    "terminate_pending": terminate_pending,
}


class StartServers:
    """A child interpreter per implementation that runs START_CASES on
    request (one line "case arg..." in, one figure out), so that each
    implementation starts its pools from a process that holds only itself."""

    def __init__(self, impls):
        self.procs = {
            impl: subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--start-server", impl],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for impl in impls
        }

    def case(self, name, *args):
        def run(impl):
            proc = self.procs[impl]
            proc.stdin.write(" ".join((name,) + args) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the start server of %s exited (code %s)" % (impl, proc.wait()))
            return float(line)

        return run

    def close(self):
        for proc in self.procs.values():
            proc.stdin.close()
        for proc in self.procs.values():
            proc.wait()


def serve_starts(impl):
    """The loop of a start server (see StartServers). Its figures go to the
    original stdout; the pools' processes write to stderr instead."""
    global mpire
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if impl == "mpire":
        import mpire
    create_first_task_join(impl)  # imports, and the first start's one-time costs
    for line in sys.stdin:
        name, *args = line.split()
        print(START_CASES[name](impl, *args), file=out, flush=True)


def throughput_sections(others, impls, rounds, scale):
    """The cases run on pools kept for the whole section (POOLS)."""
    sections = []
    res = interleave(
        [
            ("map 100k, default chunksize x10", lambda i: map_rate(i, 100000 // scale, repeat=10)),
            ("map 100k, chunksize=1", lambda i: map_rate(i, 100000 // scale, 1)),
            ("imap_unordered 20k, chunksize=1", lambda i: imap_unordered_rate(i, 20000 // scale)),
            ("apply_async 20k + get", lambda i: apply_async_rate(i, 20000 // scale)),
        ],
        others,
        rounds=rounds,
        unit="tasks/s",
    )
    sections.append((res, True))
    res = interleave(
        [("map 64 x 1 MiB", lambda i: bytes_rate(i, 64 // scale))],
        impls,
        rounds=rounds,
        unit="B/s",
    )
    sections.append((res, True))
    res = interleave(
        [("apply round trip", lambda i: apply_latency(i, 2000 // scale))],
        impls,
        rounds=rounds,
        higher_is_better=False,
        unit="us",
    )
    sections.append((res, False))
    close_pools()
    return sections


def start_sections(others, impls, rounds):
    """The start and shutdown cases, each implementation in its start server."""
    sections = []
    servers = StartServers(others)
    res = interleave(
        [
            (
                "Pool(2) create + first task + close + join",
                servers.case("create_first_task_join"),
            ),
        ],
        others,
        rounds=rounds,
        higher_is_better=False,
        unit="ms",
    )
    sections.append((res, False))
    res = interleave(
        [
            ("Pool(2) create + close + join", servers.case("create_close_join", "fork")),
            ("with Pool(2): map 10", servers.case("with_map")),
            ("terminate, pending work", servers.case("terminate_pending")),
        ],
        impls,
        rounds=rounds,
        higher_is_better=False,
        unit="ms",
    )
    sections.append((res, False))
    for method in ("spawn", "forkserver"):
        for impl in impls:  # start the fork servers, warm the imports
            servers.case("create_close_join", method)(impl)
        res = interleave(
            [
                (
                    "Pool(2) create+close+join " + method,
                    servers.case("create_close_join", method),
                ),
            ],
            impls,
            rounds=rounds,
            higher_is_better=False,
            unit="ms",
        )
        sections.append((res, False))
    servers.close()
    return sections


def main():
    """bench_pool.py [--quick] [--start-only] [--chart PATH]: --start-only runs
    the start and shutdown cases alone (no chart)."""
    global mpire
    try:
        import mpire
    except ImportError:
        pass
    quick = "--quick" in sys.argv
    start_only = "--start-only" in sys.argv
    rounds = 3 if quick else 5
    scale = 4 if quick else 1
    impls = ["stdlib", "gomp"]
    others = impls + ["futures"] + (["mpire"] if mpire is not None else [])
    if mpire is None:
        print("(mpire is not installed: pip install mpire; running without it)")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pool.png")
    if "--chart" in sys.argv:
        path = sys.argv[sys.argv.index("--chart") + 1]
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    sections = [] if start_only else throughput_sections(others, impls, rounds, scale)
    sections += start_sections(others, impls, rounds)
    title = "Pool(2), 2 cores: gomp, concurrent.futures and mpire against multiprocessing"
    if not start_only:
        if chart(sections, path, title):
            print("chart:", path)
        else:
            print("(matplotlib is not installed: no chart)")
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg(), flush=True)


if __name__ == "__main__":
    if "--start-server" in sys.argv:
        serve_starts(sys.argv[sys.argv.index("--start-server") + 1])
    else:
        main()
