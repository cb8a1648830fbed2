"""The reader and writer ends of gomp's queues (queue._reader, queue._writer):
the readiness descriptor (fileno) with connection.wait(), select and
selectors, recv()/poll() semantics, no lost wake-ups, fork/spawn/forkserver,
and concurrent.futures.ProcessPoolExecutor end to end under gomp.install()."""

import concurrent.futures as cf
import inspect
import os
import select
import selectors
import signal
import sys
import threading
import time

import pytest

import gomp
import queue_helpers as H
from blocked_helpers import POLLIN, polls_for
from conftest import HANG_GUARD, returns, run_python, stdlib_peer, wait_until
from gomp import _gomp
from gomp.connection import wait

METHODS = ["fork", "spawn", "forkserver"]
KINDS = ["SimpleQueue", "Queue"]


def make(kind, ctx=gomp):
    return getattr(ctx, kind)()


def readable(fd, timeout=0):
    return bool(select.select([fd], [], [], timeout)[0])


# ---- API -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_reader_follows_the_queue(kind):
    q = make(kind)
    r = q._reader
    fd = r.fileno()
    assert isinstance(fd, int) and fd >= 0 and r.fileno() == fd
    assert wait([r], 0) == [] and not r.poll() and not readable(fd)
    q.put("a")
    q.put(("b", 2))
    # Readable as soon as the put returns (the put wrote the eventfd).
    assert wait([r], 0) == [r] and r.poll() and readable(fd)
    assert r.recv() == "a"
    assert readable(fd) and r.poll(0)  # one item left
    assert r.recv() == ("b", 2)
    # The get that took the last item reset the descriptor before returning.
    assert not readable(fd) and wait([r], 0) == [] and not r.poll()
    assert wait([r], 0.05) == [] and r.poll(0.05) is False


@pytest.mark.parametrize("kind", KINDS)
def test_get_and_recv_agree(kind):
    q = make(kind)
    r, w = q._reader, q._writer
    w.send([1, 2])
    w.send_bytes(gomp.reduction.ForkingPickler.dumps({"k": 1}))
    w.send_bytes(
        b"xx" + bytes(gomp.reduction.ForkingPickler.dumps(7)) + b"yy",
        2,
        len(gomp.reduction.ForkingPickler.dumps(7)),
    )
    q.put(None)
    r.fileno()
    assert q.get() == [1, 2]
    assert r.recv() == {"k": 1}
    assert r.recv_bytes() == bytes(gomp.reduction.ForkingPickler.dumps(7))
    assert readable(r.fileno())
    assert q.get() is None
    assert not readable(r.fileno())
    q.put(b"z" * 100)
    with pytest.raises(OSError):
        r.recv_bytes(10)
    with pytest.raises(ValueError):
        r.recv_bytes(-1)
    with pytest.raises(ValueError):
        w.send_bytes(b"abc", 4)
    with pytest.raises(ValueError):
        w.send_bytes(b"abc", 1, 3)


def test_poll_waits_and_agrees_with_recv():
    q = gomp.SimpleQueue()
    r = q._reader
    t = threading.Thread(target=H.put_after, args=(q, 0.2, "late"))
    t.start()
    t0 = time.monotonic()
    assert returns(r.poll, None, what="poll(None) with a put coming") is True
    assert time.monotonic() - t0 > 0.1  # it waited for the put
    assert r.recv() == "late"
    t.join()
    t0 = time.monotonic()
    assert r.poll(0.2) is False
    assert time.monotonic() - t0 >= 0.19


def test_selectors_and_select_across_threads():
    q = gomp.Queue()
    r = q._reader
    sel = selectors.DefaultSelector()
    sel.register(r, selectors.EVENT_READ)
    assert sel.select(0) == []
    t = threading.Thread(target=H.put_after, args=(q, 0.1, 5))
    t.start()
    events = sel.select(10)
    assert [k.fileobj for k, _ in events] == [r]
    assert r.recv() == 5
    assert sel.select(0) == []
    t.join()
    sel.close()
    t = threading.Thread(target=H.put_after, args=(q, 0.1, 6))
    t.start()
    assert select.select([r], [], [], 10)[0] == [r]  # select takes objects with fileno()
    assert q.get() == 6
    t.join()


