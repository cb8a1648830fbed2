"""Managers: server processes holding shared objects, reached through proxies
(placeholder until implemented: see _placeholder). Registration works, so that
modules defining managers import; starting or connecting a manager raises."""

from ._placeholder import not_implemented, placeholder_class

__all__ = ['BaseManager', 'SyncManager', 'BaseProxy', 'Token', 'SharedMemoryManager']


class RemoteError(Exception):
    def __str__(self):
        return ('\n' + '-' * 75 + '\n' + str(self.args[0]) + '-' * 75)


class Token(object):
    """Identifies a shared object: its type id, the server address, its id."""
    __slots__ = ('typeid', 'address', 'id')

    def __init__(self, typeid, address, id):
        (self.typeid, self.address, self.id) = (typeid, address, id)

    def __getstate__(self):
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state):
        (self.typeid, self.address, self.id) = state

    def __repr__(self):
        return '%s(typeid=%r, address=%r, id=%s)' % (
            self.__class__.__name__, self.typeid, self.address, self.id)


class BaseProxy(object):
    """Base of the proxies of shared objects (placeholder)."""

    def __init__(self, *args, **kwargs):
        not_implemented('managers.BaseProxy')

    def _callmethod(self, methodname, args=(), kwds={}):
        not_implemented('managers.BaseProxy._callmethod')


class BaseManager(object):
    """Base of managers (placeholder: register() records the type ids;
    starting or connecting raises NotImplementedError)."""

    _registry = {}

    def __init__(self, *args, **kwargs):
        not_implemented('managers.BaseManager')

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        if '_registry' not in cls.__dict__:
            cls._registry = cls._registry.copy()
        cls._registry[typeid] = (callable, exposed, method_to_typeid, proxytype)


class SyncManager(BaseManager):
    """A manager of the synchronization and container types (placeholder)."""


class SharedMemoryManager(BaseManager):
    """A manager of shared memory segments (placeholder)."""


Namespace = placeholder_class('Namespace', 'managers.Namespace', __name__)
