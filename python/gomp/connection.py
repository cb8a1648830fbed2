"""Connections between processes: Pipe(), Listener/Client over sockets, and
wait() for several connections at once.

Messages use CPython's frame format (a 4-byte big-endian length, or -1 and an
8-byte length above 2 GiB) and the stdlib's pickling, so either end may be a
stdlib multiprocessing process. The bytes are moved by gomp's Go core: it
writes a frame with one system call, reads a payload straight into its final
bytes object, and waits with the GIL released and Ctrl-C honoured."""

import itertools
import os
import socket
import sys
import tempfile
import time

from . import _gomp
from . import util
from .context import AuthenticationError, BufferTooShort, reduction

__all__ = ['Client', 'Listener', 'Pipe', 'wait']

_ForkingPickler = reduction.ForkingPickler

BUFSIZE = 8192
# Generous: a local peer that does not answer within this time is gone.
CONNECTION_TIMEOUT = 20.

_mmap_counter = itertools.count()

default_family = 'AF_UNIX'
families = ['AF_INET', 'AF_UNIX']


def _init_timeout(timeout=CONNECTION_TIMEOUT):
    return time.monotonic() + timeout


def _check_timeout(t):
    return time.monotonic() > t


def arbitrary_address(family):
    """A free address of the family, for a Listener."""
    if family == 'AF_INET':
        return ('localhost', 0)
    if family == 'AF_UNIX':
        return tempfile.mktemp(prefix='listener-', dir=util.get_temp_dir())
    raise ValueError('unrecognized family')


def _validate_family(family):
    if family == 'AF_PIPE':
        raise ValueError('Family %s is not recognized.' % family)


def address_type(address):
    """The family of an address: 'AF_INET' for a tuple, 'AF_UNIX' for a path
    or an abstract name; a '\\\\' name is a Windows pipe ('AF_PIPE')."""
    if type(address) == tuple:
        return 'AF_INET'
    if type(address) is str and address.startswith('\\\\'):
        return 'AF_PIPE'
    if type(address) is str or util.is_abstract_socket_namespace(address):
        return 'AF_UNIX'
    raise ValueError('address type of %r unrecognized' % address)


class _ConnectionBase:
    """A connection over a file descriptor that this object owns."""

    _handle = None

    def __init__(self, handle, readable=True, writable=True):
        handle = handle.__index__()
        if handle < 0:
            raise ValueError("invalid handle")
        if not readable and not writable:
            raise ValueError("at least one of `readable` and `writable` must be True")
        self._handle = handle
        self._readable = readable
        self._writable = writable

    def __del__(self):
        if self._handle is not None:
            self._close()

    def _check_closed(self):
        if self._handle is None:
            raise OSError("handle is closed")

    def _check_readable(self):
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self):
        if not self._writable:
            raise OSError("connection is read-only")

    def _bad_message_length(self):
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise OSError("bad message length")

    @property
    def closed(self):
        """True if the connection is closed."""
        return self._handle is None

    @property
    def readable(self):
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self):
        """True if the connection is writable."""
        return self._writable

    def fileno(self):
        """The file descriptor of the connection."""
        self._check_closed()
        return self._handle

    def close(self):
        """Close the connection."""
        if self._handle is not None:
            try:
                self._close()
            finally:
                self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


