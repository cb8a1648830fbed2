"""The fork server: the helper process that forks the children of the
forkserver start method.

The server is a fresh interpreter (started like a spawn child) that imports
what every child will need (the preload list: by default the parent's
__main__, which it really imports once, where Python 3.11's server skips it)
and then waits. What it needs to know at start (the preload list, the
parent's sys.path and sys.argv, where __main__ is, the authentication key)
comes through a pipe rather than its command line: sys.argv can be larger
than the kernel accepts for one argument, and the key must not show in ps.

A parent asks the server for a child by connecting to its AF_UNIX socket,
authenticating (the HMAC challenge of connection.Client, both ways, with
the key the parent generated for this server), and sending, in one message
of descriptors (SCM_RIGHTS):

    data_r     the child reads its preparation data and process object here
    status_w   the server writes the child's pid here, and its exit code
               when it has ended (each as SIGNED_STRUCT)
    alive_w    the parent's end of the server's alive pipe
    tracker    the resource tracker's pipe
    *fds       descriptors pickled with the process object (Popen.DupFd)

The server forks; the child carries on as a spawn child would, from data_r.
The parent keeps the other ends: status_r is the child's sentinel.

The server never loads gomp's Go core: a Go runtime does not survive fork(),
so each child loads its own on first use. It follows its children through
pidfds, and exits when every process holding the alive pipe has closed it,
or as soon as the process that started it has exited, however it died
(through a pidfd of that process: see _Server and gomp/_deathwatch.py).
"""

import _signal
import os
import pickle
import selectors
import socket
import struct
import sys

from . import _deathwatch, _helper_process, connection, process, resource_tracker, spawn, util
from .context import reduction

__all__ = [
    'ensure_running',
    'get_inherited_fds',
    'connect_to_new_process',
    'set_forkserver_preload',
]

MAXFDS_TO_SEND = 256
SIGNED_STRUCT = struct.Struct('q')  # holds any pid_t and exit code

# The descriptors of a request before the caller's own ones.
_FIXED_FDS = 4

# Bytes of the random key that clients of a fork server authenticate with.
_AUTHKEY_SIZE = 32

# Seconds the server waits for each message of a client's handshake and
# request. It serves one client at a time: a process that connects and
# says nothing must not hold up everyone else's children for long.
_CLIENT_TIMEOUT = 10


