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

Ratios are against the stdlib: above 1 means better than the stdlib. The run
writes a chart of every case (tests_py/bench/pool.png, shown by the README)
when matplotlib is installed; --chart PATH writes it elsewhere."""

import concurrent.futures as cf
import multiprocessing as std
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import chart, interleave  # noqa: E402

import gomp  # noqa: E402


def inc(x):
    return x + 1


# Imported by main() only. A spawned or forkserver child re-imports this
# module, and mpire imports the stdlib's multiprocessing (and more) with it:
# at the top it made every spawn child pay for mpire, and a gomp child for two
# multiprocessing packages.
mpire = None

MODS = {"stdlib": std, "gomp": gomp}
CTX = {"stdlib": std.get_context("fork"), "gomp": gomp.get_context("fork")}
POOLS = {}


def new_pool(impl, kind="map"):
    """A pool of 2 workers (fork) of impl, started (mpire's for kind)."""
    if impl == "futures":
        ex = cf.ProcessPoolExecutor(2, mp_context=std.get_context("fork"))
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
    return CTX[impl].Pool(2)


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
        if impl in MODS:
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


def create_first_task_join(impl):
    t0 = time.perf_counter()
    p = new_pool(impl)
    if impl in MODS:
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


def create_close_join(impl, method="fork"):
    ctx = CTX[impl] if method == "fork" else MODS[impl].get_context(method)
    t0 = time.perf_counter()
    p = ctx.Pool(2)
    p.close()
    p.join()
    return (time.perf_counter() - t0) * 1e3


def with_map(impl):
    t0 = time.perf_counter()
    with CTX[impl].Pool(2) as p:
        p.map(inc, range(10))
    return (time.perf_counter() - t0) * 1e3


def terminate_pending(impl):
    p = CTX[impl].Pool(2)
    p.map(inc, range(4))
    p.map_async(time.sleep, [0.05] * 20, chunksize=1)
    t0 = time.perf_counter()
    p.terminate()
    dt = time.perf_counter() - t0
    p.join()
    return dt * 1e3


def main():
    global mpire
    try:
        import mpire
    except ImportError:
        pass
    quick = "--quick" in sys.argv
    rounds = 3 if quick else 5
    scale = 4 if quick else 1
    impls = ["stdlib", "gomp"]
    others = impls + ["futures"] + (["mpire"] if mpire is not None else [])
    if mpire is None:
        print("(mpire is not installed: pip install mpire; running without it)")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pool.png")
    if "--chart" in sys.argv:
        path = sys.argv[sys.argv.index("--chart") + 1]
    sections = []
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
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
        [
            ("Pool(2) create + first task + close + join", create_first_task_join),
        ],
        others,
        rounds=rounds,
        higher_is_better=False,
        unit="ms",
    )
    sections.append((res, False))
    res = interleave(
        [
            ("apply round trip", lambda i: apply_latency(i, 2000 // scale)),
        ],
        impls,
        rounds=rounds,
        higher_is_better=False,
        unit="us",
    )
    sections.append((res, False))
    res = interleave(
        [
            ("Pool(2) create + close + join", create_close_join),
            ("with Pool(2): map 10", with_map),
            ("terminate, pending work", terminate_pending),
        ],
        impls,
        rounds=rounds,
        higher_is_better=False,
        unit="ms",
    )
    sections.append((res, False))
    for method in ("spawn", "forkserver"):
        for impl in impls:  # start the fork servers, warm the imports
            create_close_join(impl, method)
        res = interleave(
            [
                (
                    "Pool(2) create+close+join " + method,
                    lambda i, method=method: create_close_join(i, method),
                ),
            ],
            impls,
            rounds=rounds,
            higher_is_better=False,
            unit="ms",
        )
        sections.append((res, False))
    for (impl, _), p in POOLS.items():
        close_pool(impl, p)
    title = "Pool(2), 2 cores: gomp, concurrent.futures and mpire against multiprocessing"
    if chart(sections, path, title):
        print("chart:", path)
    else:
        print("(matplotlib is not installed: no chart)")
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg(), flush=True)


if __name__ == "__main__":
    main()
