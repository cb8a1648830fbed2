"""Children that start as a new interpreter (the spawn method; the fork
server's children end the same way).

The parent runs `python -c "... spawn_main(...)" --multiprocessing-fork`
and writes two pickles to a pipe the child inherits: the preparation data
(what makes the child look like its parent: sys.path, argv, working
directory, authkey, logging, start method, and where `__main__` came from)
and the Process object. The child applies the first, runs the parent's main
module again as `__mp_main__` (so that functions and classes defined there
can be unpickled; its `if __name__ == '__main__':` block does not run), then
unpickles the Process and runs it.

A spawned child pays for every module it imports, so this module keeps
what the child needs lean: a main script that is a plain .py file is run
here directly rather than through runpy (which brings pkgutil and typing),
and runpy is imported only for the other kinds of main (-m modules,
directories, zip files)."""

import io
import os
import sys
import types

from . import get_start_method, process, set_start_method, util
from ._versions import V
from .context import reduction, set_spawning_popen

__all__ = [
    '_main',
    'freeze_support',
    'set_executable',
    'get_executable',
    'get_preparation_data',
    'get_command_line',
    'import_main_path',
]

# Windows-only situations (a frozen Windows executable, a Windows service):
# never the case here.
WINEXE = False
WINSERVICE = False

# The argument that marks a child's command line.
_CHILD_FLAG = '--multiprocessing-fork'

# The directory holding the gomp package: a helper interpreter puts it first
# on sys.path just long enough to import this very gomp.
_GOMP_PARENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ==== the interpreter children run ===========================================================

_python_exe = None


def set_executable(exe):
    """Run spawned children (and helper processes) with the interpreter exe."""
    global _python_exe
    _python_exe = None if exe is None else os.fsencode(exe)


def get_executable():
    """The interpreter spawned children run (bytes), or None if unknown."""
    return _python_exe


set_executable(sys.executable)  # None when embedded: importing must still work


# ==== the parent's side ======================================================================


def get_command_line(**kwds):
    """The argv of a spawned child: this interpreter with its flags,
    calling spawn_main(**kwds). A frozen program is its own interpreter: it
    gets the keywords as name=value arguments for freeze_support()."""
    arguments = ['%s=%r' % item for item in kwds.items()]
    if getattr(sys, 'frozen', False):
        return [sys.executable, _CHILD_FLAG, *arguments]
    program = _child_program(
        'from gomp.spawn import spawn_main', 'spawn_main(%s)' % ', '.join(arguments)
    )
    return [get_executable(), *util._args_from_interpreter_flags(), '-c', program, _CHILD_FLAG]


def _child_program(import_stmt, call):
    """The -c program of a helper interpreter (spawn child, fork server,
    resource tracker): it imports this very gomp, whose directory goes first
    on sys.path just for that import (the rest of sys.path is the child's
    own, and a spawn child gets the parent's in prepare())."""
    return 'import sys; sys.path.insert(0, %r); %s; del sys.path[0]; %s' % (
        _GOMP_PARENT_DIR,
        import_stmt,
        call,
    )


# The first sentence is the standard library's (programs and tests look for it).
_BOOTSTRAPPING_ERROR = """
        An attempt has been made to start a new process before the
        current process has finished its bootstrapping phase.

        Under the spawn and forkserver start methods, every child runs the
        parent's main module again to find the functions and classes its
        Process object refers to. Code at the main module's top level that
        starts processes then starts them again in each child, so it must be
        guarded:

            if __name__ == '__main__':
                freeze_support()
                ...

        (freeze_support() is needed only in a program frozen into an
        executable.) See "Safe importing of main module" in the
        multiprocessing documentation:
        https://docs.python.org/3/library/multiprocessing.html
        """


def _check_not_importing_main():
    """Refuse to start a process from a child's re-run of the main module
    (without the guard, each child would start more children)."""
    if getattr(process.current_process(), '_inheriting', False):
        raise RuntimeError(_BOOTSTRAPPING_ERROR)


