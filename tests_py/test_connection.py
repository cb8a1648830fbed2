"""gomp.connection.Connection and Pipe: the API, the stdlib's errors, and
byte-for-byte interoperability with the stdlib's Connection on the same
socketpair or pipe."""

import array
import os
import pickle
import socket
import struct
import threading

import pytest

import gomp
from conftest import stdlib_peer
from gomp import connection
from gomp.connection import Connection, Pipe

# The peer, for interop only: the standard library's, never gomp under the alias.
std_connection = stdlib_peer("multiprocessing.connection")

SIZES = [0, 1, 100, 16384, 16385, 65536, 1 << 20, 16 << 20, 64 << 20]


def pattern(n):
    """n bytes that differ along the message (so that misplaced chunks show)."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (n // len(block) + 1))[:n]


def channel(kind):
    """Two raw fds joined by a socketpair or a pipe: (reading fd, writing fd)."""
    if kind == "socketpair":
        a, b = socket.socketpair()
        return a.detach(), b.detach()
    return os.pipe()


def in_thread(fn, *args):
    """Run fn in a thread (the other end of a transfer larger than the pipe
    buffer); returns a join function that re-raises its exception."""
    box = {}

    def run():
        try:
            box["result"] = fn(*args)
        except BaseException as e:  # reported in join()
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()

    def join():
        t.join(120)
        assert not t.is_alive(), "the peer thread hung"
        if "error" in box:
            raise box["error"]
        return box.get("result")

    return join


# ---- API ---------------------------------------------------------------------------------


def test_pipe_duplex_roundtrip():
    a, b = Pipe()
    with a, b:
        a.send({"k": [1, 2.5, "x"]})
        assert b.recv() == {"k": [1, 2.5, "x"]}
        b.send_bytes(b"back")
        assert a.recv_bytes() == b"back"
        assert a.readable and a.writable and not a.closed


def test_pipe_simplex_directions():
    r, w = Pipe(duplex=False)
    with r, w:
        assert r.readable and not r.writable
        assert w.writable and not w.readable
        w.send(123)
        assert r.recv() == 123
        with pytest.raises(OSError, match="connection is read-only"):
            r.send(1)
        with pytest.raises(OSError, match="connection is write-only"):
            w.recv()


def test_send_bytes_offset_and_size():
    a, b = Pipe()
    with a, b:
        data = b"0123456789"
        a.send_bytes(data, 2)
        assert b.recv_bytes() == b"23456789"
        a.send_bytes(data, 2, 3)
        assert b.recv_bytes() == b"234"
        a.send_bytes(memoryview(data)[1:], 0, 0)
        assert b.recv_bytes() == b""
        a.send_bytes(array.array("i", [1, 2, 3]), 4, 4)  # offsets are in bytes
        assert b.recv_bytes() == struct.pack("i", 2)
        with pytest.raises(ValueError, match="offset is negative"):
            a.send_bytes(data, -1)
        with pytest.raises(ValueError, match="buffer length < offset"):
            a.send_bytes(data, 11)
        with pytest.raises(ValueError, match="size is negative"):
            a.send_bytes(data, 0, -1)
        with pytest.raises(ValueError, match=r"buffer length < offset \+ size"):
            a.send_bytes(data, 5, 6)
        assert not b.poll()


def test_recv_bytes_into():
    a, b = Pipe()
    with a, b:
        buf = bytearray(10)
        a.send_bytes(b"abcd")
        assert b.recv_bytes_into(buf) == 4
        assert buf[:4] == b"abcd"
        a.send_bytes(b"xyz")
        assert b.recv_bytes_into(buf, 7) == 3
        assert buf == b"abcd\x00\x00\x00xyz"
        arr = array.array("i", [0, 0, 0, 0])
        a.send_bytes(array.array("i", [7, 8]))
        assert b.recv_bytes_into(arr, 4) == 8
        assert arr.tolist() == [0, 7, 8, 0]
        a.send_bytes(b"too long for it")
        with pytest.raises(gomp.BufferTooShort) as info:
            b.recv_bytes_into(bytearray(4))
        assert info.value.args[0] == b"too long for it"
        with pytest.raises(ValueError, match="negative offset"):
            b.recv_bytes_into(buf, -1)
        with pytest.raises(ValueError, match="offset too large"):
            b.recv_bytes_into(buf, 11)
        with pytest.raises(TypeError):
            b.recv_bytes_into(b"read-only")


def test_poll_timeout_and_readiness():
    a, b = Pipe()
    with a, b:
        assert b.poll() is False
        assert b.poll(0.05) is False
        a.send(1)
        assert b.poll() is True
        assert b.poll(None) is True
        assert b.recv() == 1
        a.close()
        assert b.poll(1) is True  # end of file is readable
        with pytest.raises(EOFError):
            b.recv()


def test_closed_handle_errors():
    a, b = Pipe()
    fd = a.fileno()
    a.close()
    a.close()  # twice is fine
    assert a.closed
    for call in (
        lambda: a.send(1),
        a.recv,
        a.poll,
        a.fileno,
        lambda: a.send_bytes(b"x"),
        a.recv_bytes,
        lambda: a.recv_bytes_into(bytearray(1)),
    ):
        with pytest.raises(OSError, match="handle is closed"):
            call()
    with pytest.raises(OSError):
        os.fstat(fd)  # the descriptor itself was closed
    b.close()


def test_invalid_construction():
    with pytest.raises(ValueError, match="invalid handle"):
        Connection(-1)
    with pytest.raises(ValueError, match="at least one of"):
        Connection(0, readable=False, writable=False)
    with pytest.raises((TypeError, AttributeError)):  # the stdlib raises AttributeError
        Connection("3")


def test_context_manager_closes():
    a, b = Pipe()
    with a:
        pass
    assert a.closed
    b.close()


def test_negative_maxlength():
    a, b = Pipe()
    with a, b:
        with pytest.raises(ValueError, match="negative maxlength"):
            b.recv_bytes(-1)


# ---- interoperability with the stdlib -------------------------------------------------------


def make_pair(kind, gomp_sends):
    """A (sender, receiver) pair over a fresh channel: one end gomp, the other
    the stdlib's Connection."""
    r, w = channel(kind)
    if gomp_sends:
        return Connection(w, readable=kind == "socketpair"), std_connection.Connection(r)
    return std_connection.Connection(w), Connection(r, writable=kind == "socketpair")


