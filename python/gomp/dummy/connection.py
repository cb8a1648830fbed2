"""Connections between the threads of one process, with the API of
gomp.connection (``multiprocessing.dummy.connection``).

A connection is one end of a channel made of two queue.Queue objects, one per
direction. Objects are handed over as they are: threads share memory, so
nothing is pickled, and send_bytes()/recv_bytes() are send()/recv().
"""

from queue import Queue

__all__ = ['Client', 'Listener', 'Pipe']

# The address families a Listener accepts: there are no real addresses here.
families = [None]


class Connection:
    """One end of a channel: it receives from one queue and sends into another."""

    def __init__(self, _in, _out):
        self._in = _in
        self._out = _out
        # Bound once: these are the hot calls, and they need no wrapper.
        self.send = self.send_bytes = _out.put
        self.recv = self.recv_bytes = _in.get

    def poll(self, timeout=0.0):
        """Whether an object can be received, waiting at most timeout seconds
        for one (None: as long as it takes)."""
        incoming = self._in
        # The condition holds the queue's mutex: count with the unlocked _qsize().
        with incoming.not_empty:
            return incoming.not_empty.wait_for(lambda: incoming._qsize() > 0, timeout)

    def close(self):
        """Nothing to release: the queues go when both ends are forgotten."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _channel():
    """The two connected ends of a new channel."""
    one_way, other_way = Queue(), Queue()
    return Connection(one_way, other_way), Connection(other_way, one_way)


def Pipe(duplex=True):
    """Two connected Connections (always two-way)."""
    return _channel()


class Listener:
    """Accepts the connections of Client(listener.address). The address is the
    queue through which each Client hands over the listener's end of a new
    channel (at most backlog of them wait to be accepted)."""

    def __init__(self, address=None, family=None, backlog=1):
        self._pending = Queue(backlog)

    @property
    def address(self):
        return self._pending

    def accept(self):
        """The next connection from a Client, waiting for one if needed."""
        return self._pending.get()

    def close(self):
        self._pending = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def Client(address):
    """A Connection to the Listener whose address is given."""
    ours, listeners = _channel()
    address.put(listeners)
    return ours
