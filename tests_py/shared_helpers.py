"""Targets for test_shared.py: importable by spawn and forkserver children."""

import ctypes
import os
import sys
import time


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double), ('z', ctypes.c_longlong)]


def fill_buffer(wrapper, byte, conn=None):
    """Write byte into every byte of a BufferWrapper's memory."""
    view = wrapper.create_memoryview()
    view[:] = bytes([byte]) * len(view)
    if conn is not None:
        conn.send(len(view))


def receive_and_fill(conn, byte):
    """Get BufferWrappers over conn (None ends) and fill each with byte."""
    while True:
        wrapper = conn.recv()
        if wrapper is None:
            return
        fill_buffer(wrapper, byte)
        conn.send('done')


def double_all(x, y, point, arr, string):
    x.value *= 2
    y.value *= 2
    point.x *= 2
    point.y *= 2
    point.z *= 2
    string.value = string.value * 2
    for i in range(len(arr)):
        arr[i] *= 2


def report_values(conn, *objs):
    """Send back what the child sees of each object."""
    out = []
    for obj in objs:
        if hasattr(obj, 'get_obj'):
            obj = obj.get_obj()
        if isinstance(obj, ctypes.Array):
            out.append(list(obj))
        elif isinstance(obj, ctypes.Structure):
            out.append(tuple(getattr(obj, f[0]) for f in obj._fields_))
        else:
            out.append(obj.value)
    conn.send(out)


def increment(value, n, start=None):
    if start is not None:
        start.wait()
    for _ in range(n):
        with value.get_lock():
            value.value += 1


def increment_array(arr, n, start=None):
    if start is not None:
        start.wait()
    for _ in range(n):
        with arr.get_lock():
            for i in range(len(arr)):
                arr[i] += 1


def allocate_in_child(conn, wrapper):
    """A forked child allocates from its own heap while holding inherited
    blocks: report what it sees and whether its new blocks overlap."""
    from gomp import heap

    inherited = bytes(wrapper.create_memoryview())
    mine = [heap.BufferWrapper(100) for _ in range(50)]
    for i, w in enumerate(mine):
        w.create_memoryview()[:] = bytes([i]) * 100
    ok = all(bytes(w.create_memoryview()) == bytes([i]) * 100 for i, w in enumerate(mine))
    h = heap.BufferWrapper._heap
    conn.send(
        (
            inherited,
            ok,
            h._lastpid == os.getpid(),
            h._n_mallocs,
            bytes(wrapper.create_memoryview()) == inherited,
        )
    )


def shm_write(name_or_shm, data):
    from gomp import shared_memory

    if isinstance(name_or_shm, str):
        shm = shared_memory.SharedMemory(name_or_shm)
    else:
        shm = name_or_shm
    shm.buf[: len(data)] = data
    shm.close()


def shareable_list_edit(sl):
    sl[0] = sl[0] + 1
    sl[1] = 'child'
    sl.shm.close()


def shm_create_and_hold(conn):
    from gomp import shared_memory

    shm = shared_memory.SharedMemory(create=True, size=4096)
    shm.buf[:5] = b'child'
    conn.send(shm.name)
    time.sleep(600)


def exit_code(code):
    sys.exit(code)


def add_one(*values):
    for v in values:
        with v.get_lock():
            v.value += 1


def nested(method, outer):
    """A child that passes an inherited Value and one of its own to a
    grandchild started with method."""
    import gomp

    ctx = gomp.get_context(method)
    mine = ctx.Value('q', 100)
    p = ctx.Process(target=add_one, args=(outer, mine))
    p.start()
    p.join(60)
    if p.exitcode != 0 or mine.value != 101:
        sys.exit(1)
