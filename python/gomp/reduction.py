"""Pickling for other processes: the ForkingPickler (standard pickle with
reducers for methods, partials, sockets and connections) and the passing of
file descriptors between processes (SCM_RIGHTS).

Every process that uses gomp imports this module, spawned children first of
all, so it loads no more than it needs: the C pickler (_pickle, which is what
pickle.Pickler is) rather than the pickle module with its re, and socket only
once sockets or file descriptors are passed. Measured here: pickle and
socket, with the re, enum and selectors they import, take 12 ms to import;
a bare interpreter starts in 16 ms, a spawned child with nothing to do took
60."""

import array
import copyreg
import functools
import io
import os
import sys
import threading
from abc import ABCMeta

import _socket

try:
    import _pickle as _pickler
except ImportError:  # an interpreter without the C pickler
    import pickle as _pickler

from . import context

__all__ = ['send_handle', 'recv_handle', 'ForkingPickler', 'register', 'dump',
           'DupFd', 'sendfds', 'recvfds']

_this_module = sys.modules[__name__]

HAVE_SEND_HANDLE = (hasattr(_socket, 'CMSG_LEN') and hasattr(_socket, 'SCM_RIGHTS')
                    and hasattr(_socket.socket, 'sendmsg'))


def __getattr__(name):
    # The stdlib's module has these as globals; code that reaches them
    # through this module gets them loaded then.
    if name in ('pickle', 'socket'):
        return __import__(name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


class _DispatchTable(dict):
    """The reducers registered with ForkingPickler.register(), consulted first;
    on a miss, copyreg's table, looked up live. The stdlib copies copyreg's
    table and the registered reducers into a new dict for every pickler; this
    gives the same lookups without the copy. Built-in types (int, str, tuple,
    list, dict...) are pickled before the table is consulted, so the Python-level
    __missing__ only runs for other types."""

    __slots__ = ()

    def __missing__(self, key):
        if key is getattr(sys.modules.get('socket'), 'socket', None):
            # socket.socket, registered on first use: this module does not
            # import socket. (Before the stdlib's reducers below: those would
            # share the socket through the stdlib's resource sharer.)
            return self.setdefault(key, _reduce_socket)
        # Objects of the stdlib's multiprocessing, when a program uses both
        # without gomp.install() (concurrent.futures' call queue, a
        # multiprocessing.queues.Queue, with gomp's context): the stdlib's
        # reducers for them (its Connection...), if its module is loaded (it
        # is never imported here).
        std = sys.modules.get('multiprocessing.reduction')
        if std is not None and std is not _this_module:
            r = getattr(getattr(std, 'ForkingPickler', None), '_extra_reducers', {}).get(key)
            if r is not None:
                return r
        return copyreg.dispatch_table[key]


class ForkingPickler(_pickler.Pickler):
    """pickle.Pickler with the reducers registered through register() on top
    of copyreg's, the same protocol and reducers as the stdlib's, so that the
    bytes are interchangeable with a stdlib multiprocessing peer."""

    _extra_reducers = _DispatchTable()
    _copyreg_dispatch_table = copyreg.dispatch_table

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dispatch_table = self._extra_reducers

    @classmethod
    def register(cls, type, reduce):
        """Register reduce(obj) -> (callable, args) for objects of type."""
        cls._extra_reducers[type] = reduce

    @classmethod
    def dumps(cls, obj, protocol=None):
        """The pickle of obj, as bytes."""
        if cls is not ForkingPickler or protocol is not None:
            buf = io.BytesIO()
            cls(buf, protocol).dump(obj)
            return buf.getvalue()
        # A pickler per thread, reused: creating one costs more than pickling
        # a small object. A nested call (a reducer that pickles) gets its own.
        cached = getattr(_local, 'pickler', None)
        _local.pickler = None  # in use until the finally below
        if cached is None:
            buf = io.BytesIO()
            cached = (buf, ForkingPickler(buf))
        buf, pickler = cached
        try:
            pickler.dump(obj)
            return buf.getvalue()
        finally:
            buf.seek(0)
            buf.truncate()
            pickler.clear_memo()
            _local.pickler = cached

    loads = _pickler.loads


_local = threading.local()

register = ForkingPickler.register


def dump(obj, file, protocol=None):
    """pickle.dump() with the ForkingPickler."""
    ForkingPickler(file, protocol).dump(obj)


# ---- passing file descriptors --------------------------------------------------------------

def sendfds(sock, fds):
    """Send the file descriptors fds over the AF_UNIX socket sock."""
    fds = array.array('i', fds)
    msg = bytes([len(fds) % 256])
    sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])


