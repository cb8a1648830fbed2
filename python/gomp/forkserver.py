"""The fork server: a single-threaded process, started with spawn, that forks
the children of the forkserver start method.

A parent asks for a child by connecting to the server's AF_UNIX socket and
sending file descriptors (SCM_RIGHTS): the child's data pipe, a status pipe,
the server's alive pipe, the resource tracker's pipe, and any fds pickled
with the process object. The server forks; the child reads the preparation
data and the process object from its pipe as a spawn child would; the
server writes the child's pid and, when it exits, its exit code to the
status pipe, which is the parent's sentinel.

The server imports the modules in the preload list (and the parent's
__main__, really: Python 3.11's server skips it) so that every child starts
with them imported. It never starts gomp's Go runtime: a runtime does not
survive fork, and each child loads its own on first use."""

import errno
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import warnings

from . import connection
from . import process
from . import resource_tracker
from . import spawn
from . import util
from .context import reduction

__all__ = ['ensure_running', 'get_inherited_fds', 'connect_to_new_process',
           'set_forkserver_preload']

MAXFDS_TO_SEND = 256
SIGNED_STRUCT = struct.Struct('q')  # large enough for pid_t


class ForkServer(object):

    def __init__(self):
        self._forkserver_address = None
        self._forkserver_alive_fd = None
        self._forkserver_pid = None
        self._inherited_fds = None
        self._lock = threading.Lock()
        self._preload_modules = ['__main__']

    def _stop(self):
        with self._lock:
            self._stop_unlocked()

    def _stop_unlocked(self):
        if self._forkserver_pid is None:
            return
        # Closing the alive pipe tells the server to exit.
        os.close(self._forkserver_alive_fd)
        self._forkserver_alive_fd = None
        os.waitpid(self._forkserver_pid, 0)
        self._forkserver_pid = None
        if not util.is_abstract_socket_namespace(self._forkserver_address):
            os.unlink(self._forkserver_address)
        self._forkserver_address = None

    def set_forkserver_preload(self, modules_names):
        """Modules the server imports at start (ignored if they fail to import)."""
        if not all(type(mod) is str for mod in modules_names):
            raise TypeError('module_names must be a list of strings')
        self._preload_modules = modules_names

    def get_inherited_fds(self):
        """The fds a child of the server received with its process object, or
        None in a process not started by the server."""
        return self._inherited_fds

    def connect_to_new_process(self, fds):
        """Ask the server for a child; return (status_r, data_w): the parent
        reads the child's pid and later its exit code from status_r, and
        writes the preparation data and process object to data_w."""
        self.ensure_running()
        if len(fds) + 4 >= MAXFDS_TO_SEND:
            raise ValueError('too many fds')
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(self._forkserver_address)
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            allfds = [child_r, child_w, self._forkserver_alive_fd,
                      resource_tracker.getfd()]
            allfds += fds
            try:
                reduction.sendfds(client, allfds)
                return parent_r, parent_w
            except BaseException:
                os.close(parent_r)
                os.close(parent_w)
                raise
            finally:
                os.close(child_r)
                os.close(child_w)

    def ensure_running(self):
        """Start the server if it is not running (or was killed)."""
        with self._lock:
            resource_tracker.ensure_running()
            if self._forkserver_pid is not None:
                pid, status = os.waitpid(self._forkserver_pid, os.WNOHANG)
                if not pid:
                    return  # still running
                os.close(self._forkserver_alive_fd)
                self._forkserver_address = None
                self._forkserver_alive_fd = None
                self._forkserver_pid = None

            kwargs = {}
            if self._preload_modules:
                data = spawn.get_preparation_data('ignore')
                kwargs['sys_path'] = data['sys_path']
                if 'init_main_from_path' in data:
                    kwargs['main_path'] = data['init_main_from_path']
                elif 'init_main_from_name' in data:
                    kwargs['main_name'] = data['init_main_from_name']
                if data.get('gomp_alias'):
                    kwargs['gomp_alias'] = True

            with socket.socket(socket.AF_UNIX) as listener:
                address = connection.arbitrary_address('AF_UNIX')
                listener.bind(address)
                if not util.is_abstract_socket_namespace(address):
                    os.chmod(address, 0o600)
                listener.listen()
                alive_r, alive_w = os.pipe()
                try:
                    prog = spawn._child_program(
                        'from gomp.forkserver import main',
                        'main(%d, %d, %r, **%r)' % (listener.fileno(), alive_r,
                                                    self._preload_modules, kwargs))
                    exe = spawn.get_executable()
                    args = [exe] + util._args_from_interpreter_flags() + ['-c', prog]
                    pid = util.spawnv_passfds(exe, args, [listener.fileno(), alive_r])
                except BaseException:
                    os.close(alive_w)
                    raise
                finally:
                    os.close(alive_r)
                self._forkserver_address = address
                self._forkserver_alive_fd = alive_w
                self._forkserver_pid = pid


