"""The shared heap (gomp.heap), ctypes objects in shared memory
(gomp.sharedctypes) and named shared memory (gomp.shared_memory)."""

import ctypes
import errno
import gc
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest

import gomp
import shared_helpers as h
from conftest import HERE, run_python
from gomp import heap, reduction, resource_tracker, shared_memory, sharedctypes

METHODS = ["fork", "spawn", "forkserver"]


@pytest.fixture(params=METHODS)
def ctx(request):
    return gomp.get_context(request.param)


@pytest.fixture
def fresh_heap(monkeypatch):
    """A pristine heap for BufferWrapper, as CPython's suite does."""
    new = heap.Heap()
    monkeypatch.setattr(heap.BufferWrapper, '_heap', new)
    return new


def run(ctx, target, *args, daemon=True):
    p = ctx.Process(target=target, args=args)
    p.daemon = daemon
    p.start()
    p.join(60)
    assert p.exitcode == 0, p
    return p


def check_heap(hp):
    """The heap's books: blocks in use and free blocks tile every arena
    exactly, free blocks are merged (never two adjacent), and the indexes
    agree with each other."""
    blocks = []
    for length, seq in hp._len_to_seq.items():
        assert seq, 'empty free list kept for length %d' % length
        for arena, start, stop in seq:
            assert stop - start == length
            blocks.append((hp._arenas.index(arena), start, stop, 'free'))
    for arena, in_use in hp._allocated_blocks.items():
        for start, stop in in_use:
            blocks.append((hp._arenas.index(arena), start, stop, 'used'))
    assert sorted(hp._lengths) == hp._lengths == sorted(hp._len_to_seq)
    blocks.sort()
    by_arena = {}
    for i, start, stop, kind in blocks:
        assert start % hp._alignment == 0 and start < stop
        by_arena.setdefault(i, []).append((start, stop, kind))
    assert sorted(by_arena) == list(range(len(hp._arenas)))
    for i, seq in by_arena.items():
        assert seq[0][0] == 0 and seq[-1][1] == hp._arenas[i].size
        for (_s1, e1, k1), (s2, _e2, k2) in zip(seq, seq[1:]):
            assert e1 == s2, 'gap or overlap in arena %d' % i
            assert not (k1 == k2 == 'free'), 'adjacent free blocks not merged'
    free = [b for b in blocks if b[3] == 'free']
    assert len(hp._free_at_start) == len(hp._free_at_stop) == len(free)


# ---- heap ---------------------------------------------------------------------------------------


def test_heap_random_pattern_keeps_books(fresh_heap):
    rnd = random.Random(1234)
    live = []
    for i in range(3000):
        size = int(rnd.lognormvariate(0, 1.2) * 700)
        w = heap.BufferWrapper(size)
        view = w.create_memoryview()
        assert len(view) == size
        if size:
            view[0] = view[-1] = i % 256
        live.append((w, i % 256))
        if len(live) > 60:
            del live[rnd.randrange(len(live))]
        if i % 500 == 0:
            with fresh_heap._lock:
                check_heap(fresh_heap)
    # Nothing written through one block reached another.
    for w, tag in live:
        view = w.create_memoryview()
        if len(view):
            assert view[0] == view[-1] == tag
    check_heap(fresh_heap)
    del w, view
    rnd.shuffle(live)
    live.clear()
    assert fresh_heap._n_frees == fresh_heap._n_mallocs == 3000
    assert fresh_heap._pending_free_blocks == []
    # Small arenas are kept, each one free block.
    check_heap(fresh_heap)
    assert all(not s for s in fresh_heap._allocated_blocks.values())
    assert sum(len(s) for s in fresh_heap._len_to_seq.values()) == len(fresh_heap._arenas)


def open_fds():
    return len(os.listdir('/proc/self/fd'))


def test_heap_returns_free_arenas_to_system(fresh_heap):
    fresh_heap._DISCARD_FREE_SPACE_LARGER_THAN = 0
    gc.collect()
    fds_before = open_fds()
    ws = [heap.BufferWrapper(n) for n in (10, 5000, 70000, 3, 1 << 20)]
    assert fresh_heap._arenas
    assert open_fds() > fds_before
    del ws
    assert fresh_heap._arenas == [] and fresh_heap._allocated_blocks == {}
    assert fresh_heap._len_to_seq == {} and fresh_heap._lengths == []
    gc.collect()
    assert open_fds() == fds_before  # the arenas' descriptors were closed with them


