"""Queues survive producers and consumers killed at any point (issue 16, 2).

What "survive" means (gomp/queue/slots.go has the design):

- No stuck queue: a process killed in put() or get() gives back the slots
  of a bounded queue and the task counts of a JoinableQueue it held for
  items it had not delivered; afterwards a put and a get with a timeout
  succeed, qsize() is exact, and join() returns once the remaining tasks
  are done.
- No loss of an item whose put() returned: a bounded put returns once its
  item is complete in the shared ring, so killing the producer afterwards
  loses nothing. (It may keep the item in the process's overflow instead,
  as the stdlib's feeder buffer does, when its timeout ran out or no
  consumer took anything for a second; the producers below report such a
  put as buffered, and a buffered item of a killed producer may be lost.)
- A consumer killed in get() loses at most the item it had received: an
  item is received once its consumer moved the ring's head past it, after
  copying its bytes (an item in one record), or once it took its first
  fragment (an item larger than half the ring, streamed). So each consumer
  kill may cost one item, never more; and no item is received twice or
  corrupted.

The kill storm: producers put checksummed items (their id and a hash of the
payload, 16 B to 1 MiB) into a bounded Queue(4), a JoinableQueue(4) and a
SimpleQueue, consumers check and report them, and the test SIGKILLs
producers and consumers at random delays, replacing each. Every process
reports through a file of its own, one line per completed step, before it
takes the next. A few iterations by default; GOMP_SLOW=1 runs 1,000.
"""

import hashlib
import os
import pickle
import queue as stdqueue
import random
import signal
import tempfile
import time

import pytest

import gomp
from blocked_helpers import blocked_in_shared_futex, threads_blocked_in_shared_futex
from conftest import wait_until
from gomp import _gomp

ctx = gomp.get_context("fork")

SLOW = os.environ.get("GOMP_SLOW") == "1"
# In all, over the three kinds (GOMP_STORM_ITERATIONS overrides).
ITERATIONS = int(os.environ.get("GOMP_STORM_ITERATIONS", 1000 if SLOW else 6))
KILLS_PER_ITERATION = 6
MAX_ITEM = 1 << 20
HANG_GUARD = 30.0  # seconds: only a guard against hanging, never a measure


