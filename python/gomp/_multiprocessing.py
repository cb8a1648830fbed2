"""Stands in for CPython's C module _multiprocessing (placeholder until the
synchronization primitives are implemented)."""

from ._placeholder import placeholder_class, placeholder_function

__all__ = ['SemLock', 'sem_unlink', 'flags']

SemLock = placeholder_class('SemLock', '_multiprocessing.SemLock', __name__)
sem_unlink = placeholder_function('sem_unlink', '_multiprocessing.sem_unlink', __name__)
flags = {}
