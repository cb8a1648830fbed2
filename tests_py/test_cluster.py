"""gomp.cluster.Pool: the Pool API on a Dask LocalCluster.

One LocalCluster for the module (the `pool` fixture: a gomp.cluster.Pool of
2 worker processes that started it); the tests of a pool's lifetime make
their own pools on that cluster's Client (client=) or scheduler address
(address=), which costs no new processes. Skipped as a whole only when
dask.distributed cannot be imported (make test installs it)."""

import functools
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip(
    'distributed',
    reason="dask.distributed is not installed (pip install 'gomp-mp[cluster]'; make test does it)",
)

import gomp  # noqa: E402
from gomp.cluster import Pool  # noqa: E402
from gomp.pool import MaybeEncodingError, RemoteTraceback, WorkerLostError  # noqa: E402

# Generous: a hang guard only, never a performance bound.
LONG = 60


# ---- what the tasks run (imported by the workers: sys.path travels with spawn) -------------


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail(x):
    raise ValueError('task %r failed' % (x,))


def sleep_then(x, seconds=0.05):
    time.sleep(seconds)
    return x


def pid_of(_):
    return os.getpid()


def length_plus(blob, x):
    return len(blob) + x


def unpicklable(_):
    return threading.Lock()


def kill_own_worker(marker):
    # One line per run: the test checks the task ran exactly once.
    with open(marker, 'a') as f:
        f.write('%d\n' % os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


_initialized = None


def init_worker(marker, value):
    global _initialized
    _initialized = value
    with open(marker, 'a') as f:
        f.write('%d\n' % os.getpid())


def initialized(_):
    return _initialized, os.getpid()


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def pool():
    p = Pool(2)  # address=None: a LocalCluster of 2 processes of its own
    try:
        yield p
    finally:
        p.terminate()


@pytest.fixture
def client(pool):
    return pool.client


# ---- the API -------------------------------------------------------------------------------


def test_apply_and_apply_async(pool):
    assert pool.apply(add, (2, 3)) == 5
    assert pool.apply(add, (), {'a': 1, 'b': 2}) == 3
    r = pool.apply_async(square, (9,))
    assert r.get(LONG) == 81
    assert r.ready() and r.successful()


def test_map_variants(pool):
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, iter(range(7)), chunksize=3) == [x * x for x in range(7)]
    assert pool.map(square, []) == []
    assert pool.map_async(square, range(5)).get(LONG) == [0, 1, 4, 9, 16]
    assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.starmap_async(add, [(1, 1)] * 3, chunksize=2).get(LONG) == [2, 2, 2]


def test_imap_variants(pool):
    assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
    assert list(pool.imap(square, range(10), chunksize=4)) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(square, range(10))) == sorted(x * x for x in range(10))
    assert sorted(pool.imap_unordered(square, range(10), 3)) == sorted(x * x for x in range(10))
    it = pool.imap(sleep_then, [1, 2])
    assert it.next(timeout=LONG) == 1
    with pytest.raises(ValueError):
        pool.imap(square, range(3), chunksize=0)


def test_imap_endless_iterable(client):
    def naturals():
        n = 0
        while True:
            yield n
            n += 1

    # Its own pool: as with the local Pool, the feeder walks one iterable at
    # a time, and this one never ends (terminate() stops it).
    with Pool(client=client) as p:
        it = p.imap(square, naturals())
        assert [next(it) for _ in range(30)] == [x * x for x in range(30)]


def test_callbacks(pool):
    got, errors = [], []
    pool.map_async(square, range(4), callback=got.append).wait(LONG)
    pool.apply_async(fail, (1,), error_callback=errors.append).wait(LONG)
    deadline = time.monotonic() + LONG
    while (not got or not errors) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == [[0, 1, 4, 9]]
    assert isinstance(errors[0], ValueError)


def test_async_result(pool):
    r = pool.apply_async(sleep_then, (5, 1.0))
    with pytest.raises(ValueError):
        r.successful()  # not ready yet
    with pytest.raises(gomp.TimeoutError):
        r.get(timeout=0.01)
    r.wait(LONG)
    assert r.ready() and r.successful() and r.get() == 5


def test_remote_traceback(pool):
    with pytest.raises(ValueError, match='task 3 failed') as info:
        pool.apply(fail, (3,))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert 'in fail' in str(info.value.__cause__)
    r = pool.map_async(fail, range(4))
    r.wait(LONG)
    assert r.ready() and not r.successful()
    with pytest.raises(ValueError):
        list(pool.imap(fail, range(2)))


def test_unpicklable_result_and_argument(pool):
    with pytest.raises(MaybeEncodingError):
        pool.apply(unpicklable, (0,))
    with pytest.raises(TypeError):
        pool.apply(len, (threading.Lock(),))
    with pytest.raises(TypeError):
        pool.map(len, [threading.Lock()])
    assert pool.map(square, [3]) == [9]


