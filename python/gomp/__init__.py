"""gomp: a drop-in replacement for multiprocessing with a Go core.

Use it as `import gomp as multiprocessing`, or call gomp.install() to make
`import multiprocessing` itself resolve to gomp in this process and in every
child it starts. The API, the start methods and the wire formats are those of
the standard library's multiprocessing.

Importing the package costs next to nothing: with GOMP_AS_MULTIPROCESSING
set, every interpreter imports it at start (gomp.pth), most of them never to
use it. Its namespace (the default context's public attributes, as the
stdlib's package offers them) is filled from gomp.context the first time a
name is looked up, listed (dir) or star-imported (__all__)."""

import sys

# The one place the version is written: pyproject.toml reads it from here.
__version__ = '0.1.0'

SUBDEBUG = 5
SUBWARNING = 25

# Set while the namespace is being filled: gomp.context and the modules it
# imports must not trigger the filling again by looking a name up here.
_filling = False


def install():
    """Make `import multiprocessing` (and its submodules, and `_multiprocessing`)
    resolve to gomp in this process and in every child process it starts."""
    from . import _alias

    _alias.install()


def _fill():
    global _filling
    _filling = True
    try:
        # __import__ with no fromlist: `from . import context` would look the
        # name up on this package first, which lands in __getattr__ again.
        __import__('gomp.context')
        default = sys.modules['gomp.context']._default_context
        names = [name for name in dir(default) if not name.startswith('_')]
        namespace = globals()
        namespace.update((name, getattr(default, name)) for name in names)
        namespace['__all__'] = names + ['install']
    finally:
        _filling = False
    # As the stdlib does on import: objects pickled from the main module of a
    # child started by spawn name it __mp_main__.
    if '__main__' in sys.modules:
        sys.modules.setdefault('__mp_main__', sys.modules['__main__'])


def __getattr__(name):
    # Dunder probes (copy, pickle, inspect...) must not load anything, except
    # __all__, which `from gomp import *` asks for.
    if not _filling and (name == '__all__' or not name.startswith('__')):
        _fill()
        namespace = globals()
        if name in namespace:
            return namespace[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__():
    if not _filling and '__all__' not in globals():
        _fill()
    return sorted(globals())
