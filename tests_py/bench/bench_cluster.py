"""gomp.cluster.Pool (the Pool API on a Dask LocalCluster) beside gomp's local
Pool and, when Ray is installed, ray.util.multiprocessing.Pool, all with 2
worker processes on this machine, each pool created once and reused by every
round, interleaved in one run (A, B, C, C, B, A, ...).

  trivial tasks, chunksize=1       pool.map(f, range(n), chunksize=1),
                                   f(x) = x + 1 (tasks/s, higher is better)
  trivial tasks, default chunksize pool.map(f, range(100000))
  1 MiB arguments                  pool.map(len, 32 items of 1 MiB,
                                   chunksize=1) (bytes/s of arguments)
  start + map 10 + terminate       with Pool(2) as p: p.map(f, range(10))
                                   (ms, lower is better)

Ratios are against the local Pool: above 1 means better than it (the cluster
pools are not expected to be: the point is what a task costs on them).

  --quick   fewer rounds and items"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import interleave  # noqa: E402

import gomp  # noqa: E402
import gomp.cluster  # noqa: E402

try:
    import ray
    import ray.util.multiprocessing as ray_mp
except Exception as e:  # not installed, or does not import on this Python
    ray = None
    RAY_MISSING = '%s: %s' % (type(e).__name__, e)


def inc(x):
    return x + 1


MIB = b'\x01' * (1 << 20)
POOLS = {}


def make(impl):
    if impl == 'gomp':
        return gomp.get_context('fork').Pool(2)
    if impl == 'cluster':
        return gomp.cluster.Pool(2)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray_mp.Pool(2)


def pool(impl):
    if impl not in POOLS:
        POOLS[impl] = make(impl)
        POOLS[impl].map(inc, range(100))  # warm up
    return POOLS[impl]


def map_rate(impl, n, chunksize):
    p = pool(impl)
    t0 = time.perf_counter()
    out = p.map(inc, range(n), chunksize)
    dt = time.perf_counter() - t0
    assert out[-1] == n
    return n / dt


def bytes_rate(impl, k):
    p = pool(impl)
    items = [MIB] * k
    t0 = time.perf_counter()
    out = p.map(len, items, chunksize=1)
    dt = time.perf_counter() - t0
    assert out == [len(MIB)] * k
    return k * len(MIB) / dt


def start_map_stop(impl):
    t0 = time.perf_counter()
    with make(impl) as p:
        p.map(inc, range(10))
    return (time.perf_counter() - t0) * 1e3


def main():
    quick = '--quick' in sys.argv
    rounds = 3 if quick else 5
    scale = 4 if quick else 1
    impls = ['gomp', 'cluster']
    if ray is not None:
        impls.append('ray')
    else:
        print('ray not installed (%s): without ray.util.multiprocessing.Pool' % RAY_MISSING)
    print('load average at start: %.2f %.2f %.2f' % os.getloadavg(), flush=True)

    def per_task(impl):
        # The cluster pools pay milliseconds a task: fewer items for them.
        n = 20000 // scale if impl == 'gomp' else 2000 // scale
        return map_rate(impl, n, 1)

    interleave(
        [
            ('trivial tasks, chunksize=1', per_task),
            ('trivial tasks, default chunksize', lambda i: map_rate(i, 100000 // scale, None)),
            ('1 MiB arguments, chunksize=1', lambda i: bytes_rate(i, 32 // scale)),
        ],
        impls,
        rounds=rounds,
        unit='/s',
    )
    interleave(
        [('start + map 10 + terminate', start_map_stop)],
        impls,
        rounds=max(2, rounds - 2),
        higher_is_better=False,
        unit='ms',
    )
    for p in POOLS.values():
        p.terminate()
    if ray is not None and ray.is_initialized():
        ray.shutdown()


if __name__ == '__main__':
    main()
