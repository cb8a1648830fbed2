"""The fast path of manager proxy calls (gomp.managers: _plain, _exchange,
Server._serve_pickles): plain requests and replies skip ForkingPickler and
move through one _gomp.exchange per call. These tests check that the path is
taken, that what it may not serve still takes the general one, and that
errors arrive exactly as on the general path (and as with the stdlib)."""

import multiprocessing.managers as std_managers
import pickle
import socket
import threading

import pytest

import gomp
from gomp import _gomp, managers
from gomp.managers import BaseManager, RemoteError
from gomp.reduction import ForkingPickler


class Thing:
    """A value that needs the general path (not plain data)."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Thing) and other.n == self.n


class Tricky:
    """Pickles fine here, fails to unpickle in the server."""

    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise RuntimeError('cannot be rebuilt here')


class Box:
    def give_function(self):
        return lambda: None  # cannot be pickled

    def fail(self):
        raise ValueError('failed in the server')

    def echo(self, value):
        return value


class BoxManager(BaseManager):
    pass


BoxManager.register('Box', Box)
BoxManager.register('dict', dict, managers.DictProxy)


class StdBoxManager(std_managers.BaseManager):
    pass


StdBoxManager.register('Box', Box)
StdBoxManager.register('dict', dict, std_managers.DictProxy)
BoxManager.register('dict', dict, managers.DictProxy)


class MyStr(str):
    pass


PLAIN = [
    None,
    True,
    3,
    2**80,
    1.5,
    'text',
    b'bytes',
    ('id', 'get', ('k', 1), {}),
    ['a', ['b', ('c', {'d': None})]],
    {'k': (1, 2.0)},
]
NOT_PLAIN = [
    object(),
    MyStr('x'),
    ('id', 'set', (Thing(1),), {}),
    {'k': {1, 2}},
    ((((('too deep',),),),),),
    list(range(200)),
]


@pytest.mark.parametrize('value', PLAIN, ids=repr)
def test_plain_values_pickle_the_same_with_any_pickler(value):
    assert _gomp.plain(value) is True
    assert pickle.dumps(value) == bytes(ForkingPickler.dumps(value))


@pytest.mark.parametrize('value', NOT_PLAIN, ids=lambda v: type(v).__name__)
def test_other_values_are_not_plain(value):
    assert _gomp.plain(value) is False


def test_exchange_sends_then_receives_one_frame():
    a, b = socket.socketpair()
    with a, b:
        ours, theirs = (
            gomp.connection.Connection(a.detach()),
            gomp.connection.Connection(b.detach()),
        )

        def answer():
            theirs.send_bytes(theirs.recv_bytes() + b' answered')

        t = threading.Thread(target=answer)
        t.start()
        assert _gomp.exchange(ours.fileno(), b'question', True) == b'question answered'
        t.join(30)
        t = threading.Thread(target=lambda: (theirs.recv_bytes(), theirs.close()))
        t.start()
        with pytest.raises(EOFError):  # the peer took the request and went away
            _gomp.exchange(ours.fileno(), b'anyone?')
        t.join(30)
        ours.close()


def test_each_proxy_call_is_one_exchange(monkeypatch):
    calls = []
    real = managers._exchange

    def counting(fd, data, spin):
        calls.append(data)
        return real(fd, data, spin)

    with gomp.Manager() as m:
        d = m.dict()
        d['k'] = 1  # connects
        monkeypatch.setattr(managers, '_exchange', counting)
        d['k'] = 2
        assert d['k'] == 2
        assert d.get('missing', 'default') == 'default'
        assert len(calls) == 3
        # Not plain: the general path, same result.
        d['t'] = Thing(5)
        assert d['t'] == Thing(5)
        assert len(calls) == 4  # only d['t'] (its reply is not plain: the server's side)


def test_values_of_every_kind_round_trip():
    with gomp.Manager() as m:
        d, inner = m.dict(), m.list([1, 2])
        values = [*PLAIN, MyStr('sub'), Thing(3), {'s': {1, 2}}, list(range(500)), inner]
        for i, v in enumerate(values):
            d[i] = v
        for i, v in enumerate(values[:-1]):
            got = d[i]
            assert got == v and type(got) is type(v)
        assert d[len(values) - 1][:] == [1, 2]  # a proxy went in and came back


def _errors(manager_class):
    """What each failing call raises, as (type name, a line of its text)."""
    with manager_class() as m:
        box = m.Box()
        d = m.dict()
        out = []
        for call in (
            lambda: d['missing'],
            lambda: d._callmethod('not_exposed'),
            lambda: box.fail(),
            lambda: box.give_function(),
            lambda: box.echo(Tricky()),
        ):
            try:
                call()
            except Exception as e:
                lines = [x for x in str(e).splitlines() if x.strip() and set(x) != {'-'}]
                out.append((type(e).__name__, lines[-1] if lines else ''))
            else:
                out.append(None)
            assert box.echo('still fine') == 'still fine'  # the connection survives
        return out


def test_errors_arrive_as_with_the_stdlib():
    ours, theirs = _errors(BoxManager), _errors(StdBoxManager)
    assert [kind for kind, _ in ours] == [kind for kind, _ in theirs]
    # The same text, but for the refusal of a name that is not exposed, which
    # gomp words more clearly (the stdlib's says KeyError: 'not_exposed').
    assert ours[:1] + ours[2:] == theirs[:1] + theirs[2:]
    assert 'not in exposed' in ours[1][1]
    assert ours[0] == ('KeyError', "'missing'")
    assert ours[1][0] == 'RemoteError' and ours[2] == ('ValueError', 'failed in the server')
    assert ours[3][0] == ours[4][0] == 'RemoteError'


def test_unserializable_result_is_a_remote_error():
    with BoxManager() as m:
        with pytest.raises(RemoteError, match='Unserializable message'):
            m.Box().give_function()


def test_a_new_object_at_a_reused_address_is_the_one_called():
    with gomp.Manager() as m:
        for i in range(20):
            d = m.dict({'n': i})
            assert d['n'] == i
            del d  # its object goes; the next may get the same id


def test_threads_each_use_their_own_connection():
    with gomp.Manager() as m:
        lst = m.list()

        def work(k):
            for i in range(200):
                lst.append((k, i))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        got = lst[:]
        assert len(got) == 800
        for k in range(4):
            assert [i for kk, i in got if kk == k] == list(range(200))


def test_exchange_takes_large_frames_and_frames_in_pieces():
    import struct
    import time

    a, b = socket.socketpair()
    with a, b:
        fd = a.fileno()

        def answer_in_pieces(payload):
            b.recv(1 << 20)
            frame = struct.pack('!i', len(payload)) + payload
            b.sendall(frame[:2])  # part of the header: the peek sees too little
            time.sleep(0.05)  # past the spin: the answer is awaited asleep
            b.sendall(frame[2:9])
            time.sleep(0.05)
            b.sendall(frame[9:])

        for payload in (b'', b'small answer', b'L' * 100_000):
            t = threading.Thread(target=answer_in_pieces, args=(payload,))
            t.start()
            assert _gomp.exchange(fd, b'question', True) == payload
            t.join(30)
        # A large answer sent at once (more than the peek looks at).
        t = threading.Thread(target=lambda: (b.recv(99), b.sendall(b'\0\1\0\0' + b'z' * 65536)))
        t.start()
        assert _gomp.exchange(fd, b'question', True) == b'z' * 65536
        t.join(30)


def test_large_plain_values_through_a_proxy():
    with gomp.Manager() as m:
        d = m.dict()
        big = 'x' * 200_000
        d['big'] = big
        assert d['big'] == big
