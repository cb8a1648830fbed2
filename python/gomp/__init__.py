"""gomp: a drop-in replacement for multiprocessing with a Go core.

Use it as `import gomp as multiprocessing`, or call gomp.install() to make
`import multiprocessing` itself resolve to gomp in this process and in every
child it starts. The API, the start methods and the wire formats are those of
the standard library's multiprocessing."""

import sys

from . import context

__all__ = [x for x in dir(context._default_context) if not x.startswith('_')] + ['install']
globals().update((name, getattr(context._default_context, name)) for name in __all__
                 if name != 'install')

SUBDEBUG = 5
SUBWARNING = 25

# The default context also has the `reducer` property; like the stdlib, the
# module offers every public attribute of the default context.
if '__main__' in sys.modules:
    sys.modules['__mp_main__'] = sys.modules['__main__']


def install():
    """Make `import multiprocessing` (and its submodules, and `_multiprocessing`)
    resolve to gomp in this process and in every child process it starts."""
    from . import _alias
    _alias.install()
