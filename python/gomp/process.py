"""Process objects: the API of threading.Thread, for a child process.

A ``BaseProcess`` is the parent's handle on one child. It does not know how the
child is started: ``start()`` asks the ``_Popen`` hook of its class (one per
start method, see context.py), and the Popen object it returns does the
supervision (pidfd, exit status, signals). This module keeps the bookkeeping
around it: which children are alive, who the current and the parent process
are, and what a child does between its start and its exit (``_bootstrap``).
"""

import _signal  # the signal numbers: signal's enums cost a spawned child 4 ms
import itertools
import os
import sys
import threading
from _weakrefset import WeakSet

__all__ = ['BaseProcess', 'current_process', 'active_children', 'parent_process']


def current_process():
    """The Process object of this process."""
    return _current_process


def parent_process():
    """The Process object of the parent, or None in the main process."""
    return _parent_process


def active_children():
    """The children of this process that are still running."""
    _cleanup()
    return list(_children)


def _cleanup():
    """Forget the children known to have exited."""
    # A snapshot: poll() may let another thread run, and it may start a
    # child (a ProcessPoolExecutor's manager thread does) meanwhile.
    exited = [
        child
        for child in tuple(_children)
        if child._popen is not None and child._popen.poll() is not None
    ]
    _children.difference_update(exited)
    if exited:
        _children_gone()


def _children_gone():
    # Called when children were forgotten: with none left, the /dev/null
    # kept for forked children is let go (util._release_child_stdin).
    if not _children:
        util._release_child_stdin()


def _working_directory():
    try:
        return os.path.abspath(os.getcwd())
    except OSError:  # it was removed
        return None


# The working directory when gomp was first imported: a spawned child resolves
# the parent's relative sys.path entries and main script against it.
ORIGINAL_DIR = _working_directory()


def _signal_method(popen_method, what):
    """A Process method that asks the child's Popen to send it a signal."""

    def send(self):
        self._check_closed()
        getattr(self._popen, popen_method)()

    send.__name__ = popen_method
    send.__qualname__ = 'BaseProcess.' + popen_method
    send.__doc__ = 'Send %s to the child.' % what
    return send


