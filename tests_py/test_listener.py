"""gomp.connection.Listener / Client: addresses and families, authentication
(the host Python's handshake), refusal of bad peers without crash, hang or
large allocation, the handshake timeout, socket modes, and pickling of
connections and sockets into children of every start method.

Interoperability with stdlib peers of every installed Python is in
test_listener_interop.py."""

import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
import tracemalloc
import types

import pytest

import gomp
import gomp.connection as connection
from conftest import HANG_GUARD, Background, read_frame, wait_until
from gomp import AuthenticationError, util
from gomp.connection import Client, Connection, Listener

KEY = b'listener test key'


def accept_in_background(listener):
    return Background(listener.accept)


def raw_connect(address):
    """A plain socket connected to a listener's address (a hand-made peer)."""
    s = socket.socket(getattr(socket, connection.address_type(address)))
    s.connect(address)
    return s


def frame(payload):
    return struct.pack('!i', len(payload)) + payload


def served_after(listener, authkey=KEY):
    """Check that the listener still serves a well-behaved client."""
    client = Background(
        Client,
        listener.address,
        'AF_INET' if isinstance(listener.address, tuple) else None,
        authkey,
    )
    with listener.accept() as server_end:
        with client.result() as c:
            c.send(['still', 'serving'])
            assert server_end.recv() == ['still', 'serving']
            server_end.send_bytes(b'yes')
            assert c.recv_bytes() == b'yes'


FAMILIES = ['AF_INET', 'AF_UNIX']
if util.abstract_sockets_supported:
    FAMILIES.append('abstract')


def make_listener(family, **kwargs):
    if family == 'abstract':
        return Listener('\0gomp-test-%d-%d' % (os.getpid(), time.monotonic_ns()), **kwargs)
    return Listener(family=family, **kwargs)


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


# ---- families and addresses ------------------------------------------------------------------


def test_families_and_defaults():
    assert connection.families == ['AF_INET', 'AF_UNIX']
    assert connection.default_family == 'AF_UNIX'
    assert connection.arbitrary_address('AF_INET') == ('localhost', 0)
    path = connection.arbitrary_address('AF_UNIX')
    assert os.path.dirname(path) == util.get_temp_dir()
    assert os.path.basename(path).startswith('listener-')
    assert not os.path.exists(path)
    with pytest.raises(ValueError):
        connection.arbitrary_address('AF_FOO')


def test_address_type():
    assert connection.address_type(('localhost', 1)) == 'AF_INET'
    assert connection.address_type('/tmp/x') == 'AF_UNIX'
    assert connection.address_type('\0abstract') == 'AF_UNIX'
    assert connection.address_type(b'\0abstract') == 'AF_UNIX'
    assert connection.address_type(r'\\.\pipe\x') == 'AF_PIPE'
    with pytest.raises(TypeError):  # as the stdlib (from util)
        connection.address_type(42)
    with pytest.raises(ValueError):
        connection.address_type(b'/tmp/not-abstract')


@pytest.mark.parametrize(
    'bad',
    [
        dict(address=r'\\.\test'),  # a Windows pipe name
        dict(family='AF_PIPE'),
        dict(address='/tmp/x', family='AF_PIPE'),
        dict(address='/tmp/x', family='AF_NOSUCH'),  # the stdlib: AttributeError
        dict(family='AF_NOSUCH'),
        dict(address=('localhost', 0), family='INET'),
    ],
)
def test_invalid_family(bad):
    with pytest.raises(ValueError):
        Listener(**bad)


def test_client_invalid_family():
    with pytest.raises(ValueError):
        Client(r'\\.\pipe\x')
    with pytest.raises(ValueError):
        Client(('localhost', 1), family='AF_NOSUCH')


def test_default_listener_is_unix_in_temp_dir():
    with Listener() as l:
        assert isinstance(l.address, str)
        assert os.path.dirname(l.address) == util.get_temp_dir()
        assert l.last_accepted is None


def test_listener_basics(family):
    l = make_listener(family)
    with l:
        address = l.address
        if family == 'AF_INET':
            host, port = address
            assert host == '127.0.0.1' and port > 0
        elif family == 'AF_UNIX':
            assert os.path.exists(address)
        else:
            assert address[:1] in ('\0', b'\0')
        with Client(address) as c:
            with l.accept() as d:
                c.send(1729)
                assert d.recv() == 1729
                d.send_bytes(b'back')
                assert c.recv_bytes() == b'back'
            if family == 'AF_INET':
                with socket.socket(fileno=os.dup(c.fileno())) as s:
                    assert l.last_accepted == s.getsockname()
    with pytest.raises(OSError):
        l.accept()
    l.close()  # a second close is harmless
    if family == 'AF_UNIX':
        assert not os.path.exists(address)  # the socket file is removed
    elif family == 'AF_INET':
        with pytest.raises(ConnectionRefusedError):
            Client(address)


