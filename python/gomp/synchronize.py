"""Synchronization primitives shared between processes (placeholder until
they are implemented: see _placeholder)."""

from ._placeholder import placeholder_class

__all__ = ['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event']

for _name in __all__ + ['Barrier', 'SemLock']:
    globals()[_name] = placeholder_class(_name, 'synchronize.' + _name, __name__)
del _name
