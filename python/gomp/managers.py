"""Managers: a server process that owns ordinary Python objects, and proxies
through which other processes use them.

How the pieces fit
------------------
A manager class (BaseManager, SyncManager, ...) holds a *registry*: for each
type id, the callable that makes objects of that type in the server, the
methods a proxy may call on them, and the proxy class that stands for them
elsewhere. ``start()`` runs a Server in a child process; ``connect()`` reaches
one that already runs (possibly on another machine).

The wire protocol is the stdlib's, so gomp and stdlib peers mix freely:

* Every connection is a ``connection.Client`` authenticated with the
  manager's authkey (the server authenticates each peer in that peer's own
  thread, so a slow or hostile peer holds up nobody else).
* The first request on a connection is ``(None, name, args, kwds)`` where
  name is one of ``Server.public``; the server calls that method with the
  connection as first argument.
* A connection opened with ``accept_connection`` then carries requests
  ``(object_id, method_name, args, kwds)`` for shared objects: it is the one
  connection that all the proxies of one thread of one process use for that
  server.
* Every reply is ``(kind, payload)``:

  ``'#RETURN'``          the result;
  ``'#ERROR'``           the exception the method raised (re-raised as is);
  ``'#TRACEBACK'``       formatted text of a failure in the server itself;
  ``'#UNSERIALIZABLE'``  formatted text: the result could not be sent;
  ``'#PROXY'``           ``(exposed, Token)`` of a new shared object that a
                         method's result became (``method_to_typeid``).

Shared objects are reference counted in the server: every proxy holds one
reference (taken when it is made, dropped by a finalizer), and an object goes
when its count reaches zero.
"""

import array
import collections.abc
import os
import queue
import signal
import sys
import threading
import time
import types
from traceback import format_exc

from . import _deathwatch, _gomp, connection, process, util
from ._versions import V
from .context import ProcessError, get_spawning_popen, reduction

__all__ = ['BaseManager', 'SyncManager', 'BaseProxy', 'Token', 'SharedMemoryManager']


# ---- values that results are often made of -------------------------------------------------


def _reduce_array(arr):
    # An array travels as its typecode and raw bytes.
    return array.array, (arr.typecode, arr.tobytes())


def _reduce_view_as_list(view):
    # dict.keys()/values()/items() views cannot be pickled: send a list.
    return list, (list(view),)


view_types = [type(view) for view in ({}.items(), {}.keys(), {}.values())]

reduction.register(array.array, _reduce_array)
for _view_type in view_types:
    reduction.register(_view_type, _reduce_view_as_list)
del _view_type


# ---- naming a shared object ----------------------------------------------------------------


class Token:
    """Names one shared object: its type id, the address of the server that
    owns it, and its id there (a string). Pickled as the tuple of the three,
    like the stdlib's, so tokens cross between gomp and stdlib peers."""

    __slots__ = ('typeid', 'address', 'id')

    def __init__(self, typeid, address, id):
        self.__setstate__((typeid, address, id))

    def __getstate__(self):
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state):
        self.typeid, self.address, self.id = state

    def __repr__(self):
        return (
            f'{type(self).__name__}(typeid={self.typeid!r}, '
            f'address={self.address!r}, id={self.id!r})'
        )


# ---- replies and errors --------------------------------------------------------------------


class RemoteError(Exception):
    """A failure inside a manager's server; its argument is the server's
    formatted traceback, shown between two rules."""

    def __str__(self):
        rule = '-' * 75
        return f'\n{rule}\n{self.args[0]}{rule}'


def _remote_text(kind, text):
    if isinstance(text, str):
        return text
    raise TypeError(f"Result {text!r} (kind '{kind}') type is {type(text)}, not str")


# kind of a failed reply -> the exception it stands for
_ERROR_OF_KIND = {
    '#ERROR': lambda error: error,
    '#TRACEBACK': lambda text: RemoteError(_remote_text('#TRACEBACK', text)),
    '#UNSERIALIZABLE': lambda text: RemoteError(
        'Unserializable message: %s\n' % _remote_text('#UNSERIALIZABLE', text)
    ),
}


def convert_to_error(kind, result):
    """The exception that a reply of this kind (not '#RETURN') stands for."""
    make = _ERROR_OF_KIND.get(kind)
    if make is None:
        return ValueError(f'Unrecognized message type {kind!r}')
    return make(result)


def _unwrap(reply, make_proxy=None):
    """The result that reply carries, or raise the error it stands for.
    A '#PROXY' reply becomes make_proxy(exposed, token) when given."""
    kind, payload = reply
    if kind == '#RETURN':
        return payload
    if kind == '#PROXY' and make_proxy is not None:
        return make_proxy(*payload)
    error = convert_to_error(kind, payload)
    # The raised error's traceback references this frame and its callers';
    # none of them may still hold the error (or the reply around it), or the
    # cycle keeps the exception and all it references alive until the next
    # garbage collection (gh-106558). Callers pass the reply straight in.
    reply = payload = None
    try:
        raise error
    finally:
        error = None


def dispatch(c, id, methodname, args=(), kwds={}):
    """Send one request on connection c; return the result of the reply or
    raise the error it stands for."""
    c.send((id, methodname, args, kwds))
    return _unwrap(c.recv())


def _server_call(address, authkey, client, methodname, args=(), kwds={}):
    """Call one of a server's public methods on a connection of its own."""
    with client(address, authkey=authkey) as conn:
        return dispatch(conn, None, methodname, args, kwds)


# ---- the fast path of proxy requests ------------------------------------------------------
#
# A proxy call is one small request and one small reply on a connection that
# only this thread uses, so the cost of a call is the Python work around the
# two messages more than the messages themselves. Where both are plain data
# (and the connection is a pickle Connection), they take a shorter path: the
# standard pickler instead of ForkingPickler (whose per-thread reusable
# pickler costs more than pickling a small tuple; for plain data the bytes
# are the same, see _gomp.plain), and one call into _gomp that sends the
# request and waits for its answer. Anything else (proxies or connections as
# arguments, results that need a reducer, the XML-RPC serializer) takes the
# general path, Connection.send/recv. The wire format is the same either way.

_plain = _gomp.plain
_exchange = _gomp.exchange
_recv_bytes = _gomp.recv_bytes
_dumps = reduction._pickler.dumps
_loads = reduction.ForkingPickler.loads

