"""python -m gomp: run a program on gomp, or tell what this gomp is.

    python -m gomp script.py [args...]   run script.py with `multiprocessing`
                                         resolved to gomp, in it and in every
                                         child (as GOMP_AS_MULTIPROCESSING=1)
    python -m gomp -m module [args...]   the same for a module, as python -m
    python -m gomp --version             gomp's version, Python's, the Go core's
    python -m gomp --check               that, and whether this system has
                                         what gomp needs (exit status 1 if not)

Importing this module does nothing: all of it runs under `__main__` only
(test suites import every module of the package)."""

import os
import sys

# CPython's suite imports every module of the package and checks __all__.
__all__ = ['main', 'core_build_info', 'version_lines', 'check_lines', 'run_program']

USAGE = """usage: python -m gomp script.py [args...]
       python -m gomp -m module [args...]
       python -m gomp --version | --check

Runs a program with `multiprocessing` resolved to gomp in it and in every
process it starts (the same as GOMP_AS_MULTIPROCESSING=1), or with --version
prints gomp's version and its Go core's build, and with --check also whether
this system has what gomp needs (pidfd, memfd, futex)."""

DISTRIBUTION = 'gomp-mp'
CORE_NAME = 'libgompcore.so'
# Where a Go binary keeps its build information (Go 1.18 and newer): a
# 16-byte-aligned header in the .go.buildinfo section, this magic first.
_BUILDINFO_MAGIC = b'\xff Go buildinf:'


