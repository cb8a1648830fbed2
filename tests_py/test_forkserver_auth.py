"""The fork server: who may ask it for children, what it learns when it
starts, and what its preloading prints; and what `import gomp` loads."""

import array
import os
import socket
import struct
import sys
import textwrap

import pytest

import gomp
import procs_helpers as h
from conftest import run_python
from gomp import connection, forkserver


@pytest.fixture
def server():
    fs = forkserver._forkserver
    fs.ensure_running()
    return fs


def _start(target, *args):
    p = gomp.get_context("forkserver").Process(target=target, args=args)
    p.start()
    return p


def test_server_has_a_key_of_its_own(server):
    key = server._forkserver_authkey
    assert isinstance(key, bytes) and len(key) >= 16
    # A client holding the key completes the handshake (and the server,
    # which then receives no request, keeps serving).
    connection.Client(server._forkserver_address, authkey=key).close()
    p = _start(h.exit_with, 3)
    p.join(60)
    assert p.exitcode == 3


def test_client_with_a_wrong_key_is_refused(server):
    good = server._forkserver_authkey
    server._forkserver_authkey = bytes(len(good))
    try:
        p = gomp.get_context("forkserver").Process(target=h.exit_with, args=(0,))
        with pytest.raises(gomp.AuthenticationError):
            p.start()
    finally:
        server._forkserver_authkey = good
    p = _start(h.exit_with, 5)
    p.join(60)
    assert p.exitcode == 5


def test_unauthenticated_request_forks_nothing(server):
    """A process that sends the descriptors of a request with a made-up
    answer to the server's challenge gets no child: the server refuses it,
    hangs up and closes the descriptors."""
    r, w = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(server._forkserver_address)
            s.settimeout(60)
            answer = struct.pack("!i", 40) + b"x" * 40  # one framed message
            s.sendmsg(
                [answer], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r, w, r, w]))]
            )
            received = b""
            while True:  # its challenge, its refusal, then end of file
                chunk = s.recv(4096)
                if not chunk:
                    break
                received += chunk
        assert b"#FAILURE#" in received
        os.close(w)
        w = None
        assert os.read(r, 8) == b""  # nobody (no forked child) holds its write end
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    p = _start(h.exit_with, 0)
    p.join(60)
    assert p.exitcode == 0


def test_key_is_not_on_the_command_line(server):
    with open("/proc/%d/cmdline" % server._forkserver_pid, "rb") as f:
        cmdline = f.read()
    assert server._forkserver_authkey not in cmdline
    assert repr(server._forkserver_authkey).encode() not in cmdline


def test_preload_sees_argv_and_output_is_written_once(tmp_path):
    """The server imports __main__ with the parent's sys.argv (even one too
    large for a command line) and flushes what that printed before forking,
    so each line appears once."""
    script = tmp_path / "preload_argv.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        import gomp
        print(__name__, len(sys.argv), sys.argv[-1], end=";")
        print(__name__, end=";", file=sys.stderr)
        def work():
            print("work", len(sys.argv), end=";")
        if __name__ == "__main__":
            sys.argv[1:] = ["y" * 60] * 4000 + ["last"]
            ctx = gomp.get_context("forkserver")
            ctx.set_forkserver_preload(["__main__"])
            for _ in range(2):
                p = ctx.Process(target=work)
                p.start()
                p.join()
                assert p.exitcode == 0
    """)
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, str(script), "a"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("__main__ 2 a;__mp_main__ 4002 last;work 4002;work 4002;")
    assert out.stderr == "__main__;__mp_main__;"


def test_import_gomp_loads_no_heavy_modules():
    """`import gomp` loads none of tempfile, shutil, subprocess (CPython's
    suite checks the same of multiprocessing from 3.14) and chooses no
    start method."""
    out = run_python(
        """
        import sys
        import gomp
        print(sorted({"tempfile", "shutil", "subprocess"} & set(sys.modules)))
        print(gomp.get_start_method(allow_none=True))
    """,
        env={"PYTHONWARNINGS": ""},
    )
    assert out.stdout.split("\n")[:2] == ["[]", "None"]


@pytest.mark.slow
def test_silent_client_does_not_block_the_server(server):
    """A client that connects and never answers the challenge is dropped
    after the server's time limit; the server then serves others."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(server._forkserver_address)
        p = _start(h.exit_with, 6)  # waits its turn behind the silent one
        p.join(120)
        assert p.exitcode == 6