# Whether a side that waits for the answer looks for it in a short spin
# window, yielding its CPU, before it sleeps (recv_answer and "waiting
# briefly" in pybind/ext/conn.c). When the peer runs on another CPU, waking a
# sleeping process costs more than the whole call; tests_py/bench/NOTES.md,
# "Manager proxy calls", has the figures.
_SPIN = True


def _reply_bytes(reply):
    """The pickle of a reply (kind, payload); if payload cannot be pickled,
    that of the '#UNSERIALIZABLE' reply that says why."""
    if _plain(reply):
        return _dumps(reply)
    try:
        return reduction.ForkingPickler.dumps(reply)
    except Exception:
        return reduction.ForkingPickler.dumps(('#UNSERIALIZABLE', format_exc()))


# ---- which methods an object offers --------------------------------------------------------


def all_methods(obj):
    """The names of obj's callable attributes."""
    return [name for name in dir(obj) if callable(getattr(obj, name))]


def public_methods(obj):
    """The names of obj's callable attributes that do not start with '_'."""
    return [name for name in all_methods(obj) if not name.startswith('_')]


# ---- the server ----------------------------------------------------------------------------

# Returned by a public method that has sent its reply itself.
_REPLIED = object()


class Server:
    """Owns the shared objects of a manager and answers requests for them,
    one thread per connection. serve_forever() runs it as the body of the
    manager's process."""

    # The methods a first request may name (see their docstrings below).
    # Subclasses extend the list.
    public = [
        'accept_connection',
        'create',
        'incref',
        'decref',
        'get_methods',
        'number_of_objects',
        'debug_info',
        'dummy',
        'shutdown',
    ]

    def __init__(self, registry, address, authkey, serializer):
        self.registry = registry
        if isinstance(authkey, bytes):
            self.authkey = process.AuthenticationString(authkey)
        else:
            raise TypeError(f'Authkey {authkey!r} is type {type(authkey)}, not bytes')
        self.listener = listener_client[serializer][0](address=address, backlog=128)
        self.address = self.listener.address
        self.mutex = threading.Lock()
        self.stop_event = threading.Event()
        # Changed under the mutex (read without it: a dict lookup is atomic):
        # id -> (object, set of exposed method names, method_to_typeid or None)
        self.id_to_obj = {}
        # id -> references that proxies outside this server hold
        self.id_to_refcount = {}
        # id -> entry of an object that a proxy *inside* this server refers
        # to (a proxy stored in a shared container). Kept when the last
        # outside reference goes, so that the inner proxy still works.
        self.id_to_local_proxy_obj = {}
        self._handlers = {name: getattr(self, name) for name in self.public}

    # -- running

    def serve_forever(self):
        """Serve until a 'shutdown' request (or Ctrl-C), then exit."""
        process.current_process()._manager_server = self
        threading.Thread(target=self.accepter, name='manager-accepter', daemon=True).start()
        try:
            self.stop_event.wait()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            _restore_standard_streams()
            sys.exit(0)

    def _follow_owner(self, owner):
        """Shut down when owner (the identity of the process that started
        this server with BaseManager.start()) exits, however it dies: its
        finalizer, which asks the server to shut down at a normal exit, does
        not run when it is killed. The server ends then even if processes the
        owner started still use it, as it does at the owner's normal exit.
        See gomp/_deathwatch.py."""
        try:
            fd = _deathwatch.open_owner(owner)
        except OSError:
            return  # no pidfds here: the server lives on, as before
        if fd is None:
            self._owner_gone()
            return
        threading.Thread(
            target=self._await_owner, args=(fd,), name='manager-owner', daemon=True
        ).start()

    def _await_owner(self, fd):
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
        os.close(fd)
        self._owner_gone()

    def _owner_gone(self):
        """The owner has exited: stop as a shutdown request would."""
        util.info('manager: the process that started it has exited; shutting down')
        self.stop_event.set()

    def accepter(self):
        """Accept connections until the listener is closed; each is served
        by a thread of its own."""
        while not self.stop_event.is_set():
            try:
                conn = self.listener.accept()
            except OSError:
                if getattr(self.listener, '_listener', None) is None:
                    return  # closed
                continue
            threading.Thread(target=self.handle_request, args=(conn,), daemon=True).start()

    def handle_request(self, conn):
        """The thread of one new connection: authenticate the peer, answer
        its first request (which may keep the connection to serve proxies)."""
        try:
            if self._authenticated(conn):
                self._answer_first_request(conn)
        finally:
            conn.close()

    def _authenticated(self, conn):
        try:
            connection.deliver_challenge(conn, self.authkey)
            connection.answer_challenge(conn, self.authkey)
        except Exception as e:
            # The peer either failed the challenge (and knows it) or went away.
            util.info('manager: peer not authenticated: %r', e)
            return False
        return True

    def _answer_first_request(self, conn):
        try:
            _, name, args, kwds = conn.recv()
            handler = self._handlers.get(name)
            if handler is None:
                raise AttributeError(
                    f'{name!r} unrecognized: a manager server offers {self.public}'
                )
            result = handler(conn, *args, **kwds)
        except Exception:
            reply = ('#TRACEBACK', format_exc())
        else:
            if result is _REPLIED:
                return
            reply = ('#RETURN', result)
        self._send_reply(conn, reply)

    def serve_client(self, conn):
        """Answer proxy requests on conn until the peer disconnects or the
        server stops."""
        if type(conn) is connection.Connection:
            return self._serve_pickles(conn)
        while not self.stop_event.is_set():
            reply = self._answer_next(conn)
            if reply is None or not self._send_reply(conn, reply):
                return

    def _serve_pickles(self, conn):
        """serve_client on a pickle Connection: each reply goes out and the
        next request comes in through one _gomp.exchange. The request and its
        reply are dropped before the wait (nothing of them stays referenced
        while the peer is idle)."""
        fd = conn.fileno()
        stopping = self.stop_event.is_set
        try:
            data = _recv_bytes(fd)
        except (EOFError, OSError):
            return
        while True:
            try:
                request = _loads(data)
            except Exception:  # e.g. arguments that cannot be unpickled here
                reply = ('#TRACEBACK', format_exc())
            else:
                reply = self._perform(conn, request)
            data = _dumps(reply) if _plain(reply) else _reply_bytes(reply)
            reply = request = None
            try:
                if stopping():
                    conn.send_bytes(data)
                    return
                data = _exchange(fd, data, _SPIN)
            except (EOFError, OSError):
                return

    def _answer_next(self, conn):
        """Receive one proxy request and return its reply; None once the
        peer is gone. (The request and its result live only in this frame:
        nothing of them stays referenced while the next request is awaited.)"""
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return None
        except Exception:  # e.g. arguments that cannot be unpickled here
            return ('#TRACEBACK', format_exc())
        return self._perform(conn, request)

    def _send_reply(self, conn, reply):
        """Send reply, or the error that kept it from being sent. False if
        neither could be sent (the connection is useless then)."""
        try:
            conn.send(reply)
            return True
        except Exception:
            failure = ('#UNSERIALIZABLE', format_exc())
        try:
            conn.send(failure)
            return True
        except Exception as e:
            util.info(
                'manager: cannot reply on connection of thread %r: %r',
                threading.current_thread().name,
                e,
            )
            util.info(' ... the reply was %r', reply)
            return False

    # -- proxy requests

    def _entry(self, ident):
        entry = self.id_to_obj.get(ident) or self.id_to_local_proxy_obj.get(ident)
        if entry is None:
            raise KeyError(ident)
        return entry

    def _perform(self, conn, request):
        """The reply to one proxy request (object_id, method, args, kwds)."""
        try:
            ident, methodname, args, kwds = request
            obj, exposed, to_typeid = (
                self.id_to_obj.get(ident)
                or self.id_to_local_proxy_obj.get(ident)
                or self._entry(ident)
            )
        except Exception:
            return ('#TRACEBACK', format_exc())
        method = getattr(obj, methodname, None) if methodname in exposed else None
        if method is None:
            return self._fallback(conn, ident, obj, exposed, methodname, args, kwds)
        try:
            result = method(*args, **kwds)
        except Exception as e:
            return ('#ERROR', e)
        typeid = to_typeid.get(methodname) if to_typeid else None
        if typeid:
            return self._share_result(conn, typeid, result)
        return ('#RETURN', result)

    def _fallback(self, conn, ident, obj, exposed, methodname, args, kwds):
        """The reply to a method the object does not expose: the fallbacks
        (str, repr, the value itself) or an error."""
        answer = self.fallback_mapping.get(methodname)
        try:
            if answer is None:
                if methodname in exposed:
                    raise AttributeError(
                        f'{type(obj).__name__!r} object has no attribute {methodname!r}'
                    )
                raise AttributeError(
                    f'method {methodname!r} of {type(obj)!r} object is not in exposed={exposed!r}'
                )
            return ('#RETURN', answer(self, conn, ident, obj, *args, **kwds))
        except Exception:
            return ('#TRACEBACK', format_exc())

    def _share_result(self, conn, typeid, result):
        """Keep a method's result in the server as a new shared object of
        typeid; the reply names it, and the caller owns its one reference."""
        try:
            ident, exposed = self.create(conn, typeid, result)
        except Exception:
            return ('#TRACEBACK', format_exc())
        return ('#PROXY', (exposed, Token(typeid, self.address, ident)))

    # What a proxy gets for these methods when its object does not expose
    # them; each is called as f(server, conn, ident, obj, *args, **kwds).
    fallback_mapping = {
        '#GETVALUE': lambda server, conn, ident, obj: obj,
        '__str__': lambda server, conn, ident, obj: str(obj),
        '__repr__': lambda server, conn, ident, obj: repr(obj),
    }

    # -- the public methods (each takes the connection first)

    def dummy(self, c):
        """Does nothing: a client's check that it can reach the server."""

    def debug_info(self, c):
        """One entry per shared object: its id, refcount and (the start of)
        its str."""
        with self.mutex:
            rows = [
                (ident, count, self.id_to_obj[ident][0])
                for ident, count in sorted(self.id_to_refcount.items())
            ]
        return '\n'.join(
            f'  {ident}:       refcount={count}\n    {str(obj)[:75]}' for ident, count, obj in rows
        )

    def number_of_objects(self, c):
        """How many shared objects proxies outside the server refer to."""
        return len(self.id_to_refcount)

    def shutdown(self, c):
        """Acknowledge, then stop serving (serve_forever exits the process)."""
        util.debug('manager received shutdown message')
        try:
            c.send(('#RETURN', None))
        finally:
            self.stop_event.set()
        return _REPLIED

    def create(self, c, typeid, /, *args, **kwds):
        """Make a shared object of typeid; return (its id, exposed names).
        It starts with one reference, which the caller owns."""
        factory, exposed, method_to_typeid, _ = self.registry[typeid]
        if factory is not None:
            obj = factory(*args, **kwds)
        elif len(args) == 1 and not kwds:
            obj = args[0]  # an existing object (a method's result)
        else:
            raise ValueError('Without callable, must have one non-keyword argument')
        if exposed is None:
            exposed = public_methods(obj)
        if method_to_typeid is not None:
            if not isinstance(method_to_typeid, dict):
                raise TypeError(
                    f'Method_to_typeid {method_to_typeid!r}: type '
                    f'{type(method_to_typeid)}, not dict'
                )
            exposed = [*exposed, *method_to_typeid]
        # A string (an XML-RPC integer has only 32 bits). The same object
        # created twice has one id and one reference count.
        ident = '%x' % id(obj)
        util.debug('%r callable returned object with id %r', typeid, ident)
        with self.mutex:
            self.id_to_obj[ident] = (obj, set(exposed), method_to_typeid)
            self.id_to_refcount[ident] = self.id_to_refcount.get(ident, 0) + 1
        return ident, tuple(exposed)

    def get_methods(self, c, token):
        """The exposed method names of the object token names."""
        return tuple(self._entry(token.id)[1])

    def accept_connection(self, c, name):
        """Make c the connection of one thread's proxies (name says whose)
        and serve it, in this thread, until it closes."""
        threading.current_thread().name = name
        c.send(('#RETURN', None))
        self.serve_client(c)
        return _REPLIED

    def incref(self, c, ident):
        """Count one more outside reference to the object."""
        with self.mutex:
            count = self.id_to_refcount.get(ident)
            if count is None:
                # Only proxies inside the server still refer to it, and one
                # of them is handing out a new outside reference: track it
                # again (KeyError for an id the server never had).
                self.id_to_obj[ident] = self.id_to_local_proxy_obj[ident]
                util.debug('Server re-enabled tracking & INCREF %r', ident)
                count = 0
            self.id_to_refcount[ident] = count + 1

    def decref(self, c, ident):
        """Count one outside reference less; forget the object at zero."""
        with self.mutex:
            remaining = self.id_to_refcount.get(ident, 0) - 1
            if remaining > 0:
                self.id_to_refcount[ident] = remaining
                return
            if remaining < 0:
                if ident in self.id_to_local_proxy_obj:
                    return  # held by inner proxies only: nothing to drop
                raise KeyError(ident)
            del self.id_to_refcount[ident]
            dropped = self.id_to_obj.pop(ident, None)
        # Released outside the mutex: the object may hold proxies whose
        # finalizers call back into this server.
        util.debug('disposing of obj with id %r', ident)
        del dropped


