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
    holding the heap lock. So free() never waits for the lock: it queues the
    block in _pending_free_blocks, and whoever gets the lock without waiting
    (this free(), or the holder right after it lets the lock go, or the next
    malloc()) frees the queued blocks.

    A forked child starts with an empty heap of its own (on its first
    malloc()): it keeps using the blocks it inherited, but never frees them;
    their owner does.

    The bookkeeping has the layout that CPython's test suite inspects:
    _arenas (list), _allocated_blocks (arena -> set of (start, stop)),
    _len_to_seq (length -> the free (arena, start, stop) of that length),
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
from ._versions import V
from .context import reduction

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


class Arena:
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


def rebuild_arena(size, dupfd):
    """The arena in a child: the parent's file, mapped again."""
    return Arena(size, dupfd.detach())


def reduce_arena(arena):
    # The descriptor goes with the child's start (or through the resource
    # sharer), the size with the pickle.
    return rebuild_arena, (arena.size, reduction.DupFd(arena.fd))


reduction.register(Arena, reduce_arena)


def _checked_size(size):
    """size as an int, if a block can have it."""
    size = operator.index(size)
    if 0 <= size < sys.maxsize:
        return size
    if size < 0:
        raise ValueError(f"Size {size:n} out of range")
    raise OverflowError(f"Size {size:n} too large")


class Heap:
    """Blocks (arena, start, stop) carved out of shared arenas; see the module
    documentation."""

    _alignment = 16
    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024 * 1024
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024 * 1024

    def __init__(self, size=_PAGE):
        self._size = size  # the size of the next arena
        self._start_over()

    def _start_over(self):
        """No arenas, no blocks: a new heap, or the heap of a forked child
        (its parent's blocks are its parent's to free; the lock may have
        been held by a thread that does not exist in the child)."""
        self._lock = threading.Lock()
        self._lastpid = os.getpid()
        self._arenas = []
        # Blocks in use: arena -> {(start, stop), ...}
        self._allocated_blocks = {}
        # Free blocks, found by length (best fit: the lengths that have any,
        # sorted, and length -> {block: None}, a dict for O(1) removal) and
        # by either end (merging with a block freed next to them).
        self._lengths = []
        self._len_to_seq = {}
        self._free_at_start = {}
        self._free_at_stop = {}
        # Frees that found the lock busy (see free()).
        self._pending_free_blocks = []
        self._n_mallocs = self._n_frees = 0

    @staticmethod
    def _roundup(n, alignment):
        return (n + alignment - 1) & -alignment

    # ---- free blocks ----

    def _file_free(self, block):
        arena, start, stop = block
        same_length = self._len_to_seq.get(stop - start)
        if same_length is None:
            same_length = self._len_to_seq[stop - start] = {}
            bisect.insort(self._lengths, stop - start)
        same_length[block] = None
        self._free_at_start[arena, start] = self._free_at_stop[arena, stop] = block

    def _unfile_free(self, block):
        arena, start, stop = block
        same_length = self._len_to_seq[stop - start]
        del same_length[block]
        if not same_length:
            del self._len_to_seq[stop - start]
            self._lengths.remove(stop - start)
        del self._free_at_start[arena, start], self._free_at_stop[arena, stop]

    def _best_fit(self, size):
        """The smallest free block of at least size bytes, taken out of the
        free blocks; None if there is none."""
        i = bisect.bisect_left(self._lengths, size)
        if i == len(self._lengths):
            return None
        # The block freed last of that length: its pages are the likeliest
        # to be in the cache still.
        block = next(reversed(self._len_to_seq[self._lengths[i]]))
        self._unfile_free(block)
        return block

    def _give_back(self, block):
        """Return a block in use to the free blocks, merged with its free
        neighbours; drop its arena if that leaves it entirely free and large."""
        arena, start, stop = block
        in_use = self._allocated_blocks[arena]
        in_use.remove((start, stop))
        self._n_frees += 1
        left = self._free_at_stop.get((arena, start))
        right = self._free_at_start.get((arena, stop))
        for neighbour in filter(None, (left, right)):
            self._unfile_free(neighbour)
        if left is not None:
            start = left[1]
        if right is not None:
            stop = right[2]
        if in_use or arena.size < self._DISCARD_FREE_SPACE_LARGER_THAN:
            self._file_free((arena, start, stop))
        else:
            # Entirely free: forget the arena; its pages go back to the
            # system with the last view of it.
            del self._allocated_blocks[arena]
            self._arenas.remove(arena)

    def _free_pending(self):
        # With the lock held.
        pending = self._pending_free_blocks
        while pending:
            self._give_back(pending.pop())

    def _flush_pending(self):
        # Free the blocks queued by free(), unless someone holds the lock
        # (then they will, before they let it go or right after).
        while self._pending_free_blocks and self._lock.acquire(False):
            try:
                self._free_pending()
            finally:
                self._lock.release()

    # ---- arenas ----

    def _new_arena(self, size):
        """A new arena of at least size bytes, as one free block (not filed)."""
        length = self._roundup(max(self._size, size), _PAGE)
        if self._size < self._DOUBLE_ARENA_SIZE_UNTIL:
            self._size *= 2
        util.info('allocating a new mmap of length %d', length)
        arena = Arena(length)
        self._arenas.append(arena)
        self._allocated_blocks[arena] = set()
        return (arena, 0, length)

    def _carve(self, free_block, size):
        """The first size bytes of free_block, now in use; the rest of it
        stays free."""
        arena, start, stop = free_block
        end = start + size
        self._allocated_blocks[arena].add((start, end))
        if end < stop:
            self._file_free((arena, end, stop))
        return (arena, start, end)

    # ---- the API ----

    def malloc(self, size):
        """A block (arena, start, stop) of at least size bytes."""
        size = _checked_size(size)
        if self._lastpid != os.getpid():
            self._start_over()
        size = self._roundup(max(size, 1), self._alignment)
        with self._lock:
            self._n_mallocs += 1
            self._free_pending()
            block = self._carve(self._best_fit(size) or self._new_arena(size), size)
        self._flush_pending()
        return block

    def free(self, block):
        """Return a block from malloc(). Safe to call from a finalizer at any
        moment, in any thread (see the module documentation)."""
        if self._lastpid != os.getpid():
            raise ValueError(f"My pid ({os.getpid():n}) is not last pid {self._lastpid:n}")
        # Queued first, then freed if the lock can be had without waiting:
        # this very thread may hold it (a garbage collection inside malloc()
        # running a finalizer), and waiting would never end.
        self._pending_free_blocks.append(block)
        self._flush_pending()


class BufferWrapper:
    """size bytes of shared memory from the heap, freed when the wrapper is
    garbage collected (in the process that allocated them)."""

    _heap = Heap()

    def __init__(self, size):
        heap = BufferWrapper._heap
        block = heap.malloc(size)  # checks size
        util.Finalize(self, heap.free, args=(block,))
        self._state = (block, operator.index(size))

    def create_memoryview(self):
        """A writable memoryview of the size bytes."""
        (arena, start, _stop), size = self._state
        return memoryview(arena.buffer)[start : start + size]
