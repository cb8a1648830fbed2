"""Processes gomp starts to serve another one do not outlive it (issue 16,
point 1): when the owner dies of SIGKILL or SIGTERM, its pool workers (fork,
spawn, forkserver, including workers started by the pool's supervisor thread),
its fork server, its resource tracker (which still removes what was leaked)
and its manager's server exit. A normal exit behaves as before, and a plain
Process of the owner is not touched (as with the standard library).

Each test runs the owner as a script in a fresh interpreter; the script
prints a JSON line describing its children and then sleeps. The test kills
it, then polls (20 s at most, a hang guard only) until the children are gone.
Set GOMP_DEATH_TIMES=1 to print how long they took.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

HANG_GUARD = 20.0  # seconds; not a performance bound

PRELUDE = r'''
import json, os, sys, time
import gomp
from gomp import forkserver, resource_tracker

def square(x):
    return x * x

def pid_of(x):
    return os.getpid()

def slow_pid_of(x):
    time.sleep(0.02)
    return os.getpid()

def sleep(seconds):
    time.sleep(seconds)

def report(**info):
    info['tracker'] = resource_tracker._resource_tracker._pid
    info['forkserver'] = forkserver._forkserver._pid
    print(json.dumps(info), flush=True)

def settled_workers(pool, n, retiring=()):
    """The pids of the pool's workers once n of them run, none of them in
    retiring (workers that reached maxtasksperchild: the pool's supervisor
    thread replaces them)."""
    while True:
        workers = list(pool._pool)
        if (len(workers) == n and all(w.is_alive() for w in workers)
                and not {w.pid for w in workers} & set(retiring)):
            return [w.pid for w in workers]
        time.sleep(0.01)
'''


def _alive(pid):
    """Whether pid runs (a zombie does not count: it has exited)."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b')') + 2 :][:1] not in (b'Z', b'X', b'x')


