"""gomp.connection: a transfer that finds its descriptor not ready yields the
CPU and looks again for a short while before it sleeps, in the middle of a
message and, for the next message, when its thread moved a message just
before (an answer to a request, the next message of a stream); pybind/ext/
conn.c, "waiting briefly". _gomp.spin_stats() counts the waits for a next
message that opened such a window and those whose message came during it.

Nothing here measures time: the tests check which receives spin, that the
answers are the right ones, and that a wait that begins with a spin still
sleeps and is still interrupted by signals."""

import os
import signal
import threading
import time

import pytest

import gomp
from gomp import _gomp

LONG = 60  # hang guard for joins, not a timing assertion


def windows():
    return _gomp.spin_stats()[0]


def echo(conn):
    while True:
        m = conn.recv()
        if m is None:
            return
        conn.send(m)


def send_slowly(conn, n):
    for i in range(n):
        time.sleep(0.001)
        conn.send(i)
    conn.close()


def answer_later(conn, delay):
    while True:
        m = conn.recv()
        if m is None:
            return
        time.sleep(delay)
        conn.send(('late', m))


def send_on_cue(conn, cue, n):
    # One message each time the parent asks (through a plain pipe, so the
    # parent's connection sees nothing but the messages), 20 ms later.
    for i in range(n):
        os.read(cue, 1)
        time.sleep(0.02)
        conn.send(i)
    conn.close()


@pytest.mark.parametrize('duplex', [True, False])
def test_an_idle_receiver_never_spins(duplex):
    # Each receive begins 2 ms after this thread last moved a message and
    # its message comes 20 ms later: it sleeps at once, no window opens.
    r, w = gomp.Pipe(duplex=duplex)
    cue_r, cue_w = os.pipe()
    p = gomp.get_context('fork').Process(target=send_on_cue, args=(w, cue_r, 10))
    p.start()
    w.close()
    before = windows()
    got = []
    for _ in range(10):
        os.write(cue_w, b'.')
        time.sleep(0.002)
        got.append(r.recv())
    assert got == list(range(10))
    assert windows() == before
    p.join(LONG)
    os.close(cue_r)
    os.close(cue_w)
    assert p.exitcode == 0


def echo_bytes(conn, out):
    while True:
        m = conn.recv_bytes()
        if not m:
            return
        out.send_bytes(m)


