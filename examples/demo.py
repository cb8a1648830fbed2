"""gomp demo: real work across processes.

1. Count the primes below 600,000 with one worker process per CPU, for each
   start method (fork, spawn, forkserver); workers report through Pipes; the
   parent checks the count with a sieve.
2. Stream 512 MiB through a Pipe in 16 MiB messages, with gomp and with the
   stdlib's multiprocessing, and compare the throughput.
3. A Pool whose worker is killed in the middle of a task: with gomp that task
   raises WorkerLostError and the pool goes on (the stdlib's pool would wait
   for that result forever, so it is not run here)."""

import math
import multiprocessing as stdlib_mp
import os
import time

import gomp
from gomp.pool import WorkerLostError


def count_primes(lo, hi):
    """Primes in [lo, hi), by trial division with the odd numbers."""
    count = 0
    for n in range(max(lo, 2), hi):
        if n % 2 == 0:
            count += n == 2
            continue
        for d in range(3, math.isqrt(n) + 1, 2):
            if n % d == 0:
                break
        else:
            count += 1
    return count


def sieve_count(limit):
    flags = bytearray([1]) * limit
    flags[:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if flags[i]:
            flags[i * i::i] = bytes(len(range(i * i, limit, i)))
    return sum(flags)


def worker(conn, lo, hi):
    t0 = time.perf_counter()
    conn.send((lo, hi, count_primes(lo, hi), os.getpid(), time.perf_counter() - t0))
    conn.close()


def primes_in_parallel(method, limit, nprocs):
    ctx = gomp.get_context(method)
    step = limit // nprocs
    pipes, procs = [], []
    t0 = time.perf_counter()
    for i in range(nprocs):
        r, w = ctx.Pipe(duplex=False)
        hi = limit if i == nprocs - 1 else (i + 1) * step
        p = ctx.Process(target=worker, args=(w, i * step, hi))
        p.start()
        w.close()
        pipes.append(r)
        procs.append(p)
    results = [r.recv() for r in pipes]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    total = sum(r[2] for r in results)
    print("  %-10s %d processes: %d primes below %d in %.2f s (exit codes %s)"
          % (method, nprocs, total, limit, elapsed, [p.exitcode for p in procs]))
    return total


def streamer(conn, size, count):
    payload = b"\x5a" * size
    for _ in range(count):
        conn.send_bytes(payload)
    conn.close()


def stream(module, size=16 << 20, count=32):
    ctx = module.get_context("fork")
    r, w = ctx.Pipe()
    p = ctx.Process(target=streamer, args=(w, size, count))
    t0 = time.perf_counter()
    p.start()
    got = sum(len(r.recv_bytes()) for _ in range(count))
    elapsed = time.perf_counter() - t0
    p.join()
    r.close()
    w.close()
    return got / elapsed


def square_or_die(x):
    if x == 7:
        os.kill(os.getpid(), 9)  # SIGKILL: this worker dies with the task
    return x * x


def pool_survives_a_dead_worker():
    with gomp.Pool(2) as pool:
        results = [pool.apply_async(square_or_die, (x,)) for x in range(10)]
        for x, r in enumerate(results):
            try:
                value = r.get(timeout=60)
            except WorkerLostError as e:
                print("  task %d: WorkerLostError: %s" % (x, e))
            else:
                assert value == x * x
        print("  the 9 other tasks returned their squares; the pool still works:",
              pool.map(abs, [-1, -2, -3]))


def main():
    nprocs = max(2, os.cpu_count() or 2)
    limit = 600_000
    print("1. Counting primes across processes (gomp)")
    totals = {primes_in_parallel(m, limit, nprocs) for m in ("fork", "spawn", "forkserver")}
    expected = sieve_count(limit)
    if totals != {expected}:
        raise SystemExit("wrong counts %s, the sieve says %d" % (sorted(totals), expected))
    print("   every start method agrees with a sieve in the parent: %d" % expected)

    print("2. Streaming 512 MiB through a Pipe in 16 MiB messages")
    rates = {}
    for round_ in range(3):  # interleaved: the machine's drift hits both alike
        for name, module in (("stdlib", stdlib_mp), ("gomp", gomp)):
            rates.setdefault(name, []).append(stream(module))
    best = {name: max(v) for name, v in rates.items()}
    for name in ("stdlib", "gomp"):
        print("  %-7s %.2f GB/s" % (name, best[name] / 1e9))
    print("   gomp / stdlib: x%.1f" % (best["gomp"] / best["stdlib"]))

    print("3. A pool worker killed in the middle of its task")
    pool_survives_a_dead_worker()


if __name__ == "__main__":
    main()