def _preload(preload, main_path, main_name, sys_path, gomp_alias):
    if gomp_alias:
        from . import _alias
        _alias.install()
    if sys_path is not None:
        sys.path[:] = sys_path
    if '__main__' in preload and (main_path is not None or main_name is not None):
        # Starting a process from the main module's top level must fail here
        # as it does in a spawn child.
        process.current_process()._inheriting = True
        try:
            if main_path is not None:
                spawn.import_main_path(main_path)
            else:
                spawn._fixup_main_from_name(main_name)
        except Exception:
            # A main module that cannot be imported here is imported again
            # by each child, which reports the error where it matters.
            pass
        finally:
            del process.current_process()._inheriting
    for modname in preload:
        if modname == '__main__':
            continue
        try:
            __import__(modname)
        except ImportError:
            pass


def main(listener_fd, alive_r, preload, main_path=None, sys_path=None, main_name=None,
         gomp_alias=False):
    """Run the fork server."""
    if preload:
        _preload(preload, main_path, main_name, sys_path, gomp_alias)

    util._close_stdin()

    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)

    def sigchld_handler(*_unused):
        # Only there to wake the loop through the wakeup fd.
        pass

    handlers = {
        signal.SIGCHLD: sigchld_handler,
        # A Ctrl-C aimed at the user's process group must not kill the server.
        signal.SIGINT: signal.SIG_IGN,
    }
    old_handlers = {sig: signal.signal(sig, val) for sig, val in handlers.items()}
    signal.set_wakeup_fd(sig_w)

    pid_to_fd = {}  # child pid -> its status pipe

    with socket.socket(socket.AF_UNIX, fileno=listener_fd) as listener, \
            selectors.DefaultSelector() as selector:
        _forkserver._forkserver_address = listener.getsockname()
        selector.register(listener, selectors.EVENT_READ)
        selector.register(alive_r, selectors.EVENT_READ)
        selector.register(sig_r, selectors.EVENT_READ)

        while True:
            try:
                while True:
                    rfds = [key.fileobj for key, _events in selector.select()]
                    if rfds:
                        break

                if alive_r in rfds:
                    # Every parent is gone.
                    if os.read(alive_r, 1) != b'':
                        raise RuntimeError('forkserver: unexpected data on the alive pipe')
                    raise SystemExit

                if sig_r in rfds:
                    os.read(sig_r, 65536)  # drain
                    _reap_children(pid_to_fd)

                if listener in rfds:
                    with listener.accept()[0] as s:
                        fds = reduction.recvfds(s, MAXFDS_TO_SEND + 1)
                        if len(fds) > MAXFDS_TO_SEND:
                            raise RuntimeError(
                                "Too many ({0:n}) fds to send".format(len(fds)))
                        child_r, child_w, *fds = fds
                        s.close()
                        pid = os.fork()
                        if pid == 0:
                            code = 1
                            try:
                                util._forked_child_begins()
                                listener.close()
                                selector.close()
                                unused_fds = [alive_r, child_w, sig_r, sig_w]
                                unused_fds.extend(pid_to_fd.values())
                                code = _serve_one(child_r, fds, unused_fds, old_handlers)
                            except Exception:
                                sys.excepthook(*sys.exc_info())
                                sys.stderr.flush()
                            finally:
                                util._forked_child_ends()
                                os._exit(code)
                        else:
                            try:
                                write_signed(child_w, pid)
                            except BrokenPipeError:
                                pass  # the parent is gone already
                            pid_to_fd[pid] = child_w
                            os.close(child_r)
                            for fd in fds:
                                os.close(fd)

            except OSError as e:
                if e.errno != errno.ECONNABORTED:
                    raise


def _reap_children(pid_to_fd):
    while True:
        try:
            pid, sts = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child_w = pid_to_fd.pop(pid, None)
        if child_w is None:
            warnings.warn('forkserver: waitpid returned unexpected pid %d' % pid)
            continue
        try:
            write_signed(child_w, os.waitstatus_to_exitcode(sts))
        except BrokenPipeError:
            pass  # the parent is gone
        os.close(child_w)


def _serve_one(child_r, fds, unused_fds, handlers):
    # Back to the signal dispositions of a normal process.
    signal.set_wakeup_fd(-1)
    for sig, val in handlers.items():
        signal.signal(sig, val)
    for fd in unused_fds:
        os.close(fd)
    (_forkserver._forkserver_alive_fd,
     resource_tracker._resource_tracker._fd,
     *_forkserver._inherited_fds) = fds
    # The data pipe doubles as the sentinel of the parent's liveness.
    parent_sentinel = os.dup(child_r)
    return spawn._main(child_r, parent_sentinel)


def read_signed(fd):
    data = b''
    length = SIGNED_STRUCT.size
    while len(data) < length:
        s = os.read(fd, length - len(data))
        if not s:
            raise EOFError('unexpected EOF')
        data += s
    return SIGNED_STRUCT.unpack(data)[0]


def write_signed(fd, n):
    msg = SIGNED_STRUCT.pack(n)
    while msg:
        nbytes = os.write(fd, msg)
        if nbytes == 0:
            raise RuntimeError('should not get here')
        msg = msg[nbytes:]


_forkserver = ForkServer()
ensure_running = _forkserver.ensure_running
get_inherited_fds = _forkserver.get_inherited_fds
connect_to_new_process = _forkserver.connect_to_new_process
set_forkserver_preload = _forkserver.set_forkserver_preload
