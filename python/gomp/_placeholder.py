"""Explicit placeholders for the parts of the multiprocessing API that gomp
does not implement yet. The names exist (so that importing a module works,
as the CPython test suite requires), and using one raises
NotImplementedError: nothing pretends to work."""

__all__ = ['not_implemented', 'placeholder_class', 'placeholder_function']


def not_implemented(what):
    raise NotImplementedError(f"gomp: {what} is not implemented yet")


def placeholder_class(name, what, module, bases=(object,), **namespace):
    """A class whose instantiation raises NotImplementedError."""

    def __init__(self, *args, **kwargs):
        not_implemented(what)

    namespace.setdefault('__init__', __init__)
    namespace['__module__'] = module
    namespace['__doc__'] = f"Placeholder: {what} is not implemented yet."
    return type(name, bases, namespace)


def placeholder_function(name, what, module):
    """A function that raises NotImplementedError."""

    def function(*args, **kwargs):
        not_implemented(what)

    function.__name__ = function.__qualname__ = name
    function.__module__ = module
    function.__doc__ = f"Placeholder: {what} is not implemented yet."
    return function
