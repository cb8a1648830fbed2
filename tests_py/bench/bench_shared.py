"""Benchmark: gomp's sharedctypes and shared memory against the standard
library's, interleaved in one run (A, B, A, B, ...), medians and ratios.

Cases
  Value += 1, 2 processes   two forked children each do N x
                            `with v.get_lock(): v.value += 1` on one Value('i');
                            the result is checked; increments per second.
  Value.value read/write    one process: `v.value` and `v.value = x` (each
                            takes the Value's RLock); ns per access.
  Value('i') creation       Value('i') made and dropped (heap block + RLock,
                            fork context); ns each.
  RawArray('d', 1000)       made and dropped (heap block, zeroed); ns each.
  SharedMemory 64 KiB       create, write one byte, close, unlink; us each.

ratio = stdlib time / gomp time (> 1: gomp faster).

    python tests_py/bench/bench_shared.py [--rounds 7] [--n 100000]
"""

import argparse
import multiprocessing as std_mp
import multiprocessing.shared_memory as std_shm
import os
import statistics
import sys
import time

import gomp
import gomp.shared_memory as gomp_shm


def _count(v, n, ready, go):
    ready.release()
    go.acquire()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def contended_value(ctx, n):
    """Seconds for two children to add n each to one Value under its lock."""
    v = ctx.Value('i', 0)
    ready, go = ctx.Semaphore(0), ctx.Semaphore(0)
    procs = [ctx.Process(target=_count, args=(v, n, ready, go)) for _ in range(2)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t = time.perf_counter()
    go.release()
    go.release()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit('a child failed')
    if v.value != 2 * n:
        raise SystemExit('Value is %d, expected %d: lost updates' % (v.value, 2 * n))
    return dt


def value_access(ctx, n):
    v = ctx.Value('i', 0)
    t = time.perf_counter()
    for _ in range(n):
        v.value = v.value + 1
    return (time.perf_counter() - t) / (2 * n) * 1e9


def creation(make, n):
    t = time.perf_counter()
    for _ in range(n):
        make()
    return (time.perf_counter() - t) / n * 1e9


def shm_cycle(mod, n):
    t = time.perf_counter()
    for _ in range(n):
        s = mod.SharedMemory(create=True, size=65536)
        s.buf[0] = 1
        s.close()
        s.unlink()
    return (time.perf_counter() - t) / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--n', type=int, default=100_000)
    ap.add_argument('--only', default='')
    args = ap.parse_args()
    n = args.n
    gctx, sctx = gomp.get_context('fork'), std_mp.get_context('fork')
    print(
        'python %s, load average %s'
        % (sys.version.split()[0], ' '.join('%.2f' % x for x in os.getloadavg()))
    )
    cases = [
        ('Value += 1, 2 processes (M/s)', lambda c: 2 * n / contended_value(c, n) / 1e6, True),
        ('Value.value read/write (ns)', lambda c: value_access(c, n), False),
        ("Value('i') creation (ns)", lambda c: creation(lambda: c.Value('i'), n // 10), False),
        (
            "RawArray('d', 1000) (ns)",
            lambda c: creation(lambda: c.RawArray('d', 1000), n // 10),
            False,
        ),
        (
            'SharedMemory 64 KiB cycle (us)',
            lambda c: shm_cycle(gomp_shm if c is gctx else std_shm, n // 100),
            False,
        ),
    ]
    print(
        '%-34s %12s %12s %8s   (median of %d interleaved rounds, best in brackets)'
        % ('case', 'stdlib', 'gomp', 'ratio', args.rounds)
    )
    for name, fn, higher_is_better in cases:
        if args.only and args.only not in name:
            continue
        s, g = [], []
        for _ in range(args.rounds):
            s.append(fn(sctx))
            g.append(fn(gctx))
        ms, mg = statistics.median(s), statistics.median(g)
        best = max if higher_is_better else min
        ratio = mg / ms if higher_is_better else ms / mg
        print('%-34s %6.2f (%5.2f) %6.2f (%5.2f) %7.2fx' % (name, ms, best(s), mg, best(g), ratio))
    print('load average after: %s' % ' '.join('%.2f' % x for x in os.getloadavg()))


if __name__ == '__main__':
    main()
