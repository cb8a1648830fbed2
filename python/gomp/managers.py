"""Managers: a server process that owns ordinary Python objects, and proxies
through which other processes call their methods.

The wire protocol is the stdlib's, so gomp and stdlib peers mix freely: every
connection is a connection.Client authenticated with the manager's authkey;
the first request on it is a tuple (None, server_method, args, kwds) naming
one of Server.public; a connection opened with 'accept_connection' then
carries requests (object_id, method_name, args, kwds) for shared objects. A
reply is (kind, payload) with kind '#RETURN' (the result), '#ERROR' (the
exception the method raised), '#TRACEBACK' (formatted text of an error in the
server itself), '#UNSERIALIZABLE' (the result could not be pickled; its
formatted error) or '#PROXY' ((exposed, Token) of a new shared object that a
method returned, for the method_to_typeid mapping)."""

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

from . import connection
from . import process
from . import util
from .context import ProcessError, get_spawning_popen, reduction

__all__ = ['BaseManager', 'SyncManager', 'BaseProxy', 'Token', 'SharedMemoryManager']


# ---- pickling of a few types that results are often made of ------------------------------

def _rebuild_array(typecode, data):
    return array.array(typecode, data)


def _reduce_array(a):
    return array.array, (a.typecode, a.tobytes())


def _reduce_view_as_list(view):
    # dict.keys()/values()/items() views cannot be pickled; send a list.
    return list, (list(view),)


reduction.register(array.array, _reduce_array)
for _view in ({}.keys(), {}.values(), {}.items()):
    reduction.register(type(_view), _reduce_view_as_list)
del _view


# ---- identity of a shared object -----------------------------------------------------------

class Token(object):
    """Names one shared object: its type id, its server's address, and its id
    in that server (a string)."""
    __slots__ = ('typeid', 'address', 'id')

    def __init__(self, typeid, address, id):
        self.typeid = typeid
        self.address = address
        self.id = id

    def __getstate__(self):
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state):
        self.typeid, self.address, self.id = state

    def __repr__(self):
        return '%s(typeid=%r, address=%r, id=%r)' % (
            type(self).__name__, self.typeid, self.address, self.id)


# ---- talking to a server -------------------------------------------------------------------

class RemoteError(Exception):
    """An error inside a manager's server, carrying its formatted traceback."""

    def __str__(self):
        rule = '-' * 75
        return '\n%s\n%s%s' % (rule, self.args[0], rule)


def convert_to_error(kind, result):
    """The exception that a non-'#RETURN' reply stands for."""
    if kind == '#ERROR':
        return result
    if kind == '#TRACEBACK' or kind == '#UNSERIALIZABLE':
        if not isinstance(result, str):
            raise TypeError("Result %r (kind '%s') type is %s, not str"
                            % (result, kind, type(result)))
        if kind == '#UNSERIALIZABLE':
            return RemoteError('Unserializable message: %s\n' % result)
        return RemoteError(result)
    return ValueError('Unrecognized message type %r' % (kind,))


def _raise_reply(kind, result):
    # Neither this frame nor the caller's keeps a reference to the exception
    # once it propagates (no cycle through the traceback: gh-106558).
    error = convert_to_error(kind, result)
    del result
    try:
        raise error
    finally:
        del error


def dispatch(c, id, methodname, args=(), kwds={}):
    """Send one request on connection c and return the result of the reply
    (or raise the error it stands for)."""
    c.send((id, methodname, args, kwds))
    kind, result = c.recv()
    if kind == '#RETURN':
        return result
    try:
        _raise_reply(kind, result)
    finally:
        del result


def _server_call(address, authkey, client, methodname, args=(), kwds={}):
    """Call one of a server's public methods on a connection of its own."""
    conn = client(address, authkey=authkey)
    try:
        return dispatch(conn, None, methodname, args, kwds)
    finally:
        conn.close()


# ---- which methods an object offers --------------------------------------------------------

def all_methods(obj):
    """Names of the callable attributes of obj."""
    return [name for name in dir(obj) if callable(getattr(obj, name))]


def public_methods(obj):
    """Names of the callable attributes of obj that do not start with '_'."""
    return [name for name in all_methods(obj) if not name.startswith('_')]


# ---- the server ----------------------------------------------------------------------------

class _Reply(object):
    """Marks a server method that has sent its reply itself."""


_ALREADY_REPLIED = _Reply()


