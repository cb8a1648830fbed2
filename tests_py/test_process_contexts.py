"""Contexts, process bookkeeping and gomp.dummy: the behaviour the rewritten
process.py, context.py and dummy/ promise (beyond what test_process.py and
CPython's suite check)."""

import os
import pickle
import signal
import threading
import types

import pytest

import gomp
import gomp.dummy
import gomp.dummy.connection as dconn
import procs_helpers as h
from gomp import context, process

# ---- the package namespace and contexts -----------------------------------------------------


def test_package_offers_every_public_attribute_of_the_default_context():
    public = {name for name in dir(context._default_context) if not name.startswith('_')}
    assert public <= set(gomp.__all__)
    for name in public - {'reducer'}:
        assert getattr(gomp, name) == getattr(context._default_context, name), name


def test_factories_pass_the_chosen_context():
    for method in ('fork', 'spawn', 'forkserver'):
        ctx = gomp.get_context(method)
        assert ctx.Lock()._is_fork_ctx == (method == 'fork')
        assert ctx.Condition()._lock._is_fork_ctx == (method == 'fork')
        q = ctx.Queue(3)
        q.put(1)
        assert q.get(timeout=10) == 1
        assert ctx.Value('i', 7, lock=False).value == 7
        assert ctx.Array('i', [1, 2], lock=True)[:] == [1, 2]
        assert ctx.RawArray('d', 2)[:] == [0.0, 0.0]
        a, b = ctx.Pipe(duplex=False)
        b.send('x')
        assert a.recv() == 'x'
    assert gomp.Lock.__name__ == 'Lock' and 'lock' in gomp.Lock.__doc__


def test_concrete_context_classes_and_errors():
    for method, prefix in (('fork', 'Fork'), ('spawn', 'Spawn'), ('forkserver', 'ForkServer')):
        ctx = gomp.get_context(method)
        assert type(ctx).__name__ == prefix + 'Context'
        assert ctx.Process.__name__ == prefix + 'Process'
        assert getattr(context, prefix + 'Process') is ctx.Process
        assert ctx.Process._start_method == method
        assert ctx.get_context() is ctx and ctx.get_start_method() == method
        with pytest.raises(ValueError, match='cannot set start method of concrete context'):
            ctx.set_start_method('spawn')
        assert not hasattr(ctx, 'get_all_start_methods')
    with pytest.raises(ValueError, match="cannot find context for 'nope'"):
        gomp.get_context('nope')


def test_default_context_choice_rules():
    dc = context.DefaultContext(context._concrete_contexts['spawn'])
    assert dc.get_start_method(allow_none=True) is None
    assert dc.get_start_method() == 'spawn'  # fixes the choice
    with pytest.raises(RuntimeError, match='context has already been set'):
        dc.set_start_method('fork')
    dc.set_start_method('fork', force=True)
    assert dc.get_context() is context._concrete_contexts['fork']
    dc.set_start_method(None, force=True)
    assert dc.get_start_method(allow_none=True) is None
    methods = gomp.get_all_start_methods()
    assert methods[0] == context._DEFAULT_METHOD
    assert sorted(methods) == ['fork', 'forkserver', 'spawn']


def test_reducer_property_swaps_the_module_global():
    ctx = gomp.get_context('fork')
    original = ctx.reducer
    assert original is context.reduction
    try:
        stand_in = types.SimpleNamespace(HAVE_SEND_HANDLE=True)
        ctx.reducer = stand_in
        assert context.reduction is stand_in and gomp.get_context('spawn').reducer is stand_in
    finally:
        ctx.reducer = original


def test_spawning_popen_is_per_thread_and_guards_pickling():
    key = gomp.current_process().authkey
    with pytest.raises(TypeError, match='disallowed for security reasons'):
        pickle.dumps(key)
    with pytest.raises(RuntimeError, match='Lock objects should only be shared'):
        context.assert_spawning(gomp.Lock())
    context.set_spawning_popen(object())
    try:
        assert pickle.loads(pickle.dumps(key)) == key
        seen = []
        t = threading.Thread(target=lambda: seen.append(context.get_spawning_popen()))
        t.start()
        t.join()
        assert seen == [None]
    finally:
        context.set_spawning_popen(None)


# ---- process objects ---------------------------------------------------------------------------