def _restore_standard_streams():
    # A server that ran in a process whose sys.stdout/stderr were replaced
    # (a test harness's capture, say) ends on the real streams.
    if sys.stdout is not sys.__stdout__:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


class State:
    """Where a manager is in its life (in .value)."""

    __slots__ = ['value']
    INITIAL, STARTED, SHUTDOWN = range(3)

    def __init__(self, value=0):
        self.value = value


# serializer name -> (listener type, client function)
listener_client = {
    'pickle': (connection.Listener, connection.Client),
    'xmlrpclib': (connection.XmlListener, connection.XmlClient),
}


# ---- managers ------------------------------------------------------------------------------

# typeid -> proxy type of the latest registration of that typeid by any
# manager class. A proxy that has no manager in this process (one received
# from another process) uses it to turn a '#PROXY' reply into a proxy.
_proxytype_of_typeid = {}


def _require_initial(state, server='server', owner='Manager'):
    """ProcessError unless a manager in this state may still start a server."""
    if state.value != State.INITIAL:
        problems = {
            State.STARTED: f'Already started {server}',
            State.SHUTDOWN: f'{owner} has shut down',
        }
        raise ProcessError(problems.get(state.value, f'Unknown state {state.value!r}'))


def _proxy_for_new_object(proxytype, token, exposed, serializer, manager, authkey):
    """A proxy for an object the server has just made with one reference for
    us: the proxy takes a reference of its own, and ours is dropped."""
    proxy = proxytype(token, serializer, manager=manager, authkey=authkey, exposed=exposed)
    _server_call(token.address, authkey, listener_client[serializer][1], 'decref', (token.id,))
    return proxy


