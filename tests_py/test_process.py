"""Processes, start methods, contexts, supervision and util."""

import os
import select
import signal
import sys
import textwrap
import time

import pytest

import gomp
import procs_helpers as h
from blocked_helpers import dead
from conftest import HANG_GUARD, run_python, wait_until
from gomp import connection
from gomp._versions import V

METHODS = ["fork", "spawn", "forkserver"]


@pytest.fixture(params=METHODS)
def ctx(request):
    return gomp.get_context(request.param)


def started(ctx, target, *args, **kwargs):
    p = ctx.Process(target=target, args=args, kwargs=kwargs)
    p.start()
    return p


# ---- the Process API ------------------------------------------------------------------------


def test_child_sees_its_identity(ctx):
    r, w = ctx.Pipe()
    p = ctx.Process(target=h.report, args=(w, 1, "two"), kwargs={"k": 3}, name="worker-x")
    assert p.pid is None and p.exitcode is None and not p.is_alive()
    assert "initial" in repr(p)
    p.start()
    pid, ppid, name, parent_pid, method, args, kwargs = r.recv()
    p.join()
    assert (pid, parent_pid) == (p.pid, os.getpid())
    if ctx.get_start_method() != "forkserver":  # there the OS parent is the server
        assert ppid == os.getpid()
    assert name == "worker-x" and method == ctx.get_start_method()
    assert args == (1, "two") and kwargs == {"k": 3}
    assert p.exitcode == 0 and not p.is_alive()
    assert repr(p) == "<%s name='worker-x' pid=%d parent=%d stopped exitcode=0>" % (
        type(p).__name__,
        p.pid,
        os.getpid(),
    )
    assert type(p).__name__.lower().startswith(ctx.get_start_method())


def test_exit_codes(ctx):
    cases = [
        (h.noop, (), 0),
        (h.exit_with, (7,), 7),
        (h.exit_with, (None,), 0),
        (h.exit_with, ("text",), 1),
        (h.kill_self, (), -signal.SIGKILL),
    ]
    procs = [(started(ctx, t, *a), want) for t, a, want in cases]
    for p, want in procs:
        p.join(30)
        assert p.exitcode == want, (p, want)


def test_signals(ctx):
    r, w = ctx.Pipe()
    for method, want in (
        ("terminate", -signal.SIGTERM),
        ("kill", -signal.SIGKILL),
        ("interrupt", 1),
    ):
        p = started(ctx, h.wait_for_interrupt, w)
        assert r.recv() == "ready"
        getattr(p, method)()
        p.join(30)
        assert p.exitcode == want, method
        assert "exitcode=%s" % (
            "-SIGTERM" if want == -15 else "-SIGKILL" if want == -9 else 1
        ) in repr(p)


def test_join_timeout_is_honoured(ctx):
    # The child sleeps 30 s: a join that ignored its timeout would return
    # only once the child is gone.
    p = started(ctx, h.sleep, 30)
    t0 = time.monotonic()
    p.join(0.3)
    elapsed = time.monotonic() - t0
    assert p.is_alive() and p.exitcode is None
    assert elapsed >= 0.3
    p.join(0)
    assert p.is_alive()
    p.kill()
    p.join()
    assert p.exitcode == -signal.SIGKILL


def test_sentinel_with_wait_and_select(ctx):
    p = started(ctx, h.sleep, 0.3)
    assert connection.wait([p.sentinel], timeout=0) == []
    assert select.select([p.sentinel], [], [], 0)[0] == []
    assert connection.wait([p.sentinel], timeout=30) == [p.sentinel]
    assert select.select([p.sentinel], [], [], 0)[0] == [p.sentinel]
    p.join()
    assert p.exitcode == 0


def test_misuse_errors(ctx):
    p = ctx.Process(target=h.noop)
    with pytest.raises(AssertionError, match="can only join a started process"):
        p.join()
    with pytest.raises(ValueError, match="process not started"):
        _ = p.sentinel
    p.start()
    with pytest.raises(AssertionError, match="cannot start a process twice"):
        p.start()
    p.join()
    p.close()
    p.close()
    for call in (p.is_alive, p.join, p.start, p.terminate, lambda: p.exitcode, lambda: p.pid):
        with pytest.raises(ValueError, match="process object is closed"):
            call()
    q = started(ctx, h.sleep, 30)
    with pytest.raises(ValueError, match="Cannot close a process while it is still running"):
        q.close()
    q.kill()
    q.join()