def test_iterable_that_raises(pool):
    def items():
        yield 1
        raise KeyError('from the iterable')

    it = pool.imap(square, items())
    assert next(it) == 1
    with pytest.raises(KeyError):
        next(it)


def test_map_10k_in_order(pool):
    n = 10_000
    assert pool.map(square, range(n)) == [x * x for x in range(n)]
    assert list(pool.imap(square, range(n), chunksize=250)) == [x * x for x in range(n)]


def test_chunksize_batches_tasks(pool, monkeypatch):
    # One Dask task per chunk.
    calls = []
    real = pool.client.submit
    monkeypatch.setattr(pool.client, 'submit', lambda *a, **k: calls.append(1) or real(*a, **k))
    assert pool.map(square, range(100), chunksize=25) == [x * x for x in range(100)]
    assert len(calls) == 4


def test_large_shared_argument_scattered_once(pool, monkeypatch):
    blob = b'x' * (1 << 20)
    scattered = []
    real = pool.client.scatter
    monkeypatch.setattr(
        pool.client, 'scatter', lambda *a, **k: scattered.append(1) or real(*a, **k)
    )
    func = functools.partial(length_plus, blob)
    assert pool.map(func, range(12), chunksize=1) == [len(blob) + x for x in range(12)]
    assert len(scattered) == 1
    assert pool.starmap(length_plus, [(blob, x) for x in range(12)], chunksize=2) == [
        len(blob) + x for x in range(12)
    ]
    assert len(scattered) == 2
    # A closure over it too (cloudpickle sends closures by value).
    assert pool.map(lambda x: len(blob) + x, range(4), chunksize=1) == [
        len(blob) + x for x in range(4)
    ]
    assert len(scattered) == 3
    # Small arguments travel inside the tasks.
    assert pool.starmap(add, [(1, 2)] * 4) == [3] * 4
    assert len(scattered) == 3


def test_processes_bounds_tasks_in_flight(client):
    seen = []
    with Pool(1, client=client) as p:
        runner = p._runner
        real = runner._submit

        def submit(task, sharer):
            seen.append(len(runner._inflight))
            real(task, sharer)

        runner._submit = submit
        assert p.map(sleep_then, range(6), chunksize=1) == list(range(6))
    assert max(seen) == 0  # each submission waited for the one before to finish


# ---- a worker that dies --------------------------------------------------------------------


def test_worker_killed_mid_task(pool, tmp_path):
    marker = str(tmp_path / 'runs')
    others = pool.map_async(sleep_then, range(8), chunksize=1)
    with pytest.raises(WorkerLostError, match='died') as info:
        pool.apply(kill_own_worker, (marker,))
    assert info.value.pid is not None
    # Not run again behind the user's back (Dask would, 3 times by default).
    time.sleep(1)
    with open(marker) as f:
        assert len(f.read().split()) == 1
    # The pool goes on: the other tasks finish, new ones run (the nanny
    # restarted the worker).
    assert others.get(LONG) == list(range(8))
    assert pool.map(square, range(10), chunksize=1) == [x * x for x in range(10)]

    # In a map: the whole map fails, as with the local Pool.
    with pytest.raises(WorkerLostError):
        pool.map(kill_own_worker, [marker], chunksize=1)
    assert pool.apply(square, (4,)) == 16


def test_worker_killed_on_a_scheduler_the_pool_did_not_start(tmp_path):
    # A scheduler with Dask's default allowed-failures (3): the pool's own
    # scheduler plugin still makes a lost task fail at once, or after the
    # retries asked for, and leaves the scheduler's setting alone.
    import dask
    import distributed

    with dask.config.set({'distributed.scheduler.allowed-failures': 3}):
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, dashboard_address=None, silence_logs=50
        )
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        assert cluster.scheduler.allowed_failures == 3
        for retries in (0, 1):
            marker = str(tmp_path / ('runs%d' % retries))
            with Pool(client=client, retries=retries) as p:
                with pytest.raises(WorkerLostError):
                    p.apply(kill_own_worker, (marker,))
                assert p.apply(square, (5,)) == 25
            with open(marker) as f:
                assert len(f.read().split()) == retries + 1
        assert cluster.scheduler.allowed_failures == 3
        assert not any(n.startswith('gomp-pool') for n in cluster.scheduler.plugins)


# ---- initializer ---------------------------------------------------------------------------


