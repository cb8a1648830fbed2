"""Alias check of the CPython suite runner: loaded into EVERY interpreter of a
suite run, it records whether `multiprocessing` resolved to gomp there.

How it gets loaded (see run_suite.py):
* interpreters with site (also -E and -I): the line in gomp_suite_check.pth,
  which the runner puts into the private venv's site-packages, executes this
  file when GOMP_SUITE_CHECK names it (the variable is not a PYTHON* one, so
  -E and -I keep it);
* -S interpreters: the `multiprocessing` / `_multiprocessing` shims execute
  it before they install gomp: those in the run's working directory, or
  under -I -S those in the run's interpreter's pythonXY.zip.

What it records (JSON lines, appended to the file named by GOMP_SUITE_LOG):
* "start": this interpreter's pid, parent pid and command line;
* "import": the first import of `multiprocessing`, `multiprocessing.X` or
  `_multiprocessing` here, with the verdict "gomp" (the name is already a
  gomp module, or gomp's alias finder is first on sys.meta_path and so will
  serve it) or "stdlib" (anything else: the stdlib would be imported);
* "exit": at interpreter exit, any `multiprocessing*` module in sys.modules
  that is not a gomp module;
* "launch": every Python interpreter this one starts through subprocess,
  os.exec*, os.posix_spawn or os.system, with whether the alias can reach
  it (our venv and GOMP_AS_MULTIPROCESSING for a site interpreter; the shim
  on sys.path[0] for a -S one), whether this check reaches it, and whether
  its program mentions multiprocessing. The runner fails the run on a "stdlib" verdict,
  on an "exit" with foreign modules, and on a launch the alias cannot reach
  whose program mentions multiprocessing.

The runner owns this file; it is no part of the gomp package and never
imports gomp (it must not change what it observes)."""

import os
import sys

_MODULE_NAME = '_gomp_suite_check'
_SHIM_MARKER = 'gomp suite runner shim'


def _is_mp_name(name):
    return (
        name == 'multiprocessing'
        or name.startswith('multiprocessing.')
        or name == '_multiprocessing'
    )


def _is_gomp_module(module):
    name = getattr(module, '__name__', None) or ''
    return name == 'gomp' or name.startswith('gomp.')


def _alias_first():
    for finder in sys.meta_path:
        # gomp's finder, identified without importing gomp.
        return type(finder).__module__ == 'gomp._alias'
    return False


