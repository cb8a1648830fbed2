"""Start a child in a fresh interpreter (the spawn method, also used by the
fork server's children): the parent sends preparation data (sys.path, the
main module, the authkey, the start method...) and the pickled process
object; the child re-creates the parent's `__main__` as `__mp_main__`,
unpickles the process object and runs it."""

import io
import os
import sys
import types

from . import get_start_method, set_start_method
from . import process
from . import util
from .context import reduction

__all__ = ['_main', 'freeze_support', 'set_executable', 'get_executable',
           'get_preparation_data', 'get_command_line', 'import_main_path']

WINEXE = False
WINSERVICE = False

_GOMP_PARENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def set_executable(exe):
    """The interpreter that spawn children run."""
    global _python_exe
    _python_exe = exe if exe is None else os.fsencode(exe)


def get_executable():
    return _python_exe


set_executable(sys.executable)


def is_forking(argv):
    """Whether the command line is that of a child being started."""
    return len(argv) >= 2 and argv[1] == '--multiprocessing-fork'


def freeze_support():
    """In a frozen executable started as a child: run the child and exit."""
    if is_forking(sys.argv):
        kwds = {}
        for arg in sys.argv[2:]:
            name, value = arg.split('=')
            kwds[name] = None if value == 'None' else int(value)
        spawn_main(**kwds)
        sys.exit()


def get_command_line(**kwds):
    """The command line of a spawn child: this interpreter with its flags,
    running spawn_main(**kwds)."""
    if getattr(sys, 'frozen', False):
        return ([sys.executable, '--multiprocessing-fork'] +
                ['%s=%r' % item for item in kwds.items()])
    prog = _child_program('from gomp.spawn import spawn_main',
                          'spawn_main(%s)' % ', '.join('%s=%r' % item for item in kwds.items()))
    opts = util._args_from_interpreter_flags()
    return [get_executable()] + opts + ['-c', prog, '--multiprocessing-fork']


def _child_program(import_stmt, call):
    """The -c program of a helper interpreter (spawn child, fork server,
    resource tracker): it imports this very gomp, whose directory goes first
    on sys.path just for that import (the rest of sys.path is the child's
    own, and a spawn child gets the parent's in prepare())."""
    return ('import sys; sys.path.insert(0, %r); %s; del sys.path[0]; %s'
            % (_GOMP_PARENT_DIR, import_stmt, call))


def spawn_main(pipe_handle, parent_pid=None, tracker_fd=None):
    """Entry point of a spawn child: read the parent's data from pipe_handle
    and run the process object."""
    assert is_forking(sys.argv), "Not forking"
    from . import resource_tracker
    resource_tracker._resource_tracker._fd = tracker_fd
    fd = pipe_handle
    parent_sentinel = os.dup(pipe_handle)
    exitcode = _main(fd, parent_sentinel)
    sys.exit(exitcode)


def _main(fd, parent_sentinel):
    with os.fdopen(fd, 'rb', closefd=True) as from_parent:
        process.current_process()._inheriting = True
        try:
            preparation_data = reduction._pickler.load(from_parent)
            prepare(preparation_data)
            self = reduction._pickler.load(from_parent)
        finally:
            del process.current_process()._inheriting
    return self._bootstrap(parent_sentinel)


def _check_not_importing_main():
    if getattr(process.current_process(), '_inheriting', False):
        raise RuntimeError('''
        An attempt has been made to start a new process before the
        current process has finished its bootstrapping phase.

        This probably means that you are not using fork to start your
        child processes and you have forgotten to use the proper idiom
        in the main module:

            if __name__ == '__main__':
                freeze_support()
                ...

        The "freeze_support()" line can be omitted if the program
        is not going to be frozen to produce an executable.

        To fix this issue, refer to the "Safe importing of main module"
        section in https://docs.python.org/3/library/multiprocessing.html
        ''')


def get_preparation_data(name):
    """What a child needs to unpickle the process object: the parent's
    sys.path, argv, working directory, main module, authkey and logging."""
    _check_not_importing_main()
    d = dict(log_to_stderr=util._log_to_stderr,
             authkey=process.current_process().authkey)
    if util._logger is not None:
        d['log_level'] = util._logger.getEffectiveLevel()
    sys_path = sys.path.copy()
    try:
        i = sys_path.index('')
    except ValueError:
        pass
    else:
        sys_path[i] = process.ORIGINAL_DIR
    d.update(name=name, sys_path=sys_path, sys_argv=sys.argv,
             orig_dir=process.ORIGINAL_DIR, dir=os.getcwd(),
             start_method=get_start_method())
    from . import _alias
    if _alias.installed():
        d['gomp_alias'] = True
    main_module = sys.modules['__main__']
    main_mod_name = getattr(main_module.__spec__, "name", None)
    if main_mod_name is not None:
        d['init_main_from_name'] = main_mod_name
    else:
        main_path = getattr(main_module, '__file__', None)
        if main_path is not None:
            if not os.path.isabs(main_path) and process.ORIGINAL_DIR is not None:
                main_path = os.path.join(process.ORIGINAL_DIR, main_path)
            d['init_main_from_path'] = os.path.normpath(main_path)
    return d