def test_multiple_bind(family):
    l = make_listener(family)
    with l:
        fam = 'AF_UNIX' if family == 'abstract' else family
        with pytest.raises(OSError):
            Listener(l.address, fam)
        # The failed bind did not remove the first listener's socket file.
        with Client(l.address) as c, l.accept() as d:
            c.send_bytes(b'ok')
            assert d.recv_bytes() == b'ok'


def test_listener_given_address(tmp_path):
    path = str(tmp_path / 'sock')
    with Listener(path) as l:
        assert l.address == path
        with Client(path) as c, l.accept() as d:
            d.send('x')
            assert c.recv() == 'x'
    assert not os.path.exists(path)


def test_backlog_queues_several_clients():
    with Listener(backlog=5) as l:
        clients = [Client(l.address) for _ in range(5)]
        for i, c in enumerate(clients):
            c.send(i)
        got = []
        for _ in clients:
            with l.accept() as d:
                got.append(d.recv())
        assert sorted(got) == list(range(5))
        for c in clients:
            c.close()


# ---- socket modes ----------------------------------------------------------------------------


@pytest.mark.parametrize('fam', ['AF_INET', 'AF_UNIX'])
def test_sockets_blocking_despite_default_timeout(fam):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.1)
    try:
        with Listener(family=fam, authkey=KEY) as l:
            assert l._listener._socket.getblocking()
            client = Background(Client, l.address, None, KEY)
            with l.accept() as d, client.result() as c:
                assert os.get_blocking(d.fileno())
                assert os.get_blocking(c.fileno())
                # A message after longer than the default timeout still arrives.
                t = Background(lambda: (time.sleep(0.3), c.send('late')))
                assert d.recv() == 'late'
                t.result()
    finally:
        socket.setdefaulttimeout(old)


def test_tcp_nodelay_on_both_ends():
    with Listener(family='AF_INET') as l:
        with Client(l.address) as c, l.accept() as d:
            for conn in (c, d):
                with socket.socket(fileno=os.dup(conn.fileno())) as s:
                    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# ---- authentication --------------------------------------------------------------------------


def test_authenticated_exchange(family):
    with make_listener(family, authkey=KEY) as l:
        client = Background(Client, l.address, None, KEY)
        with l.accept() as d, client.result() as c:
            c.send({'a': [1, 2.5, None]})
            assert d.recv() == {'a': [1, 2.5, None]}
            d.send(('reply', b'\0' * 1000))
            assert c.recv() == ('reply', b'\0' * 1000)
            c.send_bytes(b'raw bytes')
            assert d.recv_bytes() == b'raw bytes'
            d.send_bytes(b'x' * 60000)  # fits in the socket buffer
            assert c.recv_bytes() == b'x' * 60000


def test_wrong_key_fails_on_both_sides_and_listener_keeps_serving(family):
    with make_listener(family, authkey=KEY) as l:
        for _ in range(2):
            client = Background(Client, l.address, None, b'wrong key')
            with pytest.raises(AuthenticationError):
                l.accept()
            with pytest.raises(AuthenticationError):
                client.result()
        served_after(l)


def test_listener_key_client_without_key():
    with Listener(authkey=KEY) as l:

        def plain_client():
            with Client(l.address) as c:
                c.send('not authenticated')  # taken as the answer to the challenge
                return c.recv_bytes()

        client = Background(plain_client)
        with pytest.raises(AuthenticationError):
            l.accept()
        assert client.result().startswith(b'#CHALLENGE#')
        served_after(l)


def test_empty_authkey_is_a_key():
    # Python 3.13 semantics (3.11/3.12 skip the handshake in the listener for
    # b'' while the client still runs it, so that pair hangs).
    with Listener(authkey=b'') as l:
        client = Background(Client, l.address, None, b'')
        with l.accept() as d, client.result() as c:
            c.send(1)
            assert d.recv() == 1
        client = Background(Client, l.address, None, b'x')
        with pytest.raises(AuthenticationError):
            l.accept()
        with pytest.raises(AuthenticationError):
            client.result()


