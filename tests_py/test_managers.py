"""Managers (gomp.managers): shared objects in a server process reached
through proxies, for every start method, custom managers, remote managers,
errors, and interoperability with the stdlib's managers on the wire."""

import gc
import glob
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import gomp
import manager_helpers as h
from conftest import HANG_GUARD, HERE
from gomp import managers, shared_memory
from gomp.managers import RemoteError, SyncManager

METHODS = ["fork", "spawn", "forkserver"]
KEY = b'manager test key'


@pytest.fixture(params=METHODS)
def ctx(request):
    return gomp.get_context(request.param)


def joined(p):
    p.join(60)
    assert p.exitcode == 0, p


def stdlib_env():
    env = dict(os.environ)
    env.pop('GOMP_AS_MULTIPROCESSING', None)
    env['PYTHONPATH'] = HERE
    return env


# ---- every SyncManager type, used from a child of each start method ------------------------


def test_every_proxy_type_across_processes(ctx):
    with ctx.Manager() as m:
        objs = {
            'list': m.list([1, 2]),
            'dict': m.dict(a=1),
            'set': m.set({'parent'}),
            'value': m.Value('i', 7),
            'array': m.Array('i', [1, 2, 3]),
            'ns': m.Namespace(x=41, _hidden=1),
            'queue': m.Queue(),
            'jqueue': m.JoinableQueue(),
            'event': m.Event(),
            'lock': m.Lock(),
            'rlock': m.RLock(),
            'semaphore': m.Semaphore(1),
            'bsemaphore': m.BoundedSemaphore(1),
            'condition': m.Condition(),
            'barrier': m.Barrier(2),
        }
        inner = m.list(['inner'])
        objs['nested'] = m.list([inner])
        out = m.Queue()
        objs['queue'].put('to child')
        objs['jqueue'].put('work')
        assert objs['bsemaphore'].acquire()
        p = ctx.Process(target=h.use_every_proxy, args=(objs, out))
        p.start()
        cond = objs['condition']
        with cond:
            assert cond.wait_for(objs['event'].is_set, timeout=60)
        assert objs['barrier'].wait(60) in (0, 1)
        objs['jqueue'].join()
        seen = out.get(timeout=60)
        joined(p)

        assert seen['list'] == [1, 2]
        assert objs['list'][:] == [1, 2, 'child', 'iadd']
        assert seen['dict'] == {'a': 1}
        assert seen['dict_iter'] == ['a', 'child']
        assert objs['dict'].copy() == {'a': 1, 'child': 2}
        assert seen['set'] == ['child', 'parent']
        assert objs['value'].value == 70
        assert seen['array'] == [101, 2, 3]
        assert objs['ns'].child == 42
        assert str(objs['ns']) == 'Namespace(child=42, x=41)'
        assert seen['queue'] == 'to child'
        assert objs['queue'].get(timeout=60) == 'from child'
        assert seen['lock'] and seen['rlock'] and seen['semaphore'] and seen['barrier']
        assert objs['bsemaphore'].acquire(False)
        with pytest.raises(ValueError):
            objs['bsemaphore'].release() or objs['bsemaphore'].release()
        assert seen['nested'] == 'inner'
        assert repr(objs['event']).startswith("<EventProxy object, typeid 'Event' at 0x")
        del objs, inner, seen, cond, p
        gc.collect()
        assert m._number_of_objects() == 1  # out
        del out
        gc.collect()
        assert m._number_of_objects() == 0
    assert m._process is None or m._process.exitcode == 0


def test_list_and_dict_proxies_behave_like_their_referents():
    with SyncManager() as m:
        lst = m.list(range(3))
        lst += [3]
        lst *= 2
        assert lst[:] == [0, 1, 2, 3] * 2
        assert len(lst) == 8 and 3 in lst and lst.count(0) == 2
        lst.sort(reverse=True)
        assert lst[0] == 3
        assert list(iter(lst)) == lst[:]
        d = m.dict({'k': 'v'})
        d |= {'k2': 'v2'}
        assert sorted(d.keys()) == ['k', 'k2']
        assert list(d.values()) == ['v', 'v2']
        assert d.get('nope', 5) == 5
        assert [k for k in d] == ['k', 'k2']
        with pytest.raises(KeyError):
            d['missing']
        s = m.set([1, 2, 3])
        s &= {2, 3, 4}
        assert sorted(s) == [2, 3]
        assert s.issubset({1, 2, 3})
        assert isinstance(d, managers.DictProxy)
        import collections.abc

        assert isinstance(d, collections.abc.MutableMapping)
        # a dict nested in a dict: the inner proxy is resolved by the server
        inner = m.dict(x=1)
        d['inner'] = inner
        inner['y'] = 2
        assert d['inner']['y'] == 2
        assert d['inner']._getvalue() == {'x': 1, 'y': 2}