def _creation_method(typeid, proxytype):
    """The manager method named typeid: create a shared object, return a
    proxy for it."""

    def create(self, /, *args, **kwds):
        util.debug('requesting creation of a shared %r object', typeid)
        token, exposed = self._create(typeid, *args, **kwds)
        return _proxy_for_new_object(
            proxytype, token, exposed, self._serializer, self, self._authkey
        )

    create.__name__ = create.__qualname__ = typeid
    create.__doc__ = f'Create a shared {typeid!r} object and return a proxy for it.'
    return create


class BaseManager:
    """A manager: start() runs a server process (or connect() reaches a
    running one), and the methods register() adds create shared objects in
    it and return proxies for them."""

    _registry = {}
    _Server = Server

    def __init__(
        self, address=None, authkey=None, serializer='pickle', ctx=None, *, shutdown_timeout=1.0
    ):
        self._Listener, self._Client = listener_client[serializer]
        self._serializer = serializer
        self._address = address
        if authkey is None:
            authkey = process.current_process().authkey
        self._authkey = process.AuthenticationString(authkey)
        self._state = State(State.INITIAL)
        if ctx is None:
            from .context import _default_context

            ctx = _default_context.get_context()
        self._ctx = ctx
        self._shutdown_timeout = shutdown_timeout
        self._process = None

    @property
    def address(self):
        return self._address

    # -- the server

    def get_server(self):
        """A Server for this manager's registry, to run in this process with
        serve_forever()."""
        _require_initial(self._state)
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self):
        """Use the server that already runs at this manager's address."""
        _server_call(self._address, self._authkey, self._Client, 'dummy')
        self._state.value = State.STARTED

    def start(self, initializer=None, initargs=()):
        """Start the server in a new process, which first calls
        initializer(*initargs) if one is given."""
        _require_initial(self._state)
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        reader, writer = connection.Pipe(duplex=False)
        self._process = self._server_process(writer, initializer, initargs)
        self._process.start()
        writer.close()  # the child holds the end that reports
        with reader:
            self._address = reader.recv()  # where the server listens
        # An instance attribute in front of the method below: the manager's
        # shutdown, also run at exit and when the manager is collected.
        self.shutdown = util.Finalize(
            self,
            type(self)._finalize_manager,
            exitpriority=0,
            args=(
                self._process,
                self.address,
                self._authkey,
                self._state,
                self._Client,
                self._shutdown_timeout,
            ),
        )
        self._state.value = State.STARTED

    def _server_process(self, writer, initializer, initargs):
        """The (unstarted) process that runs this manager's server."""
        server_args = (
            self._registry,
            self.address,
            self._authkey,
            self._serializer,
            writer,
            initializer,
            initargs,
        )
        child = self._ctx.Process(target=type(self)._run_server, args=server_args)
        child.name = type(self).__name__ + '-' + ':'.join(map(str, child._identity))
        # The server ends with this process (Server._follow_owner).
        child._gomp_owner = _deathwatch.identity()
        return child

    def shutdown(self):
        """Stop the server process. (start() replaces this with a finalizer;
        a manager that only connect()ed owns no process to stop.)"""

    @classmethod
    def _run_server(
        cls, registry, address, authkey, serializer, writer, initializer=None, initargs=()
    ):
        """The server process: make the server, run the initializer, report
        the server's address, serve."""
        # Ctrl-C in a terminal reaches the whole process group; the parent
        # decides when its manager stops (bpo-36368). An initializer may
        # still choose otherwise.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server = cls._Server(registry, address, authkey, serializer)
        if initializer is not None:
            initializer(*initargs)
        with writer:
            writer.send(server.address)
        util.info('manager serving at %r', server.address)
        owner = getattr(process.current_process(), '_gomp_owner', None)
        follow = getattr(server, '_follow_owner', None)  # None: a _Server of the user's own
        if owner is not None and follow is not None:
            follow(owner)
        server.serve_forever()

    @staticmethod
    def _finalize_manager(process, address, authkey, state, _Client, shutdown_timeout):
        """Stop a manager's server: ask it, then terminate it, then kill it,
        each time waiting up to shutdown_timeout seconds for it to go."""

        def ask():
            try:
                _server_call(address, authkey, _Client, 'shutdown')
            except Exception:
                pass  # gone already, or unreachable: escalate

        escalation = (
            (ask, shutdown_timeout, 'sending shutdown message to manager'),
            (process.terminate, shutdown_timeout, 'manager still alive; terminating it'),
            (process.kill, None, 'manager still alive after terminate; killing it'),
        )
        for stop, wait, note in escalation:
            if not process.is_alive():
                break
            util.info(note)
            stop()
            process.join(wait)
        state.value = State.SHUTDOWN
        BaseProxy._address_to_local.pop(address, None)

    def join(self, timeout=None):
        """Wait for the server process (if this manager started one)."""
        if self._process is None:
            return
        self._process.join(timeout)
        if not self._process.is_alive():
            self._process = None

    def __enter__(self):
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            problems = {
                State.INITIAL: 'Unable to start server',
                State.SHUTDOWN: 'Manager has shut down',
            }
            raise ProcessError(
                problems.get(self._state.value, f'Unknown state {self._state.value!r}')
            )
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.shutdown()

    # -- requests to the server

    def _call_server(self, methodname, *args, **kwds):
        return _server_call(self._address, self._authkey, self._Client, methodname, args, kwds)

    def _create(self, typeid, /, *args, **kwds):
        """Create a shared object; return its Token and exposed names."""
        if self._state.value != State.STARTED:
            raise AssertionError('server not yet started')  # the stdlib's type
        ident, exposed = self._call_server('create', typeid, *args, **kwds)
        return Token(typeid, self._address, ident), exposed

    def _debug_info(self):
        return self._call_server('debug_info')

    def _number_of_objects(self):
        return self._call_server('number_of_objects')

    # -- registering types

    @classmethod
    def register(
        cls,
        typeid,
        callable=None,
        proxytype=None,
        exposed=None,
        method_to_typeid=None,
        create_method=True,
    ):
        """Register typeid: callable(*args, **kwds) makes its objects in the
        server; proxytype (default AutoProxy) makes proxies for them; exposed
        names the methods a proxy may call (default: the proxy type's
        _exposed_, else every public method); method_to_typeid maps method
        names to the typeid of the shared object their result becomes
        (default: the proxy type's _method_to_typeid_). With create_method
        the manager gets a method named typeid that creates an object and
        returns a proxy."""
        proxytype = proxytype or AutoProxy
        if '_registry' not in vars(cls):
            # First registration on this class: leave the base class's alone.
            cls._registry = dict(cls._registry)
        exposed = exposed or getattr(proxytype, '_exposed_', None)
        method_to_typeid = method_to_typeid or getattr(proxytype, '_method_to_typeid_', None)
        for pair in (method_to_typeid or {}).items():
            if not all(isinstance(part, str) for part in pair):
                raise TypeError(f'method_to_typeid entry {pair!r} is not a pair of strings')
        cls._registry[typeid] = (callable, exposed, method_to_typeid, proxytype)
        _proxytype_of_typeid[typeid] = proxytype
        if create_method:
            setattr(cls, typeid, _creation_method(typeid, proxytype))


