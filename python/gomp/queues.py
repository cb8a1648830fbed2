"""Queues shared between processes (placeholder until they are implemented:
see _placeholder)."""

from ._placeholder import placeholder_class

__all__ = ['Queue', 'SimpleQueue', 'JoinableQueue']

Queue = placeholder_class('Queue', 'queues.Queue', __name__)
JoinableQueue = placeholder_class('JoinableQueue', 'queues.JoinableQueue', __name__, (Queue,))
SimpleQueue = placeholder_class('SimpleQueue', 'queues.SimpleQueue', __name__)