class Server(object):
    """Owns the shared objects of a manager and serves requests for them, one
    thread per connection. Runs in the manager's process (serve_forever())."""

    public = ['shutdown', 'create', 'accept_connection', 'get_methods',
              'debug_info', 'number_of_objects', 'dummy', 'incref', 'decref']

    def __init__(self, registry, address, authkey, serializer):
        if not isinstance(authkey, bytes):
            raise TypeError("Authkey %r is type %s, not bytes" % (authkey, type(authkey)))
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)
        listener_type = listener_client[serializer][0]
        # Peers authenticate in their own thread (see _handle_connection), so
        # that a slow or hostile peer never holds up the others.
        self.listener = listener_type(address=address, backlog=128)
        self.address = self.listener.address
        # id -> (object, set of exposed method names, method_to_typeid or None)
        self.id_to_obj = {'0': (None, ())}
        # id -> number of references that proxies outside this process hold
        self.id_to_refcount = {}
        # id -> entry of an object that a proxy inside this server refers to
        # (a proxy stored in a shared container): kept after its last outside
        # reference goes, so the inner proxy keeps working.
        self.id_to_local_proxy_obj = {}
        self.mutex = threading.Lock()
        self.stop_event = threading.Event()

    # -- running

    def serve_forever(self):
        """Serve until a 'shutdown' request arrives, then exit the process."""
        process.current_process()._manager_server = self
        try:
            accepter = threading.Thread(target=self.accepter, name='manager-accepter',
                                        daemon=True)
            accepter.start()
            try:
                while not self.stop_event.is_set():
                    self.stop_event.wait(1.0)
            except (KeyboardInterrupt, SystemExit):
                pass
        finally:
            if sys.stdout is not sys.__stdout__:
                sys.stdout = sys.__stdout__
                sys.stderr = sys.__stderr__
            sys.exit(0)

    def accepter(self):
        while not self.stop_event.is_set():
            try:
                c = self.listener.accept()
            except OSError:
                if self.listener._listener is None:
                    return
                continue
            t = threading.Thread(target=self.handle_request, args=(c,), daemon=True)
            t.start()

    def handle_request(self, conn):
        """Authenticate a new connection and answer its first request."""
        try:
            self._handle_request(conn)
        except SystemExit:
            pass
        finally:
            conn.close()

    def _handle_request(self, c):
        request = None
        try:
            connection.deliver_challenge(c, self.authkey)
            connection.answer_challenge(c, self.authkey)
            request = c.recv()
            _, funcname, args, kwds = request
            if funcname not in self.public:
                raise AssertionError('%r unrecognized' % (funcname,))
            method = getattr(self, funcname)
        except Exception:
            reply = ('#TRACEBACK', format_exc())
        else:
            try:
                result = method(c, *args, **kwds)
            except Exception:
                reply = ('#TRACEBACK', format_exc())
            else:
                if result is _ALREADY_REPLIED:
                    return
                reply = ('#RETURN', result)
        try:
            c.send(reply)
        except Exception as e:
            try:
                c.send(('#TRACEBACK', format_exc()))
            except Exception:
                pass
            util.info('Failure to send message: %r', reply)
            util.info(' ... request was %r', request)
            util.info(' ... exception was %r', e)

    def _entry(self, ident):
        try:
            return self.id_to_obj[ident]
        except KeyError:
            entry = self.id_to_local_proxy_obj.get(ident)
            if entry is None:
                raise
            return entry

    def _answer(self, conn, request):
        """The reply to one request of a proxy."""
        methodname = None
        try:
            ident, methodname, args, kwds = request
            obj, exposed, gettypeid = self._entry(ident)
            if methodname not in exposed:
                raise AttributeError('method %r of %r object is not in exposed=%r'
                                     % (methodname, type(obj), exposed))
            function = getattr(obj, methodname)
        except AttributeError:
            fallback = self.fallback_mapping.get(methodname)
            if fallback is None:
                return ('#TRACEBACK', format_exc())
            try:
                return ('#RETURN', fallback(self, conn, ident, obj, *args, **kwds))
            except Exception:
                return ('#TRACEBACK', format_exc())
        except Exception:
            return ('#TRACEBACK', format_exc())

        try:
            result = function(*args, **kwds)
        except Exception as e:
            return ('#ERROR', e)
        typeid = gettypeid.get(methodname) if gettypeid else None
        if not typeid:
            return ('#RETURN', result)
        try:
            rident, rexposed = self.create(conn, typeid, result)
        except Exception:
            return ('#TRACEBACK', format_exc())
        return ('#PROXY', (rexposed, Token(typeid, self.address, rident)))

    def serve_client(self, conn):
        """Answer the requests of the proxies of one thread of one process
        until it disconnects or the server stops."""
        while not self.stop_event.is_set():
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            except Exception:
                reply = ('#TRACEBACK', format_exc())
            else:
                reply = self._answer(conn, request)
            try:
                try:
                    conn.send(reply)
                except Exception:
                    conn.send(('#UNSERIALIZABLE', format_exc()))
            except Exception as e:
                util.info('exception in thread serving %r', threading.current_thread().name)
                util.info(' ... message was %r', reply)
                util.info(' ... exception was %r', e)
                conn.close()
                return
            finally:
                reply = request = None

    # -- what '__str__', '__repr__' and '#GETVALUE' do when not exposed

    def fallback_getvalue(self, conn, ident, obj):
        return obj

    def fallback_str(self, conn, ident, obj):
        return str(obj)

    def fallback_repr(self, conn, ident, obj):
        return repr(obj)

    fallback_mapping = {
        '__str__': fallback_str,
        '__repr__': fallback_repr,
        '#GETVALUE': fallback_getvalue,
    }

    # -- the public methods: each takes the connection first

    def dummy(self, c):
        """Does nothing: lets a client check that it can connect."""

    def debug_info(self, c):
        """One line per shared object: its id, refcount and (start of) str."""
        with self.mutex:
            lines = []
            for ident in sorted(self.id_to_refcount):
                if ident == '0':
                    continue
                lines.append('  %s:       refcount=%s\n    %s'
                             % (ident, self.id_to_refcount[ident],
                                str(self.id_to_obj[ident][0])[:75]))
            return '\n'.join(lines)

    def number_of_objects(self, c):
        """How many shared objects proxies outside this server refer to."""
        return len(self.id_to_refcount)

    def shutdown(self, c):
        """Reply, then stop the server (its process exits)."""
        try:
            util.debug('manager received shutdown message')
            c.send(('#RETURN', None))
        except Exception:
            import traceback
            traceback.print_exc()
        finally:
            self.stop_event.set()
        return _ALREADY_REPLIED

    def create(self, c, typeid, /, *args, **kwds):
        """Make a new shared object of typeid; return (its id, exposed names).
        The object starts with one reference, which the caller owns."""
        callable, exposed, method_to_typeid, proxytype = self.registry[typeid]
        if callable is None:
            if kwds or len(args) != 1:
                raise ValueError("Without callable, must have one non-keyword argument")
            obj = args[0]
        else:
            obj = callable(*args, **kwds)
        if exposed is None:
            exposed = public_methods(obj)
        if method_to_typeid is not None:
            if not isinstance(method_to_typeid, dict):
                raise TypeError("Method_to_typeid %r: type %s, not dict"
                                % (method_to_typeid, type(method_to_typeid)))
            exposed = list(exposed) + list(method_to_typeid)
        # A string, because xmlrpclib's integers are only 32 bits.
        ident = '%x' % id(obj)
        util.debug('%r callable returned object with id %r', typeid, ident)
        with self.mutex:
            self.id_to_obj[ident] = (obj, set(exposed), method_to_typeid)
            self.id_to_refcount.setdefault(ident, 0)
        self.incref(c, ident)
        return ident, tuple(exposed)

    def get_methods(self, c, token):
        """The exposed method names of the object that token names."""
        return tuple(self.id_to_obj[token.id][1])

    def accept_connection(self, c, name):
        """Make this connection the one that a thread's proxies use and serve
        it (in this thread) until it closes."""
        threading.current_thread().name = name
        c.send(('#RETURN', None))
        self.serve_client(c)
        return _ALREADY_REPLIED

    def incref(self, c, ident):
        with self.mutex:
            if ident in self.id_to_refcount:
                self.id_to_refcount[ident] += 1
            elif ident in self.id_to_local_proxy_obj:
                # Only a proxy inside this server still refers to the object,
                # and a new outside reference is being made from it: track it
                # again.
                self.id_to_refcount[ident] = 1
                self.id_to_obj[ident] = self.id_to_local_proxy_obj[ident]
                util.debug('Server re-enabled tracking & INCREF %r', ident)
            else:
                raise KeyError(ident)

    def decref(self, c, ident):
        if ident not in self.id_to_refcount and ident in self.id_to_local_proxy_obj:
            util.debug('Server DECREF skipping %r', ident)
            return
        with self.mutex:
            count = self.id_to_refcount[ident]
            if count <= 0:
                raise AssertionError("Id %s (%r) has refcount %d, not 1+"
                                     % (ident, self.id_to_obj[ident], count))
            if count > 1:
                self.id_to_refcount[ident] = count - 1
                return
            del self.id_to_refcount[ident]
            entry = self.id_to_obj.pop(ident, None)
        # Dropped outside the mutex: the object may hold proxies whose
        # finalizers call back into this server.
        util.debug('disposing of obj with id %r', ident)
        del entry