# ---- proxies -------------------------------------------------------------------------------


class ProcessLocalSet(set):
    """A set that starts empty in a forked child and pickles as empty."""

    def __init__(self):
        util.register_after_fork(self, set.clear)

    def __reduce__(self):
        return type(self), ()


def _authkey_for(authkey, manager):
    if authkey is None:
        authkey = manager._authkey if manager is not None else process.current_process().authkey
    return process.AuthenticationString(authkey)


def _close_thread_connection(tls):
    conn = tls.__dict__.pop('connection', None)
    if conn is not None:
        util.debug('thread %r has no more proxies so closing conn', threading.current_thread().name)
        conn.close()


class BaseProxy:
    """A proxy for a shared object: its methods run in the manager's server.

    Each thread of a process has one connection per server, shared by all
    its proxies for that server. A proxy holds one reference to its object
    in the server: taken when the proxy is made, dropped by a finalizer."""

    # Guards _address_to_local.
    _mutex = util.ForkAwareThreadLock()
    # server address -> (thread-local holding this thread's .connection,
    #                    set of the ids this process holds references to)
    _address_to_local = {}

    def __init__(
        self,
        token,
        serializer,
        manager=None,
        authkey=None,
        exposed=None,
        incref=True,
        manager_owned=False,
    ):
        self._tls, self._idset = self._per_server_state(token.address)
        self._token = token
        self._id = token.id
        self._manager = manager
        self._serializer = serializer
        self._Client = listener_client[serializer][1]
        # True for a proxy unpickled inside the server that owns its object
        # (one stored in a shared container): the server keeps the object
        # for it, so it holds no reference.
        self._owned_by_manager = manager_owned
        self._authkey = _authkey_for(authkey, manager)
        if incref:
            self._incref()
        util.register_after_fork(self, BaseProxy._after_fork)

    @staticmethod
    def _per_server_state(address):
        with BaseProxy._mutex:
            state = BaseProxy._address_to_local.get(address)
            if state is None:
                state = (util.ForkAwareLocal(), ProcessLocalSet())
                BaseProxy._address_to_local[address] = state
            return state

    # -- calling the referent

    def _connect(self):
        """Open this thread's connection to the server; return it."""
        util.debug('making connection to manager')
        name = process.current_process().name
        thread = threading.current_thread().name
        if thread != 'MainThread':
            name = f'{name}|{thread}'
        conn = self._Client(self._token.address, authkey=self._authkey)
        dispatch(conn, None, 'accept_connection', (name,))
        self._tls.connection = conn
        return conn

    def _callmethod(self, methodname, args=(), kwds={}):
        """Call methodname(*args, **kwds) on the referent; return a copy of
        the result (or a proxy, if the method's result is registered as a
        shared type)."""
        conn = getattr(self._tls, 'connection', None)
        if conn is None:
            conn = self._connect()
        request = (self._id, methodname, args, kwds)
        if type(conn) is not connection.Connection or conn._handle is None or not _plain(request):
            conn.send(request)
            return _unwrap(conn.recv(), self._proxy_from_reply)
        reply = _loads(_exchange(conn._handle, _dumps(request), _SPIN))
        if type(reply) is tuple and len(reply) == 2 and reply[0] == '#RETURN':
            return reply[1]
        try:
            return _unwrap(reply, self._proxy_from_reply)
        finally:
            reply = None  # see _unwrap: no frame may keep the error alive

    def _proxy_from_reply(self, exposed, token):
        entry = self._manager._registry.get(token.typeid) if self._manager is not None else None
        proxytype = entry[-1] if entry else _proxytype_of_typeid.get(token.typeid, AutoProxy)
        # The server may call itself by another address than the one we
        # reach it at (a wildcard bind, say).
        token.address = self._token.address
        return _proxy_for_new_object(
            proxytype, token, exposed, self._serializer, self._manager, self._authkey
        )

    def _getvalue(self):
        """A copy of the referent."""
        return self._callmethod('#GETVALUE')

    # -- the reference this proxy holds

    def _incref(self):
        """Take this proxy's reference to its object, and arrange for the
        finalizer (self._close) to give it back. A proxy that the server
        itself holds takes none."""
        if self._owned_by_manager:
            return
        manager_state = None if self._manager is None else self._manager._state
        _server_call(self._token.address, self._authkey, self._Client, 'incref', (self._id,))
        self._idset.add(self._id)
        self._close = util.Finalize(
            self,
            BaseProxy._decref,
            exitpriority=10,
            args=(self._token, self._authkey, manager_state, self._tls, self._idset, self._Client),
        )

    def _after_fork(self):
        # A forked child's copy is a proxy of its own: it takes its own
        # reference, and its manager object does not own the server there.
        self._manager = None
        try:
            self._incref()
        except Exception as e:
            util.info('proxy %r: no reference after fork: %r', self._token, e)

    @staticmethod
    def _decref(token, authkey, state, tls, idset, _Client):
        """Finalizer: give the proxy's reference back (unless the manager
        has shut down) and close this thread's connection to the server once
        the process holds nothing more there."""
        idset.discard(token.id)
        if state is not None and state.value != State.STARTED:
            util.debug('DECREF %r -- manager already shutdown', token.id)
        else:
            try:
                util.debug('DECREF %r', token.id)
                _server_call(token.address, authkey, _Client, 'decref', (token.id,))
            except Exception as e:
                util.debug('... decref failed %s', e)
        if not idset:
            _close_thread_connection(tls)

    # -- printing, copying, pickling

    def __repr__(self):
        return f'<{type(self).__name__} object, typeid {self._token.typeid!r} at {id(self):#x}>'

    def __str__(self):
        """The referent's repr (or a note that it could not be had)."""
        try:
            text = self._callmethod('__repr__')
        except Exception:
            text = f"{repr(self)[:-1]}; '__str__()' failed>"
        return text

    def __deepcopy__(self, memo):
        return self._getvalue()

    def __reduce__(self):
        # An AutoProxy's class is made at run time: rebuild it by AutoProxy.
        auto = getattr(self, '_isauto', False)
        kwds = {'exposed': self._exposed_} if auto else {}
        if get_spawning_popen() is not None:
            # Only a child being spawned may receive the authkey.
            kwds['authkey'] = self._authkey
        return RebuildProxy, (
            AutoProxy if auto else type(self),
            self._token,
            self._serializer,
            kwds,
        )


