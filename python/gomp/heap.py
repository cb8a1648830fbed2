"""The shared-memory heap behind sharedctypes: blocks of memory that a process
and its children see at the same addresses of the same pages.

Arena
    One shared mapping from which blocks are carved. Its memory is an
    anonymous memory file (memfd_create(2): it never has a name in any file
    system, so nothing can leak and no /dev/shm size limit applies), mapped
    MAP_SHARED. Where memfd is missing, or for an arena larger than the
    memory the system has left, it is a file in /dev/shm (if it has room) or
    in a temporary directory, removed at once, as in the standard library.
    The pages of a memory-backed arena are reserved when it is made
    (posix_fallocate), so a machine out of shared memory gives an OSError
    there rather than a SIGBUS on first touch. A forked child inherits the mapping. For a spawn or
    forkserver child the arena is pickled as its size plus the descriptor,
    handed over with the child's start (reduction.DupFd), and the child maps
    the same file again; outside of a child's start the descriptor goes
    through the resource sharer, as the standard library does.

Heap
    malloc(size) returns a block (arena, start, stop): the smallest free block
    that fits is chosen (best fit: free blocks are kept in lists per length,
    and the lengths in a sorted list), split, and the rest stays free. Sizes
    are rounded up to 16 bytes, so every block is aligned for any ctypes type
    (long double included). free(block) merges the block with the free
    blocks on either side in its arena. When no free block fits, a new arena
    is mapped, twice as large as the previous one up to 4 MiB (or just
    large enough for the request). An arena whose blocks are all free is
    unmapped if it is at least _DISCARD_FREE_SPACE_LARGER_THAN bytes (4 MiB;
    smaller ones are kept for reuse); the memory goes back to the system when
    the last view of it (a ctypes object, a memoryview) is gone.

    free() may be called by the garbage collector at any point, in any
    thread, including while the same thread is inside malloc() or free()
    holding the heap lock. So free() only tries the lock: if it is busy, the
    block is queued in _pending_free_blocks and freed by the next malloc() or
    free() (or right after the current holder releases the lock).

    A forked child starts with an empty heap of its own (on its first
    malloc()): it keeps using the blocks it inherited, but never frees them;
    their owner does.

    The bookkeeping has the layout that CPython's test suite inspects:
    _arenas (list), _allocated_blocks (arena -> set of (start, stop)),
    _len_to_seq (length -> list of free (arena, start, stop)),
    _pending_free_blocks, _n_mallocs, _n_frees, _lock.

BufferWrapper(size)
    A block of at least size bytes from the heap (BufferWrapper._heap), freed
    when the wrapper is garbage collected; create_memoryview() gives a view
    of exactly size bytes. It pickles as its block, so a child that gets it
    maps the same memory."""

import bisect
import errno
import mmap
import operator
import os
import sys
import tempfile
import threading

from . import util
from .context import reduction
from ._versions import V

__all__ = ['BufferWrapper']

_PAGE = mmap.PAGESIZE
# Before 3.13, mmap keeps a duplicate of the descriptor it maps (two per
# arena); 3.13 can do without.
_NO_FD_COPY = {'trackfd': False} if V.mmap_trackfd else {}


def _tmpfile_dir(size):
    """Where to put the fallback file: /dev/shm if it has room (memory, not
    disk), else gomp's temporary directory."""
    if sys.platform.startswith('linux'):
        try:
            st = os.statvfs('/dev/shm')
            if st.f_bavail * st.f_frsize >= size:
                return '/dev/shm'
        except OSError:
            pass
    return util.get_temp_dir()


def _memory_available():
    """Bytes of memory and swap the system can still give (None: unknown)."""
    try:
        with open('/proc/meminfo', 'rb') as f:
            fields = dict(line.split(b':', 1) for line in f if b':' in line)
        kib = int(fields[b'MemAvailable'].split()[0])
        kib += int(fields.get(b'SwapFree', b'0').split()[0])
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return kib * 1024


_CHECK_MEMORY_ABOVE = 16 * 1024 * 1024


