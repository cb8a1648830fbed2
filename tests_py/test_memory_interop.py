"""A ShareableList made by gomp is the standard library's, byte for byte, and
the two sides read and change each other's lists; a SharedMemory made by
gomp is attached by a stdlib process."""

import os

import pytest

from conftest import run_python
from gomp import shared_memory

STDLIB = {'GOMP_AS_MULTIPROCESSING': '0'}

# Items of every kind, with str and bytes of several lengths (slot sizes).
ITEMS = [
    7,
    -(2**63),
    2.5,
    True,
    False,
    None,
    '',
    'howdy',
    'exactly8',
    b'',
    b'\x00bytes',
    b'nine byte',
]


@pytest.fixture
def made():
    lists = []
    yield lists
    for sl in lists:
        sl.shm.close()
        try:
            sl.shm.unlink()
        except FileNotFoundError:
            pass


def test_gomp_list_has_the_stdlib_layout(made):
    sl = shared_memory.ShareableList(ITEMS)
    made.append(sl)
    out = run_python(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        items = eval(sys.argv[1])
        sl = shared_memory.ShareableList(items)
        n = sl.shm.size
        print(bytes(sl.shm.buf[:n]).hex(), n, sl.format)
        sl.shm.close()
        sl.shm.unlink()
        """,
        repr(ITEMS),
        env=STDLIB,
    ).stdout.split()
    stdlib_bytes, stdlib_size, stdlib_format = bytes.fromhex(out[0]), int(out[1]), out[2]
    assert sl.format == stdlib_format
    # Segments are rounded up to pages: compare the list's own bytes.
    used = len(stdlib_bytes.rstrip(b'\x00'))
    assert bytes(sl.shm.buf[:used]) == stdlib_bytes[:used]
    assert not any(sl.shm.buf[used : min(stdlib_size, sl.shm.size)])


def test_stdlib_reads_and_changes_a_gomp_list(made):
    sl = shared_memory.ShareableList(ITEMS)
    made.append(sl)
    out = run_python(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        sl = shared_memory.ShareableList(name=sys.argv[1])
        print(repr(list(sl)))
        sl[0] = 1.25          # int slot becomes a float
        sl[5] = 'abc'         # None slot becomes a str
        sl[7] = 'hi'          # shorter str in the same slot
        sl[-1] = None
        sl.shm.close()
        resource_tracker.unregister(sl.shm._name, 'shared_memory')
        """,
        sl.shm.name,
        env=STDLIB,
    ).stdout
    assert eval(out) == ITEMS
    expected = list(ITEMS)
    expected[0], expected[5], expected[7], expected[-1] = 1.25, 'abc', 'hi', None
    assert list(sl) == expected


def test_gomp_changes_a_stdlib_list(made):
    name = 'gomp-interop-%d' % os.getpid()
    proc = run_python(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        sl = shared_memory.ShareableList(eval(sys.argv[2]), name=sys.argv[1])
        sl.shm.close()
        resource_tracker.unregister(sl.shm._name, 'shared_memory')
        """,
        name,
        repr(ITEMS),
        env=STDLIB,
    )
    assert proc.returncode == 0
    sl = shared_memory.ShareableList(name=name)
    made.append(sl)
    assert list(sl) == ITEMS and len(sl) == len(ITEMS)
    sl[3] = 42
    sl[8] = b'8 bytes!'
    out = run_python(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        sl = shared_memory.ShareableList(name=sys.argv[1])
        print(repr((sl[3], sl[8], sl.format)))
        sl.shm.close()
        resource_tracker.unregister(sl.shm._name, 'shared_memory')
        """,
        name,
        env=STDLIB,
    ).stdout
    assert eval(out) == (42, b'8 bytes!', sl.format)