def _uvarint(data, pos):
    """A Go unsigned varint at data[pos:]: (value, position after it)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def core_build_info(path):
    """What the Go linker recorded in the core library at path: a dict with
    'go' (the toolchain's version), 'path', 'mod', 'deps' (a list) and
    'settings' (the build settings: -buildmode, CGO_ENABLED, GOARCH...).
    The same as `go version -m`, read without Go; None where the library has
    no such record (an old layout, or not a Go binary)."""
    with open(path, 'rb') as f:
        data = f.read()
    at = data.find(_BUILDINFO_MAGIC)
    # Go 1.18+ writes the strings inline after a 32-byte header (flag 2);
    # older toolchains wrote pointers, which gomp's go.mod rules out.
    if at < 0 or len(data) < at + 32 or not data[at + 15] & 2:
        return None
    n, pos = _uvarint(data, at + 32)
    version = data[pos : pos + n].decode('utf-8', 'replace')
    n, pos = _uvarint(data, pos + n)
    modinfo = data[pos : pos + n]
    # The module information is framed by two 16-byte sentinels.
    if len(modinfo) >= 33 and modinfo[-17:-16] == b'\n':
        modinfo = modinfo[16:-16]
    info = {'go': version, 'path': None, 'mod': None, 'deps': [], 'settings': {}}
    for line in modinfo.decode('utf-8', 'replace').splitlines():
        kind, _, rest = line.partition('\t')
        fields = rest.split('\t')
        if kind == 'path':
            info['path'] = rest
        elif kind == 'mod':
            info['mod'] = ' '.join(f for f in fields[:2] if f)
        elif kind == 'dep':
            info['deps'].append(' '.join(f for f in fields[:2] if f))
        elif kind == 'build':
            key, _, value = rest.partition('=')
            info['settings'][key] = value
    return info


def _core_path():
    import gomp

    return os.path.join(os.path.dirname(os.path.abspath(gomp.__file__)), CORE_NAME)


def version_lines():
    """Lines of `--version`: gomp, Python, the Go core. Loads nothing."""
    import platform

    import gomp

    lines = [
        'gomp %s (%s %s)' % (gomp.__version__, DISTRIBUTION, gomp.__version__),
        'Python %s (%s) on %s %s'
        % (
            platform.python_version(),
            platform.python_implementation(),
            platform.system(),
            platform.machine(),
        ),
    ]
    path = _core_path()
    try:
        info = core_build_info(path)
    except OSError as e:
        return lines + ['Go core: cannot read %s: %s' % (path, e.strerror or e)]
    if info is None:
        return lines + ['Go core: %s (no Go build information in it)' % path]
    settings = ' '.join('%s=%s' % kv for kv in sorted(info['settings'].items()))
    lines.append('Go core: %s, built with %s' % (path, info['go']))
    lines.append('  build: %s' % settings)
    if info['deps']:
        lines.append('  deps: %s' % ', '.join(info['deps']))
    return lines


# ---- --check: what gomp needs from the system -----------------------------------------


def _check_kernel():
    # pidfd_open is Linux 5.3, waitid(P_PIDFD) 5.4: gomp reaps children that way.
    release = os.uname().release
    try:
        major, minor = (int(part) for part in release.split('-')[0].split('.')[:2])
    except ValueError:
        return None, 'Linux %s (cannot tell its version)' % release
    return (major, minor) >= (5, 4), 'Linux %s (5.4 or newer needed)' % release


def _check_pidfd():
    # A pidfd of a real child, waited for with waitid(P_PIDFD), as gomp does.
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError) as e:
        os.waitpid(pid, 0)
        return False, 'pidfd_open: %s' % e
    try:
        result = os.waitid(os.P_PIDFD, fd, os.WEXITED)
        ok = result is not None and result.si_status == 7
        return ok, 'pidfd_open and waitid(P_PIDFD)'
    except (AttributeError, OSError) as e:
        os.waitpid(pid, 0)
        return False, 'waitid(P_PIDFD): %s' % e
    finally:
        os.close(fd)


def _check_memfd():
    try:
        fd = os.memfd_create('gomp-check', os.MFD_CLOEXEC)
    except (AttributeError, OSError) as e:
        return False, 'memfd_create: %s' % e
    os.close(fd)
    return True, 'memfd_create'


def _check_futex():
    # The Go core's locks sleep in futex(2) on shared memory: a wake on a
    # word nobody waits for answers 0 where the call exists.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError) as e:
        return None, 'futex: cannot ask (%s)' % e
    numbers = {'x86_64': 202, 'aarch64': 98}
    number = numbers.get(os.uname().machine)
    if number is None:
        return None, 'futex: no syscall number known for %s' % os.uname().machine
    word = ctypes.c_int(0)
    FUTEX_WAKE = 1
    r = libc.syscall(number, ctypes.byref(word), FUTEX_WAKE, 1, None, None, 0)
    if r < 0:
        return False, 'futex: %s' % os.strerror(ctypes.get_errno())
    return True, 'futex'


def _check_core():
    # Load the Go core and move an object through a pipe and a lock.
    try:
        import gomp
        import gomp._gomp as ext

        ext._core_load()
        a, b = gomp.Pipe()
        a.send(['gomp', 1])
        ok = b.recv() == ['gomp', 1]
        a.close()
        b.close()
        sem = gomp.Semaphore(0)
        ok = ok and sem.acquire(timeout=0.01) is False
        return ok, 'the Go core loads (%s), a Pipe and a Semaphore work' % ext._core_info()['path']
    except Exception as e:  # any failure here is the answer
        return False, 'the Go core: %s: %s' % (type(e).__name__, e)


def check_lines():
    """(all passed, lines) of `--check`."""
    lines, ok = [], True
    for check in (_check_kernel, _check_pidfd, _check_memfd, _check_futex, _check_core):
        passed, what = check()
        mark = {True: 'ok', False: 'MISSING', None: '?'}[passed]
        lines.append('  %-7s %s' % (mark, what))
        ok = ok and passed is not False
    return ok, lines


# ---- running a program ----------------------------------------------------------------


def run_program(args):
    """Run `script.py args...` or `-m module args...` as Python would, with
    multiprocessing aliased to gomp here and, through the environment, in
    every interpreter it starts (gomp.pth reads it)."""
    import runpy

    __import__('gomp._alias')
    alias = sys.modules['gomp._alias']
    os.environ[alias.ENV_VAR] = '1'
    alias.install()
    if args[0] == '-m':
        if len(args) < 2:
            sys.exit('python -m gomp: -m needs a module name')
        # sys.path[0] is already the current directory, as `python -m` wants.
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name='__main__', alter_sys=True)
    else:
        sys.argv = list(args)
        # As `python script.py`: the script's directory first on sys.path,
        # in place of the current directory that `python -m` put there.
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
        runpy.run_path(args[0], run_name='__main__')


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ('-h', '--help'):
        print(USAGE)
        return 0 if args else 2
    if args[0] == '--version':
        print('\n'.join(version_lines()))
        return 0
    if args[0] == '--check':
        print('\n'.join(version_lines()))
        ok, lines = check_lines()
        print('system:')
        print('\n'.join(lines))
        print('gomp can run here' if ok else 'gomp cannot run here: see MISSING above')
        return 0 if ok else 1
    if args[0].startswith('-') and args[0] != '-m':
        print('python -m gomp: unknown option %s\n\n%s' % (args[0], USAGE), file=sys.stderr)
        return 2
    run_program(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