class BaseProcess:
    """A child process running run() (by default target(*args, **kwargs)).

    The classes of a context fix the start method through ``_Popen`` (and
    ``_start_method``, the method the child then uses for its own children).
    """

    _start_method = None

    def _Popen(self):
        raise NotImplementedError('a Process class of a context starts children')

    def __init__(self, group=None, target=None, name=None, args=(), kwargs=None, *, daemon=None):
        creator = _current_process
        assert group is None, 'group argument must be None for now'
        self._identity = creator._identity + (next(_process_counter),)
        self._parent_pid = os.getpid()
        self._parent_name = creator.name
        # The creator's authkey, and its daemon flag unless daemon is given.
        self._config = dict(creator._config)
        if daemon is not None:
            self._config['daemon'] = daemon
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or ())
        self._popen = None
        self._closed = False
        if not name:
            name = '%s-%s' % (type(self).__name__, ':'.join(map(str, self._identity)))
        self._name = name
        _dangling.add(self)

    # ---- life cycle, in the parent ---------------------------------------------------------

    def _assert_made_here(self, message):
        # Only the process that created this object supervises the child.
        assert os.getpid() == self._parent_pid, message

    def _check_closed(self):
        if self._closed:
            raise ValueError("process object is closed")

    def start(self):
        """Start the child process."""
        self._check_closed()
        self._assert_made_here('can only start a process object created by current process')
        assert self._popen is None, 'cannot start a process twice'
        assert not _current_process.daemon, 'daemonic processes are not allowed to have children'
        _cleanup()
        popen = self._Popen(self)
        self._popen = popen
        self._sentinel = popen.sentinel
        # The child has its copy of the target and its arguments; the parent
        # lets go of them (a target may own resources the caller wants freed).
        del self._target, self._args, self._kwargs
        _children.add(self)

    terminate = _signal_method('terminate', 'SIGTERM')
    kill = _signal_method('kill', 'SIGKILL')
    # Python 3.14's API; offered on every version. By default the child
    # raises KeyboardInterrupt and, unless it handles it, exits with code 1.
    interrupt = _signal_method('interrupt', 'SIGINT')

    def join(self, timeout=None):
        """Wait until the child exits, at most timeout seconds."""
        self._check_closed()
        self._assert_made_here('can only join a child process')
        assert self._popen is not None, 'can only join a started process'
        if self._popen.wait(timeout) is not None:
            _children.discard(self)
            _children_gone()

    def is_alive(self):
        """Whether the child is running."""
        self._check_closed()
        if self is _current_process:
            return True
        self._assert_made_here('can only test a child process')
        if self._popen is None:
            return False  # not started yet
        exited = self._popen.poll() is not None
        if exited:
            _children.discard(self)
            _children_gone()
        return not exited

    def close(self):
        """Release the resources of the Process object. The child must have
        exited; afterwards most methods raise ValueError."""
        popen = self._popen
        if popen is not None:
            if popen.poll() is None:
                raise ValueError(
                    "Cannot close a process while it is still running. "
                    "You should first call join() or terminate()."
                )
            popen.close()
            self._popen = None
            del self._sentinel
            _children.discard(self)
            _children_gone()
        self._closed = True

    # ---- attributes -----------------------------------------------------------------------
    # name, daemon and authkey have setters with a condition; daemon and authkey
    # live in _config, the dict a child's process objects copy.

    def _rename(self, name):
        assert isinstance(name, str), 'name must be a string'
        self._name = name

    def _set_daemon(self, daemonic):
        assert self._popen is None, 'process has already started'
        self._config['daemon'] = daemonic

    def _set_authkey(self, key):
        self._config['authkey'] = AuthenticationString(key)

    name = property(
        lambda self: self._name, _rename, doc='A name for logs and repr(); need not be unique.'
    )
    daemon = property(
        lambda self: self._config.get('daemon', False),
        _set_daemon,
        doc='Whether the child is daemonic: terminated when the parent '
        'exits, and not allowed to have children of its own.',
    )
    authkey = property(
        lambda self: self._config['authkey'],
        _set_authkey,
        doc="The key that authenticates this process family's connections (inherited by children).",
    )

    @property
    def exitcode(self):
        """The exit code, -N if the child was killed by signal N, None while it runs."""
        self._check_closed()
        return None if self._popen is None else self._popen.poll()

    @property
    def ident(self):
        """The pid of the process, None before it started."""
        self._check_closed()
        if self is _current_process:
            return os.getpid()
        return None if self._popen is None else self._popen.pid

    pid = ident

    @property
    def sentinel(self):
        """A file descriptor that becomes readable when the child exits."""
        self._check_closed()
        if '_sentinel' not in self.__dict__:
            raise ValueError("process not started")
        return self._sentinel

    def _state(self):
        """(status word, exit code or None) as shown by repr()."""
        if self is _current_process:
            return 'started', None
        if self._closed:
            return 'closed', None
        if self._parent_pid != os.getpid():
            return 'unknown', None  # a copy inherited by a child: not ours to poll
        if self._popen is None:
            return 'initial', None
        code = self._popen.poll()
        return ('started', None) if code is None else ('stopped', code)

    def __repr__(self):
        status, code = self._state()
        fields = ['name=%r' % self._name]
        if self._popen is not None:
            fields.append('pid=%s' % self._popen.pid)
        fields += ['parent=%s' % self._parent_pid, status]
        if code is not None:
            fields.append('exitcode=%s' % _exitcode_to_name.get(code, code))
        if self.daemon:
            fields.append('daemon')
        return '<%s %s>' % (type(self).__name__, ' '.join(fields))

    # ---- in the child ---------------------------------------------------------------------

    def run(self):
        """The code run in the child; override it in a subclass."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    def _bootstrap(self, parent_sentinel=None):
        """Run in the child: become the current process, run(), and return the
        exit code. Nothing here imports: in a forked child, an import statement
        runs importlib's bookkeeping over pages shared with the parent."""
        exitcode = 1
        try:
            _become_child(self, parent_sentinel)
            util.info('child process calling self.run()')
            try:
                self.run()
            finally:
                util._exit_function()
            exitcode = 0
        except SystemExit as stop:
            exitcode = _exitcode_of_exit(stop.code)
        except BaseException:
            _report_crash(self.name)
        finally:
            _wind_down(exitcode)
        return exitcode

    @staticmethod
    def _after_fork():
        """In a child that inherited the parent's memory: run the after-fork
        hooks of inherited objects, without the parent's finalizers."""
        util._finalizer_registry.clear()
        util._run_after_forkers()


