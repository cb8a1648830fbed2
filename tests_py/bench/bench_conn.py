"""Pipe benchmarks, gomp against the stdlib, interleaved in one run.

  round trip   a small tuple with send/recv, and 32 bytes with send_bytes,
               echoed by a child process (microseconds, lower is better)
  throughput   one-way send_bytes from a child at 1 KiB, 64 KiB, 1 MiB and
               16 MiB per message (bytes/s, higher is better)

Both sides use their own Process (fork) and Pipe() (a socketpair).
Ratios are gomp relative to the stdlib: above 1 means gomp is better."""

import multiprocessing as std
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import interleave  # noqa: E402

import gomp  # noqa: E402

IMPLS = {"stdlib": std.get_context("fork"), "gomp": gomp.get_context("fork")}


def echo(conn, mode):
    while True:
        if mode == "obj":
            m = conn.recv()
            if m is None:
                return
            conn.send(m)
        else:
            m = conn.recv_bytes()
            if not m:
                return
            conn.send_bytes(m)


def round_trip(impl, mode, n=20000):
    ctx = IMPLS[impl]
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b, mode))
    p.start()
    msg = (1, "two", 3.0) if mode == "obj" else b"x" * 32
    send, recv = (a.send, a.recv) if mode == "obj" else (a.send_bytes, a.recv_bytes)
    for _ in range(500):  # warm up (and load the child's core)
        send(msg)
        recv()
    t0 = time.perf_counter()
    for _ in range(n):
        send(msg)
        recv()
    dt = time.perf_counter() - t0
    send(None if mode == "obj" else b"")
    p.join()
    a.close()
    b.close()
    return dt / n * 1e6


def sender(conn, size, count):
    buf = b"z" * size
    conn.recv_bytes()  # start signal
    for _ in range(count):
        conn.send_bytes(buf)


def throughput(impl, size):
    ctx = IMPLS[impl]
    count = max(8, (512 << 20) // size) if size >= (1 << 20) else max(2000, (64 << 20) // size)
    a, b = ctx.Pipe()
    p = ctx.Process(target=sender, args=(b, size, count))
    p.start()
    a.send_bytes(b"go")
    t0 = time.perf_counter()
    total = 0
    for _ in range(count):
        total += len(a.recv_bytes())
    dt = time.perf_counter() - t0
    p.join()
    a.close()
    b.close()
    return total / dt


def main():
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    print("Pipe round trip (us, lower is better; ratio = stdlib/gomp)")
    interleave(
        [
            ("round trip, tuple send/recv", lambda i: round_trip(i, "obj")),
            ("round trip, 32 B send_bytes", lambda i: round_trip(i, "bytes")),
        ],
        ["stdlib", "gomp"],
        rounds=rounds,
        higher_is_better=False,
        unit="us",
    )
    print("One-way send_bytes throughput (B/s, higher is better; ratio = gomp/stdlib)")
    interleave(
        [
            ("throughput %s" % label, lambda i, s=size: throughput(i, s))
            for label, size in (
                ("1 KiB", 1 << 10),
                ("64 KiB", 64 << 10),
                ("1 MiB", 1 << 20),
                ("16 MiB", 16 << 20),
            )
        ],
        ["stdlib", "gomp"],
        rounds=rounds,
        unit="B/s",
    )


if __name__ == "__main__":
    main()