class State(object):
    """The state of a manager: INITIAL, STARTED or SHUTDOWN (in .value)."""
    __slots__ = ['value']
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2


listener_client = {
    'pickle': (connection.Listener, connection.Client),
    'xmlrpclib': (connection.XmlListener, connection.XmlClient),
}


# ---- managers ------------------------------------------------------------------------------

# typeid -> proxy type of the last registration of that typeid by any
# manager class: lets a proxy whose manager is not known in this process
# (one received from another process) turn a '#PROXY' reply into a proxy.
_proxytype_of_typeid = {}


def _check_state_initial(state, what='server', owner='Manager'):
    if state.value == State.INITIAL:
        return
    if state.value == State.STARTED:
        raise ProcessError("Already started %s" % what)
    if state.value == State.SHUTDOWN:
        raise ProcessError("%s has shut down" % owner)
    raise ProcessError("Unknown state %r" % (state.value,))


class BaseManager(object):
    """A manager: start() runs a server process (or connect() reaches one
    that runs already) and the methods made by register() create shared
    objects in it and return proxies for them."""

    _registry = {}
    _Server = Server

    def __init__(self, address=None, authkey=None, serializer='pickle', ctx=None, *,
                 shutdown_timeout=1.0):
        if authkey is None:
            authkey = process.current_process().authkey
        self._address = address
        self._authkey = process.AuthenticationString(authkey)
        self._state = State()
        self._state.value = State.INITIAL
        self._serializer = serializer
        self._Listener, self._Client = listener_client[serializer]
        if ctx is None:
            from .context import _default_context
            ctx = _default_context.get_context()
        self._ctx = ctx
        self._shutdown_timeout = shutdown_timeout
        self._process = None

    def get_server(self):
        """A Server for this manager's registry, to run in this process with
        serve_forever()."""
        _check_state_initial(self._state)
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self):
        """Use the server that already runs at this manager's address."""
        conn = self._Client(self._address, authkey=self._authkey)
        try:
            dispatch(conn, None, 'dummy')
        finally:
            conn.close()
        self._state.value = State.STARTED

    def start(self, initializer=None, initargs=()):
        """Start the server in a new process (which first calls
        initializer(*initargs) if given)."""
        _check_state_initial(self._state)
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        reader, writer = connection.Pipe(duplex=False)
        self._process = self._ctx.Process(
            target=type(self)._run_server,
            args=(self._registry, self._address, self._authkey, self._serializer,
                  writer, initializer, initargs))
        self._process.name = '%s-%s' % (type(self).__name__,
                                         ':'.join(str(i) for i in self._process._identity))
        self._process.start()
        writer.close()
        try:
            self._address = reader.recv()
        finally:
            reader.close()
        self._state.value = State.STARTED
        # An instance attribute that hides the method below.
        self.shutdown = util.Finalize(
            self, type(self)._finalize_manager,
            args=(self._process, self._address, self._authkey, self._state,
                  self._Client, self._shutdown_timeout),
            exitpriority=0)

    def shutdown(self):
        """Stop the server process (replaced by a finalizer once start()ed;
        a manager that only connect()ed owns no process to stop)."""

    @classmethod
    def _run_server(cls, registry, address, authkey, serializer, writer,
                    initializer=None, initargs=()):
        """Body of the server process: make the server, send its address
        back, serve."""
        # Ctrl-C in a terminal reaches the whole process group; the parent
        # decides when its manager stops (bpo-36368).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if initializer is not None:
            initializer(*initargs)
        server = cls._Server(registry, address, authkey, serializer)
        writer.send(server.address)
        writer.close()
        util.info('manager serving at %r', server.address)
        server.serve_forever()

    def _create(self, typeid, /, *args, **kwds):
        """Create a shared object; return its Token and exposed names."""
        assert self._state.value == State.STARTED, 'server not yet started'
        ident, exposed = _server_call(self._address, self._authkey, self._Client,
                                      'create', (typeid,) + args, kwds)
        return Token(typeid, self._address, ident), exposed

    def join(self, timeout=None):
        """Wait for the server process (if this manager started one)."""
        if self._process is not None:
            self._process.join(timeout)
            if not self._process.is_alive():
                self._process = None

    def _debug_info(self):
        return _server_call(self._address, self._authkey, self._Client, 'debug_info')

    def _number_of_objects(self):
        return _server_call(self._address, self._authkey, self._Client, 'number_of_objects')

    def __enter__(self):
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            if self._state.value == State.INITIAL:
                raise ProcessError("Unable to start server")
            if self._state.value == State.SHUTDOWN:
                raise ProcessError("Manager has shut down")
            raise ProcessError("Unknown state %r" % (self._state.value,))
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.shutdown()

    @staticmethod
    def _finalize_manager(process, address, authkey, state, _Client, shutdown_timeout):
        """Ask the server to stop; terminate, then kill, a server that does
        not stop within shutdown_timeout seconds."""
        if process.is_alive():
            util.info('sending shutdown message to manager')
            try:
                _server_call(address, authkey, _Client, 'shutdown')
            except Exception:
                pass
            process.join(timeout=shutdown_timeout)
            if process.is_alive():
                util.info('manager still alive; terminating it')
                process.terminate()
                process.join(timeout=shutdown_timeout)
                if process.is_alive():
                    util.info('manager still alive after terminate; killing it')
                    process.kill()
                    process.join()
        state.value = State.SHUTDOWN
        BaseProxy._address_to_local.pop(address, None)

    @property
    def address(self):
        return self._address

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        """Register typeid: callable(*args, **kwds) makes its objects in the
        server; proxytype (default AutoProxy) makes proxies; exposed names
        the methods a proxy may call (default: the proxy type's _exposed_,
        else every public method); method_to_typeid maps a method name to the
        typeid of the shared object its result becomes. With create_method,
        the manager gets a method named typeid that creates an object and
        returns a proxy."""
        if '_registry' not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        exposed = exposed or getattr(proxytype, '_exposed_', None)
        method_to_typeid = method_to_typeid or getattr(proxytype, '_method_to_typeid_', None)
        if method_to_typeid:
            for key, value in method_to_typeid.items():
                assert type(key) is str, '%r is not a string' % key
                assert type(value) is str, '%r is not a string' % value
        cls._registry[typeid] = (callable, exposed, method_to_typeid, proxytype)
        _proxytype_of_typeid[typeid] = proxytype

        if create_method:
            def create(self, /, *args, **kwds):
                util.debug('requesting creation of a shared %r object', typeid)
                token, exp = self._create(typeid, *args, **kwds)
                proxy = proxytype(token, self._serializer, manager=self,
                                  authkey=self._authkey, exposed=exp)
                # The proxy holds its own reference now; drop create()'s.
                _server_call(token.address, self._authkey, self._Client,
                             'decref', (token.id,))
                return proxy
            create.__name__ = create.__qualname__ = typeid
            setattr(cls, typeid, create)


