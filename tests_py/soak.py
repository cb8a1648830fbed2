"""Soak: a bounded kill storm over every object type and start method
(issue 16, point 8). Run by `make soak`; not collected by pytest.

    SOAK_SECONDS=600   how long to run (default 10 minutes); the round under
                       way when time runs out is finished
    SOAK_SEED=N        the base seed (printed at the start and with every
                       failed round; a round's seed replays it with
                       SOAK_ONLY=type:method)
    SOAK_ONLY=a:b,...  only these object types (or type:method pairs)
    SOAK_KEEP=1        keep the private semaphore directory at the end

Each round picks a start method (fork, spawn, forkserver) and an object
type, starts a few worker processes doing checksummed operations on one
object of that type, SIGKILLs some of them at random moments (replacing
each), kills the rest at a random moment at the end, and then verifies:

- no hang: the parent (and a fresh process where the object needs a
  partner) can still use the object; every blocking call has a generous
  timeout (HANG_GUARD), and a timeout counts as a hang;
- no loss: every item whose put()/send()/write returned (the worker reports
  it in a file of its own only after the call returned) is found;
- no corruption: every item carries a blake2b digest of its payload, and
  shared state is checked for consistency (mutual exclusion, counters);
- no leak: every process the round started is gone afterwards, and the
  semaphore files (in a private GOMP_SHM_DIR) and shared memory segments it
  made are removed once the objects are released.

At the end a table per object type x start method gives rounds, operations,
kills, hangs, losses, corruptions, leaks and the expected-by-design
outcomes; the exit status is 1 on any hang, loss, corruption or leak.

Expected by design (counted in the "expected" column, never a failure):

E1 queue-held: a consumer killed in get() may take the item it had
   received with it: lost items up to the number of consumer kills.
E2 buffered: a put() that returned with its item still in the producer's
   own overflow (the stdlib's feeder buffer does the same; the worker
   reports such a put as buffered) may lose that item when the producer
   is killed.
E3 lock-stuck: a non-robust Lock/RLock whose holder was killed stays held,
   as the stdlib's does; gomp warns the next waiter (OwnerDiedWarning).
   The round checks the warning is given and counts the lock as expected
   stuck. A robust lock must instead be taken over (not stuck). The same
   for the internal (non-robust) Lock of an Event or Barrier when a process
   is killed in the instant it holds it: a set() or reset() that hangs on
   it is expected if that lock's owner is dead (the warning tells).
E4 owner-died: a robust lock taken over from a killed holder (the
   OwnerDiedWarning the taker gets); the data it protected may be half
   written, so an inconsistent Array right after such a takeover is
   repaired, not counted as corruption.
E5 sem-units: a counting Semaphore has no owner: units held by a killed
   process are gone (as in the stdlib), at most one per kill; a semaphore
   with all its units gone is expected stuck.
E6 barrier-broken: a party killed in Barrier.wait() breaks the barrier:
   the others get BrokenBarrierError (not a hang), and the parent resets it.
E7 worker-lost: a Pool task running on a killed worker fails with
   WorkerLostError (a map, as a whole); every other task succeeds.
E8 torn-write: a shared_memory slot whose writer was killed mid-write is
   marked in progress (its sequence number is written last), not corrupt.
E9 manager-extra: a manager dict/list may hold the item a killed client
   was writing (its call had reached the server but not returned).
E10 pipe-tail: a sender killed mid-send leaves a truncated message: the
   receiver gets EOFError for that connection (never a bad object).
"""

import collections
import gc
import hashlib
import os
import queue as stdqueue
import random
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import threading as _threading  # noqa: E402

import gomp  # noqa: E402
from gomp import _gomp  # noqa: E402
from gomp.pool import WorkerLostError  # noqa: E402
from gomp.synchronize import OwnerDiedWarning  # noqa: E402

HANG_GUARD = 30.0  # seconds: a guard against hangs, never a measure
METHODS = ["fork", "spawn", "forkserver"]
TYPES = [
    "queue-bounded",
    "queue-unbounded",
    "joinable",
    "simple",
    "pipe",
    "lock",
    "lock-robust",
    "rlock",
    "rlock-robust",
    "semaphore",
    "condition",
    "event",
    "barrier",
    "value-array",
    "shared-memory",
    "manager",
    "pool",
]
COLUMNS = ["rounds", "ops", "kills", "hangs", "losses", "corrupt", "leaks", "expected"]


# ---- workers (module level, so spawn and forkserver children find them) ----------------------


def _open_report(path):
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def _report(fd, *fields):
    os.write(fd, (" ".join(str(f) for f in fields) + "\n").encode())


def _payload(rng, lo=4, hi=16):
    size = int(2 ** rng.uniform(lo, hi))
    return rng.randbytes(size)


def _digest(b):
    return hashlib.blake2b(b, digest_size=16).digest()


def _queue_producer(q, tag, seed, kind, path):
    """Put checksummed items forever; report P (in the queue) or B (the put
    returned with the item in this process's overflow: E2)."""
    rng = random.Random(seed)
    fd = _open_report(path)
    seq = 0
    while True:
        payload = _payload(rng, 4, 18)
        q.put((tag, seq, _digest(payload), payload))
        buffered = kind != "simple" and q._stat(_gomp.GOMP_QSTAT_PENDING) > 0
        _report(fd, "B" if buffered else "P", tag, seq)
        seq += 1