def _payload(rng):
    # Log-uniform sizes from 16 B to 1 MiB: small items go in one record,
    # those above half the ring (512 KiB) are streamed in fragments.
    size = int(2 ** rng.uniform(4, 20))
    return os.urandom(32) * (size // 32) + os.urandom(size % 32)


def _report(fd, line):
    os.write(fd, line.encode() + b"\n")


def _producer(q, tag, path, seed, kind):
    """Put items forever; report each put once it returned: P (the item is
    in the ring) or B (buffered in this process's overflow)."""
    rng = random.Random(seed)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    seq = 0
    while True:
        payload = _payload(rng)
        q.put((tag, seq, hashlib.blake2b(payload).digest(), payload))
        buffered = kind != "simple" and q._stat(_gomp.GOMP_QSTAT_PENDING) > 0
        _report(fd, "%s %d %d" % ("B" if buffered else "P", tag, seq))
        seq += 1


def _consumer(q, path, kind):
    """Get items forever; report G (checksum good) or X (bad), then, for a
    JoinableQueue, D once task_done() returned."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while True:
        tag, seq, digest, payload = q.get()
        good = hashlib.blake2b(payload).digest() == digest
        _report(fd, "%s %d %d" % ("G" if good else "X", tag, seq))
        if kind == "joinable":
            q.task_done()
            _report(fd, "D %d %d" % (tag, seq))


def _make(kind):
    if kind == "bounded":
        return ctx.Queue(4)
    if kind == "joinable":
        return ctx.JoinableQueue(4)
    return ctx.SimpleQueue()


def _read_reports(paths):
    lines = []
    for p in paths:
        try:
            with open(p) as f:
                data = f.read()
        except FileNotFoundError:
            continue
        # A line cut by the kill (a short write) is not a report.
        lines += [ln.split() for ln in data.split("\n") if ln.count(" ") == 2]
    return [(k, int(t), int(s)) for k, t, s in lines]


def _get(q, kind, timeout):
    if kind == "simple":
        # SimpleQueue.get() has no timeout; its C base's _get_bytes does.
        # (Not _reader.poll() then get(): the ring may hold the first part of
        # an item whose producer was killed, which get() drops before it
        # waits for the next item, as readiness may be spurious.)
        return pickle.loads(q._get_bytes(True, timeout))
    return q.get(timeout=timeout)


def _not_stuck(q, kind):
    """After every process is gone: a put and a get with a timeout succeed
    (each of a bounded queue's slots), qsize() settles at 0, and join()
    returns once the tasks left are done. Returns a problem, or None."""
    n = 4 if kind != "simple" else 1
    for i in range(n):
        try:
            if kind == "simple":
                q.put(("probe", i))
            else:
                q.put(("probe", i), timeout=HANG_GUARD)
        except stdqueue.Full:
            return "put %d of %d timed out (qsize %d, full %s, empty %s)" % (
                i + 1,
                n,
                q.qsize(),
                q.full(),
                q.empty(),
            )
    for i in range(n):
        try:
            got = _get(q, kind, HANG_GUARD)
        except stdqueue.Empty:
            return "get %d of %d timed out" % (i + 1, n)
        if got != ("probe", i):
            return "got %r instead of probe %d" % (got, i)
        if kind == "joinable":
            q.task_done()
    if kind != "simple":
        end = time.monotonic() + HANG_GUARD
        while q.qsize() != 0 and time.monotonic() < end:
            time.sleep(0.01)
        if q.qsize() != 0:
            return "qsize %d with nothing in the queue" % q.qsize()
    return None


def _storm(kind, seed, tmp):
    """One iteration; returns a dict of counts and problems."""
    rng = random.Random(seed)
    q = _make(kind)
    procs = {}  # pid -> (Process, role)
    paths = []
    tag = [0]
    kills = {"producer": 0, "consumer": 0}

    def start(role):
        path = os.path.join(tmp, "%s-%d" % (role, len(paths)))
        paths.append(path)
        if role == "producer":
            tag[0] += 1
            p = ctx.Process(target=_producer, args=(q, tag[0], path, rng.getrandbits(32), kind))
        else:
            p = ctx.Process(target=_consumer, args=(q, path, kind))
        p.daemon = True
        p.start()
        procs[p.pid] = (p, role)

    for role in ("producer", "producer", "consumer", "consumer"):
        start(role)
    for _ in range(KILLS_PER_ITERATION):
        time.sleep(rng.uniform(0.0, 0.08))
        pid = rng.choice(sorted(procs))
        p, role = procs.pop(pid)
        os.kill(pid, signal.SIGKILL)
        p.join(HANG_GUARD)
        kills[role] += 1
        start(role)
    time.sleep(rng.uniform(0.0, 0.05))
    # The end of the iteration kills the rest at a random point too.
    for pid, (_p, role) in procs.items():
        os.kill(pid, signal.SIGKILL)
        kills[role] += 1
    for p, _ in procs.values():
        p.join(HANG_GUARD)

    reports = _read_reports(paths)
    drained = []
    while True:
        try:
            item = _get(q, kind, 1.0)
        except stdqueue.Empty:
            break
        tag_, seq, digest, payload = item
        drained.append((tag_, seq, hashlib.blake2b(payload).digest() == digest))
        if kind == "joinable":
            q.task_done()

    put_ok = {(t, s) for k, t, s in reports if k == "P"}
    buffered = {(t, s) for k, t, s in reports if k == "B"}
    got = [(t, s) for k, t, s in reports if k in "GX"] + [(t, s) for t, s, _ in drained]
    bad = sum(1 for k, _, _ in reports if k == "X") + sum(1 for *_, ok in drained if not ok)
    received = set(got)
    lost = put_ok - received
    res = {
        "kills": kills["producer"] + kills["consumer"],
        "consumer_kills": kills["consumer"],
        "puts": len(put_ok) + len(buffered),
        "buffered": len(buffered),
        "buffered_lost": len(buffered - received),
        "lost": len(lost),
        "over": max(0, len(lost) - kills["consumer"]),
        "dups": len(got) - len(received),
        "bad": bad,
        "problem": None,
        "unfinished": 0,
    }
    if kind == "joinable":
        # Tasks got by a consumer killed before its task_done(): at most one
        # per consumer kill (the user's, as with the stdlib); gomp's own
        # counts must not have leaked any.
        left = q._stat(_gomp.GOMP_QSTAT_UNFINISHED)
        res["unfinished"] = left
        if not 0 <= left <= kills["consumer"]:
            res["problem"] = "%d unfinished tasks after %d consumer kills" % (
                left,
                kills["consumer"],
            )
        else:
            for _ in range(left):
                q.task_done()
            if not q._join_tasks(HANG_GUARD):
                res["problem"] = "join() does not return with no task left"
    if res["problem"] is None:
        res["problem"] = _not_stuck(q, kind)
    return res


KINDS = ["bounded", "joinable", "simple"]


def test_kill_storm(tmp_path):
    """The storm over the three kinds, one iteration of each in turn; the
    counts are printed (pytest -s), the seed on failure (GOMP_STORM_SEED
    replays it)."""
    base = int(os.environ.get("GOMP_STORM_SEED", random.randrange(1 << 30)))
    keys = ("kills", "lost", "over", "dups", "bad", "puts", "buffered", "buffered_lost")
    totals = {kind: dict(iterations=0, stuck=0, **{k: 0 for k in keys}) for kind in KINDS}
    failures = []
    for i in range(ITERATIONS):
        kind = KINDS[i % len(KINDS)]
        seed = base + i
        r = _storm(kind, seed, tempfile.mkdtemp(dir=tmp_path))
        t = totals[kind]
        t["iterations"] += 1
        for k in keys:
            t[k] += r[k]
        if r["problem"]:
            t["stuck"] += 1
        print(
            "  %s seed %d: kills %d, lost %d (consumer kills %d), buffered %d, dups %d, bad %d, "
            "%s"
            % (
                kind,
                seed,
                r["kills"],
                r["lost"],
                r["consumer_kills"],
                r["buffered"],
                r["dups"],
                r["bad"],
                r["problem"] or "not stuck",
            ),
            flush=True,
        )
        if r["problem"] or r["over"] or r["dups"] or r["bad"]:
            failures.append(
                "%s, seed %d: %s; lost %d with %d consumer kills, dups %d, bad %d"
                % (kind, seed, r["problem"], r["lost"], r["consumer_kills"], r["dups"], r["bad"])
            )
    for kind in KINDS:
        print("\nkill storm %s (GOMP_STORM_SEED=%d): %s" % (kind, base, totals[kind]))
    assert not failures, "kill storm (GOMP_STORM_SEED=%d): %s; totals %s" % (
        base,
        failures[:5],
        totals,
    )


# ---- deterministic cases -------------------------------------------------------------------


def _fill_then(q, n, path, die):
    """Put n items of 400 KiB, reporting each put once it returned; then
    wait to be killed, or (die) kill this process at once."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    _report(fd, "S 0 0")
    for i in range(n):
        q.put(("child", i, b"c" * (400 << 10)))
        _report(fd, "P 0 %d" % i)
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(3600)


def _wait_lines(path, n):
    end = time.monotonic() + HANG_GUARD
    while time.monotonic() < end:
        try:
            with open(path) as f:
                if f.read().count("\n") >= n:
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    return False


def test_producer_killed_with_items_outside_the_ring_gives_its_slots_back(tmp_path):
    """The stuck-full case of the issue: the ring is full of bytes, a
    producer's put into Queue(3) cannot write its item now, and the producer
    is killed once its put returned (the item went to its overflow, as the
    stdlib's feeder buffer takes it). Its slot comes back: the queue takes
    3 items again."""
    q = ctx.Queue(3)
    q.put(("parent", b"p" * (900 << 10)))  # 900 KiB of the 1 MiB ring
    path = str(tmp_path / "child")
    p = ctx.Process(target=_fill_then, args=(q, 1, path, False), daemon=True)
    p.start()
    try:
        assert _wait_lines(path, 2), "the child's put never returned"
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(HANG_GUARD)
    assert q.get(timeout=HANG_GUARD)[0] == "parent"
    for i in range(3):
        q.put(i, timeout=HANG_GUARD)  # queue.Full here: the dead child's slot leaked
    assert q.full() and q.qsize() == 3
    assert [q.get(timeout=HANG_GUARD) for _ in range(3)] == [0, 1, 2]
    assert q.qsize() == 0 and not q.full()


def _stream_then_stop(q, path):
    """Put an item of 3 MiB (three rings' worth): it streams, and, nobody
    consuming, the put waits in the middle of it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    _report(fd, "S 0 0")
    q.put(("big", b"b" * (3 << 20)))
    _report(fd, "P 0 0")
    time.sleep(3600)


@pytest.mark.parametrize("kind", ["bounded", "joinable"])
def test_producer_stopped_mid_put_then_killed(kind, tmp_path):
    """A producer is stopped (SIGSTOP) in the middle of putting a streamed
    item, then SIGKILLed: the slot (Queue(2)) or task count (JoinableQueue)
    of the item it never finished comes back, the fragments it left are
    dropped, and the queue works on."""
    q = ctx.Queue(2) if kind == "bounded" else ctx.JoinableQueue()
    # What this process puts may wait in its overflow behind the dead
    # producer's fragments: the exit need not feed it.
    q.cancel_join_thread()
    path = str(tmp_path / "child")
    p = ctx.Process(target=_stream_then_stop, args=(q, path), daemon=True)
    p.start()
    try:
        assert _wait_lines(path, 1)
        # The ring is full of the item's first fragments once the producer
        # waits for room (its put, or the goroutine feeding its overflow).
        wait_until(
            lambda: threads_blocked_in_shared_futex(p.pid) and not q.empty(),
            "the producer waiting for room in the middle of its item",
        )
        os.kill(p.pid, signal.SIGSTOP)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(HANG_GUARD)
    if kind == "bounded":
        for i in range(2):
            q.put(i, timeout=HANG_GUARD)  # queue.Full here: the slot leaked
        assert [q.get(timeout=HANG_GUARD) for _ in range(2)] == [0, 1]
        assert q.qsize() == 0
    else:
        q.put(7)
        assert q.get(timeout=HANG_GUARD) == 7
        q.task_done()
        # The killed producer's item never came: no task is left.
        assert q._join_tasks(HANG_GUARD), "join() waits for an item that will never come"
        with pytest.raises(ValueError):
            q.task_done()


def test_put_returned_means_in_the_ring(tmp_path):
    """A bounded put returns once its item is in the ring: a producer that
    kills itself right after its last put returned loses nothing, although
    none of its items fitted when it began (the parent makes room)."""
    q = ctx.Queue(3)
    q.put(("parent", b"p" * (900 << 10)))
    path = str(tmp_path / "child")
    p = ctx.Process(target=_fill_then, args=(q, 3, path, True), daemon=True)
    p.start()
    assert _wait_lines(path, 1)
    # Make room once the child's first put waits for it (at once: after half
    # a second a put that nobody makes room for keeps its item buffered).
    wait_until(lambda: blocked_in_shared_futex(p.pid), "the child's put waiting for room")
    got = [q.get(timeout=HANG_GUARD) for _ in range(4)]
    p.join(HANG_GUARD)
    assert p.exitcode == -signal.SIGKILL
    assert [g[0] for g in got] == ["parent", "child", "child", "child"]
    assert [g[1] for g in got[1:]] == [0, 1, 2]
