"""Shared memory segments (placeholder until implemented: see _placeholder)."""

from ._placeholder import placeholder_class

__all__ = ['SharedMemory', 'ShareableList']

_USE_POSIX = True
_SHM_NAME_PREFIX = '/psm_'

SharedMemory = placeholder_class('SharedMemory', 'shared_memory.SharedMemory', __name__)
ShareableList = placeholder_class('ShareableList', 'shared_memory.ShareableList', __name__)
