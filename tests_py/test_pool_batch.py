"""gomp.pool: small tasks travel between the pool's feeder and its workers in
batches (several tasks of one job in one ring item, their results in one
result item), without a change the API can see: order, errors, callbacks,
maxtasksperchild, and WorkerLostError for every task of a batch whose worker
was killed.

Whether a run batches depends on the pace the pool measures, so the tests
that need batches use many trivial tasks and check that batches were sent
(`_Counting` below counts the batch results the router delivers). The kill
storm runs a few rounds by default and 1,000 with GOMP_SLOW=1
(GOMP_STORM_ROUNDS=N sets the count); each round's seed is in the failure
message."""

import os
import random
import signal
import threading
import time

import pytest

import gomp
import pool_batch_helpers as bh
from gomp.pool import WorkerLostError

# Hang guard for every wait in this file (not a timing assertion).
LONG = 60

# Enough trivial tasks that the pool finds them small and batches them.
N = 40000

if os.environ.get('GOMP_STORM_ROUNDS'):
    ROUNDS = int(os.environ['GOMP_STORM_ROUNDS'])
elif os.environ.get('GOMP_SLOW'):
    ROUNDS = 1000
else:
    ROUNDS = 3


class _Counting:
    """Counts the batches of results the pool's router delivers and the
    batches of apply_async calls put (wraps the engine's methods on the
    instance)."""

    def __init__(self, pool):
        engine = pool._engine
        self.batches = 0
        self.tasks = 0
        inner = engine.deliver_many

        def deliver_many(job, first, values, failed):
            self.batches += 1
            self.tasks += len(values)
            inner(job, first, values, failed)

        engine.deliver_many = deliver_many
        self.applies = 0
        flush = engine._flush_applies

        def _flush_applies():
            if len(engine.apply_pending) > 1:
                self.applies += 1
            flush()

        engine._flush_applies = _flush_applies


@pytest.fixture
def pool():
    with gomp.get_context('fork').Pool(2) as p:
        yield p, _Counting(p)


def test_small_tasks_travel_in_batches(pool):
    p, seen = pool
    assert p.map(bh.inc, range(N), chunksize=1) == list(range(1, N + 1))
    assert seen.batches > 0


def test_imap_keeps_the_order_under_batching(pool):
    p, seen = pool
    assert list(p.imap(bh.inc, range(N))) == list(range(1, N + 1))
    assert list(p.imap(bh.inc, list(range(N)), chunksize=3)) == list(range(1, N + 1))
    assert sorted(p.imap_unordered(bh.inc, range(N))) == list(range(1, N + 1))
    assert seen.batches > 0


def test_a_failing_task_fails_only_its_own_position(pool):
    p, seen = pool
    bad = N // 2
    items = [(x, x == bad) for x in range(N)]
    it = p.imap(bh.fail_at, items)
    for x in range(N):
        if x == bad:
            with pytest.raises(ValueError, match='bad %d' % bad):
                it.next(LONG)
        else:
            assert it.next(LONG) == x + 1
    with pytest.raises(StopIteration):
        it.next(LONG)
    with pytest.raises(ValueError, match='bad %d' % bad):
        p.map(bh.fail_at, items, chunksize=1)
    assert seen.batches > 0


def test_a_result_that_does_not_pickle_fails_alone(pool):
    p, seen = pool
    bad = N // 3
    it = p.imap(bh.unpicklable_at, [(x, x == bad) for x in range(N)])
    for x in range(N):
        if x == bad:
            with pytest.raises(gomp.pool.MaybeEncodingError):
                it.next(LONG)
        else:
            assert it.next(LONG) == x + 1
    assert seen.batches > 0


def test_callbacks_fire_once_under_batching(pool):
    p, seen = pool
    got, errors = [], []
    r = p.map_async(bh.inc, range(N), chunksize=1, callback=got.append)
    assert r.get(LONG) == list(range(1, N + 1))
    assert got == [list(range(1, N + 1))]
    items = [(x, x == 7) for x in range(N)]
    r = p.map_async(
        bh.fail_at, items, chunksize=1, callback=got.append, error_callback=errors.append
    )
    r.wait(LONG)
    assert len(got) == 1 and len(errors) == 1 and str(errors[0]) == 'bad 7'
    assert seen.batches > 0


def test_maxtasksperchild_counts_tasks():
    # No worker runs more than its allowance, however small the tasks.
    with gomp.get_context('fork').Pool(2, maxtasksperchild=50) as p:
        pids = p.map(bh.pid_of, range(5000), chunksize=1)
    counts = {}
    for pid in pids:
        counts[pid] = counts.get(pid, 0) + 1
    assert max(counts.values()) <= 50
    assert len(counts) >= 5000 // 50


def test_a_killed_batch_fails_every_task_of_it(pool):
    # A worker dies in the middle of a batch: each task of the batch whose
    # result had not gone out fails with WorkerLostError (a contiguous run of
    # positions around the one that killed it); none is lost without a word.
    p, seen = pool
    die = N // 2
    it = p.imap(bh.kill_at, [(x, x == die) for x in range(N)])
    lost = []
    for x in range(N):
        try:
            assert it.next(LONG) == x + 1
        except WorkerLostError as e:
            assert e.exitcode == -signal.SIGKILL
            lost.append(x)
    with pytest.raises(StopIteration):
        it.next(LONG)
    assert die in lost
    assert lost == list(range(lost[0], lost[-1] + 1))
    assert seen.batches > 0
    # The pool goes on with a replaced worker.
    assert p.map(bh.inc, range(N), chunksize=1) == list(range(1, N + 1))


