"""Contexts: the package's API bound to one start method.

There is one context per start method (fork, spawn, forkserver), and the
default context, whose start method is chosen once (``set_start_method``, or
the platform's default on first use). The functions of the ``gomp`` package
are the bound methods of the default context.

Most of a context's API only creates an object of another module with the
context attached (``ctx.Lock()`` is ``synchronize.Lock(ctx=ctx)``). Those
methods are generated from one table, ``_FACTORIES``; the modules behind them
are imported on first use, so that ``import gomp`` stays light (a spawned
child pays for every import).
"""

import os
import sys
import threading

from . import process, reduction
from ._versions import V

__all__ = ()


class ProcessError(Exception):
    """Base class of the errors of this package."""


class AuthenticationError(ProcessError):
    """A connection's peer failed the authentication handshake."""


class BufferTooShort(ProcessError):
    """recv_bytes_into() was given a buffer smaller than the message (which
    is in the exception's first argument)."""


class TimeoutError(ProcessError):
    """An operation with a timeout did not finish in time."""


# ---- factories ---------------------------------------------------------------------------

# Context method -> (module of this package, its callable, keyword through which
# the callable takes the context or None, docstring). The method passes its
# arguments through and adds the context (the chosen one, for the default
# context) under that keyword.
_FACTORIES = {
    'Lock': (
        'synchronize',
        'Lock',
        'ctx',
        'Lock(): a non-recursive lock shared between processes.',
    ),
    'RLock': ('synchronize', 'RLock', 'ctx', 'RLock(): a recursive lock shared between processes.'),
    'Condition': (
        'synchronize',
        'Condition',
        'ctx',
        'Condition(lock=None): a condition variable shared between processes.',
    ),
    'Semaphore': (
        'synchronize',
        'Semaphore',
        'ctx',
        'Semaphore(value=1): a semaphore shared between processes.',
    ),
    'BoundedSemaphore': (
        'synchronize',
        'BoundedSemaphore',
        'ctx',
        'BoundedSemaphore(value=1): a semaphore that cannot be released above its initial value.',
    ),
    'Event': ('synchronize', 'Event', 'ctx', 'Event(): an event shared between processes.'),
    'Barrier': (
        'synchronize',
        'Barrier',
        'ctx',
        'Barrier(parties, action=None, timeout=None): a barrier shared between processes.',
    ),
    'Queue': ('queues', 'Queue', 'ctx', 'Queue(maxsize=0): a FIFO queue shared between processes.'),
    'JoinableQueue': (
        'queues',
        'JoinableQueue',
        'ctx',
        'JoinableQueue(maxsize=0): a Queue with task_done() and join().',
    ),
    'SimpleQueue': (
        'queues',
        'SimpleQueue',
        'ctx',
        'SimpleQueue(): a simple unbounded queue shared between processes.',
    ),
    'Value': (
        'sharedctypes',
        'Value',
        'ctx',
        'Value(typecode_or_type, *args, lock=True): a ctypes object in shared memory, with a lock.',
    ),
    'Array': (
        'sharedctypes',
        'Array',
        'ctx',
        'Array(typecode_or_type, size_or_initializer, *, lock=True): a ctypes array '
        'in shared memory, with a lock.',
    ),
    'Pool': (
        'pool',
        'Pool',
        'context',
        'Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None): '
        'a pool of worker processes.',
    ),
    'RawValue': (
        'sharedctypes',
        'RawValue',
        None,
        'RawValue(typecode_or_type, *args): a ctypes object in shared memory, without a lock.',
    ),
    'RawArray': (
        'sharedctypes',
        'RawArray',
        None,
        'RawArray(typecode_or_type, size_or_initializer): a ctypes array in shared '
        'memory, without a lock.',
    ),
    'Pipe': (
        'connection',
        'Pipe',
        None,
        'Pipe(duplex=True): two Connection objects joined by a pipe (a socket pair if duplex).',
    ),
    'get_logger': ('util', 'get_logger', None, "get_logger(): the package's logger."),
    'log_to_stderr': (
        'util',
        'log_to_stderr',
        None,
        'log_to_stderr(level=None): turn on logging to stderr; returns the logger.',
    ),
    'set_executable': (
        'spawn',
        'set_executable',
        None,
        'set_executable(executable): the Python interpreter that starts spawned children.',
    ),
    'set_forkserver_preload': (
        'forkserver',
        'set_forkserver_preload',
        None,
        'set_forkserver_preload(module_names): modules the fork server '
        'imports once, so that its children inherit them.',
    ),
}