# ---- proxies -------------------------------------------------------------------------------

class ProcessLocalSet(set):
    """A set emptied in a forked child."""

    def __init__(self):
        util.register_after_fork(self, lambda obj: obj.clear())

    def __reduce__(self):
        return type(self), ()


class BaseProxy(object):
    """A proxy for a shared object: calls its methods in the manager's
    server. Each thread of a process has one connection per server, shared
    by all its proxies for that server; a proxy holds a reference to its
    object in the server (incref'd when made, decref'd when collected)."""

    # server address -> (thread-local holding .connection, set of the ids
    # this process holds references to)
    _address_to_local = {}
    _mutex = util.ForkAwareThreadLock()

    def __init__(self, token, serializer, manager=None, authkey=None, exposed=None,
                 incref=True, manager_owned=False):
        with BaseProxy._mutex:
            local = BaseProxy._address_to_local.get(token.address)
            if local is None:
                local = (util.ForkAwareLocal(), ProcessLocalSet())
                BaseProxy._address_to_local[token.address] = local
        self._tls, self._idset = local
        self._token = token
        self._id = token.id
        self._manager = manager
        self._serializer = serializer
        self._Client = listener_client[serializer][1]
        # True for a proxy unpickled inside the server that owns its object
        # (one stored in a shared container): it holds no reference.
        self._owned_by_manager = manager_owned
        if authkey is not None:
            self._authkey = process.AuthenticationString(authkey)
        elif manager is not None:
            self._authkey = manager._authkey
        else:
            self._authkey = process.current_process().authkey
        if incref:
            self._incref()
        util.register_after_fork(self, BaseProxy._after_fork)

    def _connect(self):
        util.debug('making connection to manager')
        name = process.current_process().name
        thread = threading.current_thread()
        if thread.name != 'MainThread':
            name += '|' + thread.name
        conn = self._Client(self._token.address, authkey=self._authkey)
        dispatch(conn, None, 'accept_connection', (name,))
        self._tls.connection = conn

    def _callmethod(self, methodname, args=(), kwds={}):
        """Call methodname(*args, **kwds) on the shared object and return a
        copy of the result (a proxy if the method's result is registered as
        a shared type)."""
        try:
            conn = self._tls.connection
        except AttributeError:
            util.debug('thread %r does not own a connection', threading.current_thread().name)
            self._connect()
            conn = self._tls.connection
        conn.send((self._id, methodname, args, kwds))
        kind, result = conn.recv()
        if kind == '#RETURN':
            return result
        if kind == '#PROXY':
            exposed, token = result
            return self._proxy_from_reply(exposed, token)
        try:
            _raise_reply(kind, result)
        finally:
            del result

    def _proxy_from_reply(self, exposed, token):
        if self._manager is not None:
            proxytype = self._manager._registry[token.typeid][-1]
        else:
            proxytype = _proxytype_of_typeid.get(token.typeid, AutoProxy)
        # The server may name itself differently than we reach it.
        token.address = self._token.address
        proxy = proxytype(token, self._serializer, manager=self._manager,
                          authkey=self._authkey, exposed=exposed)
        _server_call(token.address, self._authkey, self._Client, 'decref', (token.id,))
        return proxy

    def _getvalue(self):
        """A copy of the shared object itself."""
        return self._callmethod('#GETVALUE')

    def _incref(self):
        if self._owned_by_manager:
            util.debug('owned_by_manager skipped INCREF of %r', self._token.id)
            return
        _server_call(self._token.address, self._authkey, self._Client, 'incref', (self._id,))
        util.debug('INCREF %r', self._token.id)
        self._idset.add(self._id)
        state = self._manager._state if self._manager is not None else None
        self._close = util.Finalize(
            self, BaseProxy._decref,
            args=(self._token, self._authkey, state, self._tls, self._idset, self._Client),
            exitpriority=10)

    @staticmethod
    def _decref(token, authkey, state, tls, idset, _Client):
        idset.discard(token.id)
        if state is None or state.value == State.STARTED:
            try:
                util.debug('DECREF %r', token.id)
                _server_call(token.address, authkey, _Client, 'decref', (token.id,))
            except Exception as e:
                util.debug('... decref failed %s', e)
        else:
            util.debug('DECREF %r -- manager already shutdown', token.id)
        # This process holds nothing more in that server: close this
        # thread's connection to it.
        if not idset and hasattr(tls, 'connection'):
            util.debug('thread %r has no more proxies so closing conn',
                       threading.current_thread().name)
            tls.connection.close()
            del tls.connection

    def _after_fork(self):
        # A forked child holds references of its own.
        self._manager = None
        try:
            self._incref()
        except Exception as e:
            util.info('incref failed: %s' % e)

    def __reduce__(self):
        kwds = {}
        if get_spawning_popen() is not None:
            kwds['authkey'] = self._authkey
        if getattr(self, '_isauto', False):
            kwds['exposed'] = self._exposed_
            return (RebuildProxy, (AutoProxy, self._token, self._serializer, kwds))
        return (RebuildProxy, (type(self), self._token, self._serializer, kwds))

    def __deepcopy__(self, memo):
        return self._getvalue()

    def __repr__(self):
        return '<%s object, typeid %r at %#x>' % (type(self).__name__, self._token.typeid,
                                                  id(self))

    def __str__(self):
        """The repr of the shared object (or a note that it failed)."""
        try:
            return self._callmethod('__repr__')
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"


