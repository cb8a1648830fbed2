"""Targets of the child processes of test_queues.py (a module of their own,
so that spawn and forkserver children import it without the tests)."""

import os
import time


def produce(q, producer, n, start_gate=None):
    """Put (producer, i) for i in range(n)."""
    if start_gate is not None:
        os.read(start_gate, 1)
    for i in range(n):
        q.put((producer, i))


def produce_ints(q, base, n):
    for i in range(n):
        q.put(base + i)


def produce_mixed(q, sizes):
    """Put, for each size, bytes of that size (a pattern tagged with its
    index), each followed by a small int."""
    for k, size in enumerate(sizes):
        q.put(pattern(k, size))
        q.put(k)


def pattern(k, size):
    head = b"%08d" % k
    body = bytes((k + i) % 251 for i in range(min(size, 4096)))
    data = (head + body * (size // max(len(body), 1) + 1))[:size]
    return data


def put_and_exit(q, n, item_size, done=None):
    """Put n items and return at once: the exit must feed whatever is
    still buffered. With a connection `done`, say "put" on it first."""
    item = b"z" * item_size
    for i in range(n):
        q.put((i, item))
    if done is not None:
        done.send("put")


def put_cancel_and_exit(q, n, item_size):
    item = b"z" * item_size
    for i in range(n):
        q.put((i, item))
    q.cancel_join_thread()


def close_and_join(q, n):
    for i in range(n):
        q.put(i)
    q.close()
    q.join_thread()


def worker(q, results):
    """Get items until None, mark each done, report it."""
    for item in iter(q.get, None):
        time.sleep(0.001)
        results.put(item * 2)
        q.task_done()
    q.task_done()


def consume_forever(q, out):
    """Get items and report them until killed."""
    while True:
        out.put(len(q.get()))


def get_one(q, out):
    out.put(q.get())


def echo(q1, q2):
    for x in iter(q1.get, None):
        q2.put(x)


def put_big_simple(q, size):
    q.put(b"b" * size)


def get_into_pipe(q, fd):
    x = q.get()
    os.write(fd, repr(x).encode()[:100] or b"?")


def use_simple(q, n):
    for _ in range(n):
        q.put(q.empty())


# ---- test_queue_readers.py ---------------------------------------------------------------


def put_at_random_times(q, n, seed, max_pause_us=300):
    """Put 0..n-1, pausing a random time (0..max_pause_us microseconds)
    before most items, so that they land while the reader sleeps or while
    it is about to sleep."""
    import random

    rnd = random.Random(seed)
    for i in range(n):
        r = rnd.random()
        if r < 0.6:
            time.sleep(rnd.random() * max_pause_us / 1e6)
        elif r < 0.65:
            time.sleep(0.005)
        q.put(i)


def put_after(q, delay, obj):
    time.sleep(delay)
    q.put(obj)


def put_big_and_hang(q, size):
    """Put one item larger than the ring with nobody reading: the process
    stays in the middle of streaming it (until it is killed)."""
    q.put(b"s" * size)


def eventfd_ids():
    """The eventfd-id (see /proc/pid/fdinfo) of every eventfd of this
    process, by descriptor."""
    ids = {}
    for f in os.listdir("/proc/self/fd"):
        try:
            with open("/proc/self/fdinfo/" + f) as fi:
                for line in fi:
                    if line.startswith("eventfd-id:"):
                        ids[int(f)] = int(line.split()[1])
        except OSError:
            pass
    return ids


def take_from_reader(q, out, n):
    """In a child: wait for the queue's reader and recv n items; report them
    with the eventfd-id of its descriptor and the ids of all its eventfds."""
    from gomp.connection import wait

    got = []
    for _ in range(n):
        if not wait([q._reader], 30):
            out.put(("timeout", got))
            return
        got.append(q._reader.recv())
    ids = eventfd_ids()
    out.put((got, ids.get(q._reader.fileno()), sorted(ids.values())))


def report_eventfd(q, out):
    """In a child: report the eventfd-id of the queue's reader descriptor."""
    out.put(eventfd_ids()[q._reader.fileno()])


# Targets of concurrent.futures workers.


def cf_square(x):
    return x * x


def cf_fail(x):
    raise ValueError("failed on %r" % (x,))


_cf_init_value = None


def cf_init(v):
    global _cf_init_value
    _cf_init_value = v


def cf_get_init(_):
    return _cf_init_value


def cf_pid(_):
    time.sleep(0.02)
    return os.getpid()


def cf_sleep(t):
    time.sleep(t)
    return t


def cf_kill_self(_=None, delay=0.0):
    import signal

    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


def cf_len(b):
    time.sleep(0.01)
    return len(b)


def cf_bytes(n):
    return b"r" * n


def cf_ident(x):
    return x


def core_here():
    """Whether this process has its own Go runtime loaded."""
    from gomp import _gomp

    info = _gomp._core_info()
    return bool(info['loaded']) and not info['stale'] and info['pid'] == os.getpid()


def pid_and_core(_):
    """A pool task: the worker's pid and whether it loaded a Go runtime."""
    return os.getpid(), core_here()


def report_core(q, outq):
    """Report, around a get from q, whether q is empty and whether this
    process loaded a Go runtime."""
    outq.put((q.empty(), core_here()))
    outq.put(q.get())
    outq.put((q.empty(), core_here()))