def RebuildProxy(func, token, serializer, kwds):
    """Unpickle a proxy: func(token, serializer, ...) makes it.

    Inside the server that owns the object, the proxy holds no reference:
    the server keeps the object for it. In a process that is being
    bootstrapped the inherited reference is used instead of a new one."""
    me = process.current_process()
    server = getattr(me, '_manager_server', None)
    if server is not None and server.address == token.address:
        # Keep the object's entry for this proxy even after the last
        # outside reference goes (Server.id_to_local_proxy_obj).
        local = server.id_to_local_proxy_obj
        if token.id not in local:
            local[token.id] = server.id_to_obj[token.id]
        kwds['manager_owned'] = True
    inheriting = getattr(me, '_inheriting', False)
    return func(token, serializer, incref=kwds.pop('incref', True) and not inheriting, **kwds)


def _forwarder(name):
    """A proxy method that calls name on the referent."""

    def forward(self, /, *args, **kwds):
        return self._callmethod(name, args, kwds)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f'Call {name}() of the referent.'
    return forward


def MakeProxyType(name, exposed, _cache={}):
    """A BaseProxy subclass with one forwarding method per exposed name
    (made once per (name, exposed))."""
    exposed = tuple(exposed)
    made = _cache.get((name, exposed))
    if made is None:
        namespace = {method: _forwarder(method) for method in exposed}
        namespace['_exposed_'] = exposed
        made = _cache[(name, exposed)] = type(name, (BaseProxy,), namespace)
    return made


def AutoProxy(
    token, serializer, manager=None, authkey=None, exposed=None, incref=True, manager_owned=False
):
    """A proxy whose methods are the ones its object exposes (asked from the
    server when not given)."""
    authkey = _authkey_for(authkey, manager)
    if exposed is None:
        exposed = _server_call(
            token.address, authkey, listener_client[serializer][1], 'get_methods', (token,)
        )
    proxytype = MakeProxyType(f'AutoProxy[{token.typeid}]', exposed)
    proxy = proxytype(
        token,
        serializer,
        manager=manager,
        authkey=authkey,
        incref=incref,
        manager_owned=manager_owned,
    )
    proxy._isauto = True
    return proxy


# ---- the proxy types SyncManager hands out -------------------------------------------------


def _names(spaced):
    """A tuple of method names written as one space-separated string."""
    return tuple(spaced.split())


# Exposed only so a proxy can reach the referent's attributes; the proxy
# classes use them explicitly and never forward them as methods.
_ATTRIBUTE_HOOKS = frozenset(_names('__getattribute__ __setattr__ __delattr__'))


def _forwarding(cls):
    """Class decorator: every name in cls._exposed_ that neither the class
    nor a base below BaseProxy defines becomes a method calling it on the
    referent. Only behaviour beyond forwarding is written out by hand."""
    for name in cls._exposed_:
        owner = next((k for k in cls.__mro__ if name in k.__dict__), object)
        if name not in _ATTRIBUTE_HOOKS and owner in (BaseProxy, object):
            setattr(cls, name, _forwarder(name))
    return cls


