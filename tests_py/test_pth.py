"""The whole-program opt-in: gomp.pth at the root of site-packages makes every
interpreter started with GOMP_AS_MULTIPROCESSING set import gomp as
`multiprocessing` (also under -E and -I); without the variable it does
nothing (gomp is not even imported)."""

import os
import subprocess
import sys
import sysconfig

import pytest

from conftest import HERE

PTH = os.path.join(sysconfig.get_path("purelib"), "gomp.pth")

PROBE = (
    "import sys, multiprocessing, multiprocessing.connection, _multiprocessing; "
    "print(multiprocessing.__name__, multiprocessing.connection.__name__, "
    "_multiprocessing.__name__, 'gomp' in sys.modules)"
)


def probe(*flags, var=None):
    env = dict(os.environ)
    env.pop("GOMP_AS_MULTIPROCESSING", None)
    if var is not None:
        env["GOMP_AS_MULTIPROCESSING"] = var
    proc = subprocess.run(
        [sys.executable, *flags, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_pth_is_installed_at_the_root_of_site_packages():
    with open(PTH) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("import ")


@pytest.mark.parametrize("flags", [(), ("-E",), ("-I",)], ids=["plain", "-E", "-I"])
def test_variable_set_aliases_multiprocessing(flags):
    assert probe(*flags, var="1") == ["gomp", "gomp.connection", "gomp._multiprocessing", "True"]


@pytest.mark.parametrize("var", [None, "", "0"], ids=["unset", "empty", "zero"])
def test_variable_unset_leaves_the_stdlib_and_does_not_import_gomp(var):
    assert probe(var=var) == [
        "multiprocessing",
        "multiprocessing.connection",
        "_multiprocessing",
        "False",
    ]


def test_children_of_an_aliased_program_get_gomp_too(tmp_path):
    code = (
        "import multiprocessing as mp\n"
        "def f(q):\n"
        "    import multiprocessing, sys\n"
        "    q.send(multiprocessing.__name__)\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('spawn')\n"
        "    a, b = mp.Pipe()\n"
        "    p = mp.Process(target=f, args=(b,))\n"
        "    p.start(); print(mp.__name__, a.recv()); p.join()\n"
    )
    script = tmp_path / "prog.py"
    script.write_text(code)
    env = dict(os.environ, GOMP_AS_MULTIPROCESSING="1")
    proc = subprocess.run(
        [sys.executable, "-E", str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["gomp", "gomp"]
