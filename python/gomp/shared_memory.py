"""Named shared memory segments (SharedMemory) and a fixed-length list stored
in one (ShareableList), with the API, names and binary layout of the standard
library's multiprocessing.shared_memory: a segment made by gomp can be
attached by name from a process using the standard library, or from C with
shm_open(3), and the other way round.

Segments are POSIX shared memory objects (shm_open(3); /dev/shm/<name> on
Linux). They are opened and removed through CPython's _posixshmem module,
the platform C library's own shm_open and shm_unlink: so the name rules and
errors are exactly those of the standard library and of any other program on
the machine. Where an interpreter is built without that module, the same
calls are made on /dev/shm directly (the file and flags glibc and musl use).
The resource tracker removes a segment with the same function
(_shm_unlink).

Beyond the standard library:
  * A new segment's pages are reserved when it is created
    (posix_fallocate), so a full /dev/shm (64 MiB in a default Docker
    container) raises OSError (ENOSPC) in SharedMemory() instead of killing
    the process with SIGBUS when the memory is first written.
  * A name with a NUL character raises ValueError (before 3.13 the
    standard library silently used the part before the NUL).
  * If mapping a segment fails, the segment is removed only if this call
    created it, and the descriptor is always closed.
  * ShareableList gives a str item room for its UTF-8 bytes (the standard
    library counts characters, and silently truncates longer encodings),
    rejects a value it cannot store before changing anything, and accepts
    any iterable.

As in the host Python, every SharedMemory that creates or attaches to a
segment registers it with the resource tracker (Python 3.13+: unless
track=False), which removes it if no process unlinked it before the
processes sharing the tracker are all gone."""

import errno
import mmap
import operator
import os
import secrets
import struct
from functools import partial
from types import GenericAlias

from . import resource_tracker, util
from ._versions import V

__all__ = ['SharedMemory', 'ShareableList']

try:
    import _posixshmem
except ImportError:
    _posixshmem = None

_USE_POSIX = True
_SHM_NAME_PREFIX = '/psm_'
# FreeBSD (and other BSDs) limit names to 14 characters: the standard
# library's names are short enough for all of them, so are ours.
_SHM_SAFE_NAME_LENGTH = 14
_SHM_DIR = '/dev/shm'
_O_CREX = os.O_CREAT | os.O_EXCL


def _make_filename():
    """A random name for a new segment (with its leading slash)."""
    nbytes = (_SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)) // 2
    if nbytes < 2:
        raise ValueError('_SHM_NAME_PREFIX too long')
    return _SHM_NAME_PREFIX + secrets.token_hex(nbytes)


# ---- shm_open / shm_unlink ----


def _shm_file(name):
    """The file of the POSIX shared memory object name, as glibc and musl
    resolve it: leading slashes dropped, no other slash allowed."""
    if not isinstance(name, str):
        raise TypeError('shared memory name must be str, not %s' % type(name).__name__)
    if '\0' in name:
        raise ValueError('embedded null character')
    bare = name.lstrip('/')
    if not bare or '/' in bare or bare in ('.', '..'):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), name)
    return os.path.join(_SHM_DIR, bare)


