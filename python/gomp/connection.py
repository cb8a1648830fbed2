"""Connections between processes: Pipe(), Listener/Client over sockets, and
wait() for several connections at once.

Messages use CPython's frame format (a 4-byte big-endian length, or -1 and an
8-byte length above 2 GiB) and the stdlib's pickling, so either end may be a
stdlib multiprocessing process. The bytes are moved in C (_gomp, conn.c): a
frame is written with one system call, a payload is read straight into its
final bytes object, and every wait releases the GIL and honours Ctrl-C. The
Go core is not involved in messages (it is the fallback for descriptors such
as ttys that refuse non-blocking reads and writes). The Python layer here
only owns the descriptor, checks that an operation is allowed, and sets
sockets up (listening, connecting, authenticating)."""

import _socket  # socket is imported by the functions that make sockets
import _struct
import itertools
import os
import time

from . import _gomp, util
from ._versions import V
from .context import AuthenticationError, BufferTooShort, reduction

__all__ = ['Client', 'Listener', 'Pipe', 'wait']

_ForkingPickler = reduction.ForkingPickler

BUFSIZE = 8192
# Generous: a local peer that does not answer within this time is gone.
CONNECTION_TIMEOUT = 20.0

_mmap_counter = itertools.count()

default_family = 'AF_UNIX'
families = ['AF_INET', 'AF_UNIX']


# ---- addresses -----------------------------------------------------------------------------


def _fresh_unix_path():
    import tempfile

    return tempfile.mktemp(prefix='listener-', dir=util.get_temp_dir())


# How to make up an address nobody uses yet, per family: port 0 lets the
# kernel pick a TCP port; a path is a new name in gomp's temporary directory.
_FRESH_ADDRESS = {
    'AF_INET': lambda: ('localhost', 0),
    'AF_UNIX': _fresh_unix_path,
}


def arbitrary_address(family):
    """A free address of the family, for a Listener."""
    make = _FRESH_ADDRESS.get(family) if isinstance(family, str) else None
    if make is None:
        raise ValueError('unrecognized family')
    return make()


def address_type(address):
    """The family of an address: 'AF_INET' for a (host, port) tuple,
    'AF_UNIX' for a path or a Linux abstract name (str or bytes starting with
    a NUL byte), 'AF_PIPE' for a Windows pipe name ('\\\\...')."""
    kind = type(address)
    if kind is tuple:
        return 'AF_INET'
    if kind is str:
        return 'AF_PIPE' if address.startswith('\\\\') else 'AF_UNIX'
    if util.is_abstract_socket_namespace(address):
        return 'AF_UNIX'
    raise ValueError('address type of %r unrecognized' % address)


def _validate_family(family):
    """Raise ValueError unless family names a socket family of this platform.
    ('AF_PIPE', Windows named pipes, is not one here.) The stdlib lets an
    unknown name through to getattr(socket, family), an AttributeError."""
    known = (
        isinstance(family, str)
        and family.startswith('AF_')
        and family != 'AF_PIPE'
        and hasattr(_socket, family)
    )
    if not known:
        raise ValueError('Family %s is not recognized.' % (family,))


def _check_authkey(authkey):
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError('authkey should be a byte string')


# Deadline helpers of the stdlib's module, kept for code that imports them.
def _init_timeout(timeout=CONNECTION_TIMEOUT):
    return time.monotonic() + timeout


def _check_timeout(t):
    return time.monotonic() > t


class _Closing:
    """`with x:` closes x at the end of the block."""

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# ---- connections ---------------------------------------------------------------------------

_BAD_LENGTH = ('bad message length',)


def _flag(name, doc):
    return property(lambda self: getattr(self, name), doc=doc)


def _refusal(refuse, message):
    """A method that raises OSError(message) when refuse(self) is true."""

    def check(self):
        if refuse(self):
            raise OSError(message)

    return check