# ---- custom managers -------------------------------------------------------------------------


def test_custom_manager_register_and_initializer(ctx):
    m = h.MathsManager(ctx=ctx)
    m.start(h.initializer, ('ready',))
    try:
        assert m._state.value == managers.State.STARTED
        maths = m.Maths(10)
        assert isinstance(maths, h.MathsProxy)
        assert maths.add(5) == 15
        assert maths.private() == 'private'
        auto = m.AutoMaths(1)
        assert set(auto._exposed_) == {'add', 'fail', 'numbers', 'unpicklable'}
        assert auto.add(1) == 2
        counting = m.Counting()
        numbers = counting.numbers(3)
        assert type(numbers).__name__ == 'AutoProxy[Numbers]'
        assert numbers.__next__() == 0
        assert m.server_state()._getvalue() == {'init': 'ready'}
        assert 'refcount=1' in m._debug_info()
        with pytest.raises(gomp.ProcessError):
            m.start()
    finally:
        m.shutdown()
    assert m._state.value == managers.State.SHUTDOWN
    m.join(30)
    assert m._process is None


def test_initializer_must_be_callable():
    with pytest.raises(TypeError):
        h.MathsManager().start(initializer=1)


def test_server_method_errors():
    with h.MathsManager() as m:
        maths = m.Maths()
        with pytest.raises(ValueError, match='boom'):
            maths.fail('boom')
        with pytest.raises(RemoteError, match='Unserializable message'):
            maths.unpicklable()
        # The connection still works after both.
        assert maths.add(2) == 2
        with pytest.raises(RemoteError, match="not in exposed"):
            maths._callmethod('base')
        with pytest.raises(RemoteError, match="unrecognized"):
            managers._server_call(m.address, m._authkey, m._Client, 'no_such_method')


def test_remote_manager_inet_connect_from_another_process(ctx):
    m = h.MathsManager(address=('127.0.0.1', 0), authkey=KEY, ctx=ctx)
    m.start()
    try:
        assert m.address[0] == '127.0.0.1' and m.address[1] > 0
        out = m.Queue()
        p = ctx.Process(target=h.connect_and_use, args=(m.address, KEY, out))
        p.start()
        assert out.get(timeout=60) == ['remote']
        joined(p)
        with pytest.raises(gomp.AuthenticationError):
            h.connect_with(m.address, b'wrong key')
    finally:
        m.shutdown()


def test_get_server_serve_forever_in_a_script(tmp_path):
    address = str(tmp_path / 'mgr.sock')
    script = textwrap.dedent('''
        import sys
        import manager_helpers as h
        server = h.MathsManager(address=sys.argv[1], authkey=b'k').get_server()
        print('serving', flush=True)
        server.serve_forever()
    ''')
    proc = subprocess.Popen(
        [sys.executable, '-c', script, address], cwd=HERE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == 'serving'
        m = h.MathsManager(address=address, authkey=b'k')
        m.connect()
        assert m.Maths(1).add(1) == 2
        managers._server_call(address, b'k', m._Client, 'shutdown')
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()


def test_shutdown_while_proxies_are_held(ctx):
    m = ctx.Manager()
    lst = m.list([1])
    assert lst[0] == 1
    pid = m._process.pid
    m.shutdown()
    assert m._state.value == managers.State.SHUTDOWN
    m.join(30)
    with pytest.raises((EOFError, OSError)):
        lst.append(2)
    del lst  # the finalizer knows the manager is gone: no hang, no error
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_xmlrpclib_serializer():
    with h.MathsManager(serializer='xmlrpclib') as m:
        q = m.Queue()
        q.put([1, 'two', None])
        assert q.get() == [1, 'two', None]


def test_shared_memory_manager():
    from gomp.managers import SharedMemoryManager

    with SharedMemoryManager() as smm:
        shm = smm.SharedMemory(64)
        sl = smm.ShareableList([1, 'x', 2.5])
        names = managers._server_call(smm.address, smm._authkey, smm._Client, 'list_segments')
        assert names == [shm.name, sl.shm.name]
        shm.buf[0] = 7
        other = shared_memory.SharedMemory(shm.name)
        assert other.buf[0] == 7
        other.close()
        name = shm.name
        shm.close()
        sl.shm.close()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name)


