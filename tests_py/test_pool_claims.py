"""gomp.pool: a task is claimed by the worker that takes it in the step that
takes it out of the task ring, so a worker killed at any instruction either
never had the task (another worker runs it) or fails it with
WorkerLostError: never a task lost without a word.

The kill storms run a few rounds per API and start method by default, and
1,000 with GOMP_SLOW=1 (GOMP_STORM_ROUNDS=N sets the count); each round's
random seed is in the failure message."""

import os
import random
import signal
import threading
import time

import pytest

import gomp
import gomp.pool
import pool_helpers as h
from gomp.pool import WorkerLostError

METHODS = ['fork', 'spawn', 'forkserver']
APIS = ['map', 'imap', 'imap_unordered', 'apply_async', 'starmap']

# Hang guard for every wait in this file (not a timing assertion): a task
# lost without a word makes its wait run out.
LONG = 60

if os.environ.get('GOMP_STORM_ROUNDS'):
    ROUNDS = int(os.environ['GOMP_STORM_ROUNDS'])
elif os.environ.get('GOMP_SLOW'):
    ROUNDS = 1000
else:
    ROUNDS = 3

N_TASKS = 300


# ---- the window itself, deterministically ---------------------------------------------------


@pytest.mark.parametrize('method', METHODS)
def test_worker_killed_while_unpickling_its_task(method):
    # The worker dies inside get(), after the ring handed the task over and
    # before a line of the worker's Python ran: the claim made in the ring
    # is all that tells the pool which task was lost.
    with gomp.get_context(method).Pool(2) as p:
        r = p.apply_async(h.square, (h.DieOnUnpickle(),))
        with pytest.raises(WorkerLostError) as info:
            r.get(LONG)
        assert info.value.exitcode == -signal.SIGKILL
        with pytest.raises(WorkerLostError):
            p.map(h.square, [1, 2, h.DieOnUnpickle(), 4], chunksize=1)
        it = p.imap(h.square, [1, h.DieOnUnpickle(), 3])
        assert it.next(LONG) == 1
        with pytest.raises(WorkerLostError):
            it.next(LONG)
        assert it.next(LONG) == 9
        # The pool goes on with replaced workers.
        assert p.map(h.square, range(10)) == [x * x for x in range(10)]


def test_claims_in_the_ring():
    # The queue-level protocol: a task put with its claim header is claimed
    # in the slot of the consumer that takes it, and taking the claim
    # empties the slot.
    q = gomp.SimpleQueue()
    try:
        q._put_task(5, 7, ('task', 1))
        assert q._take_claim(3) is None
        assert q._get_task(3) == ('task', 1)
        assert q._take_claim(3) == (5, 7)
        assert q._take_claim(3) is None
        # The end-of-work item is never claimed; getting clears the slot.
        q._put_task(6, 0, 'x')
        assert q._get_task(3) == 'x'
        q._put_task(-1, 0, None)
        assert q._get_task(3) is None
        assert q._take_claim(3) is None
        # Without a slot, the header is skipped and nothing is claimed.
        q._put_task(8, 1, 'y')
        assert q._get_task(-1) == 'y'
        assert q._take_claim(0) is None
    finally:
        q.close()


def _claim_in_child(q, slot):
    q._get_task(slot)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize('size', [100, 3 << 20])
def test_claim_of_a_killed_consumer(size):
    # A consumer killed right after it took a task (a large one is streamed
    # in fragments: claimed with the first) leaves the claim for the pool.
    ctx = gomp.get_context('fork')
    q = ctx.SimpleQueue()
    try:
        p = ctx.Process(target=_claim_in_child, args=(q, 4))
        p.start()
        q._put_task(11, 3, b'x' * size)
        p.join(LONG)
        assert p.exitcode == -signal.SIGKILL
        assert q._take_claim(4) == (11, 3)
    finally:
        q.close()


# ---- kill storms -----------------------------------------------------------------------------


def _submit(p, api, seed):
    """Starts N_TASKS short tasks through api; returns a function that waits
    for every outcome and returns (values, lost) or raises AssertionError
    for a task that never reported."""
    rng = random.Random(seed)
    items = [(x, rng.choice((0, 0, 0, 0.001))) for x in range(N_TASKS)]
    expect = {x * x for x in range(N_TASKS)}
    if api in ('map', 'starmap'):
        if api == 'map':
            r = p.map_async(h.square_after, items, chunksize=rng.choice((1, 1, 5)))
        else:
            r = p.starmap_async(h.square_after2, items, chunksize=rng.choice((1, 1, 5)))

        def collect():
            try:
                values = r.get(LONG)
            except WorkerLostError:
                return None, 1
            assert set(values) == expect
            return values, 0

        return collect
    if api == 'apply_async':
        rs = [p.apply_async(h.square_after, (it,)) for it in items]

        def collect():
            values, lost = [], 0
            for r in rs:
                try:
                    values.append(r.get(LONG))
                except WorkerLostError:
                    lost += 1
            assert lost + len(values) == N_TASKS
            return values, lost

        return collect
    it = getattr(p, api)(h.square_after, items)

    def collect():
        values, lost = [], 0
        while True:
            try:
                values.append(it.next(LONG))
            except StopIteration:
                break
            except WorkerLostError:
                lost += 1
        assert lost + len(values) == N_TASKS
        return values, lost

    return collect


def _storm_round(p, api, seed):
    rng = random.Random(seed)
    collect = _submit(p, api, seed)
    time.sleep(rng.uniform(0, 0.05))
    victims = [w.pid for w in p._pool if w.exitcode is None]
    if victims:
        try:
            os.kill(rng.choice(victims), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return collect()


def _run_round(p, api, seed, outcome, done):
    try:
        outcome.append(_storm_round(p, api, seed))
    except BaseException as e:  # reported by the test
        outcome.append(e)
    done.set()


@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('method', METHODS)
def test_kill_storm(method, api):
    base = random.randrange(1 << 30)
    lost_total = 0
    with gomp.get_context(method).Pool(3) as p:
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
            lost_total += got[1]
    print(f'{method} {api}: {ROUNDS} rounds, {lost_total} tasks/maps failed with WorkerLostError')


def test_workers_beyond_the_claim_slots_mark_their_tasks(monkeypatch):
    # A pool with more workers than the ring has claim slots: those beyond
    # mark their task in the shared array, and still fail it when killed.
    monkeypatch.setattr(gomp.pool, '_claim_cap', 1)
    with gomp.get_context('fork').Pool(2) as p:
        assert p._engine.num_claims == 1 and p._engine.slots is not None
        # Four tasks that kill their worker: whichever worker runs each,
        # claiming or marking, the task fails.
        lost = [p.apply_async(h.kill_self) for _ in range(4)]
        for r in lost:
            with pytest.raises(WorkerLostError):
                r.get(LONG)
        assert p.map(h.square, range(10)) == [x * x for x in range(10)]
