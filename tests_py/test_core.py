"""The binding and the Go core: lazy loading, error mapping, fork rebirth,
and interruptible waits."""

import os
import signal
import subprocess
import time

import pytest

from blocked_helpers import POLLIN, polls_for, waits_to_send
from conftest import run_python, wait_until
from gomp import _gomp
from gomp.connection import Pipe

# These tests call os.fork() themselves in a process that runs the Go core's
# threads: Python 3.12+ warns about exactly that, which is what they test.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)


def test_import_does_not_start_the_go_runtime():
    out = run_python("""
        import os, gomp, gomp.connection, gomp.context, gomp.process
        from gomp import _gomp
        info = _gomp._core_info()
        maps = open('/proc/self/maps').read()
        print(info['loaded'], 'libgompcore' in maps)
        a, b = gomp.Pipe()      # making a pipe does not need the core either
        print(_gomp._core_info()['loaded'])
        a.send(1); b.recv()     # nor do messages on it (conn.c moves them)
        print(_gomp._core_info()['loaded'])
        _gomp._selftest(3)      # the first call into Go loads it
        print(_gomp._core_info()['loaded'], 'libgompcore' in open('/proc/self/maps').read())
    """).stdout.split()
    assert out == ["0", "False", "0", "0", "1", "True"]


def test_signals_for_the_process_never_go_to_the_runtimes_threads():
    # The Go runtime's threads keep SIGINT and SIGTERM blocked, so a signal
    # sent to the process goes to a Python thread, whose blocking call
    # (time.sleep, a select) it interrupts. Here the main thread blocks
    # SIGINT too: with no thread to take it, the signal must stay pending
    # until the main thread lets it in. (Were a runtime thread to accept it,
    # Python's handler would run there and nothing would be pending.)
    out = run_python("""
        import os, signal, time
        from gomp import _gomp
        _gomp._selftest(3)  # loads the core: its threads start
        main = {os.getpid()}
        blocked = []
        for tid in os.listdir('/proc/self/task'):
            if int(tid) in main:
                continue
            for line in open('/proc/self/task/%s/status' % tid):
                if line.startswith('SigBlk:'):
                    mask = int(line.split()[1], 16)
                    blocked.append(all(mask >> (s - 1) & 1 for s in (signal.SIGINT, signal.SIGTERM)))
        print(len(blocked) > 0, all(blocked))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        print(signal.SIGINT in signal.sigpending())
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            time.sleep(5)
            print('not interrupted')
        except KeyboardInterrupt:
            print('interrupted')
    """).stdout.split()
    assert out == ["True", "True", "True", "interrupted"]


def test_import_from_any_directory(tmp_path):
    out = run_python("import gomp, os; print(os.path.dirname(gomp.__file__))", cwd=tmp_path)
    assert out.stdout.strip().endswith("gomp")


def test_libraries_do_not_link_libpython():
    libs = [_gomp.__file__, _gomp.core_path]
    for lib in libs:
        dyn = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True).stdout
        needed = [line for line in dyn.splitlines() if "(NEEDED)" in line]
        assert needed, dyn
        assert not any("libpython" in line for line in needed), (lib, needed)


def test_go_panic_becomes_runtime_error():
    with pytest.raises(RuntimeError, match="gomp core panic: assignment to entry in nil map"):
        _gomp._selftest(1)
    with pytest.raises(RuntimeError, match="gomp core error: selftest error"):
        _gomp._selftest(2)
    assert _gomp._selftest(3) > 0  # the core still works after a recovered panic