def test_threads_share_no_connection():
    """Each thread calls the server through a connection of its own, opened
    on its first call: four threads that call at the same time hold four
    connections, none of them the main thread's, and no call gets another
    thread's reply."""
    with SyncManager() as m:
        lst = m.list()
        lst.append(-1)  # the main thread's connection
        main_conn = lst._tls.connection
        barrier = threading.Barrier(4)
        conns = {}

        errors = []

        def work(i):
            try:
                lst.append(i)
                conns[i] = lst._tls.connection
                barrier.wait(HANG_GUARD)  # all four connections open at once
                for _ in range(49):
                    lst.append(i)
                assert lst._tls.connection is conns[i]  # kept for the thread's life
            except BaseException as e:
                errors.append(e)
                barrier.abort()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(conns) == [0, 1, 2, 3]
        opened = [main_conn] + [conns[i] for i in range(4)]
        assert len({id(c) for c in opened}) == 5, "threads share a connection"
        assert len({c.fileno() for c in opened}) == 5
        assert lst._tls.connection is main_conn
        assert sorted(lst[:]) == sorted([-1] + list(range(4)) * 50)


# ---- interoperability with the stdlib's managers -------------------------------------------

STDLIB_CLIENT = r'''
import sys
from multiprocessing.managers import SyncManager, DictProxy
class Client(SyncManager):
    pass
Client.register('get_box', proxytype=DictProxy)
address, key = sys.argv[1], bytes.fromhex(sys.argv[2])
m = Client(address=address, authkey=key)
m.connect()
lst = m.list([1, 2])
lst.append(3)
d = m.dict(a=1)
d['b'] = lst[:]
v = m.Value('i', 5)
v.value += 1
box = m.get_box()
box['list'] = lst[:]
box['dict'] = d.copy()
box['value'] = v.value
box['keys'] = sorted(d)          # iterating: a '#PROXY' reply
try:
    box.nosuchmethod
except AttributeError:
    pass
print(type(m).__module__, repr(lst), flush=True)
'''

STDLIB_SERVER = r'''
import sys
from multiprocessing.managers import SyncManager, DictProxy
BOX = {}
class Server(SyncManager):
    pass
Server.register('get_box', lambda: BOX, DictProxy)
import multiprocessing.managers as mm
print(mm.__file__, flush=True)
server = Server(address=sys.argv[1], authkey=bytes.fromhex(sys.argv[2])).get_server()
print('serving', flush=True)
server.serve_forever()
'''

_box = {}


class GompBoxManager(SyncManager):
    pass


GompBoxManager.register('get_box', lambda: _box, managers.DictProxy)


