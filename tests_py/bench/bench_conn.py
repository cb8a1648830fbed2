"""Pipe benchmarks, gomp against the stdlib, interleaved in one run.

  round trip   a small tuple with send/recv, 32 bytes with send_bytes and
               with recv_bytes_into, echoed by a child process, over
               Pipe(duplex=True) (a socketpair) and over two
               Pipe(duplex=False) (os.pipe) (microseconds, lower is better)
  throughput   one-way send_bytes from a child at 1 KiB, 64 KiB, 1 MiB and
               16 MiB per message, over both kinds of Pipe (bytes/s, higher
               is better)
  raw          in the same rounds, interleaved with the cases (a third
               column): the round trip of 16 bytes with os.write/os.read on
               two pipes, and the one-way throughput of os.write/os.read
               (readinto) on a socketpair (for duplex=True) or a pipe (for
               duplex=False), no framing and no Python objects beyond the
               buffers: what the descriptor itself can do.

BENCH_PIN=same pins the benchmark and its children to one CPU: every
hand-off is then a context switch, as on a loaded machine, where a quiet one
(the default) puts the two ends on two CPUs and every sleep costs an idle
CPU's wake-up (NOTES.md, "Waiting briefly"). BENCH_LOAD=N runs N
processes that spin on the CPU (plain Python loops) for the whole run: a
loaded machine, where the benchmark's processes share the CPUs with others.

Both sides use their own Process (fork). Ratios are against the stdlib:
above 1 means better than the stdlib; "of raw" relates gomp to the
descriptor. The run writes a chart of every case (tests_py/bench/conn.png,
shown by the README, logarithmic axis) when matplotlib is installed and
neither BENCH_PIN nor BENCH_LOAD is set; --chart PATH writes it elsewhere
(for any placement).
"""

import multiprocessing as std
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import chart, interleave  # noqa: E402

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
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conn.png")
    if "--chart" in sys.argv:
        path = sys.argv[sys.argv.index("--chart") + 1]
    pin = os.environ.get("BENCH_PIN")
    if pin == "same":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # children inherit it
    elif pin:
        sys.exit("BENCH_PIN: only 'same' is known here")
    load = int(os.environ.get("BENCH_LOAD", "0"))
    if (pin or load) and "--chart" not in sys.argv:
        path = None  # the README's chart is the default placement's
    hogs = start_load(load)
    try:
        run(rounds, path, pin, len(hogs))
    finally:
        for pid in hogs:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def start_load(n):
    """n processes that keep a CPU busy until killed (BENCH_LOAD)."""
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            while True:
                pass
        pids.append(pid)
    return pids


def run(rounds, path, pin, load):
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    print(
        "placement: %s%s"
        % (
            "one CPU (BENCH_PIN=same)" if pin else "free",
            ", %d CPU-bound processes beside it (BENCH_LOAD)" % load if load else "",
        )
    )
    impls = ["stdlib", "gomp", "raw"]
    print(
        "Pipe round trip (us, lower is better; ratio = stdlib/impl); raw: 16 bytes "
        "with os.write/os.read on two pipes, in the same rounds"
    )
    rt = interleave(
        [
            (
                name,
                lambda i, m=mode, d=duplex: raw_round_trip() if i == "raw" else round_trip(i, m, d),
            )
            for name, mode, duplex in (
                ("round trip, tuple send/recv", "obj", True),
                ("round trip, 32 B send_bytes", "bytes", True),
                ("round trip, 32 B recv_bytes_into", "into", True),
                ("rt tuple, duplex=False", "obj", False),
                ("rt 32 B bytes, duplex=False", "bytes", False),
            )
        ],
        impls,
        rounds=rounds,
        higher_is_better=False,
        unit="us",
    )
    for case, values in rt.items():
        print(
            "%-34s gomp = x%.2f of the raw round trip"
            % (case, statistics.median(values["gomp"]) / statistics.median(values["raw"]))
        )
    print(
        "One-way send_bytes throughput (B/s, higher is better; ratio = impl/stdlib); raw: "
        "os.write/readinto without framing on a socketpair (duplex) or a pipe, same rounds"
    )
    tp = interleave(
        [
            (
                "throughput %s%s" % (label, "" if duplex else ", duplex=False"),
                lambda i, s=size, d=duplex: (
                    raw_throughput("socketpair" if d else "pipe", s)
                    if i == "raw"
                    else throughput(i, s, d)
                ),
            )
            for duplex in (True, False)
            for label, size in (
                ("1 KiB", 1 << 10),
                ("64 KiB", 64 << 10),
                ("1 MiB", 1 << 20),
                ("16 MiB", 16 << 20),
            )
        ],
        impls,
        rounds=rounds,
        unit="B/s",
    )
    for case, values in tp.items():
        print(
            "%-34s gomp = x%.2f of raw"
            % (case, statistics.median(values["gomp"]) / statistics.median(values["raw"]))
        )
    if path is None:
        print("chart: not written (pinned or loaded run; --chart PATH writes one)")
    elif chart(
        [(rt, False), (tp, True)],
        path,
        "Connections: gomp, the stdlib and the raw descriptor (fork, 2 CPUs)",
        log=True,
    ):
        print("chart:", path)


if __name__ == "__main__":
    main()