def _in_place(remote_name):
    """An augmented assignment (x += y, ...): change the referent with
    remote_name, and keep the proxy as the result rather than a copy."""

    def operator(self, other):
        self._callmethod(remote_name, (other,))
        return self

    operator.__doc__ = f'Change the referent with {remote_name}(); the result is this proxy.'
    return operator


def _remote_attribute(name):
    return property(
        lambda self: self._callmethod('__getattribute__', (name,)), doc=f'The referent\'s {name}.'
    )


@_forwarding
class IteratorProxy(BaseProxy):
    _exposed_ = _names('__next__ send throw close')

    def __iter__(self):
        return self


# The lock proxies (and the condition's, which is one) forward locked() where
# the host's locks and conditions have it.
_LOCKED = ' locked' if V.lock_proxy_locked else ''


@_forwarding
class AcquirerProxy(BaseProxy):
    _exposed_ = _names('acquire release' + _LOCKED)

    def acquire(self, blocking=True, timeout=None):
        # The referent's acquire() does not take timeout=None.
        return self._callmethod('acquire', (blocking,) if timeout is None else (blocking, timeout))

    def __enter__(self):
        return self._callmethod('acquire')

    def __exit__(self, *exc_info):
        return self._callmethod('release')


@_forwarding
class ConditionProxy(AcquirerProxy):
    _exposed_ = _names('acquire release wait notify notify_all' + _LOCKED)

    def wait_for(self, predicate, timeout=None):
        """Wait until predicate() (evaluated here) is true or timeout seconds
        have passed; return its last value."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            satisfied = predicate()
            if satisfied:
                return satisfied
            if deadline is None:
                self.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return satisfied
            self.wait(remaining)


@_forwarding
class EventProxy(BaseProxy):
    _exposed_ = _names('is_set set clear wait')


@_forwarding
class BarrierProxy(BaseProxy):
    _exposed_ = _names('__getattribute__ wait abort reset')

    parties = _remote_attribute('parties')
    n_waiting = _remote_attribute('n_waiting')
    broken = _remote_attribute('broken')


class NamespaceProxy(BaseProxy):
    """Attributes of the shared Namespace. Names starting with '_' are the
    proxy's own."""

    _exposed_ = _names('__getattribute__ __setattr__ __delattr__')

    def __getattr__(self, key):
        # Reached only when the proxy itself has no such attribute.
        if key.startswith('_'):
            raise AttributeError(f'{type(self).__name__!r} object has no attribute {key!r}')
        return self._callmethod('__getattribute__', (key,))

    def __setattr__(self, key, value):
        if key.startswith('_'):
            object.__setattr__(self, key, value)
        else:
            self._callmethod('__setattr__', (key, value))

    def __delattr__(self, key):
        if key.startswith('_'):
            object.__delattr__(self, key)
        else:
            self._callmethod('__delattr__', (key,))


@_forwarding
class ValueProxy(BaseProxy):
    _exposed_ = _names('get set')

    value = property(
        lambda self: self._callmethod('get'),
        lambda self, new: self._callmethod('set', (new,)),
        doc='The shared value.',
    )

    __class_getitem__ = classmethod(types.GenericAlias)


BaseListProxy = MakeProxyType(
    'BaseListProxy',
    _names(
        '__add__ __contains__ __delitem__ __getitem__ __imul__ __len__ __mul__ '
        '__reversed__ __rmul__ __setitem__ append clear copy count extend index '
        'insert pop remove reverse sort'
    ),
)


class ListProxy(BaseListProxy):
    __iadd__ = _in_place('extend')
    __imul__ = _in_place('__imul__')
    __class_getitem__ = classmethod(types.GenericAlias)


_BaseDictProxy = MakeProxyType(
    'DictProxy',
    _names(
        '__contains__ __delitem__ __getitem__ __ior__ __iter__ __len__ __or__ '
        '__reversed__ __ror__ __setitem__ clear copy fromkeys get items keys pop '
        'popitem setdefault update values'
    ),
)
_BaseDictProxy._method_to_typeid_ = {'__iter__': 'Iterator'}


class DictProxy(_BaseDictProxy):
    __ior__ = _in_place('__ior__')
    __class_getitem__ = classmethod(types.GenericAlias)


_BaseSetProxy = MakeProxyType(
    '_BaseSetProxy',
    _names(
        '__and__ __contains__ __ge__ __gt__ __iand__ __ior__ __isub__ __iter__ '
        '__ixor__ __le__ __len__ __lt__ __or__ __rand__ __ror__ __rsub__ __rxor__ '
        '__sub__ __xor__ add clear copy difference difference_update discard '
        'intersection intersection_update isdisjoint issubset issuperset pop '
        'remove symmetric_difference symmetric_difference_update union update'
    ),
)
_BaseSetProxy._method_to_typeid_ = {'__iter__': 'Iterator'}


class SetProxy(_BaseSetProxy):
    __ior__ = _in_place('__ior__')
    __iand__ = _in_place('__iand__')
    __ixor__ = _in_place('__ixor__')
    __isub__ = _in_place('__isub__')
    __class_getitem__ = classmethod(types.GenericAlias)


collections.abc.MutableSequence.register(BaseListProxy)
collections.abc.MutableMapping.register(_BaseDictProxy)
collections.abc.MutableSet.register(_BaseSetProxy)


ArrayProxy = MakeProxyType('ArrayProxy', _names('__len__ __getitem__ __setitem__'))


BasePoolProxy = MakeProxyType(
    'PoolProxy',
    _names(
        'apply apply_async close imap imap_unordered join map map_async starmap '
        'starmap_async terminate'
    ),
)
BasePoolProxy._method_to_typeid_ = dict(
    {name: 'AsyncResult' for name in _names('apply_async map_async starmap_async')},
    imap='Iterator',
    imap_unordered='Iterator',
)


class PoolProxy(BasePoolProxy):
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


# ---- the objects SyncManager makes ---------------------------------------------------------


class Namespace:
    """A bag of attributes; its repr leaves out names starting with '_'."""

    def __init__(self, /, **kwds):
        vars(self).update(kwds)

    def __repr__(self):
        shown = sorted(f'{k}={v!r}' for k, v in list(vars(self).items()) if not k.startswith('_'))
        return f'{type(self).__name__}({", ".join(shown)})'


