"""gomp._gomp.spawnv_passfds: how spawn children, the fork server and the
resource tracker are started (vfork + exec in C, no _posixsubprocess)."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from gomp import _gomp

LIST_FDS = (
    'import os, sys; fd = int(sys.argv[1]); '
    'os.write(fd, " ".join(sorted(os.listdir("/proc/self/fd"), key=int)).encode())'
)


def _read_to_eof(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b''.join(chunks).decode()
        chunks.append(chunk)


def _zombie_children():
    """pids of this process's children that have exited and are not reaped."""
    me = str(os.getpid())
    out = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if fields[0] == 'Z' and fields[1] == me:
            out.append(int(pid))
    return out


def test_child_has_exactly_the_passed_descriptors():
    r, w = os.pipe()
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)  # inheritable, but not passed: must not arrive
    try:
        pid = _gomp.spawnv_passfds(sys.executable, [sys.executable, '-c', LIST_FDS, str(w)], [w])
        os.close(w)
        seen = _read_to_eof(r).split()
        _, status = os.waitpid(pid, 0)
    finally:
        for fd in (r, stray_r, stray_w):
            os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    fds = set(map(int, seen))
    assert {0, 1, 2, w} <= fds
    assert stray_w not in fds
    # Besides the standard streams and w, only what the child opened itself
    # to list them (the directory it reads).
    assert len(fds - {0, 1, 2, w}) <= 1, seen


def test_unexecutable_program_raises_and_leaves_no_zombie(tmp_path):
    before = set(_zombie_children())
    with pytest.raises(FileNotFoundError) as info:
        _gomp.spawnv_passfds(str(tmp_path / 'missing'), ['missing'], [])
    assert info.value.filename == str(tmp_path / 'missing')
    script = tmp_path / 'not-executable'
    script.write_text('#!/bin/sh\n')
    with pytest.raises(PermissionError):
        _gomp.spawnv_passfds(str(script), ['x'], [])
    assert set(_zombie_children()) <= before


def test_a_descriptor_that_is_not_open_is_refused():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError) as info:
        _gomp.spawnv_passfds(sys.executable, [sys.executable, '-c', 'pass'], [fd])
    assert info.value.errno == errno.EBADF
    assert str(fd) in str(info.value)


def test_bad_arguments_raise_type_errors():
    with pytest.raises(TypeError):
        _gomp.spawnv_passfds(sys.executable, [sys.executable], ['not a fd'])
    with pytest.raises(TypeError):
        _gomp.spawnv_passfds(sys.executable, [1], [])
    with pytest.raises(TypeError):
        _gomp.spawnv_passfds(sys.executable, [sys.executable])


def test_ignored_signals_stay_ignored_and_handlers_do_not_follow():
    """As with the stdlib's spawn: an ignored signal is still ignored in the
    child (exec keeps SIG_IGN); a caught one is back to its default."""
    code = (
        'import signal; print(signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN, '
        'signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL)'
    )
    old1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    old2 = signal.signal(signal.SIGUSR2, lambda *a: None)
    r, w = os.pipe()
    try:
        wrapper = 'import os; os.dup2(%d, 1); exec(%r)' % (w, code)
        pid = _gomp.spawnv_passfds(sys.executable, [sys.executable, '-c', wrapper], [w])
        os.close(w)
        out = _read_to_eof(r).split()
        os.waitpid(pid, 0)
    finally:
        os.close(r)
        signal.signal(signal.SIGUSR1, old1)
        signal.signal(signal.SIGUSR2, old2)
    assert out == ['True', 'True']


def test_same_result_as_subprocess_for_arguments():
    args = ['echo', 'a b', 'ünï', '']
    r, w = os.pipe()
    pid = _gomp.spawnv_passfds(
        sys.executable,
        [
            sys.executable,
            '-c',
            'import os, sys; os.write(int(sys.argv[1]), repr(sys.argv[2:]).encode())',
            str(w),
        ]
        + args,
        [w],
    )
    os.close(w)
    got = _read_to_eof(r)
    os.close(r)
    os.waitpid(pid, 0)
    expected = subprocess.run(
        [sys.executable, '-c', 'import sys; print(repr(sys.argv[1:]), end="")'] + args,
        capture_output=True,
        text=True,
    ).stdout
    assert got == expected