def RebuildProxy(func, token, serializer, kwds):
    """Unpickle a proxy: func(token, serializer, ...) makes it. Inside the
    server that owns the object the proxy holds no reference (the server
    keeps the object for it); in a process being bootstrapped the inherited
    reference is used rather than a new one taken."""
    server = getattr(process.current_process(), '_manager_server', None)
    if server is not None and server.address == token.address:
        util.debug('Rebuild a proxy owned by manager, token=%r', token)
        kwds['manager_owned'] = True
        if token.id not in server.id_to_local_proxy_obj:
            server.id_to_local_proxy_obj[token.id] = server.id_to_obj[token.id]
    incref = (kwds.pop('incref', True)
              and not getattr(process.current_process(), '_inheriting', False))
    return func(token, serializer, incref=incref, **kwds)


def _forwarding_method(name):
    def method(self, /, *args, **kwds):
        return self._callmethod(name, args, kwds)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = 'Call %s() of the shared object.' % name
    return method


def MakeProxyType(name, exposed, _cache={}):
    """A BaseProxy subclass with one forwarding method per name in exposed
    (cached per (name, exposed))."""
    exposed = tuple(exposed)
    key = (name, exposed)
    proxytype = _cache.get(key)
    if proxytype is None:
        namespace = {meth: _forwarding_method(meth) for meth in exposed}
        namespace['_exposed_'] = exposed
        proxytype = type(name, (BaseProxy,), namespace)
        _cache[key] = proxytype
    return proxytype


