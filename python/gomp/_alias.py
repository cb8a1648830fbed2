"""Make `multiprocessing` (with every submodule) and `_multiprocessing`
resolve to gomp.

install() puts a finder first on sys.meta_path: `import multiprocessing.X`
then returns the module object gomp.X itself (one object under two names, so
state and isinstance checks are shared). Child processes inherit the alias:
fork children by memory, spawn and forkserver children through their
preparation data (see spawn.py).

For a whole program without code changes, set the environment variable
GOMP_AS_MULTIPROCESSING=1: the gomp.pth file that pip installs then calls
install() at interpreter start, in every interpreter that inherits the
environment (also under -E and -I, which ignore only PYTHON* variables).

Since that reaches every interpreter, also the many that never use
multiprocessing, this module costs next to nothing to import: no
importlib.abc or importlib.util (they pull in typing, tempfile, pathlib...),
and the gomp package it lives in fills its namespace on first use. The
import system needs no base classes: a finder is any object with
find_spec(), a loader any object with create_module() and exec_module()."""

import os
import sys

__all__ = ['install', 'installed', 'ENV_VAR']

ENV_VAR = 'GOMP_AS_MULTIPROCESSING'

# The names served, and what they stand for.
_PACKAGE = 'multiprocessing'
_C_MODULE = '_multiprocessing'

# importlib.machinery.ModuleSpec, from the import system's own frozen module
# (always loaded), without importing importlib.
_ModuleSpec = type(sys.__spec__)


def _target(fullname):
    """The gomp module standing for fullname, or None if it is not ours."""
    if fullname == _C_MODULE:
        return 'gomp._multiprocessing'
    head, dot, tail = fullname.partition('.')
    if head != _PACKAGE:
        return None
    return 'gomp' + dot + tail


class _AliasLoader:
    """Loads an alias by importing the gomp module and handing over that very
    object."""

    def __init__(self, target):
        self._target = target
        self._own_spec = None

    def create_module(self, spec):
        __import__(self._target)
        module = sys.modules[self._target]
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module):
        # The import system stamped the alias's spec on the module; it keeps
        # its own (reload, relative imports and tools read it).
        module.__spec__ = self._own_spec


class _AliasFinder:
    def find_spec(self, fullname, path=None, target=None):
        real = _target(fullname)
        return None if real is None else _ModuleSpec(fullname, _AliasLoader(real))

    def invalidate_caches(self):
        pass

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
    stale = [
        name
        for name, module in sys.modules.items()
        if _target(name) is not None and not _is_gomp(module)
    ]
    for name in stale:
        del sys.modules[name]


def _is_gomp(module):
    name = getattr(module, '__name__', None) or ''
    return name.partition('.')[0] == 'gomp'


def _install_from_env():
    """Called by gomp.pth at interpreter start."""
    if os.environ.get(ENV_VAR, '') not in ('', '0'):
        install()
