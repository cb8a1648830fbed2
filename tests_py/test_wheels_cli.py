"""`python -m gomp`, gomp.__version__, and the build's one minimum Go."""

import importlib.metadata
import importlib.util
import os
import re
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_python

# The build's checks need the source tree; tools/wheel_check.py runs this file
# against an installed wheel, with tests_py copied away from it.
needs_source = pytest.mark.skipif(
    not os.path.exists(os.path.join(ROOT, "setup.py")),
    reason="needs the source tree (setup.py, go.mod)",
)


def load_setup():
    spec = importlib.util.spec_from_file_location("gomp_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # setup() only runs as __main__
    return mod


def gomp_main(*args, cwd=None, env=None, timeout=120):
    full_env = dict(os.environ)
    full_env.pop("GOMP_AS_MULTIPROCESSING", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gomp", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )


# ---- the minimum Go: go.mod, setup.py and the README agree ---------------------------------


@needs_source
def test_go_mod_setup_and_readme_name_one_minimum_go():
    with open(os.path.join(ROOT, "go.mod")) as f:
        go_line = re.search(r"^go (\d+)\.(\d+)", f.read(), re.MULTILINE)
    go_mod = (int(go_line.group(1)), int(go_line.group(2)))
    assert load_setup().GO_MIN == go_mod
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    named = set(re.findall(r"Go (\d+\.\d+) or newer", readme))
    assert named == {"%d.%d" % go_mod}, named


@needs_source
def test_a_go_older_than_go_mod_is_refused(monkeypatch, tmp_path):
    setup = load_setup()
    major, minor = setup.GO_MIN
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho go%d.%d.9\n" % (major, minor - 1))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("GO", str(fake))
    with pytest.raises(SystemExit, match=r"Go %d\.%d or newer is needed" % (major, minor)):
        setup.go_toolchain()


@needs_source
def test_a_prebuilt_core_that_is_not_there_is_one_sentence(monkeypatch, tmp_path):
    setup = load_setup()
    monkeypatch.setenv("GOMP_CORE_LIB", str(tmp_path / "nothing.so"))
    with pytest.raises(SystemExit, match="GOMP_CORE_LIB=.*names no file") as info:
        setup.prebuilt_core()
    assert str(info.value).count("\n") == 0


# ---- the version ---------------------------------------------------------------------------


def test_version_is_the_installed_distributions():
    import gomp

    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", gomp.__version__)
    assert importlib.metadata.version("gomp-mp") == gomp.__version__


def test_version_does_not_fill_the_namespace():
    out = run_python("""
        import sys, gomp
        print(gomp.__version__, 'gomp.context' in sys.modules)
    """).stdout.split()
    assert out[1] == "False"


# ---- python -m gomp --version / --check -----------------------------------------------------


def test_version_names_gomp_python_and_the_go_core():
    import gomp

    proc = gomp_main("--version")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("gomp %s (gomp-mp %s)\n" % (gomp.__version__, gomp.__version__))
    assert "Python %d.%d." % sys.version_info[:2] in out
    assert re.search(r"Go core: \S+libgompcore\.so, built with go1\.\d+", out), out
    assert "-buildmode=c-shared" in out and "CGO_ENABLED=1" in out


def test_core_build_info_reads_what_the_go_linker_wrote():
    import gomp
    from gomp.__main__ import core_build_info

    path = os.path.join(os.path.dirname(gomp.__file__), "libgompcore.so")
    info = core_build_info(path)
    assert re.fullmatch(r"go1\.\d+(\.\d+)?\S*", info["go"])
    assert info["path"] == "github.com/gomp-dev/gomp/pybind"
    assert info["settings"]["-buildmode"] == "c-shared"
    assert any(dep.startswith("golang.org/x/sys v") for dep in info["deps"])
    assert core_build_info(sys.executable) is None  # not a Go binary


def test_check_passes_here():
    proc = gomp_main("--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for what in ("pidfd_open and waitid(P_PIDFD)", "memfd_create", "futex", "the Go core loads"):
        assert re.search(r"^  ok +%s" % re.escape(what), proc.stdout, re.MULTILINE), proc.stdout
    assert proc.stdout.rstrip().endswith("gomp can run here")


def test_usage_and_unknown_options():
    assert gomp_main().returncode == 2
    proc = gomp_main("--bogus")
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr
    assert "usage: python -m gomp" in gomp_main("--help").stdout


# ---- python -m gomp script.py ---------------------------------------------------------------

PROGRAM = textwrap.dedent("""
    import multiprocessing
    import sys

    def report(q):
        import multiprocessing as m
        q.put(m.__name__)

    if __name__ == '__main__':
        out = [multiprocessing.__name__, repr(sys.argv[1:])]
        for method in ('fork', 'spawn', 'forkserver'):
            ctx = multiprocessing.get_context(method)
            q = ctx.SimpleQueue()
            p = ctx.Process(target=report, args=(q,))
            p.start()
            out.append(method + '=' + q.get())
            p.join()
        import subprocess
        out.append('exec=' + subprocess.run(
            [sys.executable, '-c', 'import multiprocessing; print(multiprocessing.__name__)'],
            capture_output=True, text=True).stdout.strip())
        print(' '.join(out))
""")


def test_a_script_runs_with_multiprocessing_as_gomp_in_every_child(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    proc = gomp_main(str(script), "a", "--b", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "gomp",
        "['a',",
        "'--b']",
        "fork=gomp",
        "spawn=gomp",
        "forkserver=gomp",
        "exec=gomp",
    ]


def test_a_module_runs_the_same_with_dash_m(tmp_path):
    (tmp_path / "progmod.py").write_text(PROGRAM)
    proc = gomp_main("-m", "progmod", "x", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "gomp",
        "['x']",
        "fork=gomp",
        "spawn=gomp",
        "forkserver=gomp",
        "exec=gomp",
    ]


def test_the_scripts_exit_status_and_traceback_are_its_own(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nif sys.argv[1] == 'exit': sys.exit(3)\nraise KeyError('x')\n")
    assert gomp_main(str(script), "exit").returncode == 3
    proc = gomp_main(str(script), "raise")
    assert proc.returncode == 1 and "KeyError: 'x'" in proc.stderr


def test_importing_gomp_main_does_nothing():
    out = run_python("""
        import sys
        argv, path = list(sys.argv), list(sys.path)
        import gomp.__main__
        print(sys.argv == argv, sys.path == path, 'gomp.context' in sys.modules,
              any('gomp' in repr(f) for f in sys.meta_path))
    """).stdout
    assert out.split() == ["True", "True", "False", "False"]
