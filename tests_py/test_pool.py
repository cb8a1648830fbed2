"""gomp.pool: Pool for every start method and ThreadPool, including what the
standard library does not do: a worker that dies while running a task fails
that task (WorkerLostError) instead of hanging the pool."""

import gc
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

import gomp
import gomp.pool
import pool_helpers as h
from conftest import wait_until
from gomp.pool import MaybeEncodingError, RemoteTraceback, WorkerLostError

METHODS = ['fork', 'spawn', 'forkserver']
KINDS = METHODS + ['threads']

# Hang guard for every wait in this file (not a timing assertion).
LONG = 60


def make_pool(kind, n=2, **kw):
    if kind == 'threads':
        return gomp.pool.ThreadPool(n, **kw)
    return gomp.get_context(kind).Pool(n, **kw)


@pytest.fixture(scope='module', params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope='module')
def pool(kind):
    p = make_pool(kind, 3)
    yield p
    p.terminate()
    p.join()


@pytest.fixture(params=METHODS)
def method(request):
    return request.param


# ---- the API -------------------------------------------------------------------------------


def test_apply(pool):
    assert pool.apply(h.square, (7,)) == 49
    assert pool.apply(h.add_kw, (1,), {'y': 2}) == 3


def test_apply_async_result_api(pool):
    r = pool.apply_async(h.square, (5,))
    assert r.get(LONG) == 25
    assert r.ready() and r.successful()
    r.wait(LONG)
    assert isinstance(r, gomp.pool.AsyncResult)


def test_not_ready_result(pool, kind, tmp_path):
    gate = str(tmp_path / 'gate')
    r = pool.apply_async(h.wait_for_file, (gate,))
    with pytest.raises(gomp.TimeoutError):
        r.get(timeout=0.05)
    assert not r.ready()
    with pytest.raises(ValueError):
        r.successful()
    open(gate, 'w').close()
    r.get(LONG)
    assert r.successful()


def test_map_and_chunksizes(pool):
    data = list(range(200))
    expected = [x * x for x in data]
    assert pool.map(h.square, data) == expected
    for cs in (1, 7, 50, 1000):
        assert pool.map(h.square, data, chunksize=cs) == expected
    assert pool.map(h.square, iter(data)) == expected  # no __len__
    assert pool.map(h.square, []) == []


def test_map_async(pool):
    r = pool.map_async(h.square, range(30), chunksize=4)
    assert isinstance(r, gomp.pool.MapResult)
    assert r.get(LONG) == [x * x for x in range(30)]
    assert r.successful()
    assert pool.map_async(h.square, [], chunksize=1).get(LONG) == []


def test_starmap(pool):
    pairs = list(zip(range(40), range(40, 0, -1)))
    expected = [a * b for a, b in pairs]
    assert pool.starmap(h.mul, pairs) == expected
    assert pool.starmap(h.mul, pairs, chunksize=9) == expected
    assert pool.starmap_async(h.mul, pairs).get(LONG) == expected


def test_imap(pool):
    for cs in (1, 3, 100):
        assert list(pool.imap(h.square, range(50), chunksize=cs)) == [x * x for x in range(50)]
    it = pool.imap(h.square, range(3))
    assert isinstance(it, gomp.pool.IMapIterator)
    assert [it.next(LONG), next(it), it.next(timeout=LONG)] == [0, 1, 4]
    with pytest.raises(StopIteration):
        next(it)
    assert list(pool.imap(h.square, [])) == []
    with pytest.raises(ValueError):
        pool.imap(h.square, range(3), chunksize=0)


def test_imap_unordered(pool):
    for cs in (1, 6):
        got = list(pool.imap_unordered(h.square, range(60), chunksize=cs))
        assert sorted(got) == [x * x for x in range(60)]
    assert list(pool.imap_unordered(h.square, [])) == []


def test_imap_next_timeout(pool, tmp_path):
    gate = str(tmp_path / 'gate')
    it = pool.imap(h.wait_for_file, [gate])
    with pytest.raises(gomp.TimeoutError):
        it.next(timeout=0.05)
    open(gate, 'w').close()
    assert isinstance(it.next(LONG), int)


def _failing_iterable(n, at):
    for i in range(n):
        if i == at:
            raise KeyError('iterable broke')
        yield i