def recvfds(sock, size):
    """Receive up to size file descriptors sent by sendfds()."""
    a = array.array('i')
    bytes_size = a.itemsize * size
    msg, ancdata, flags, addr = sock.recvmsg(1, _socket.CMSG_SPACE(bytes_size))
    if not msg and not ancdata:
        raise EOFError
    try:
        if len(ancdata) != 1:
            raise RuntimeError('received %d items of ancdata' % len(ancdata))
        level, kind, data = ancdata[0]
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            if len(data) % a.itemsize != 0:
                raise ValueError
            a.frombytes(data)
            if len(a) % 256 != msg[0]:
                raise AssertionError("Len is {0:n} but msg[0] is {1!r}".format(len(a), msg[0]))
            return list(a)
    except (ValueError, IndexError):
        pass
    raise RuntimeError('Invalid data received')


def send_handle(conn, handle, destination_pid):
    """Send the file descriptor handle over the connection conn (a socket)."""
    import socket
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
        sendfds(s, [handle])


def recv_handle(conn):
    """Receive a file descriptor sent by send_handle()."""
    import socket
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
        return recvfds(s, 1)[0]


def DupFd(fd):
    """A picklable wrapper of fd whose detach() returns a duplicate of it in
    the process that unpickles it."""
    popen = context.get_spawning_popen()
    if popen is not None:
        # Pickled to start a child: the fd travels with the child's start.
        return popen.DupFd(popen.duplicate_for_child(fd))
    if HAVE_SEND_HANDLE:
        from . import resource_sharer
        return resource_sharer.DupFd(fd)
    raise ValueError('SCM_RIGHTS appears not to be available')


# ---- reducers for built-in types -----------------------------------------------------------

def _reduce_method(m):
    if m.__self__ is None:
        return getattr, (m.__class__, m.__func__.__name__)
    return getattr, (m.__self__, m.__func__.__name__)


class _C:
    def f(self):
        pass


register(type(_C().f), _reduce_method)


def _reduce_method_descriptor(m):
    return getattr, (m.__objclass__, m.__name__)


register(type(list.append), _reduce_method_descriptor)
register(type(int.__add__), _reduce_method_descriptor)


def _reduce_partial(p):
    return _rebuild_partial, (p.func, p.args, p.keywords or {})


def _rebuild_partial(func, args, keywords):
    return functools.partial(func, *args, **keywords)


register(functools.partial, _reduce_partial)


def _reduce_socket(s):
    df = DupFd(s.fileno())
    return _rebuild_socket, (df, s.family, s.type, s.proto)


def _rebuild_socket(df, family, type, proto):
    import socket
    fd = df.detach()
    return socket.socket(family, type, proto, fileno=fd)


class AbstractReducer(metaclass=ABCMeta):
    """Base of a replacement reduction module (set with context.reducer)."""
    ForkingPickler = ForkingPickler
    register = register
    dump = dump
    send_handle = send_handle
    recv_handle = recv_handle
    sendfds = sendfds
    recvfds = recvfds
    DupFd = DupFd

    _reduce_method = _reduce_method
    _reduce_method_descriptor = _reduce_method_descriptor
    _rebuild_partial = _rebuild_partial
    _reduce_socket = _reduce_socket
    _rebuild_socket = _rebuild_socket

    def __init__(self, *args):
        register(type(_C().f), _reduce_method)
        register(type(list.append), _reduce_method_descriptor)
        register(type(int.__add__), _reduce_method_descriptor)
        register(functools.partial, _reduce_partial)
        import socket
        register(socket.socket, _reduce_socket)
