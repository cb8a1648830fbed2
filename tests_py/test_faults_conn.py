"""Hostile and slow peers against an authenticated gomp Listener (issue 16,
point 5): handshakes run in parallel, so that peers that connect and stay
silent, trickle bytes or give up half-way never hold up a good client, and
a slow but honest peer is still served.

Nothing here measures time. The silent peers are kept silent for the whole
test, far less than HANDSHAKE_TIMEOUT (20 s) on any sane machine but without
relying on it: the tests check *who* accept() returns and that the silent
peers are still connected afterwards, which a listener that served them one
after another (each until its deadline) cannot satisfy."""

import socket
import struct

import pytest

import gomp.connection as connection
from conftest import HANG_GUARD, Background, read_frame
from gomp import AuthenticationError
from gomp.connection import Client, Listener

KEY = b'faults conn key'


def raw_connect(address):
    s = socket.socket(getattr(socket, connection.address_type(address)))
    s.settimeout(HANG_GUARD)
    s.connect(address)
    return s


def still_open_and_quiet(sock):
    """True if the listener has neither closed sock nor sent it anything
    more (after the challenge that was read)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(HANG_GUARD)
    return False


class FinishLater:
    """The client's side of the handshake over a raw socket whose challenge
    frame was already read: the Connection API that deliver_challenge and
    answer_challenge expect."""

    def __init__(self, sock, challenge):
        self.sock = sock
        self.first = [challenge]

    def send_bytes(self, data):
        self.sock.sendall(struct.pack('!i', len(data)) + data)

    def recv_bytes(self, maxlength=None):
        return self.first.pop() if self.first else read_frame(self.sock)


@pytest.fixture(params=['AF_UNIX', 'AF_INET'])
def family(request):
    return request.param


def connect_silent(listener, n):
    """n peers that connect one after another, each read its challenge (so
    the listener took each of them before the next) and then send nothing."""
    peers = []
    for _ in range(n):
        s = raw_connect(listener.address)
        challenge = read_frame(s)
        assert challenge.startswith(b'#CHALLENGE#')
        peers.append((s, challenge))
    return peers


def test_ten_silent_peers_do_not_delay_a_good_client(family):
    with Listener(family=family, authkey=KEY) as l:
        first = Background(l.accept)  # accepting before anyone connects
        silent = connect_silent(l, 10)
        good = Background(Client, l.address, family, KEY)
        with first.result() as server_end, good.result() as client_end:
            client_end.send('the good one')
            assert server_end.recv() == 'the good one'
            server_end.send_bytes(b'served')
            assert client_end.recv_bytes() == b'served'
        # The silent peers were not served, timed out or dropped meanwhile.
        assert all(still_open_and_quiet(s) for s, _ in silent)
        for s, _ in silent:
            s.close()


def test_slow_honest_peer_is_served_by_the_next_accept(family):
    with Listener(family=family, authkey=KEY) as l:
        first = Background(l.accept)
        ((slow, challenge),) = connect_silent(l, 1)
        good = Background(Client, l.address, family, KEY)
        with first.result(), good.result():
            pass
        # The slow peer now finishes its handshake; the listener kept it.
        assert still_open_and_quiet(slow)
        peer = FinishLater(slow, challenge)
        finish = Background(
            lambda: (
                connection.answer_challenge(peer, KEY),
                connection.deliver_challenge(peer, KEY),
            )
        )
        with l.accept() as server_end:
            finish.result()
            peer.send_bytes(b'late but fine')
            assert server_end.recv_bytes() == b'late but fine'
        slow.close()


@pytest.mark.parametrize('stall', ['half header', 'half frame'])
def test_tricklers_do_not_delay_a_good_client(stall):
    with Listener(authkey=KEY) as l:
        first = Background(l.accept)
        peers = connect_silent(l, 5)
        for s, _ in peers:
            s.sendall(b'\0\0' if stall == 'half header' else struct.pack('!i', 40) + b'abc')
        good = Background(Client, l.address, None, KEY)
        with first.result() as server_end, good.result() as client_end:
            client_end.send_bytes(b'ok')
            assert server_end.recv_bytes() == b'ok'
        assert all(still_open_and_quiet(s) for s, _ in peers)
        for s, _ in peers:
            s.close()


def test_each_failure_is_raised_once_and_good_clients_are_all_served():
    # Bad peers (wrong key, garbage, a negative length, a hang-up) among good
    # ones: an accept loop that catches the failures gets every good client,
    # and one error per bad peer, each of the stdlib's type.
    with Listener(authkey=KEY) as l:
        results, errors = [], []

        def serve(n):
            while len(results) < n or len(errors) < 4:
                try:
                    with l.accept() as c:
                        results.append(c.recv())
                except (AuthenticationError, EOFError, OSError) as e:
                    errors.append(e)

        server = Background(serve, 3)
        silent = connect_silent(l, 2)
        bad = Background(Client, l.address, None, b'wrong key')
        with pytest.raises(AuthenticationError):
            bad.result()
        for s, _ in silent:  # one sends garbage, one a negative length
            s.sendall(
                struct.pack('!i', 40) + b'x' * 40 if s is silent[0][0] else struct.pack('!i', -7)
            )
        hangup = raw_connect(l.address)
        read_frame(hangup)
        hangup.close()
        for i in range(3):
            with Client(l.address, authkey=KEY) as c:
                c.send(i)
        server.result()
        assert sorted(results) == [0, 1, 2]
        kinds = sorted(type(e).__name__ for e in errors)
        assert kinds == [
            'AuthenticationError',
            'AuthenticationError',
            'AuthenticationError',
            'EOFError',
        ], errors
        for s, _ in silent:
            s.close()


def test_two_threads_accepting_share_the_peers():
    with Listener(authkey=KEY) as l:
        acceptors = [Background(l.accept) for _ in range(2)]
        silent = connect_silent(l, 3)
        clients = [Background(Client, l.address, None, KEY) for _ in range(2)]
        ends = [a.result() for a in acceptors]
        conns = [c.result() for c in clients]
        for i, c in enumerate(conns):
            c.send(i)
        assert sorted(e.recv() for e in ends) == [0, 1]
        for x in ends + conns:
            x.close()
        for s, _ in silent:
            s.close()


def test_close_drops_pending_peers():
    l = Listener(authkey=KEY)
    first = Background(l.accept)
    ((s, _),) = connect_silent(l, 1)
    good = Background(Client, l.address, None, KEY)
    with first.result(), good.result():
        pass
    l.close()
    assert s.recv(1) == b''  # the half-way peer was disconnected
    s.close()