def test_heap_large_block_gets_own_arena_and_is_unmapped(fresh_heap):
    small = heap.BufferWrapper(100)
    big = heap.BufferWrapper(16 << 20)
    assert len(fresh_heap._arenas) == 2
    arena = big._state[0][0]
    assert arena.size == 16 << 20
    big.create_memoryview()[-1] = 7
    del big
    assert fresh_heap._arenas == [small._state[0][0]]


def test_heap_best_fit_and_merging(fresh_heap):
    ws = [heap.BufferWrapper(s) for s in (64, 32, 64, 16, 64, 48, 64)]
    arena = ws[0]._state[0][0]
    assert all(w._state[0][0] is arena for w in ws)
    starts = [w._state[0][1] for w in ws]
    assert starts == sorted(starts)
    # Free the 32-byte and 48-byte holes (between 64-byte blocks).
    del ws[5], ws[1]
    # A 40-byte request takes the 48-byte hole (the smallest that fits),
    # not the 32-byte one nor the arena's tail.
    w40 = heap.BufferWrapper(40)
    assert w40._state[0][1] == starts[5]
    # Freeing neighbours merges them: 64+16+64 around index 2..4 of the
    # original list become one block.
    del ws[1:4]  # the blocks that started at starts[2], starts[3], starts[4]
    lengths = sorted(
        stop - start for seq in fresh_heap._len_to_seq.values() for (_a, start, stop) in seq
    )
    assert 32 + 64 + 16 + 64 in lengths  # 32-byte hole merged with 64+16+64
    check_heap(fresh_heap)


def test_heap_alignment_fits_any_ctype(fresh_heap):
    for size in (1, 3, 7, 10, 17, 33):
        w = heap.BufferWrapper(size)
        assert w._state[0][1] % 16 == 0
    v = sharedctypes.RawValue(ctypes.c_longdouble, 1.5)
    assert ctypes.addressof(v) % ctypes.alignment(ctypes.c_longdouble) == 0
    assert v.value == 1.5


def test_heap_rejects_bad_sizes(fresh_heap):
    with pytest.raises(ValueError):
        heap.BufferWrapper(-1)
    with pytest.raises(OverflowError):
        heap.BufferWrapper(sys.maxsize)
    with pytest.raises(TypeError):
        heap.BufferWrapper(1.5)
    assert fresh_heap._n_mallocs == 0
    w = heap.BufferWrapper(0)
    assert len(w.create_memoryview()) == 0


def test_heap_free_while_busy_is_deferred(fresh_heap):
    b1 = fresh_heap.malloc(100)
    b2 = fresh_heap.malloc(100)
    with fresh_heap._lock:
        # As a finalizer run by a garbage collection inside malloc() would.
        fresh_heap.free(b1)
        assert fresh_heap._pending_free_blocks == [b1]
        assert fresh_heap._n_frees == 0
    fresh_heap.free(b2)  # frees the deferred block too
    assert fresh_heap._pending_free_blocks == []
    assert fresh_heap._n_frees == 2
    b3 = fresh_heap.malloc(10)
    with fresh_heap._lock:
        fresh_heap.free(b3)
    fresh_heap.malloc(10)  # a malloc frees deferred blocks first
    assert fresh_heap._pending_free_blocks == [] and fresh_heap._n_frees == 3
    check_heap(fresh_heap)


def test_heap_frees_from_gc_cycles(fresh_heap):
    thresholds = gc.get_threshold()
    gc.set_threshold(10)
    try:
        for _ in range(5000):
            a = heap.BufferWrapper(1)
            b = heap.BufferWrapper(1)
            a.buddy, b.buddy = b, a
        del a, b
    finally:
        gc.set_threshold(*thresholds)
    gc.collect()
    keep = heap.BufferWrapper(1)  # a malloc frees whatever was deferred
    assert fresh_heap._pending_free_blocks == []
    assert fresh_heap._n_frees == fresh_heap._n_mallocs - 1
    check_heap(fresh_heap)
    del keep


