"""ForkingPickler.dumps writes plain data (None, bool, int, float, str, bytes,
and small tuples, lists and dicts of them) with the module-level pickler, and
everything else through its dispatch table. The bytes must stay those of the
stdlib's ForkingPickler either way, and a reducer registered for a subclass
of a plain type must still run."""

import multiprocessing.reduction as std_reduction
import pickle

import pytest

from gomp import reduction

PLAIN = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    'x',
    'ünï',
    b'\x00' * 100,
    (1, 'x'),
    [1, [2, [3]]],
    {'a': 1, 'b': (2.0, None)},
    (),
    ('#RETURN', {'k': [1, 2, 3]}),
]


class Tagged(tuple):
    pass


class Big(int):
    pass


def _as_tagged(t):
    return (Tagged, (tuple(t),))


@pytest.mark.parametrize('obj', PLAIN, ids=repr)
def test_plain_data_has_the_stdlib_bytes(obj):
    assert reduction.ForkingPickler.dumps(obj) == bytes(std_reduction.ForkingPickler.dumps(obj))


def test_non_plain_values_keep_their_shape():
    shared = [1, 2]
    for obj in [(shared, shared), {'d': {'e': {'f': {'g': {'h': 1}}}}}, list(range(200)), {1, 2}]:
        data = reduction.ForkingPickler.dumps(obj)
        assert data == bytes(std_reduction.ForkingPickler.dumps(obj))
        assert pickle.loads(data) == obj
    a, b = pickle.loads(reduction.ForkingPickler.dumps((shared, shared)))
    assert a is b  # the memo still ties shared objects together


def test_reducer_for_a_subclass_of_a_plain_type_runs():
    calls = []

    def reduce_big(n):
        calls.append(n)
        return (Big, (int(n),))

    reduction.ForkingPickler.register(Tagged, _as_tagged)
    reduction.ForkingPickler.register(Big, reduce_big)
    try:
        for obj in [Tagged((1, 2)), (Tagged((3,)),), {'k': [Big(7)]}]:
            data = reduction.ForkingPickler.dumps(obj)
            assert pickle.loads(data) == obj
        out = pickle.loads(reduction.ForkingPickler.dumps(Tagged((1,))))
        assert type(out) is Tagged
        assert calls == [7]
    finally:
        del reduction.ForkingPickler._extra_reducers[Tagged]
        del reduction.ForkingPickler._extra_reducers[Big]