def test_stdlib_client_against_gomp_server(tmp_path):
    address = str(tmp_path / 'gomp-server.sock')
    server = GompBoxManager(address=address, authkey=KEY).get_server()
    t = threading.Thread(target=server.accepter, daemon=True)
    gomp.current_process()._manager_server = server
    t.start()
    try:
        proc = subprocess.run(
            [sys.executable, '-c', STDLIB_CLIENT, address, KEY.hex()],
            capture_output=True,
            text=True,
            timeout=120,
            env=stdlib_env(),
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith('__main__ <ListProxy object'), proc.stdout
        assert _box == {
            'list': [1, 2, 3],
            'dict': {'a': 1, 'b': [1, 2, 3]},
            'value': 6,
            'keys': ['a', 'b'],
        }
        # Everything the stdlib client made was released when it exited.
        assert server.number_of_objects(None) == 0
    finally:
        server.stop_event.set()
        server.listener.close()
        del gomp.current_process()._manager_server


def test_gomp_client_against_stdlib_server(tmp_path):
    address = str(tmp_path / 'stdlib-server.sock')
    proc = subprocess.Popen(
        [sys.executable, '-c', STDLIB_SERVER, address, KEY.hex()],
        stdout=subprocess.PIPE,
        text=True,
        env=stdlib_env(),
    )
    try:
        where = proc.stdout.readline()
        assert 'gomp' not in where and where.rstrip().endswith(
            os.path.join('multiprocessing', 'managers.py')
        ), where
        assert proc.stdout.readline().strip() == 'serving'
        m = GompBoxManager(address=address, authkey=KEY)
        m.connect()
        lst = m.list([1, 2])
        lst += [3]
        d = m.dict(a=1)
        d['b'] = lst[:]
        v = m.Value('i', 5)
        v.value += 1
        box = m.get_box()
        box['list'] = lst[:]
        box['keys'] = sorted(d)  # a '#PROXY' reply from the stdlib server
        assert isinstance(lst, managers.ListProxy)
        assert d.copy() == {'a': 1, 'b': [1, 2, 3]}
        assert v.value == 6
        assert box.copy() == {'list': [1, 2, 3], 'keys': ['a', 'b']}
        with pytest.raises(KeyError):
            d['missing']
        del lst, d, v, box
        gc.collect()
        assert m._number_of_objects() == 0
        managers._server_call(address, KEY, m._Client, 'shutdown')
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()


# Other installed Pythons (no gomp there): stdlib peers of every version, with
# operations whose replies carry only builtin types (a '#PROXY' reply names
# gomp.managers.Token, which such a peer cannot import).


def other_pythons():
    found, seen = [], {os.path.realpath(getattr(sys, '_base_executable', sys.executable))}
    for exe in sorted(glob.glob('/root/.pyenv/versions/3.*/bin/python3')):
        real = os.path.realpath(exe)
        if real not in seen:
            seen.add(real)
            found.append(
                pytest.param(exe, id=os.path.basename(os.path.dirname(os.path.dirname(exe))))
            )
    return found


VERSIONED_CLIENT = r'''
import sys
from multiprocessing.managers import SyncManager, dispatch
m = SyncManager(address=sys.argv[1], authkey=bytes.fromhex(sys.argv[2]))
m.connect()
l = m.list([1]); l.append(2)
d = m.dict(a=l[:])
v = m.Value('i', 3); v.value += 1
ns = m.Namespace(x=1); ns.y = ns.x + 1
print(repr((l[:], d.copy(), v.value, ns.y, m._number_of_objects())), flush=True)
'''


@pytest.mark.parametrize('exe', other_pythons())
def test_stdlib_client_of_other_pythons_against_gomp_server(exe, tmp_path):
    address = str(tmp_path / 'gomp-server.sock')
    server = SyncManager(address=address, authkey=KEY).get_server()
    threading.Thread(target=server.accepter, daemon=True).start()
    try:
        proc = subprocess.run(
            [exe, '-c', VERSIONED_CLIENT, address, KEY.hex()],
            capture_output=True,
            text=True,
            timeout=120,
            env=stdlib_env(),
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == repr(([1, 2], {'a': [1, 2]}, 4, 2, 4))
        assert server.number_of_objects(None) == 0
    finally:
        server.stop_event.set()
        server.listener.close()


VERSIONED_SERVER = r'''
import sys
from multiprocessing.managers import SyncManager
server = SyncManager(address=sys.argv[1], authkey=bytes.fromhex(sys.argv[2])).get_server()
print('serving', flush=True)
server.serve_forever()
'''


@pytest.mark.parametrize('exe', other_pythons())
def test_gomp_client_against_stdlib_servers_of_other_pythons(exe, tmp_path):
    address = str(tmp_path / 'stdlib-server.sock')
    proc = subprocess.Popen(
        [exe, '-c', VERSIONED_SERVER, address, KEY.hex()],
        stdout=subprocess.PIPE,
        text=True,
        env=stdlib_env(),
    )
    try:
        assert proc.stdout.readline().strip() == 'serving'
        m = SyncManager(address=address, authkey=KEY)
        m.connect()
        lst = m.list([1])
        lst.append(2)
        d = m.dict(a=lst[:])
        v = m.Value('i', 3)
        v.value += 1
        q = m.Queue()
        q.put('item')
        ev = m.Event()
        ev.set()
        assert (lst[:], d.copy(), v.value, q.get(), ev.is_set()) == (
            [1, 2],
            {'a': [1, 2]},
            4,
            'item',
            True,
        )
        assert m._number_of_objects() == 5
        del lst, d, v, q, ev
        gc.collect()
        assert m._number_of_objects() == 0
        managers._server_call(address, KEY, m._Client, 'shutdown')
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
