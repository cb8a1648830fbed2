"""Targets and registered types for test_managers.py: importable by spawn and
forkserver children (and by the managers' server processes)."""

import queue

from gomp.managers import BaseManager, BaseProxy


def use_every_proxy(objs, out):
    """In a child: touch every shared object it was given and report what it
    saw on the out queue proxy."""
    seen = {}
    lst = objs['list']
    seen['list'] = list(lst)
    lst.append('child')
    lst += ['iadd']
    d = objs['dict']
    seen['dict'] = dict(d.items())
    d['child'] = len(seen['list'])
    seen['dict_iter'] = sorted(d)
    s = objs['set']
    s.add('child')
    seen['set'] = sorted(s)
    v = objs['value']
    v.value = v.value * 10
    a = objs['array']
    a[0] = a[0] + 100
    seen['array'] = list(a[:])
    ns = objs['ns']
    ns.child = ns.x + 1
    q = objs['queue']
    seen['queue'] = q.get(timeout=30)
    q.put('from child')
    jq = objs['jqueue']
    jq.get(timeout=30)
    jq.task_done()
    objs['event'].set()
    lock = objs['lock']
    with lock:
        seen['lock'] = True
    rlock = objs['rlock']
    with rlock:
        with rlock:
            seen['rlock'] = True
    sem = objs['semaphore']
    seen['semaphore'] = sem.acquire(timeout=30)
    bsem = objs['bsemaphore']
    bsem.release()  # the parent acquired it once
    cond = objs['condition']
    with cond:
        cond.notify_all()
    seen['barrier'] = objs['barrier'].wait(30) in (0, 1)
    seen['nested'] = objs['nested'][0][0]
    out.put(seen)


def append_to(lst, item):
    lst.append(item)


def connect_and_use(address, authkey, out):
    """In another process: reach a running MathsManager by address."""
    m = MathsManager(address=address, authkey=authkey)
    m.connect()
    shared = m.get_shared()
    shared.append('remote')
    out.put(shared._getvalue())


def connect_with(address, authkey):
    m = MathsManager(address=address, authkey=authkey)
    m.connect()


class Maths:
    """A registered type with public, private and failing methods."""

    def __init__(self, base=0):
        self.base = base

    def add(self, x):
        return self.base + x

    def fail(self, message):
        raise ValueError(message)

    def unpicklable(self):
        return lambda: None

    def numbers(self, n):
        return iter(range(n))

    def _private(self):
        return 'private'


class MathsProxy(BaseProxy):
    _exposed_ = ('add', 'fail', 'unpicklable', '_private')

    def add(self, x):
        return self._callmethod('add', (x,))

    def fail(self, message):
        return self._callmethod('fail', (message,))

    def unpicklable(self):
        return self._callmethod('unpicklable')

    def private(self):
        return self._callmethod('_private')


_shared = []


def get_shared():
    return _shared


_server_state = {}


def initializer(value):
    _server_state['init'] = value


def server_state():
    return dict(_server_state)


class MathsManager(BaseManager):
    pass


MathsManager.register('Maths', Maths, MathsProxy)
MathsManager.register('AutoMaths', Maths)  # an AutoProxy: public methods
MathsManager.register('Counting', Maths, method_to_typeid={'numbers': 'Numbers'})
MathsManager.register('Numbers', exposed=('__next__',), create_method=False)
MathsManager.register('get_shared', get_shared)
MathsManager.register('server_state', server_state)
MathsManager.register('Queue', queue.Queue)
