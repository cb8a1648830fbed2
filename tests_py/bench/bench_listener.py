"""Listener/Client benchmark: gomp against the stdlib, interleaved in one run.

Cases (each with a server in its own process that echoes every message,
written with the same library as the client):
  connect: Client(address, authkey) + send(obj) + recv() + close(), i.e.
           connect, the two-way authentication handshake and one round
           trip, over AF_UNIX and over AF_INET loopback;
  rtt:     on an established (authenticated) connection, one round trip of
           a small object (send/recv) and of 32 bytes, 64 KiB and 1 MiB
           (send_bytes/recv_bytes).

Batches of each case alternate between gomp and the stdlib (A, B, A, B ...,
the first of each pair swapped every round); the figure per case is the
median over batches of the per-operation time, and the ratio is gomp /
stdlib (below 1 means gomp is faster).

    python tests_py/bench/bench_listener.py [--rounds N] [--quick]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

AUTHKEY = b'bench-listener-key'

SERVER = r'''
import os, sys, threading
impl, family = sys.argv[1], sys.argv[2]
if impl == 'gomp':
    import gomp.connection as connection
else:
    import multiprocessing.connection as connection
authkey = bytes.fromhex(sys.argv[3]) if sys.argv[3] != '-' else None

def echo(c):
    try:
        while True:
            b = c.recv_bytes()
            if b == b'quit':
                os._exit(0)
            c.send_bytes(b)
    except EOFError:
        pass
    finally:
        c.close()

with connection.Listener(family=family, authkey=authkey, backlog=16) as l:
    print(repr(l.address), flush=True)
    persistent = l.accept()        # the first client stays, for the rtt cases
    threading.Thread(target=echo, args=(persistent,), daemon=True).start()
    while True:                    # then one client at a time, in this thread
        echo(l.accept())
'''


class Server:
    def __init__(self, impl, family, authkey):
        self.authkey = authkey
        env = dict(os.environ)
        env.pop('GOMP_AS_MULTIPROCESSING', None)
        self.proc = subprocess.Popen(
            [sys.executable, '-c', SERVER, impl, family, authkey.hex() if authkey else '-'],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        import ast

        self.address = ast.literal_eval(self.proc.stdout.readline())

    def stop(self, connection):
        c = connection.Client(self.address, authkey=self.authkey)
        c.send_bytes(b'quit')
        c.close()
        self.proc.wait(10)


def bench_connect(connection, address, n):
    obj = ('hello', 1, 2.5)
    Client = connection.Client
    t0 = time.perf_counter()
    for _ in range(n):
        c = Client(address, authkey=AUTHKEY)
        c.send(obj)
        c.recv()
        c.close()
    return (time.perf_counter() - t0) / n


def bench_rtt_obj(conn, n):
    obj = ('hello', 1, 2.5)
    send, recv = conn.send, conn.recv
    t0 = time.perf_counter()
    for _ in range(n):
        send(obj)
        recv()
    return (time.perf_counter() - t0) / n


def bench_rtt_bytes(conn, n, size=32):
    buf = b'x' * size
    send, recv = conn.send_bytes, conn.recv_bytes
    t0 = time.perf_counter()
    for _ in range(n):
        send(buf)
        recv()
    return (time.perf_counter() - t0) / n


# (case, message size, divisor of the batch size)
SIZED_CASES = (
    ('rtt 32 B bytes', 32, 1),
    ('rtt 64 KiB bytes', 64 << 10, 10),
    ('rtt 1 MiB bytes', 1 << 20, 100),
)


def fmt(t):
    return '%8.1f us' % (t * 1e6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=15)
    ap.add_argument('--quick', action='store_true', help='few rounds, small batches')
    args = ap.parse_args()
    rounds = 4 if args.quick else args.rounds
    n_connect = 50 if args.quick else 200
    n_rtt = 500 if args.quick else 3000

    import multiprocessing.connection as sconn

    import gomp.connection as gconn

    impls = {'gomp': gconn, 'stdlib': sconn}

    print(
        'python %s, %d rounds, load average before: %s'
        % (sys.version.split()[0], rounds, ' '.join('%.2f' % x for x in os.getloadavg()))
    )
    results = {}
    servers = {}
    conns = {}
    try:
        for family in ('AF_UNIX', 'AF_INET'):
            for impl in impls:
                servers[impl, family] = Server(impl, family, AUTHKEY)
        for family in ('AF_UNIX', 'AF_INET'):
            for impl, mod in impls.items():
                # One connection stays open for the rtt cases; then warm up.
                conns[impl, family] = mod.Client(servers[impl, family].address, authkey=AUTHKEY)
                bench_connect(mod, servers[impl, family].address, 5)
        for r in range(rounds):
            order = list(impls) if r % 2 == 0 else list(impls)[::-1]
            for family in ('AF_UNIX', 'AF_INET'):
                for impl in order:
                    mod = impls[impl]
                    address = servers[impl, family].address
                    results.setdefault(('connect+auth+rtt', family, impl), []).append(
                        bench_connect(mod, address, n_connect)
                    )
                for impl in order:
                    results.setdefault(('rtt send/recv obj', family, impl), []).append(
                        bench_rtt_obj(conns[impl, family], n_rtt)
                    )
                for case, size, n in SIZED_CASES:
                    for impl in order:
                        results.setdefault((case, family, impl), []).append(
                            bench_rtt_bytes(conns[impl, family], max(20, n_rtt // n), size)
                        )
    finally:
        for c in conns.values():
            c.close()
        for (impl, _family), s in servers.items():
            try:
                s.stop(impls[impl])
            except Exception:
                s.proc.kill()
    print('load average after: %s' % ' '.join('%.2f' % x for x in os.getloadavg()))
    print(
        '%-20s %-8s %12s %12s %7s %7s %7s'
        % ('case', 'family', 'gomp', 'stdlib', 'ratio', 'paired', 'best')
    )
    for case in ('connect+auth+rtt', 'rtt send/recv obj') + tuple(c for c, _, _ in SIZED_CASES):
        for family in ('AF_UNIX', 'AF_INET'):
            g = results[case, family, 'gomp']
            s = results[case, family, 'stdlib']
            gm, sm = statistics.median(g), statistics.median(s)
            paired = statistics.median([a / b for a, b in zip(g, s)])
            print(
                '%-20s %-8s %12s %12s %7.2f %7.2f %7.2f'
                % (case, family, fmt(gm), fmt(sm), gm / sm, paired, min(g) / min(s))
            )
    print(
        'ratio = median gomp / median stdlib; paired = median over rounds of gomp / stdlib\n'
        'in the same round; best = best gomp / best stdlib (< 1: gomp faster).\n'
        'AF_INET connect: the stdlib leaves Nagle on, and its handshake waits 40 ms for a\n'
        'delayed ACK on every connection; gomp sets TCP_NODELAY.'
    )


if __name__ == '__main__':
    main()