class ForkServer(_helper_process.HelperProcess):
    """This process's link to its fork server. The alive pipe is the helper
    pipe of HelperProcess: _forkserver_alive_fd is its _fd."""

    _MODULE = 'gomp.forkserver'
    _WHAT = 'fork server'
    # A Ctrl-C aimed at the user's process group must not end the server.
    _SHIELDED_SIGNALS = (_signal.SIGINT,)

    def __init__(self):
        super().__init__()
        self._forkserver_address = None
        # The key clients must prove they hold, made anew for each server
        # this process starts (None while it has none).
        self._forkserver_authkey = None
        self._inherited_fds = None
        self._preload_modules = ['__main__']

    @property
    def _forkserver_pid(self):
        """The server's pid, in the process that started it."""
        return self._pid

    @property
    def _forkserver_alive_fd(self):
        return self._fd

    @_forkserver_alive_fd.setter
    def _forkserver_alive_fd(self, fd):
        self._fd = fd

    def set_forkserver_preload(self, modules_names):
        """Have the server import these modules before it forks any child
        (names that fail to import are skipped)."""
        if any(type(name) is not str for name in modules_names):
            raise TypeError('module_names must be a list of strings')
        self._preload_modules = modules_names

    def get_inherited_fds(self):
        """In a child of the server: the descriptors that came with its
        process object. None elsewhere."""
        return self._inherited_fds

    def ensure_running(self):
        """Start the server (and the resource tracker) unless they run."""
        resource_tracker.ensure_running()
        self._ensure_helper()

    def connect_to_new_process(self, fds):
        """Have the server fork a child that inherits fds. Return
        (status_r, data_w): read the child's pid, and later its exit code,
        from status_r; write its start data to data_w."""
        if len(fds) + _FIXED_FDS >= MAXFDS_TO_SEND:
            raise ValueError('too many fds')
        tracker_fd = resource_tracker.getfd()
        self._ensure_helper()
        data_r, data_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            with socket.socket(socket.AF_UNIX) as request:
                request.connect(self._forkserver_address)
                _handshake(request, self._forkserver_authkey, server_side=False)
                reduction.sendfds(request, [data_r, status_w, self._fd, tracker_fd, *fds])
        except BaseException:
            util.close_fds(status_r, data_w)
            raise
        finally:
            util.close_fds(data_r, status_w)
        return status_r, data_w

    # ---- HelperProcess -------------------------------------------------------------------

    def _launch(self, alive_r):
        authkey = os.urandom(_AUTHKEY_SIZE)
        setup = pickle.dumps(self._server_setup(authkey), pickle.HIGHEST_PROTOCOL)
        listener, address = _private_listener()
        setup_r, setup_w = os.pipe()
        try:
            with listener:
                call = 'main(%d, %d, %d)' % (listener.fileno(), alive_r, setup_r)
                pid = self._run_main(call, [listener.fileno(), alive_r, setup_r])
            os.close(setup_r)
            setup_r = None
            # The server reads it all before anything else, so this cannot
            # block for long even when it exceeds the pipe's buffer.
            with open(setup_w, 'wb', closefd=False) as pipe:
                pipe.write(setup)
        finally:
            util.close_fds(setup_w, *([] if setup_r is None else [setup_r]))
        self._forkserver_address = address
        self._forkserver_authkey = authkey
        return pid

    def _server_setup(self, authkey):
        """What main() reads from its setup pipe: the key, the preload list,
        and where the server finds the parent's __main__ and modules (needed
        only if it preloads something)."""
        setup = {
            'authkey': authkey,
            'preload': list(self._preload_modules),
            'owner': _deathwatch.identity(),
        }
        if not self._preload_modules:
            return setup
        data = spawn.get_preparation_data('ignore')
        setup.update(
            sys_path=data['sys_path'],
            sys_argv=data['sys_argv'],
            gomp_alias=bool(data.get('gomp_alias')),
        )
        for key, name in (
            ('init_main_from_path', 'main_path'),
            ('init_main_from_name', 'main_name'),
        ):
            if key in data:
                setup[name] = data[key]
        return setup

    def _helper_died(self):
        # Its socket file is left to the removal of our temporary directory:
        # in a forked child, the dead "server" may be our parent's live one.
        self._forkserver_address = self._forkserver_authkey = None

    def _helper_stopped(self):
        self._forkserver_authkey = None
        address, self._forkserver_address = self._forkserver_address, None
        if address is not None and not util.is_abstract_socket_namespace(address):
            os.unlink(address)


def _private_listener():
    """A listening AF_UNIX socket at a new address, and the address. Only
    our user may connect: nobody else may have children forked for them."""
    listener = socket.socket(socket.AF_UNIX)
    try:
        address = connection.arbitrary_address('AF_UNIX')
        listener.bind(address)
        _owner_only(address)
        listener.listen()
    except BaseException:
        listener.close()
        raise
    return listener, address


def _owner_only(address):
    if not util.is_abstract_socket_namespace(address):  # a file: it has a mode
        os.chmod(address, 0o600)


def _handshake(sock, authkey, server_side):
    """Authenticate the other end of sock with authkey, both ways, as
    connection.Listener and Client do (the server challenges first).
    Raises AuthenticationError if the keys differ."""
    channel = _HandshakeChannel(sock)
    steps = (connection.deliver_challenge, connection.answer_challenge)
    for step in steps if server_side else reversed(steps):
        step(channel, authkey)


class _HandshakeChannel:
    """What the challenge functions need of a Connection (send_bytes and
    recv_bytes, in a Connection's frames: a 4-byte big-endian length, then
    the bytes), over a plain socket. Not a Connection: that would load the
    Go core, which the server must never do (its children could not use a
    Go runtime that fork() left behind)."""

    __slots__ = ('_sock',)

    _HEADER = struct.Struct('!i')

    def __init__(self, sock):
        self._sock = sock

    def send_bytes(self, data):
        self._sock.sendall(self._HEADER.pack(len(data)) + data)

    def recv_bytes(self, maxlength):
        (size,) = self._HEADER.unpack(self._exactly(self._HEADER.size))
        if not 0 <= size <= maxlength:
            raise OSError('bad message length')
        return self._exactly(size)

    def _exactly(self, size):
        # Never more than asked for: the request's descriptors follow.
        data = b''
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise EOFError('the other end hung up during the handshake')
            data += chunk
        return data