@pytest.mark.parametrize("kind", KINDS)
def test_closed_reader(kind):
    q = make(kind)
    r = q._reader
    fd = r.fileno()
    mine = H.eventfd_ids()[fd]
    r.close()
    assert r.closed
    for call in (r.fileno, r.recv, r.poll, r.recv_bytes):
        with pytest.raises(OSError):
            call()
    # The eventfd is the queue's: it goes with the queue.
    assert mine in H.eventfd_ids().values()
    del q
    assert mine not in H.eventfd_ids().values()


def test_closed_queue_and_dropped_queue_release_the_descriptor():
    q = gomp.Queue()
    fd = q._reader.fileno()
    mine = H.eventfd_ids()[fd]
    q.close()
    with pytest.raises(OSError):
        q._reader.fileno()
    del q
    assert mine not in H.eventfd_ids().values()
    # (eventfd ids are reused once free: the ten below are checked apart.)
    qs = [gomp.SimpleQueue() for _ in range(10)]
    fds = [s._reader.fileno() for s in qs]
    ids = [H.eventfd_ids()[fd] for fd in fds]
    assert len(set(ids)) == 10
    r = qs[0]._reader
    del qs
    with pytest.raises(OSError):
        r.fileno()  # its queue is gone
    assert not set(ids) & set(H.eventfd_ids().values())


@pytest.mark.parametrize("method", METHODS)
def test_one_eventfd_per_queue_shared_by_its_processes(method):
    code = '''
        import sys
        import gomp
        from gomp import _gomp
        from queue_helpers import eventfd_ids, report_eventfd
        if __name__ == "__main__":
            ctx = gomp.get_context(sys.argv[1])
            _gomp._core_load()
            base = len(eventfd_ids())  # the Go runtime's own
            q = ctx.SimpleQueue()
            q.put(1)
            assert q.get() == 1 and q.empty() and q._reader.poll() is False
            # One eventfd per queue, the same whether anyone watches or not.
            assert len(eventfd_ids()) == base + 1, (eventfd_ids(), base)
            fd = q._reader.fileno()
            assert len(eventfd_ids()) == base + 1 and q._reader.fileno() == fd
            out = ctx.SimpleQueue()
            p = ctx.Process(target=report_eventfd, args=(q, out))
            p.start()
            assert out.get() == eventfd_ids()[fd]  # the child has the same one
            p.join()
            assert p.exitcode == 0
            print("ok")
    '''
    assert run_python(code, method).stdout.strip() == "ok"


# ---- other processes -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_wait_for_items_from_another_process(method, kind):
    ctx = gomp.get_context(method)
    q = make(kind, ctx)
    other_r, other_w = ctx.Pipe(duplex=False)
    n = 2000
    p = ctx.Process(target=H.put_at_random_times, args=(q, n, 1))
    p.start()
    got = []
    r = q._reader
    while len(got) < n:
        ready = wait([other_r, r], timeout=30)
        assert ready, "no wake-up in 30 s with %d of %d items got" % (len(got), n)
        assert ready == [r]
        got.append(r.recv())
    p.join(30)
    assert p.exitcode == 0
    assert got == list(range(n))
    assert wait([r], 0) == [] and not readable(r.fileno())