def _fallback_shm_open(name, flags, mode=0o777):
    try:
        return os.open(_shm_file(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        code = errno.EINVAL if e.errno == errno.EISDIR else e.errno
        raise OSError(code, os.strerror(code), name) from None


def _fallback_shm_unlink(name):
    try:
        os.unlink(_shm_file(name))
    except OSError as e:
        raise OSError(e.errno, os.strerror(e.errno), name) from None


if _posixshmem is not None:
    # Before 3.13, _posixshmem passes a name with a NUL in it on to the C
    # library, which sees only the part before the NUL (another segment):
    # refuse such names on every version, as 3.13 does.
    def _shm_open(name, flags, mode=0o777):
        if isinstance(name, str) and '\0' in name:
            raise ValueError('embedded null character')
        return _posixshmem.shm_open(name, flags, mode=mode)

    def _shm_unlink(name):
        if isinstance(name, str) and '\0' in name:
            raise ValueError('embedded null character')
        return _posixshmem.shm_unlink(name)
else:
    _shm_open = _fallback_shm_open
    _shm_unlink = _fallback_shm_unlink


class SharedMemory:
    """A named shared memory segment: SharedMemory(create=True, size=n) makes a
    new one of at least n bytes under a random name; SharedMemory(name)
    attaches to an existing one (its size is the segment's own; size is
    ignored). `buf` is a memoryview of its bytes; `name` identifies it for
    other processes. close() detaches this object; unlink() removes the
    segment itself (once, from any one process)."""

    # How segments are opened; subclasses may change them (as with the
    # standard library's class).
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True

    # The state of an object that holds nothing (yet, or any more): close()
    # and unlink() work on an object whose __init__ failed half way.
    _fd = -1
    _name = _mmap = _buf = None
    _track = True

    if V.shm_track_param:

        def __init__(self, name=None, create=False, size=0, *, track=True):
            self._open(name, create, size, track)
    else:

        def __init__(self, name=None, create=False, size=0):
            self._open(name, create, size, True)

    def _open(self, name, create, size, track):
        size = operator.index(size)
        if size < 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            if not size:
                raise ValueError("'size' must be a positive number different from zero")
            self._flags = _O_CREX | os.O_RDWR
        creating = bool(self._flags & os.O_EXCL)
        if name is None and not creating:
            raise ValueError("'name' can only be None if create=True")
        self._track = track
        if name is None:
            self._fd, self._name = self._open_unused_name()
        else:
            self._name = '/' + name if self._prepend_leading_slash else name
            self._fd = _shm_open(self._name, self._flags, mode=self._mode)
        try:
            self._map(size if create else None)
        except BaseException:
            self._abandon(unlink=creating)
            raise
        if track:
            resource_tracker.register(self._name, "shared_memory")

    def _open_unused_name(self):
        """(descriptor, name) of a new segment under a random name."""
        for _attempt in range(100):
            # The module global is looked up each time: tests replace it.
            name = _make_filename()
            try:
                return _shm_open(name, self._flags, mode=self._mode), name
            except FileExistsError:
                pass
        raise FileExistsError(errno.EEXIST, 'no free shared memory name found')

    def _map(self, new_size):
        """Map the open segment; new_size: give a new segment that size first
        (None: attach to the segment as large as it is)."""
        if new_size is not None:
            util._reserve_file(self._fd, new_size)
        self._size = os.fstat(self._fd).st_size
        self._mmap = mmap.mmap(self._fd, self._size)
        self._buf = memoryview(self._mmap)

    def _abandon(self, unlink):
        # Mapping failed: let go of the descriptor, and of the segment if
        # this very call created it (never of one that others may use).
        fd, self._fd = self._fd, -1
        os.close(fd)
        if unlink:
            try:
                _shm_unlink(self._name)
            except OSError:
                pass

    @property
    def name(self):
        """The name other processes attach to this segment with."""
        if self._prepend_leading_slash:
            return self._name[1:] if self._name.startswith('/') else self._name
        return self._name

    buf = property(operator.attrgetter('_buf'), doc='A memoryview of the segment\'s bytes.')
    size = property(
        operator.attrgetter('_size'), doc='The size in bytes (may exceed the size asked for).'
    )

    def __repr__(self):
        return '%s(%r, size=%d)' % (type(self).__name__, self.name, self.size)

    def __reduce__(self):
        # Unpickled, it attaches to the same segment by name.
        return type(self), (self.name, False, self.size)

    def close(self):
        """Detach this object from the segment (the segment stays)."""
        if self._buf is not None:
            # A BufferError here (views of buf still exist) leaves all as it was.
            self._buf.release()
            self._buf = None
        mapping, self._mmap = self._mmap, None
        if mapping is not None:
            mapping.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def unlink(self):
        """Remove the segment's name, so that it is freed once every process has
        closed it. Call it once, from one process."""
        if not self._name:
            return
        _shm_unlink(self._name)
        if self._track:
            resource_tracker.unregister(self._name, "shared_memory")

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


# ---- ShareableList ----

_encoding = "utf8"

# The layout in the segment (the standard library's, so that either side can
# read a list the other made), every part starting at a multiple of 8:
#   q            the number of items, N
#   q * (N + 1)  where each item's slot starts in the data area, and its end
#   data area    one slot per item: 8 bytes, or the bytes of a str/bytes
#   8s * N       the struct format of each item, NUL-padded
#   b * N        how to turn each unpacked value back into the item (0-3)
_WORD = 8


def _as_is(value):
    return value


def _decoded(value):
    return value.rstrip(b'\x00').decode(_encoding)


def _stripped(value):
    return value.rstrip(b'\x00')


def _none(_value):
    return None


# Back transform code per kind of item (anything else: 0, as is).
_CODE_OF_KIND = ((str, 1), (bytes, 2), (type(None), 3))


class ShareableList:
    """A list of at most 8-byte ints and floats, bools, None, str and bytes,
    stored in a shared memory segment: ShareableList(sequence) makes one
    (in a new segment, named name= if given), ShareableList(name=...)
    attaches to an existing one. Items can be replaced but the length is
    fixed; a str or bytes item has room for the length it was created with
    (rounded up to 8 bytes)."""

    _alignment = _WORD
    _types_mapping = {
        int: "q",
        float: "d",
        bool: "xxxxxxx?",
        str: "%ds",
        bytes: "%ds",
        type(None): "xxxxxx?x",
    }
    _back_transforms_mapping = dict(enumerate((_as_is, _decoded, _stripped, _none)))

    @staticmethod
    def _extract_recreation_code(value):
        """The back transform code of value (see _back_transforms_mapping)."""
        for kind, code in _CODE_OF_KIND:
            if isinstance(value, kind):
                return code
        return 0

    def __init__(self, sequence=None, *, name=None):
        if sequence is None and name is not None:
            self.shm = SharedMemory(name)
            (count,) = struct.unpack_from('q', self.shm.buf, 0)
            self._learn_layout(struct.unpack_from('%dq' % (count + 1), self.shm.buf, _WORD))
            return
        # Every item is encoded (and may be refused) before a segment exists.
        slots = [self._slot_for(item) for item in (() if sequence is None else sequence)]
        ends = [0]
        for _fmt, data, _code in slots:
            ends.append(ends[-1] + len(data))
        self._learn_layout(ends)
        n = len(slots)
        self.shm = SharedMemory(name, create=True, size=self._offset_back_transform_codes + n)
        buf = self.shm.buf
        struct.pack_into('%dq' % (n + 2), buf, 0, n, *ends)
        buf[self._offset_data_start : self._offset_packing_formats] = b''.join(
            data for _fmt, data, _code in slots
        )
        struct.pack_into(
            '8s' * n,
            buf,
            self._offset_packing_formats,
            *(fmt.encode(_encoding) for fmt, _data, _code in slots),
        )
        struct.pack_into(
            '%db' % n,
            buf,
            self._offset_back_transform_codes,
            *(code for _fmt, _data, code in slots),
        )

    def _learn_layout(self, offsets):
        """Where everything is, from the slot offsets (fixed for the list's
        life: the layout is computed once, not at every access)."""
        n = len(offsets) - 1
        self._list_len = n
        self._allocated_offsets = list(offsets)
        self._format_size_metainfo = 'q' * (n + 1)
        self._format_packing_metainfo = '8s' * n
        self._format_back_transform_codes = 'b' * n
        self._offset_data_start = (n + 2) * _WORD
        self._offset_packing_formats = self._offset_data_start + offsets[-1]
        self._offset_back_transform_codes = self._offset_packing_formats + n * _WORD

    def _slot_for(self, item):
        """(format, packed bytes, back transform code) of a new item's slot."""
        fmt, value = self._encode(item)
        return fmt, struct.pack(fmt, value), self._extract_recreation_code(item)

    def _encode(self, value, room=None):
        """(format, value to pack) for value; room: the slot's size for str and
        bytes (None: a new slot sized for value)."""
        if not isinstance(value, (str, bytes)):
            fmt = self._types_mapping.get(type(value))
            if fmt is None:
                # KeyError, as the stdlib raises (its lookup of the type fails).
                raise KeyError(
                    'ShareableList cannot store an item of type %s (only int, '
                    'float, bool, str, bytes and None)' % type(value).__name__
                )
            return fmt, value
        data = value if isinstance(value, bytes) else value.encode(_encoding)
        if room is None:
            # The standard library sizes a slot by characters (so that the
            # formats match its own); grown here when the UTF-8 bytes need more.
            room = max(len(value) // _WORD + 1, -(-len(data) // _WORD)) * _WORD
        elif len(data) > room:
            raise ValueError("bytes/str item exceeds available storage")
        fmt = "%ds" % room
        if len(fmt) > _WORD:
            raise ValueError(
                'str/bytes item of %d bytes is too large for a ShareableList' % len(data)
            )
        return fmt, data

    def _position(self, position, message="Requested position out of range."):
        n = self._list_len
        index = operator.index(position)
        if index < 0:
            index += n
        if 0 <= index < n:
            return index
        raise IndexError(message)

    def _get_packing_format(self, position):
        """The struct format of the item at position."""
        at = self._offset_packing_formats + self._position(position) * _WORD
        return bytes(self.shm.buf[at : at + _WORD]).rstrip(b'\x00').decode(_encoding)

    def _get_back_transform(self, position):
        """The function that turns the unpacked value at position into the item."""
        code = self.shm.buf[self._offset_back_transform_codes + self._position(position)]
        return self._back_transforms_mapping[code]

    def _set_packing_format_and_transform(self, position, fmt_as_str, value):
        """Record the format and back transform of the item at position."""
        index = self._position(position)
        struct.pack_into(
            '8s',
            self.shm.buf,
            self._offset_packing_formats + index * _WORD,
            fmt_as_str.encode(_encoding),
        )
        self.shm.buf[self._offset_back_transform_codes + index] = self._extract_recreation_code(
            value
        )

    def __getitem__(self, position):
        index = self._position(position, "index out of range")
        (value,) = struct.unpack_from(
            self._get_packing_format(index),
            self.shm.buf,
            self._offset_data_start + self._allocated_offsets[index],
        )
        return self._get_back_transform(index)(value)

    def __setitem__(self, position, value):
        index = self._position(position, "assignment index out of range")
        start, end = self._allocated_offsets[index : index + 2]
        fmt, packable = self._encode(value, room=end - start)
        data = struct.pack(fmt, packable)  # may fail: nothing is changed yet
        self._set_packing_format_and_transform(index, fmt, value)
        at = self._offset_data_start + start
        self.shm.buf[at : at + len(data)] = data

    def __len__(self):
        return self._list_len

    @property
    def format(self):
        """The struct format of all the items, concatenated."""
        return ''.join(map(self._get_packing_format, range(self._list_len)))

    def count(self, value):
        """The number of items equal to value."""
        return sum(1 for item in self if value == item)

    def index(self, value):
        """The position of the first item equal to value (ValueError if none)."""
        found = next((i for i, item in enumerate(self) if value == item), None)
        if found is None:
            raise ValueError(f"{value!r} not in this container")
        return found

    def __repr__(self):
        return '%s(%r, name=%r)' % (type(self).__name__, list(self), self.shm.name)

    def __reduce__(self):
        # Unpickled, it attaches to the same segment by name.
        return partial(type(self), name=self.shm.name), ()

    __class_getitem__ = classmethod(GenericAlias)
