"""The helper processes: the resource tracker and the fork server (started
once, checked, restarted, shielded from Ctrl-C, ended by closing the pipe)."""

import os
import signal

import pytest

import gomp
from conftest import held_by_another_thread
from gomp import forkserver, resource_tracker, shared_memory
from gomp.resource_tracker import ReentrantCallError, ResourceTracker

# ---- the resource tracker -------------------------------------------------------------------


def test_tracker_refuses_a_reentrant_call(tracker):
    with tracker._lock:
        with pytest.raises(ReentrantCallError, match='resource tracker'):
            tracker.ensure_running()
    assert tracker._check_alive()


def test_reentrant_register_warns_and_still_reaches_a_running_tracker(tracker):
    with tracker._lock:
        with pytest.warns(UserWarning, match="The noop object 'x' might leak"):
            tracker.register('x', 'noop')
    tracker.unregister('x', 'noop')  # would be a bad line had 'x' not arrived
    tracker._stop()
    assert tracker._exitcode == 0


def test_stop_without_blocking_gives_up_while_another_thread_uses_the_tracker(tracker):
    with held_by_another_thread(tracker._lock):
        tracker._stop(use_blocking_lock=False)
        assert tracker._fd is not None and tracker._exitcode is None


def test_tracker_ignores_sigint_and_sigterm_from_its_first_instant():
    # Sent right after the start: the tracker has them blocked until it
    # ignores them, so it cannot die of them.
    t = ResourceTracker()
    t.ensure_running()
    os.kill(t._pid, signal.SIGINT)
    os.kill(t._pid, signal.SIGTERM)
    t._stop()
    assert t._exitcode == 0


def test_killed_tracker_is_replaced_with_a_warning(tracker):
    old = tracker._pid
    os.kill(old, signal.SIGKILL)
    os.waitpid(old, 0)
    with pytest.warns(UserWarning, match='resource_tracker: process died unexpectedly'):
        tracker.ensure_running()
    assert tracker._pid not in (None, old) and tracker._check_alive()


def test_tracker_exit_codes_for_bad_lines(capfd, tracker):
    tracker.register('a:name:with:colons', 'noop')
    tracker.unregister('a:name:with:colons', 'noop')
    tracker._stop()
    assert tracker._exitcode == 0
    tracker.ensure_running()
    os.write(tracker._fd, b'SHOUT:x:noop\n')
    tracker._stop()
    assert tracker._exitcode == 3
    assert 'unrecognized command' in capfd.readouterr().err


def test_too_long_line_is_refused_before_the_tracker_starts():
    t = ResourceTracker()
    with pytest.raises(ValueError, match='msg too long'):
        t.register('n' * 512, 'shared_memory')
    assert t._fd is None


def test_tracker_removes_a_leaked_segment(capfd):
    tracker = ResourceTracker()  # started here: its stderr is the captured one
    tracker.ensure_running()
    shm = shared_memory.SharedMemory(create=True, size=64)
    name = shm._name
    # Hand the segment over from this process's tracker to ours.
    resource_tracker.unregister(name, 'shared_memory')
    tracker.register(name, 'shared_memory')
    shm.close()
    tracker._stop()
    assert tracker._exitcode == 1
    err = capfd.readouterr().err
    assert 'resource_tracker: There appear to be 1 leaked shared_memory objects' in err
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)


# ---- the fork server ------------------------------------------------------------------------


def _report_sigint_handler(conn):
    conn.send(signal.getsignal(signal.SIGINT) is signal.default_int_handler)


def _start_grandchild(conn):
    p = gomp.get_context('forkserver').Process(target=os._exit, args=(5,))
    p.start()
    p.join()
    conn.send(p.exitcode)


def _run(target):
    ctx = gomp.get_context('forkserver')
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=target, args=(w,))
    p.start()
    w.close()
    answer = r.recv()
    p.join()
    assert p.exitcode == 0
    return answer


def test_server_ignores_sigint_but_its_children_do_not():
    forkserver.ensure_running()
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGINT)
    assert _run(_report_sigint_handler) is True
    forkserver._forkserver._stop()
    assert forkserver._forkserver._exitcode == 0  # it was not interrupted


def test_child_of_a_server_child_gets_its_own_server():
    assert _run(_start_grandchild) == 5


def test_stop_ends_the_server_and_removes_its_socket():
    fs = forkserver._forkserver
    fs.ensure_running()
    address, pid = fs._forkserver_address, fs._forkserver_pid
    assert os.path.exists(address) and fs._forkserver_alive_fd == fs._fd
    fs._stop()
    assert fs._exitcode == 0 and fs._forkserver_pid is None
    assert not os.path.exists(address)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert _run(_report_sigint_handler) is True  # and the next child starts a new one


def test_too_many_fds_is_refused():
    with pytest.raises(ValueError, match='too many fds'):
        forkserver.connect_to_new_process(list(range(forkserver.MAXFDS_TO_SEND - 4)))


def test_signed_numbers_round_trip():
    r, w = os.pipe()
    try:
        for n in (0, -9, 2**40):
            forkserver.write_signed(w, n)
            assert forkserver.read_signed(r) == n
        os.close(w)
        w = None
        with pytest.raises(EOFError):
            forkserver.read_signed(r)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