def test_many_children_at_once(ctx):
    n = 12 if ctx.get_start_method() == "spawn" else 30
    sleeper = started(ctx, h.sleep, 30)
    procs = [started(ctx, h.exit_with, i % 7) for i in range(n)]
    assert sleeper in gomp.active_children()
    for i, p in enumerate(procs):
        p.join(60)
        assert p.exitcode == i % 7
    assert not any(p in gomp.active_children() for p in procs)
    sleeper.terminate()
    sleeper.join()


def test_children_are_reaped_without_join(ctx):
    """No zombie is left even if nobody joins: the reaper thread collects the
    child shortly after it exits (its grace period is 100 ms), and keeps the
    exit code for the join that comes later."""
    if ctx.get_start_method() == "forkserver":
        pytest.skip("forkserver children are the server's children; it reaps them")
    p = started(ctx, h.exit_with, 5)
    wait_until(lambda: _zombie_or_gone(p.pid) == "gone", "the child reaped without a join")
    assert p.exitcode == 5


def _zombie_or_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z" and "zombie"
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped while read
        return "gone"


def test_child_dropped_while_running_is_reaped(ctx):
    """A Popen closed while its child runs (nobody will ever join it) leaves
    the child to the reaper, which reaps it when it exits."""
    if ctx.get_start_method() == "forkserver":
        pytest.skip("forkserver children are the server's children; it reaps them")
    r, w = ctx.Pipe(duplex=False)
    p = started(ctx, h.recv_then_exit, r)
    pid = p.pid
    p._popen.close()  # the record is dropped while the child still runs
    gomp.process._children.discard(p)  # (nobody can join it now)
    w.send(None)
    wait_until(lambda: _zombie_or_gone(pid) == "gone", "the dropped child reaped")


def test_reaper_races_the_parent_without_losing_a_status():
    """With a grace period of 1 ms the reaper races join() for every child:
    whoever reaps, join() reports the exit code, and the reaper keeps
    nothing once the statuses are collected."""
    from gomp import _gomp

    ctx = gomp.get_context("fork")
    prev = _gomp.proc_reaper_grace(0.001)
    try:
        procs = []
        for i in range(60):
            p = started(ctx, h.exit_with, i % 5)
            if i % 3 == 0:
                # The reaper wins this one: the child goes (not even a
                # zombie) with nobody joining it; the reaper holds its status.
                wait_until(
                    lambda p=p: _zombie_or_gone(p.pid) == "gone",
                    "child %d reaped by the reaper" % i,
                )
                # ... until join() or the next start()'s poll of the
                # children collects it.
                assert _gomp.proc_reaper_state()[0] >= 1
            procs.append(p)
        for i, p in enumerate(procs):
            p.join(30)
            assert p.exitcode == i % 5
    finally:
        _gomp.proc_reaper_grace(prev)
    wait_until(
        lambda: _gomp.proc_reaper_state() == (0, 0),
        lambda: "the reaper left with nothing kept (it keeps %r)" % (_gomp.proc_reaper_state(),),
    )


def test_starting_processes_does_not_load_the_go_core():
    """A program that only starts and joins processes never loads the Go
    runtime, which would make each of its forks slower."""
    out = run_python("""
        import gomp, gomp.connection, sys
        from gomp import _gomp
        if __name__ == "__main__":
            for method in ("fork", "spawn"):
                ctx = gomp.get_context(method)
                ps = [ctx.Process(target=sys.exit, args=(3,)) for _ in range(3)]
                for p in ps:
                    p.start()
                gomp.connection.wait([p.sentinel for p in ps])
                for p in ps:
                    p.join()
                assert [p.exitcode for p in ps] == [3, 3, 3], [p.exitcode for p in ps]
                assert gomp.active_children() == []
            print(_gomp._core_info()["loaded"])
    """)
    assert out.stdout.split() == ["0"]


def test_parent_process_liveness(ctx):
    r, w = ctx.Pipe()
    p = started(ctx, h.parent_liveness, w)
    assert r.recv() is True
    # The parent stays alive: the child still waits in join() (it reports
    # when that returns); stop it.
    assert not r.poll(0.2)
    p.terminate()
    p.join()


