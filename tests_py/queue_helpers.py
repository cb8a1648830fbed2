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


def put_and_exit(q, n, item_size):
    """Put n items and return at once: the exit must feed whatever is
    still buffered."""
    item = b"z" * item_size
    for i in range(n):
        q.put((i, item))


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
    for i in range(n):
        q.put(q.empty())