@pytest.mark.parametrize('duplex', [True, False])
def test_large_messages_both_ways(duplex):
    # Larger than any pipe or socket buffer: both sides wait in the middle
    # of messages (spinning, then blocking) and every byte arrives in order.
    ctx = gomp.get_context('fork')
    if duplex:
        a, b = ctx.Pipe()
        a_in, b_out = a, b
    else:
        b, a = ctx.Pipe(duplex=False)
        a_in, b_out = ctx.Pipe(duplex=False)
    p = ctx.Process(target=echo_bytes, args=(b, b_out))
    p.start()
    for size in (65536, 65537, 1 << 20, (4 << 20) + 3):
        msg = bytes(range(256)) * (size // 256) + b'x' * (size % 256)
        a.send_bytes(msg)
        assert a_in.recv_bytes() == msg
    a.send_bytes(b'')
    p.join(LONG)
    assert p.exitcode == 0


def in_fresh_thread(fn, *args):
    """fn(*args) in a new thread, whose spin state (per thread: when it last
    moved a message, and the penalty of windows that ran out) starts clean,
    whatever the tests before did in the main thread."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join(LONG)
    assert not t.is_alive()
    return out[0]


def ping_pong(conn, n):
    w0, h0 = _gomp.spin_stats()
    for i in range(n):
        conn.send((i, 'x'))
        assert conn.recv() == (i, 'x')
    w1, h1 = _gomp.spin_stats()
    return w1 - w0, h1 - h0


def echo_on(cpu, conn):
    os.sched_setaffinity(0, {cpu})
    echo(conn)


def ping_pong_on(cpu, conn, n):
    os.sched_setaffinity(0, {cpu})  # this thread only
    return ping_pong(conn, n)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs two CPUs')
def test_ping_pong_answers_come_during_the_spin():
    # The two ends on two CPUs: the answer is never there right after the
    # request (the peer needs microseconds to make it), so receives open
    # windows, and the answers land in them. (On one CPU the yield before
    # the first read may hand the CPU to the peer every time, and then no
    # window is needed at all.)
    here, there = sorted(os.sched_getaffinity(0))[:2]
    a, b = gomp.Pipe()
    p = gomp.get_context('fork').Process(target=echo_on, args=(there, b))
    p.start()
    b.close()
    windows, hits = in_fresh_thread(ping_pong_on, here, a, 2000)
    a.send(None)
    p.join(LONG)
    assert 1 <= hits <= windows


def test_late_answers_are_waited_for_and_stop_the_spin():
    # Answers that come 20 ms after the request, long after any spin: each
    # receive goes to sleep and is woken by its answer. Each window that
    # runs out doubles how many of the thread's next waits sleep at once (1,
    # 2, 4 ...), so 20 requests open at most 5 windows (at waits 1, 3, 6, 11,
    # 20); without the penalty, one per request. (A window that sees its
    # bytes arrive halves the penalty; when that happens depends on the
    # scheduler, so it is not checked here.)
    a, b = gomp.Pipe()
    p = gomp.get_context('fork').Process(target=answer_later, args=(b, 0.02))
    p.start()
    b.close()

    def run():
        w0, h0 = _gomp.spin_stats()
        for i in range(20):
            a.send(i)
            assert a.recv() == ('late', i)
        w1, h1 = _gomp.spin_stats()
        return w1 - w0, h1 - h0

    windows, hits = in_fresh_thread(run)
    a.send(None)
    p.join(LONG)
    # (How many windows open depends on the load too: a receive that begins
    # over 50 us after its send opens none. Without the penalty there would
    # be about one per request.)
    assert windows <= 5
    assert hits == 0


def test_the_spin_is_per_thread():
    # A send by one thread does not make another thread's receive spin.
    r, w = gomp.Pipe(duplex=False)
    out_r, out_w = gomp.Pipe(duplex=False)
    got = []
    before = windows()

    def receiver():
        got.append(r.recv())

    t = threading.Thread(target=receiver)
    t.start()
    for _ in range(100):
        out_w.send(b'unrelated')  # this thread sends, the receiver only waits
        out_r.recv()
    w.send('hello')
    t.join(LONG)
    assert got == ['hello']
    # This thread's own receives found their message at once (it was sent
    # before them): no window either.
    assert windows() == before


class Interrupted(Exception):
    pass


def test_a_signal_ends_a_wait_that_began_with_a_spin():
    a, b = gomp.Pipe()
    p = gomp.get_context('fork').Process(target=answer_later, args=(b, 30.0))
    p.start()

    def raise_it(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, raise_it)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        a.send('never answered in time')
        with pytest.raises(Interrupted):
            a.recv()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        p.kill()
        p.join(LONG)


def test_threads_sharing_the_gil_while_one_spins():
    # Each thread has its own echo child; all of them send and receive at
    # once. The spins release the GIL, so every thread gets its answers.
    ctx = gomp.get_context('fork')
    pairs = [ctx.Pipe() for _ in range(4)]
    procs = [ctx.Process(target=echo, args=(b,)) for _, b in pairs]
    for pr in procs:
        pr.start()
    errors = []

    def talk(conn, k):
        try:
            for i in range(500):
                conn.send((k, i))
                if conn.recv() != (k, i):
                    errors.append((k, i))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=talk, args=(a, k)) for k, (a, _) in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LONG)
    for a, _ in pairs:
        a.send(None)
    for pr in procs:
        pr.join(LONG)
    assert errors == []
    assert not any(t.is_alive() for t in threads)


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'), reason='needs sched_setaffinity')
def test_ping_pong_on_one_cpu():
    # Both processes on one CPU: the yield hands the CPU to the peer, which
    # answers; nothing is lost or reordered.
    cpu = min(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        a, b = gomp.Pipe()
        p = gomp.get_context('fork').Process(target=echo, args=(b,))
        p.start()
        b.close()  # the child's end: its death would be end of file here
        for i in range(1000):
            a.send(b'%d' % i)
            assert a.recv() == b'%d' % i
        a.send(None)
        p.join(LONG)
        assert p.exitcode == 0
    finally:
        os.sched_setaffinity(0, old)


@pytest.mark.parametrize('duplex', [True, False])
def test_a_signal_ends_a_send_stuck_in_the_middle_of_a_message(duplex):
    # Nobody reads: the sender fills the buffer, spins, then sleeps in the
    # kernel until the handler's exception ends the send.
    if duplex:
        r, w = gomp.Pipe()
    else:
        r, w = gomp.Pipe(duplex=False)

    def raise_it(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, raise_it)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            w.send_bytes(b'x' * (16 << 20))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        r.close()
        w.close()