class _ConnectionBase(_Closing):
    """A connection over a file descriptor that this object owns.

    Every operation asks for the descriptor through _reading_fd() or
    _writing_fd(), which raise the stdlib's OSError when the connection is
    closed or does not go that way. The checks are one comparison on the
    common path; the precise error is worked out only when one fails."""

    _handle = None  # no descriptor: closed (or __init__ failed)

    def __init__(self, handle, readable=True, writable=True):
        fd = handle.__index__()
        if fd < 0:
            raise ValueError("invalid handle")
        if not (readable or writable):
            raise ValueError("at least one of `readable` and `writable` must be True")
        self._readable = readable
        self._writable = writable
        self._handle = fd

    closed = property(lambda self: self._handle is None, doc="True if the connection is closed.")
    readable = _flag('_readable', "True if the connection is readable.")
    writable = _flag('_writable', "True if the connection is writable.")

    _check_closed = _refusal(lambda self: self._handle is None, "handle is closed")
    _check_readable = _refusal(lambda self: not self._readable, "connection is write-only")
    _check_writable = _refusal(lambda self: not self._writable, "connection is read-only")

    def _reading_fd(self):
        fd = self._handle
        if fd is None or not self._readable:
            self._check_closed()
            self._check_readable()
        return fd

    def _writing_fd(self):
        fd = self._handle
        if fd is None or not self._writable:
            self._check_closed()
            self._check_writable()
        return fd

    def fileno(self):
        """The file descriptor of the connection."""
        self._check_closed()
        return self._handle

    def close(self, _os_close=os.close):
        """Close the connection (again: nothing happens)."""
        fd, self._handle = self._handle, None
        if fd is not None:
            _os_close(fd)

    # Bound at definition time: __del__ may run while the interpreter shuts
    # down and module globals are already gone.
    __del__ = close

    def _bad_message_length(self):
        """After an oversized frame the stream is out of step, so nothing more
        can be read from it: a duplex connection stays usable for sending,
        a read-only one is closed."""
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise OSError(*_BAD_LENGTH)


class Connection(_ConnectionBase):
    """A connection over a pipe or socket file descriptor."""

    def send_bytes(self, buf, offset=0, size=None):
        """Send buf[offset:offset+size] (a bytes-like object) as one message."""
        _gomp.send_bytes(self._writing_fd(), buf, offset, size)

    def send(self, obj):
        """Send a picklable object."""
        _gomp.send_bytes(self._writing_fd(), _ForkingPickler.dumps(obj))

    def recv_bytes(self, maxlength=None):
        """Receive one message as bytes. A message longer than maxlength raises
        OSError and leaves the connection unreadable."""
        fd = self._reading_fd()
        try:
            return _gomp.recv_bytes(fd, maxlength)  # checks maxlength >= 0 itself
        except OSError as exc:
            if exc.args != _BAD_LENGTH:
                raise
        self._bad_message_length()

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message into the writable buffer buf at byte offset;
        return its size. If it does not fit, BufferTooShort carries it."""
        got = _gomp.recv_bytes_into(self._reading_fd(), buf, offset)
        if type(got) is int:
            return got
        raise BufferTooShort(got)  # the C side handed the whole message back

    def recv(self):
        """Receive a pickled object."""
        return _ForkingPickler.loads(_gomp.recv_bytes(self._reading_fd()))

    def poll(self, timeout=0.0):
        """Whether a message (or end of file) is waiting, after waiting at most
        timeout seconds (None: without limit)."""
        return _gomp.poll(self._reading_fd(), timeout)

    # The stdlib's private framing methods, for code written against them.
    def _send_bytes(self, buf):
        _gomp.send_bytes(self._handle, buf)

    def _recv_bytes(self, maxsize=None):
        import io

        return io.BytesIO(_gomp.recv_bytes(self._handle, maxsize))

    def _poll(self, timeout):
        return _gomp.poll(self._handle, timeout)


def Pipe(duplex=True):
    """Two Connection objects at the ends of a socketpair (duplex) or of a
    pipe (the first end receives, the second sends)."""
    if not duplex:
        rfd, wfd = os.pipe()
        return Connection(rfd, writable=False), Connection(wfd, readable=False)
    ends = _socket.socketpair()
    for end in ends:
        end.setblocking(True)  # even under socket.setdefaulttimeout()
    return tuple(Connection(end.detach()) for end in ends)


# ---- sockets -------------------------------------------------------------------------------


def _set_nodelay(s):
    """Turn Nagle's algorithm off on a TCP socket. Every frame goes out in one
    write, and the protocols on top (the handshake, then request and reply)
    send small messages back to back: with Nagle, a second small message
    waits for the ACK of the first, which the peer delays by 40 ms. (The
    stdlib pays those 40 ms on every authenticated TCP connection.)"""
    try:
        s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not a TCP socket


def _make_stream(sock, family):
    """Set up a socket that is about to carry a connection: blocking whatever
    socket.setdefaulttimeout() says, and without Nagle's delay over TCP."""
    if sock.gettimeout() is not None:
        sock.setblocking(True)
    if family != 'AF_UNIX':
        _set_nodelay(sock)
    return sock