def test_iterable_raising(pool):
    with pytest.raises(KeyError):
        pool.map(h.square, _failing_iterable(5, 2))
    it = pool.imap(h.square, _failing_iterable(10, 4))
    assert [next(it) for _ in range(4)] == [0, 1, 4, 9]
    with pytest.raises(KeyError) as info:
        next(it)
    assert info.value.__cause__ is None  # raised in this process, not remote
    it = pool.imap_unordered(h.square, _failing_iterable(10, 4))
    with pytest.raises(KeyError):
        for _ in range(10):
            next(it)


def test_exception_from_task(pool, kind):
    with pytest.raises(RuntimeError) as info:
        pool.apply(h.fail_with_marker)
    assert info.value.args == (123,)
    if kind == 'threads':
        assert not isinstance(info.value.__cause__, RemoteTraceback)
    else:
        assert type(info.value.__cause__) is RemoteTraceback
        assert 'marker: fail_with_marker raised here' in info.value.__cause__.tb
    r = pool.map_async(h.fail, [1, 2, 3], chunksize=1)
    with pytest.raises(ValueError):
        r.get(LONG)
    assert not r.successful()


def test_callbacks(pool):
    got = []
    pool.apply_async(h.square, (3,), callback=got.append, error_callback=got.append).wait(LONG)
    pool.map_async(h.square, [1, 2], callback=got.append).wait(LONG)
    pool.apply_async(h.fail, (0,), callback=got.append, error_callback=got.append).wait(LONG)
    pool.map_async(h.fail, [1], error_callback=got.append).wait(LONG)
    assert got[:2] == [9, [1, 4]]
    assert isinstance(got[2], ValueError) and isinstance(got[3], ValueError)


def test_callback_raising_does_not_break_the_pool(pool, capfd):
    def bad(value):
        raise ZeroDivisionError('callback broke')

    r = pool.apply_async(h.square, (4,), callback=bad)
    assert r.get(LONG) == 16
    r = pool.apply_async(h.fail, (4,), error_callback=bad)
    with pytest.raises(ValueError):
        r.get(LONG)
    assert pool.map(h.square, range(5)) == [0, 1, 4, 9, 16]
    err = capfd.readouterr().err
    assert 'Exception in pool callback' in err and 'callback broke' in err


def test_callback_can_submit_more_work(pool):
    results = []

    def chain(value):
        results.append(pool.apply_async(h.square, (value,)))

    pool.apply_async(h.square, (3,), callback=chain).get(LONG)
    deadline = time.monotonic() + LONG
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results[0].get(LONG) == 81


def test_private_names(pool, kind):
    assert pool._state == gomp.pool.RUN
    assert len(pool._pool) == 3 and pool._processes == 3
    if kind != 'threads':
        assert all(w.pid and w.is_alive() for w in pool._pool)
    assert isinstance(pool._cache, dict)
    for name in ('_taskqueue', '_inqueue', '_outqueue'):
        assert hasattr(pool, name)
    assert 'state=RUN' in repr(pool)


# ---- unpicklable data ----------------------------------------------------------------------


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError('cannot pickle this')


def test_unpicklable_arguments(method):
    with make_pool(method) as p:
        with pytest.raises(RuntimeError, match='cannot pickle'):
            p.map(h.square, [Unpicklable()] * 5)
        with pytest.raises(RuntimeError, match='cannot pickle'):
            p.apply(h.square, (Unpicklable(),))
        errors = []
        r = p.apply_async(h.square, (Unpicklable(),), error_callback=errors.append)
        with pytest.raises(RuntimeError):
            r.get(LONG)
        assert isinstance(errors[0], RuntimeError)
        assert p.map(h.square, range(4)) == [0, 1, 4, 9]


def test_unpicklable_result(method):
    with make_pool(method) as p:
        for _ in range(5):
            errors = []
            r = p.apply_async(h.unpicklable_result, error_callback=errors.append)
            with pytest.raises(MaybeEncodingError) as info:
                r.get(LONG)
            assert 'lambda' in str(info.value) and errors[0] is info.value
        assert len(p._pool) == 2
        assert p.map(h.square, range(4)) == [0, 1, 4, 9]


# ---- dead workers --------------------------------------------------------------------------