@pytest.mark.parametrize("method", METHODS)
def test_select_and_selectors_with_another_process(method):
    ctx = gomp.get_context(method)
    q = ctx.SimpleQueue()
    p = ctx.Process(target=H.put_at_random_times, args=(q, 300, 2, 3000))
    p.start()
    sel = selectors.DefaultSelector()
    sel.register(q._reader, selectors.EVENT_READ)
    got = []
    while len(got) < 300:
        if len(got) % 2:
            assert sel.select(30), "selectors: no wake-up"
        else:
            assert select.select([q._reader.fileno()], [], [], 30)[0], "select: no wake-up"
        got.append(q._reader.recv())
    sel.close()
    p.join(30)
    assert p.exitcode == 0 and got == list(range(300))


@pytest.mark.parametrize("method", METHODS)
def test_no_lost_wakeups_under_stress(method):
    # Many short waits race the puts of 3 processes; long waits (10 s) are
    # the watchdog: one that ends empty-handed while items are still coming
    # is a lost wake-up. After each wait, whatever is there is taken without
    # blocking (poll(0) then recv()), so that the descriptor goes through
    # set and reset thousands of times.
    ctx = gomp.get_context(method)
    q = ctx.SimpleQueue()
    n = 3000
    procs = [ctx.Process(target=H.put_at_random_times, args=(q, n, 10 + k, 200)) for k in range(3)]
    for p in procs:
        p.start()
    r = q._reader
    got = 0
    short = empty_short = 0
    rounds = 0
    while got < 3 * n:
        rounds += 1
        if rounds % 3:
            short += 1
            if not wait([r], 0.0005 * (rounds % 5)):
                empty_short += 1
                continue
        else:
            assert wait([r], 10), "lost wake-up: %d of %d items got" % (got, 3 * n)
        while r.poll(0):
            r.recv()
            got += 1
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert not r.poll() and not readable(r.fileno())
    print("%d waits, %d short ones, %d of them empty" % (rounds, short, empty_short))


@pytest.mark.parametrize("method", METHODS)
def test_several_consumer_processes(method):
    # Spurious readiness is possible (as with the stdlib's shared pipe), but
    # every item is got exactly once and nobody hangs.
    ctx = gomp.get_context(method)
    q, out = ctx.SimpleQueue(), ctx.SimpleQueue()
    consumers = [ctx.Process(target=H.take_from_reader, args=(q, out, 100)) for _ in range(2)]
    for c in consumers:
        c.start()
    for i in range(200):
        q.put(i)
        if i % 10 == 0:
            time.sleep(0.002)
    results = [out.get() for _ in consumers]
    for c in consumers:
        c.join(30)
        assert c.exitcode == 0
    got = sorted(x for items, _, _ in results for x in items)
    assert got == list(range(200))
    # One descriptor for all: the queue's eventfd.
    ids = [mine for _, mine, _ in results]
    assert ids == [H.eventfd_ids()[q._reader.fileno()]] * 2


def test_fork_child_shares_the_descriptor():
    ctx = gomp.get_context("fork")
    q, out = ctx.SimpleQueue(), ctx.SimpleQueue()
    r = q._reader
    fd = r.fileno()  # the parent watches before the fork
    mine = H.eventfd_ids()[fd]
    c = ctx.Process(target=H.take_from_reader, args=(q, out, 3))
    c.start()
    for i in range(3):
        # put once the child waits (polls the eventfd), so that it does
        wait_until(lambda: polls_for(c.pid, fd, POLLIN), "the child waiting on the queue's reader")
        q.put(i)
    got, childs, all_childs = out.get()
    c.join(30)
    assert c.exitcode == 0 and got == [0, 1, 2]
    # The child waited on the same eventfd (the queue's).
    assert childs == mine and mine in all_childs
    # The parent's descriptor still works: nothing of the child's use of the
    # queue broke its wake-ups.
    assert not r.poll()
    t = threading.Thread(target=H.put_after, args=(q, 0.1, "parent"))
    t.start()
    assert wait([r], 10) == [r] and r.recv() == "parent"
    t.join()


def test_raw_os_fork_child():
    q = gomp.SimpleQueue()
    r = q._reader
    fd = r.fileno()
    mine = H.eventfd_ids()[fd]
    q.put("x")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = wait([r], 10) == [r] and r.recv() == "x"
            ids = H.eventfd_ids()
            ok = ok and ids[r.fileno()] == mine
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not r.poll()