def _queue_consumer(q, kind, path):
    fd = _open_report(path)
    while True:
        tag, seq, digest, payload = q.get()
        _report(fd, "G" if _digest(payload) == digest else "X", tag, seq)
        if kind == "joinable":
            q.task_done()


def _pipe_sender(conn, tag, seed, path):
    rng = random.Random(seed)
    fd = _open_report(path)
    seq = 0
    while True:
        payload = _payload(rng, 4, 17)
        conn.send((tag, seq, _digest(payload), payload))
        _report(fd, "P", tag, seq)
        seq += 1


def _acquire_noting_death(lock, timeout):
    """acquire(timeout) -> (acquired, owner_died): whether an
    OwnerDiedWarning came with it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OwnerDiedWarning)
        ok = lock.acquire(timeout=timeout)
    return ok, any(issubclass(w.category, OwnerDiedWarning) for w in caught)


def _lock_worker(lock, arr, tag, recursive, timeout, path):
    """Mutual exclusion check: inside the lock, write our tag to arr[0],
    spin a little, check it is still ours, bump the counter arr[1]."""
    fd = _open_report(path)
    while True:
        ok, died = _acquire_noting_death(lock, timeout)
        if not ok:
            _report(fd, "T", tag, 0)
            time.sleep(3600)
        if died:
            _report(fd, "D", tag, 0)
        if recursive:
            lock.acquire()
        arr[0] = tag
        for _ in range(20):
            if arr[0] != tag:
                break
        good = arr[0] == tag
        arr[1] += 1
        if recursive:
            lock.release()
        lock.release()
        _report(fd, "O" if good else "X", tag, 0)


def _sem_worker(sem, tag, path):
    fd = _open_report(path)
    rng = random.Random(tag)
    while True:
        if not sem.acquire(timeout=5.0):
            _report(fd, "T", tag, 0)
            time.sleep(3600)
        time.sleep(rng.uniform(0, 0.002))
        sem.release()
        _report(fd, "O", tag, 0)
        time.sleep(rng.uniform(0, 0.002))


def _cond_waiter(cond, tag, path):
    fd = _open_report(path)
    while True:
        with cond:
            cond.wait(timeout=1.0)
        _report(fd, "O", tag, 0)


def _cond_notifier(cond, arr, tag, path):
    fd = _open_report(path)
    while True:
        with cond:
            arr[0] += 1
            cond.notify_all()
        _report(fd, "O", tag, 0)
        time.sleep(0.003)


def _cond_probe(cond, path):
    """One wait from a fresh process: R once waiting is certain to follow
    (we hold the lock), then W 1 if woken, W 0 on timeout."""
    fd = _open_report(path)
    with cond:
        _report(fd, "R", 0, 0)
        ok = cond.wait(timeout=HANG_GUARD)
    _report(fd, "W", int(bool(ok)), 0)


def _event_waiter(ev, tag, path):
    fd = _open_report(path)
    while True:
        ev.wait(timeout=0.5)
        _report(fd, "O", tag, 0)


def _event_setter(ev, tag, path):
    fd = _open_report(path)
    while True:
        ev.set()
        time.sleep(0.002)
        ev.clear()
        _report(fd, "O", tag, 0)
        time.sleep(0.005)


def _event_probe(ev, path):
    fd = _open_report(path)
    _report(fd, "R", 0, 0)
    _report(fd, "W", int(bool(ev.wait(timeout=HANG_GUARD))), 0)


def _barrier_worker(bar, tag, path):
    """Wait at the barrier forever: O after a passage, K when broken (E6),
    T when a wait used up its whole timeout (a hang)."""
    fd = _open_report(path)
    while True:
        t0 = time.monotonic()
        try:
            bar.wait(timeout=HANG_GUARD)
            _report(fd, "O", tag, 0)
        except _threading.BrokenBarrierError:
            if time.monotonic() - t0 >= HANG_GUARD * 0.9:
                _report(fd, "T", tag, 0)
                time.sleep(3600)
            _report(fd, "K", tag, 0)
            time.sleep(0.02)


def _barrier_probe(bar, path):
    fd = _open_report(path)
    try:
        bar.wait(timeout=HANG_GUARD)
        _report(fd, "W", 1, 0)
    except _threading.BrokenBarrierError:
        _report(fd, "W", 0, 0)


def _array_worker(arr, val, tag, path):
    """Under the array's robust lock: all 8 elements equal (else, right
    after a takeover from a killed holder, repair: E4), then write a new
    value to all and bump val."""
    fd = _open_report(path)
    lock = arr.get_lock()
    rng = random.Random(tag)
    while True:
        ok, died = _acquire_noting_death(lock, HANG_GUARD)
        if not ok:
            _report(fd, "T", tag, 0)
            time.sleep(3600)
        try:
            first = arr[0]
            consistent = all(arr[i] == first for i in range(8))
            v = rng.getrandbits(48)
            for i in range(8):
                arr[i] = v
            val.value += 1
        finally:
            lock.release()
        if died:
            _report(fd, "D", tag, 0)
        _report(fd, "O" if consistent or died else "X", tag, 0)


SLOT = 64 << 10
HEADER = struct.Struct("<q16s")


def _shm_writer(name, slot, seed, path):
    """Writes checksummed blocks into its own slot: the sequence number is
    set to -1 first and to the block's number last (E8)."""
    from gomp import shared_memory

    shm = shared_memory.SharedMemory(name=name)
    rng = random.Random(seed)
    fd = _open_report(path)
    base = slot * SLOT
    seq = 0
    while True:
        payload = rng.randbytes(SLOT - HEADER.size)
        shm.buf[base : base + 8] = struct.pack("<q", -1)
        shm.buf[base + HEADER.size : base + SLOT] = payload
        shm.buf[base + 8 : base + HEADER.size] = _digest(payload)
        shm.buf[base : base + 8] = struct.pack("<q", seq)
        _report(fd, "P", slot, seq)
        seq += 1