class Owner:
    """The owner script, running; its report (the JSON line) in .info."""

    def __init__(self, tmp_path, body):
        script = tmp_path / 'owner.py'
        script.write_text(
            PRELUDE
            + "\nif __name__ == '__main__':\n"
            + textwrap.indent(textwrap.dedent(body), '    ')
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=str(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.spared = []  # pids the test ends itself afterwards
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(HANG_GUARD)
            raise AssertionError('owner failed:\n' + self.proc.stderr.read())
        self.info = json.loads(line)

    def pids(self, *keys):
        out = []
        for key in keys:
            value = self.info.get(key)
            if value is None:
                continue
            out.extend(value if isinstance(value, list) else [value])
        return out

    def kill(self, signum):
        self.proc.send_signal(signum)
        self.proc.wait(HANG_GUARD)
        return time.monotonic()

    def finish(self):
        """Stop whatever is left (a failed test must not leave orphans)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def owners(tmp_path):
    started = []

    def start(body):
        owner = Owner(tmp_path, body)
        started.append(owner)
        return owner

    yield start
    for owner in started:
        owner.finish()
        for pid in set(owner.pids('workers', 'tracker', 'forkserver', 'manager', 'child')):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _gone_within_guard(pids, since, what):
    """Wait (at most HANG_GUARD) until none of pids runs; assert that."""
    deadline = time.monotonic() + HANG_GUARD
    live = [p for p in pids if _alive(p)]
    while live and time.monotonic() < deadline:
        time.sleep(0.01)
        live = [p for p in live if _alive(p)]
    assert not live, '%s still alive %.0f s after the owner died: %s' % (what, HANG_GUARD, live)
    if os.environ.get('GOMP_DEATH_TIMES'):
        print('\n%s: gone %.3f s after the owner died' % (what, time.monotonic() - since))


def _shm_exists(name):
    return os.path.exists('/dev/shm/' + name.lstrip('/'))


SIGNALS = [pytest.param(signal.SIGKILL, id='SIGKILL'), pytest.param(signal.SIGTERM, id='SIGTERM')]
METHODS = ['fork', 'spawn', 'forkserver']


@pytest.mark.parametrize('signum', SIGNALS)
@pytest.mark.parametrize('method', METHODS)
def test_pool_workers_end_with_their_owner(owners, method, signum):
    # maxtasksperchild=1: the workers reported are replacements, started by
    # the pool's supervisor thread, not by the thread that made the pool.
    owner = owners(
        '''
        ctx = gomp.get_context(%r)
        pool = ctx.Pool(2, maxtasksperchild=1)
        retiring = pool.map(pid_of, range(6), chunksize=1)
        report(workers=settled_workers(pool, 2, retiring))
        time.sleep(600)
    '''
        % method
    )
    workers = owner.pids('workers')
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    since = owner.kill(signum)
    _gone_within_guard(workers, since, 'pool workers (%s)' % method)
    # With the workers gone, the helpers they held open end too.
    _gone_within_guard(owner.pids('tracker', 'forkserver'), since, 'helpers (%s)' % method)


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_pool_made_in_a_thread_that_ends_keeps_its_workers(owners, method):
    # A worker whose parent is its owner follows it through the kernel's
    # parent-death signal, which also comes when the thread that started the
    # worker ends while the owner lives on: that must change nothing. The
    # workers then still end with the owner.
    owner = owners(
        """
        import threading
        ctx = gomp.get_context(%r)
        made = []

        def make():
            # Ends once both workers have run a task (so both follow the
            # owner already when this thread's end is signalled to them).
            pool = ctx.Pool(2)
            seen = set()
            while len(seen) < 2:
                seen.update(pool.map(slow_pid_of, range(4), chunksize=1))
            made.append(pool)

        maker = threading.Thread(target=make)
        maker.start()
        maker.join()
        pool = made[0]
        before = settled_workers(pool, 2)
        time.sleep(0.3)  # a worker ended by the signal would be replaced by now
        assert pool.map(square, range(20)) == [x * x for x in range(20)]
        after = settled_workers(pool, 2)
        report(workers=after, replaced=sorted(before) != sorted(after))
        time.sleep(600)
    """
        % method
    )
    assert owner.info['replaced'] is False
    workers = owner.pids('workers')
    assert all(_alive(p) for p in workers)
    since = owner.kill(signal.SIGKILL)
    _gone_within_guard(workers, since, 'pool workers (%s)' % method)


def _threads_of(pid):
    return len(os.listdir('/proc/%d/task' % pid))


def test_a_worker_follows_its_parent_without_a_thread():
    # The parent-death signal needs no thread in the worker (the fork server's
    # workers, whose parent is not their owner, keep the watcher thread).
    import gomp

    with gomp.get_context('fork').Pool(1) as pool:
        pid = pool.apply(os.getpid)
        assert pool.apply(_threads_of, (pid,)) == 1


@pytest.mark.parametrize('signum', SIGNALS)
def test_fork_server_ends_with_its_owner(owners, signum):
    # A plain Process of the owner outlives it (as with the standard
    # library) and holds the server's alive pipe: the server must not wait
    # for it.
    owner = owners('''
        ctx = gomp.get_context('forkserver')
        child = ctx.Process(target=sleep, args=(600,))
        child.start()
        report(child=child.pid)
        time.sleep(600)
    ''')
    server = owner.pids('forkserver')
    assert len(server) == 1 and _alive(server[0])
    since = owner.kill(signum)
    _gone_within_guard(server, since, 'fork server')
    (child,) = owner.pids('child')
    assert _alive(child), 'the owner\'s own Process was ended with it'


@pytest.mark.parametrize('signum', SIGNALS)
@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_resource_tracker_ends_with_its_owner_and_cleans_up(owners, method, signum):
    owner = owners(
        '''
        from gomp import shared_memory
        shm = shared_memory.SharedMemory(create=True, size=4096)  # leaked
        ctx = gomp.get_context(%r)
        pool = ctx.Pool(2)
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
        report(shm=shm.name, workers=settled_workers(pool, 2))
        time.sleep(600)
    '''
        % method
    )
    tracker = owner.pids('tracker')
    assert len(tracker) == 1 and _alive(tracker[0])
    assert _shm_exists(owner.info['shm'])
    since = owner.kill(signum)
    _gone_within_guard(tracker, since, 'resource tracker (%s)' % method)
    assert not _shm_exists(owner.info['shm']), 'the tracker did not remove the leaked segment'


@pytest.mark.parametrize('signum', SIGNALS)
@pytest.mark.parametrize('method', METHODS)
def test_manager_server_ends_with_its_owner(owners, method, signum):
    owner = owners(
        '''
        ctx = gomp.get_context(%r)
        manager = ctx.Manager()
        shared = manager.dict(a=1)
        assert shared['a'] == 1
        report(manager=manager._process.pid)
        time.sleep(600)
    '''
        % method
    )
    server = owner.pids('manager')
    assert len(server) == 1 and _alive(server[0])
    since = owner.kill(signum)
    _gone_within_guard(server, since, 'manager server (%s)' % method)


def test_shared_memory_manager_unlinks_its_segments_when_its_owner_dies(owners):
    owner = owners('''
        from gomp.managers import SharedMemoryManager
        manager = SharedMemoryManager()
        manager.start()
        block = manager.SharedMemory(4096)
        report(manager=manager._process.pid, shm=block.name)
        time.sleep(600)
    ''')
    server = owner.pids('manager')
    assert _shm_exists(owner.info['shm'])
    since = owner.kill(signal.SIGKILL)
    _gone_within_guard(server, since, 'shared memory manager server')
    # The server unlinks the segment before it exits; the tracker may also
    # try, later, and finds it gone (no warning about it either way here).
    assert not _shm_exists(owner.info['shm'])


@pytest.mark.parametrize('method', METHODS)
def test_plain_process_outlives_a_killed_owner_as_with_the_stdlib(owners, method):
    # Only processes that serve their owner follow it: a Process the user
    # started lives on, as with the standard library.
    owner = owners(
        '''
        ctx = gomp.get_context(%r)
        child = ctx.Process(target=sleep, args=(600,))
        child.start()
        pool = ctx.Pool(1)
        assert pool.apply(square, (3,)) == 9
        report(child=child.pid, workers=settled_workers(pool, 1))
        time.sleep(600)
    '''
        % method
    )
    since = owner.kill(signal.SIGKILL)
    _gone_within_guard(owner.pids('workers'), since, 'pool worker (%s)' % method)
    (child,) = owner.pids('child')
    assert _alive(child)


def test_normal_exit_behaves_as_before(owners, tmp_path):
    # The owner returns from its main block without closing anything: the
    # non-daemonic child is joined (it finishes its work), the pool's
    # workers, the manager's server and the fork server are stopped, and the
    # tracker removes the leaked segment with its usual warning.
    marker = tmp_path / 'child-done'
    owner = owners(
        '''
        from gomp import shared_memory
        shm = shared_memory.SharedMemory(create=True, size=4096)  # leaked
        ctx = gomp.get_context('forkserver')
        child = ctx.Process(target=open, args=(%r, 'w'))
        pool = ctx.Pool(2)
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
        manager = ctx.Manager()
        time.sleep(0.5)
        child.start()
        report(workers=settled_workers(pool, 2), manager=manager._process.pid, shm=shm.name)
    '''
        % str(marker)
    )
    assert owner.proc.wait(HANG_GUARD) == 0
    stderr = owner.proc.stderr.read()
    assert marker.exists(), 'the non-daemonic child was not joined:\n' + stderr
    _gone_within_guard(
        owner.pids('workers', 'manager', 'forkserver', 'tracker'),
        time.monotonic(),
        'children after a normal exit',
    )
    assert not _shm_exists(owner.info['shm'])
    assert 'leaked shared_memory' in stderr, stderr