class _Check:
    def __init__(self, log_path, via, venv, shim_dir):
        self.log_path = log_path
        self.via = via  # 'pth' or 'shim'
        self.venv = venv  # the run's venv (prefix), or None
        self.shim_dir = shim_dir
        self.seen = set()
        self.busy = False
        self.pid = os.getpid()

    # -- recording -----------------------------------------------------------

    def record(self, kind, **fields):
        import json

        fields.update(
            kind=kind,
            pid=os.getpid(),
            ppid=os.getppid(),
            via=self.via,
            test=os.environ.get('GOMP_SUITE_TEST', ''),
        )
        line = (json.dumps(fields, default=repr) + '\n').encode('utf-8', 'replace')
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def start(self):
        self.record(
            'start',
            cmdline=_cmdline(),
            executable=sys.executable,
            flags=_flag_letters(),
            alias_first=_alias_first(),
        )

    # -- the audit hook ------------------------------------------------------

    def hook(self, event, args):
        if self.busy:
            return
        if event == 'import':
            name = args[0]
            if not isinstance(name, str) or not _is_mp_name(name):
                return
            self.busy = True
            try:
                self.on_import(name)
            finally:
                self.busy = False
        elif event in ('subprocess.Popen', 'os.exec', 'os.posix_spawn', 'os.system'):
            self.busy = True
            try:
                self.on_launch(event, args)
            except Exception as e:  # never break the code under test
                try:
                    self.record('check_error', where=event, error=repr(e))
                except Exception:
                    pass
            finally:
                self.busy = False

    def on_import(self, name):
        if os.getpid() != self.pid:
            # A fork child: a copy of a checked parent, verdicts are its own.
            self.pid = os.getpid()
            self.seen = set()
        if name in self.seen:
            return
        self.seen.add(name)
        module = sys.modules.get(name)
        if module is not None:
            verdict = 'gomp' if _is_gomp_module(module) else 'stdlib'
        else:
            verdict = 'gomp' if _alias_first() else 'stdlib'
        if verdict == 'gomp' and len(self.seen) > 1:
            return  # one "gomp" record per interpreter is enough
        self.record(
            'import',
            name=name,
            verdict=verdict,
            meta_path=[_finder_name(f) for f in sys.meta_path[:3]],
            cmdline=_cmdline() if verdict != 'gomp' else None,
        )

    def at_exit(self):
        if os.getpid() != self.pid:
            return
        foreign = sorted(
            name
            for name, module in list(sys.modules.items())
            if _is_mp_name(name) and module is not None and not _is_gomp_module(module)
        )
        if foreign:
            self.record('exit', foreign=foreign, cmdline=_cmdline())

    def on_launch(self, event, args):
        if event == 'os.system':
            text = os.fsdecode(args[0])
            if 'python' in text:
                self.record(
                    'launch',
                    hooked=False,
                    checked=False,
                    mentions=('multiprocessing' in text),
                    shell=True,
                    cmd=text,
                    why='shell command line (os.system)',
                )
            return
        if event == 'subprocess.Popen':
            executable, argv, cwd, env = args
            if isinstance(argv, (str, bytes)):
                if executable is None:
                    # A shell command line: look for a Python in it.
                    text = os.fsdecode(argv)
                    if 'python' in text:
                        self.record(
                            'launch',
                            hooked=False,
                            checked=False,
                            mentions=('multiprocessing' in text),
                            shell=True,
                            cmd=text,
                            why='shell command line',
                        )
                    return
                argv = [argv]
        elif event == 'os.exec':
            executable, argv, env = args
            cwd = None
        else:  # os.posix_spawn
            executable, argv, env = args
            cwd = None
        argv = [os.fsdecode(a) for a in argv]
        if not argv and executable is None:
            return
        prog = os.fsdecode(executable) if executable is not None else argv[0]
        info = analyze_launch(prog, argv, cwd, env, self.venv)
        if info is not None:
            self.record('launch', **info)


def _finder_name(finder):
    cls = finder if isinstance(finder, type) else type(finder)
    return '%s.%s' % (cls.__module__, cls.__qualname__)


def _cmdline():
    try:
        with open('/proc/self/cmdline', 'rb') as f:
            raw = f.read()
    except OSError:
        return sys.argv
    return [os.fsdecode(a) for a in raw.split(b'\0')[:-1]]


def _flag_letters():
    f = sys.flags
    letters = ''
    for attr, letter in (
        ('isolated', 'I'),
        ('ignore_environment', 'E'),
        ('no_site', 'S'),
        ('no_user_site', 's'),
        ('safe_path', 'P'),
    ):
        if getattr(f, attr, 0):
            letters += letter
    return letters


# -- launches: can the alias reach the new interpreter? ----------------------


def _looks_like_python(prog):
    base = os.path.basename(prog)
    if base.startswith('python'):
        return True
    try:
        return os.path.realpath(prog) == os.path.realpath(sys.executable)
    except (OSError, ValueError):
        return False


def parse_python_argv(argv):
    """(flag letters, mode, target) of a Python command line; mode is 'c',
    'm', 'script', 'stdin' or None (interactive)."""
    flags = set()
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == '-':
            return flags, 'stdin', None
        if a == '--':
            i += 1
            break
        if a.startswith('--'):
            if a == '--check-hash-based-pycs':
                i += 1
            i += 1
            continue
        if a.startswith('-') and len(a) > 1:
            j = 1
            while j < len(a):
                ch = a[j]
                if ch in 'cm':
                    rest = a[j + 1 :]
                    if rest:
                        return flags, ch, rest
                    return flags, ch, argv[i + 1] if i + 1 < len(argv) else None
                if ch in 'WX':
                    if not a[j + 1 :]:
                        i += 1  # the argument is the next word
                    break
                flags.add(ch)
                j += 1
            i += 1
            continue
        break
    if i < len(argv):
        return flags, 'script', argv[i]
    return flags, None, None


def _shim_in(directory):
    path = os.path.join(directory, 'multiprocessing.py')
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return _SHIM_MARKER in f.read(4096)
    except OSError:
        return False