def get_preparation_data(name):
    """What the child named name applies before unpickling its Process
    (see prepare())."""
    _check_not_importing_main()
    me = process.current_process()
    data = {
        'name': name,
        'authkey': me.authkey,
        'log_to_stderr': util._log_to_stderr,
        # '' stands for the directory the parent started in, which is not
        # necessarily the child's (or the parent's) current directory.
        'sys_path': [process.ORIGINAL_DIR if entry == '' else entry for entry in sys.path],
        'sys_argv': sys.argv,
        'orig_dir': process.ORIGINAL_DIR,
        'dir': os.getcwd(),
        # From 3.14, a method nobody chose stays unchosen in the child too.
        'start_method': get_start_method(allow_none=V.start_keeps_method_unchosen),
    }
    if util._logger is not None:
        data['log_level'] = util._logger.getEffectiveLevel()
    from . import _alias

    if _alias.installed():
        data['gomp_alias'] = True
    data.update(_where_main_came_from(sys.modules['__main__']))
    return data


def _where_main_came_from(main):
    """{'init_main_from_name': module} if main was run with -m,
    {'init_main_from_path': absolute path} if it was run from a file,
    {} for an interactive session or code given with -c."""
    module_name = getattr(getattr(main, '__spec__', None), 'name', None)
    if module_name is not None:
        return {'init_main_from_name': module_name}
    path = getattr(main, '__file__', None)
    if path is None:
        return {}
    if process.ORIGINAL_DIR is not None:
        path = os.path.join(process.ORIGINAL_DIR, path)  # no change if absolute
    return {'init_main_from_path': os.path.normpath(path)}


# ==== the child's side =======================================================================


def is_forking(argv):
    """Whether argv is the command line of a child being started."""
    return len(argv) > 1 and argv[1] == _CHILD_FLAG


def freeze_support():
    """In a frozen program started as a child: be the child, then exit."""
    if is_forking(sys.argv):
        spawn_main(**_keywords_from_argv(sys.argv[2:]))
        sys.exit()


def _keywords_from_argv(arguments):
    """The keywords get_command_line() wrote as name=value (ints or None)."""
    keywords = {}
    for argument in arguments:
        name, _, value = argument.partition('=')
        keywords[name] = None if value == 'None' else int(value)
    return keywords


def spawn_main(pipe_handle, parent_pid=None, tracker_fd=None):
    """The spawned child's entry point: pipe_handle brings the parent's
    data, tracker_fd is the resource tracker's pipe. (parent_pid is for
    Windows, where the child opens its parent to duplicate handles.)"""
    if not is_forking(sys.argv):
        raise RuntimeError('spawn_main() is the entry point of a spawned child only')
    from . import resource_tracker

    resource_tracker._resource_tracker._fd = tracker_fd
    # The data pipe outlives the data: its end of file tells the child that
    # the parent is gone (the parent keeps the write end open meanwhile).
    parent_sentinel = os.dup(pipe_handle)
    sys.exit(_main(pipe_handle, parent_sentinel))


def _main(fd, parent_sentinel):
    """Read the preparation data and the Process object from fd (closed
    afterwards), prepare, and run the Process; return its exit code."""
    with open(fd, 'rb', closefd=True) as from_parent:
        process_obj = _receive(from_parent)
    return process_obj._bootstrap(parent_sentinel)


def _receive(from_parent):
    me = process.current_process()
    # While the main module runs again, starting a process is an error
    # (_check_not_importing_main).
    me._inheriting = True
    try:
        prepare(reduction._pickler.load(from_parent))
        return reduction._pickler.load(from_parent)
    finally:
        del me._inheriting


def _set_process_attr(attr):
    return lambda value: setattr(process.current_process(), attr, value)


def _set_module_attr(module, attr):
    return lambda value: setattr(module, attr, value)


def _install_alias(wanted):
    if wanted:
        from . import _alias

        _alias.install()


def _enable_stderr_logging(wanted):
    if wanted:
        util.log_to_stderr()


# Preparation data key -> how the child applies it, in this order: the alias
# first (what follows may import 'multiprocessing'), the directory before
# the main module is looked for.
_APPLY = (
    ('gomp_alias', _install_alias),
    ('name', _set_process_attr('name')),
    ('authkey', _set_process_attr('authkey')),
    ('log_to_stderr', _enable_stderr_logging),
    ('log_level', lambda level: util.get_logger().setLevel(level)),
    ('sys_path', _set_module_attr(sys, 'path')),
    ('sys_argv', _set_module_attr(sys, 'argv')),
    ('dir', os.chdir),
    ('orig_dir', _set_module_attr(process, 'ORIGINAL_DIR')),
    ('start_method', lambda method: set_start_method(method, force=True)),
)