# ---- numbers on the status pipe -----------------------------------------------------------


def read_signed(fd):
    """Read one SIGNED_STRUCT number from fd; EOFError if the writer closes
    it first."""
    size = SIGNED_STRUCT.size
    data = os.read(fd, size)  # the writer wrote it at once: one read, normally
    while 0 < len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            break
        data += more
    if len(data) < size:
        raise EOFError('unexpected EOF')
    return SIGNED_STRUCT.unpack(data)[0]


def write_signed(fd, n):
    """Write n to fd as one SIGNED_STRUCT."""
    pending = memoryview(SIGNED_STRUCT.pack(n))
    while pending:
        pending = pending[os.write(fd, pending) :]


# ---- the server process -------------------------------------------------------------------


def main(listener_fd, alive_r, setup_fd):
    """Run the fork server (in the interpreter ForkServer starts); its
    settings come pickled through setup_fd (see ForkServer._server_setup)."""
    _helper_process.shield(ForkServer._SHIELDED_SIGNALS)
    with open(setup_fd, 'rb') as pipe:
        setup = pickle.loads(pipe.read())
    if setup['preload']:
        _preload(
            setup['preload'],
            setup.get('main_path'),
            setup.get('main_name'),
            setup.get('sys_path'),
            setup.get('sys_argv'),
            setup.get('gomp_alias'),
        )
    # Whatever preloading printed is written now, once: left in the buffers,
    # it would be written again by every child forked from here.
    util._flush_std_streams()
    util._close_stdin()
    try:
        owner_fd = _owner_pidfd(setup.get('owner'))
        if owner_fd is None:
            return  # the process that started us is gone already
        with socket.socket(socket.AF_UNIX, fileno=listener_fd) as listener:
            _Server(listener, alive_r, setup['authkey'], owner_fd).serve()
    finally:
        util._put_away_stdin()


def _owner_pidfd(owner):
    """A pidfd of the server's owner; None if it has exited; -1 if it
    cannot be watched here (the alive pipe alone ends the server then)."""
    if owner is None:
        return -1
    try:
        fd = _deathwatch.open_owner(owner)
    except OSError:
        return -1
    return fd


def _preload(modules, main_path, main_name, sys_path, sys_argv, gomp_alias):
    """Import what every child would import: the parent's __main__ (run as
    __mp_main__, as a spawn child does, seeing the parent's sys.argv) and
    the other modules named."""
    if gomp_alias:
        from . import _alias

        _alias.install()
    if sys_path is not None:
        sys.path[:] = sys_path
    if sys_argv is not None:
        sys.argv[:] = sys_argv
    if '__main__' in modules and (main_path is not None or main_name is not None):
        _preload_main(main_path, main_name)
    for name in modules:
        if name != '__main__':
            try:
                __import__(name)
            except ImportError:
                pass


def _preload_main(main_path, main_name):
    me = process.current_process()
    # Marked as a starting child: a main module that starts processes at its
    # top level fails here as it would in a spawn child.
    me._inheriting = True
    try:
        if main_path is not None:
            spawn.import_main_path(main_path)
        else:
            spawn._fixup_main_from_name(main_name)
    except Exception:
        pass  # each child imports it again and reports the error where it belongs
    finally:
        del me._inheriting