def test_authkey_must_be_bytes(tmp_path):
    path = str(tmp_path / 'sock')
    with pytest.raises(TypeError):
        Listener(path, authkey='text')
    assert not os.path.exists(path)  # refused before binding
    with Listener() as l:
        with pytest.raises(TypeError):
            Client(l.address, authkey='text')
    with pytest.raises(ValueError):
        connection.deliver_challenge(None, 'text')
    with pytest.raises(ValueError):
        connection.answer_challenge(None, bytearray(b'x'))


def test_no_authentication_without_authkey():
    # The stdlib's default (authkey=None): no handshake, whatever
    # current_process().authkey is.
    with Listener() as l:
        with Client(l.address) as c:
            c.send_bytes(b'first')
            with l.accept() as d:
                assert d.recv_bytes() == b'first'


def test_handshake_names_follow_host_python():
    if sys.version_info < (3, 12):
        assert connection.CHALLENGE == b'#CHALLENGE#'
        assert connection.WELCOME == b'#WELCOME#'
        assert connection.FAILURE == b'#FAILURE#'
        assert connection.MESSAGE_LENGTH == 20
    else:
        assert not hasattr(connection, 'CHALLENGE')
        assert connection.MESSAGE_LENGTH == 40
        import inspect

        sig = inspect.signature(connection.deliver_challenge)
        assert sig.parameters['digest_name'].default == 'sha256'
    assert connection._CHALLENGE == b'#CHALLENGE#'


class Recorder:
    """A connection that records what is sent and replays scripted receives."""

    def __init__(self, *replies):
        self.sent = []
        self.replies = list(replies)
        self.maxlengths = []

    def send_bytes(self, data):
        self.sent.append(bytes(data))

    def recv_bytes(self, maxlength):
        self.maxlengths.append(maxlength)
        return self.replies.pop(0)


def test_fake_connections_as_in_the_suite():
    with pytest.raises(AuthenticationError):
        connection.deliver_challenge(Recorder(b'something bogus'), b'abc')
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(Recorder(connection._CHALLENGE, b'something bogus'), b'abc')


def test_challenge_message_of_host_scheme():
    import hmac

    r = Recorder(b'')
    with pytest.raises(AuthenticationError):
        connection.deliver_challenge(r, b'key')
    challenge, verdict = r.sent
    assert verdict == b'#FAILURE#'
    assert r.maxlengths == [256]
    assert challenge.startswith(b'#CHALLENGE#')
    message = challenge[len(b'#CHALLENGE#') :]
    if sys.version_info < (3, 12):
        assert len(message) == 20
        expected = hmac.new(b'key', message, 'md5').digest()
    else:
        assert message.startswith(b'{sha256}') and len(message) == 8 + 40
        expected = b'{sha256}' + hmac.new(b'key', message, 'sha256').digest()
    a = Recorder(challenge, b'#WELCOME#')
    connection.answer_challenge(a, b'key')
    assert a.sent == [expected]
    assert a.maxlengths == [256, 256]


@pytest.mark.parametrize(
    'challenge',
    [
        b'',  # empty
        b'#CHALLENGE',  # truncated marker
        b'#CHALLENGE#' + b'x' * 19,  # shorter than any real challenge
        b'#WELCOME#' + b'x' * 20,  # not a challenge
        os.urandom(100),
    ],
)
def test_answer_refuses_bad_challenges(challenge):
    r = Recorder(challenge)
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(r, b'key')
    assert r.sent == []


def test_answer_rejected():
    r = Recorder(b'#CHALLENGE#' + b'x' * 20, b'#FAILURE#')
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(r, b'key')


def test_modern_response_and_verification():
    # _create_response / _verify_challenge implement Python 3.12+'s scheme;
    # gomp has them on every version (the suite of 3.12+ calls them).
    import hmac

    key = b'supadupasecretkey'
    legacy = b'is-twenty-bytes-long'
    assert connection._create_response(key, legacy) == hmac.new(key, legacy, 'md5').digest()
    for algo in ('md5', 'sha256', 'sha384', 'sha3_256', 'sha3_384'):
        msg = b'{%s}%s' % (algo.encode(), legacy)
        resp = connection._create_response(key, msg)
        assert resp == b'{%s}' % algo.encode() + hmac.new(key, msg, algo).digest()
        connection._verify_challenge(key, msg, resp)
        with pytest.raises(AuthenticationError):
            connection._verify_challenge(b'other key', msg, resp)
        # An older answerer sends a raw HMAC-MD5 of the whole message.
        connection._verify_challenge(key, msg, hmac.new(key, msg, 'md5').digest())
    msg = b'{sha256}' + b'm' * 40
    for bad in (
        b'',
        b'{sha256}',
        b'{sha256}' + b'\0' * 31,
        b'{sha1}' + b'\0' * 20,
        b'{nosuch}' + b'\0' * 32,
        b'x' * 17,
        b'{' + b'a' * 200,
    ):
        with pytest.raises(AuthenticationError):
            connection._verify_challenge(key, msg, bad)
    with pytest.raises(AuthenticationError):
        connection._create_response(key, b'{sha1}' + b'x' * 40)
    with pytest.raises(AuthenticationError):
        connection._create_response(key, b'no prefix and not 20 bytes')