def prepare(data):
    """Make this child look like its parent (data from get_preparation_data)."""
    for key, apply in _APPLY:
        if key in data:
            apply(data[key])
    if 'init_main_from_name' in data:
        _fixup_main_from_name(data['init_main_from_name'])
    elif 'init_main_from_path' in data:
        _fixup_main_from_path(data['init_main_from_path'])


# ==== the parent's main module, again ========================================================

# The main modules replaced here. Kept alive: functions made from their
# globals may still be in use.
old_main_modules = []


def _fixup_main_from_name(mod_name):
    """Run the module the parent ran with -m as __mp_main__."""
    # A package's __main__ (python -m package) is its command line, not a
    # library: running it again would run the program.
    if mod_name == '__main__' or mod_name.endswith('.__main__'):
        return
    if getattr(sys.modules['__main__'].__spec__, 'name', None) == mod_name:
        return  # that module is our main already (a fork server's child)
    import runpy

    _replace_main(runpy.run_module(mod_name, run_name='__mp_main__', alter_sys=True))


def _fixup_main_from_path(main_path):
    """Run the parent's main script (or directory, or zip file) as __mp_main__."""
    if os.path.splitext(os.path.basename(main_path))[0] == 'ipython':
        return  # an interactive session: nothing to run
    if getattr(sys.modules['__main__'], '__file__', None) == main_path:
        return  # that script is our main already (a fork server's child)
    if main_path.endswith('.py') and os.path.isfile(main_path):
        _replace_main(_run_source_file(main_path))
    else:
        import runpy

        _replace_main(runpy.run_path(main_path, run_name='__mp_main__'))


def import_main_path(main_path):
    """Make the script at main_path this process's main module (as __mp_main__)."""
    _fixup_main_from_path(main_path)


def _replace_main(run_globals):
    """Install a module with run_globals as both __main__ and __mp_main__:
    pickles name the parent's main as __main__, code run here as __mp_main__."""
    old_main_modules.append(sys.modules['__main__'])
    module = types.ModuleType('__mp_main__')
    vars(module).update(run_globals)
    sys.modules['__main__'] = sys.modules['__mp_main__'] = module


_NOT_THERE = object()


def _run_source_file(path):
    """What runpy.run_path(path, run_name='__mp_main__') does with a source
    file: the code runs in a fresh module that is sys.modules['__mp_main__']
    meanwhile, with sys.argv[0] = path and the same module attributes; the
    result is a copy of its globals. Without runpy, which imports pkgutil and
    typing: 13 ms of import here, in a child that took 60 ms to start."""
    with io.open_code(os.path.abspath(path)) as source:
        code = compile(source.read(), path, 'exec')
    module = types.ModuleType('__mp_main__')
    namespace = vars(module)
    namespace.update(__file__=path, __package__='', __doc__=None, __loader__=None, __spec__=None)
    if V.run_path_sets_cached:
        namespace['__cached__'] = None
    saved = sys.modules.get('__mp_main__', _NOT_THERE), sys.argv[0]
    sys.modules['__mp_main__'], sys.argv[0] = module, path
    try:
        exec(code, namespace)
    finally:
        _restore_main_slot(*saved)
    return dict(namespace)


def _restore_main_slot(module, argv0):
    sys.argv[0] = argv0
    if module is _NOT_THERE:
        sys.modules.pop('__mp_main__', None)
    else:
        sys.modules['__mp_main__'] = module


def child_payload(popen, process_obj):
    """What a spawned or fork-server child reads first (_main): the
    preparation data, then the process object, pickled with `popen` as the
    spawning Popen (so that descriptors go to the child through it)."""
    out = io.BytesIO()
    set_spawning_popen(popen)
    try:
        for obj in (get_preparation_data(process_obj._name), process_obj):
            reduction.dump(obj, out)
    finally:
        set_spawning_popen(None)
    return out.getbuffer()