def _open_socket(family, setup):
    """A new socket of family, passed to setup(sock); closed again if setup
    fails in any way (OSError, or a TypeError for an address of another
    family)."""
    import socket

    sock = socket.socket(getattr(socket, family))
    try:
        setup(sock)
    except BaseException:
        sock.close()
        raise
    return sock


class SocketListener:
    """A socket bound to address and listening, in blocking mode whatever
    socket.setdefaulttimeout() says (as the stdlib's). A path it binds is
    removed again by close(), or at exit, by the process that bound it."""

    def __init__(self, address, family, backlog=1):
        def bind(sock):
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            sock.setblocking(True)
            sock.bind(address)
            sock.listen(backlog)

        self._socket = _open_socket(family, bind)
        self._address = self._socket.getsockname()
        self._family = family
        self._last_accepted = None
        # A path stays in the file system until removed (an abstract name
        # vanishes with its socket). Finalize checks the pid, so a forked
        # child that exits leaves the file alone.
        is_path = family == 'AF_UNIX' and not util.is_abstract_socket_namespace(address)
        self._unlink = (
            util.Finalize(self, os.unlink, (address,), exitpriority=0) if is_path else None
        )

    def _accept_socket(self):
        sock, self._last_accepted = self._socket.accept()
        return _make_stream(sock, self._family)

    def accept(self):
        return Connection(self._accept_socket().detach())

    def close(self):
        unlink, self._unlink = self._unlink, None
        with self._socket:  # closed on the way out, even if unlink() fails
            if unlink is not None:
                unlink()


def _connected_socket(address):
    family = address_type(address)

    def connect(sock):
        _make_stream(sock, family)
        sock.connect(address)

    return _open_socket(family, connect)


def SocketClient(address):
    """A Connection on a blocking socket connected to address."""
    with _connected_socket(address) as sock:
        return Connection(sock.detach())


# ---- Listener and Client -------------------------------------------------------------------

# How long an accepted peer has to complete the authentication handshake.
# The stdlib waits without limit, so one peer that connects and then stays
# silent (or sends half a message) blocks its accept() for every other client
# forever. A peer that runs Client() answers within microseconds; the limit
# only has to be generous enough for a badly overloaded machine. When it
# passes, the listener closes that connection and an accept() raises
# AuthenticationError (which is also a TimeoutError) for it. None restores
# the stdlib's unlimited wait. Read when the listener accepts the peer.
HANDSHAKE_TIMEOUT = CONNECTION_TIMEOUT

# How many accepted peers may be in the middle of their handshake at once. A
# further peer waits in the kernel's backlog until one of them finishes or
# times out: a flood of connections that never speak costs the listener at
# most this many descriptors, and a good client is delayed only once that
# many silent ones are ahead of it.
MAX_PENDING_HANDSHAKES = 64


class _HandshakeTimeout(AuthenticationError, TimeoutError):
    """The peer did not complete the authentication handshake in time.

    Both an AuthenticationError (what accept() raises for any peer that fails
    to authenticate) and the built-in TimeoutError (an OSError, which is what
    accept loops in the stdlib's style already catch)."""


_INT32 = _struct.Struct('!i')


def _frame(payload):
    """A handshake message in the connection frame format (always small)."""
    return _INT32.pack(len(payload)) + payload


def _handshake_frame_size(head):
    """The payload size in a handshake frame's 4-byte header, refused when no
    handshake message can have it: before anything is allocated for it."""
    (size,) = _INT32.unpack(head)
    if size > _MAX_HANDSHAKE_MESSAGE or size == -1:  # -1: an 8-byte length follows
        raise OSError('bad message length')
    if size < 0:
        # The stdlib reads such a frame as an empty message and then refuses
        # it as the wrong answer: the same type, a message that says why.
        raise AuthenticationError('protocol error: the peer announced a message of %d bytes' % size)
    return size


