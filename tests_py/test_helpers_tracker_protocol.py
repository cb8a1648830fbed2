"""The resource tracker's two line formats, its behaviour across fork(), and
_stop() with a time limit (the 3.14 protocol and lifecycle, on every
version)."""

import os
import signal

import pytest

import gomp
from conftest import held_by_another_thread
from gomp import resource_tracker
from gomp.resource_tracker import ResourceTracker, _json_line, _parse, _simple_line


class _Capture(ResourceTracker):
    """A tracker whose lines go to a pipe we read, with no process behind."""

    def __init__(self):
        super().__init__()
        self.r, self._fd = os.pipe()

    def _ensure_helper(self):
        pass

    def lines(self):
        return os.read(self.r, 4096)


@pytest.mark.parametrize('name', ['/plain', 'a:b', ':x:', 'new\nline', 'caf\u00e9'])
def test_both_formats_round_trip(name):
    for line in (
        _simple_line('REGISTER', name, 'semaphore'),
        _json_line('REGISTER', name, 'semaphore'),
    ):
        if line is not None:
            assert line.endswith(b'\n') and line.count(b'\n') == 1
            assert _parse(line) == ('REGISTER', name, 'semaphore')


def test_simple_format_falls_back_to_json_only_when_it_must():
    t = _Capture()
    t.register('a:b', 'noop')
    assert t.lines() == b'REGISTER:a:b:noop\n'
    t.register('a\nb', 'noop')
    assert t.lines() == b'{"cmd":"REGISTER","rtype":"noop","base64_name":"YQpi"}\n'
    t._use_simple_format = False
    t.unregister('a:b', 'noop')
    assert t.lines() == b'{"cmd":"UNREGISTER","rtype":"noop","base64_name":"YTpi"}\n'
    t._check_alive()
    assert t.lines() == b'{"cmd":"PROBE","rtype":"noop"}\n'


def test_json_names_are_limited_to_255_bytes():
    t = _Capture()
    t._use_simple_format = False
    t.register('n' * 255, 'noop')
    with pytest.raises(ValueError, match='max 255 bytes'):
        t.register('n' * 256, 'noop')


@pytest.mark.parametrize('simple', [True, False])
def test_tracker_understands_awkward_names(tracker, simple):
    tracker._use_simple_format = simple
    for name in ['a:b', '::x::', 'new\nline', 'caf\u00e9']:
        tracker.register(name, 'noop')
        tracker.unregister(name, 'noop')  # a bad line if the name came out otherwise
    tracker._stop()
    assert tracker._exitcode == 0


def test_malformed_json_line_is_a_bad_line(capfd):
    tracker = ResourceTracker()  # started here: its stderr is the captured one
    tracker.ensure_running()
    os.write(tracker._fd, b'{not json\n')
    tracker._stop()
    assert tracker._exitcode == 3
    assert 'malformed resource_tracker message' in capfd.readouterr().err


@pytest.mark.skipif(not hasattr(signal, 'pthread_sigmask'), reason='needs pthread_sigmask')
def test_starting_the_tracker_keeps_the_callers_signal_mask():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGINT})
        t = ResourceTracker()
        t.ensure_running()
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == {signal.SIGINT}
        t._stop()
        assert t._exitcode == 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _in_fork(child):
    """Run child() in a bare os.fork() child; its return value (a small int)
    is the exit code we get."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = child()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_bare_fork_child_lets_go_of_the_tracker(tracker):
    assert _in_fork(lambda: int(tracker._fd is None and tracker._pid is None)) == 1


def test_tracker_ends_while_a_bare_fork_child_lives(tracker):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # until the parent is done
        os._exit(0)
    os.close(r)
    try:
        tracker._stop(wait_timeout=60)
        assert not tracker._waitpid_timed_out and tracker._exitcode == 0
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def _report_tracker(conn):
    t = resource_tracker._resource_tracker
    conn.send((t._fd is not None, t._pid, t._check_alive()))


def test_fork_start_method_child_keeps_its_parents_tracker():
    resource_tracker.ensure_running()
    ctx = gomp.get_context('fork')
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_report_tracker, args=(w,))
    p.start()
    try:
        assert r.recv() == (True, None, True)
    finally:
        p.join()
        r.close()
        w.close()


def test_stop_gives_up_waiting_after_wait_timeout(tracker):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # A child that keeps the tracker's pipe open, as a Process would.
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    keeper = os.dup(tracker._fd)  # and so does this descriptor
    try:
        tracker_pid = tracker._pid
        tracker._stop(wait_timeout=0.05)
        assert tracker._waitpid_timed_out and tracker._exitcode is None
    finally:
        os.close(keeper)
        os.close(w)
        os.waitpid(pid, 0)
        os.waitpid(tracker_pid, 0)


def test_lock_held_by_another_thread_is_free_in_a_forked_child(tracker):
    with held_by_another_thread(tracker._lock):
        assert _in_fork(lambda: int(tracker._lock.acquire(timeout=30))) == 1
