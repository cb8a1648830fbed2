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

# The array module's typecodes, each with the ctypes type of its C type.
typecode_to_type = {
    code: getattr(ctypes, 'c_' + c_name)
    for code, c_name in (
        pair.split('=')
        for pair in (
            'c=char u=wchar b=byte B=ubyte h=short H=ushort i=int I=uint '
            'l=long L=ulong q=longlong Q=ulonglong f=float d=double'
        ).split()
    )
}


def _bad_typecode(value, what):
    # The wording starts as Python 3.15's does ("bad typecode"; its suite
    # checks it) on every version; older ones said "this type has no size".
    return TypeError(
        'bad typecode: %r is %s (must be a ctypes type or one of %s)'
        % (value, what, ', '.join(typecode_to_type))
    )


def _ctype(typecode_or_type):
    if not isinstance(typecode_or_type, str):
        return typecode_or_type
    ctype = typecode_to_type.get(typecode_or_type)
    if ctype is None:
        raise _bad_typecode(typecode_or_type, 'an unknown typecode')
    return ctype


def _get_context():
    return _default_context.get_context()


def _shared_instance(type_, zeroed=True):
    """An object of ctypes type type_ over a new block of the shared heap;
    its bytes are zeros, or (zeroed=False) whatever the block held."""
    try:
        size = ctypes.sizeof(type_)
    except TypeError:
        raise _bad_typecode(type_, 'not a ctypes type') from None
    obj = rebuild_ctype(type_, heap.BufferWrapper(size), None)
    if zeroed:
        ctypes.memset(ctypes.addressof(obj), 0, size)
    return obj


