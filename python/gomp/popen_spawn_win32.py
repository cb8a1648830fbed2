"""The Windows spawn method; gomp runs on POSIX systems only."""

import sys

__all__ = ['Popen']  # noqa: F822 (the Windows module's name; importing fails here)

if sys.platform != 'win32':
    raise ImportError('popen_spawn_win32 is only available on Windows')

raise ImportError('gomp does not support Windows')