# Main modules replaced by prepare(), kept alive (their globals may be in use).
old_main_modules = []


def prepare(data):
    """Make this process look like the parent before the process object is
    unpickled."""
    if data.get('gomp_alias'):
        from . import _alias
        _alias.install()
    if 'name' in data:
        process.current_process().name = data['name']
    if 'authkey' in data:
        process.current_process().authkey = data['authkey']
    if data.get('log_to_stderr'):
        util.log_to_stderr()
    if 'log_level' in data:
        util.get_logger().setLevel(data['log_level'])
    if 'sys_path' in data:
        sys.path = data['sys_path']
    if 'sys_argv' in data:
        sys.argv = data['sys_argv']
    if 'dir' in data:
        os.chdir(data['dir'])
    if 'orig_dir' in data:
        process.ORIGINAL_DIR = data['orig_dir']
    if 'start_method' in data:
        set_start_method(data['start_method'], force=True)
    if 'init_main_from_name' in data:
        _fixup_main_from_name(data['init_main_from_name'])
    elif 'init_main_from_path' in data:
        _fixup_main_from_path(data['init_main_from_path'])


def _install_main(main_content):
    main_module = types.ModuleType("__mp_main__")
    main_module.__dict__.update(main_content)
    sys.modules['__main__'] = sys.modules['__mp_main__'] = main_module


def _fixup_main_from_name(mod_name):
    # The parent's main module was run with -m mod_name: run it here as
    # __mp_main__ so that its functions and classes can be unpickled (the
    # `if __name__ == '__main__'` block does not run).
    current_main = sys.modules['__main__']
    if mod_name == "__main__" or mod_name.endswith(".__main__"):
        return  # a package's __main__ cannot be re-imported safely
    if getattr(current_main.__spec__, "name", None) == mod_name:
        return
    old_main_modules.append(current_main)
    import runpy
    _install_main(runpy.run_module(mod_name, run_name="__mp_main__", alter_sys=True))


def _fixup_main_from_path(main_path):
    current_main = sys.modules['__main__']
    main_name = os.path.splitext(os.path.basename(main_path))[0]
    if main_name == 'ipython':
        return  # an interactive session has nothing to re-run
    if getattr(current_main, '__file__', None) == main_path:
        return
    old_main_modules.append(current_main)
    if main_path.endswith('.py') and os.path.isfile(main_path):
        _install_main(_run_source_file(main_path))
    else:  # a directory, a zip archive, a compiled file: runpy knows them all
        import runpy
        _install_main(runpy.run_path(main_path, run_name="__mp_main__"))


def _run_source_file(path):
    """What runpy.run_path(path, run_name='__mp_main__') does with a source
    file: the code runs in a fresh module that is sys.modules['__mp_main__']
    meanwhile, with sys.argv[0] = path and the same module attributes; the
    result is a copy of its globals. Without runpy, which imports pkgutil and
    typing: 13 ms of import here, in a child that took 60 ms to start."""
    with io.open_code(os.path.abspath(path)) as f:
        code = compile(f.read(), path, 'exec')
    module = types.ModuleType('__mp_main__')
    run_globals = module.__dict__
    run_globals.update(__file__=path, __cached__=None, __doc__=None, __loader__=None,
                       __package__='', __spec__=None)
    saved_module = sys.modules.get('__mp_main__', _MISSING)
    saved_argv0 = sys.argv[0]
    sys.modules['__mp_main__'] = module
    sys.argv[0] = path
    try:
        exec(code, run_globals)
    finally:
        sys.argv[0] = saved_argv0
        if saved_module is _MISSING:
            del sys.modules['__mp_main__']
        else:
            sys.modules['__mp_main__'] = saved_module
    return run_globals.copy()


_MISSING = object()


def import_main_path(main_path):
    """Make the module at main_path this process's __main__ (as __mp_main__)."""
    _fixup_main_from_path(main_path)
