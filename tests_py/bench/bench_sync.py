"""Benchmark: gomp's locks against the standard library's, interleaved in one
run (A, B, A, B, ...), medians and ratios printed.

Cases
  uncontended   Lock / RLock / Semaphore: acquire() + release() in a loop, and
                `with lock:`; ns per pair (loop overhead included, the same
                for both).
  creation      Lock() for the fork context (gomp: an anonymous shared mapping;
                stdlib: sem_open + sem_unlink) and for spawn (both: a named file
                on /dev/shm, registered with the resource tracker); includes
                the destruction of the previous object.
  ping-pong     two forked processes hand a token back and forth through two
                Semaphores: microseconds per round trip (two wake-ups, two
                sleeps).
  Barrier       two forked processes pass a Barrier(2) repeatedly (Condition
                and semaphores underneath); microseconds per pass.
  contended     two forked processes, each doing N x (acquire, counter += 1,
                release) on one Lock; the counter lives in shared memory and
                is checked at the end. ns per acquire/release pair overall.
                (gomp waits and wakes with futex(2) from C: the children do not
                load the Go core unless a wait exceeds 20 ms.)

ratio = stdlib time / gomp time (> 1: gomp faster).

    python tests_py/bench/bench_sync.py [--rounds 7] [--n 1000000] [--contended-n 100000]
"""

import argparse
import ctypes
import mmap
import multiprocessing as std_mp
import os
import statistics
import sys
import time

import gomp


def uncontended(lock, n):
    acq, rel = lock.acquire, lock.release
    r = range(n)
    t = time.perf_counter()
    for _ in r:
        acq()
        rel()
    return (time.perf_counter() - t) / n * 1e9


def uncontended_with(lock, n):
    r = range(n)
    t = time.perf_counter()
    for _ in r:
        with lock:
            pass
    return (time.perf_counter() - t) / n * 1e9


def creation(make, n):
    t = time.perf_counter()
    for _ in range(n):
        make()
    return (time.perf_counter() - t) / n * 1e9


def ping_pong(ctx, n, preload):
    """Two forked processes hand a token back and forth through two
    semaphores; returns us per round trip (two wake-ups, two sleeps)."""
    a, b = ctx.Semaphore(0), ctx.Semaphore(0)
    pid = os.fork()
    if pid == 0:
        try:
            if preload:
                preload()
            for _ in range(n):
                a.acquire()
                b.release()
        finally:
            os._exit(0)
    t = time.perf_counter()
    for _ in range(n):
        a.release()
        b.acquire()
    dt = time.perf_counter() - t
    os.waitpid(pid, 0)
    return dt / n * 1e6


def barrier_passes(ctx, n, preload):
    """Two forked processes pass a Barrier(2) n times; returns us per pass."""
    barrier = ctx.Barrier(2)
    pid = os.fork()
    if pid == 0:
        try:
            if preload:
                preload()
            for _ in range(n):
                barrier.wait()
        finally:
            os._exit(0)
    t = time.perf_counter()
    for _ in range(n):
        barrier.wait()
    dt = time.perf_counter() - t
    os.waitpid(pid, 0)
    return dt / n * 1e6


def contended(make_lock, n, preload):
    """Two forked children contend for one lock; returns ns per pair."""
    lock = make_lock()
    mm = mmap.mmap(-1, mmap.PAGESIZE)
    counter = ctypes.c_long.from_buffer(mm)
    counter.value = 0
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(go_w)
                if preload:
                    preload()
                os.write(ready_w, b'x')
                os.read(go_r, 1)
                acq, rel = lock.acquire, lock.release
                for _ in range(n):
                    acq()
                    counter.value += 1
                    rel()
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(ready_w)
    for _ in range(2):
        os.read(ready_r, 1)
    t = time.perf_counter()
    os.write(go_w, b'xx')
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit('child failed with status %d' % status)
    dt = time.perf_counter() - t
    os.close(go_r)
    os.close(go_w)
    os.close(ready_r)
    got = counter.value
    del counter
    mm.close()
    if got != 2 * n:
        raise SystemExit('counter is %d, expected %d: mutual exclusion broken' % (got, 2 * n))
    return dt / (2 * n) * 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--n', type=int, default=1_000_000)
    ap.add_argument('--contended-n', type=int, default=100_000)
    ap.add_argument('--only', default='')
    args = ap.parse_args()

    gctx = gomp.get_context('fork')
    sctx = std_mp.get_context('fork')
    gspawn = gomp.get_context('spawn')
    sspawn = std_mp.get_context('spawn')
    n = args.n
    cases = [
        ('Lock acquire+release', lambda c: uncontended(c.Lock(), n)),
        ('RLock acquire+release', lambda c: uncontended(c.RLock(), n)),
        ('Semaphore acquire+release', lambda c: uncontended(c.Semaphore(), n)),
        ('with Lock', lambda c: uncontended_with(c.Lock(), n)),
        ('with RLock', lambda c: uncontended_with(c.RLock(), n)),
        ('Lock() creation, fork context', lambda c: creation(c.Lock, n // 100)),
        (
            'Lock() creation, spawn context',
            lambda c: creation((gspawn if c is gctx else sspawn).Lock, n // 1000),
        ),
        ('Lock, 2 processes contending', lambda c: contended(c.Lock, args.contended_n, None)),
        ('RLock, 2 processes contending', lambda c: contended(c.RLock, args.contended_n, None)),
        ('Semaphore ping-pong (us)', lambda c: ping_pong(c, args.contended_n // 20, None)),
        (
            'Barrier(2) pass, 2 processes (us)',
            lambda c: barrier_passes(c, args.contended_n // 50, None),
        ),
    ]
    print(
        'python %s, load average %s'
        % (sys.version.split()[0], ' '.join('%.2f' % x for x in os.getloadavg()))
    )
    print(
        '%-32s %12s %12s %8s   (median of %d interleaved rounds, %d for two processes; '
        'best in brackets)'
        % ('case (ns per op)', 'stdlib', 'gomp', 'ratio', args.rounds, 3 * args.rounds)
    )
    for name, fn in cases:
        if args.only and args.only not in name:
            continue
        s, g = [], []
        # The cases between two processes swing 2x from round to round on a
        # shared machine: three times the rounds for them.
        rounds = args.rounds * (3 if 'process' in name or 'ping-pong' in name else 1)
        for r in range(rounds):
            for _impl, ctx, out in (
                (('stdlib', sctx, s), ('gomp', gctx, g))
                if r % 2 == 0
                else (('gomp', gctx, g), ('stdlib', sctx, s))
            ):
                out.append(fn(ctx))
        ms, mg = statistics.median(s), statistics.median(g)
        print('%-32s %6.1f (%4.1f) %6.1f (%4.1f) %7.2fx' % (name, ms, min(s), mg, min(g), ms / mg))
    print('load average after: %s' % ' '.join('%.2f' % x for x in os.getloadavg()))


if __name__ == '__main__':
    main()
