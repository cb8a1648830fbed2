"""The manager server's bookkeeping and the client's handling of replies
(gomp.managers), beyond what test_managers.py covers: reference counts of
objects created twice, replies that stand for errors, peers that fail to
authenticate, and the token's pickled form that stdlib peers rely on."""

import gc
import pickle
import threading
import weakref

import pytest

from gomp import AuthenticationError, managers
from gomp.managers import BaseManager, RemoteError, SyncManager, Token

KEY = b'server test key'


class _Unprintable:
    def __repr__(self):
        raise ValueError('no repr')

    def poke(self):
        return 'poked'


_THE_LIST = []


def _the_list():
    return _THE_LIST


class BookManager(BaseManager):
    pass


BookManager.register('the_list', _the_list)
BookManager.register('Unprintable', _Unprintable)


@pytest.fixture
def server(tmp_path):
    """A BookManager server served by threads of this process."""
    srv = BookManager(address=str(tmp_path / 'srv.sock'), authkey=KEY).get_server()
    threading.Thread(target=srv.accepter, daemon=True).start()
    yield srv
    srv.stop_event.set()
    srv.listener.close()


def connected(srv):
    m = BookManager(address=srv.address, authkey=KEY)
    m.connect()
    return m


def test_one_object_created_twice_has_one_id_and_counts_both(server):
    m = connected(server)
    first = m.the_list()
    second = m.the_list()
    assert first._token.id == second._token.id
    assert server.id_to_refcount[first._token.id] == 2
    first.append(1)
    assert second._getvalue() == [1]
    del first
    gc.collect()
    assert server.id_to_refcount[second._token.id] == 1
    del second
    gc.collect()
    assert server.number_of_objects(None) == 0
    _THE_LIST.clear()


def test_decref_of_an_unknown_id_is_a_remote_error(server):
    with pytest.raises(RemoteError, match='KeyError'):
        managers._server_call(
            server.address, KEY, managers.listener_client['pickle'][1], 'decref', ('no such id',)
        )


def test_str_of_a_proxy_whose_referent_cannot_be_printed(server):
    m = connected(server)
    obj = m.Unprintable()
    assert obj.poke() == 'poked'
    assert str(obj).endswith("; '__str__()' failed>")
    with pytest.raises(RemoteError, match='no repr'):
        obj._callmethod('__repr__')


def test_a_failed_authentication_leaves_the_server_serving(server):
    with pytest.raises(AuthenticationError):
        BookManager(address=server.address, authkey=b'wrong').connect()
    m = connected(server)
    assert m._number_of_objects() == 0


class _Gone(LookupError):
    pass


class _Replying:
    """A connection that sends nowhere and receives one canned reply."""

    def __init__(self, reply):
        self.reply = reply

    def send(self, obj):
        pass

    def recv(self):
        reply, self.reply = self.reply, None
        return reply


def test_dispatch_raises_the_remote_error_without_a_reference_cycle():
    gc.disable()
    try:
        try:
            managers.dispatch(_Replying(('#ERROR', _Gone('gone'))), None, 'get')
        except _Gone as e:
            ref = weakref.ref(e)
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize(
    'reply, error, text',
    [
        (('#TRACEBACK', 'Traceback: boom\n'), RemoteError, 'boom'),
        (
            ('#UNSERIALIZABLE', 'cannot pickle\n'),
            RemoteError,
            'Unserializable message: cannot pickle',
        ),
        (('#PROXY', ((), None)), ValueError, 'Unrecognized message type'),
        (('#TRACEBACK', 42), TypeError, 'not str'),
    ],
)
def test_replies_that_stand_for_errors(reply, error, text):
    with pytest.raises(error, match=text):
        managers.dispatch(_Replying(reply), None, 'anything')


def test_remote_error_shows_the_traceback_between_rules():
    rule = '-' * 75
    assert str(RemoteError('Traceback\n')) == f'\n{rule}\nTraceback\n{rule}'


def test_token_pickles_its_fields_as_a_tuple():
    # The stdlib's Token unpickles the same state, so tokens cross between
    # gomp and stdlib peers.
    token = Token('list', '/tmp/addr', '7f00')
    assert token.__reduce_ex__(2)[2] == ('list', '/tmp/addr', '7f00')
    copy = pickle.loads(pickle.dumps(token))
    assert (copy.typeid, copy.address, copy.id) == ('list', '/tmp/addr', '7f00')
    assert repr(copy) == "Token(typeid='list', address='/tmp/addr', id='7f00')"


def test_lock_proxy_acquire_takes_an_explicit_none_timeout():
    with SyncManager() as m:
        lock = m.Lock()
        assert lock.acquire(True, None)
        assert not lock.acquire(timeout=0.01)
        lock.release()
        cond = m.Condition()
        with cond:
            assert cond.wait_for(lambda: 'done', timeout=1) == 'done'
            assert cond.wait_for(lambda: 0, timeout=0) == 0
