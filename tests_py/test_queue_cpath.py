"""The C path of a SimpleQueue's ring (pybind/ext/ring.c): a forked process
without a Go runtime gets, puts and takes claims in C, and hands to the core
whatever the C path does not serve (items streamed in fragments, a lock that
stays with one holder), so that both sides of one ring keep its protocol."""

import mmap
import os
import select
import struct
import subprocess
import sys
import textwrap

import pytest

import gomp
import queue_helpers as h

ctx = gomp.get_context('fork')

# Hang guard for the waits of this file (not a timing assertion).
LONG = 60


core_here = h.core_here


def payload(i, size):
    return bytes([i % 251]) * size


def run_child(target, *args):
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(LONG)
    assert p.exitcode == 0, p.exitcode


def _echo(inq, outq, n):
    items = [inq.get() for _ in range(n)]
    for item in items:
        outq.put(item)
    outq.put(('core', core_here()))


@pytest.mark.parametrize(
    'sizes,loads',
    [
        # Whole records only, across the ring's wrap: the child never loads Go.
        ([0, 1, 7, 8, 100, 5000, 70000, 3, 200000] * 6, False),
        # An item larger than half the ring is streamed: the child's C path hands
        # it to the core, which the child then loads.
        ([10, 3 << 20, 10, 20], True),
    ],
)
def test_a_forked_child_moves_items_in_c_until_one_needs_the_core(sizes, loads):
    inq, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    items = [payload(i, s) for i, s in enumerate(sizes)]
    p = ctx.Process(target=_echo, args=(inq, outq, len(items)))
    p.start()
    for item in items:
        inq.put(item)  # more than the ring holds: the child takes them meanwhile
    got = [outq.get() for _ in range(len(items))]
    assert outq.get() == ('core', loads)
    p.join(LONG)
    assert p.exitcode == 0
    assert [len(g) for g in got] == [len(i) for i in items]
    assert got == items
    assert inq.empty() and outq.empty()


def _claim_task(inq, outq, slot):
    task = inq._get_task(slot)
    outq.put((task, core_here()))
    # Exits holding the claim: the result of its task never went out.


def test_a_claim_taken_in_c_is_there_for_the_pool():
    inq, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    inq._put_task(41, 7, ('task', 1))
    run_child(_claim_task, inq, outq, 3)
    assert outq.get() == (('task', 1), False)
    assert inq._take_claim(3) == (41, 7)
    assert inq._take_claim(3) is None


def _claim_and_return(inq, slot):
    assert inq._get_task(slot) == 'x'
    assert inq._take_claim(slot) == (5, 0)
    assert inq._take_claim(slot) is None
    assert not core_here()


def test_a_worker_takes_its_own_claim_back_in_c():
    inq = ctx.SimpleQueue()
    inq._put_task(5, 0, 'x')
    run_child(_claim_and_return, inq, 0)
    assert inq._take_claim(0) is None


def _put_some(q, n):
    for i in range(n):
        q.put(i)
    assert not core_here()


def test_a_put_in_c_makes_the_watched_eventfd_readable():
    q = ctx.SimpleQueue()
    efd = q._watch()
    assert select.select([efd], [], [], 0)[0] == []
    run_child(_put_some, q, 3)
    assert select.select([efd], [], [], LONG)[0] == [efd]
    assert [q.get() for _ in range(3)] == [0, 1, 2]
    assert q.empty()
    assert select.select([efd], [], [], 0)[0] == []


def _get_some(q, outq, n):
    outq.put([q.get() for _ in range(n)])
    outq.put(core_here())


def test_a_get_in_c_resets_the_eventfd_of_a_ring_it_empties():
    q, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    efd = q._watch()
    q.put('a')
    q.put('b')
    assert select.select([efd], [], [], LONG)[0] == [efd]
    run_child(_get_some, q, outq, 2)
    assert outq.get() == ['a', 'b']
    assert outq.get() is False
    assert select.select([efd], [], [], 0)[0] == []


# The consumer lock's word is at byte 136 of the ring's header, its owner tag
# 16 bytes after it (gomp/queue/ring.go; pybind/ext/ring.h).
CLOCK_OFF = 136