def test_error_text_belongs_to_its_call():
    # Two threads failing at once in the core (the GIL is released around the
    # call) each get the text of their own error, never the other's.
    import threading

    mixed = []
    start = threading.Barrier(2)

    def fail(what):
        start.wait()
        for _ in range(3000):
            try:
                _gomp._selftest(what)
            except RuntimeError as e:
                if not str(e).endswith("selftest error %d" % what):
                    mixed.append(str(e))
            else:
                mixed.append("no error")

    threads = [threading.Thread(target=fail, args=(w,)) for w in (1001, 1002)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mixed == []


def test_errno_mapping():
    r, w = os.pipe()
    os.close(r)
    try:
        with pytest.raises(BrokenPipeError):
            _gomp.send_bytes(w, b"x")
    finally:
        os.close(w)
    with pytest.raises(OSError) as info:
        _gomp.recv_bytes(987654)
    assert info.value.errno == 9  # EBADF


# ---- fork rebirth ---------------------------------------------------------------------------


def fork_run(fn, timeout=30):
    """Run fn() in a forked child; return its exit code (fn's return value
    or 70 for an exception); a child still running after timeout is killed
    and reported as a hang."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = fn()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hang"


def test_pipe_made_before_fork_works_both_ways():
    a, b = Pipe()
    a.send("warm up")  # the parent's core is loaded before the fork
    assert b.recv() == "warm up"
    gen = _gomp._core_info()["generation"]

    def child():
        # The child loads a fresh core on first use (messages do not need
        # it: _selftest does) and keeps using objects made before the fork.
        _gomp._selftest(3)
        msg = b.recv()
        b.send(("child got", msg, os.getpid(), _gomp._core_info()["generation"]))
        return 0

    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = child()
        finally:
            os._exit(code)
    a.send("from parent")
    reply = a.recv()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reply[:2] == ("child got", "from parent")
    assert reply[3] == gen + 1  # a new runtime in the child
    a.close()
    b.close()


def test_200_forks_with_go_heavy_children():
    """Each child does goroutine-, timer- and GC-heavy work in the core (what
    hangs an inherited Go runtime) and reports through a pipe made before the
    fork. Any hang is caught by the per-child watchdog."""
    r, w = Pipe(duplex=False)
    assert _gomp._selftest(3) > 0
    outcomes = []
    for i in range(200):

        def child(i=i):
            w.send((i, _gomp._selftest(3)))
            return 0

        outcomes.append(fork_run(child, timeout=30))
        assert r.recv()[0] == i
    assert outcomes.count(0) == 200, {o: outcomes.count(o) for o in set(outcomes)}
    r.close()
    w.close()


def test_three_level_fork_chain():
    r, w = Pipe(duplex=False)
    _gomp._selftest(3)

    def level(depth):
        _gomp._selftest(3)
        w.send((depth, os.getpid(), _gomp._core_info()["generation"]))
        if depth < 3:
            code = fork_run(lambda: level(depth + 1))
            if code != 0:
                return 10 + depth
        return 0

    assert fork_run(lambda: level(1), timeout=60) == 0
    got = sorted(r.recv() for _ in range(3))
    assert [d for d, _, _ in got] == [1, 2, 3]
    assert [g for _, _, g in got] == [2, 3, 4]  # one more runtime per level
    assert len({pid for _, pid, _ in got}) == 3
    r.close()
    w.close()


def test_fork_child_sending_small_messages_needs_no_runtime():
    """A fork child that sends messages never loads a Go runtime (conn.c
    moves them), neither when the sends complete at once nor when one has to
    wait for the reader."""
    a, b = Pipe()
    a.send(0)
    b.recv()
    gen = _gomp._core_info()["generation"]

    def small_sends():
        for i in range(100):
            b.send(("small", i))
        info = _gomp._core_info()
        return 0 if info["generation"] == gen and info["stale"] == 1 else 1

    assert fork_run(small_sends) == 0
    assert [a.recv() for _ in range(100)] == [("small", i) for i in range(100)]

    big = b"x" * (8 << 20)  # larger than the socket buffer: the child must wait

    def big_send():
        b.send_bytes(big)
        return 0 if _gomp._core_info()["generation"] == gen else 1

    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = big_send()
        finally:
            os._exit(code)
    # Read only once the child waits for room on the full socket (in poll,
    # or in a blocking write, after a non-blocking one took what fitted).
    try:
        wait_until(
            lambda: waits_to_send(pid, b.fileno()),
            lambda: (
                "the child waiting to send on a full socket: %r"
                % {
                    t: open("/proc/%d/task/%s/syscall" % (pid, t)).read()
                    for t in os.listdir("/proc/%d/task" % pid)
                }
            ),
        )
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    assert a.recv_bytes() == big
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    a.close()
    b.close()


def test_child_blocked_in_recv_dies_on_sigterm():
    a, b = Pipe()
    a.send(0)
    b.recv()
    pid = os.fork()
    if pid == 0:
        try:
            b.recv()  # blocks in the core
        finally:
            os._exit(3)
    try:
        wait_until(lambda: polls_for(pid, b.fileno(), POLLIN), "the child waiting in recv()")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    os.kill(pid, signal.SIGTERM)

    def reaped():
        wpid, status = os.waitpid(pid, os.WNOHANG)
        return [status] if wpid else None

    try:
        [status] = wait_until(reaped, "the child blocked in recv() dying of SIGTERM")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM
    a.close()
    b.close()


def test_sigint_interrupts_blocking_recv_in_main_thread():
    out = run_python(
        """
        import os, signal, time
        import gomp
        from blocked_helpers import POLLIN, polls_for, signal_when
        a, b = gomp.Pipe()
        latencies = []

        def blocked():  # the main thread asleep in recv(), timed from here
            if polls_for(os.getpid(), b.fileno(), POLLIN):
                latencies.append(time.monotonic())
                return True

        for i in range(10):
            t = signal_when(blocked, signal.SIGINT, "recv() blocking")
            try:
                b.recv()
            except KeyboardInterrupt:
                latencies[-1] = time.monotonic() - latencies[-1]
            else:
                raise SystemExit('recv returned')
            t.join()
        print(len(latencies), 'interrupted; at most %.1f ms after the signal'
              % (max(latencies) * 1000))
    """,
        timeout=60,
    )
    # Every recv() was interrupted (one that ignored Ctrl-C would block until
    # the timeout above). How fast is measured, not asserted: bench_latency.py
    # prints the distribution.
    print(out.stdout)
    assert out.stdout.split()[:2] == ["10", "interrupted;"]


def test_sigint_interrupts_poll_with_timeout():
    out = run_python(
        """
        import os, signal
        import gomp
        from blocked_helpers import POLLIN, polls_for, signal_when
        a, b = gomp.Pipe()
        signal_when(lambda: polls_for(os.getpid(), b.fileno(), POLLIN), signal.SIGINT)
        try:
            b.poll(3600)
        except KeyboardInterrupt:
            print('interrupted')
    """,
        timeout=60,
    )
    # A poll that ignored Ctrl-C would wait an hour (and then raise it): the
    # timeout of 60 s above catches it.
    assert out.stdout.split() == ["interrupted"]