def test_recv_reports_an_item_cut_short_by_a_killed_producer():
    # The producer streams an item larger than the ring and is killed in the
    # middle: recv() raises (concurrent.futures then reports a broken pool)
    # instead of waiting forever for the rest; get() drops such an item.
    ctx = gomp.get_context("fork")
    q = ctx.SimpleQueue()
    size = 4 * gomp.queues._RING_BYTES
    p = ctx.Process(target=H.put_big_and_hang, args=(q, size))
    p.start()
    assert wait([q._reader], 30) == [q._reader]  # the first fragment is in
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with pytest.raises(OSError, match="cut short"):
        q._reader.recv()
    q.put("next")
    assert q._reader.recv() == "next"


# ---- giving a queue up (concurrent.futures' broken pool) -------------------------------------


def _fill_overflow(q):
    big = b"o" * (gomp.queues._RING_BYTES // 3)
    for _ in range(12):
        q.put(big)
    assert q._stat(_gomp.GOMP_QSTAT_PENDING) > 0
    assert q._flush(0.05) is False  # nobody makes room


def test_terminate_broken_drops_the_overflow():
    q = gomp.Queue()
    _fill_overflow(q)
    returns(q._terminate_broken)  # does not wait for room that never comes
    assert q._stat(_gomp.GOMP_QSTAT_PENDING) == 0
    assert q._reader.closed


def test_reader_closed_with_ignore_epipe_drops_the_overflow():
    # Python 3.11's concurrent.futures closes the call queue's reader, then
    # closes the queue and joins it.
    q = gomp.Queue(3)
    q._ignore_epipe = True
    big = b"o" * (gomp.queues._RING_BYTES // 3)
    for _ in range(3):
        q.put(big)
    assert q._stat(_gomp.GOMP_QSTAT_PENDING) > 0  # one waits in the overflow
    q._reader.close()
    q.close()
    returns(q.join_thread)  # does not wait for room that never comes ...
    assert q._stat(_gomp.GOMP_QSTAT_PENDING) == 0  # ... because it was dropped


def test_reader_closed_without_ignore_epipe_keeps_the_overflow():
    q = gomp.Queue()
    _fill_overflow(q)
    q._reader.close()
    assert q._stat(_gomp.GOMP_QSTAT_PENDING) > 0
    q._discard()  # let the test end


# ---- concurrent.futures ----------------------------------------------------------------------

CF_SCRIPT = r"""
import sys, time, faulthandler, inspect
faulthandler.dump_traceback_later(100, exit=True)
import gomp
gomp.install()
import multiprocessing as mp
import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import queue_helpers as H
from gomp._versions import V

method = sys.argv[1]
if __name__ == "__main__":
    assert mp.__name__ == "gomp" or "gomp" in mp.__file__, mp.__file__
    ctx = mp.get_context(method) if sys.argv[2] == "ctx" else None
    if ctx is None:
        mp.set_start_method(method, force=True)
    kw = {"mp_context": ctx} if ctx is not None else {}
    with cf.ProcessPoolExecutor(2, **kw) as ex:
        assert type(ex._result_queue).__module__ == "gomp.queues"
        assert list(ex.map(H.cf_square, range(200))) == [x * x for x in range(200)]
        assert list(ex.map(H.cf_square, range(2000), chunksize=64)) == [x * x for x in range(2000)]
        fs = [ex.submit(H.cf_square, i) for i in range(50)]
        assert [f.result(timeout=60) for f in fs] == [i * i for i in range(50)]
        f = ex.submit(H.cf_fail, 3)
        try:
            f.result(timeout=60)
            raise SystemExit("no exception")
        except ValueError as e:
            assert "failed on 3" in str(e)
            assert "cf_fail" in str(e.__cause__), e.__cause__
        assert len(ex.submit(H.cf_bytes, 3 << 20).result(timeout=60)) == 3 << 20
        assert ex.submit(H.cf_len, b"a" * (3 << 20)).result(timeout=60) == 3 << 20
        print("map/submit/exceptions ok", flush=True)
    with cf.ProcessPoolExecutor(3, initializer=H.cf_init, initargs=(42,), **kw) as ex:
        assert set(ex.map(H.cf_get_init, range(20))) == {42}
        pids = set(ex.map(H.cf_pid, range(30)))
        assert 1 <= len(pids) <= 3, pids
        print("initializer/max_workers ok", len(pids), flush=True)
    ex = cf.ProcessPoolExecutor(2, **kw)
    fs = [ex.submit(H.cf_sleep, 0.1) for _ in range(4)]
    ex.shutdown(wait=False)
    assert [f.result(timeout=60) for f in fs] == [0.1] * 4
    print("shutdown(wait=False) ok", flush=True)
    # A worker killed while it runs a task.
    ex = cf.ProcessPoolExecutor(2, **kw)
    assert ex.submit(H.cf_square, 3).result(timeout=60) == 9
    f = ex.submit(H.cf_kill_self, None, 0.1)
    others = [ex.submit(H.cf_sleep, 0.05) for _ in range(5)]
    try:
        f.result(timeout=60)
        raise SystemExit("no BrokenProcessPool")
    except BrokenProcessPool:
        pass
    try:
        ex.submit(H.cf_square, 1)
        raise SystemExit("submit after broken")
    except BrokenProcessPool:
        pass
    for o in others:
        try:
            o.result(timeout=60)
        except BrokenProcessPool:
            pass
    ex.shutdown()
    print("killed worker ok", flush=True)
    # Killed while large tasks wait in the call queue's overflow (nobody
    # will ever read them: the exit must not wait for them). Not on 3.10,
    # whose executor hangs there with the stdlib's queues too (V's fact).
    if V.cf_broken_pool_closes_reader:
        ex = cf.ProcessPoolExecutor(1, **kw)
        big = b"a" * (700 << 10)
        fs = [ex.submit(H.cf_kill_self, big, 0.2)] + [ex.submit(H.cf_len, big) for _ in range(6)]
        broken = 0
        for f in fs:
            try:
                f.result(timeout=60)
            except BrokenProcessPool:
                broken += 1
        assert broken >= 1, broken
        ex.shutdown()
        print("killed worker with a full call queue ok", broken, flush=True)
    # (concurrent.futures has max_tasks_per_child from 3.11 on.)
    if method != "fork" and "max_tasks_per_child" in inspect.signature(cf.ProcessPoolExecutor).parameters:
        # max_tasks_per_child=1 (2 or more hangs the stdlib's executor too
        # before CPython gh-115634 was fixed: no idle worker is replaced).
        with cf.ProcessPoolExecutor(2, max_tasks_per_child=1, **kw) as ex:
            assert len(set(ex.map(H.cf_pid, range(6)))) == 6
        print("max_tasks_per_child ok", flush=True)
    print("ALL OK", flush=True)
"""


@pytest.mark.parametrize("how", ["install", "ctx"])
@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor(method, how):
    t0 = time.monotonic()
    proc = run_python(CF_SCRIPT, method, how, timeout=150)
    assert "ALL OK" in proc.stdout, proc.stdout + proc.stderr
    print(sys.version.split()[0], method, how, "%.1fs" % (time.monotonic() - t0))
    print(proc.stdout)


NO_INSTALL_SCRIPT = r"""
import sys
import gomp
import concurrent.futures as cf
import queue_helpers as H
if __name__ == "__main__":
    import multiprocessing
    assert "gomp" not in multiprocessing.__file__
    with cf.ProcessPoolExecutor(2, mp_context=gomp.get_context(sys.argv[1])) as ex:
        assert list(ex.map(H.cf_square, range(100))) == [x * x for x in range(100)]
        assert type(ex._result_queue).__module__ == "gomp.queues"
    print("ALL OK", flush=True)
"""


@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor_with_a_gomp_context_only(method):
    # Without gomp.install(), concurrent.futures builds its call queue from
    # the stdlib's multiprocessing.queues.Queue with gomp's context, which
    # needs the context's Lock and BoundedSemaphore; the result queue is
    # gomp's SimpleQueue, waited for with the stdlib's connection.wait().
    proc = run_python(NO_INSTALL_SCRIPT, method, timeout=120, check=False)
    if "synchronize.Lock is not implemented" in proc.stderr:
        pytest.skip(
            "gomp.synchronize is a placeholder in this tree: the stdlib's Queue "
            "that concurrent.futures subclasses needs ctx.Lock()"
        )
    assert "ALL OK" in proc.stdout, proc.stdout + proc.stderr


def test_stdlib_connection_wait_on_a_gomp_reader():
    # What concurrent.futures does with mp_context=gomp.get_context(...) and
    # no gomp.install(): the stdlib's wait() (selectors on fileno()).
    std_connection = stdlib_peer("multiprocessing.connection")
    ctx = gomp.get_context("fork")
    q = ctx.SimpleQueue()
    p = ctx.Process(target=H.put_at_random_times, args=(q, 500, 3, 2000))
    p.start()
    got, woke_for_items = [], 0
    while len(got) < 500:
        # (A missed wake-up fails here, after a generous wait.)
        ready = std_connection.wait([q._reader, p.sentinel], HANG_GUARD)
        assert ready, "no wake-up: %d of 500 items got" % len(got)
        woke_for_items += q._reader in ready
        while q._reader.poll():
            got.append(q._reader.recv())
        assert p.sentinel not in ready or len(got) == 500, (
            "the producer is gone, %d of 500 items got" % len(got)
        )
    p.join(30)
    assert got == list(range(500))
    # The items woke the wait, not just the producer's exit.
    assert woke_for_items > 0
    assert std_connection.wait([q._reader], 0) == []


# A worker with max_tasks_per_child=1 puts its result and exits at once: the
# manager thread waits for the result queue's reader together with the
# workers' sentinels, and must find the result readable no later than the
# sentinel (else it declares the pool broken). Many short tasks make each
# worker's put race its own exit. tests_py/tools/cf_stress.py runs it in a
# loop.
CF_STRESS_SCRIPT = r"""
import sys, faulthandler
faulthandler.dump_traceback_later(240, exit=True)
import gomp
gomp.install()
import multiprocessing as mp
import concurrent.futures as cf
import queue_helpers as H

if __name__ == "__main__":
    method, n = sys.argv[1], int(sys.argv[2])
    ctx = mp.get_context(method)
    try:
        ex = cf.ProcessPoolExecutor(2, mp_context=ctx, max_tasks_per_child=1)
    except ValueError as e:  # fork: refused by the host's concurrent.futures
        print("SKIP", e)
        raise SystemExit(0)
    with ex:
        assert list(ex.map(H.cf_ident, range(n))) == list(range(n))
        fs = [ex.submit(H.cf_ident, i) for i in range(n)]
        assert [f.result() for f in fs] == list(range(n))
    print("ALL OK", flush=True)
"""


@pytest.mark.skipif(
    "max_tasks_per_child" not in inspect.signature(cf.ProcessPoolExecutor).parameters,
    reason="concurrent.futures' ProcessPoolExecutor has no max_tasks_per_child (3.11+)",
)
@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor_max_tasks_per_child_stress(method):
    proc = run_python(CF_STRESS_SCRIPT, method, "30", timeout=300, check=False)
    if proc.stdout.startswith("SKIP"):
        pytest.skip(proc.stdout.strip())
    assert "ALL OK" in proc.stdout, proc.stdout + proc.stderr