def test_heap_threads_allocate_and_free_concurrently(fresh_heap):
    """Threads allocate, and drop cyclic garbage that the collector frees
    in whichever thread runs it: no deadlock, no lost or doubled block."""
    thresholds = gc.get_threshold()
    gc.set_threshold(5)
    errors = []

    def worker(seed):
        rnd = random.Random(seed)
        try:
            keep = []
            for _ in range(2000):
                a = heap.BufferWrapper(rnd.randrange(1, 3000))
                a.cycle = a
                keep.append(a)
                if len(keep) > 20:
                    keep.pop(rnd.randrange(len(keep)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            assert not t.is_alive(), 'deadlock in the heap'
    finally:
        gc.set_threshold(*thresholds)
    assert errors == []
    gc.collect()
    _keep = heap.BufferWrapper(1)  # held: one block stays allocated
    assert fresh_heap._pending_free_blocks == []
    assert fresh_heap._n_frees == fresh_heap._n_mallocs - 1
    check_heap(fresh_heap)


def test_arena_is_an_anonymous_memory_file(fresh_heap):
    w = heap.BufferWrapper(10)
    arena = w._state[0][0]
    target = os.readlink('/proc/self/fd/%d' % arena.fd)
    assert target.startswith('/memfd:gomp-heap'), target
    assert os.fstat(arena.fd).st_size == arena.size
    assert not os.get_inheritable(arena.fd)


def test_arena_larger_than_free_memory_uses_a_file(fresh_heap, monkeypatch):
    real = heap._memory_available
    assert real() > 0  # /proc/meminfo parsed
    monkeypatch.setattr(heap, '_memory_available', lambda: 20 << 20)
    w = heap.BufferWrapper(32 << 20)
    arena = w._state[0][0]
    target = os.readlink('/proc/self/fd/%d' % arena.fd)
    assert 'gomp-heap-%d-' % os.getpid() in target and target.endswith('(deleted)'), target
    view = w.create_memoryview()
    view[-1] = 1
    assert view[-1] == 1


def test_arena_rebuilt_from_too_small_file_raises():
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(ValueError):
        heap.Arena(4096, os.memfd_create('small'))
    with pytest.raises((ValueError, OSError)):
        heap.Arena(4096, r)  # a pipe: size 0


def test_buffer_wrapper_reaches_children(ctx, fresh_heap):
    """A BufferWrapper passed to a child at its start (fork: inherited; spawn
    and forkserver: the arena's descriptor travels with the start)."""
    w = heap.BufferWrapper(5000)
    w.create_memoryview()[:] = b'\0' * 5000
    r, s = gomp.Pipe(duplex=False)
    run(ctx, h.fill_buffer, w, 0xAB, s)
    assert r.recv() == 5000
    assert bytes(w.create_memoryview()) == b'\xab' * 5000


def test_buffer_wrapper_sent_to_running_child(fresh_heap):
    """Outside of a child's start, an arena travels through the resource
    sharer (descriptor passing), as with the standard library."""
    parent, child = gomp.Pipe()
    p = gomp.get_context('spawn').Process(target=h.receive_and_fill, args=(child, 0x5A))
    p.start()
    try:
        ws = [heap.BufferWrapper(n) for n in (10, 100, 100000)]
        for w in ws:
            parent.send(w)
            assert parent.recv() == 'done'
            assert bytes(w.create_memoryview()) == b'\x5a' * len(w.create_memoryview())
        parent.send(None)
    finally:
        p.join(60)
    assert p.exitcode == 0


def test_forked_child_has_its_own_heap(fresh_heap):
    w = heap.BufferWrapper(64)
    w.create_memoryview()[:] = b'p' * 64
    r, s = gomp.Pipe(duplex=False)
    run(gomp.get_context('fork'), h.allocate_in_child, s, w)
    inherited, ok, reset, n_mallocs, unchanged = r.recv()
    assert inherited == b'p' * 64 and ok and reset and unchanged
    assert n_mallocs == 50
    # The parent's heap was not touched by the child.
    assert fresh_heap._n_mallocs == 1 and bytes(w.create_memoryview()) == b'p' * 64


def test_heap_free_in_other_process_is_refused(fresh_heap):
    block = fresh_heap.malloc(10)
    fresh_heap._lastpid = -1
    with pytest.raises(ValueError):
        fresh_heap.free(block)


# ---- sharedctypes -------------------------------------------------------------------------------

TYPECODES = [
    ('c', b'x', b'y'),
    ('u', 'x', 'y'),
    ('b', -5, 7),
    ('B', 250, 3),
    ('h', -300, 301),
    ('H', 65000, 1),
    ('i', -(2**31), 2**31 - 1),
    ('I', 2**32 - 1, 0),
    ('l', -(2**63), 5),
    ('L', 2**64 - 1, 9),
    ('q', 2**62, -(2**62)),
    ('Q', 2**64 - 1, 0),
    ('f', 1.5, -2.25),
    ('d', 1e300, -1e-300),
]


def test_value_typecodes():
    for code, first, second in TYPECODES:
        for v in (gomp.Value(code, first), gomp.RawValue(code, first)):
            assert v.value == first
            v.value = second
            assert v.value == second
        assert gomp.RawValue(code).value in (0, 0.0, b'\x00', '\x00')
    with pytest.raises(TypeError, match='unknown typecode'):
        gomp.Value('z', 1)
    with pytest.raises(TypeError):
        gomp.RawValue(object)


def test_values_across_processes(ctx):
    x = ctx.Value('i', 7)
    y = ctx.Value(ctypes.c_double, 1.0 / 3.0, lock=False)
    point = ctx.Value(h.Point, 3, 2.0, 2**33)
    arr = ctx.Array('d', range(10))
    string = ctx.Array('c', 20)
    string.value = b'hello'
    run(ctx, h.double_all, x, y, point, arr, string)
    assert x.value == 14
    assert y.value == pytest.approx(2.0 / 3.0)
    assert (point.x, point.y, point.z) == (6, 4.0, 2**34)
    assert arr[:] == [2.0 * i for i in range(10)]
    assert string.value == b'hellohello'
    r, s = ctx.Pipe(duplex=False)
    run(ctx, h.report_values, s, x, y, point, arr)
    assert r.recv() == [14, pytest.approx(2.0 / 3.0), (6, 4.0, 2**34), [2.0 * i for i in range(10)]]


def test_values_reach_grandchildren(ctx):
    outer = ctx.Value('i', 0)
    run(ctx, h.nested, ctx.get_start_method(), outer, daemon=False)
    assert outer.value == 1


def test_value_lock_is_exclusive_across_processes(ctx):
    v = ctx.Value('i', 0)
    arr = ctx.Array('q', 3)
    start = ctx.Event()
    n = 3000
    procs = [ctx.Process(target=h.increment, args=(v, n, start)) for _ in range(2)]
    procs += [ctx.Process(target=h.increment_array, args=(arr, n // 3, start)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert v.value == 3 * n
    assert arr[:] == [2 * (n // 3)] * 3


def test_value_lock_options(ctx):
    v = ctx.Value('i', 5)
    assert type(v.get_lock()).__name__ == 'RLock'
    assert isinstance(v.get_obj(), ctypes.c_int)
    v2 = ctx.Value('i', 5, lock=None)
    assert type(v2.get_lock()).__name__ == 'RLock'
    lock = ctx.Lock()
    v3 = ctx.Value('i', 5, lock=lock)
    assert v3.get_lock() is lock
    raw = ctx.Value('i', 5, lock=False)
    assert isinstance(raw, ctypes.c_int) and not hasattr(raw, 'get_lock')
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        ctx.Value('i', 5, lock='notalock')
    with pytest.raises(AttributeError):
        ctx.Array('i', 3, lock='notalock')
    # The wrapper is a context manager over its lock; acquire/release too.
    with v3:
        assert lock.locked()
    assert not lock.locked()
    assert v3.acquire() is True
    v3.release()
    # sharedctypes.Value with ctx= uses that context's lock.
    v4 = sharedctypes.Value('d', 1.0, ctx=ctx)
    assert v4.get_lock()._is_fork_ctx == (ctx.get_start_method() == 'fork')


def test_array_semantics():
    seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831]
    for arr in (gomp.Array('i', seq), gomp.RawArray('i', seq)):
        assert len(arr) == 10 and arr[3] == 821 and arr[-1] == 831
        assert list(arr[2:7]) == seq[2:7]
        arr[4:8] = [1, 2, 3, 4]
        assert list(arr[:]) == seq[:4] + [1, 2, 3, 4] + seq[8:]
        with pytest.raises(IndexError):
            arr[10]
    assert list(gomp.RawArray('i', (x for x in range(4)))) == [0, 1, 2, 3]
    assert list(gomp.Array('h', range(3))) == [0, 1, 2]
    with pytest.raises(ValueError):
        gomp.RawArray('i', -1)


def test_array_from_size_is_zeroed_even_on_reused_memory(fresh_heap):
    for _ in range(5):
        arr = gomp.Array('i', 64)
        assert list(arr) == [0] * 64
        arr[:] = range(1, 65)
        raw = gomp.RawValue('q')
        assert raw.value == 0
        raw.value = -1
        del arr, raw


def test_string_array():
    s = gomp.Array('c', 10)
    assert type(s).__name__ == 'SynchronizedString'
    s.value = b'abc'
    assert s.value == b'abc'
    assert s.raw == b'abc' + b'\0' * 7
    s.raw = b'0123456789'
    assert s.value == b'0123456789'
    assert gomp.Array('c', b'hey').value == b'hey'
    assert type(gomp.Array('u', 'wide')).__name__ == 'SynchronizedArray'


def test_structure_wrappers():
    p = gomp.Value(h.Point, 1, 2.5, 3)
    assert type(p).__name__ == 'SynchronizedPoint'
    assert (p.x, p.y, p.z) == (1, 2.5, 3)
    p.x = 10
    assert p.get_obj().x == 10
    assert type(gomp.Value(h.Point)) is type(p)  # the wrapper class is cached
    arr = gomp.Array(h.Point, [(1, 1.0, 1), (2, 2.0, 2)])
    assert arr[1].x == 2


def test_copy_and_synchronized():
    foo = h.Point(2, 5.0, 2**33)
    bar = sharedctypes.copy(foo)
    foo.x = foo.z = 0
    foo.y = 0
    assert (bar.x, bar.y, bar.z) == (2, 5.0, 2**33)
    assert isinstance(bar._wrapper, heap.BufferWrapper)
    arr = sharedctypes.copy((ctypes.c_int * 3)(1, 2, 3))
    assert list(arr) == [1, 2, 3]
    s = sharedctypes.synchronized(bar)
    assert s.x == 2 and type(s.get_lock()).__name__ == 'RLock'
    lock = gomp.Lock()
    s2 = sharedctypes.synchronized(gomp.RawValue('i', 4), lock)
    assert s2.get_lock() is lock and s2.value == 4
    with pytest.raises(AssertionError):
        sharedctypes.synchronized(s2)
    with pytest.raises(AttributeError):  # the stdlib's type
        sharedctypes.synchronized(ctypes.pointer(ctypes.c_int(1)))
    # A wrapper made directly, without a lock or context.
    direct = sharedctypes.Synchronized(gomp.RawValue('i', 9))
    assert direct.value == 9 and type(direct.get_lock()).__name__ == 'RLock'


def test_reprs():
    assert repr(gomp.Value('i', 3)) == '<Synchronized wrapper for c_int(3)>'
    r = repr(gomp.Array('i', 2))
    assert r.startswith('<SynchronizedArray wrapper for <') and 'c_int_Array_2' in r
    assert repr(gomp.Value(h.Point)).startswith('<SynchronizedPoint wrapper for <')
    assert repr(gomp.RawValue('d', 2.0)) == 'c_double(2.0)'


def test_pickling_only_while_spawning():
    v = gomp.Value('i', 1)
    for obj in (v, v.get_obj(), gomp.RawArray('i', 3), gomp.Array('i', 2)):
        with pytest.raises(RuntimeError, match='through inheritance'):
            reduction.ForkingPickler.dumps(obj)
    # A ctypes object that is not in shared memory pickles by value, even
    # with the ForkingPickler that now knows its type.
    plain = ctypes.c_int(42)
    assert pickle.loads(reduction.ForkingPickler.dumps(plain)).value == 42


# ---- shared_memory ------------------------------------------------------------------------------


def segments():
    return set(os.listdir('/dev/shm'))


@pytest.fixture
def shm():
    made = []

    def make(*args, **kwargs):
        s = shared_memory.SharedMemory(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
        try:
            s.unlink()
        except FileNotFoundError:
            pass


def test_shared_memory_basics(shm):
    s = shm(create=True, size=1000)
    assert s.name.startswith('psm_') and s._name == '/' + s.name
    assert len(s._name) <= shared_memory._SHM_SAFE_NAME_LENGTH
    assert s.name in segments()
    assert s.size >= 1000 and len(s.buf) == s.size
    assert repr(s) == "SharedMemory(%r, size=%d)" % (s.name, s.size)
    s.buf[:5] = b'hello'
    other = shared_memory.SharedMemory(s.name, size=10 * s.size)
    assert other.size == s.size and bytes(other.buf[:5]) == b'hello'
    other.buf[0] = ord('j')
    assert bytes(s.buf[:5]) == b'jello'
    other.close()
    other.close()  # twice is fine
    named = shm('gomp-test-%d' % os.getpid(), create=True, size=10)
    assert named.name == 'gomp-test-%d' % os.getpid()
    with pytest.raises(FileExistsError):
        shared_memory.SharedMemory(named.name, create=True, size=10)
    s.unlink()
    assert s.name not in segments()
    with pytest.raises(FileNotFoundError):
        s.unlink()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(s.name)


def test_shared_memory_bad_arguments():
    before = segments()
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=True, size=-1)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=True, size=0)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=True)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory()
    with pytest.raises(TypeError):
        shared_memory.SharedMemory(create=True, size=1.5)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory('a\0b')
    with pytest.raises(OSError) as e:
        shared_memory.SharedMemory('a/b', create=True, size=10)
    assert e.value.errno == errno.EINVAL
    assert segments() == before  # nothing was left behind


def test_shared_memory_name_collision_retries(shm, monkeypatch):
    first = shm(create=True, size=10)
    fresh = shared_memory._SHM_NAME_PREFIX + 'x%d' % os.getpid()
    names = iter([first._name, first._name, fresh])
    monkeypatch.setattr(shared_memory, '_make_filename', lambda: next(names))
    second = shm(create=True, size=10)
    assert second._name == fresh


def test_shared_memory_failed_setup_removes_only_what_it_made(shm, monkeypatch):
    existing = shm(create=True, size=10)
    before = segments()

    def no_room(fd, offset, size):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'posix_fallocate', no_room)
    with pytest.raises(OSError, match='cannot reserve') as e:
        shared_memory.SharedMemory(create=True, size=1 << 20)
    assert e.value.errno == errno.ENOSPC
    assert segments() == before
    # Attaching does not reserve anything: it works, and a failure to map
    # (here: a zero-size segment) does not remove someone else's segment.
    also = shared_memory.SharedMemory(existing.name)
    also.close()
    fd = os.open('/dev/shm/gomp-empty-%d' % os.getpid(), os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    try:
        with pytest.raises(ValueError):
            shared_memory.SharedMemory('gomp-empty-%d' % os.getpid())
        assert os.path.exists('/dev/shm/gomp-empty-%d' % os.getpid())
    finally:
        os.unlink('/dev/shm/gomp-empty-%d' % os.getpid())


def test_shared_memory_pickles_by_name(shm):
    s = shm(create=True, size=64)
    s.buf[:6] = b'pickle'
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        s2 = pickle.loads(pickle.dumps(s, proto))
        assert s2.name == s.name and bytes(s2.buf[:6]) == b'pickle'
        s2.buf[:6] = b'newval'
        assert bytes(s.buf[:6]) == b'newval'
        s2.buf[:6] = b'pickle'
        s2.close()
    data = pickle.dumps(s)
    s.close()
    s.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)


def test_shared_memory_across_processes(ctx, shm):
    s = shm(create=True, size=512)
    run(ctx, h.shm_write, s.name, b'howdy')
    assert bytes(s.buf[:5]) == b'howdy'
    run(ctx, h.shm_write, s, b'HELLO')
    assert bytes(s.buf[:5]) == b'HELLO'


def test_shared_memory_registration_follows_host_python(shm, monkeypatch):
    calls = []
    monkeypatch.setattr(resource_tracker, 'register', lambda n, t: calls.append(('reg', n, t)))
    monkeypatch.setattr(resource_tracker, 'unregister', lambda n, t: calls.append(('unreg', n, t)))
    s = shm(create=True, size=10)
    other = shared_memory.SharedMemory(s.name)  # attaching registers too
    other.close()
    s.unlink()
    assert calls == [('reg', s._name, 'shared_memory')] * 2 + [('unreg', s._name, 'shared_memory')]
    if sys.version_info >= (3, 13):
        calls.clear()
        t = shared_memory.SharedMemory(create=True, size=10, track=False)
        t.close()
        t.unlink()
        assert calls == []
    else:
        with pytest.raises(TypeError):
            shared_memory.SharedMemory(create=True, size=10, track=False)


def test_shared_memory_interoperates_with_stdlib(shm):
    s = shm(create=True, size=100)
    s.buf[:4] = b'gomp'
    out = run_python(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        s = shared_memory.SharedMemory(sys.argv[1])
        print(bytes(s.buf[:4]).decode(), s.size)
        s.buf[:6] = b'stdlib'
        s.close()
        resource_tracker.unregister(s._name, 'shared_memory')
        sl = shared_memory.ShareableList([1, 2.5, 'three', b'four', None, True])
        print(sl.shm.name)
        sl.shm.close()
        resource_tracker.unregister(sl.shm._name, 'shared_memory')
        """,
        s.name,
        env={'GOMP_AS_MULTIPROCESSING': '0'},
    ).stdout.split()
    assert out[:2] == ['gomp', str(s.size)]
    assert bytes(s.buf[:6]) == b'stdlib'
    sl = shared_memory.ShareableList(name=out[2])
    try:
        assert list(sl) == [1, 2.5, 'three', b'four', None, True]
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_fallback_shm_calls_match_the_c_library(shm):
    import _posixshmem

    name = '/gomp-fb-%d' % os.getpid()
    fd = shared_memory._fallback_shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, b'fallback')
        fd2 = _posixshmem.shm_open(name, os.O_RDWR)
        assert os.read(fd2, 8) == b'fallback'
        os.close(fd2)
        assert not os.get_inheritable(fd)
        with pytest.raises(FileExistsError):
            shared_memory._fallback_shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR)
    finally:
        os.close(fd)
        shared_memory._fallback_shm_unlink(name)
    for bad in ('', '/', 'a/b', '/a/b'):
        for func in (_posixshmem.shm_open, shared_memory._fallback_shm_open):
            with pytest.raises(OSError) as e:
                func(bad, os.O_RDWR)
            assert e.value.errno == errno.EINVAL, (func, bad)
    for func in (_posixshmem.shm_unlink, shared_memory._fallback_shm_unlink):
        with pytest.raises(FileNotFoundError):
            func(name)
    for func in (shared_memory._shm_unlink, shared_memory._fallback_shm_unlink):
        with pytest.raises(ValueError):
            func('a\0b')
    for func in (shared_memory._shm_open, shared_memory._fallback_shm_open):
        with pytest.raises(ValueError):
            func('a\0b', os.O_RDWR)
    # Leading slashes are dropped, as by shm_open(3).
    s = shm(create=True, size=10)
    fd = shared_memory._fallback_shm_open('//' + s.name, os.O_RDWR)
    os.close(fd)


def test_leaked_segment_of_killed_process_is_removed_by_tracker():
    """A process that created a segment is SIGKILLed: its resource tracker
    sees every writer gone, warns and removes the segment."""
    code = """
        import sys, time
        from gomp import shared_memory
        s = shared_memory.SharedMemory(create=True, size=100)
        print(s.name, flush=True)
        time.sleep(600)
        """
    import textwrap

    p = subprocess.Popen(
        [sys.executable, '-c', textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=HERE,
    )
    try:
        name = p.stdout.readline().decode().strip()
        assert name.startswith('psm_') and name in segments()
        p.send_signal(signal.SIGKILL)
        p.wait(60)
        deadline = time.monotonic() + 60
        while name in segments() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert name not in segments(), 'the tracker did not remove the leaked segment'
        # The tracker shares the process's stderr; it is closed once it exits.
        err = p.stderr.read().decode()
        assert 'leaked shared_memory objects to clean up at shutdown' in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def test_tracker_cleanup_is_shared_memory_unlink(shm):
    s = shm(create=True, size=10)
    resource_tracker._CLEANUP_FUNCS['shared_memory'](s._name)
    assert s.name not in segments()
    with pytest.raises(FileNotFoundError):
        resource_tracker._CLEANUP_FUNCS['shared_memory'](s._name)


# ---- ShareableList ------------------------------------------------------------------------------


@pytest.fixture
def sl_factory():
    made = []

    def make(*args, **kwargs):
        sl = shared_memory.ShareableList(*args, **kwargs)
        made.append(sl)
        return sl

    yield make
    for sl in made:
        sl.shm.close()
        try:
            sl.shm.unlink()
        except FileNotFoundError:
            pass


def test_shareable_list_basics(sl_factory):
    items = ['howdy', b'HoWdY', -273.154, 100, None, True, 42]
    sl = sl_factory(items)
    assert list(sl) == items and len(sl) == 7
    assert sl.format == '8s8sdqxxxxxx?xxxxxxxx?q'
    assert sl._get_packing_format(0) == '8s' and sl._get_packing_format(-1) == 'q'
    assert repr(sl) == 'ShareableList(%r, name=%r)' % (items, sl.shm.name)
    assert sl[-2] is True and sl[4] is None
    with pytest.raises(IndexError):
        sl[7]
    with pytest.raises(IndexError):
        sl[7] = 1
    with pytest.raises(IndexError):
        sl[-8]
    sl[4] = 'some'
    assert sl[4] == 'some' and sl.format == '8s8sdq8sxxxxxxx?q'
    with pytest.raises(ValueError, match='exceeds available storage'):
        sl[4] = 'far too many'
    assert sl[4] == 'some'
    sl[0] = 'encodés'
    assert sl[0] == 'encodés' and sl[1] == b'HoWdY'
    assert sl.count(42) == 1 and sl.index(100) == 3
    with pytest.raises(ValueError):
        sl.index('nope')
    other = shared_memory.ShareableList(name=sl.shm.name)
    other[-1] = 880
    assert sl[-1] == 880
    other.shm.close()
    copy = sl_factory(sl, name='gomp-sl-%d' % os.getpid())
    assert list(copy) == list(sl) and copy.format == sl.format
    empty = sl_factory()
    assert len(empty) == 0 and empty.format == '' and list(empty) == []
    assert shared_memory.ShareableList[int] is not None


def test_shareable_list_beyond_stdlib(sl_factory):
    # Non-ASCII text gets room for its bytes.
    sl = sl_factory(['€€€€', 'ok'])
    assert sl[0] == '€€€€'
    assert sl._get_packing_format(0) == '16s'
    # A value that cannot be stored changes nothing.
    nums = sl_factory([1, 2])
    with pytest.raises(struct.error):
        nums[0] = 2**70
    assert nums[0] == 1 and nums._get_packing_format(0) == 'q'
    with pytest.raises(KeyError):  # the stdlib's type
        nums[1] = [1]
    assert nums[1] == 2
    with pytest.raises(KeyError):
        sl_factory([{}])
    with pytest.raises(struct.error):
        sl_factory([2**64])
    # Any iterable.
    assert list(sl_factory(x * 2 for x in range(3))) == [0, 2, 4]


def test_shareable_list_pickling_and_children(ctx, sl_factory):
    sl = sl_factory([10, 'parent', 3.5])
    small = pickle.dumps(sl)
    big = sl_factory(range(400))
    assert len(pickle.dumps(big)) == len(small)
    again = pickle.loads(small)
    again[2] = 'x'
    assert sl[2] == 'x'
    again.shm.close()
    run(ctx, h.shareable_list_edit, sl)
    assert sl[0] == 11 and sl[1] == 'child'


def test_shareable_list_of_dead_segment():
    sl = shared_memory.ShareableList(range(3))
    data = pickle.dumps(sl)
    sl.shm.close()
    sl.shm.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)


def test_module_names():
    assert shared_memory._USE_POSIX is True
    assert shared_memory._SHM_NAME_PREFIX == '/psm_'
    for mod in (heap, sharedctypes, shared_memory):
        for name in mod.__all__:
            assert hasattr(mod, name)
    assert 'placeholder' not in (heap.BufferWrapper.__doc__ or '').lower()