def test_apply_async_batches_keep_every_result_apart(pool):
    # Many small apply_async calls travel in batches; each result is its own:
    # its value, its exception, its callback.
    p, seen = pool
    got, errors = [], []
    rs = [
        p.apply_async(
            bh.fail_at, ((x, x % 1000 == 999),), callback=got.append, error_callback=errors.append
        )
        for x in range(N)
    ]
    for x, r in enumerate(rs):
        if x % 1000 == 999:
            with pytest.raises(ValueError, match='bad %d' % x):
                r.get(LONG)
            assert not r.successful()
        else:
            assert r.get(LONG) == x + 1
    assert sorted(got) == [x + 1 for x in range(N) if x % 1000 != 999]
    assert sorted(str(e) for e in errors) == sorted('bad %d' % x for x in range(999, N, 1000))
    assert seen.applies > 0


def test_pending_applies_go_out_without_a_get(pool):
    # A batch of apply_async calls still gathering when the caller stops
    # calling goes out by itself (the feeder thread puts it) though nobody
    # calls get(): here the caller only waits for the callbacks.
    p, seen = pool
    lock = threading.Lock()
    count = [0]
    all_in = threading.Event()

    def counted(_):
        with lock:
            count[0] += 1
            if count[0] == N:
                all_in.set()

    for x in range(N):
        p.apply_async(bh.inc, (x,), callback=counted)
    assert all_in.wait(LONG), f'{N - count[0]} callbacks never came'
    assert seen.applies > 0


def test_apply_async_from_two_threads(pool):
    # Calls from two threads interleave their job ids: each batch holds
    # consecutive jobs only, and every result is its own.
    p, seen = pool
    out = {}

    def submit(tag):
        out[tag] = [p.apply_async(bh.inc, (x,)) for x in range(N // 2)]

    threads = [threading.Thread(target=submit, args=(tag,)) for tag in 'ab']
    for t in threads:
        t.start()
    for t in threads:
        t.join(LONG)
    for tag in 'ab':
        assert [r.get(LONG) for r in out[tag]] == list(range(1, N // 2 + 1))


def test_a_killed_apply_batch_fails_every_call_of_it(pool):
    p, seen = pool
    die = N // 2
    rs = [p.apply_async(bh.kill_at, ((x, x == die),)) for x in range(N)]
    lost = []
    for x, r in enumerate(rs):
        try:
            assert r.get(LONG) == x + 1
        except WorkerLostError:
            lost.append(x)
    assert die in lost
    assert lost == list(range(lost[0], lost[-1] + 1))
    assert seen.applies > 0


# ---- kill storm over batched maps ------------------------------------------------------------


def _kill_one(p, rng):
    victims = [w.pid for w in p._pool if w.exitcode is None]
    if victims:
        try:
            os.kill(rng.choice(victims), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _storm_round(p, api, seed):
    rng = random.Random(seed)
    if api == 'apply_async':
        # The workers keep up with the calls: the kill comes while they are
        # being made.
        killer = threading.Timer(rng.uniform(0, 0.15), _kill_one, (p, rng))
        killer.start()
        rs = [p.apply_async(bh.inc, (x,)) for x in range(N)]
        killer.join()
    else:
        if api == 'map':
            r = p.map_async(bh.inc, range(N), chunksize=1)
        else:
            it = getattr(p, api)(bh.inc, range(N))
        time.sleep(rng.uniform(0, 0.05))
        _kill_one(p, rng)
    if api == 'map':
        try:
            values = r.get(LONG)
        except WorkerLostError:
            return 1
        assert values == list(range(1, N + 1))
        return 0
    values, lost = [], 0
    if api == 'apply_async':
        for x, r in enumerate(rs):
            try:
                assert r.get(LONG) == x + 1
            except WorkerLostError:
                lost += 1
        return lost
    while True:
        try:
            values.append(it.next(LONG))
        except StopIteration:
            break
        except WorkerLostError:
            lost += 1
    assert lost + len(values) == N
    assert len(set(values)) == len(values)
    if api == 'imap' and not lost:
        assert values == list(range(1, N + 1))
    return lost


def _run_round(p, api, seed, outcome, done):
    try:
        outcome.append(_storm_round(p, api, seed))
    except BaseException as e:  # reported by the test
        outcome.append(e)
    done.set()


@pytest.mark.parametrize('api', ['map', 'imap', 'imap_unordered', 'apply_async'])
def test_kill_storm_over_batches(api):
    base = random.randrange(1 << 30)
    lost_total = 0
    with gomp.get_context('fork').Pool(3) as p:
        seen = _Counting(p)
        for k in range(ROUNDS):
            seed = base + k
            done = threading.Event()
            outcome = []
            t = threading.Thread(target=_run_round, args=(p, api, seed, outcome, done), daemon=True)
            t.start()
            assert done.wait(3 * LONG), f'round {k} hung (seed {seed})'
            got = outcome[0]
            if isinstance(got, BaseException):
                raise AssertionError(f'round {k} (seed {seed}): {got!r}') from got
            lost_total += got
        assert seen.batches + seen.applies > 0
    print(f'{api}: {ROUNDS} rounds, {lost_total} tasks/maps failed with WorkerLostError')
