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
import types
from functools import partial

from . import resource_tracker
from . import util
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

    # Class defaults, so that close() and unlink() work on a half-made object
    # (and subclasses may change the flags or mode).
    _name = None
    _fd = -1
    _mmap = None
    _buf = None
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True
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
            self._flags = _O_CREX | os.O_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        self._track = track

        if name is None:
            for _attempt in range(100):
                candidate = _make_filename()  # looked up now: tests patch it
                try:
                    self._fd = _shm_open(candidate, self._flags, mode=self._mode)
                except FileExistsError:
                    continue
                name = candidate
                break
            else:
                raise FileExistsError(errno.EEXIST, 'no free shared memory name found')
        else:
            if self._prepend_leading_slash:
                name = '/' + name
            self._fd = _shm_open(name, self._flags, mode=self._mode)
        self._name = name
        created = bool(self._flags & os.O_EXCL)
        try:
            if create:
                util._reserve_file(self._fd, size)
            size = os.fstat(self._fd).st_size
            self._mmap = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            if created:
                try:
                    _shm_unlink(name)
                except OSError:
                    pass
            raise
        if track:
            resource_tracker.register(self._name, "shared_memory")
        self._size = size
        self._buf = memoryview(self._mmap)

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass

    def __reduce__(self):
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self):
        return f'{self.__class__.__name__}({self.name!r}, size={self.size})'

    @property
    def buf(self):
        """A memoryview of the segment's bytes."""
        return self._buf

    @property
    def name(self):
        """The name other processes attach to this segment with."""
        name = self._name
        if self._prepend_leading_slash and name.startswith('/'):
            name = name[1:]
        return name

    @property
    def size(self):
        """The size in bytes (may exceed the size asked for)."""
        return self._size

    def close(self):
        """Detach this object from the segment (the segment stays)."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def unlink(self):
        """Remove the segment's name, so that it is freed once every process has
        closed it. Call it once, from one process."""
        if self._name:
            _shm_unlink(self._name)
            if self._track:
                resource_tracker.unregister(self._name, "shared_memory")


# ---- ShareableList ----

_encoding = "utf8"

# The layout in the segment (the standard library's, so that either side can
# read a list the other made), all offsets multiples of 8:
#   q            number of items N
#   q * (N + 1)  offsets of the items' slots in the data area, and its end
#   data area    one slot per item: 8 bytes, or the bytes of a str/bytes
#   8s * N       the struct format of each item, NUL-padded
#   b * N        how to turn each unpacked value back into the item (0-3)
_ITEM_BYTES = 8
_FORMAT_BYTES = 8


def _as_is(value):
    return value


def _decoded(value):
    return value.rstrip(b'\x00').decode(_encoding)


def _stripped(value):
    return value.rstrip(b'\x00')


def _none(_value):
    return None


class ShareableList:
    """A list of at most 8-byte ints and floats, bools, None, str and bytes,
    stored in a shared memory segment: ShareableList(sequence) makes one
    (in a new segment, named name= if given), ShareableList(name=...)
    attaches to an existing one. Items can be replaced but the length is
    fixed; a str or bytes item has room for the length it was created with
    (rounded up to 8 bytes)."""

    _types_mapping = {
        int: "q",
        float: "d",
        bool: "xxxxxxx?",
        str: "%ds",
        bytes: "%ds",
        type(None): "xxxxxx?x",
    }
    _alignment = 8
    _back_transforms_mapping = {
        0: _as_is,      # int, float, bool
        1: _decoded,    # str
        2: _stripped,   # bytes
        3: _none,       # None
    }

    @staticmethod
    def _extract_recreation_code(value):
        """The back transform code of value (see _back_transforms_mapping)."""
        if isinstance(value, str):
            return 1
        if isinstance(value, bytes):
            return 2
        if value is None:
            return 3
        return 0

    def _encode(self, value, room=None):
        """(format, value to pack) for value; room: the slot's size for str and
        bytes (None: a new slot sized for value)."""
        if isinstance(value, (str, bytes)):
            data = value.encode(_encoding) if isinstance(value, str) else value
            if room is None:
                # The standard library's size (by characters, so that formats
                # match its own), grown when the UTF-8 bytes need more.
                room = self._alignment * (len(value) // self._alignment + 1)
                if len(data) > room:
                    room = -(-len(data) // self._alignment) * self._alignment
            elif len(data) > room:
                raise ValueError("bytes/str item exceeds available storage")
            fmt = "%ds" % room
            if len(fmt) > _FORMAT_BYTES:
                raise ValueError('str/bytes item of %d bytes is too large for a '
                                 'ShareableList' % len(data))
            return fmt, data
        try:
            fmt = self._types_mapping[type(value)]
        except KeyError:
            raise TypeError('ShareableList cannot store an item of type %s'
                            % type(value).__name__) from None
        return fmt, value

    def __init__(self, sequence=None, *, name=None):
        if name is None or sequence is not None:
            items = list(sequence) if sequence is not None else []
            # Everything is encoded (and may fail) before the segment exists.
            slots = []
            for item in items:
                fmt, value = self._encode(item)
                slots.append((fmt, struct.pack(fmt, value), self._extract_recreation_code(item)))
            n = self._list_len = len(slots)
            offsets = [0]
            for _fmt, data, _code in slots:
                offsets.append(offsets[-1] + len(data))
            self._allocated_offsets = offsets
            size = _ITEM_BYTES * (n + 2) + offsets[-1] + _FORMAT_BYTES * n + n
            self.shm = SharedMemory(name, create=True, size=size)
            buf = self.shm.buf
            struct.pack_into("q" * (n + 2), buf, 0, n, *offsets)
            at = self._offset_data_start
            for _fmt, data, _code in slots:
                buf[at:at + len(data)] = data
                at += len(data)
            struct.pack_into("8s" * n, buf, self._offset_packing_formats,
                             *(fmt.encode(_encoding) for fmt, _data, _code in slots))
            struct.pack_into("b" * n, buf, self._offset_back_transform_codes,
                             *(code for _fmt, _data, code in slots))
        else:
            self.shm = SharedMemory(name)
            self._list_len = len(self)
            self._allocated_offsets = list(struct.unpack_from(
                "q" * (self._list_len + 1), self.shm.buf, _ITEM_BYTES))

    def _position(self, position):
        position = operator.index(position)
        if position < 0:
            position += self._list_len
        if not 0 <= position < self._list_len:
            raise IndexError("Requested position out of range.")
        return position

    def _get_packing_format(self, position):
        """The struct format of the item at position."""
        position = self._position(position)
        raw = struct.unpack_from("8s", self.shm.buf,
                                 self._offset_packing_formats + position * _FORMAT_BYTES)[0]
        return raw.rstrip(b'\x00').decode(_encoding)

    def _get_back_transform(self, position):
        """The function that turns the unpacked value at position into the item."""
        position = self._position(position)
        code = struct.unpack_from("b", self.shm.buf,
                                  self._offset_back_transform_codes + position)[0]
        return self._back_transforms_mapping[code]

    def _set_packing_format_and_transform(self, position, fmt_as_str, value):
        """Record the format and back transform of the item at position."""
        position = self._position(position)
        struct.pack_into("8s", self.shm.buf,
                         self._offset_packing_formats + position * _FORMAT_BYTES,
                         fmt_as_str.encode(_encoding))
        struct.pack_into("b", self.shm.buf, self._offset_back_transform_codes + position,
                         self._extract_recreation_code(value))

    def __getitem__(self, position):
        try:
            position = self._position(position)
        except IndexError:
            raise IndexError("index out of range") from None
        fmt = self._get_packing_format(position)
        (value,) = struct.unpack_from(
            fmt, self.shm.buf, self._offset_data_start + self._allocated_offsets[position])
        return self._get_back_transform(position)(value)

    def __setitem__(self, position, value):
        try:
            position = self._position(position)
        except IndexError:
            raise IndexError("assignment index out of range") from None
        item_offset = self._allocated_offsets[position]
        room = self._allocated_offsets[position + 1] - item_offset
        fmt, packed_value = self._encode(value, room)
        data = struct.pack(fmt, packed_value)  # fails before anything is changed
        self._set_packing_format_and_transform(position, fmt, value)
        offset = self._offset_data_start + item_offset
        self.shm.buf[offset:offset + len(data)] = data

    def __reduce__(self):
        return partial(self.__class__, name=self.shm.name), ()

    def __len__(self):
        return struct.unpack_from("q", self.shm.buf, 0)[0]

    def __repr__(self):
        return f'{self.__class__.__name__}({list(self)}, name={self.shm.name!r})'

    @property
    def format(self):
        """The struct format of all the items, concatenated."""
        return "".join(self._get_packing_format(i) for i in range(self._list_len))

    @property
    def _format_size_metainfo(self):
        return "q" * (self._list_len + 1)

    @property
    def _format_packing_metainfo(self):
        return "8s" * self._list_len

    @property
    def _format_back_transform_codes(self):
        return "b" * self._list_len

    @property
    def _offset_data_start(self):
        return (self._list_len + 2) * _ITEM_BYTES

    @property
    def _offset_packing_formats(self):
        return self._offset_data_start + self._allocated_offsets[-1]

    @property
    def _offset_back_transform_codes(self):
        return self._offset_packing_formats + self._list_len * _FORMAT_BYTES

    def count(self, value):
        """The number of items equal to value."""
        return sum(value == item for item in self)

    def index(self, value):
        """The position of the first item equal to value (ValueError if none)."""
        for position, item in enumerate(self):
            if value == item:
                return position
        raise ValueError(f"{value!r} not in this container")

    __class_getitem__ = classmethod(types.GenericAlias)
