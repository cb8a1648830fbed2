"""Process and thread pools (placeholder until implemented: see _placeholder)."""

from ._placeholder import placeholder_class

__all__ = ['Pool', 'ThreadPool']

INIT = 'INIT'
RUN = 'RUN'
CLOSE = 'CLOSE'
TERMINATE = 'TERMINATE'


class MaybeEncodingError(Exception):
    """Wraps an exception that could not be pickled to send back a result."""

    def __init__(self, exc, value):
        self.exc = repr(exc)
        self.value = repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self):
        return "Error sending result: '%s'. Reason: '%s'" % (self.value, self.exc)

    def __repr__(self):
        return "<%s: %s>" % (self.__class__.__name__, self)


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker."""

    def __init__(self, tb):
        self.tb = tb

    def __str__(self):
        return self.tb


Pool = placeholder_class('Pool', 'pool.Pool', __name__)
ThreadPool = placeholder_class('ThreadPool', 'pool.ThreadPool', __name__, (Pool,))
AsyncResult = placeholder_class('AsyncResult', 'pool.AsyncResult', __name__)
ApplyResult = AsyncResult
MapResult = placeholder_class('MapResult', 'pool.MapResult', __name__, (AsyncResult,))
IMapIterator = placeholder_class('IMapIterator', 'pool.IMapIterator', __name__)
IMapUnorderedIterator = placeholder_class('IMapUnorderedIterator', 'pool.IMapUnorderedIterator',
                                          __name__, (IMapIterator,))