class _Server:
    """The server's loop: requests on the listener, the end of the alive
    pipe, the end of the owner, and the end of each child (its pidfd becomes
    readable), each handled by the callback registered with the descriptor.

    The server serves its owner, the process that started it, and ends with
    it: at the end of file of the alive pipe (every process holding the
    pipe's other end has closed it), or as soon as the owner has exited
    (owner_fd, a pidfd, becomes readable), even while other processes still
    hold the alive pipe: the owner's children, which the owner's death does
    not end. They lose nothing by it: a child never asks its parent's server
    for a child, it starts a server of its own on first use."""

    def __init__(self, listener, alive_r, authkey, owner_fd=-1):
        self._listener = listener
        self._alive_r = alive_r
        self._owner_fd = owner_fd
        self._authkey = authkey
        self._running = True
        self._children = {}  # pidfd -> (pid, status_w)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, self._take_request)
        self._selector.register(alive_r, selectors.EVENT_READ, self._parents_gone)
        if owner_fd >= 0:
            self._selector.register(owner_fd, selectors.EVENT_READ, self._parents_gone)

    def serve(self):
        with self._selector:
            while self._running:
                for key, _events in self._selector.select():
                    key.data(key.fileobj)

    def _parents_gone(self, fd):
        # The alive pipe readable means end of file (nobody ever writes to
        # it); the owner's pidfd readable means the owner has exited.
        self._running = False

    def _take_request(self, listener):
        try:
            conn, _ = listener.accept()
            with conn:
                # A kernel time limit on each read (EAGAIN when it expires),
                # which a duplicate of the descriptor shares; the socket
                # itself stays blocking.
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack('ll', _CLIENT_TIMEOUT, 0)
                )
                _handshake(conn, self._authkey, server_side=True)
                fds = reduction.recvfds(conn, MAXFDS_TO_SEND + 1)
        except (OSError, EOFError, RuntimeError, connection.AuthenticationError):
            # The asking process went away mid-request, or does not hold
            # the key: nothing to do for it.
            return
        if len(fds) < _FIXED_FDS or len(fds) > MAXFDS_TO_SEND:
            util.close_fds(*fds)  # not a request a gomp parent sends
            return
        data_r, status_w, *passed = fds
        try:
            pid = os.fork()
        except OSError:
            # No child: the parent's read of its pid ends in EOFError.
            util.close_fds(*fds)
            return
        if pid == 0:
            self._run_child(data_r, status_w, passed)
        util.close_fds(data_r, *passed)
        self._follow(pid, status_w)

    def _follow(self, pid, status_w):
        """Report pid to the parent now, and its exit code when it ends."""
        try:
            write_signed(status_w, pid)
        except BrokenPipeError:
            pass  # the parent is gone; the child still has to be reaped
        pidfd = os.pidfd_open(pid)  # works on a zombie too: pid is ours until reaped
        self._children[pidfd] = (pid, status_w)
        self._selector.register(pidfd, selectors.EVENT_READ, self._child_ended)

    def _child_ended(self, pidfd):
        pid, status_w = self._children.pop(pidfd)
        self._selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        try:
            write_signed(status_w, os.waitstatus_to_exitcode(status))
        except BrokenPipeError:
            pass  # nobody waits for it any more
        os.close(status_w)

    def _run_child(self, data_r, status_w, passed):
        """In the forked child: shed the server, become the process that
        the parent described on data_r. Never returns."""
        code = 1
        try:
            util._forked_child_begins()
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            self._selector.close()
            self._listener.close()
            server_fds = [self._alive_r, status_w]
            if self._owner_fd >= 0:
                server_fds.append(self._owner_fd)
            for pidfd, (_pid, other_status_w) in self._children.items():
                server_fds += (pidfd, other_status_w)
            util.close_fds(*server_fds)
            alive_w, tracker_fd, *inherited = passed
            _forkserver._fd = alive_w
            _forkserver._inherited_fds = inherited
            resource_tracker._resource_tracker._fd = tracker_fd
            # A second descriptor of the data pipe watches the parent: it
            # reaches end of file when the parent has closed its end.
            code = spawn._main(data_r, os.dup(data_r))
        except Exception:
            sys.excepthook(*sys.exc_info())
            sys.stderr.flush()
        finally:
            util._forked_child_ends()
            os._exit(code)


_forkserver = ForkServer()
ensure_running = _forkserver.ensure_running
get_inherited_fds = _forkserver.get_inherited_fds
connect_to_new_process = _forkserver.connect_to_new_process
set_forkserver_preload = _forkserver.set_forkserver_preload
