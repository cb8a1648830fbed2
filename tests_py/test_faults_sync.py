"""Faults and hostile input for the synchronization primitives (issue 16):
a second local user who squats the names gomp uses, a waiter killed in
Condition.wait(), Event.wait() or Barrier.wait(), and the stdlib's
exception types for wrong arguments.

Each scenario that could hang runs in a child interpreter with a generous
timeout (a hang guard, not a performance bound)."""

import errno
import multiprocessing
import os
import shutil
import tempfile

import pytest

import gomp
from conftest import run_python

NOBODY = 65534


# ---- a squatting second user ----------------------------------------------------------------


def _as_nobody(action):
    """Runs action() in a forked child that switched to uid/gid 65534."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def shared_dir():
    """A directory like /dev/shm (world-writable, sticky) for GOMP_SHM_DIR,
    so that the squatting does not touch the real /dev/shm."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second user")
    d = tempfile.mkdtemp(prefix="gomp-faults-sync-", dir="/dev/shm")
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


VICTIM = """
    import os, sys, threading
    import gomp
    from gomp import synchronize, _multiprocessing as M
    import sync_faults_helpers as h

    # The first name drawn is one the squatter took: creation must pick another.
    names = iter(['/mp-squatted'])
    real = synchronize.SemLock._make_name
    synchronize.SemLock._make_name = staticmethod(lambda: next(names, None) or real())

    ctx = gomp.get_context(sys.argv[1])
    lock, rlock = ctx.Lock(), ctx.RLock()
    sem, bsem, done = ctx.Semaphore(0), ctx.BoundedSemaphore(1), ctx.Semaphore(0)
    event, cond, barrier = ctx.Event(), ctx.Condition(), ctx.Barrier(2)
    assert lock.name != '/mp-squatted'
    p = ctx.Process(target=h.use_all, args=(lock, rlock, sem, bsem, event, cond, barrier, done))
    p.start()
    barrier.wait(30)
    assert done.acquire(timeout=30) and sem.acquire(timeout=30) and event.wait(30)
    p.join(30)
    assert p.exitcode == 0, p.exitcode
    # A file another user planted under a name of ours is not adopted.
    try:
        M.SemLock._rebuild(0, 1, 1, '/mp-squatted')
    except PermissionError as e:
        print('refused:', e)
    print('ok')
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_squatter_cannot_block_named_semaphores(shared_dir, method):
    def squat():
        uid = 0
        # The names gomp used or could be guessed to use, made first by
        # another user: the old per-user directory (the denial of service of
        # issue 16), a plain file and a symlink in its place, and a file
        # under a semaphore name.
        os.mkdir(os.path.join(shared_dir, "gomp-sem-%d" % uid), 0o777)
        os.chmod(os.path.join(shared_dir, "gomp-sem-%d" % uid), 0o777)
        os.symlink("/etc/passwd", os.path.join(shared_dir, "gomp-sem"))
        fd = os.open(
            os.path.join(shared_dir, "gomp-sem.mp-squatted"), os.O_CREAT | os.O_WRONLY, 0o666
        )
        os.ftruncate(fd, 4096)
        os.fchmod(fd, 0o666)
        os.close(fd)

    _as_nobody(squat)
    out = run_python(VICTIM, method, env={"GOMP_SHM_DIR": shared_dir}, timeout=120)
    lines = out.stdout.splitlines()
    assert lines[-1] == "ok", out
    assert "refused:" in lines[0] and "owned by uid 0" in lines[0], lines
    # The squatter's file is still there: a victim never removes what is not its own.
    assert os.stat(os.path.join(shared_dir, "gomp-sem.mp-squatted")).st_uid == NOBODY
    # Nothing of the victim's is left behind.
    assert sorted(os.listdir(shared_dir)) == ["gomp-sem", "gomp-sem-0", "gomp-sem.mp-squatted"]


def test_semaphore_file_is_private_and_unlinked_only_if_ours(shared_dir):
    out = run_python(
        """
        import os, sys, stat
        from gomp import _multiprocessing as M
        d = sys.argv[1]
        s = M.SemLock(1, 0, 1, '/mp-mine', False)
        st = os.stat(os.path.join(d, 'gomp-sem.mp-mine'))
        print(oct(stat.S_IMODE(st.st_mode)), st.st_uid == os.geteuid())
        os.chown(os.path.join(d, 'gomp-sem.mp-mine'), 65534, 65534)
        try:
            M.sem_unlink('/mp-mine')
        except PermissionError:
            print('kept')
        print(os.path.exists(os.path.join(d, 'gomp-sem.mp-mine')))
    """,
        shared_dir,
        env={"GOMP_SHM_DIR": shared_dir},
    ).stdout.split()
    assert out == ["0o600", "True", "kept", "True"]


# ---- a waiter that dies does not hang the others ---------------------------------------------

PRELUDE = """
    import os, signal, sys, threading, time
    import gomp
    import sync_faults_helpers as h

    ctx = gomp.get_context(sys.argv[1])

    def until(predicate):
        end = time.monotonic() + 30
        while not predicate():
            assert time.monotonic() < end, 'the child never got there'
            time.sleep(0.01)

    def sleepers(cond):
        return cond._sleeping_count.get_value() - cond._woken_count.get_value()

    def kill(p):
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        assert p.exitcode == -signal.SIGKILL, p.exitcode
"""

METHODS = ["fork", "spawn"]


def _run(body, method):
    out = run_python(PRELUDE + body, method, timeout=90)
    return out.stdout.split()


@pytest.mark.parametrize("method", METHODS)
def test_event_and_barrier_with_a_holder_of_their_lock_killed(method):
    # Event and Barrier keep their state under an internal lock; a process
    # killed in the instant it holds it (the soak found it) must not leave
    # them stuck: the internal lock is robust, taken over with a warning.
    out = _run(
        """
    import warnings
    from gomp.synchronize import OwnerDiedWarning
    warnings.simplefilter('ignore', OwnerDiedWarning)
    event, barrier, ready = ctx.Event(), ctx.Barrier(1), ctx.Semaphore(0)
    for obj in (event, barrier):
        holder = ctx.Process(target=h.hold_internal_lock, args=(obj, ready))
        holder.start()
        assert ready.acquire(timeout=30)
        kill(holder)
    event.set()
    print('event', event.wait(30), event.is_set())
    event.clear()
    print('cleared', event.is_set())
    print('barrier', barrier.wait(30))
    """,
        method,
    )
    assert out == ["event", "True", "True", "cleared", "False", "barrier", "0"]


@pytest.mark.parametrize("method", METHODS)
def test_condition_notify_with_a_killed_waiter(method):
    out = _run(
        """
    cond, ready, result = ctx.Condition(), ctx.Semaphore(0), ctx.Semaphore(0)
    dead = ctx.Process(target=h.wait_on_condition, args=(cond, ready))
    dead.start()
    assert ready.acquire(timeout=30)
    with cond:      # it released the lock: it sleeps in wait()
        pass
    kill(dead)
    with cond:
        cond.notify_all()
        cond.notify()
        cond.notify(5)
    print('returned')
    # A live waiter behind the dead one gets notify(1).
    dead = ctx.Process(target=h.wait_on_condition, args=(cond, ready))
    dead.start()
    assert ready.acquire(timeout=30)
    with cond:
        pass
    kill(dead)
    live = ctx.Process(target=h.wait_on_condition_and_report, args=(cond, ready, result))
    live.start()
    assert ready.acquire(timeout=30)
    with cond:
        cond.notify(1)
    print('live woken', result.acquire(timeout=30))
    live.join(30)
    # Nobody waits any more: the dead waiters' traces are gone.
    with cond:
        cond.notify_all()
    until(lambda: sleepers(cond) <= 1)
    print(repr(cond).split()[-1])
    """,
        method,
    )
    assert out[:4] == ["returned", "live", "woken", "True"], out


@pytest.mark.parametrize("method", METHODS)
def test_event_set_with_a_killed_waiter(method):
    out = _run(
        """
    ev, ready = ctx.Event(), ctx.Semaphore(0)
    dead = ctx.Process(target=h.wait_on_event, args=(ev, ready))
    dead.start()
    assert ready.acquire(timeout=30)
    until(lambda: sleepers(ev._cond) == 1)
    with ev._cond:
        pass
    kill(dead)
    ev.set()
    print('set', ev.wait(30), ev.is_set())
    ev.clear()
    ev.set()
    print('again', ev.wait(0))
    """,
        method,
    )
    assert out == ["set", "True", "True", "again", "True"], out


@pytest.mark.parametrize("method", METHODS)
def test_barrier_timeout_with_a_killed_party(method):
    out = _run(
        """
    b = ctx.Barrier(3)
    dead = ctx.Process(target=h.wait_on_barrier, args=(b,))
    dead.start()
    until(lambda: b.n_waiting == 1)
    with b._cond:
        pass
    kill(dead)
    try:
        b.wait(timeout=3)
    except threading.BrokenBarrierError:
        print('broken', b.broken)
    # After reset() the barrier works for live parties.
    b.reset()
    threads = [threading.Thread(target=b.wait, args=(30,)) for _ in range(2)]
    for t in threads:
        t.start()
    print('index', b.wait(30) in (0, 1, 2))
    for t in threads:
        t.join(30)
    print('n_waiting', b.n_waiting, b.broken)
    """,
        method,
    )
    assert out == ["broken", "True", "index", "True", "n_waiting", "0", "False"], out


@pytest.mark.parametrize("method", METHODS)
def test_barrier_without_timeout_breaks_when_a_party_dies(method):
    # The stdlib would wait forever for the third party; gomp gives up on a
    # barrier that can no longer fill as designed, as if it had timed out.
    out = _run(
        """
    b = ctx.Barrier(3)
    dead = ctx.Process(target=h.wait_on_barrier, args=(b,))
    live = ctx.Process(target=h.wait_on_barrier, args=(b,))
    dead.start()
    until(lambda: b.n_waiting == 1)
    live.start()
    until(lambda: b.n_waiting == 2)
    with b._cond:
        pass
    kill(dead)
    live.join(30)
    print('live', live.exitcode)
    try:
        b.wait()
    except threading.BrokenBarrierError:
        print('broken')
    """,
        method,
    )
    assert out == ["live", "3", "broken"], out


@pytest.mark.parametrize("method", METHODS)
def test_barrier_next_round_after_a_party_died_draining(method):
    # Barrier(2): the dead party had arrived, the parent trips the barrier;
    # the dead party never leaves, so the barrier would drain forever.
    out = _run(
        """
    b = ctx.Barrier(2)
    dead = ctx.Process(target=h.wait_on_barrier, args=(b,))
    dead.start()
    until(lambda: b.n_waiting == 1)
    with b._cond:
        pass
    kill(dead)
    print('tripped', b.wait(30))
    t = threading.Thread(target=b.wait, args=(30,))
    t.start()
    print('next', b.wait(30) in (0, 1))
    t.join(30)
    """,
        method,
    )
    assert out == ["tripped", "1", "next", "True"], out


# ---- the stdlib's exception types --------------------------------------------------------------


def _raises(call):
    try:
        call()
    except Exception as e:
        return type(e), getattr(e, "errno", None)
    return None


@pytest.mark.parametrize("name", ["Semaphore", "BoundedSemaphore"])
def test_negative_semaphore_value_is_oserror_einval(name):
    with pytest.raises(OSError, match="semaphore initial value must be >= 0, not -1") as e:
        getattr(gomp, name)(-1)
    assert e.value.errno == errno.EINVAL
    assert _raises(lambda: getattr(multiprocessing, name)(-1)) == (OSError, errno.EINVAL)


@pytest.mark.parametrize("args", [("x",), (True, "x"), (False, "x"), ([],)])
def test_acquire_timeout_of_a_wrong_type_is_typeerror(args):
    # The stdlib converts the timeout before trying, so a wrong type is a
    # TypeError whether or not the lock is free or block is false; only an
    # RLock already held by the caller returns True without looking at it.
    def outcome(make, held):
        lock = make()
        if held:
            lock.acquire()
        if len(args) == 1:
            return _raises(lambda: lock.acquire(timeout=args[0]))
        return _raises(lambda: lock.acquire(*args))

    for held in (False, True):
        for name in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
            ours = outcome(getattr(gomp, name), held)
            assert ours == outcome(getattr(multiprocessing, name), held), (name, held)
            if not (held and name == "RLock"):
                assert ours == (TypeError, None), (name, held)


def test_acquire_nan_timeout_is_oserror():
    # As with the stdlib: a free lock is taken, a held one refuses to wait
    # with OSError(EINVAL) (gomp's says why).
    for mod in (gomp, multiprocessing):
        lock = mod.Lock()
        assert lock.acquire(timeout=float("nan")) is True
        assert lock.acquire(False, float("nan")) is False
        with pytest.raises(OSError) as e:
            lock.acquire(timeout=float("nan"))
        assert e.value.errno == errno.EINVAL
        if mod is gomp:
            assert "NaN" in str(e.value)


@pytest.mark.parametrize("timeout", [float("inf"), 1e19, 1e300])
@pytest.mark.parametrize("name", ["Lock", "Semaphore"])
def test_acquire_timeout_beyond_a_timespec_is_oserror(name, timeout):
    # The stdlib refuses a timeout whose seconds do not fit in a timespec
    # (inf included) with OSError(EINVAL) when it would wait, and takes a
    # free lock or semaphore as usual.
    for mod in (gomp, multiprocessing):
        lock = getattr(mod, name)(1) if name == "Semaphore" else getattr(mod, name)()
        assert lock.acquire(timeout=timeout) is True
        with pytest.raises(OSError) as e:
            lock.acquire(timeout=timeout)
        assert e.value.errno == errno.EINVAL, mod


@pytest.mark.parametrize("n", ["x", None, []])
def test_condition_notify_with_a_wrong_n_is_typeerror(n):
    for mod in (gomp, multiprocessing):
        cond = mod.Condition()
        with cond:
            with pytest.raises(TypeError):
                cond.notify(n)


def test_wrong_arguments_match_the_stdlib():
    """A table of wrong arguments to the constructors and methods of
    synchronize: gomp raises the stdlib's exception type (or nothing when
    the stdlib raises nothing)."""

    def cases(mod):
        return {
            "Semaphore(-1)": lambda: mod.Semaphore(-1),
            "BoundedSemaphore(-1)": lambda: mod.BoundedSemaphore(-1),
            "Lock().acquire(timeout='x')": lambda: mod.Lock().acquire(timeout="x"),
            "Lock().acquire(False, 'x')": lambda: mod.Lock().acquire(False, "x"),
            "Condition().notify('x')": lambda: (lambda c: (c.acquire(), c.notify("x")))(
                mod.Condition()
            ),
            "Semaphore('x')": lambda: mod.Semaphore("x"),
            "Semaphore(1.5)": lambda: mod.Semaphore(1.5),
            "Semaphore(None)": lambda: mod.Semaphore(None),
            "Semaphore(2**31)": lambda: mod.Semaphore(2**31),
            "BoundedSemaphore('x')": lambda: mod.BoundedSemaphore("x"),
            "Lock(1)": lambda: mod.Lock(1),
            "acquire(1, 2, 3)": lambda: mod.Lock().acquire(1, 2, 3),
            "acquire(None)": lambda: mod.Lock().acquire(None),
            "acquire('x')": lambda: mod.Lock().acquire("x"),
            "acquire(2.5)": lambda: mod.Lock().acquire(2.5),
            "acquire(2)": lambda: mod.Lock().acquire(2),
            "acquire(blocking=1)": lambda: mod.Lock().acquire(blocking=1),
            "release twice": lambda: (lambda l: (l.release(), l.release()))(mod.Lock()),
            "RLock().release()": lambda: mod.RLock().release(),
            "Semaphore().release('x')": lambda: mod.Semaphore().release("x"),
            "BoundedSemaphore().release()": lambda: mod.BoundedSemaphore().release(),
            "Condition('x')": lambda: mod.Condition("x"),
            "Condition().wait()": lambda: mod.Condition().wait(),
            "Condition().notify()": lambda: mod.Condition().notify(),
            "Condition().wait('x')": lambda: (lambda c: (c.acquire(), c.wait("x")))(
                mod.Condition()
            ),
            "Condition().wait_for(1)": lambda: (lambda c: (c.acquire(), c.wait_for(1)))(
                mod.Condition()
            ),
            "Event().wait('x')": lambda: mod.Event().wait("x"),
            "Barrier(1).wait('x')": lambda: mod.Barrier(1).wait("x"),
            "Barrier(2).wait('x')": lambda: mod.Barrier(2).wait("x"),
            "Barrier(2).wait(-1)": lambda: mod.Barrier(2).wait(-1),
            "Barrier(2, timeout='x').wait()": lambda: mod.Barrier(2, timeout="x").wait(),
            "Barrier(1, action=5).wait()": lambda: mod.Barrier(1, action=5).wait(),
        }

    ours, theirs = cases(gomp), cases(multiprocessing)
    got = {k: _raises(f) for k, f in ours.items()}
    want = {k: _raises(f) for k, f in theirs.items()}
    assert got == want


@pytest.mark.parametrize("method", METHODS)
def test_condition_table_full_of_dead_waiters_is_reclaimed(method):
    # A table of three slots, all left by killed waiters: the next wait()
    # frees them; a fourth live waiter, past a full table, waits by polling
    # for a slot and is still notified.
    out = _run(
        """
    from gomp import synchronize
    synchronize._TABLE_BYTES = 64
    cond, ready, result = ctx.Condition(), ctx.Semaphore(0), ctx.Semaphore(0)
    for _ in range(3):
        dead = ctx.Process(target=h.wait_on_condition, args=(cond, ready))
        dead.start()
        assert ready.acquire(timeout=30)
        with cond:
            pass
        kill(dead)
    print('full', sleepers(cond))
    lives = [ctx.Process(target=h.wait_on_condition_and_report, args=(cond, ready, result))
             for _ in range(4)]
    for p in lives:
        p.start()
        assert ready.acquire(timeout=30)
    with cond:
        pass
    until(lambda: sleepers(cond) == 3)
    woken = 0
    end = time.monotonic() + 30
    while woken < 4 and time.monotonic() < end:
        with cond:
            cond.notify_all()
        woken += result.acquire(timeout=0.05)
    print('woken', woken)
    for p in lives:
        p.join(30)
    print('left', sleepers(cond))
    """,
        method,
    )
    assert out == ["full", "3", "woken", "4", "left", "0"], out
