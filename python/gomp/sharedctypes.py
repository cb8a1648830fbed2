"""ctypes objects in shared memory (placeholder until implemented: see
_placeholder)."""

from ._placeholder import placeholder_function

__all__ = ['RawValue', 'RawArray', 'Value', 'Array', 'copy', 'synchronized']

for _name in __all__:
    globals()[_name] = placeholder_function(_name, 'sharedctypes.' + _name, __name__)
del _name
