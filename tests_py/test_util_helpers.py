"""util, spawn and resource_sharer helpers, compared with what the standard
library does where gomp promises the same behaviour."""

import gc
import os
import sys
import textwrap

import pytest

from conftest import run_python, stdlib_peer
from gomp import popen_spawn_posix, resource_sharer, spawn, util

std_util = stdlib_peer("multiprocessing.util")  # the standard library's, never gomp


class _Obj:
    pass


@pytest.fixture
def empty_registry():
    """The finalizer registry emptied for a test and restored after it."""
    saved = util._finalizer_registry.copy()
    util._finalizer_registry.clear()
    yield util._finalizer_registry
    util._finalizer_registry.clear()
    util._finalizer_registry.update(saved)


# ---- Finalize ------------------------------------------------------------------------------


def test_finalize_runs_once_and_returns_the_result(empty_registry):
    calls = []
    obj = _Obj()
    f = util.Finalize(
        obj, lambda *a, **k: calls.append((a, k)) or "result", args=(1,), kwargs={"k": 2}
    )
    assert f.still_active() and len(empty_registry) == 1
    assert f() == "result"
    assert f() is None and not f.still_active() and not empty_registry
    del obj
    gc.collect()
    assert calls == [((1,), {"k": 2})]


def test_finalize_runs_when_its_object_dies(empty_registry):
    calls = []
    obj = _Obj()
    util.Finalize(obj, calls.append, args=("dead",))
    del obj
    gc.collect()
    assert calls == ["dead"] and not empty_registry


def test_finalize_argument_errors_match_the_stdlib():
    for bad in [dict(obj=None, callback=print), dict(obj=_Obj(), callback=print, exitpriority=1.5)]:
        with pytest.raises(Exception) as ours:
            util.Finalize(**bad)
        with pytest.raises(Exception) as theirs:
            std_util.Finalize(**bad)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_finalize_repr(empty_registry):
    obj = _Obj()
    f = util.Finalize(obj, print, args=(1,), kwargs={"sep": "-"}, exitpriority=3)
    assert (
        repr(f)
        == "<Finalize object, callback=print, args=(1,), kwargs={'sep': '-'}, exitpriority=3>"
    )
    g = util.Finalize(obj, len)
    assert repr(g) == "<Finalize object, callback=len>"
    g.cancel()
    assert repr(g) == "<Finalize object, dead>" and not g.still_active()
    f.cancel()


def test_run_finalizers_minpriority_and_order(empty_registry):
    ran = []
    keep = [_Obj() for _ in range(2)]
    for name, prio in [("p1-a", 1), ("p5", 5), ("p1-b", 1), ("p0", 0), ("m3", -3)]:
        util.Finalize(None, ran.append, args=(name,), exitpriority=prio)
    util.Finalize(keep[0], ran.append, args=("unprioritized",))
    util.Finalize(None, lambda: 1 / 0, exitpriority=2)  # printed, does not stop the others
    util._run_finalizers(1)
    assert ran == ["p5", "p1-b", "p1-a"]
    assert len(empty_registry) == 3  # p0, m3 and the unprioritized one
    util._run_finalizers()
    assert ran == ["p5", "p1-b", "p1-a", "p0", "m3"] and not empty_registry


# ---- file descriptors, addresses ---------------------------------------------------------


def test_close_all_fds_except_in_a_child():
    out = run_python("""
        import os
        from gomp import util
        a = os.open(os.devnull, os.O_RDONLY)
        b = os.open(os.devnull, os.O_RDONLY)
        c = os.open(os.devnull, os.O_RDONLY)
        util.close_all_fds_except([1, 2, b])
        alive = []
        for fd in (0, a, b, c):
            try:
                os.fstat(fd)
                alive.append(fd == b)
            except OSError:
                pass
        print(alive)
        try:
            util.close_all_fds_except([util.MAXFD + 1])
        except ValueError as e:
            print(e)
    """)
    assert out.stdout.splitlines() == ["[True]", "fd too large"]


def test_is_abstract_socket_namespace_matches_the_stdlib():
    for address in ["\0abc", b"\0abc", "/tmp/x", b"/tmp/x", "", b"", None]:
        assert util.is_abstract_socket_namespace(address) == std_util.is_abstract_socket_namespace(
            address
        ), address
    with pytest.raises(TypeError, match="address type of 3 unrecognized"):
        util.is_abstract_socket_namespace(3)