def _load(module, name):
    """``from .module import name``, at call time (so that a patched module
    attribute is honoured, and the module is imported only when used). The
    import machinery runs only for the first use: afterwards the module is
    found in sys.modules (an import per call was a measurable part of the
    creation of a Lock)."""
    mod = sys.modules.get(__package__ + '.' + module)
    if mod is None:
        mod = __import__(module, globals(), None, (name,), 1)
    return getattr(mod, name)


def _factory_method(method_name, module, name, ctx_keyword, doc):
    """The context method of one row of _FACTORIES."""
    if ctx_keyword is None:

        def method(self, *args, **kwargs):
            return _load(module, name)(*args, **kwargs)
    else:

        def method(self, *args, **kwargs):
            kwargs[ctx_keyword] = self.get_context()
            return _load(module, name)(*args, **kwargs)

    method.__name__ = method_name
    method.__qualname__ = 'BaseContext.' + method_name
    method.__doc__ = doc
    return method


class BaseContext:
    """The API of the package, for one start method."""

    # The exceptions, reachable from a context as from the package.
    ProcessError = ProcessError
    AuthenticationError = AuthenticationError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError

    # Whether the method passes file descriptors over Unix sockets (forkserver).
    _needs_fd_passing = False

    # (plus the methods of _FACTORIES, added below the class)

    def Manager(self):
        """A SyncManager whose server process has been started."""
        manager = _load('managers', 'SyncManager')(ctx=self.get_context())
        manager.start()
        return manager

    # About this process, whatever the context.
    active_children = staticmethod(process.active_children)
    current_process = staticmethod(process.current_process)
    parent_process = staticmethod(process.parent_process)

    def cpu_count(self):
        """The number of CPUs in the system."""
        count = os.cpu_count()
        if count is None:
            raise NotImplementedError('cannot determine number of cpus')
        return count

    def freeze_support(self):
        """Run the child's code when this is a frozen Windows program started as
        a child; nothing anywhere else."""
        if sys.platform == 'win32' and getattr(sys, 'frozen', False):
            _load('spawn', 'freeze_support')()

    def allow_connection_pickling(self):
        """Kept for compatibility: connections and sockets can always be
        pickled to a child (importing connection registers their reducers)."""
        from . import connection  # noqa: F401

    # ---- start methods --------------------------------------------------------------------

    def get_context(self, method=None):
        """This context, or the context of the given start method."""
        if method is None:
            return self
        if method not in _concrete_contexts:
            raise ValueError('cannot find context for %r' % (method,))
        context = _concrete_contexts[method]
        context._check_available()
        return context

    def get_start_method(self, allow_none=False):
        return self._name

    def set_start_method(self, method, force=False):
        raise ValueError('cannot set start method of concrete context')

    def _available(self):
        return reduction.HAVE_SEND_HANDLE or not self._needs_fd_passing

    def _check_available(self):
        if not self._available():
            raise ValueError('%s start method not available' % self._name)

    @property
    def reducer(self):
        """The module that pickles objects for other processes (the module
        global ``reduction``; replacing it changes it for the whole package)."""
        return getattr(sys.modules[__name__], 'reduction', None)

    @reducer.setter
    def reducer(self, module):
        sys.modules[__name__].reduction = module


for _method_name, _row in _FACTORIES.items():
    setattr(BaseContext, _method_name, _factory_method(_method_name, *_row))
del _method_name, _row


# ---- one context per start method -----------------------------------------------------------


def _popen_from(popen_module):
    """The _Popen hook of a start method's Process: popen_module's Popen. The
    module is imported by the first start(); later ones find it here, without
    the import machinery (every object a parent touches between two forks
    costs it a copy-on-write fault: this saves about eight per child)."""
    module = None

    def _Popen(process_obj):
        nonlocal module
        if module is None:
            module = __import__(popen_module, globals(), None, ('Popen',), 1)
        return module.Popen(process_obj)

    return staticmethod(_Popen)


def _fresh_interpreter():
    """A spawned child starts a new interpreter: no inherited object needs its
    after-fork hook."""


def _define_start_method(
    method, prefix, popen_module, *, inherits_memory=True, needs_fd_passing=False
):
    """The Process class and the context class of one start method; the
    context object is registered in _concrete_contexts. The class names start
    with the method's name (the suite checks it)."""
    process_attrs = {
        '__module__': __name__,
        '__qualname__': prefix + 'Process',
        '__doc__': 'A Process started with the %r start method.' % method,
        '_start_method': method,
        '_Popen': _popen_from(popen_module),
    }
    if not inherits_memory:
        process_attrs['_after_fork'] = staticmethod(_fresh_interpreter)
    process_class = type(prefix + 'Process', (process.BaseProcess,), process_attrs)
    context_class = type(
        prefix + 'Context',
        (BaseContext,),
        {
            '__module__': __name__,
            '__qualname__': prefix + 'Context',
            '__doc__': 'The API of the package with the %r start method.' % method,
            '_name': method,
            'Process': process_class,
            '_needs_fd_passing': needs_fd_passing,
        },
    )
    _concrete_contexts[method] = context_class()
    return process_class, context_class