@pytest.mark.parametrize("kind", ["socketpair", "pipe"])
@pytest.mark.parametrize("gomp_sends", [True, False], ids=["gomp->stdlib", "stdlib->gomp"])
def test_interop_raw_bytes(kind, gomp_sends):
    sender, receiver = make_pair(kind, gomp_sends)
    with sender, receiver:
        join = in_thread(lambda: [sender.send_bytes(pattern(n)) for n in SIZES])
        for n in SIZES:
            got = receiver.recv_bytes()
            assert len(got) == n and got == pattern(n), n
        join()


@pytest.mark.parametrize("kind", ["socketpair", "pipe"])
@pytest.mark.parametrize("gomp_sends", [True, False], ids=["gomp->stdlib", "stdlib->gomp"])
def test_interop_objects(kind, gomp_sends):
    objects = [
        None,
        0,
        -1,
        2**80,
        1.5,
        "text é",
        b"bytes",
        (1, (2, [3])),
        {"a": {1, 2}},
        list(range(100000)),
        pattern(3 << 20),
        ValueError("boom"),
    ]
    sender, receiver = make_pair(kind, gomp_sends)
    with sender, receiver:
        join = in_thread(lambda: [sender.send(o) for o in objects])
        for o in objects:
            got = receiver.recv()
            if isinstance(o, Exception):
                assert type(got) is type(o) and got.args == o.args
            else:
                assert got == o
        join()


def test_interop_wire_bytes_identical():
    """What gomp writes is byte for byte what the stdlib writes."""
    for n in (0, 5, 16384, 16385, 70000):
        outs = []
        for make in (Connection, std_connection.Connection):
            r, w = os.pipe()
            conn = make(w, readable=False)
            join = in_thread(conn.send_bytes, pattern(n))
            data = b""
            while len(data) < 4 + n:
                data += os.read(r, 1 << 20)
            join()
            conn.close()
            os.close(r)
            outs.append(data)
        assert outs[0] == outs[1]
        assert outs[0][:4] == struct.pack("!i", n)


def test_interop_recv_bytes_into_from_stdlib():
    r, w = os.pipe()
    sender, receiver = std_connection.Connection(w, readable=False), Connection(r, writable=False)
    with sender, receiver:
        sender.send_bytes(b"hello")
        buf = bytearray(8)
        assert receiver.recv_bytes_into(buf, 1) == 5
        assert buf == b"\x00hello\x00\x00"