def _manager_client(d, lst, tag, seed, path):
    rng = random.Random(seed)
    fd = _open_report(path)
    seq = 0
    while True:
        payload = _payload(rng, 4, 12)
        d[(tag, seq)] = (_digest(payload), payload)
        lst.append((tag, seq))
        _report(fd, "P", tag, seq)
        seq += 1


def _pool_task(i, seed):
    rng = random.Random(seed * 1000 + i)
    time.sleep(rng.uniform(0, 0.02))
    payload = rng.randbytes(rng.randrange(16, 4096))
    return i, _digest(payload), payload


def _square(x):
    time.sleep(0.001)
    return x * x


# ---- the harness ---------------------------------------------------------------------------


class Round:
    """One round: the processes it started, their report files, its counts."""

    def __init__(self, kind, method, seed, tmp):
        self.kind, self.method, self.seed = kind, method, seed
        self.ctx = gomp.get_context(method)
        self.rng = random.Random(seed)
        self.tmp = tmp
        self.procs = {}  # pid -> (Process, role)
        self.all_pids = set()
        self.paths = collections.defaultdict(list)  # role -> report files
        self.kills = collections.Counter()
        self.c = collections.Counter()  # ops hangs losses corrupt leaks expected
        self.expected = collections.Counter()
        self.problems = []
        self.stuck = False  # E3 on an internal lock: the object is unusable

    def start(self, role, target, args):
        path = os.path.join(self.tmp, "%s-%d" % (role, sum(map(len, self.paths.values()))))
        self.paths[role].append(path)
        p = self.ctx.Process(target=target, args=tuple(args) + (path,), daemon=True)
        p.start()
        self.procs[p.pid] = (p, role)
        self.all_pids.add(p.pid)
        return p

    def kill(self, pid):
        p, role = self.procs.pop(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.join(HANG_GUARD)
        if p.exitcode is None:
            self.problem("hangs", "killed %s %d does not exit" % (role, pid))
        self.kills[role] += 1
        return role

    def storm(self, restart, n_kills=None, roles=None, between=None):
        """Kill a random worker (of `roles`) n_kills times at random
        moments, restarting each with restart(role)."""
        n_kills = self.rng.randint(2, 5) if n_kills is None else n_kills
        for _ in range(n_kills):
            time.sleep(self.rng.uniform(0.02, 0.25))
            pids = sorted(pid for pid, (_, r) in self.procs.items() if roles is None or r in roles)
            if not pids:
                break
            role = self.kill(self.rng.choice(pids))
            if between:
                between(role)
            restart(role)
        time.sleep(self.rng.uniform(0.02, 0.2))

    def kill_all(self):
        for pid in list(self.procs):
            self.kill(pid)

    def reports(self, role=None):
        out = []
        for r, paths in self.paths.items():
            if role is not None and r != role:
                continue
            for path in paths:
                try:
                    with open(path) as f:
                        data = f.read()
                except FileNotFoundError:
                    continue
                for ln in data.split("\n"):
                    parts = ln.split()
                    if len(parts) == 3:  # a line cut by the kill is no report
                        out.append((parts[0], int(parts[1]), int(parts[2])))
        return out

    def problem(self, column, text):
        self.c[column] += 1
        self.problems.append("%s: %s" % (column, text))

    def expect(self, rule, n=1):
        if n:
            self.expected[rule] += n


def guarded(fn, *args):
    """Runs fn(*args) in a thread; returns (done, result or exception)."""
    box = []

    def run():
        try:
            box.append((True, fn(*args)))
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            box.append((False, e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG_GUARD)
    if t.is_alive():
        return False, None
    return True, box[0][1] if box[0][0] else box[0][1]


def held_by_dead(lock):
    """True if lock (a Lock or RLock) is held by a process that is gone.
    (Not the OwnerDiedWarning: a process is warned only once.)"""
    pid = lock._owner()
    return pid is not None and pid > 0 and not _alive(pid)


def stuck_by_dead_owner(R, lock, what):
    """After a call that hung on an object built on a non-robust internal
    Lock (Event, Barrier): if that lock is held by a killed process (E3),
    count it as expected, else as a hang. Either way the object is stuck."""
    R.stuck = True
    if held_by_dead(lock):
        R.expect("E3 lock-stuck (internal lock)")
    else:
        R.problem("hangs", what)


def wait_lines(path, kind, n=1):
    """Waits (HANG_GUARD at most) for n report lines starting with kind;
    returns them."""
    end = time.monotonic() + HANG_GUARD
    while time.monotonic() < end:
        try:
            with open(path) as f:
                lines = [ln.split() for ln in f.read().split("\n") if ln.startswith(kind + " ")]
        except FileNotFoundError:
            lines = []
        if len(lines) >= n:
            return lines
        time.sleep(0.01)
    return None


# ---- one round per object type -------------------------------------------------------------


def round_queue(R, kind):
    import test_faults_queue as tq

    ctx = R.ctx
    q = {
        "queue-bounded": lambda: ctx.Queue(4),
        "queue-unbounded": ctx.Queue,
        "joinable": lambda: ctx.JoinableQueue(4),
        "simple": ctx.SimpleQueue,
    }[R.kind]()
    qk = {"joinable": "joinable", "simple": "simple"}.get(R.kind, "bounded")
    tag = [0]

    def start(role):
        if role == "producer":
            tag[0] += 1
            R.start(role, _queue_producer, (q, tag[0], R.rng.getrandbits(32), qk))
        else:
            R.start(role, _queue_consumer, (q, qk))

    for role in ("producer", "producer", "consumer", "consumer"):
        start(role)
    R.storm(start)
    R.kill_all()
    reps = R.reports()
    drained = []
    while True:
        try:
            t, s, digest, payload = tq._get(q, qk, 1.0)
        except stdqueue.Empty:
            break
        drained.append((t, s, _digest(payload) == digest))
        if qk == "joinable":
            q.task_done()
    put_ok = {(t, s) for k, t, s in reps if k == "P"}
    buffered = {(t, s) for k, t, s in reps if k == "B"}
    got = [(t, s) for k, t, s in reps if k in "GX"] + [(t, s) for t, s, _ in drained]
    received = set(got)
    bad = sum(1 for k, *_ in reps if k == "X") + sum(1 for *_, ok in drained if not ok)
    lost = len(put_ok - received)
    ckills = R.kills["consumer"]
    R.c["ops"] += len(put_ok) + len(buffered) + len(got)
    R.expect("E1 queue-held", min(lost, ckills))
    R.expect("E2 buffered", len(buffered - received))
    if lost > ckills:
        R.problem("losses", "%d items lost with %d consumer kills" % (lost, ckills))
    if bad:
        R.problem("corrupt", "%d items with a bad checksum" % bad)
    if len(got) != len(received):
        R.problem("corrupt", "%d items received twice" % (len(got) - len(received)))
    if qk == "joinable":
        left = q._stat(_gomp.GOMP_QSTAT_UNFINISHED)
        if not 0 <= left <= ckills:
            R.problem("losses", "%d unfinished tasks after %d consumer kills" % (left, ckills))
        else:
            for _ in range(left):
                q.task_done()
            if not q._join_tasks(HANG_GUARD):
                R.problem("hangs", "join() does not return with no task left")
    trouble = tq._not_stuck(q, qk)
    if trouble:
        R.problem("hangs", "queue stuck: " + trouble)
    if qk != "simple":
        q.close()
        q.join_thread()


def round_pipe(R):
    ctx = R.ctx
    readers = {}
    tag = [0]

    def start(role):
        tag[0] += 1
        r, w = ctx.Pipe(duplex=False)
        R.start(role, _pipe_sender, (w, tag[0], R.rng.getrandbits(32)))
        w.close()
        readers[r] = tag[0]

    received, bad, odd, tails = [], [0], [], [0]
    stop = threading.Event()

    def drain(block):
        while readers:
            ready = gomp.connection.wait(list(readers), timeout=0.05 if block else 0)
            if not ready:
                if stop.is_set() or not block:
                    return
                continue
            for r in ready:
                try:
                    t, s, digest, payload = r.recv()
                except EOFError:
                    del readers[r]
                    r.close()
                    continue
                except OSError as e:
                    # E10: the stdlib's error for a message cut short.
                    if "end of file during message" not in str(e):
                        odd.append(repr(e))
                    else:
                        tails[0] += 1
                    del readers[r]
                    r.close()
                    continue
                except Exception as e:  # noqa: BLE001 - a truncated message is a fault
                    odd.append(repr(e))
                    del readers[r]
                    r.close()
                    continue
                received.append((t, s))
                if _digest(payload) != digest:
                    bad[0] += 1

    th = threading.Thread(target=drain, args=(True,), daemon=True)
    for _ in range(3):
        start("sender")
    th.start()
    R.storm(start)
    R.kill_all()
    # Every sender is dead: each connection gives its remaining messages,
    # then EOFError (E10 for a truncated last one).
    end = time.monotonic() + HANG_GUARD
    while readers and time.monotonic() < end:
        time.sleep(0.02)
    stop.set()
    th.join(HANG_GUARD)
    if readers or th.is_alive():
        R.problem("hangs", "%d connections never reached EOF" % len(readers))
    sent = {(t, s) for k, t, s in R.reports() if k == "P"}
    R.c["ops"] += len(sent) + len(received)
    lost = sent - set(received)
    if lost:
        R.problem("losses", "%d sent messages never received" % len(lost))
    if bad[0] or odd:
        R.problem("corrupt", "%d bad checksums, errors %s" % (bad[0], odd[:3]))
    R.expect("E10 pipe-tail", tails[0])
    if tails[0] > R.kills["sender"]:
        R.problem("corrupt", "%d truncated messages for %d kills" % (tails[0], R.kills["sender"]))


def round_lock(R):
    ctx = R.ctx
    robust = R.kind.endswith("robust")
    recursive = R.kind.startswith("rlock")
    lock = (ctx.RLock if recursive else ctx.Lock)(robust=robust)
    arr = ctx.Array("q", 2, lock=False)
    # Non-robust: a worker waits 3 s at most, so that a lock left held by a
    # killed holder (E3) ends its loop rather than the round's time.
    timeout = HANG_GUARD if robust else 3.0
    tag = [0]

    def start(role):
        tag[0] += 1
        R.start(role, _lock_worker, (lock, arr, tag[0], recursive, timeout))

    for _ in range(3):
        start("worker")
    R.storm(start)
    R.kill_all()
    reps = R.reports()
    ops = sum(1 for k, *_ in reps if k == "O")
    R.c["ops"] += ops
    if any(k == "X" for k, *_ in reps):
        R.problem("corrupt", "mutual exclusion broken %d times" % sum(k == "X" for k, *_ in reps))
    kills = sum(R.kills.values())
    if not ops <= arr[1] <= ops + kills:
        R.problem(
            "losses", "counter %d for %d reported increments, %d kills" % (arr[1], ops, kills)
        )
    takeovers = sum(1 for k, *_ in reps if k == "D")
    timeouts = sum(1 for k, *_ in reps if k == "T")
    ok, died = _acquire_noting_death(lock, 1.0)
    if not ok and not died:
        ok, died = _acquire_noting_death(lock, HANG_GUARD)
    if ok:
        lock.release()
        if timeouts:
            R.problem("hangs", "%d workers timed out in acquire() of a free lock" % timeouts)
    elif not robust and (died or held_by_dead(lock)):
        R.expect("E3 lock-stuck")
    else:
        R.problem("hangs", "lock not acquirable (owner died warning: %s)" % died)
    if robust:
        R.expect("E4 owner-died", takeovers + int(died))


def round_semaphore(R):
    ctx = R.ctx
    sem = ctx.Semaphore(3)
    tag = [0]

    def start(role):
        tag[0] += 1
        R.start(role, _sem_worker, (sem, tag[0]))

    for _ in range(4):
        start("worker")
    R.storm(start)
    R.kill_all()
    reps = R.reports()
    R.c["ops"] += sum(1 for k, *_ in reps if k == "O")
    v = sem.get_value()
    gone = 3 - v
    kills = sum(R.kills.values())
    if not 0 <= gone <= kills:
        R.problem("losses" if gone > 0 else "corrupt", "value %d after %d kills" % (v, kills))
    R.expect("E5 sem-units", max(0, gone))
    timeouts = sum(1 for k, *_ in reps if k == "T")
    if v == 0:
        R.expect("E5 sem-units (stuck)")
    elif timeouts:
        R.problem("hangs", "%d workers timed out with %d units free" % (timeouts, v))
    n = 0
    for _ in range(max(0, v)):
        if not sem.acquire(timeout=HANG_GUARD):
            R.problem("hangs", "cannot acquire a free unit")
            break
        n += 1
    for _ in range(n):
        sem.release()


def round_condition(R):
    ctx = R.ctx
    cond = ctx.Condition(ctx.RLock(robust=True))
    arr = ctx.Array("q", 1, lock=False)
    tag = [0]

    def start(role):
        tag[0] += 1
        if role == "waiter":
            R.start(role, _cond_waiter, (cond, tag[0]))
        else:
            R.start(role, _cond_notifier, (cond, arr, tag[0]))

    for role in ("waiter", "waiter", "waiter", "notifier"):
        start(role)
    R.storm(start)
    R.kill_all()
    R.c["ops"] += sum(1 for k, *_ in R.reports() if k == "O")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OwnerDiedWarning)
        done, res = guarded(
            lambda: (cond.acquire(timeout=HANG_GUARD), cond.notify_all(), cond.release())
        )
        if not done or isinstance(res, BaseException):
            R.problem("hangs", "notify_all() after the kills: %s" % (res if done else "hung"))
            return
        p = R.start("probe", _cond_probe, (cond,))
        path = R.paths["probe"][-1]
        if wait_lines(path, "R") is None:
            R.problem("hangs", "a fresh waiter never got the lock")
            return
        done, res = guarded(
            lambda: (cond.acquire(timeout=HANG_GUARD), cond.notify_all(), cond.release())
        )
        w = wait_lines(path, "W")
        if not done or w is None or w[0][1] != "1":
            R.problem("hangs", "a fresh waiter was not woken (%s, %s)" % (done, w))
        p.join(HANG_GUARD)
        R.procs.pop(p.pid, None)


def round_event(R):
    ctx = R.ctx
    ev = ctx.Event()
    tag = [0]

    def start(role):
        tag[0] += 1
        R.start(role, _event_waiter if role == "waiter" else _event_setter, (ev, tag[0]))

    for role in ("waiter", "waiter", "waiter", "setter"):
        start(role)
    R.storm(start)
    R.kill_all()
    R.c["ops"] += sum(1 for k, *_ in R.reports() if k == "O")
    done, _ = guarded(ev.set)
    if not done:
        stuck_by_dead_owner(R, ev._lock, "set() after the kills")
        return
    if not ev.is_set():
        R.problem("corrupt", "not set after set()")
        return
    ev.clear()
    p = R.start("probe", _event_probe, (ev,))
    path = R.paths["probe"][-1]
    if wait_lines(path, "R") is None:
        R.problem("hangs", "probe did not start")
        return
    time.sleep(0.05)
    done, _ = guarded(ev.set)
    w = wait_lines(path, "W")
    if not done or w is None or w[0][1] != "1":
        R.problem("hangs", "a fresh waiter was not woken (%s, %s)" % (done, w))
    p.join(HANG_GUARD)
    R.procs.pop(p.pid, None)


def round_barrier(R):
    ctx = R.ctx
    bar = ctx.Barrier(3)
    tag = [0]

    def start(role):
        tag[0] += 1
        R.start(role, _barrier_worker, (bar, tag[0]))

    def reset(_role):
        if R.stuck:
            return
        done, _ = guarded(bar.reset)
        if not done:
            stuck_by_dead_owner(R, bar._lock, "reset() after a kill")

    for _ in range(3):
        start("worker")
    R.storm(start, between=reset)
    R.kill_all()
    reps = R.reports()
    R.c["ops"] += sum(1 for k, *_ in reps if k == "O")
    if R.stuck:
        return
    R.expect(
        "E6 barrier-broken", min(1, sum(1 for k, *_ in reps if k == "K")) * sum(R.kills.values())
    )
    if any(k == "T" for k, *_ in reps):
        R.problem("hangs", "a wait used up its whole timeout")
    done, _ = guarded(bar.reset)
    if not done:
        stuck_by_dead_owner(R, bar._lock, "reset() after the round")
        return
    probes = [R.start("probe", _barrier_probe, (bar,)) for _ in range(2)]
    t0 = time.monotonic()
    try:
        bar.wait(timeout=HANG_GUARD)
        ok = True
    except _threading.BrokenBarrierError:
        ok = False
    for p in probes:
        p.join(HANG_GUARD)
        R.procs.pop(p.pid, None)
    ws = [wait_lines(path, "W") for path in R.paths["probe"]]
    if not ok or any(w is None or w[0][1] != "1" for w in ws):
        R.problem(
            "hangs", "a fresh party of 3 did not pass (%.1f s, %s)" % (time.monotonic() - t0, ws)
        )


def round_value_array(R):
    ctx = R.ctx
    arr = ctx.Array("q", 8, lock=ctx.RLock(robust=True))
    val = ctx.Value("q", 0, lock=False)
    tag = [0]

    def start(role):
        tag[0] += 1
        R.start(role, _array_worker, (arr, val, tag[0]))

    for _ in range(3):
        start("worker")
    R.storm(start)
    R.kill_all()
    reps = R.reports()
    ops = sum(1 for k, *_ in reps if k == "O")
    R.c["ops"] += ops
    R.expect("E4 owner-died", sum(1 for k, *_ in reps if k == "D"))
    if any(k in "XT" for k, *_ in reps):
        R.problem(
            "corrupt",
            "inconsistent array without a takeover or acquire timeout: %s"
            % collections.Counter(k for k, *_ in reps),
        )
    kills = sum(R.kills.values())
    if not ops <= val.value <= ops + kills:
        R.problem("losses", "counter %d for %d reported increments" % (val.value, ops))
    ok, died = _acquire_noting_death(arr.get_lock(), HANG_GUARD)
    if not ok:
        R.problem("hangs", "the array's robust lock is not acquirable")
        return
    R.expect("E4 owner-died", int(died))
    first = arr[0]
    if not died and any(arr[i] != first for i in range(8)):
        R.problem("corrupt", "array inconsistent at the end")
    arr.get_lock().release()


def round_shared_memory(R):
    from gomp import shared_memory

    nslots = 16
    shm = shared_memory.SharedMemory(create=True, size=nslots * SLOT)
    R.shm_names.append(shm.name)
    slot = [0]
    slots = {}  # the slots given to a writer
    for s in range(nslots):  # -2: never written (a writer killed at once)
        shm.buf[s * SLOT : s * SLOT + 8] = struct.pack("<q", -2)

    def start(role):
        if slot[0] >= nslots:
            return
        R.start(role, _shm_writer, (shm.name, slot[0], R.rng.getrandbits(32)))
        slots[slot[0]] = True
        slot[0] += 1

    for _ in range(3):
        start("writer")
    R.storm(start)
    R.kill_all()
    last = {}
    for _k, s, seq in R.reports():
        last[s] = max(last.get(s, -1), seq)
    R.c["ops"] += sum(v + 1 for v in last.values())
    for s in slots:
        base = s * SLOT
        seq, digest = HEADER.unpack_from(shm.buf, base)
        if seq == -1:
            R.expect("E8 torn-write")
            continue
        if seq == -2:
            if s in last:
                R.problem("losses", "slot %d: reported blocks not there" % s)
            continue
        if seq < last.get(s, -1):
            R.problem("losses", "slot %d holds block %d, %d was written" % (s, seq, last[s]))
        if _digest(bytes(shm.buf[base + HEADER.size : base + SLOT])) != digest:
            R.problem("corrupt", "slot %d block %d has a bad checksum" % (s, seq))
    # The parent can still write and read it.
    shm.buf[:4] = b"soak"
    if bytes(shm.buf[:4]) != b"soak":
        R.problem("corrupt", "parent write not read back")
    shm.close()
    shm.unlink()


def round_manager(R):
    ctx = R.ctx
    mgr = ctx.Manager()
    R.all_pids.add(mgr._process.pid)
    d, lst = mgr.dict(), mgr.list()
    tag = [0]

    def start(role):
        tag[0] += 1
        R.start(role, _manager_client, (d, lst, tag[0], R.rng.getrandbits(32)))

    for _ in range(3):
        start("client")
    R.storm(start)
    R.kill_all()
    done, res = guarded(lambda: (d.copy(), list(lst)))
    if not done or isinstance(res, BaseException):
        R.problem("hangs", "the manager after the kills: %r" % (res,))
    else:
        items, listed = res
        listed = set(listed)
        written = {(t, s) for k, t, s in R.reports() if k == "P"}
        R.c["ops"] += len(written) + len(items)
        missing = [k for k in written if k not in items or k not in listed]
        if missing:
            R.problem("losses", "%d written items missing" % len(missing))
        bad = sum(1 for k, (dg, pl) in items.items() if _digest(pl) != dg)
        if bad:
            R.problem("corrupt", "%d items with a bad checksum" % bad)
        R.expect("E9 manager-extra", len(set(items) - written))
    done, res = guarded(mgr.shutdown)
    if not done:
        R.problem("hangs", "manager shutdown()")


def round_pool(R):
    ctx = R.ctx
    pool = ctx.Pool(2)
    seed = R.rng.getrandbits(16)
    seen = set()

    def note_workers():
        seen.update(w.pid for w in list(pool._pool))

    note_workers()
    asyncs = [pool.apply_async(_pool_task, (i, seed)) for i in range(60)]
    mapped = pool.map_async(_square, range(40), chunksize=4)
    kills = 0
    for _ in range(R.rng.randint(1, 3)):
        time.sleep(R.rng.uniform(0.01, 0.2))
        note_workers()
        pids = [w.pid for w in list(pool._pool) if w.is_alive()]
        if pids:
            try:
                os.kill(R.rng.choice(pids), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
    R.kills["worker"] += kills
    lost = 0
    for i, a in enumerate(asyncs):
        try:
            j, digest, payload = a.get(HANG_GUARD)
            if j != i or _digest(payload) != digest:
                R.problem("corrupt", "task %d returned a bad result" % i)
            R.c["ops"] += 1
        except WorkerLostError:
            lost += 1
        except gomp.TimeoutError:
            R.problem("hangs", "task %d: no result" % i)
        except Exception as e:  # noqa: BLE001
            R.problem("corrupt", "task %d: %r" % (i, e))
    try:
        if mapped.get(HANG_GUARD) != [x * x for x in range(40)]:
            R.problem("corrupt", "map returned a wrong list")
        R.c["ops"] += 40
    except WorkerLostError:
        R.expect("E7 worker-lost (map)")
    except gomp.TimeoutError:
        R.problem("hangs", "map: no result")
    R.expect("E7 worker-lost", lost)
    if lost > kills:
        R.problem("losses", "%d tasks lost for %d kills" % (lost, kills))
    # The pool still works after the kills.
    try:
        if pool.map_async(_square, range(10)).get(HANG_GUARD) != [x * x for x in range(10)]:
            R.problem("corrupt", "map after the kills")
    except Exception as e:  # noqa: BLE001
        R.problem("hangs", "map after the kills: %r" % e)
    note_workers()
    R.all_pids |= seen
    pool.close()
    done, _ = guarded(pool.join)
    if not done:
        R.problem("hangs", "pool.join()")
        pool.terminate()


ROUNDS = {
    "pipe": round_pipe,
    "semaphore": round_semaphore,
    "condition": round_condition,
    "event": round_event,
    "barrier": round_barrier,
    "value-array": round_value_array,
    "shared-memory": round_shared_memory,
    "manager": round_manager,
    "pool": round_pool,
}
for _k in ("queue-bounded", "queue-unbounded", "joinable", "simple"):
    ROUNDS[_k] = lambda R: round_queue(R, R.kind)
for _k in ("lock", "lock-robust", "rlock", "rlock-robust"):
    ROUNDS[_k] = round_lock


# ---- leaks ---------------------------------------------------------------------------------


def _alive(pid):
    """True if pid exists and is not a zombie (a zombie is reaped by its
    parent soon; ours are joined)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _children():
    me = str(os.getpid())
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.add(int(d))
    return out


def check_leaks(R, shm_dir, base_sems, base_children):
    """After the round's objects are released: its processes are gone, and
    so are its semaphore files and shared memory segments (5 s grace for
    finalizers and the resource tracker)."""
    gc.collect()
    end = time.monotonic() + 5.0
    while True:
        procs = sorted(p for p in R.all_pids if _alive(p))
        kids = sorted(_children() - base_children)
        # An object stuck on a lock of a dead process (E3) is held by the
        # thread hung in it for good: its semaphores cannot go.
        sems = [] if R.stuck else sorted(set(os.listdir(shm_dir)) - base_sems)
        shms = [n for n in R.shm_names if os.path.exists("/dev/shm/" + n.lstrip("/"))]
        if not (procs or kids or sems or shms) or time.monotonic() > end:
            break
        time.sleep(0.1)
        gc.collect()
    for what, items in (
        ("processes", procs),
        ("children", kids),
        ("semaphore files", sems),
        ("shared memory", shms),
    ):
        if items:
            R.problem("leaks", "%s left: %s" % (what, items[:5]))
            if what in ("processes", "children"):
                for pid in items:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


# ---- main ----------------------------------------------------------------------------------


def main():
    seconds = float(os.environ.get("SOAK_SECONDS", 600))
    base = int(os.environ.get("SOAK_SEED", random.randrange(1 << 30)))
    only = [x for x in os.environ.get("SOAK_ONLY", "").split(",") if x]
    combos = [
        (t, m) for t in TYPES for m in METHODS if not only or t in only or "%s:%s" % (t, m) in only
    ]
    if not combos:
        sys.exit("SOAK_ONLY matches nothing; types: %s" % ", ".join(TYPES))
    # Semaphore files in a private directory (sticky, as /dev/shm), so the
    # leak check sees only ours.
    shm_dir = tempfile.mkdtemp(prefix="gomp-soak-", dir="/dev/shm")
    os.chmod(shm_dir, 0o1777)
    os.environ["GOMP_SHM_DIR"] = shm_dir
    tmp_root = tempfile.mkdtemp(prefix="gomp-soak-")
    warnings.simplefilter("ignore", OwnerDiedWarning)
    print(
        "soak: %d s over %d object types x %d start methods (SOAK_SEED=%d)"
        % (seconds, len({t for t, _ in combos}), len({m for _, m in combos}), base),
        flush=True,
    )
    # Start the fork server and resource tracker now: they live for the
    # whole run and are not a round's leak.
    for m in METHODS:
        p = gomp.get_context(m).Process(target=time.sleep, args=(0,))
        p.start()
        p.join(HANG_GUARD)
    base_children = _children()
    table = collections.OrderedDict(((t, m), collections.Counter()) for t, m in combos)
    expected = collections.Counter()
    failed = 0
    deadline = time.monotonic() + seconds
    order = []
    i = 0
    while time.monotonic() < deadline:
        if not order:
            order = list(combos)
            random.Random(base + i).shuffle(order)
        kind, method = order.pop()
        seed = base + i
        i += 1
        tmp = tempfile.mkdtemp(dir=tmp_root)
        base_sems = set(os.listdir(shm_dir))
        R = Round(kind, method, seed, tmp)
        R.shm_names = []
        t0 = time.monotonic()
        try:
            ROUNDS[kind](R)
        except Exception as e:  # noqa: BLE001 - a round that raises is a failure to show
            R.problem(
                "hangs" if "imeout" in type(e).__name__ else "corrupt", "the round raised %r" % e
            )
        for pid in list(R.procs):
            R.kill(pid)
        check_leaks(R, shm_dir, base_sems, base_children)
        row = table[(kind, method)]
        row["rounds"] += 1
        row["kills"] += sum(R.kills.values())
        for col in ("ops", "hangs", "losses", "corrupt", "leaks"):
            row[col] += R.c[col]
        row["expected"] += sum(R.expected.values())
        expected.update(R.expected)
        shutil.rmtree(tmp, ignore_errors=True)
        if R.problems:
            failed += 1
            print(
                "FAIL %s/%s seed %d (%.1f s): %s"
                % (kind, method, seed, time.monotonic() - t0, "; ".join(R.problems)),
                flush=True,
            )
            print("     replay: SOAK_SEED=%d SOAK_ONLY=%s:%s" % (seed, kind, method), flush=True)
    # The last round's objects unregister their semaphores from the
    # resource tracker when freed: before their directory goes.
    R = None
    gc.collect()
    shutil.rmtree(tmp_root, ignore_errors=True)
    if not os.environ.get("SOAK_KEEP"):
        # Semaphores of an object stuck for good (E3, held by the hung
        # thread) are removed by the resource tracker after we exit: their
        # directory must outlive us then (it is left, empty).
        try:
            os.rmdir(shm_dir)
        except OSError:
            print("soak: %s left for the resource tracker" % shm_dir)
    else:
        print("kept", shm_dir, os.listdir(shm_dir))
    print_table(table, expected, base)
    totals = sum(table.values(), collections.Counter())
    bad = sum(totals[c] for c in ("hangs", "losses", "corrupt", "leaks"))
    print("soak: %s (%d failed rounds)" % ("FAILED" if bad else "ok", failed), flush=True)
    sys.exit(1 if bad else 0)


def print_table(table, expected, base):
    w = max(len("%s %s" % k) for k in table) + 2
    print("\n%-*s" % (w, "type / method") + "".join("%9s" % c for c in COLUMNS))
    totals = collections.Counter()
    for (t, m), row in table.items():
        totals.update(row)
        print("%-*s" % (w, "%s %s" % (t, m)) + "".join("%9d" % row[c] for c in COLUMNS))
    print("%-*s" % (w, "total") + "".join("%9d" % totals[c] for c in COLUMNS))
    if expected:
        print("expected by design: " + ", ".join("%s %d" % kv for kv in sorted(expected.items())))
    print("(SOAK_SEED=%d)" % base, flush=True)


if __name__ == "__main__":
    main()