def test_parent_process_sees_its_parent_go(ctx):
    """A child whose parent exits sees it: parent_process().join() returns
    and is_alive() turns False."""
    r, w = ctx.Pipe(duplex=False)
    go_r, go_w = ctx.Pipe(duplex=False)
    middle = started(ctx, h.liveness_child_then_exit, w, go_r, ctx.get_start_method())
    assert r.poll(HANG_GUARD)
    assert r.recv() is True  # the grandchild's parent (middle) is alive
    go_w.send(None)
    middle.join(HANG_GUARD)
    assert middle.exitcode == 0
    assert r.poll(HANG_GUARD), "the grandchild's parent_process().join() did not return"
    what, alive, _ = r.recv()
    assert (what, alive) == ("parent gone", False)


def test_current_and_active(ctx):
    assert gomp.current_process().name == "MainProcess"
    assert gomp.parent_process() is None
    assert gomp.cpu_count() == os.cpu_count()
    p = started(ctx, h.sleep, 30)
    assert p in gomp.active_children()
    p.terminate()
    p.join()
    assert p not in gomp.active_children()


def test_grandchildren(ctx):
    r, w = ctx.Pipe()
    p = started(ctx, h.grandchild_report, w)
    pid, ppid, name, parent_pid, method, args, kwargs = r.recv()
    p.join(60)
    assert parent_pid == p.pid and args == ("grandchild",)
    assert p.exitcode == 0


def test_child_stdin_is_dev_null(ctx):
    """A child reads end of file from /dev/null as its stdin; so does its own
    child after it closed that stdin (a forked child takes over a /dev/null
    file object made by its parent, which makes a new one once it is closed).
    The parent's stdin is left alone."""
    parent_stdin = sys.stdin
    r, w = ctx.Pipe()
    for _ in range(2):  # the second round reuses the parent's /dev/null object
        p = started(ctx, h.stdin_report, w, ctx.get_start_method(), True)
        for who in ("child", "grandchild"):
            assert r.poll(60), who
            assert r.recv() == ("", "/dev/null"), who
        p.join(60)
        assert p.exitcode == 0
    assert sys.stdin is parent_stdin


# Modules that some programs need and a process that only starts processes
# does not: a spawned child imported all of them, about 20 of the 60 ms it took to
# start here.
_LAZY_MODULES = {
    "socket",
    "selectors",
    "pickle",
    "re",
    "enum",
    "signal",
    "runpy",
    "pkgutil",
    "typing",
    "tempfile",
    "struct",
}


def test_import_and_spawned_child_load_only_what_they_use(tmp_path):
    """`import gomp`, and a spawned child that does nothing or sends on a
    Connection it was given, load none of _LAZY_MODULES beyond what a bare
    interpreter has. Sockets are pickled through gomp's reducer all the same
    (registered on first use), even with the stdlib's reduction module (which
    has its own) loaded."""
    out = run_python(
        """
        import sys
        bare = set(sys.modules)
        import gomp
        print(sorted(set(sys.modules) - bare))
        import procs_helpers
        ctx = gomp.get_context("spawn")
        r, w = ctx.Pipe()
        for args in [(sys.argv[1] + "0",), (sys.argv[1] + "1", w)]:
            p = ctx.Process(target=procs_helpers.loaded_modules, args=args)
            p.start()
            if len(args) > 1:
                assert r.recv() == "sent"
            p.join()
            assert p.exitcode == 0
        import multiprocessing.reduction, socket
        from gomp import reduction
        print(reduction.ForkingPickler._extra_reducers[socket.socket] is reduction._reduce_socket)
    """,
        str(tmp_path / "mods"),
    ).stdout.splitlines()
    assert not _LAZY_MODULES & set(eval(out[0])), out[0]
    assert out[1] == "True"
    bare = set(run_python("import sys; print('\\n'.join(sys.modules))").stdout.split())
    for i, must in enumerate(["gomp.spawn", "gomp.connection"]):
        child = set((tmp_path / ("mods%d" % i)).read_text().split()) - bare
        assert must in child and not _LAZY_MODULES & child, sorted(child)