def _zip_shim_of(prog):
    """Whether the venv interpreter prog has the runner's shims in its base's
    pythonXY.zip (run_suite.private_interpreter), the first entry of sys.path
    even under -I -S. The runner stores the shims uncompressed, so the marker
    is found in the file's bytes without importing zipfile here."""
    cfg = os.path.join(os.path.dirname(os.path.dirname(prog)), 'pyvenv.cfg')
    try:
        with open(cfg, encoding='utf-8') as f:
            pairs = (line.split('=', 1) for line in f if '=' in line)
            home = {k.strip(): v.strip() for k, v in pairs}['home']
        lib = os.path.join(os.path.dirname(home), 'lib')
        for name in os.listdir(lib):
            if name.startswith('python') and name.endswith('.zip'):
                with open(os.path.join(lib, name), 'rb') as f:
                    return _SHIM_MARKER.encode() in f.read()
    except (OSError, KeyError):
        pass
    return False


def analyze_launch(prog, argv, cwd, env, venv):
    """What a new interpreter will import as multiprocessing, judged from its
    command line; None if prog is not a Python."""
    if not _looks_like_python(prog):
        return None
    if env is None:
        env = os.environ
    env = {os.fsdecode(k): os.fsdecode(v) for k, v in dict(env).items()}
    cwd = os.fsdecode(cwd) if cwd is not None else os.getcwd()
    if not os.path.isabs(prog) and os.sep in prog:
        prog = os.path.join(cwd, prog)
    flags, mode, target = parse_python_argv(argv)
    no_site = 'S' in flags
    isolated = 'I' in flags
    safe_path = 'P' in flags or isolated or ('E' not in flags and env.get('PYTHONSAFEPATH'))
    in_venv = False
    if venv and os.path.isabs(prog):
        in_venv = os.path.realpath(os.path.dirname(os.path.dirname(prog))) == os.path.realpath(venv)
    alias_on = env.get('GOMP_AS_MULTIPROCESSING', '') not in ('', '0')
    check_on = bool(env.get('GOMP_SUITE_CHECK') and env.get('GOMP_SUITE_LOG'))
    why = ''
    if not no_site:
        hooked = in_venv and alias_on
        checked = in_venv and check_on
        if not in_venv:
            why = 'not the run\'s venv interpreter (no gomp.pth there)'
        elif not alias_on:
            why = 'GOMP_AS_MULTIPROCESSING not in its environment'
    else:
        if safe_path:
            path0 = None
        elif mode == 'script' and target:
            path0 = os.path.dirname(os.path.abspath(os.path.join(cwd, target)))
        else:
            path0 = cwd
        # The venv's zip is on sys.path unless PYTHONHOME moves the base.
        own_home = 'E' in flags or isolated or not env.get('PYTHONHOME')
        hooked = checked = (path0 is not None and _shim_in(path0)) or (
            in_venv and own_home and _zip_shim_of(prog)
        )
        if not hooked:
            why = (
                '-S without the shim on sys.path[0] (%s)' % path0
                if path0
                else '-S with -I/-P: no directory of ours on sys.path'
            )
    if mode == 'c':
        mentions = 'multiprocessing' in (target or '')
    elif mode == 'script':
        try:
            with open(os.path.join(cwd, target), encoding='utf-8', errors='replace') as f:
                mentions = 'multiprocessing' in f.read()
        except OSError:
            mentions = True  # cannot tell: assume it does
    elif mode == 'm':
        mentions = True  # a module may import anything
    else:
        mentions = True  # stdin or interactive: cannot tell
    return dict(
        hooked=hooked, checked=checked, mentions=mentions, cmd=argv, cwd=cwd, why=why, mode=mode
    )


# -- activation ----------------------------------------------------------------


def activate(log_path, via, venv=None, shim_dir=None):
    """Install the check in this interpreter (once)."""
    if getattr(sys, '_gomp_suite_check', None) is not None:
        return sys._gomp_suite_check
    check = _Check(log_path, via, venv, shim_dir)
    sys._gomp_suite_check = check
    check.start()
    import atexit

    atexit.register(check.at_exit)
    sys.addaudithook(check.hook)
    return check


if __name__ == _MODULE_NAME:
    # Executed by gomp_suite_check.pth (in its own namespace).
    if os.environ.get('GOMP_SUITE_LOG'):
        activate(os.environ['GOMP_SUITE_LOG'], 'pth', os.environ.get('GOMP_SUITE_VENV'))