def _memory_file(size):
    """A new file of size bytes with no name: a memfd, unless the system has
    not that much memory left; then (as the standard library does) a file in
    /dev/shm if it has room, else in a temporary directory on disk, so that
    the request fails with ENOSPC or is served from disk instead of waking
    the out-of-memory killer."""
    fd = -1
    memfd_create = getattr(os, 'memfd_create', None)
    if memfd_create is not None and size > _CHECK_MEMORY_ABOVE:
        available = _memory_available()
        if available is not None and size > available:
            memfd_create = None
    if memfd_create is not None:
        try:
            fd = memfd_create('gomp-heap', os.MFD_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
                raise
    reserve = True
    if fd == -1:
        where = _tmpfile_dir(size)
        # On disk, size the file only: reserving could mean writing it all
        # (glibc emulates posix_fallocate where the file system lacks it).
        reserve = where == '/dev/shm'
        fd, path = tempfile.mkstemp(prefix='gomp-heap-%d-' % os.getpid(), dir=where)
        os.unlink(path)
    try:
        if reserve:
            util._reserve_file(fd, size)
        else:
            os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Arena(object):
    """A shared mapping of `size` bytes (`buffer`, an mmap) over the memory
    file `fd`. Arena(size) makes a new one; Arena(size, fd) maps an existing
    file (and takes ownership of fd)."""

    def __init__(self, size, fd=-1):
        size = operator.index(size)
        if size <= 0:
            raise ValueError('arena size must be positive, not %d' % size)
        if fd == -1:
            fd = _memory_file(size)
        else:
            try:
                actual = os.fstat(fd).st_size
            except OSError:
                os.close(fd)
                raise
            if actual < size:
                os.close(fd)
                raise ValueError('arena file has %d bytes, expected %d' % (actual, size))
        try:
            self.buffer = mmap.mmap(fd, size, **_NO_FD_COPY)
        except BaseException:
            os.close(fd)
            raise
        self.size = size
        self.fd = fd  # kept for handing the arena to children
        util.Finalize(self, os.close, (fd,))

    def __repr__(self):
        return '<%s size=%d fd=%d>' % (type(self).__name__, self.size, self.fd)


def reduce_arena(arena):
    return rebuild_arena, (arena.size, reduction.DupFd(arena.fd))


def rebuild_arena(size, dupfd):
    return Arena(size, dupfd.detach())


reduction.register(Arena, reduce_arena)


class Heap(object):
    """Blocks (arena, start, stop) carved out of shared arenas; see the module
    documentation."""

    _alignment = 16
    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024 * 1024
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024 * 1024

    def __init__(self, size=_PAGE):
        self._lastpid = os.getpid()
        self._lock = threading.Lock()
        self._size = size             # size of the next arena
        self._arenas = []
        # Free blocks: by length (best fit), and by their two ends (merging).
        self._lengths = []            # sorted lengths that have free blocks
        self._len_to_seq = {}         # length -> [(arena, start, stop), ...]
        self._free_at_start = {}      # (arena, start) -> free block
        self._free_at_stop = {}       # (arena, stop) -> free block
        # Blocks in use: arena -> {(start, stop), ...}
        self._allocated_blocks = {}
        # Frees that found the lock busy (see free()).
        self._pending_free_blocks = []
        self._n_mallocs = 0
        self._n_frees = 0

    @staticmethod
    def _roundup(n, alignment):
        return (n + alignment - 1) & -alignment

    # ---- free blocks ----

    def _insert_free(self, block):
        arena, start, stop = block
        length = stop - start
        seq = self._len_to_seq.get(length)
        if seq is None:
            self._len_to_seq[length] = [block]
            bisect.insort(self._lengths, length)
        else:
            seq.append(block)
        self._free_at_start[(arena, start)] = block
        self._free_at_stop[(arena, stop)] = block

    def _remove_free(self, block):
        arena, start, stop = block
        del self._free_at_start[(arena, start)]
        del self._free_at_stop[(arena, stop)]
        length = stop - start
        seq = self._len_to_seq[length]
        seq.remove(block)
        if not seq:
            del self._len_to_seq[length]
            del self._lengths[bisect.bisect_left(self._lengths, length)]

    def _take_free(self, size):
        """Remove and return the smallest free block of at least size bytes,
        or None."""
        i = bisect.bisect_left(self._lengths, size)
        if i == len(self._lengths):
            return None
        length = self._lengths[i]
        seq = self._len_to_seq[length]
        block = seq.pop()
        if not seq:
            del self._len_to_seq[length]
            del self._lengths[i]
        arena, start, stop = block
        del self._free_at_start[(arena, start)]
        del self._free_at_stop[(arena, stop)]
        return block

    def _release(self, block):
        """Return a block in use to the free blocks, merged with its free
        neighbours; unmap its arena if that leaves it entirely free."""
        arena, start, stop = block
        in_use = self._allocated_blocks[arena]
        in_use.remove((start, stop))
        self._n_frees += 1
        before = self._free_at_stop.get((arena, start))
        if before is not None:
            self._remove_free(before)
            start = before[1]
        after = self._free_at_start.get((arena, stop))
        if after is not None:
            self._remove_free(after)
            stop = after[2]
        if not in_use and arena.size >= self._DISCARD_FREE_SPACE_LARGER_THAN:
            # Entirely free (start == 0, stop == arena.size): forget the arena;
            # its pages go back to the system with the last view of it.
            del self._allocated_blocks[arena]
            self._arenas.remove(arena)
            return
        self._insert_free((arena, start, stop))

    def _release_pending(self):
        pending = self._pending_free_blocks
        while pending:
            self._release(pending.pop())

    # ---- arenas ----

    def _new_arena(self, size):
        length = self._roundup(max(self._size, size), _PAGE)
        if self._size < self._DOUBLE_ARENA_SIZE_UNTIL:
            self._size *= 2
        util.info('allocating a new mmap of length %d', length)
        arena = Arena(length)
        self._arenas.append(arena)
        self._allocated_blocks[arena] = set()
        return (arena, 0, length)

    # ---- the API ----

    def malloc(self, size):
        """A block (arena, start, stop) of at least size bytes."""
        size = operator.index(size)
        if size < 0:
            raise ValueError("Size {0:n} out of range".format(size))
        if sys.maxsize <= size:
            raise OverflowError("Size {0:n} too large".format(size))
        if os.getpid() != self._lastpid:
            self.__init__()  # a forked child: the parent's blocks are not ours
        size = self._roundup(max(size, 1), self._alignment)
        with self._lock:
            self._n_mallocs += 1
            self._release_pending()
            block = self._take_free(size)
            if block is None:
                block = self._new_arena(size)
            arena, start, stop = block
            if start + size < stop:
                self._insert_free((arena, start + size, stop))
            self._allocated_blocks[arena].add((start, start + size))
        self._flush_pending()
        return (arena, start, start + size)

    def free(self, block):
        """Return a block from malloc(). Safe to call from a finalizer at any
        moment: if the heap is busy, the block is freed a little later."""
        if os.getpid() != self._lastpid:
            raise ValueError("My pid ({0:n}) is not last pid {1:n}".format(
                os.getpid(), self._lastpid))
        if not self._lock.acquire(False):
            # Busy: perhaps this very thread is in malloc() and a garbage
            # collection ran a finalizer. Waiting could deadlock; defer.
            self._pending_free_blocks.append(block)
            return
        try:
            self._release_pending()
            self._release(block)
        finally:
            self._lock.release()
        self._flush_pending()

    def _flush_pending(self):
        # Blocks deferred while we held the lock: free them now, unless
        # someone else holds the lock again (then they will).
        while self._pending_free_blocks and self._lock.acquire(False):
            try:
                self._release_pending()
            finally:
                self._lock.release()


class BufferWrapper(object):
    """size bytes of shared memory from the heap, freed when the wrapper is
    garbage collected (in the process that allocated them)."""

    _heap = Heap()

    def __init__(self, size):
        size = operator.index(size)
        if size < 0:
            raise ValueError("Size {0:n} out of range".format(size))
        if sys.maxsize <= size:
            raise OverflowError("Size {0:n} too large".format(size))
        heap = BufferWrapper._heap
        block = heap.malloc(size)
        self._state = (block, size)
        util.Finalize(self, heap.free, args=(block,))

    def create_memoryview(self):
        """A writable memoryview of the size bytes."""
        (arena, start, _stop), size = self._state
        return memoryview(arena.buffer)[start:start + size]