def _end_of_file(in_frame):
    """End of file from the peer: EOFError between frames (it left), OSError
    within one (it broke off), as Connection.recv_bytes() raises."""
    return OSError('got end of file during message') if in_frame else EOFError()


class _SocketChannel:
    """Client()'s view of a blocking socket that is not a Connection yet: the
    send_bytes()/recv_bytes() of a Connection for the handshake's few small
    frames, in plain socket calls (the Go core is not involved before the
    connection is handed over). It never reads beyond a frame: the listener
    may send data right after the handshake."""

    __slots__ = ('_sock',)

    def __init__(self, sock):
        self._sock = sock

    def send_bytes(self, buf):
        self._sock.sendall(_frame(buf))

    def recv_bytes(self, maxlength):
        size = _handshake_frame_size(self._recv_exactly(4, False))
        return self._recv_exactly(size, True) if size else b''

    def _recv_exactly(self, n, in_frame):
        chunks = []
        while n:
            got = self._sock.recv(n)
            if not got:
                raise _end_of_file(in_frame or bool(chunks))
            chunks.append(got)
            n -= len(got)
        return b''.join(chunks)


class _Handshake:
    """An accepted peer going through the listener's side of the handshake
    (challenge, then answer), without blocking: the socket is non-blocking,
    the listener waits for all its peers at once and calls advance() on a
    readable one, which reads what has arrived and feeds each complete frame
    to the protocol. Reads stop exactly at the end of a frame (the peer may
    send its first message right after the handshake). The deadline covers
    the whole handshake: a peer that trickles bytes does not extend it."""

    __slots__ = ('sock', 'fd', 'address', 'timeout', 'deadline', '_steps', '_buf', '_size')

    def __init__(self, sock, address, family, authkey, timeout):
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._buf = b''
        self._size = None  # None: reading a header
        if family != 'AF_UNIX':
            _set_nodelay(sock)
        sock.setblocking(False)
        self._steps = _listener_steps(self._send, authkey)
        self._steps.send(None)  # sends the challenge

    def _send(self, payload):
        # The listener sends three messages of at most a hundred bytes each
        # into a fresh socket: the kernel takes each one whole (a peer that
        # does not read cannot fill the buffers with so little).
        data = _frame(payload)
        if self.sock.send(data) != len(data):
            raise OSError('the peer does not take the handshake messages')

    def advance(self):
        """Read what the peer sent. True once the handshake has succeeded,
        False while it waits for more; raises the handshake's error."""
        recv = self.sock.recv
        while True:
            want = (4 if self._size is None else self._size) - len(self._buf)
            try:
                got = recv(want)
            except BlockingIOError:
                return False
            if not got:
                raise _end_of_file(self._size is not None or bool(self._buf))
            self._buf += got
            if len(got) < want:
                continue
            if self._size is None:
                size = _handshake_frame_size(self._buf)
                self._buf = b''
                if size:
                    self._size = size
                    continue
            frame, self._buf, self._size = self._buf, b'', None
            try:
                self._steps.send(frame)
            except StopIteration:
                return True

    def timed_out(self):
        return _HandshakeTimeout(
            'the peer did not complete the authentication handshake '
            'within %s seconds' % self.timeout
        )


