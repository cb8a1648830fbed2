"""Capture frames written by CPython's own multiprocessing.connection into
pickle/frame/testdata/cpython_frames.txt (one frame per line: the payload
size, a space, and the hex of the header bytes CPython wrote).

The >2 GiB header is produced by CPython's own _send_bytes without sending
the payload: the header is written first, and the capture stops there.

Run with the host Python: python tests_py/tools/gen_cpython_frames.py"""

import multiprocessing.connection as mpc
import os
import sys

OUT = os.path.join(
    os.path.dirname(__file__), '..', '..', 'pickle', 'frame', 'testdata', 'cpython_frames.txt'
)


class HeaderOnly(mpc.Connection):
    """A stdlib Connection whose writes are captured instead of sent."""

    def __init__(self):
        self.out = bytearray()
        self._handle = None
        self._readable = False
        self._writable = True

    def _send(self, buf, write=None):
        if isinstance(buf, _FakeBuffer):
            raise StopIteration  # the header is out; the payload is not needed
        self.out += bytes(buf)

    def __del__(self):
        pass


def header_of(size):
    c = HeaderOnly()
    try:
        c._send_bytes(bytes(size) if size <= 16384 else _FakeBuffer(size))
    except StopIteration:
        pass
    return bytes(c.out[: 12 if size > 0x7FFFFFFF else 4])


class _FakeBuffer:
    """len() of a big payload without allocating it (CPython's _send_bytes
    only needs len(buf) to build the header)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def main():
    sizes = [
        0,
        1,
        2,
        255,
        256,
        16383,
        65535,
        65536,
        1 << 20,
        (1 << 24) + 7,
        0x7FFFFFFE,
        0x7FFFFFFF,
        0x80000000,
        0x80000001,
        1 << 33,
        (1 << 62) + 3,
    ]
    lines = [
        '# frames written by CPython %s multiprocessing.connection (size header-hex)'
        % sys.version.split()[0]
    ]
    for n in sizes:
        lines.append('%d %s' % (n, header_of(n).hex()))
    with open(OUT, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('wrote', OUT)


if __name__ == '__main__':
    main()