def test_spawnv_passfds_child_sees_only_passfds(tmp_path):
    out = run_python("""
        import os, sys
        from gomp import util
        r, w = os.pipe()
        keep_r, keep_w = os.pipe()
        os.set_inheritable(r, True)
        prog = ("import os, sys; "
                "os.write(int(sys.argv[1]), repr(os.path.exists('/proc/self/fd/%s')).encode())"
                % r)
        pid = util.spawnv_passfds(sys.executable, [sys.executable, "-c", prog, str(keep_w)],
                                  [keep_w])
        os.close(keep_w)
        print(os.read(keep_r, 100).decode())
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    assert out.stdout.split() == ["False", "0"]


# ---- spawn ---------------------------------------------------------------------------------


def test_preparation_data_matches_the_stdlib(tmp_path):
    """In a fresh script (so that no other test's logger or alias counts),
    gomp's preparation data has the stdlib's keys and values, with and
    without logging turned on."""
    script = tmp_path / "prep.py"
    script.write_text(
        textwrap.dedent("""
        import multiprocessing, gomp
        from multiprocessing import spawn as std_spawn
        from gomp import spawn
        assert std_spawn.__name__ == "multiprocessing.spawn"  # the stdlib's, not gomp's
        def compare():
            ours, theirs = spawn.get_preparation_data("x"), std_spawn.get_preparation_data("x")
            same = ("name", "sys_argv", "sys_path", "orig_dir", "dir", "init_main_from_path",
                    "init_main_from_name", "log_to_stderr", "log_level")
            print(sorted(ours) == sorted(theirs),
                  all(ours.get(k) == theirs.get(k) for k in same), "log_level" in ours)
        if __name__ == "__main__":
            compare()
            gomp.log_to_stderr(25)
            multiprocessing.log_to_stderr(25)
            compare()
    """)
    )
    out = run_python(
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')", str(script)
    )
    assert out.stdout.split() == ["True", "True", "False", "True", "True", "True"], out.stdout


def test_command_line_runs_spawn_main_with_the_keywords():
    cmd = spawn.get_command_line(tracker_fd=5, pipe_handle=7)
    assert cmd[0] == spawn.get_executable() and cmd[-1] == "--multiprocessing-fork"
    assert cmd[-2].endswith("spawn_main(tracker_fd=5, pipe_handle=7)")
    assert cmd[-3] == "-c"
    assert spawn.is_forking(["x", "--multiprocessing-fork"]) and not spawn.is_forking(["x"])


def test_freeze_support_runs_a_frozen_child(monkeypatch):
    seen = {}
    monkeypatch.setattr(spawn, "spawn_main", lambda **kw: seen.update(kw))
    monkeypatch.setattr(
        sys, "argv", ["prog", "--multiprocessing-fork", "pipe_handle=7", "tracker_fd=None"]
    )
    with pytest.raises(SystemExit):
        spawn.freeze_support()
    assert seen == {"pipe_handle": 7, "tracker_fd": None}
    monkeypatch.setattr(sys, "argv", ["prog"])
    spawn.freeze_support()  # not a child: returns


def test_set_executable_stores_bytes_and_none():
    saved = spawn.get_executable()
    try:
        spawn.set_executable("/bin/x")
        assert spawn.get_executable() == b"/bin/x"
        spawn.set_executable(None)
        assert spawn.get_executable() is None
    finally:
        spawn._python_exe = saved


# ---- popen_spawn_posix, resource_sharer --------------------------------------------------


def test_spawn_dupfd_pickles_as_its_number():
    import pickle

    from gomp.reduction import ForkingPickler

    d = pickle.loads(ForkingPickler.dumps(popen_spawn_posix._DupFd(9)))
    assert type(d) is popen_spawn_posix._DupFd and d.detach() == 9


def _open_fds():
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            fds.add((name, os.readlink("/proc/self/fd/" + name)))
        except OSError:
            pass  # the directory listing's own descriptor
    return fds


def _lend_and_redeem(w, r):
    fd = resource_sharer.DupFd(w).detach()
    os.write(fd, b"ok")
    os.close(fd)
    assert os.read(r, 2) == b"ok"


def test_resource_sharer_lends_once_and_stop_releases_the_rest():
    """A DupFd is redeemed once through the lending thread; stop() ends the
    thread and closes the duplicates never redeemed."""
    r, w = os.pipe()
    _lend_and_redeem(w, r)  # the first connection loads the Go core (its own fds)
    resource_sharer.stop(timeout=30)
    before = _open_fds()
    lent = resource_sharer.DupFd(w)
    resource_sharer.DupFd(w)  # never redeemed
    assert resource_sharer._resource_sharer._address is not None
    fd = lent.detach()
    os.close(fd)
    _lend_and_redeem(w, r)
    resource_sharer.stop(timeout=30)
    assert resource_sharer._resource_sharer._address is None
    assert _open_fds() == before
    os.close(r)
    os.close(w)