def RawValue(typecode_or_type, *args):
    """A ctypes object in shared memory, initialised with args (zero without)."""
    obj = _shared_instance(_ctype(typecode_or_type))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory: size_or_initializer zeros, or a copy of
    the sequence size_or_initializer."""
    item_type = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _shared_instance(item_type * size_or_initializer)
    items = size_or_initializer
    if not hasattr(items, '__len__'):
        try:
            items = iter(items)
        except TypeError:
            raise TypeError(
                'size_or_initializer must be an int or a sequence, not %s' % type(items).__name__
            ) from None
        items = tuple(items)
    array = _shared_instance(item_type * len(items))
    array.__init__(*items)
    return array


def _locked_or_raw(obj, lock, ctx):
    """What Value() and Array() return for obj: obj itself (lock=False), or
    obj behind lock (True or None: a new RLock of ctx)."""
    if lock is False:
        return obj
    if lock is True or lock is None:
        lock = (ctx or _get_context()).RLock()
    elif not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return synchronized(obj, lock, ctx=ctx)


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A ctypes object in shared memory behind a lock (lock=True: a new RLock;
    a lock object: that lock; lock=False: no lock, the raw object)."""
    return _locked_or_raw(RawValue(typecode_or_type, *args), lock, ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A ctypes array in shared memory behind a lock (see Value)."""
    return _locked_or_raw(RawArray(typecode_or_type, size_or_initializer), lock, ctx)


def copy(obj):
    """A copy of the ctypes object obj in shared memory."""
    duplicate = _shared_instance(type(obj), zeroed=False)
    ctypes.memmove(ctypes.addressof(duplicate), ctypes.addressof(obj), ctypes.sizeof(obj))
    return duplicate


def synchronized(obj, lock=None, ctx=None):
    """obj (a ctypes object) behind lock (a new RLock by default)."""
    if isinstance(obj, SynchronizedBase):
        raise AssertionError('object already synchronized')
    return _wrapper_class(type(obj))(obj, lock, ctx or _get_context())


def _wrapper_class(ctype):
    """The Synchronized* class for objects of ctypes type ctype."""
    if issubclass(ctype, ctypes._SimpleCData):
        return Synchronized
    if issubclass(ctype, ctypes.Array):
        return SynchronizedString if ctype._type_ is ctypes.c_char else SynchronizedArray
    wrapper = class_cache.get(ctype)
    if wrapper is None:
        fields = getattr(ctype, '_fields_', None)
        if fields is None:
            # AttributeError, as the stdlib raises (it looks up _fields_).
            raise AttributeError(
                'cannot synchronize %r: not a ctypes simple type, array '
                'or structure (no _fields_)' % ctype
            )
        # One locked property per field of the structure.
        wrapper = class_cache[ctype] = type(
            'Synchronized' + ctype.__name__,
            (SynchronizedBase,),
            {'_locked_attributes': tuple(field[0] for field in fields)},
        )
    return wrapper


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
#
# The accessors take the lock with acquire() and release(), the lock's own
# methods bound once per wrapper: a `with` statement on the lock costs more.
#
# A wrapper class lists what it guards in two tables, and SynchronizedBase
# turns them into class attributes: _locked_attributes, attributes of the
# wrapped object read and written under the lock (properties), and
# _locked_operations, name -> function(obj, *args) called under the lock
# (methods).

prop_cache = {}
class_cache = weakref.WeakKeyDictionary()


def make_property(name):
    """A property that reads and writes attribute name of the wrapped object
    under the wrapper's lock (one per name, shared by all wrapper classes)."""
    prop = prop_cache.get(name)
    if prop is None:
        read = operator.attrgetter(name)

        def fget(self):
            self.acquire()
            try:
                return read(self._obj)
            finally:
                self.release()

        def fset(self, value):
            self.acquire()
            try:
                setattr(self._obj, name, value)
            finally:
                self.release()

        fget.__name__ = fset.__name__ = name
        prop = prop_cache[name] = property(
            fget, fset, doc='%s, read and written under the lock' % name
        )
    return prop


# `value` is the attribute read and written most (Value, Array('c')): spelled
# out, with a literal attribute access, it costs about a quarter less than a
# property that fetches an attribute by name. make_property finds it here.
def _read_value(self):
    self.acquire()
    try:
        return self._obj.value
    finally:
        self.release()


def _write_value(self, value):
    self.acquire()
    try:
        self._obj.value = value
    finally:
        self.release()


_read_value.__name__ = _write_value.__name__ = 'value'
prop_cache['value'] = property(
    _read_value, _write_value, doc='value, read and written under the lock'
)


def _locked_operation(name, operation):
    def method(self, *args):
        self.acquire()
        try:
            return operation(self._obj, *args)
        finally:
            self.release()

    method.__name__ = name
    return method


class SynchronizedBase:
    """A ctypes object (get_obj()) and the lock (get_lock()) that guards it;
    `with wrapper:` holds the lock, and acquire()/release() are the lock's."""

    _locked_attributes = ()
    _locked_operations = {}

    def __init_subclass__(cls, **kwds):
        super().__init_subclass__(**kwds)
        own = vars(cls)
        for name in own.get('_locked_attributes', ()):
            setattr(cls, name, make_property(name))
        for name, operation in own.get('_locked_operations', {}).items():
            setattr(cls, name, _locked_operation(name, operation))

    def __init__(self, obj, lock=None, ctx=None):
        lock = lock or (ctx or _get_context()).RLock()
        self._obj, self._lock = obj, lock
        self.acquire, self.release = lock.acquire, lock.release

    def __repr__(self):
        return '<%s wrapper for %s>' % (type(self).__name__, self._obj)

    def __reduce__(self):
        # Both travel to the child being started: it gets the same memory
        # behind the same lock.
        assert_spawning(self)
        return synchronized, (self._obj, self._lock)

    def get_lock(self):
        return self._lock

    def get_obj(self):
        return self._obj

    # `with wrapper:` is `with wrapper.get_lock():`.
    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)


class Synchronized(SynchronizedBase):
    """A ctypes simple object behind a lock."""

    _locked_attributes = ('value',)


def _get_slice(obj, start, stop):
    return obj[start:stop]


def _set_slice(obj, start, stop, values):
    obj[start:stop] = values


class SynchronizedArray(SynchronizedBase):
    """A ctypes array behind a lock: items and slices are read and written
    under it."""

    _locked_operations = {
        '__getitem__': operator.getitem,
        '__setitem__': operator.setitem,
        '__getslice__': _get_slice,
        '__setslice__': _set_slice,
    }

    def __len__(self):
        return len(self._obj)


class SynchronizedString(SynchronizedArray):
    """A ctypes char array behind a lock, with its value (up to the first NUL)
    and raw bytes."""

    _locked_attributes = ('value', 'raw')