def AutoProxy(token, serializer, manager=None, authkey=None, exposed=None,
              incref=True, manager_owned=False):
    """A proxy whose methods are the exposed ones of its object (asked from
    the server if not given)."""
    if exposed is None:
        exposed = _server_call(token.address, authkey, listener_client[serializer][1],
                               'get_methods', (token,))
    if authkey is None and manager is not None:
        authkey = manager._authkey
    if authkey is None:
        authkey = process.current_process().authkey
    proxytype = MakeProxyType('AutoProxy[%s]' % token.typeid, exposed)
    proxy = proxytype(token, serializer, manager=manager, authkey=authkey,
                      incref=incref, manager_owned=manager_owned)
    proxy._isauto = True
    return proxy


# ---- the types SyncManager shares ----------------------------------------------------------

class Namespace(object):
    """A bag of attributes; its repr leaves out names starting with '_'."""

    def __init__(self, /, **kwds):
        self.__dict__.update(kwds)

    def __repr__(self):
        shown = sorted('%s=%r' % (k, v) for k, v in list(self.__dict__.items())
                       if not k.startswith('_'))
        return '%s(%s)' % (type(self).__name__, ', '.join(shown))


class Value(object):
    """A plain holder of one value (the typecode is only recorded)."""

    def __init__(self, typecode, value, lock=True):
        self._typecode = typecode
        self._value = value

    def get(self):
        return self._value

    def set(self, value):
        self._value = value

    value = property(get, set)

    def __repr__(self):
        return '%s(%r, %r)' % (type(self).__name__, self._typecode, self._value)


def Array(typecode, sequence, lock=True):
    return array.array(typecode, sequence)


def _make_pool(*args, **kwds):
    # pool is imported on first use only.
    from .pool import Pool
    return Pool(*args, **kwds)


# ---- their proxies -------------------------------------------------------------------------

class IteratorProxy(BaseProxy):
    _exposed_ = ('__next__', 'send', 'throw', 'close')

    def __iter__(self):
        return self

    def __next__(self, *args):
        return self._callmethod('__next__', args)

    def send(self, *args):
        return self._callmethod('send', args)

    def throw(self, *args):
        return self._callmethod('throw', args)

    def close(self, *args):
        return self._callmethod('close', args)


class AcquirerProxy(BaseProxy):
    _exposed_ = ('acquire', 'release')

    def acquire(self, blocking=True, timeout=None):
        if timeout is None:
            return self._callmethod('acquire', (blocking,))
        return self._callmethod('acquire', (blocking, timeout))

    def release(self):
        return self._callmethod('release')

    def __enter__(self):
        return self._callmethod('acquire')

    def __exit__(self, exc_type, exc_val, exc_tb):
        return self._callmethod('release')