@pytest.mark.slow
def test_message_over_2_gib():
    """A message longer than 0x7fffffff uses the 8-byte length; both ways with the stdlib."""
    n = (1 << 31) + 4099
    payload = bytearray(n)
    payload[0], payload[n // 2], payload[-1] = 1, 2, 3
    for gomp_sends in (True, False):
        sender, receiver = make_pair("socketpair", gomp_sends)
        with sender, receiver:
            join = in_thread(sender.send_bytes, payload)
            got = receiver.recv_bytes()
            join()
            assert len(got) == n and got[0] == 1 and got[n // 2] == 2 and got[-1] == 3
            del got


# ---- bad input ----------------------------------------------------------------------------


def raw_writer():
    """A gomp reading Connection and the raw fd writing to it."""
    r, w = socket.socketpair()
    return Connection(r.detach()), w


def test_eof_at_frame_boundary_is_eoferror():
    conn, w = raw_writer()
    with conn:
        w.sendall(struct.pack("!i", 2) + b"ok")
        w.close()
        assert conn.recv_bytes() == b"ok"
        with pytest.raises(EOFError):
            conn.recv_bytes()


@pytest.mark.parametrize(
    "partial", [b"\x00\x00", struct.pack("!i", 10) + b"abc", b"\xff\xff\xff\xff\x00\x00\x00"]
)
def test_eof_mid_frame_is_oserror(partial):
    conn, w = raw_writer()
    with conn:
        w.sendall(partial)
        w.close()
        with pytest.raises(OSError, match="got end of file during message") as info:
            conn.recv_bytes()
        assert not isinstance(info.value, EOFError)


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_length_above_maxlength_is_refused_without_allocating():
    conn, w = raw_writer()
    with conn:
        w.sendall(b"\xff\xff\xff\xff" + struct.pack("!Q", 1 << 62))
        before = rss_kib()
        with pytest.raises(OSError, match="bad message length"):
            conn.recv_bytes(256)
        assert rss_kib() - before < 64 * 1024
        assert not conn.readable  # the stream is out of step: no more reads
    w.close()


def test_huge_length_without_maxlength_does_not_allocate_it():
    """recv() of a frame announcing 4 EiB that then ends: OSError, memory
    grows only with the bytes that arrive."""
    conn, w = raw_writer()
    with conn:
        w.sendall(b"\xff\xff\xff\xff" + struct.pack("!Q", 1 << 62) + b"x" * 1000)
        w.close()
        before = rss_kib()
        with pytest.raises(OSError, match="got end of file during message"):
            conn.recv_bytes()
        assert rss_kib() - before < 200 * 1024


def test_impossible_length_header():
    conn, w = raw_writer()
    with conn:
        w.sendall(struct.pack("!i", -2))
        with pytest.raises(OSError, match="bad message length"):
            conn.recv_bytes()
    w.close()


def test_garbage_pickle_raises_unpickling_error():
    conn, w = raw_writer()
    with conn:
        w.sendall(struct.pack("!i", 4) + b"junk")
        with pytest.raises((pickle.UnpicklingError, ValueError, EOFError, KeyError)):
            conn.recv()
        w.sendall(struct.pack("!i", 2) + b"ok")
        assert conn.recv_bytes() == b"ok"  # framing intact after a bad pickle
    w.close()


def test_send_to_closed_peer_is_brokenpipe():
    a, b = Pipe()
    b.close()
    with a:
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            a.send_bytes(b"x" * 100000)


def test_unpicklable_object_raises_in_caller_and_sends_nothing():
    a, b = Pipe()
    with a, b:
        with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
            a.send(lambda: None)
        assert not b.poll()
        a.send("after")
        assert b.recv() == "after"


def test_fd_closed_behind_the_connections_back():
    r, w = os.pipe()
    conn = Connection(r, writable=False)
    os.close(r)
    with pytest.raises(OSError):
        conn.recv_bytes()
    conn._handle = None  # already closed; do not close a reused number
    os.close(w)


# ---- wait() ---------------------------------------------------------------------------------


def test_wait_on_connections_sockets_and_fds():
    a, b = Pipe()
    s1, s2 = socket.socketpair()
    r, w = os.pipe()
    with a, b, s1, s2:
        assert connection.wait([b, s2, r], timeout=0.05) == []
        a.send(1)
        s1.send(b"x")
        assert connection.wait([b, s2, r], timeout=1) == [b, s2]
        os.write(w, b"y")
        assert connection.wait([r], timeout=1) == [r]
        assert connection.wait([], timeout=0) == []
    os.close(r)
    os.close(w)
