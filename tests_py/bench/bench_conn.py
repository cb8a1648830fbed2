"""Pipe benchmarks, gomp against the stdlib, interleaved in one run.

  round trip   a small tuple with send/recv, 32 bytes with send_bytes and
               with recv_bytes_into, echoed by a child process, over
               Pipe(duplex=True) (a socketpair) and over two
               Pipe(duplex=False) (os.pipe) (microseconds, lower is better)
  throughput   one-way send_bytes from a child at 1 KiB, 64 KiB, 1 MiB and
               16 MiB per message, over both kinds of Pipe (bytes/s, higher
               is better)
  limits       in the same run, interleaved with the cases: the round trip
               of 16 bytes with os.write/os.read on two pipes, and the
               one-way throughput of os.write/os.read (readinto) on a pipe
               and on a socketpair, no framing and no Python objects beyond
               the buffers. A connection cannot beat these.

Both sides use their own Process (fork). Ratios are gomp relative to the
stdlib: above 1 means gomp is better; "of raw" relates gomp to the limit."""

import multiprocessing as std
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import interleave  # noqa: E402

import gomp  # noqa: E402

IMPLS = {"stdlib": std.get_context("fork"), "gomp": gomp.get_context("fork")}


def echo(conn, mode, out=None):
    out = out or conn
    if mode == "obj":
        while True:
            m = conn.recv()
            if m is None:
                return
            out.send(m)
    buf = bytearray(64)
    while True:
        if mode == "into":
            n = conn.recv_bytes_into(buf)
            m = buf[:n]
        else:
            m = conn.recv_bytes()
        if not m:
            return
        out.send_bytes(m)


def round_trip(impl, mode, duplex=True, n=20000):
    ctx = IMPLS[impl]
    if duplex:
        a, b = ctx.Pipe()
        a_in, b_out = a, b
    else:
        b, a = ctx.Pipe(duplex=False)  # parent -> child
        a_in, b_out = ctx.Pipe(duplex=False)  # child -> parent
    p = ctx.Process(target=echo, args=(b, mode, b_out))
    p.start()
    if mode == "obj":
        msg = (1, "two", 3.0)
        send, recv = a.send, a_in.recv
    elif mode == "into":
        msg, buf = b"x" * 32, bytearray(64)
        send, recv = a.send_bytes, lambda: a_in.recv_bytes_into(buf)
    else:
        msg = b"x" * 32
        send, recv = a.send_bytes, a_in.recv_bytes
    for _ in range(500):  # warm up
        send(msg)
        recv()
    t0 = time.perf_counter()
    for _ in range(n):
        send(msg)
        recv()
    dt = time.perf_counter() - t0
    send(None if mode == "obj" else b"")
    p.join()
    for c in {a, b, a_in, b_out}:
        c.close()
    return dt / n * 1e6


def raw_round_trip(n=20000):
    """16 bytes there and back with os.write/os.read on two pipes."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        while True:
            m = os.read(r1, 64)
            if m == b"q":
                os._exit(0)
            os.write(w2, m)
    msg = b"x" * 16
    for _ in range(500):
        os.write(w1, msg)
        os.read(r2, 64)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(w1, msg)
        os.read(r2, 64)
    dt = time.perf_counter() - t0
    os.write(w1, b"q")
    os.waitpid(pid, 0)
    for fd in (r1, w1, r2, w2):
        os.close(fd)
    return dt / n * 1e6


def sender(conn, size, count):
    buf = b"z" * size
    for _ in range(count):
        conn.send_bytes(buf)


def count_for(size):
    return max(8, (512 << 20) // size) if size >= (1 << 20) else max(2000, (64 << 20) // size)


def throughput(impl, size, duplex=True):
    ctx = IMPLS[impl]
    count = count_for(size)
    if duplex:
        a, b = ctx.Pipe()
    else:
        a, b = ctx.Pipe(duplex=False)
    go_r, go_w = os.pipe()  # start signal, outside the connection
    p = ctx.Process(target=lambda: (os.read(go_r, 1), sender(b, size, count)))
    p.start()
    os.write(go_w, b"g")
    t0 = time.perf_counter()
    total = 0
    for _ in range(count):
        total += len(a.recv_bytes())
    dt = time.perf_counter() - t0
    p.join()
    a.close()
    b.close()
    os.close(go_r)
    os.close(go_w)
    return total / dt


def raw_throughput(kind, size):
    """One-way os.write of size bytes (whole) and readinto a reused buffer on
    a pipe or socketpair: the limit of the descriptor itself."""
    import socket

    count = count_for(size)
    if kind == "pipe":
        rfd, wfd = os.pipe()
    else:
        s1, s2 = socket.socketpair()
        rfd, wfd = s1.detach(), s2.detach()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        buf = memoryview(b"z" * size)
        for _ in range(count):
            done = 0
            while done < size:
                done += os.write(wfd, buf[done:])
        os._exit(0)
    os.close(wfd)
    buf = bytearray(size)
    view = memoryview(buf)
    f = os.fdopen(rfd, "rb", buffering=0)
    t0 = time.perf_counter()
    total = 0
    for _ in range(count):
        got = 0
        while got < size:
            got += f.readinto(view[got:])
        total += got
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    f.close()
    return total / dt


def main():
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    print("Pipe round trip (us, lower is better; ratio = stdlib/gomp)")
    rt = interleave(
        [
            ("round trip, tuple send/recv", lambda i: round_trip(i, "obj")),
            ("round trip, 32 B send_bytes", lambda i: round_trip(i, "bytes")),
            ("round trip, 32 B recv_bytes_into", lambda i: round_trip(i, "into")),
            ("rt tuple, duplex=False", lambda i: round_trip(i, "obj", duplex=False)),
            ("rt 32 B bytes, duplex=False", lambda i: round_trip(i, "bytes", duplex=False)),
        ],
        ["stdlib", "gomp"],
        rounds=rounds,
        higher_is_better=False,
        unit="us",
    )
    raw = interleave(
        [("raw os.write/os.read, two pipes", lambda i: raw_round_trip())],
        ["raw"],
        rounds=rounds,
        higher_is_better=False,
        unit="us",
    )
    limit = statistics.median(raw["raw os.write/os.read, two pipes"]["raw"])
    for case, values in rt.items():
        print(
            "%-34s gomp = x%.2f of the raw round trip"
            % (case, statistics.median(values["gomp"]) / limit)
        )
    print("One-way send_bytes throughput (B/s, higher is better; ratio = gomp/stdlib)")
    interleave(
        [
            (
                "throughput %s%s" % (label, "" if duplex else ", duplex=False"),
                lambda i, s=size, d=duplex: throughput(i, s, d),
            )
            for duplex in (True, False)
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
    print("Limits, measured in the same run (B/s): os.write/readinto, no framing")
    interleave(
        [
            ("raw %s %s" % (kind, label), lambda i, k=kind, s=size: raw_throughput(k, s))
            for kind in ("socketpair", "pipe")
            for label, size in (("64 KiB", 64 << 10), ("16 MiB", 16 << 20))
        ],
        ["raw"],
        rounds=rounds,
        unit="B/s",
    )


if __name__ == "__main__":
    main()
