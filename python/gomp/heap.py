"""The shared-memory heap behind sharedctypes (placeholder until implemented:
see _placeholder)."""

from ._placeholder import placeholder_class

__all__ = ['BufferWrapper']

Arena = placeholder_class('Arena', 'heap.Arena', __name__)
Heap = placeholder_class('Heap', 'heap.Heap', __name__)


class BufferWrapper(object):
    """A block of shared memory (placeholder: creating one raises)."""

    _heap = None  # the suite swaps this class attribute for a fresh Heap

    def __init__(self, size):
        from ._placeholder import not_implemented
        not_implemented('heap.BufferWrapper')
