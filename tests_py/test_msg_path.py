"""The per-message path of connections (pybind/ext/conn.c): messages move
with plain system calls in C, so a process that only sends and receives
never brings up a Go runtime, whatever the message size and whether or not
it has to wait for its peer; the frames stay CPython's."""

from conftest import run_python


def test_messages_of_any_size_need_no_go_runtime():
    out = run_python(
        """
        import os
        import gomp
        from gomp import _gomp

        a, b = gomp.Pipe()
        r, w = gomp.Pipe(duplex=False)
        big = bytes(range(256)) * (32 << 10)  # 8 MiB: more than a socket buffer holds

        pid = os.fork()
        if pid == 0:  # echo everything back, then report whether Go was loaded
            for _ in range(100):
                b.send(b.recv())
            b.send_bytes(b.recv_bytes())
            buf = bytearray(16)
            n = b.recv_bytes_into(buf, 2)
            w.send_bytes(buf, 2, n)
            os._exit(10 + _gomp._core_info()['loaded'])
        for i in range(100):
            a.send(('small', i))
            assert a.recv() == ('small', i)
        a.send_bytes(big)  # the child is not reading yet while this is sent
        assert a.recv_bytes() == big
        a.send_bytes(b'into')
        assert r.recv_bytes() == b'into'
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), _gomp._core_info()['loaded'])
        """,
        timeout=60,
    )
    # 10: the child never loaded the core; 0: neither did the parent.
    assert out.stdout.split() == ["10", "0"]