class Value:
    """A holder of one value, in .value or through get()/set() (what
    ValueProxy calls). The typecode is recorded, not enforced, and lock is
    accepted for the signature of sharedctypes.Value: the server's objects
    need no lock of their own."""

    def __init__(self, typecode, value, lock=True):
        self._typecode = typecode
        self.value = value

    def get(self):
        return self.value

    def set(self, value):
        self.value = value

    def __repr__(self):
        return f'{type(self).__name__}({self._typecode!r}, {self.value!r})'


def Array(typecode, sequence, lock=True):
    return array.array(typecode, sequence)


def _make_pool(*args, **kwds):
    # The pool module is imported by the servers that make a pool only.
    from .pool import Pool

    return Pool(*args, **kwds)


class SyncManager(BaseManager):
    """A manager of queues, pools, the threading synchronization types, and
    list, dict, set, Value, Array and Namespace objects.
    multiprocessing.Manager() returns a started one."""


# typeid, the callable that makes it in the server, its proxy type, and
# whether the manager gets a method creating it (the last two are the
# results of other methods: method_to_typeid).
_SYNC_MANAGER_TYPES = (
    ('Queue', queue.Queue, AutoProxy, True),
    ('JoinableQueue', queue.Queue, AutoProxy, True),
    ('Event', threading.Event, EventProxy, True),
    ('Lock', threading.Lock, AcquirerProxy, True),
    ('RLock', threading.RLock, AcquirerProxy, True),
    ('Semaphore', threading.Semaphore, AcquirerProxy, True),
    ('BoundedSemaphore', threading.BoundedSemaphore, AcquirerProxy, True),
    ('Condition', threading.Condition, ConditionProxy, True),
    ('Barrier', threading.Barrier, BarrierProxy, True),
    ('Pool', _make_pool, PoolProxy, True),
    ('list', list, ListProxy, True),
    ('dict', dict, DictProxy, True),
    ('set', set, SetProxy, True),
    ('Value', Value, ValueProxy, True),
    ('Array', Array, ArrayProxy, True),
    ('Namespace', Namespace, NamespaceProxy, True),
    ('Iterator', None, IteratorProxy, False),
    ('AsyncResult', None, AutoProxy, False),
)

for _typeid, _factory, _proxytype, _create in _SYNC_MANAGER_TYPES:
    SyncManager.register(_typeid, _factory, _proxytype, create_method=_create)
del _typeid, _factory, _proxytype, _create


# ---- shared memory -------------------------------------------------------------------------


def _unlink_segment(segment_name):
    from .shared_memory import SharedMemory

    segment = SharedMemory(segment_name)
    segment.close()
    segment.unlink()


class _SharedMemoryTracker:
    """The names of the shared memory segments a SharedMemoryServer owns:
    unlinked when released, at shutdown, or when the tracker goes."""

    def __init__(self, name, segment_names=None):
        self.segment_names = list(segment_names or ())
        self.shared_memory_context_name = name

    def __getstate__(self):
        return self.shared_memory_context_name, self.segment_names

    def __setstate__(self, state):
        self.__init__(*state)

    def register_segment(self, segment_name):
        """Track the named segment."""
        self.segment_names.append(segment_name)

    def destroy_segment(self, segment_name):
        """Stop tracking the named segment and unlink it."""
        self.segment_names.remove(segment_name)
        _unlink_segment(segment_name)

    def unlink(self):
        """Unlink every tracked segment."""
        while self.segment_names:
            self.destroy_segment(self.segment_names[0])

    def __del__(self):
        self.unlink()


def _tracker_name(address):
    if isinstance(address, bytes):  # a Linux abstract socket
        address = os.fsdecode(address)
    return f'shm_{address}_{os.getpid()}'


class SharedMemoryServer(Server):
    """A Server that also tracks the shared memory segments its clients
    make, and unlinks them when it shuts down."""

    public = Server.public + ['track_segment', 'release_segment', 'list_segments']

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared_memory_context = _SharedMemoryTracker(_tracker_name(self.address))

    def create(self, c, typeid, /, *args, **kwargs):
        # The callable of a typeid whose proxy type is marked
        # _shared_memory_proxy is given the tracker too.
        proxytype = self.registry[typeid][-1]
        if hasattr(proxytype, '_shared_memory_proxy'):
            kwargs.update(shared_memory_context=self.shared_memory_context)
        return super().create(c, typeid, *args, **kwargs)

    def shutdown(self, c):
        """Unlink every tracked segment, then stop."""
        self.shared_memory_context.unlink()
        return super().shutdown(c)

    def _owner_gone(self):
        # What a shutdown request would do: no segment outlives the server.
        self.shared_memory_context.unlink()
        super()._owner_gone()

    # The public methods of the segments.

    def track_segment(self, c, segment_name):
        """Track the named segment (unlinked at shutdown)."""
        self.shared_memory_context.register_segment(segment_name)

    def list_segments(self, c):
        """The names of the tracked segments."""
        return self.shared_memory_context.segment_names

    def release_segment(self, c, segment_name):
        """Unlink the named segment now and stop tracking it."""
        self.shared_memory_context.destroy_segment(segment_name)


class SharedMemoryManager(BaseManager):
    """A manager whose server tracks the SharedMemory blocks and
    ShareableLists made through it, and unlinks them all when it stops."""

    _Server = SharedMemoryServer

    def __init__(self, *args, **kwargs):
        if os.name == 'posix':
            # Start the resource tracker first, so that this process and
            # the server it starts share one (bpo-36867).
            from . import resource_tracker

            resource_tracker.ensure_running()
        super().__init__(*args, **kwargs)
        util.debug('%s created by pid %d', type(self).__name__, os.getpid())

    def get_server(self):
        _require_initial(self._state, 'SharedMemoryServer', 'SharedMemoryManager')
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def _tracked(self, segment):
        """Have the server track segment; unlink it if that fails."""
        try:
            self._call_server('track_segment', segment.name)
        except BaseException:
            segment.unlink()
            raise

    def SharedMemory(self, size):
        """A new SharedMemory block of size bytes, tracked by the server."""
        from .shared_memory import SharedMemory

        block = SharedMemory(None, create=True, size=size)
        self._tracked(block)
        return block

    def ShareableList(self, sequence):
        """A new ShareableList of sequence's items, tracked by the server."""
        from .shared_memory import ShareableList

        shared = ShareableList(sequence)
        self._tracked(shared.shm)
        return shared
