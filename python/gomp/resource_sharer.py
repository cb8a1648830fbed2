"""Lending file descriptors to processes that were not started with them.

A Connection or socket pickled for a process that is already running (sent
on a queue or a pipe, say) cannot travel inside the pickle. Instead the
sender keeps a duplicate of the descriptor and pickles a ticket, a DupFd.
The receiver redeems the ticket with detach(): it connects back to the
sender, names the ticket, and gets the descriptor passed over the Unix
socket (SCM_RIGHTS).

The sender's side is one daemonic thread per process, started with the
first ticket. It listens on a Listener authenticated with the process's
authkey (a process of the same family can redeem a ticket, nobody else),
hands out each descriptor once and then closes its duplicate.

A request on the wire is (ticket number, requesting pid); None asks the
thread to stop."""

import _signal  # signal's enums are not needed for a mask
import itertools
import os
import sys
import threading

from . import process, util
from .context import reduction

__all__ = ['stop', 'DupFd']


class DupFd:
    """A ticket for a duplicate of fd, redeemable once with detach()."""

    def __init__(self, fd):
        lent = os.dup(fd)
        self._id = _resource_sharer.register(
            lambda conn, pid: reduction.send_handle(conn, lent, pid), lambda: os.close(lent)
        )

    def detach(self):
        """Fetch the descriptor from the process that made the ticket."""
        with _resource_sharer.get_connection(self._id) as conn:
            return reduction.recv_handle(conn)


def _connect(address):
    """A Client connection to a lending thread of this process family."""
    from .connection import Client

    return Client(address, authkey=process.current_process().authkey)


class _ResourceSharer:
    """The lending thread of this process and the resources it still holds."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        # ticket number -> (send(conn, pid), close()): what to do when it is
        # redeemed, and how to release it if it never is.
        self._lent = {}
        self._forget()  # the state without a thread: no listener, no address
        util.register_after_fork(self, _ResourceSharer._after_fork)

    # ---- the owner's side ----------------------------------------------------------------

    def register(self, send, close):
        """Lend a resource; return its ticket, (listener address, number)."""
        with self._lock:
            if self._thread is None:
                self._start_thread()
            number = next(self._tickets)
            self._lent[number] = (send, close)
            return self._address, number

    def stop(self, timeout=None):
        """Stop the lending thread (waiting up to timeout seconds for it)
        and release whatever was never redeemed. The next ticket starts a
        new thread."""
        with self._lock:
            if self._thread is None:
                return
            with _connect(self._address) as conn:
                conn.send(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                util.sub_warning('_ResourceSharer thread did not stop when asked')
            self._listener.close()
            self._forget()

    def _start_thread(self):
        from .connection import Listener

        util.debug('starting listener and thread for sending handles')
        self._listener = Listener(authkey=process.current_process().authkey, backlog=128)
        self._address = self._listener.address
        self._thread = threading.Thread(
            target=self._serve, args=(self._listener,), name='gomp resource sharer', daemon=True
        )
        self._thread.start()

    def _forget(self):
        """Release every unredeemed resource and the thread's state."""
        lent, self._lent = self._lent, {}
        for _send, close in lent.values():
            close()
        self._listener = self._address = self._thread = None

    def _after_fork(self):
        # A forked child has no lending thread, and the duplicates it
        # inherited are its parent's to hand out: it closes its copies and
        # would start a thread of its own when it lends something.
        self._lock._at_fork_reinit()
        if self._listener is not None:
            self._listener.close()  # its socket file is the parent's to unlink
        self._forget()

    def _serve(self, listener):
        # Signals are for the process's main thread, never this one.
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
        while True:
            try:
                with listener.accept() as conn:
                    request = conn.recv()
                    if request is None:
                        return
                    self._hand_over(conn, *request)
            except Exception:
                if not util.is_exiting():
                    sys.excepthook(*sys.exc_info())

    def _hand_over(self, conn, number, pid):
        send, close = self._lent.pop(number)
        try:
            send(conn, pid)
        finally:
            close()

    # ---- the borrower's side -------------------------------------------------------------

    @staticmethod
    def get_connection(ident):
        """A connection to the owner of the ticket ident, the request sent."""
        address, number = ident
        conn = _connect(address)
        conn.send((number, os.getpid()))
        return conn


_resource_sharer = _ResourceSharer()
stop = _resource_sharer.stop