_concrete_contexts = {}
ForkProcess, ForkContext = _define_start_method('fork', 'Fork', 'popen_fork')
SpawnProcess, SpawnContext = _define_start_method(
    'spawn', 'Spawn', 'popen_spawn_posix', inherits_memory=False
)
ForkServerProcess, ForkServerContext = _define_start_method(
    'forkserver', 'ForkServer', 'popen_forkserver', needs_fd_passing=True
)


# ---- the default context ----------------------------------------------------------------------


def _delegate(hook):
    """A hook of the default context's Process: the same hook of the Process
    class of the context chosen when it is called."""

    def call(*args):
        return getattr(_default_context.get_context().Process, hook)(*args)

    call.__name__ = hook
    return staticmethod(call)


class Process(process.BaseProcess):
    """A Process of the default context: started with the start method chosen
    for the package when start() is called."""

    _Popen = _delegate('_Popen')
    _after_fork = _delegate('_after_fork')


class DefaultContext(BaseContext):
    """The package's own context. Its start method is chosen once: by
    set_start_method(), or the platform's default on first use."""

    Process = Process
    _actual_context = None  # the chosen context; None: not chosen yet

    def __init__(self, context):
        self._default_context = context  # what first use chooses

    def _chosen(self):
        if self._actual_context is None:
            self._actual_context = self._default_context
        return self._actual_context

    def get_context(self, method=None):
        if method is None:
            return self._chosen()
        return BaseContext.get_context(self, method)

    def get_start_method(self, allow_none=False):
        """The chosen start method (choosing the default if none was), or None
        when none was chosen and allow_none is true."""
        if self._actual_context is None and allow_none:
            return None
        return self._chosen()._name

    def set_start_method(self, method, force=False):
        """Choose the start method; only once, unless force is true (and
        set_start_method(None, force=True) forgets the choice)."""
        if not force and self._actual_context is not None:
            raise RuntimeError('context has already been set')
        forget = method is None and force
        self._actual_context = None if forget else self.get_context(method)

    def get_all_start_methods(self):
        """The start methods available here, the default one first."""
        methods = [name for name, context in _concrete_contexts.items() if context._available()]
        methods.sort(key=lambda name: name != _DEFAULT_METHOD)  # stable: the rest keep their order
        return methods


def _platform_default_method():
    # macOS: spawn (fork is unsafe with its system libraries). Linux: fork,
    # forkserver from Python 3.14 where file descriptors can be passed.
    if sys.platform == 'darwin':
        return 'spawn'
    if V.default_forkserver and _concrete_contexts['forkserver']._available():
        return 'forkserver'
    return 'fork'


_DEFAULT_METHOD = _platform_default_method()
_default_context = DefaultContext(_concrete_contexts[_DEFAULT_METHOD])


def _force_start_method(method):
    """In a child: use the start method the parent used (without the checks
    of set_start_method)."""
    _default_context._actual_context = _concrete_contexts[method]


# ---- the process being started ----------------------------------------------------------------


# The Popen object of the child that this thread is starting, while its process
# object is pickled for it: objects that may only go to a child (locks, queues,
# authentication keys) check it, and file descriptors are then handed straight
# to that child rather than through the resource sharer.
class _Spawning(threading.local):
    popen = None


_spawning = _Spawning()


def get_spawning_popen():
    return _spawning.popen


def set_spawning_popen(popen):
    _spawning.popen = popen
    # Objects of the standard library made with a gomp context check the
    # standard library's own flag when they are pickled for a child (without
    # gomp.install(), concurrent.futures' call queue is a
    # multiprocessing.queues.Queue made with the ProcessPoolExecutor's
    # mp_context): set that one too when the stdlib module is loaded. It is
    # never imported here.
    stdlib = sys.modules.get('multiprocessing.context')
    mirror = getattr(stdlib, 'set_spawning_popen', None)
    if mirror is not None and stdlib is not sys.modules[__name__]:
        mirror(popen)


def assert_spawning(obj):
    """Raise RuntimeError unless obj is being pickled to start a child."""
    if get_spawning_popen() is None:
        raise RuntimeError(
            '%s objects should only be shared between processes'
            ' through inheritance' % type(obj).__name__
        )