class ConditionProxy(AcquirerProxy):
    _exposed_ = ('acquire', 'release', 'wait', 'notify', 'notify_all')

    def wait(self, timeout=None):
        return self._callmethod('wait', (timeout,))

    def notify(self, n=1):
        return self._callmethod('notify', (n,))

    def notify_all(self):
        return self._callmethod('notify_all')

    def wait_for(self, predicate, timeout=None):
        """Wait (in this process: predicate is local) until predicate() is
        true or timeout seconds have passed; return its last value."""
        result = predicate()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not result:
            if deadline is None:
                self.wait(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            result = predicate()
        return result


class EventProxy(BaseProxy):
    _exposed_ = ('is_set', 'set', 'clear', 'wait')

    def is_set(self):
        return self._callmethod('is_set')

    def set(self):
        return self._callmethod('set')

    def clear(self):
        return self._callmethod('clear')

    def wait(self, timeout=None):
        return self._callmethod('wait', (timeout,))


class BarrierProxy(BaseProxy):
    _exposed_ = ('__getattribute__', 'wait', 'abort', 'reset')

    def wait(self, timeout=None):
        return self._callmethod('wait', (timeout,))

    def abort(self):
        return self._callmethod('abort')

    def reset(self):
        return self._callmethod('reset')

    @property
    def parties(self):
        return self._callmethod('__getattribute__', ('parties',))

    @property
    def n_waiting(self):
        return self._callmethod('__getattribute__', ('n_waiting',))

    @property
    def broken(self):
        return self._callmethod('__getattribute__', ('broken',))


class NamespaceProxy(BaseProxy):
    """Attribute access on the shared Namespace; names starting with '_' are
    the proxy's own."""
    _exposed_ = ('__getattribute__', '__setattr__', '__delattr__')

    def __getattr__(self, key):
        if key[0] == '_':
            return object.__getattribute__(self, key)
        return object.__getattribute__(self, '_callmethod')('__getattribute__', (key,))

    def __setattr__(self, key, value):
        if key[0] == '_':
            return object.__setattr__(self, key, value)
        return object.__getattribute__(self, '_callmethod')('__setattr__', (key, value))

    def __delattr__(self, key):
        if key[0] == '_':
            return object.__delattr__(self, key)
        return object.__getattribute__(self, '_callmethod')('__delattr__', (key,))


class ValueProxy(BaseProxy):
    _exposed_ = ('get', 'set')

    def get(self):
        return self._callmethod('get')

    def set(self, value):
        return self._callmethod('set', (value,))

    value = property(get, set)

    __class_getitem__ = classmethod(types.GenericAlias)


BaseListProxy = MakeProxyType('BaseListProxy', (
    '__add__', '__contains__', '__delitem__', '__getitem__', '__imul__', '__len__',
    '__mul__', '__reversed__', '__rmul__', '__setitem__',
    'append', 'clear', 'copy', 'count', 'extend', 'index', 'insert', 'pop', 'remove',
    'reverse', 'sort',
))


class ListProxy(BaseListProxy):
    # In-place operators change the shared list and keep this proxy.
    def __iadd__(self, value):
        self._callmethod('extend', (value,))
        return self

    def __imul__(self, value):
        self._callmethod('__imul__', (value,))
        return self

    __class_getitem__ = classmethod(types.GenericAlias)


_BaseDictProxy = MakeProxyType('DictProxy', (
    '__contains__', '__delitem__', '__getitem__', '__ior__', '__iter__', '__len__',
    '__or__', '__reversed__', '__ror__', '__setitem__', 'clear', 'copy', 'fromkeys',
    'get', 'items', 'keys', 'pop', 'popitem', 'setdefault', 'update', 'values',
))
_BaseDictProxy._method_to_typeid_ = {'__iter__': 'Iterator'}


class DictProxy(_BaseDictProxy):
    def __ior__(self, value):
        self._callmethod('__ior__', (value,))
        return self

    __class_getitem__ = classmethod(types.GenericAlias)


_BaseSetProxy = MakeProxyType('_BaseSetProxy', (
    '__and__', '__contains__', '__ge__', '__gt__', '__iand__', '__ior__', '__isub__',
    '__iter__', '__ixor__', '__le__', '__len__', '__lt__', '__or__', '__rand__', '__ror__',
    '__rsub__', '__rxor__', '__sub__', '__xor__',
    'add', 'clear', 'copy', 'difference', 'difference_update', 'discard', 'intersection',
    'intersection_update', 'isdisjoint', 'issubset', 'issuperset', 'pop', 'remove',
    'symmetric_difference', 'symmetric_difference_update', 'union', 'update',
))
_BaseSetProxy._method_to_typeid_ = {'__iter__': 'Iterator'}


def _inplace(name):
    def method(self, value):
        self._callmethod(name, (value,))
        return self
    method.__name__ = method.__qualname__ = name
    return method


class SetProxy(_BaseSetProxy):
    __ior__ = _inplace('__ior__')
    __iand__ = _inplace('__iand__')
    __ixor__ = _inplace('__ixor__')
    __isub__ = _inplace('__isub__')

    __class_getitem__ = classmethod(types.GenericAlias)


collections.abc.MutableMapping.register(_BaseDictProxy)
collections.abc.MutableSequence.register(BaseListProxy)
collections.abc.MutableSet.register(_BaseSetProxy)


ArrayProxy = MakeProxyType('ArrayProxy', ('__len__', '__getitem__', '__setitem__'))


BasePoolProxy = MakeProxyType('PoolProxy', (
    'apply', 'apply_async', 'close', 'imap', 'imap_unordered', 'join', 'map', 'map_async',
    'starmap', 'starmap_async', 'terminate',
))
BasePoolProxy._method_to_typeid_ = {
    'apply_async': 'AsyncResult',
    'map_async': 'AsyncResult',
    'starmap_async': 'AsyncResult',
    'imap': 'Iterator',
    'imap_unordered': 'Iterator',
}


class PoolProxy(BasePoolProxy):
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


# ---- SyncManager ---------------------------------------------------------------------------

class SyncManager(BaseManager):
    """A manager of the thread synchronization types (shared through their
    proxies), of queues, pools, and of list, dict, set, Value, Array and
    Namespace. multiprocessing.Manager() returns a started one."""


for _typeid, _callable, _proxytype in (
        ('Queue', queue.Queue, None),
        ('JoinableQueue', queue.Queue, None),
        ('Event', threading.Event, EventProxy),
        ('Lock', threading.Lock, AcquirerProxy),
        ('RLock', threading.RLock, AcquirerProxy),
        ('Semaphore', threading.Semaphore, AcquirerProxy),
        ('BoundedSemaphore', threading.BoundedSemaphore, AcquirerProxy),
        ('Condition', threading.Condition, ConditionProxy),
        ('Barrier', threading.Barrier, BarrierProxy),
        ('Pool', _make_pool, PoolProxy),
        ('list', list, ListProxy),
        ('dict', dict, DictProxy),
        ('set', set, SetProxy),
        ('Value', Value, ValueProxy),
        ('Array', Array, ArrayProxy),
        ('Namespace', Namespace, NamespaceProxy)):
    SyncManager.register(_typeid, _callable, _proxytype)
del _typeid, _callable, _proxytype

# The types of results of proxied methods (method_to_typeid), not created
# directly.
SyncManager.register('Iterator', proxytype=IteratorProxy, create_method=False)
SyncManager.register('AsyncResult', create_method=False)


# ---- shared memory -------------------------------------------------------------------------

from . import shared_memory  # noqa: E402  (after the names it may need)


class _SharedMemoryTracker:
    """The names of the shared memory segments a SharedMemoryServer owns:
    unlinked when released, at shutdown, or when the tracker is collected."""

    def __init__(self, name, segment_names=None):
        self.shared_memory_context_name = name
        self.segment_names = [] if segment_names is None else segment_names

    def register_segment(self, segment_name):
        util.debug('Register segment %r in pid %d', segment_name, os.getpid())
        self.segment_names.append(segment_name)

    def destroy_segment(self, segment_name):
        """Unlink the named segment and stop tracking it."""
        util.debug('Destroy segment %r in pid %d', segment_name, os.getpid())
        self.segment_names.remove(segment_name)
        segment = shared_memory.SharedMemory(segment_name)
        segment.close()
        segment.unlink()

    def unlink(self):
        """Unlink every tracked segment."""
        for segment_name in list(self.segment_names):
            self.destroy_segment(segment_name)

    def __del__(self):
        self.unlink()

    def __getstate__(self):
        return (self.shared_memory_context_name, self.segment_names)

    def __setstate__(self, state):
        self.__init__(*state)


class SharedMemoryServer(Server):
    """A Server that also tracks shared memory segments made by its clients
    and unlinks them when it shuts down."""

    public = Server.public + ['track_segment', 'release_segment', 'list_segments']

    def __init__(self, *args, **kwargs):
        Server.__init__(self, *args, **kwargs)
        address = self.address
        if isinstance(address, bytes):      # a Linux abstract socket
            address = os.fsdecode(address)
        self.shared_memory_context = _SharedMemoryTracker('shm_%s_%d' % (address, os.getpid()))
        util.debug('SharedMemoryServer started by pid %d', os.getpid())

    def create(self, c, typeid, /, *args, **kwargs):
        # A proxy type marked _shared_memory_proxy gets the tracker passed to
        # its callable.
        if hasattr(self.registry[typeid][-1], '_shared_memory_proxy'):
            kwargs['shared_memory_context'] = self.shared_memory_context
        return Server.create(self, c, typeid, *args, **kwargs)

    def shutdown(self, c):
        self.shared_memory_context.unlink()
        return Server.shutdown(self, c)

    def track_segment(self, c, segment_name):
        """Track the named segment (unlinked at shutdown)."""
        self.shared_memory_context.register_segment(segment_name)

    def release_segment(self, c, segment_name):
        """Unlink the named segment now and stop tracking it."""
        self.shared_memory_context.destroy_segment(segment_name)

    def list_segments(self, c):
        """The names of the tracked segments."""
        return self.shared_memory_context.segment_names


class SharedMemoryManager(BaseManager):
    """A manager whose server tracks the SharedMemory blocks and
    ShareableLists made through it, and unlinks them all at shutdown."""

    _Server = SharedMemoryServer

    def __init__(self, *args, **kwargs):
        if os.name == 'posix':
            # Start the resource tracker before the server does, so that
            # this process and the server share one (bpo-36867).
            from . import resource_tracker
            resource_tracker.ensure_running()
        BaseManager.__init__(self, *args, **kwargs)
        util.debug('%s created by pid %d', type(self).__name__, os.getpid())

    def __del__(self):
        util.debug('%s.__del__ by pid %d', type(self).__name__, os.getpid())

    def get_server(self):
        _check_state_initial(self._state, 'SharedMemoryServer', 'SharedMemoryManager')
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def _track_new(self, segment):
        with self._Client(self._address, authkey=self._authkey) as conn:
            try:
                dispatch(conn, None, 'track_segment', (segment.name,))
            except BaseException:
                segment.unlink()
                raise

    def SharedMemory(self, size):
        """A new SharedMemory block of size bytes, tracked by the server."""
        sms = shared_memory.SharedMemory(None, create=True, size=size)
        self._track_new(sms)
        return sms

    def ShareableList(self, sequence):
        """A new ShareableList of sequence's values, tracked by the server."""
        sl = shared_memory.ShareableList(sequence)
        self._track_new(sl.shm)
        return sl