def test_main_script_runs_in_a_spawned_child_as_runpy_runs_it(tmp_path):
    """spawn runs the parent's main script (a .py file) as __mp_main__ without
    runpy: the script sees what runpy.run_path would show it, and the
    globals that come back are the same."""
    import runpy

    from gomp import spawn

    script = tmp_path / "main_script.py"
    script.write_bytes(
        textwrap.dedent("""
        # -*- coding: latin-1 -*-
        import sys
        seen = dict(name=__name__, file=__file__, argv0=sys.argv[0], doc=__doc__,
                    package=__package__, spec=__spec__, loader=__loader__,
                    cached=globals().get("__cached__", "absent"),
                    me=sys.modules["__mp_main__"].__dict__ is globals())
        text = "\xe9"
        def f():
            return text
    """).encode("latin-1")
    )
    saved = sys.modules.get("__mp_main__")
    argv0 = sys.argv[0]
    ours = spawn._run_source_file(str(script))
    assert sys.modules.get("__mp_main__") is saved and sys.argv[0] == argv0
    theirs = runpy.run_path(str(script), run_name="__mp_main__")
    assert ours["seen"] == theirs["seen"]
    assert ours["seen"]["me"] and ours["seen"]["argv0"] == str(script)
    assert ours["f"]() == theirs["f"]() == "\xe9"
    assert sorted(k for k in ours if k != "__builtins__") == sorted(
        k for k in theirs if k != "__builtins__"
    )


# ---- failures at start --------------------------------------------------------------------


def test_unpicklable_target_fails_in_parent_at_start():
    for method in ("spawn", "forkserver"):
        ctx = gomp.get_context(method)
        p = ctx.Process(target=lambda: None)
        with pytest.raises((AttributeError, TypeError, Exception)) as info:
            p.start()
        assert "pickle" in str(info.value).lower() or "lambda" in str(info.value)
        assert p.pid is None