# ---- bad peers against a Listener ------------------------------------------------------------


def bad_client_cases():
    big = struct.pack('!i', 0x7FFFFFFF)
    return {
        'close at once': [],
        'garbage answer': [frame(os.urandom(40))],
        'answer too long': [frame(b'y' * 257)],
        'huge length header': [big],
        'huge 8-byte length header': [struct.pack('!iQ', -1, 1 << 62)],
        'negative length header': [struct.pack('!i', -7)],
        'header cut short': [b'\0\0'],
        'frame cut short': [struct.pack('!i', 16) + b'abc'],
        'pickle as the answer': [frame(pickle.dumps(PoisonPill()))],
        'right answer length, wrong bytes': [frame(b'\0' * 16)],
    }


class PoisonPill:
    """Unpickling it sets a flag: it must never happen before authentication."""

    hit = False

    def __reduce__(self):
        return (_poison, ())


def _poison():
    PoisonPill.hit = True
    return 'poisoned'


@pytest.mark.parametrize('case', sorted(bad_client_cases()))
def test_bad_client_refused_listener_keeps_serving(case, family):
    sends = bad_client_cases()[case]
    with make_listener(family, authkey=KEY) as l:

        def bad_client():
            with raw_connect(l.address) as s:
                first = read_frame(s)  # the challenge
                assert first.startswith(b'#CHALLENGE#')
                try:
                    for chunk in sends:
                        s.sendall(chunk)
                    s.shutdown(socket.SHUT_WR)  # then end of file
                except OSError:  # the listener reset it already
                    return b''
                rest = b''
                while True:  # the listener must close it
                    try:
                        chunk = s.recv(1024)
                    except ConnectionResetError:  # closed with our bytes unread
                        return rest
                    if not chunk:
                        return rest
                    rest += chunk

        client = Background(bad_client)
        tracemalloc.start()
        try:
            with pytest.raises((AuthenticationError, EOFError, OSError)):
                l.accept()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, 'refusing a bad peer allocated %d bytes' % peak
        rest = client.result()
        assert rest in (b'', frame(b'#FAILURE#'))
        assert not PoisonPill.hit
        served_after(l)


@pytest.mark.parametrize('stall', ['silent', 'half header', 'half frame', 'after answer'])
def test_stalled_client_times_out_and_others_are_served(stall, monkeypatch):
    monkeypatch.setattr(connection, 'HANDSHAKE_TIMEOUT', 0.5)
    with Listener(authkey=KEY) as l:

        def stalled_client():
            with raw_connect(l.address) as s:
                challenge = read_frame(s)[len(b'#CHALLENGE#') :]
                if stall == 'half header':
                    s.sendall(b'\0\0')
                elif stall == 'half frame':
                    s.sendall(struct.pack('!i', 16) + b'12345')
                elif stall == 'after answer':
                    s.sendall(frame(connection._create_response(KEY, challenge)))
                    assert read_frame(s) == b'#WELCOME#'
                    # ... and never sends its own challenge.
                s.settimeout(HANG_GUARD)
                try:
                    return s.recv(100)  # b'': the listener closed it
                except ConnectionResetError:  # ... with our bytes unread
                    return b''

        client = Background(stalled_client)
        err = Background(l.accept).exception()
        assert isinstance(err, AuthenticationError)
        assert isinstance(err, TimeoutError)  # also an OSError
        assert client.result() == b''
        served_after(l)


