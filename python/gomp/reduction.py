"""Pickling for other processes: the ForkingPickler (standard pickle with
reducers for methods, partials, sockets and connections) and the passing of
file descriptors between processes (SCM_RIGHTS).

Every process that uses gomp imports this module, spawned children first of
all, so it loads no more than it needs: the C pickler (_pickle, which is what
pickle.Pickler is) rather than the pickle module with its re, and socket only
once sockets or file descriptors are passed (the import costs are in
tests_py/bench/NOTES.md, "Start-up of children")."""

import _socket
import array
import copyreg
import functools
import io
import sys
import threading
import types
from abc import ABCMeta

try:
    import _pickle as _pickler
except ImportError:  # an interpreter without the C pickler
    import pickle as _pickler

from . import _gomp, context

__all__ = [
    'send_handle',
    'recv_handle',
    'ForkingPickler',
    'register',
    'dump',
    'DupFd',
    'sendfds',
    'recvfds',
]

_this_module = sys.modules[__name__]

HAVE_SEND_HANDLE = (
    hasattr(_socket, 'CMSG_LEN')
    and hasattr(_socket, 'SCM_RIGHTS')
    and hasattr(_socket.socket, 'sendmsg')
)


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
        # Plain data (None, bool, int, float, str, bytes, and small tuples,
        # lists and dicts of them) is written by every pickler before any
        # dispatch table or reducer is consulted, so the module-level dumps
        # gives the same bytes, at a third of the cost for a small message.
        if _plain(obj):
            return _plain_dumps(obj)
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
_plain = _gomp.plain
_plain_dumps = _pickler.dumps

register = ForkingPickler.register


def dump(obj, file, protocol=None):
    """pickle.dump() with the ForkingPickler."""
    ForkingPickler(file, protocol).dump(obj)


# ---- passing file descriptors --------------------------------------------------------------
#
# Descriptors cross an AF_UNIX socket as an SCM_RIGHTS control message. The
# kernel only delivers control data together with ordinary data, so each
# message carries one byte: the number of descriptors modulo 256, which the
# receiver compares with what arrived.

_FD_SIZE = array.array('i').itemsize


def sendfds(sock, fds):
    """Send the file descriptors fds over the AF_UNIX socket sock."""
    packed = array.array('i', fds)
    count_byte = bytes((len(packed) & 0xFF,))
    sock.sendmsg([count_byte], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, packed)])


def _descriptors_in(control):
    """The descriptors of one control message (level, type, data), or None if
    it is not a whole SCM_RIGHTS array."""
    level, kind, data = control
    if (level, kind) != (_socket.SOL_SOCKET, _socket.SCM_RIGHTS) or len(data) % _FD_SIZE:
        return None
    fds = array.array('i')
    fds.frombytes(data)
    return fds.tolist()


def recvfds(sock, size):
    """Receive up to size file descriptors sent by sendfds(); EOFError if the
    peer closed the socket instead."""
    space = _socket.CMSG_SPACE(size * _FD_SIZE)
    count_byte, controls, _flags, _addr = sock.recvmsg(1, space)
    if not (count_byte or controls):
        raise EOFError
    if len(controls) != 1:
        raise RuntimeError('received %d items of ancdata' % len(controls))
    fds = _descriptors_in(controls[0])
    if fds is None or not count_byte:
        raise RuntimeError('Invalid data received')
    if len(fds) % 256 != count_byte[0]:
        raise AssertionError(f"Len is {len(fds):n} but msg[0] is {count_byte[0]!r}")
    return fds


def _socket_over(conn):
    """A socket object on a duplicate of conn's descriptor (an AF_UNIX stream
    socket), to be closed after use; conn keeps its own descriptor."""
    import socket

    return socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)


def send_handle(conn, handle, destination_pid):
    """Send the file descriptor handle over the connection conn (a socket).
    (destination_pid matters on Windows only.)"""
    with _socket_over(conn) as sock:
        sendfds(sock, [handle])


def recv_handle(conn):
    """Receive a file descriptor sent by send_handle()."""
    with _socket_over(conn) as sock:
        (fd,) = recvfds(sock, 1)
    return fd


def DupFd(fd):
    """A picklable wrapper of fd whose detach() returns a duplicate of it in
    the process that unpickles it.

    While a child is being started, the descriptor goes with the start (the
    starting Popen duplicates it for the child). Otherwise the resource
    sharer keeps a duplicate and hands it over a Unix socket to whichever
    process unpickles the wrapper."""
    popen = context.get_spawning_popen()
    if popen is not None:
        return popen.DupFd(popen.duplicate_for_child(fd))
    if not HAVE_SEND_HANDLE:
        raise ValueError('SCM_RIGHTS appears not to be available')
    from . import resource_sharer

    return resource_sharer.DupFd(fd)


# ---- reducers for built-in types -----------------------------------------------------------
#
# Plain pickle refuses these; processes pass them around all the time (a
# bound method as a Process target or a pool function, partials). Each one
# is rebuilt by looking the attribute up again, so the pickles are the
# stdlib's and either side may be a stdlib multiprocessing process.


def _reduce_method(m):
    return getattr, (m.__self__, m.__func__.__name__)


def _reduce_method_descriptor(m):
    return getattr, (m.__objclass__, m.__name__)


def _reduce_partial(p):
    return _rebuild_partial, (p.func, p.args, p.keywords or {})


def _reduce_socket(s):
    return _rebuild_socket, (DupFd(s.fileno()), s.family, s.type, s.proto)


# What the pickles above call in the receiving process.


def _rebuild_socket(df, family, type, proto):
    import socket

    return socket.socket(family, type, proto, fileno=df.detach())


def _rebuild_partial(func, args, keywords):
    return functools.partial(func, *args, **keywords)


# socket.socket is missing on purpose: this module does not import socket, and
# the dispatch table registers its reducer when a socket is first pickled.
_BUILTIN_REDUCERS = (
    (types.MethodType, _reduce_method),  # obj.method
    (types.MethodDescriptorType, _reduce_method_descriptor),  # list.append
    (types.WrapperDescriptorType, _reduce_method_descriptor),  # int.__add__
    (functools.partial, _reduce_partial),
)


def _register_builtin_reducers():
    for cls, reducer in _BUILTIN_REDUCERS:
        register(cls, reducer)


_register_builtin_reducers()


class AbstractReducer(metaclass=ABCMeta):  # noqa: B024 (no abstract methods, as the stdlib's)
    """Base of a replacement reduction module (set with context.reducer):
    it has this module's functions as attributes, for a subclass to
    override some of them. Making one (re)registers the built-in reducers,
    the socket's included."""

    def __init__(self, *args):
        _register_builtin_reducers()
        import socket

        register(socket.socket, _reduce_socket)


for _name in (
    'ForkingPickler',
    'register',
    'dump',
    'send_handle',
    'recv_handle',
    'sendfds',
    'recvfds',
    'DupFd',
    '_reduce_method',
    '_reduce_method_descriptor',
    '_rebuild_partial',
    '_reduce_socket',
    '_rebuild_socket',
):
    setattr(AbstractReducer, _name, globals()[_name])
del _name