class Connection(_ConnectionBase):
    """A connection over a pipe or socket file descriptor."""

    def _close(self, _close=os.close):
        _close(self._handle)

    def send_bytes(self, buf, offset=0, size=None):
        """Send buf[offset:offset+size] (a bytes-like object) as one message."""
        self._check_closed()
        self._check_writable()
        _gomp.send_bytes(self._handle, buf, offset, size)

    def send(self, obj):
        """Send a picklable object."""
        self._check_closed()
        self._check_writable()
        _gomp.send_bytes(self._handle, _ForkingPickler.dumps(obj))

    def recv_bytes(self, maxlength=None):
        """Receive one message as bytes. A message longer than maxlength raises
        OSError and leaves the connection unreadable."""
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        try:
            return _gomp.recv_bytes(self._handle, maxlength)
        except OSError as e:
            if e.args == ("bad message length",):
                self._bad_message_length()
            raise

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message into the writable buffer buf at byte offset;
        return its size. If it does not fit, BufferTooShort carries it."""
        self._check_closed()
        self._check_readable()
        result = _gomp.recv_bytes_into(self._handle, buf, offset)
        if type(result) is bytes:
            raise BufferTooShort(result)
        return result

    def recv(self):
        """Receive a pickled object."""
        self._check_closed()
        self._check_readable()
        return _ForkingPickler.loads(_gomp.recv_bytes(self._handle))

    def poll(self, timeout=0.0):
        """Whether a message (or end of file) is waiting, after waiting at most
        timeout seconds (None: without limit)."""
        self._check_closed()
        self._check_readable()
        return _gomp.poll(self._handle, timeout)

    # The stdlib's private framing methods, for code written against them.
    def _send_bytes(self, buf):
        _gomp.send_bytes(self._handle, buf)

    def _recv_bytes(self, maxsize=None):
        import io
        return io.BytesIO(_gomp.recv_bytes(self._handle, maxsize))

    def _poll(self, timeout):
        return _gomp.poll(self._handle, timeout)


# ---- Listener and Client -------------------------------------------------------------------

class Listener(object):
    """A bound, listening socket whose accept() returns Connection objects,
    authenticated with authkey (HMAC challenge both ways) if one is given."""

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        family = family or (address and address_type(address)) or default_family
        address = address or arbitrary_address(family)
        _validate_family(family)
        self._listener = SocketListener(address, family, backlog)
        if authkey is not None and not isinstance(authkey, bytes):
            raise TypeError('authkey should be a byte string')
        self._authkey = authkey

    def accept(self):
        """Accept a connection (and authenticate it if the listener has an authkey)."""
        if self._listener is None:
            raise OSError('listener is closed')
        c = self._listener.accept()
        if self._authkey:
            try:
                deliver_challenge(c, self._authkey)
                answer_challenge(c, self._authkey)
            except BaseException:
                c.close()
                raise
        return c

    def close(self):
        """Close the listening socket (and remove its file)."""
        listener = self._listener
        if listener is not None:
            self._listener = None
            listener.close()

    @property
    def address(self):
        return self._listener._address

    @property
    def last_accepted(self):
        return self._listener._last_accepted

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


def Client(address, family=None, authkey=None):
    """A Connection to the Listener at address (authenticated with authkey
    if given)."""
    family = family or address_type(address)
    _validate_family(family)
    c = SocketClient(address)
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError('authkey should be a byte string')
    if authkey is not None:
        try:
            answer_challenge(c, authkey)
            deliver_challenge(c, authkey)
        except BaseException:
            c.close()
            raise
    return c


def Pipe(duplex=True):
    """Two Connection objects at the ends of a socketpair (duplex) or of a
    pipe (the first end receives, the second sends)."""
    if duplex:
        s1, s2 = socket.socketpair()
        s1.setblocking(True)
        s2.setblocking(True)
        return Connection(s1.detach()), Connection(s2.detach())
    fd1, fd2 = os.pipe()
    return Connection(fd1, writable=False), Connection(fd2, readable=False)


class SocketListener(object):
    """A socket bound to address and listening."""

    def __init__(self, address, family, backlog=1):
        self._socket = socket.socket(getattr(socket, family))
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.setblocking(True)
            self._socket.bind(address)
            self._socket.listen(backlog)
            self._address = self._socket.getsockname()
        except OSError:
            self._socket.close()
            raise
        self._family = family
        self._last_accepted = None
        if family == 'AF_UNIX' and not util.is_abstract_socket_namespace(address):
            # An abstract name vanishes with the socket; a path must be removed.
            self._unlink = util.Finalize(self, os.unlink, args=(address,), exitpriority=0)
        else:
            self._unlink = None

    def accept(self):
        s, self._last_accepted = self._socket.accept()
        s.setblocking(True)
        return Connection(s.detach())

    def close(self):
        try:
            self._socket.close()
        finally:
            unlink = self._unlink
            if unlink is not None:
                self._unlink = None
                unlink()


def SocketClient(address):
    """A Connection on a socket connected to address."""
    family = address_type(address)
    with socket.socket(getattr(socket, family)) as s:
        s.setblocking(True)
        s.connect(address)
        return Connection(s.detach())


# ---- authentication ------------------------------------------------------------------------

MESSAGE_LENGTH = 20

CHALLENGE = b'#CHALLENGE#'
WELCOME = b'#WELCOME#'
FAILURE = b'#FAILURE#'


def deliver_challenge(connection, authkey):
    """Challenge the peer to prove it knows authkey (HMAC of random bytes);
    raise AuthenticationError if it does not."""
    import hmac
    if not isinstance(authkey, bytes):
        raise ValueError("Authkey must be bytes, not {0!s}".format(type(authkey)))
    message = os.urandom(MESSAGE_LENGTH)
    connection.send_bytes(CHALLENGE + message)
    digest = hmac.new(authkey, message, 'md5').digest()
    response = connection.recv_bytes(256)  # a longer answer is refused unread
    if hmac.compare_digest(response, digest):
        connection.send_bytes(WELCOME)
    else:
        connection.send_bytes(FAILURE)
        raise AuthenticationError('digest received was wrong')


def answer_challenge(connection, authkey):
    """Answer the peer's challenge with authkey; raise AuthenticationError if
    the peer rejects the answer."""
    import hmac
    if not isinstance(authkey, bytes):
        raise ValueError("Authkey must be bytes, not {0!s}".format(type(authkey)))
    message = connection.recv_bytes(256)
    if message[:len(CHALLENGE)] != CHALLENGE:
        raise AuthenticationError('protocol error: expected a challenge, got %r' % message)
    message = message[len(CHALLENGE):]
    digest = hmac.new(authkey, message, 'md5').digest()
    connection.send_bytes(digest)
    response = connection.recv_bytes(256)
    if response != WELCOME:
        raise AuthenticationError('digest sent was rejected')


# ---- waiting on several objects ------------------------------------------------------------

def wait(object_list, timeout=None):
    """Wait until one of object_list is ready and return the ready ones.

    The objects are connections, sockets, file descriptors (such as process
    sentinels) or anything with fileno(). A connection is ready when a
    message or end of file is waiting. An empty list is returned if timeout
    seconds pass first (None: no limit)."""
    fds = []
    for o in object_list:
        fds.append(o if isinstance(o, int) else o.fileno())
    ready = set(_gomp.wait_readable(fds, timeout))
    return [o for o, fd in zip(object_list, fds) if fd in ready]


# ---- pickling connections to other processes -----------------------------------------------

def reduce_connection(conn):
    df = reduction.DupFd(conn.fileno())
    return rebuild_connection, (df, conn.readable, conn.writable)


def rebuild_connection(df, readable, writable):
    fd = df.detach()
    return Connection(fd, readable, writable)


reduction.register(Connection, reduce_connection)
