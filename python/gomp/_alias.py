"""Make `multiprocessing` (with every submodule) and `_multiprocessing` resolve
to gomp.

install() puts a finder first on sys.meta_path: `import multiprocessing.X`
then returns the module object gomp.X itself (one object under two names, so
state and isinstance checks are shared). Child processes inherit the alias:
fork children by memory, spawn and forkserver children through their
preparation data (see spawn.py).

For a whole program without code changes, set the environment variable
GOMP_AS_MULTIPROCESSING=1: the gomp.pth file that pip installs then calls
install() at interpreter start, in every interpreter that inherits the
environment (also under -E and -I, which ignore only PYTHON* variables)."""

import importlib
import importlib.abc
import importlib.util
import os
import sys

__all__ = ['install', 'installed', 'ENV_VAR']

ENV_VAR = 'GOMP_AS_MULTIPROCESSING'

_PREFIX = 'multiprocessing'


def _target(fullname):
    if fullname == _PREFIX or fullname.startswith(_PREFIX + '.'):
        return 'gomp' + fullname[len(_PREFIX):]
    if fullname == '_multiprocessing':
        return 'gomp._multiprocessing'
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target):
        self._target = target
        self._module = None

    def create_module(self, spec):
        self._module = importlib.import_module(self._target)
        self._own_spec = self._module.__spec__
        return self._module

    def exec_module(self, module):
        # The import system stamped the alias spec on the module; it keeps its
        # own (reload, relative imports and tools read it).
        module.__spec__ = self._own_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        real = _target(fullname)
        if real is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real))

    def __repr__(self):
        return '<gomp multiprocessing alias>'


_finder = _AliasFinder()


def installed():
    """Whether `multiprocessing` resolves to gomp in this process."""
    return _finder in sys.meta_path


def install():
    """Alias `multiprocessing` to gomp in this process and its children.

    A stdlib `multiprocessing` imported earlier is replaced in sys.modules;
    objects already made with it stay stdlib objects."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    for name in list(sys.modules):
        if _target(name) is not None and not _is_gomp(sys.modules[name]):
            del sys.modules[name]


def _is_gomp(module):
    name = getattr(module, '__name__', '') or ''
    return name == 'gomp' or name.startswith('gomp.')


def _install_from_env():
    """Called by gomp.pth at interpreter start."""
    if os.environ.get(ENV_VAR, '') not in ('', '0'):
        install()