def write_script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run_script(path, *args, timeout=120):
    import subprocess

    return subprocess.run(
        [sys.executable, path, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(path),
    )


def test_child_exception_prints_traceback(tmp_path):
    path = write_script(
        tmp_path,
        "raises.py",
        """
        import gomp
        def boom():
            raise ValueError("boom from the child")
        if __name__ == "__main__":
            for m in ("fork", "spawn", "forkserver"):
                p = gomp.get_context(m).Process(target=boom, name="P-" + m)
                p.start(); p.join()
                print(m, p.exitcode)
    """,
    )
    out = run_script(path)
    assert out.stdout.split() == ["fork", "1", "spawn", "1", "forkserver", "1"], out.stderr
    for m in ("fork", "spawn", "forkserver"):
        assert "Process P-%s:\nTraceback (most recent call last):" % m in out.stderr
    assert out.stderr.count("ValueError: boom from the child") == 3


def test_unguarded_script_raises_under_spawn(tmp_path):
    for method in ("spawn", "forkserver"):
        path = write_script(
            tmp_path,
            "unguarded_%s.py" % method,
            """
            import gomp
            p = gomp.get_context(%r).Process(target=print, args=("child",))
            p.start()
            p.join()
        """
            % method,
        )
        out = run_script(path, timeout=60)
        assert "An attempt has been made to start a new process before the" in out.stderr
        assert "RuntimeError" in out.stderr


def test_daemon_children_are_terminated_at_exit(tmp_path):
    path = write_script(
        tmp_path,
        "daemons.py",
        """
        import gomp, time, sys
        if __name__ == "__main__":
            # (Longer than any guard: a daemon left alive would keep the
            # parent in its exit join and the child would not go.)
            p = gomp.Process(target=time.sleep, args=(3600,), daemon=True)
            p.start()
            print(p.pid, flush=True)
    """,
    )
    out = run_script(path)
    pid = int(out.stdout)

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True

    wait_until(gone, "the daemonic child gone with its parent")


def test_daemonic_process_cannot_have_children():
    out = run_python("""
        import gomp
        ctx = gomp.get_context("fork")   # child is defined in a -c program
        def child():
            try:
                ctx.Process(target=print).start()
            except AssertionError as e:
                print("refused:", e)
        if __name__ == "__main__":
            p = ctx.Process(target=child, daemon=True); p.start(); p.join()
    """)
    assert "refused: daemonic processes are not allowed to have children" in out.stdout


# ---- forkserver ---------------------------------------------------------------------------


def test_forkserver_never_loads_the_go_core_and_restarts(tmp_path):
    from gomp import forkserver

    ctx = gomp.get_context("forkserver")
    r, w = ctx.Pipe()
    p = started(ctx, h.core_state, w)
    before, after = r.recv()
    p.join()
    # The child inherited no runtime from the server and loaded its first.
    assert before["loaded"] == 0 and before["generation"] == 0
    assert after["loaded"] == 1 and after["generation"] == 1 and after["stale"] == 0
    server = forkserver._forkserver._forkserver_pid
    with open("/proc/%d/maps" % server) as f:
        assert "libgompcore" not in f.read()
    os.kill(server, signal.SIGKILL)
    wait_until(lambda: dead(server), "the killed server dead")
    p = started(ctx, h.exit_with, 4)
    p.join(60)
    assert p.exitcode == 4
    assert forkserver._forkserver._forkserver_pid != server


def test_forkserver_preloads_main_once(tmp_path):
    """The server imports __main__ once; its children do not import it again
    (CPython 3.11's server does not preload it, so every child does)."""
    log = tmp_path / "imports.log"
    path = write_script(
        tmp_path,
        "preload_main.py",
        """
        import os, sys
        with open(%r, "a") as f:
            f.write("%%s %%d\\n" %% (__name__, os.getpid()))
        import gomp
        def work(x):
            return x
        if __name__ == "__main__":
            ctx = gomp.get_context("forkserver")
            for i in range(4):
                p = ctx.Process(target=work, args=(i,)); p.start(); p.join()
                assert p.exitcode == 0
    """
        % str(log),
    )
    out = run_script(path)
    assert out.returncode == 0, out.stderr
    lines = log.read_text().split()
    assert lines.count("__main__") == 1
    assert lines.count("__mp_main__") == 1  # the server's import; no child imports it


# ---- contexts -----------------------------------------------------------------------------


def test_contexts():
    for method in METHODS:
        ctx = gomp.get_context(method)
        assert ctx.get_start_method() == method
        assert type(ctx).__name__.lower().startswith(method)
        assert ctx.Process.__name__.lower().startswith(method)
        with pytest.raises(ValueError, match="cannot set start method of concrete context"):
            ctx.set_start_method(method)
    # The host version's default comes first (forkserver from 3.14 on Linux).
    default = "forkserver" if V.default_forkserver else "fork"
    assert gomp.get_all_start_methods() == [default] + [
        m for m in ["fork", "spawn", "forkserver"] if m != default
    ]
    with pytest.raises(ValueError, match="cannot find context for 'nope'"):
        gomp.get_context("nope")
    with pytest.raises(TypeError, match="module_names must be a list of strings"):
        gomp.set_forkserver_preload([1, 2])


def test_set_start_method():
    out = run_python("""
        import gomp
        print(gomp.get_start_method(allow_none=True))
        print(gomp.get_start_method())
        try:
            gomp.set_start_method("spawn")
        except RuntimeError as e:
            print("refused:", e)
        gomp.set_start_method("spawn", force=True)
        print(gomp.get_start_method(), type(gomp.get_context()).__name__)
        gomp.set_start_method(None, force=True)
        print(gomp.get_start_method(allow_none=True))
    """)
    default = "forkserver" if V.default_forkserver else "fork"
    assert out.stdout.splitlines() == [
        "None",
        default,
        "refused: context has already been set",
        "spawn SpawnContext",
        "None",
    ]


# ---- util ---------------------------------------------------------------------------------


def test_finalizers_run_by_priority_at_exit():
    out = run_python("""
        from gomp import util
        class Obj: pass
        keep = [Obj() for _ in range(3)]
        util.Finalize(None, print, ("p10-a",), exitpriority=10)
        util.Finalize(None, print, ("p10-b",), exitpriority=10)
        util.Finalize(None, print, ("p0",), exitpriority=0)
        util.Finalize(None, print, ("p-5",), exitpriority=-5)
        util.Finalize(keep[0], print, ("no priority",))
        f = util.Finalize(keep[1], print, ("cancelled",), exitpriority=1)
        f.cancel()
        assert not f.still_active()
        tmp = util.get_temp_dir()
        print("tmp", tmp)
    """)
    lines = out.stdout.splitlines()
    tmp = lines[0].split()[1]
    assert lines[1:] == ["p10-b", "p10-a", "p0", "p-5"]
    assert not os.path.exists(tmp)


def test_after_fork_hooks_and_fork_aware_helpers():
    out = run_python("""
        import gomp
        from gomp import util
        class Holder: pass
        holder = Holder()
        util.register_after_fork(holder, lambda obj: print("after fork in", gomp.current_process().name, flush=True))
        lock = util.ForkAwareThreadLock()
        lock.acquire()           # held in the parent; a child starts with it free
        local = util.ForkAwareLocal()
        local.value = 1
        def child():
            print("lock free in child:", lock.acquire(timeout=1), flush=True)
            print("local cleared:", not hasattr(local, "value"), flush=True)
        if __name__ == "__main__":
            p = gomp.get_context("fork").Process(target=child, name="C1"); p.start(); p.join()
            print("exit", p.exitcode)
    """)
    assert out.stdout.splitlines() == [
        "after fork in C1",
        "lock free in child: True",
        "local cleared: True",
        "exit 0",
    ]


def test_logging():
    out = run_python("""
        import logging, gomp
        from gomp import util
        logger = gomp.log_to_stderr(util.SUBDEBUG)
        assert logger is gomp.get_logger() and logger.name == "multiprocessing"
        util.info("hello %s", "there")
        util.sub_debug("deep")
        logger.setLevel(util.SUBWARNING)
        util.info("hidden")
        util.sub_warning("visible")
    """)
    lines = [line for line in out.stderr.splitlines() if "MainProcess" in line]
    assert lines[:2] == ["[INFO/MainProcess] hello there", "[SUBDEBUG/MainProcess] deep"]
    assert "[SUBWARNING/MainProcess] visible" in lines
    assert not any("hidden" in line for line in lines)


# ---- reduction ----------------------------------------------------------------------------


def test_send_and_recv_handle_between_processes(ctx):
    from gomp import reduction

    r, w = os.pipe()
    os.write(w, b"through the handle")
    os.close(w)
    parent, child = ctx.Pipe()
    p = started(ctx, h.recv_handle_and_read, child)
    reduction.send_handle(parent, r, p.pid)
    assert parent.recv() == b"through the handle"
    p.join()
    os.close(r)


# ---- install as multiprocessing -----------------------------------------------------------


def test_install_aliases_multiprocessing_in_children(tmp_path):
    path = write_script(
        tmp_path,
        "aliased.py",
        """
        import gomp
        gomp.install()
        import multiprocessing, multiprocessing.connection, _multiprocessing
        from multiprocessing import util
        def child(conn):
            import multiprocessing, sys
            conn.send((multiprocessing.__name__, sys.modules["multiprocessing.connection"].__name__))
        if __name__ == "__main__":
            assert multiprocessing is gomp and util is gomp.util
            assert multiprocessing.connection is gomp.connection
            assert _multiprocessing.__name__ == "gomp._multiprocessing"
            assert gomp.connection.__spec__.name == "gomp.connection"
            for m in ("fork", "spawn", "forkserver"):
                ctx = multiprocessing.get_context(m)
                r, w = ctx.Pipe()
                p = ctx.Process(target=child, args=(w,)); p.start()
                print(m, *r.recv()); p.join()
    """,
    )
    out = run_script(path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["%s gomp gomp.connection" % m for m in METHODS]


def _sleep_a_little():
    import time

    time.sleep(0.01)


def test_threads_joining_one_child_all_see_its_exit():
    # Several threads join the same child at once (a pool's helper threads
    # do): every join returns, none sees a status taken by another.
    import threading

    ctx = gomp.get_context("fork")
    for _ in range(30):
        p = ctx.Process(target=_sleep_a_little)
        p.start()
        errors = []

        def join(p=p, errors=errors):
            try:
                p.join()
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)

        threads = [threading.Thread(target=join) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert p.exitcode == 0


def test_cleanup_survives_a_child_started_during_poll():
    # poll() may let another thread run and start a process (a
    # ProcessPoolExecutor's manager thread does): _cleanup must not iterate
    # over the live set of children.
    import gomp.process as P

    class Popen:
        def __init__(self, on_poll=None):
            self.on_poll = on_poll

        def poll(self):
            if self.on_poll:
                self.on_poll()
            return 0

    class Child:
        def __init__(self, popen):
            self._popen = popen

    added = Child(Popen())
    polling = Child(Popen(on_poll=lambda: P._children.add(added)))
    saved = set(P._children)
    P._children.add(polling)
    try:
        P._cleanup()
        assert polling not in P._children
    finally:
        P._children.clear()
        P._children.update(saved)