def _dead_pid():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_lock_left_by_a_dead_process_goes_to_the_core():
    """The C path does not judge whether a holder lives: a lock that stays
    with one holder sends the get to the core, which takes it over."""
    q, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    q.put('behind the lock')
    with mmap.mmap(q._fileno(), 4096) as m:
        struct.pack_into('<IIQ', m, CLOCK_OFF, _dead_pid(), 0, 0)
        run_child(_get_some, q, outq, 1)
        assert outq.get() == ['behind the lock']
        assert outq.get() is True
        assert struct.unpack_from('<I', m, CLOCK_OFF)[0] == 0


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_pool_workers_never_load_the_core(method):
    with gomp.get_context(method).Pool(2) as pool:
        results = pool.map(h.pid_and_core, range(50), chunksize=1)
        results += [pool.apply(h.pid_and_core, (0,))]
        results += list(pool.imap_unordered(h.pid_and_core, range(50)))
    assert {loaded for _, loaded in results} == {False}


@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_a_queue_received_by_a_new_process_is_served_in_c(method):
    c = gomp.get_context(method)
    q, outq = c.SimpleQueue(), c.SimpleQueue()
    q.put('item')
    p = c.Process(target=h.report_core, args=(q, outq))
    p.start()
    assert outq.get() == (False, False)
    assert outq.get() == 'item'
    assert outq.get() == (True, False)
    p.join(LONG)
    assert p.exitcode == 0


def _run_fresh(tmp_path, body):
    """Runs body as the main module of a new interpreter (where no Go runtime
    was loaded before) and returns what it printed."""
    script = tmp_path / 'fresh.py'
    script.write_text(
        'import os, sys, threading\n'
        'import gomp\n'
        'sys.path.insert(0, %r)\n'
        'import queue_helpers as h\n'
        "if __name__ == '__main__':\n"
        % os.path.dirname(os.path.abspath(__file__))
        + textwrap.indent(textwrap.dedent(body), '    ')
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=LONG
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_program_that_only_uses_pools_never_loads_the_core(tmp_path):
    """A SimpleQueue made where no Go runtime runs is made in C and served
    by the C path: a pool's own process, as its workers, needs no runtime.

    Two things send an operation to the core by design, and are kept out:
    terminate() (a worker it kills inside a ring lock leaves the lock to the
    core, which takes it over: the pools here close and join), and a lock
    that stays with a live holder for 10 ms (a holder preempted that long on
    a loaded machine, as under the sanitizers: a fresh run is tried again,
    up to three in all; a build that loads the runtime every time fails)."""
    body = """
        for method in ('fork', 'spawn', 'forkserver'):
            pool = gomp.get_context(method).Pool(2)
            assert pool.map(abs, range(-50, 50), chunksize=1) == [abs(x) for x in range(-50, 50)]
            assert sorted(pool.imap_unordered(abs, range(100))) == list(range(100))
            results = [pool.apply_async(abs, (-i,)) for i in range(200)]
            assert [r.get() for r in results] == list(range(200))
            pool.close()
            pool.join()
        q = gomp.SimpleQueue()
        q.put(('item', 1))
        assert q.get() == ('item', 1) and q.empty()
        print(h.core_here())
    """
    outs = []
    for _ in range(3):
        outs.append(_run_fresh(tmp_path, body))
        if outs[-1] == ['False']:
            return
    raise AssertionError('every run loaded the Go runtime: %r' % outs)


def test_a_ring_made_in_c_goes_on_through_the_core(tmp_path):
    """The ring the C path makes is the one the core makes: once something
    loads the runtime, the core attaches it and the items put in C come out
    in order, and an item too large for a record streams through it."""
    out = _run_fresh(
        tmp_path,
        """
        q = gomp.SimpleQueue()
        for i in range(1000):
            q.put((i, 'x' * (i % 50)))
        print(h.core_here())
        gomp.Queue().put('loads the runtime')
        print(h.core_here())
        assert [q.get() for _ in range(1000)] == [(i, 'x' * (i % 50)) for i in range(1000)]
        big = bytes(range(256)) * (3 << 12)
        t = threading.Thread(target=q.put, args=(big,))
        t.start()
        assert q.get() == big
        t.join()
        assert q.empty()
        print('done')
    """,
    )
    assert out == ['False', 'True', 'done']