def test_names_identity_and_kwargs():
    p1 = gomp.Process(target=h.noop)
    p2 = gomp.Process(target=h.noop, name='')
    assert p1._kwargs == {} and p1._kwargs is not p2._kwargs
    n1, n2 = (int(p.name.split('-')[1]) for p in (p1, p2))
    assert n2 == n1 + 1 and p1._identity == (n1,)
    with pytest.raises(AssertionError, match='name must be a string'):
        p1.name = 3
    with pytest.raises(AssertionError, match='group argument must be None'):
        gomp.Process(group=1)
    assert p1 in process._dangling


def test_daemon_flag_is_inherited_and_fixed_at_start():
    p = gomp.Process(target=h.noop, daemon=True)
    assert p.daemon and repr(p).endswith(' initial daemon>')
    assert not gomp.Process(target=h.noop, daemon=False).daemon
    p.start()
    with pytest.raises(AssertionError, match='process has already started'):
        p.daemon = False
    p.join()


def test_exitcode_names_and_repr_states():
    names = process._exitcode_to_name
    assert names[-signal.SIGTERM] == '-SIGTERM' and names[-signal.SIGKILL] == '-SIGKILL'
    assert names[-6] == '-SIGABRT' and names[-17] == '-SIGCHLD' and names[-29] == '-SIGPOLL'
    assert repr(gomp.current_process()) == "<_MainProcess name='MainProcess' parent=None started>"
    p = gomp.get_context('fork').Process(target=h.kill_self)
    p.start()
    p.join()
    assert repr(p).endswith('stopped exitcode=-SIGKILL>')
    p.close()
    assert repr(p).endswith(' closed>')
    assert p not in gomp.active_children()


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_children_list_and_parent_process(method):
    assert gomp.parent_process() is None
    ctx = gomp.get_context(method)
    r, w = ctx.Pipe()
    p = ctx.Process(target=h.report, args=(w,))
    p.start()
    assert p in gomp.active_children() and p in process._children
    pid, _, name, parent_pid, child_method, _, _ = r.recv()
    p.join()
    assert (pid, parent_pid, name, child_method) == (p.pid, os.getpid(), p.name, method)
    assert p not in gomp.active_children() and p not in process._children


def test_exit_status_of_a_child(capfd):
    ctx = gomp.get_context('fork')
    p = ctx.Process(target=h.exit_with, args=('bye',))
    p.start()
    p.join()
    assert p.exitcode == 1 and 'bye' in capfd.readouterr().err
    p = ctx.Process(target=h.raise_value_error, name='failing')
    p.start()
    p.join()
    err = capfd.readouterr().err
    assert p.exitcode == 1 and 'Process failing:' in err and 'ValueError' in err


# ---- gomp.dummy --------------------------------------------------------------------------------


def test_dummy_process_and_children():
    done = threading.Event()
    p = gomp.dummy.Process(target=done.wait, args=(30,))
    assert p.exitcode is None
    p.start()
    assert p in gomp.dummy.active_children() and p.exitcode is None
    done.set()
    p.join()
    assert p.exitcode == 0 and p not in gomp.dummy.active_children()
    errors = []

    def start_elsewhere():
        try:
            gomp.dummy.Process(target=h.noop).start()  # its own child: fine
            p2.start()
        except RuntimeError as e:
            errors.append(str(e))

    p2 = gomp.dummy.Process(target=h.noop)
    t = threading.Thread(target=start_elsewhere)
    t.start()
    t.join()
    assert errors and errors[0].startswith('Parent is ')


def test_dummy_containers():
    ns = gomp.dummy.Namespace(b=1, a=2, _hidden=3)
    assert repr(ns) == 'Namespace(a=2, b=1)'
    v = gomp.dummy.Value('i', 3)
    v.value += 1
    assert repr(v) == "<Value('i', 4)>"
    assert gomp.dummy.Array('i', [1, 2]).tolist() == [1, 2]
    m = gomp.dummy.Manager()
    assert m is gomp.dummy and m.dict is dict and m.list is list
    assert gomp.dummy.JoinableQueue is gomp.dummy.Queue
    assert set(gomp.dummy.__all__) <= set(dir(gomp.dummy))


def test_dummy_connections():
    a, b = dconn.Pipe()
    assert not a.poll() and not a.poll(0.01)
    b.send({'x': 1})
    assert a.poll() and a.recv() == {'x': 1}
    threading.Timer(0.05, b.send_bytes, (b'late',)).start()
    assert a.poll(30) and a.recv_bytes() == b'late'
    with dconn.Listener() as listener:

        def serve():
            with listener.accept() as conn:
                conn.send(conn.recv() * 2)

        t = threading.Thread(target=serve)
        t.start()
        with dconn.Client(listener.address) as client:
            client.send(21)
            assert client.recv() == 42
        t.join()
    assert dconn.families == [None]