def test_handshake_timeout_is_whole_handshake(monkeypatch):
    # A client that trickles one byte at a time does not extend the deadline.
    monkeypatch.setattr(connection, 'HANDSHAKE_TIMEOUT', 0.6)
    with Listener(authkey=KEY) as l:
        stop = threading.Event()

        def trickler():
            with raw_connect(l.address) as s:
                read_frame(s)
                try:
                    for b in struct.pack('!i', 200) + b'z' * 200:
                        if stop.wait(0.1):
                            return
                        s.send(bytes([b]))
                except OSError:
                    return

        client = Background(trickler)
        err = Background(l.accept).exception()
        stop.set()
        assert isinstance(err, TimeoutError) and isinstance(err, AuthenticationError)
        client.result()


def test_handshake_wait_is_interruptible():
    # A signal handler's exception ends accept() during the handshake wait
    # and the half-open connection is closed.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip('signals need the main thread')

    class Alarm(Exception):
        pass

    def handler(signum, frame):
        raise Alarm

    old = signal.signal(signal.SIGALRM, handler)
    try:
        with Listener(authkey=KEY) as l:
            s = raw_connect(l.address)
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Alarm):
                l.accept()
            s.settimeout(HANG_GUARD)
            read_frame(s)  # the challenge
            assert s.recv(10) == b''  # then the listener closed it
            s.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_no_timeout_when_handshake_timeout_is_none(monkeypatch):
    """HANDSHAKE_TIMEOUT None: a handshake has no deadline at all. While the
    peer is half-way, the listener's clock jumps four months ahead (any
    deadline, the 20 s default included, would have passed) and the
    listener goes through one more round of its wait (the peer sends a
    byte): the peer is still served. Every wait has no time limit."""
    monkeypatch.setattr(connection, 'HANDSHAKE_TIMEOUT', None)
    skew = [0.0]
    clock = types.SimpleNamespace(**vars(time))
    clock.monotonic = lambda: time.monotonic() + skew[0]
    monkeypatch.setattr(connection, 'time', clock)
    real_core = connection._gomp
    waits = []  # the timeout of each wait the listener entered

    class Core:
        def __getattr__(self, name):
            return getattr(real_core, name)

        def wait_readable(self, fds, timeout):
            waits.append(timeout)
            return real_core.wait_readable(fds, timeout)

    monkeypatch.setattr(connection, '_gomp', Core())
    with Listener(authkey=KEY) as l:
        s = raw_connect(l.address)
        accepted = Background(l.accept)
        challenge = read_frame(s)[len(b'#CHALLENGE#') :]
        wait_until(lambda: waits, 'the listener waiting for the peer')
        skew[0] = 1e7
        answer = frame(connection._create_response(KEY, challenge))
        s.sendall(answer[:1])
        # The listener read the byte, checked the deadlines against its
        # clock and waits again, or else gave up on the peer.
        wait_until(
            lambda: len(waits) >= 2 or not accepted.thread.is_alive(),
            'the listener reading the first byte',
        )
        assert accepted.thread.is_alive(), 'accept() returned: %r' % (accepted.exception(),)
        s.sendall(answer[1:])
        assert read_frame(s) == b'#WELCOME#'
        channel = connection._SocketChannel(s)
        connection._run_steps(channel, connection._challenge_steps(channel.send_bytes, KEY))
        with accepted.result() as d, Connection(s.detach()) as c:
            c.send('slow but fine')
            assert d.recv() == 'slow but fine'
        assert waits and all(t is None for t in waits), waits


# ---- bad listeners against a Client ---------------------------------------------------------


def fake_server(script):
    """A raw listening socket whose first connection gets script(sock)."""
    srv = socket.socket(socket.AF_UNIX)
    path = connection.arbitrary_address('AF_UNIX')
    srv.bind(path)
    srv.listen(1)

    def serve():
        try:
            s, _ = srv.accept()
            with s:
                script(s)
                s.settimeout(HANG_GUARD)
                try:
                    return s.recv(100)
                except ConnectionResetError:  # closed with bytes unread
                    return b''
        finally:
            srv.close()
            os.unlink(path)

    return path, Background(serve)


