"""gomp's queues: a get that finds its ring empty yields the CPU and looks
again for a short while before it sleeps, when its process put an item just
before (the answer to a request, a worker's next task);
gomp/queue/spin.go. _gomp.queue_spin_stats() counts this process's waits
that opened such a window and those whose item came during it.

Nothing here measures time: the tests check which gets spin, that the items
are the right ones, and that a wait that begins with a spin still sleeps,
times out and is interrupted by signals."""

import os
import signal
import time

import pytest

import gomp
from gomp import _gomp

LONG = 60  # hang guard for joins, not a timing assertion


def stats():
    return _gomp.queue_spin_stats()


def echo(a, b):
    while True:
        m = a.get()
        if m is None:
            return
        b.put(m)


def answer_later(a, b, delay):
    while True:
        m = a.get()
        if m is None:
            return
        time.sleep(delay)
        b.put(('late', m))


def put_on_cue(q, cue, n):
    for i in range(n):
        os.read(cue, 1)
        time.sleep(0.02)
        q.put(i)


def pinned(cpu, fn, *args):
    os.sched_setaffinity(0, {cpu})
    fn(*args)


def test_an_idle_consumer_never_spins():
    # Each get begins 2 ms after this process last moved an item, and its
    # item comes 20 ms later: it sleeps at once, no window opens.
    ctx = gomp.get_context('fork')
    q = ctx.SimpleQueue()
    cue_r, cue_w = os.pipe()
    p = ctx.Process(target=put_on_cue, args=(q, cue_r, 10))
    p.start()
    before = stats()
    got = []
    for _ in range(10):
        os.write(cue_w, b'.')
        time.sleep(0.002)
        got.append(q.get())
    assert got == list(range(10))
    assert stats()[0] == before[0]
    p.join(LONG)
    os.close(cue_r)
    os.close(cue_w)
    assert p.exitcode == 0


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs two CPUs')
@pytest.mark.parametrize('kind', ['SimpleQueue', 'Queue'])
def test_ping_pong_answers_come_during_the_spin(kind):
    # The two ends on two CPUs: the answer is not there right after the
    # request (the peer needs microseconds to make it), so gets open
    # windows, and answers land in them.
    here, there = sorted(os.sched_getaffinity(0))[:2]
    ctx = gomp.get_context('fork')
    a, b = getattr(ctx, kind)(), getattr(ctx, kind)()
    p = ctx.Process(target=pinned, args=(there, echo, a, b))
    p.start()
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {here})
    try:
        w0, h0 = stats()
        for i in range(2000):
            a.put((i, 'x'))
            assert b.get() == (i, 'x')
        w1, h1 = stats()
    finally:
        os.sched_setaffinity(0, old)
    a.put(None)
    p.join(LONG)
    assert p.exitcode == 0
    assert 1 <= h1 - h0 <= w1 - w0


def test_late_answers_are_waited_for_and_stop_the_spin():
    # Answers that come 20 ms after the request, long after any spin: each
    # get goes to sleep and is woken by its answer. Each window that runs
    # out doubles how many of the next waits on that queue sleep at once
    # (1, 2, 4 ...), so 20 requests open at most 5 windows (at waits 1, 3,
    # 6, 11, 20); without the penalty, one per request.
    ctx = gomp.get_context('fork')
    a, b = ctx.SimpleQueue(), ctx.SimpleQueue()
    p = ctx.Process(target=answer_later, args=(a, b, 0.02))
    p.start()
    w0, h0 = stats()
    for i in range(20):
        a.put(i)
        assert b.get() == ('late', i)
    w1, h1 = stats()
    a.put(None)
    p.join(LONG)
    # (A get that begins over 50 us after its put opens none: under load
    # there may be fewer.)
    assert w1 - w0 <= 5
    assert h1 == h0


def test_a_get_that_began_with_a_spin_times_out():
    q = gomp.Queue()
    q.put('one')
    assert q.get() == 'one'  # this process just moved an item: the next get spins
    t = time.monotonic()
    with pytest.raises(gomp.queues.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t >= 0.05


class Interrupted(Exception):
    pass


def test_a_signal_ends_a_get_that_began_with_a_spin():
    q = gomp.SimpleQueue()

    def raise_it(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, raise_it)
    try:
        q.put('one')
        assert q.get() == 'one'
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            q.get()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def square(x):
    return x * x


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity'), reason='needs sched_setaffinity')
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_a_pool_on_one_cpu(method):
    # The pool's process and its workers on one CPU, where a yield need not
    # hand the CPU over: every task is run and every answer is the right one.
    cpu = min(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        with gomp.get_context(method).Pool(3) as pool:
            for i in range(300):
                assert pool.apply(square, (i,)) == i * i
            for _ in range(50):
                assert pool.map(square, range(10)) == [x * x for x in range(10)]
            assert sorted(pool.imap_unordered(square, range(500))) == [x * x for x in range(500)]
    finally:
        os.sched_setaffinity(0, old)