def _become_child(proc, parent_sentinel):
    """The module state of a new child: proc is the current process, the
    parent is watched through parent_sentinel, and there are no children yet."""
    global _current_process, _parent_process, _process_counter, _children
    if proc._start_method is not None:
        context._force_start_method(proc._start_method)
    _children = set()
    _process_counter = itertools.count(1)
    util._close_stdin()
    # The inherited current process (the parent's) is released only after the
    # after-fork hooks have run: its release may run code of its own.
    inherited, _current_process = _current_process, proc
    _parent_process = _ParentProcess(proc._parent_name, proc._parent_pid, parent_sentinel)
    if threading._HAVE_THREAD_NATIVE_ID:
        threading.main_thread()._set_native_id()  # the fork gave it a new thread id
    proc._after_fork()
    del inherited


def _wind_down(exitcode):
    """The end of a child's life in Python: wait for its non-daemon threads,
    and flush what it printed."""
    threading._shutdown()
    util.info('process exiting with exitcode %d' % exitcode)
    util._flush_std_streams()
    util._put_away_stdin()


def _exitcode_of_exit(code):
    """The exit status sys.exit(code) gives, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write('%s\n' % (code,))
    return 1


def _report_crash(name):
    import traceback  # only on this path: a child that succeeds never loads it

    sys.stderr.write('Process %s:\n' % name)
    traceback.print_exc()


class AuthenticationString(bytes):
    """An authentication key: bytes that refuse to be pickled except to start
    a child process."""

    def __reduce__(self):
        if context.get_spawning_popen() is None:
            raise TypeError(
                'Pickling an AuthenticationString object is disallowed for security reasons'
            )
        return AuthenticationString, (bytes(self),)


class _NotOurChild(BaseProcess):
    """A process object for a process this one did not start (the main
    process, or a child's parent): no Popen, no identity, no parent pid."""

    _identity = ()
    _parent_pid = None
    _popen = None
    _closed = False

    def __init__(self, name, config):
        self._name = name
        self._config = config


class _ParentProcess(_NotOurChild):
    """The parent, as seen from a child: it can only be watched, through the
    sentinel that becomes readable when the parent exits."""

    def __init__(self, name, pid, sentinel):
        super().__init__(name, {})
        self._pid = pid
        self._sentinel = sentinel

    def is_alive(self):
        from .connection import wait

        return not wait([self._sentinel], timeout=0)

    def join(self, timeout=None):
        """Wait until the parent exits, at most timeout seconds."""
        from .connection import wait

        wait([self._sentinel], timeout=timeout)

    @property
    def ident(self):
        return self._pid

    pid = ident


class _MainProcess(_NotOurChild):
    """The process that is not a child started by this package."""

    def __init__(self):
        super().__init__(
            'MainProcess',
            {
                'authkey': AuthenticationString(os.urandom(32)),
                'semprefix': '/mp',  # prefix of the names of named semaphores
            },
        )

    def close(self):
        pass


_current_process = _MainProcess()
_parent_process = None
_children = set()
_process_counter = itertools.count(1)

# Every Process object alive (the test suite checks for leaks with it).
_dangling = WeakSet()

# Exit codes of children killed by a signal, as repr() shows them (-15 ->
# '-SIGTERM'). Where two names share a number, the later one in the module
# wins (-6 '-SIGABRT', -29 '-SIGPOLL'), as with the standard library.
_exitcode_to_name = {
    -number: '-' + name
    for name, number in vars(_signal).items()
    if name.startswith('SIG') and not name.startswith('SIG_')
}

# Bound last because both import this module. _bootstrap, which runs in every
# child, uses them without an import statement: in a forked child, one runs
# importlib's Python-level bookkeeping over pages shared with the parent
# (about 8 of a no-op child's 360 copy-on-write faults).
from . import context, util  # noqa: E402