@pytest.mark.parametrize(
    'case',
    [
        'close',
        'huge header',
        'huge 8-byte header',
        'garbage',
        'short challenge',
        'cut short',
        'no welcome',
        'failure',
    ],
)
def test_client_refuses_bad_listener(case):
    def script(s):
        if case == 'huge header':
            s.sendall(struct.pack('!i', 0x7FFFFFF0))
        elif case == 'huge 8-byte header':
            s.sendall(struct.pack('!iQ', -1, 1 << 40))
        elif case == 'garbage':
            s.sendall(frame(os.urandom(64)))
        elif case == 'short challenge':
            s.sendall(frame(b'#CHALLENGE#' + b'x' * 5))
        elif case == 'cut short':
            s.sendall(struct.pack('!i', 31) + b'#CHALL')
        elif case in ('no welcome', 'failure'):
            s.sendall(frame(b'#CHALLENGE#' + os.urandom(20)))
            read_frame(s)
            s.sendall(frame(b'#FAILURE#' if case == 'failure' else pickle.dumps(PoisonPill())))
        s.shutdown(socket.SHUT_WR)

    path, server = fake_server(script)
    tracemalloc.start()
    try:
        with pytest.raises((AuthenticationError, EOFError, OSError)):
            Client(path, authkey=KEY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert server.result() == b''  # the client closed its end
    assert not PoisonPill.hit


def test_recv_bytes_maxlength_refuses_before_allocating():
    # The Connection layer checks maxlength against the header before it
    # allocates (the handshake relies on it on the client side).
    a, b = socket.socketpair()
    with a, b:
        ca = connection.Connection(os.dup(a.fileno()))
        with ca:
            for header in (struct.pack('!i', 0x7FFFFFFF), struct.pack('!iQ', -1, 1 << 50)):
                b.sendall(header)
                tracemalloc.start()
                try:
                    with pytest.raises(OSError):
                        ca.recv_bytes(256)
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                assert peak < 1 << 16
                # The stream is out of sync now: a fresh pair for the next header.
                ca.close()
                a.close()
                b.close()
                a, b = socket.socketpair()
                ca = connection.Connection(os.dup(a.fileno()))


# ---- pickling connections and sockets into children ----------------------------------------


def _child_use_conn(conn, sock, report):
    conn.send(('child got', conn.recv()))
    sock.sendall(b'via socket')
    sock.close()
    report.send('done')
    conn.close()


def _child_receive_and_use(pipe):
    conn = pipe.recv()
    sock = pipe.recv()
    conn.send(('child got', conn.recv()))
    sock.sendall(b'via socket')
    sock.close()
    conn.close()
    pipe.send('done')


def _socket_pair_via_listener():
    """(server-side gomp Connection, client Connection) plus a connected
    plain socket pair (server end, client end)."""
    l = Listener(family='AF_INET', authkey=KEY)
    client = Background(Client, l.address, None, KEY)
    server_conn = l.accept()
    client_conn = client.result()
    l.close()
    srv = socket.create_server(('127.0.0.1', 0))
    s_client = socket.create_connection(srv.getsockname())
    s_server, _ = srv.accept()
    srv.close()
    return server_conn, client_conn, s_server, s_client


def _read_all(sock):
    data = b''
    sock.settimeout(HANG_GUARD)
    while True:
        chunk = sock.recv(100)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
@pytest.mark.parametrize('how', ['process args', 'through a pipe'])
def test_pickle_connection_and_socket_into_child(method, how):
    ctx = gomp.get_context(method)
    server_conn, client_conn, s_server, s_client = _socket_pair_via_listener()
    with client_conn, s_client:
        try:
            if how == 'process args':
                report_r, report_w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_child_use_conn, args=(server_conn, s_server, report_w))
                p.start()
                report_w.close()
            else:
                report_r, child_end = ctx.Pipe()
                p = ctx.Process(target=_child_receive_and_use, args=(child_end,))
                p.start()
                child_end.close()
                report_r.send(server_conn)  # resource_sharer hands the fds over
                report_r.send(s_server)
            server_conn.close()
            s_server.close()
            client_conn.send({'hello': method})
            assert client_conn.recv() == ('child got', {'hello': method})
            assert _read_all(s_client) == b'via socket'
            assert report_r.recv() == 'done'
            p.join(HANG_GUARD)
            assert p.exitcode == 0
        finally:
            server_conn.close()
            s_server.close()
    if how == 'through a pipe':
        from gomp import resource_sharer

        resource_sharer.stop(timeout=HANG_GUARD)


def test_resource_sharer_stop_and_restart():
    from gomp import resource_sharer

    for _ in range(2):
        r, w = os.pipe()
        try:
            df = resource_sharer.DupFd(w)
            fd = df.detach()
            os.write(fd, b'z')
            os.close(fd)
            assert os.read(r, 1) == b'z'
        finally:
            os.close(r)
            os.close(w)
        resource_sharer.stop(timeout=HANG_GUARD)
        assert resource_sharer._resource_sharer._address is None
