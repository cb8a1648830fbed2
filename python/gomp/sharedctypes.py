"""ctypes objects in shared memory.

RawValue(typecode_or_type, *args) and RawArray(typecode_or_type,
size_or_initializer) are plain ctypes objects whose memory is a block of the
shared heap (gomp.heap): a child process that inherits them (fork) or
receives them as arguments when it is started (spawn, forkserver) sees and
changes the same memory. Value() and Array() wrap them with a lock
(a new RLock, or the lock given; lock=False gives the raw object):
reading or writing `.value`, an item or a slice takes the lock, and
get_lock() gives it for longer read-modify-write sequences:

    counter = Value('i', 0)
    with counter.get_lock():
        counter.value += 1

Typecodes are those of the array module ('c', 'u', 'b', 'B', 'h', 'H', 'i',
'I', 'l', 'L', 'q', 'Q', 'f', 'd'); any ctypes type works too, Structures
included (their wrappers get one locked property per field). copy(obj)
makes a shared copy of a ctypes object; synchronized(obj, lock) wraps one.

As with the standard library, these objects can be pickled only to start a
child process (context.assert_spawning); to share them with a process that
is already running, pass them at its start or use a manager. A ctypes
object that is not in shared memory pickles by value, as it does with
plain pickle."""

import ctypes
import operator
import weakref

from . import heap
from .context import _default_context, assert_spawning, reduction

__all__ = ['RawValue', 'RawArray', 'Value', 'Array', 'copy', 'synchronized']

_ForkingPickler = reduction.ForkingPickler

typecode_to_type = {
    'c': ctypes.c_char, 'u': ctypes.c_wchar,
    'b': ctypes.c_byte, 'B': ctypes.c_ubyte,
    'h': ctypes.c_short, 'H': ctypes.c_ushort,
    'i': ctypes.c_int, 'I': ctypes.c_uint,
    'l': ctypes.c_long, 'L': ctypes.c_ulong,
    'q': ctypes.c_longlong, 'Q': ctypes.c_ulonglong,
    'f': ctypes.c_float, 'd': ctypes.c_double,
}


def _ctype(typecode_or_type):
    if isinstance(typecode_or_type, str):
        try:
            return typecode_to_type[typecode_or_type]
        except KeyError:
            raise TypeError('unknown typecode %r (expected one of %s, or a ctypes type)'
                            % (typecode_or_type, ''.join(typecode_to_type))) from None
    return typecode_or_type


def _get_context():
    return _default_context.get_context()


def _new_value(type_):
    """An object of ctypes type type_ in a new block of the shared heap
    (its bytes are whatever the block held)."""
    try:
        size = ctypes.sizeof(type_)
    except TypeError:
        raise TypeError('%r is not a ctypes type or typecode' % (type_,)) from None
    wrapper = heap.BufferWrapper(size)
    return rebuild_ctype(type_, wrapper, None)


def _zeroed(type_):
    obj = _new_value(type_)
    ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
    return obj


def RawValue(typecode_or_type, *args):
    """A ctypes object in shared memory, initialised with args (zero without)."""
    obj = _zeroed(_ctype(typecode_or_type))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory: size_or_initializer zeros, or a copy of
    the sequence size_or_initializer."""
    type_ = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _zeroed(type_ * size_or_initializer)
    values = size_or_initializer
    if not hasattr(values, '__len__'):
        values = list(values)
    obj = _zeroed(type_ * len(values))
    obj.__init__(*values)
    return obj


def _lock_for(lock, ctx):
    if lock in (True, None):
        return (ctx or _get_context()).RLock()
    if not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return lock


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A ctypes object in shared memory behind a lock (lock=True: a new RLock;
    a lock object: that lock; lock=False: no lock, the raw object)."""
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A ctypes array in shared memory behind a lock (see Value)."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


def copy(obj):
    """A copy of the ctypes object obj in shared memory."""
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


def synchronized(obj, lock=None, ctx=None):
    """obj (a ctypes object) behind lock (a new RLock by default)."""
    if isinstance(obj, SynchronizedBase):
        raise AssertionError('object already synchronized')
    ctx = ctx or _get_context()
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    cls = type(obj)
    scls = class_cache.get(cls)
    if scls is None:
        fields = getattr(cls, '_fields_', None)
        if fields is None:
            raise TypeError('cannot synchronize %r: not a ctypes simple type, array '
                            'or structure' % cls)
        namespace = {field[0]: make_property(field[0]) for field in fields}
        scls = class_cache[cls] = type('Synchronized' + cls.__name__,
                                       (SynchronizedBase,), namespace)
    return scls(obj, lock, ctx)


# ---- pickling (for a child being started) ----

def reduce_ctype(obj):
    wrapper = getattr(obj, '_wrapper', None)
    if wrapper is None:
        # An ordinary ctypes object of a type that also lives in shared
        # memory somewhere: by value, as plain pickle would.
        return obj.__reduce__()
    assert_spawning(obj)
    if isinstance(obj, ctypes.Array):
        return rebuild_ctype, (obj._type_, wrapper, obj._length_)
    return rebuild_ctype, (type(obj), wrapper, None)


def rebuild_ctype(type_, wrapper, length):
    """The ctypes object of type type_ (an array of length items if length is
    not None) over the memory of wrapper."""
    if length is not None:
        type_ = type_ * length
    _ForkingPickler.register(type_, reduce_ctype)
    obj = type_.from_buffer(wrapper.create_memoryview())
    obj._wrapper = wrapper
    return obj


# ---- locked access ----

prop_cache = {}
class_cache = weakref.WeakKeyDictionary()


def make_property(name):
    """A property that reads and writes attribute name of the wrapped object
    under the wrapper's lock."""
    prop = prop_cache.get(name)
    if prop is not None:
        return prop
    get_attr = operator.attrgetter(name)

    def fget(self):
        self.acquire()
        try:
            return get_attr(self._obj)
        finally:
            self.release()

    def fset(self, value):
        self.acquire()
        try:
            setattr(self._obj, name, value)
        finally:
            self.release()

    fget.__name__ = fset.__name__ = name
    prop = prop_cache[name] = property(fget, fset, doc='%s, read and written under the lock'
                                       % name)
    return prop


class SynchronizedBase(object):
    """A ctypes object (get_obj()) and the lock (get_lock()) that guards it;
    `with wrapper:` holds the lock."""

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        if lock:
            self._lock = lock
        else:
            self._lock = (ctx or _get_context()).RLock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        assert_spawning(self)
        return synchronized, (self._obj, self._lock)

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    def __repr__(self):
        return '<%s wrapper for %s>' % (type(self).__name__, self._obj)


class Synchronized(SynchronizedBase):
    """A ctypes simple object behind a lock."""

    # Written out rather than made by make_property: this is the hot path.
    @property
    def value(self):
        self.acquire()
        try:
            return self._obj.value
        finally:
            self.release()

    @value.setter
    def value(self, value):
        self.acquire()
        try:
            self._obj.value = value
        finally:
            self.release()


class SynchronizedArray(SynchronizedBase):
    """A ctypes array behind a lock: items and slices are read and written
    under it."""

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        with self:
            return self._obj[i]

    def __setitem__(self, i, value):
        with self:
            self._obj[i] = value

    def __getslice__(self, start, stop):
        with self:
            return self._obj[start:stop]

    def __setslice__(self, start, stop, values):
        with self:
            self._obj[start:stop] = values


class SynchronizedString(SynchronizedArray):
    """A ctypes char array behind a lock, with its value (up to the first NUL)
    and raw bytes."""

    value = make_property('value')
    raw = make_property('raw')
