"""gomp.pool: a map over a list, a tuple or a range sends each chunk as a
slice of the sequence (for a range, a range: a few bytes instead of every
int). What the workers compute, and the order, errors and callbacks the
caller sees, are those of chunks built item by item."""

import pytest

import gomp
import pool_helpers as ph
from gomp import pool as gpool

LONG = 60  # hang guard for the waits below, not a timing assertion


def chunks(iterable, size):
    """The task arguments _chunk_stream produces for a map of iterable."""
    out = []
    for task in gpool._chunk_stream(7, gpool._run_chunk, ph.square, iterable, size):
        job, i, runner, (func, items), kwds = task
        assert (job, i, runner, func, kwds) == (7, len(out), gpool._run_chunk, ph.square, None)
        out.append(items)
    return out


class ListWithOwnIter(list):
    def __iter__(self):
        return iter([x * 10 for x in list.__iter__(self)])


@pytest.mark.parametrize(
    'seq',
    [
        range(1000),
        range(5, 4000, 7),
        range(300, -300, -3),
        range(2**70, 2**70 + 1000),
        list(range(1000)),
        tuple(range(999)),
    ],
    ids=['range', 'range-step', 'range-negative-step', 'range-big-ints', 'list', 'tuple'],
)
@pytest.mark.parametrize('size', [128, 333, 1000, 5000])
def test_chunks_are_slices_of_the_sequence(seq, size):
    got = chunks(seq, size)
    assert all(type(c) is type(seq) for c in got)
    assert [list(c) for c in got] == [list(seq[at : at + size]) for at in range(0, len(seq), size)]


def test_small_chunks_of_a_range_stay_tuples():
    # A range pickles through its reducer, slower than a short tuple of ints.
    got = chunks(range(100), 10)
    assert all(type(c) is tuple for c in got)
    assert [x for c in got for x in c] == list(range(100))


def test_other_sequences_are_iterated():
    # A subclass may iterate differently from its slices: it keeps the old way.
    seq = ListWithOwnIter(range(300))
    got = chunks(seq, 128)
    assert all(type(c) is tuple for c in got)
    assert [x for c in got for x in c] == [x * 10 for x in range(300)]


def test_empty_sequences_give_no_chunks():
    assert chunks(range(0), 200) == [] and chunks([], 3) == [] and chunks((), 1) == []


@pytest.fixture(scope='module', params=['fork', 'spawn'])
def pool(request):
    p = gomp.get_context(request.param).Pool(2)
    yield p
    p.terminate()
    p.join()


@pytest.mark.parametrize(
    'seq',
    [
        range(20000),
        range(3, 50000, 11),
        range(10**20, 10**20 - 5000, -1),
        list(range(7777)),
        tuple(range(-500, 500)),
    ],
    ids=['range', 'range-step', 'range-down-big', 'list', 'tuple'],
)
@pytest.mark.parametrize('chunksize', [None, 1, 129, 4096])
def test_map_over_sequences(pool, seq, chunksize):
    assert pool.map(ph.square, seq, chunksize) == [x * x for x in seq]


def test_starmap_over_a_list_of_pairs(pool):
    pairs = [(i, i + 1) for i in range(3000)]
    assert pool.starmap(ph.mul, pairs, 200) == [a * b for a, b in pairs]


def test_a_failing_item_of_a_range_chunk(pool):
    # pool_helpers.fail raises for every item: the first chunk's error wins.
    with pytest.raises(ValueError):
        pool.map(ph.fail, range(5000), 500)


def test_map_async_callback_gets_the_whole_list(pool):
    got = []
    r = pool.map_async(ph.square, range(4000), callback=got.append)
    assert r.get(LONG) == [x * x for x in range(4000)]
    assert got == [[x * x for x in range(4000)]]


def test_imap_over_a_range_in_chunks(pool):
    assert list(pool.imap(ph.square, range(3000), 300)) == [x * x for x in range(3000)]
    assert sorted(pool.imap_unordered(ph.square, range(3000), 300)) == [x * x for x in range(3000)]