class _Handshakes:
    """The authenticating half of a Listener: accepts peers and runs their
    handshakes in parallel, so that a peer that is silent, slow or hostile
    never holds up a good one.

    next() returns the first peer that completed its handshake (socket and
    address). Each peer that fails (wrong key, garbage, end of file, deadline)
    is closed, and its error is raised by one next() call, as the stdlib's
    accept() raises it for that peer; but a completed peer always goes first,
    so a failure never delays a good client, and a caller that catches
    AuthenticationError and calls accept() again loses no one. Peers that are
    half-way when next() returns stay here for the next call.

    While nobody is half-way, next() is a plain blocking accept() (as the
    stdlib's); otherwise it waits in _gomp.wait_readable for the listening
    socket and every pending peer at once, up to the nearest deadline: with
    the GIL released and interruptible. An exception from that wait (Ctrl-C,
    a signal handler's) closes the pending peers: the caller has stopped
    accepting."""

    def __init__(self, server, authkey):
        import _thread

        self._server = server
        self._authkey = authkey
        self._pending = []  # _Handshake objects under way
        self._done = []  # (socket, address), authenticated
        self._failed = []  # errors not raised yet
        # One accept() at a time drives the handshakes; a second thread's
        # accept() waits for the lock (interruptibly) and then for its peer.
        self._lock = _thread.allocate_lock()
        util.register_after_fork(self, _Handshakes._after_fork)

    def _after_fork(self):
        # A forked child starts afresh: a lock that a thread of the parent
        # held stays held in the child, and the peers half-way are the
        # parent's (the child's copies of their sockets are closed).
        import _thread

        self._lock = _thread.allocate_lock()
        self.close()

    def next(self):
        with self._lock:
            while True:
                if self._done:
                    return self._done.pop(0)
                if self._failed:
                    raise self._failed.pop(0)
                if self._pending:
                    self._wait_round()
                else:
                    self._start(*self._server._socket.accept())

    def _start(self, sock, address):
        try:
            handshake = _Handshake(
                sock, address, self._server._family, self._authkey, HANDSHAKE_TIMEOUT
            )
        except Exception as exc:
            sock.close()
            self._failed.append(exc)
        except BaseException:
            sock.close()
            raise
        else:
            self._pending.append(handshake)

    def _fail(self, handshake, exc):
        self._pending.remove(handshake)
        handshake.sock.close()
        self._failed.append(exc)

    def _wait_round(self):
        pending = self._pending
        fds = [h.fd for h in pending]
        listening = len(pending) < MAX_PENDING_HANDSHAKES
        if listening:
            fds.append(self._server._socket.fileno())
        deadlines = [h.deadline for h in pending if h.deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        try:
            ready = set(_gomp.wait_readable(fds, timeout))
            for handshake in list(pending):
                if handshake.fd in ready:
                    try:
                        finished = handshake.advance()
                    except Exception as exc:
                        self._fail(handshake, exc)
                        continue
                    if finished:
                        pending.remove(handshake)
                        self._done.append((handshake.sock, handshake.address))
        except BaseException:
            self.close_pending()
            raise
        # Expire before accepting, so that a peer accepted now is not
        # checked against a clock read before it came.
        now = time.monotonic()
        for handshake in list(pending):
            if handshake.deadline is not None and handshake.deadline <= now:
                self._fail(handshake, handshake.timed_out())
        if listening and fds[-1] in ready:
            # Readable: a peer is waiting, so this accept() returns at once.
            self._start(*self._server._socket.accept())

    def close_pending(self):
        pending, self._pending = self._pending, []
        for handshake in pending:
            handshake.sock.close()

    def close(self):
        self.close_pending()
        done, self._done = self._done, []
        for sock, _ in done:
            sock.close()


class Listener(_Closing):
    """A bound, listening socket whose accept() returns Connection objects.

    family is 'AF_INET' or 'AF_UNIX' (default: from the address, else
    AF_UNIX); address defaults to a fresh one of the family (see
    arbitrary_address). An AF_UNIX address that starts with a NUL byte is a
    Linux abstract socket. With an authkey (bytes), accept() authenticates
    every peer (an HMAC challenge in each direction) before returning its
    connection, many peers in parallel (see _Handshakes); without one (None,
    the default, as in the stdlib), it does not authenticate at all."""

    _handshakes = None

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        if not family:
            family = address_type(address) if address else default_family
        _validate_family(family)
        _check_authkey(authkey)
        self._authkey = authkey
        self._listener = SocketListener(address or arbitrary_address(family), family, backlog)
        if authkey is not None:
            self._handshakes = _Handshakes(self._listener, authkey)

    def accept(self):
        """Wait for a peer and return its Connection, authenticated if this
        listener has an authkey: the first peer to complete the handshake.
        A peer that fails it (wrong key, garbage, end of file, no answer
        within HANDSHAKE_TIMEOUT seconds) is disconnected, and one accept()
        raises its error (AuthenticationError, or EOFError/OSError for a
        peer that left or sent a broken frame, as the stdlib's), unless a
        good peer is ready at that moment; the listener stays usable."""
        server = self._listener
        if server is None:
            raise OSError('listener is closed')
        if self._handshakes is None:
            return server.accept()
        sock, server._last_accepted = self._handshakes.next()
        sock.setblocking(True)
        return Connection(sock.detach())

    def close(self):
        """Close the listening socket (and remove its file), and the
        connections of peers still in their handshake."""
        server, self._listener = self._listener, None
        if server is not None:
            if self._handshakes is not None:
                self._handshakes.close()
            server.close()

    address = property(
        lambda self: self._listener._address,
        doc="The address the socket is bound to (a client connects there).",
    )
    last_accepted = property(
        lambda self: self._listener._last_accepted,
        doc="The address of the peer that accept() returned last (None before).",
    )


def Client(address, family=None, authkey=None):
    """A Connection to the Listener at address, authenticated with authkey
    (bytes) in both directions if one is given, as the listener must be."""
    _validate_family(family or address_type(address))
    _check_authkey(authkey)
    # No time limit here: the listener may call accept() much later.
    with _connected_socket(address) as sock:  # closed unless detached
        if authkey is not None:
            channel = _SocketChannel(sock)
            _run_steps(channel, _client_steps(channel.send_bytes, authkey))
        return Connection(sock.detach())


# ---- authentication ------------------------------------------------------------------------
#
# Each side proves that it knows the key without sending it: the challenger
# sends CHALLENGE + a random message, the other side answers with an HMAC of
# the message keyed with authkey, and the challenger replies WELCOME or
# FAILURE. Listener.accept() challenges and then answers; Client() answers and
# then challenges. Every handshake message is received with a 256-byte limit,
# so a bogus length header is refused before anything is allocated, and
# nothing is unpickled before both directions succeeded.
#
# The message changed in Python 3.12, and gomp speaks the scheme of the Python
# it runs on (a peer on the other scheme still interoperates, as with the
# stdlib):
# - up to 3.11: the message is 20 random bytes and the answer is a raw
#   HMAC-MD5 (16 bytes). The markers are the public names CHALLENGE, WELCOME,
#   FAILURE.
# - 3.12 and later: the message is b'{name}' + 40 random bytes, naming the
#   digest the challenger wants; the answer is b'{name}' + HMAC-name over the
#   whole message. A 20-byte challenge comes from an older Python and gets a
#   raw HMAC-MD5 answer; a 16-byte answer comes from an older Python and is
#   checked as HMAC-MD5 over the whole (prefixed) message, which is exactly
#   what an older answerer computes. The markers are _CHALLENGE, _WELCOME,
#   _FAILURE there.

_MAX_HANDSHAKE_MESSAGE = 256
_LEGACY_HANDSHAKE = not V.digest_negotiation

_CHALLENGE = b'#CHALLENGE#'
_WELCOME = b'#WELCOME#'
_FAILURE = b'#FAILURE#'

# What an older (up to 3.11) challenger sends, and what an older answerer
# sends back. No message of the newer scheme has either length.
_MD5ONLY_MESSAGE_LENGTH = 20
_MD5_DIGEST_LEN = 16
_LEGACY_LENGTHS = (_MD5ONLY_MESSAGE_LENGTH, _MD5_DIGEST_LEN)

_ALLOWED_DIGESTS = frozenset({b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'})
_MAX_DIGEST_LEN = max(len(d) for d in _ALLOWED_DIGESTS)


def _authkey_bytes(authkey):
    if not isinstance(authkey, bytes):
        raise ValueError(f"Authkey must be bytes, not {type(authkey)!s}")


def _hmac(authkey, message, digest_name):
    # hmac.new(...).digest(), not the one-shot hmac.digest(): with OpenSSL 3
    # the one-shot looks the MAC and digest algorithms up again on every call
    # (EVP_MAC_fetch), which measured slower in the handshake.
    import hmac

    return hmac.new(authkey, message, digest_name).digest()


def _send_failure(send):
    # Tell the peer, if it still listens: the error to raise is the failed
    # authentication, not a broken pipe from a peer that already left.
    try:
        send(_FAILURE)
    except OSError:
        pass


def _check_verdict(verdict):
    if verdict != _WELCOME:
        raise AuthenticationError('digest sent was rejected')


def _get_digest_name_and_payload(message):
    """Split a 3.12+ challenge or answer into (digest name, payload). An
    older peer's message (of a legacy length) has no name: ('', message)."""
    if len(message) in _LEGACY_LENGTHS:
        return '', message
    if message[:1] == b'{':
        end = message.find(b'}', 1, _MAX_DIGEST_LEN + 2)
        if end > 0 and message[1:end] in _ALLOWED_DIGESTS:
            return message[1:end].decode('ascii'), message[end + 1 :]
    raise AuthenticationError(
        'unsupported message length, missing digest prefix, '
        'or unsupported digest: %r' % (message[:64],)
    )


def _create_response(authkey, message):
    """The 3.12+ answer to a challenge message: b'{name}' + HMAC-name of the
    whole message, or a raw HMAC-MD5 for an older challenger (or, where MD5
    is unavailable, the sha256 form, which an older peer will refuse)."""
    digest_name = _get_digest_name_and_payload(message)[0]
    if not digest_name:
        try:
            return _hmac(authkey, message, 'md5')
        except ValueError:
            digest_name = 'sha256'
    return b'{%s}%s' % (digest_name.encode('ascii'), _hmac(authkey, message, digest_name))


def _verify_challenge(authkey, message, response):
    """Check a 3.12+ answer to our challenge message; raise
    AuthenticationError if it is wrong. The answerer may pick any allowed
    digest: the name we asked for is inside the MAC'd message, so it cannot
    be swapped for a weaker one by a third party."""
    import hmac

    digest_name, mac = _get_digest_name_and_payload(response)
    digest_name = digest_name or 'md5'
    try:
        expected = _hmac(authkey, message, digest_name)
    except ValueError:
        raise AuthenticationError('digest %r unsupported' % digest_name) from None
    if len(expected) != len(mac):
        raise AuthenticationError(
            'expected %r of length %d, got %d' % (digest_name, len(expected), len(mac))
        )
    if not hmac.compare_digest(expected, mac):
        raise AuthenticationError('digest received was wrong')


# The two halves of the protocol are generators: each sends with send() and
# receives a frame by `yield`, so that one implementation serves both the
# blocking calls below (deliver_challenge/answer_challenge on a connection, and
# Client()) and the listener, which drives many handshakes at once from its
# readiness loop (_Handshake). A half raises AuthenticationError (or the
# frame reader's OSError/EOFError) on failure.


def _check_challenge(frame):
    """The challenge message in the peer's frame, without its marker."""
    if not frame.startswith(_CHALLENGE):
        raise AuthenticationError('protocol error: expected a challenge, got %r' % (frame[:64],))
    message = frame[len(_CHALLENGE) :]
    if len(message) < _MD5ONLY_MESSAGE_LENGTH:
        raise AuthenticationError('challenge too short: %d bytes' % len(message))
    return message


if _LEGACY_HANDSHAKE:
    MESSAGE_LENGTH = _MD5ONLY_MESSAGE_LENGTH
    CHALLENGE = _CHALLENGE
    WELCOME = _WELCOME
    FAILURE = _FAILURE

    def _challenge_steps(send, authkey):
        import hmac

        message = os.urandom(MESSAGE_LENGTH)
        send(_CHALLENGE + message)
        response = yield
        if not hmac.compare_digest(response, _hmac(authkey, message, 'md5')):
            _send_failure(send)
            raise AuthenticationError('digest received was wrong')
        send(_WELCOME)

    def _answer_steps(send, authkey):
        message = _check_challenge((yield))
        send(_hmac(authkey, message, 'md5'))
        _check_verdict((yield))

    def deliver_challenge(connection, authkey):
        """Challenge the peer to prove it knows authkey (HMAC-MD5 of 20 random
        bytes, Python <= 3.11's scheme); raise AuthenticationError if not."""
        _authkey_bytes(authkey)
        _run_steps(connection, _challenge_steps(connection.send_bytes, authkey))

else:
    MESSAGE_LENGTH = 40

    def _challenge_steps(send, authkey, digest_name='sha256'):
        message = b'{%s}%s' % (digest_name.encode('ascii'), os.urandom(MESSAGE_LENGTH))
        send(_CHALLENGE + message)
        response = yield
        try:
            _verify_challenge(authkey, message, response)
        except AuthenticationError:
            _send_failure(send)
            raise
        send(_WELCOME)

    def _answer_steps(send, authkey):
        message = _check_challenge((yield))
        send(_create_response(authkey, message))
        _check_verdict((yield))

    def deliver_challenge(connection, authkey, digest_name='sha256'):
        """Challenge the peer to prove it knows authkey, asking for an
        HMAC-digest_name (Python >= 3.12's scheme; an older peer's HMAC-MD5
        answer is accepted too); raise AuthenticationError if it does not."""
        _authkey_bytes(authkey)
        _run_steps(connection, _challenge_steps(connection.send_bytes, authkey, digest_name))


def answer_challenge(connection, authkey):
    """Answer the peer's challenge with authkey, with the digest it asks for
    (HMAC-MD5 for a Python up to 3.11); raise AuthenticationError if the peer
    rejects the answer or sends no valid challenge."""
    _authkey_bytes(authkey)
    _run_steps(connection, _answer_steps(connection.send_bytes, authkey))


def _listener_steps(send, authkey):
    """The accepting side: challenge first, then answer."""
    yield from _challenge_steps(send, authkey)
    yield from _answer_steps(send, authkey)


def _client_steps(send, authkey):
    """The connecting side: answer first, then challenge."""
    yield from _answer_steps(send, authkey)
    yield from _challenge_steps(send, authkey)


def _run_steps(connection, steps):
    """Run a protocol generator to its end over a blocking connection (or
    anything with send_bytes and recv_bytes(maxlength)), feeding it the
    frames it waits for."""
    try:
        steps.send(None)
        while True:
            steps.send(connection.recv_bytes(_MAX_HANDSHAKE_MESSAGE))
    except StopIteration:
        pass


# ---- waiting on several objects ------------------------------------------------------------


def wait(object_list, timeout=None):
    """Wait until one of object_list is ready and return the ready ones.

    The objects are connections, sockets, file descriptors (such as process
    sentinels) or anything with fileno(). A connection is ready when a
    message or end of file is waiting. An empty list is returned if timeout
    seconds pass first (None: no limit)."""
    fds = []
    for o in object_list:
        fds.append(o if isinstance(o, int) and o >= 0 else _fileno_of(o))
    ready = set(_gomp.wait_readable(fds, timeout))
    return [o for o, fd in zip(object_list, fds) if fd in ready]


def _fileno_of(o):
    # The stdlib's errors for an object that is neither a descriptor nor has
    # a usable fileno(): ValueError (a closed connection's OSError passes).
    if isinstance(o, int):
        fd = o
    else:
        try:
            fd = o.fileno().__index__()
        except (AttributeError, TypeError, ValueError):
            raise ValueError('Invalid file object: %r' % (o,)) from None
    if fd < 0:
        raise ValueError('Invalid file descriptor: %d' % fd)
    return fd


# ---- pickling connections to other processes -----------------------------------------------
#
# A connection travels as a duplicate of its descriptor (reduction.DupFd: with
# the child's start, or through the resource sharer) and its directions.


def reduce_connection(conn):
    return rebuild_connection, (reduction.DupFd(conn.fileno()), conn.readable, conn.writable)


def rebuild_connection(df, readable, writable):
    return Connection(df.detach(), readable, writable)


reduction.register(Connection, reduce_connection)


# ---- xmlrpc-encoded connections (the managers' 'xmlrpclib' serializer) ------------------------


class _XmlConnection(_Closing):
    """A Connection whose send()/recv() carry one object as an XML-RPC
    <params> document (what the stdlib's XmlListener/XmlClient exchange)
    instead of a pickle."""

    def __init__(self, conn):
        self._conn = conn

    def send(self, obj):
        import xmlrpc.client

        self._conn.send_bytes(xmlrpc.client.dumps((obj,), allow_none=True).encode('utf-8'))

    def recv(self):
        import xmlrpc.client

        (obj,), _ = xmlrpc.client.loads(self._conn.recv_bytes().decode('utf-8'))
        return obj

    def __getattr__(self, name):
        # send_bytes, recv_bytes, poll, close, fileno... of the connection.
        return getattr(self._conn, name)


class XmlListener(Listener):
    """A Listener whose connections send and receive XML-RPC documents."""

    def accept(self):
        return _XmlConnection(Listener.accept(self))


def XmlClient(*args, **kwds):
    """A Client connection that sends and receives XML-RPC documents."""
    return _XmlConnection(Client(*args, **kwds))