def test_initializer_once_per_worker(client, tmp_path):
    marker = str(tmp_path / 'inits')
    with Pool(client=client, initializer=init_worker, initargs=(marker, 'ready')) as p:
        results = p.map(initialized, range(40), chunksize=1)
    assert {value for value, _ in results} == {'ready'}
    with open(marker) as f:
        pids = f.read().split()
    # Once in each worker process (a worker the nanny restarted after the
    # kill test may join late: it runs the initializer then).
    assert pids and len(pids) == len(set(pids))
    assert {pid for _, pid in results} <= set(map(int, pids))


def test_bad_arguments(client):
    with pytest.raises(TypeError):
        Pool(client=client, initializer=3)
    with pytest.raises(ValueError):
        Pool(0, client=client)
    with pytest.raises(NotImplementedError, match='maxtasksperchild'):
        Pool(client=client, maxtasksperchild=2)
    with pytest.raises(ValueError):
        Pool(client=client, address='tcp://127.0.0.1:1')


# ---- lifetime ------------------------------------------------------------------------------


def test_close_join(client):
    p = Pool(client=client)
    r = p.map_async(sleep_then, range(6), chunksize=1)
    with pytest.raises(ValueError, match='still running'):
        p.join()
    p.close()
    with pytest.raises(ValueError, match='not running'):
        p.apply(square, (1,))
    p.join()
    assert r.ready() and r.get() == list(range(6))
    # A client the pool was given stays open.
    assert client.submit(square, 3).result(LONG) == 9


def test_terminate(client):
    p = Pool(1, client=client)
    r = p.map_async(functools.partial(sleep_then, seconds=0.5), range(20), chunksize=1)
    p.terminate()
    p.join()
    with pytest.raises(ValueError):
        p.map(square, [1])
    assert not p._runner._inflight
    assert not r.ready()  # pending results stay pending, as with the local Pool
    assert client.submit(square, 3).result(LONG) == 9


def test_address(pool):
    address = pool.client.scheduler.address
    with Pool(address=address) as p:
        assert p.map(square, range(5)) == [0, 1, 4, 9, 16]
        assert p.client is not pool.client
    assert p.client.status == 'closed'


def test_context_manager_own_cluster():
    with Pool(1) as p:
        assert p.apply(square, (3,)) == 9
        cluster = p._runner._cluster
    assert cluster.status.name == 'closed'
    assert p.client.status == 'closed'
    with pytest.raises(ValueError):
        p.apply(square, (3,))


def test_unclosed_pool_is_collected(client):
    # As with the local Pool: a ResourceWarning, and the pool's threads and
    # plugins go (the threads do not keep the pool alive).
    p = Pool(1, client=client, initializer=abs, initargs=(1,))
    runner = p._runner
    assert p.apply(square, (2,)) == 4
    with pytest.warns(ResourceWarning, match='unclosed'):
        del p
        gc.collect()
    assert runner._done.is_set()
    assert not runner._feeder.is_alive() and not runner._router.is_alive()
    assert client.submit(square, 3).result(LONG) == 9


def test_not_picklable(pool):
    import pickle

    with pytest.raises(NotImplementedError):
        pickle.dumps(pool)


# ---- one program, both pools ---------------------------------------------------------------

PROGRAM = textwrap.dedent(
    """
    import sys

    def cube(x):
        return x ** 3

    def word(a, b):
        return '%s-%s' % (a, b)

    if __name__ == '__main__':
        if sys.argv[1] == 'cluster':
            from gomp.cluster import Pool
        else:
            from gomp import Pool
        with Pool(2) as pool:
            out = [pool.map(cube, range(50)), pool.apply(cube, (4,)),
                   list(pool.imap(cube, range(5), 2)), sorted(pool.imap_unordered(cube, range(5))),
                   pool.starmap(word, [(1, 2), (3, 4)])]
            r = pool.map_async(cube, [7])
            out.append(r.get(60))
            try:
                pool.apply(cube, ('x',))
            except TypeError as e:
                out.append(type(e.__cause__).__name__)
        import multiprocessing
        print(repr(out))
        print(multiprocessing.__name__)
    """
)


@pytest.mark.parametrize('alias', ['0', '1'])
def test_same_program_both_pools(tmp_path, alias):
    # The program is the same file for gomp.Pool and gomp.cluster.Pool; with
    # GOMP_AS_MULTIPROCESSING=1 Dask itself runs on gomp (import
    # multiprocessing gives gomp), which must work too.
    script = tmp_path / 'prog.py'
    script.write_text(PROGRAM)
    env = dict(os.environ, GOMP_AS_MULTIPROCESSING=alias)
    outputs = []
    for kind in ('local', 'cluster'):
        proc = subprocess.run(
            [sys.executable, str(script), kind],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.splitlines())
    local, cluster = outputs
    assert local[0] == cluster[0]
    assert 'RemoteTraceback' in local[0]
    expected = 'gomp' if alias == '1' else 'multiprocessing'
    assert local[1] == cluster[1] == expected