def _wait_for_path(path):
    wait_until(lambda: os.path.exists(path), 'the task started', LONG)
    with open(path) as f:
        return int(f.read())


def _wait_for_pool_size(p, n):
    wait_until(
        lambda: len(p._pool) == n and all(w.is_alive() for w in p._pool),
        'the pool repopulated',
        LONG,
    )


def test_sigkill_during_task(method, tmp_path):
    with make_pool(method, 2) as p:
        path = str(tmp_path / 'pid')
        victim = p.apply_async(h.announce_and_block, (path,))
        others = p.map_async(h.square, range(20))
        pid = _wait_for_path(path)
        assert pid in [w.pid for w in p._pool]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError) as info:
            victim.get(LONG)
        err = info.value
        assert err.pid == pid and err.exitcode == -signal.SIGKILL
        assert 'SIGKILL' in str(err)
        assert isinstance(err, gomp.ProcessError)
        assert not victim.successful()
        assert others.get(LONG) == [x * x for x in range(20)]
        _wait_for_pool_size(p, 2)
        assert pid not in [w.pid for w in p._pool]
        assert p.map(h.square, range(10)) == [x * x for x in range(10)]


def test_os_exit_in_task(method):
    with make_pool(method, 2) as p:
        errors = []
        r = p.apply_async(h.exit_now, (5,), error_callback=errors.append)
        with pytest.raises(WorkerLostError) as info:
            r.get(LONG)
        assert info.value.exitcode == 5 and errors == [info.value]
        # A map with one item that kills its worker fails as a whole ...
        with pytest.raises(WorkerLostError):
            p.map(h.square_or_exit, range(8), chunksize=1)
        # ... imap fails at that item only
        it = p.imap(h.square_or_exit, range(6))
        assert [next(it) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(WorkerLostError):
            it.next(LONG)
        assert [next(it), next(it)] == [16, 25]
        assert p.apply(h.square, (9,)) == 81


def test_dead_worker_while_closing(method):
    p = make_pool(method, 2)
    r = p.apply_async(h.kill_self)
    ok = p.map_async(h.square, range(10))
    p.close()
    with pytest.raises(WorkerLostError):
        r.get(LONG)
    assert ok.get(LONG) == [x * x for x in range(10)]
    p.join()
    assert all(not w.is_alive() for w in p._pool)


# ---- worker lifetime, initializer ----------------------------------------------------------


def test_maxtasksperchild(method):
    p = make_pool(method, 2, maxtasksperchild=3)
    first = {w.pid for w in p._pool}
    results = [p.apply_async(h.pid_after, (i,)) for i in range(30)]
    pids = {r.get(LONG) for r in results}
    # 30 tasks, at most 3 per worker process: at least 10 distinct workers.
    assert len(pids) >= 10
    p._repopulate_pool()
    _wait_for_pool_size(p, 2)
    assert {w.pid for w in p._pool} != first
    p.close()
    p.join()


def test_maxtasksperchild_early_close(method):
    p = make_pool(method, 2, maxtasksperchild=1)
    results = [p.apply_async(h.square, (i,)) for i in range(6)]
    p.close()
    p.join()
    assert [r.get(LONG) for r in results] == [i * i for i in range(6)]


@pytest.mark.parametrize('value', [0, -1, 0.5, '3'])
def test_maxtasksperchild_invalid(value):
    with pytest.raises(ValueError):
        gomp.Pool(1, maxtasksperchild=value)


def test_initializer(kind):
    p = make_pool(kind, 2, initializer=h.set_initialized, initargs=('ready',))
    try:
        assert set(p.map(h.get_initialized, range(8), chunksize=1)) == {'ready'}
    finally:
        p.close()
        p.join()


def test_bad_arguments():
    with pytest.raises(ValueError):
        gomp.Pool(0)
    with pytest.raises(ValueError):
        gomp.pool.ThreadPool(-1)
    with pytest.raises(TypeError):
        gomp.Pool(1, initializer=1)


# ---- lifetime ------------------------------------------------------------------------------


def test_close_join_finishes_work(kind):
    p = make_pool(kind, 2)
    r = p.map_async(h.sleep_for, [0.01] * 10, chunksize=1)
    p.close()
    assert p._state == gomp.pool.CLOSE
    with pytest.raises(ValueError):
        p.apply_async(h.square, (1,))
    p.join()
    assert r.get(0) == [0.01] * 10
    if kind != 'threads':
        assert all(w.exitcode == 0 for w in p._pool)


def test_join_while_running_refused(kind):
    p = make_pool(kind, 1)
    with pytest.raises(ValueError):
        p.join()
    p.terminate()
    p.join()


def test_terminate_with_pending_work(kind):
    p = make_pool(kind, 2)
    r = p.map_async(h.sleep_for, [0.2] * 1000, chunksize=1)
    workers = list(p._pool)
    p.terminate()
    p.join()
    assert p._state == gomp.pool.TERMINATE
    assert not r.ready()
    if kind != 'threads':
        assert all(not w.is_alive() for w in workers)
    with pytest.raises(ValueError):
        p.map(h.square, [1])


def test_terminate_with_pipe_task_queue_full():
    # A Pool subclass with a task queue of the stdlib's shape (joblib's
    # MemmappingPool): tasks of 256 KiB fill the pipe, so the pool's feeder
    # blocks writing to it; terminate() must drain the pipe to let the
    # feeder finish rather than wait for it forever. In a child process, so
    # that a hang fails the test instead of stopping the run.
    code = (
        # A hang shows where every thread of the pool's process waits.
        "import faulthandler; faulthandler.dump_traceback_later(100, exit=True)\n"
        "import gomp, gomp.pool, pool_helpers as h\n"
        "P = h.pipe_queue_pool_class(gomp.pool.Pool)\n"
        "p = P(2, context=gomp.get_context('fork'))\n"
        "assert p.map(h.square, range(10)) == [x * x for x in range(10)]\n"
        "p.map_async(h.sleep_with_payload, [(0.5, b'x' * 262144)] * 64, chunksize=1)\n"
        "import time; time.sleep(0.5)\n"
        "p.terminate(); p.join(); print('terminated')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "terminated"


def test_with_statement_terminates(kind):
    with make_pool(kind, 2) as p:
        assert p.map(h.square, range(5)) == [0, 1, 4, 9, 16]
    assert p._state == gomp.pool.TERMINATE
    p.join()
    with pytest.raises(ValueError):
        p.map_async(h.square, [1])
    with pytest.raises(ValueError):
        with p:
            pass


def test_states():
    assert (gomp.pool.INIT, gomp.pool.RUN, gomp.pool.CLOSE, gomp.pool.TERMINATE) == (
        'INIT',
        'RUN',
        'CLOSE',
        'TERMINATE',
    )


def test_resource_warning_for_unclosed_pool(kind):
    p = make_pool(kind, 1)
    p.terminate()
    p.join()
    p._state = gomp.pool.RUN
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        p = None
        gc.collect()
    assert any(
        issubclass(w.category, ResourceWarning)
        and 'unclosed running multiprocessing pool' in str(w.message)
        for w in caught
    )


def test_abandoned_pool_is_terminated(method):
    p = make_pool(method, 1)
    workers = list(p._pool)
    assert p.apply(h.square, (2,)) == 4
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        p = None
        gc.collect()
    for w in workers:
        w.join(LONG)
        assert not w.is_alive()


def test_pool_not_picklable(pool):
    import pickle

    with pytest.raises(NotImplementedError):
        pickle.dumps(pool)


def test_dummy_pool_uses_threads():
    import gomp.dummy

    p = gomp.dummy.Pool(2)
    try:
        assert isinstance(p, gomp.pool.ThreadPool)
        assert set(p.map(h.pid_after, range(10))) == {os.getpid()}
    finally:
        p.close()
        p.join()


def test_no_threads_left_after_join(kind):
    import threading

    before = set(threading.enumerate())
    p = make_pool(kind, 2)
    p.map(h.square, range(10))
    p.close()
    p.join()
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


def test_pool_dropped_inside_its_own_callback(method):
    # The last reference to the pool is a pending result: the pool is
    # collected in its own router thread when that result completes.
    done = []
    p = make_pool(method, 1)
    workers = list(p._pool)
    r = p.apply_async(h.square, (6,), callback=done.append)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        del p
        assert r.get(LONG) == 36
        gc.collect()
    for w in workers:
        w.join(LONG)
        assert not w.is_alive()
    assert done == [36]
