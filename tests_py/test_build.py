"""The build: clear errors for missing toolchains, and installs that work."""

import importlib.util
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import ROOT


def load_setup():
    spec = importlib.util.spec_from_file_location("gomp_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # setup() only runs as __main__
    return mod


def test_missing_go_is_one_clear_sentence(monkeypatch, tmp_path):
    setup = load_setup()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("GO", raising=False)
    with pytest.raises(SystemExit) as info:
        setup.go_toolchain()
    msg = str(info.value)
    assert "the Go toolchain (go %d.%d or newer) is needed" % setup.GO_MIN in msg
    assert msg.count("\n") == 0


def test_old_go_is_refused(monkeypatch, tmp_path):
    setup = load_setup()
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho go1.19.4\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("GO", str(fake))
    with pytest.raises(
        SystemExit,
        match=r"Go %d\.%d or newer is needed to build gomp, found "
        r"'go1\.19\.4'" % setup.GO_MIN,
    ):
        setup.go_toolchain()


def test_missing_c_compiler_is_one_clear_sentence():
    setup = load_setup()

    class Compiler:
        compiler_so = ["no-such-cc-gomp"]

    with pytest.raises(SystemExit, match="a C compiler .no-such-cc-gomp. is needed"):
        setup.c_compiler(Compiler())


def test_pip_install_without_go_fails_with_the_sentence(tmp_path):
    """End to end: pip reports our sentence when go is not on PATH."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, PATH=str(venv / "bin") + ":/usr/bin:/bin")
    env.pop("GO", None)
    assert shutil.which("go", path=env["PATH"]) is None or pytest.skip("go is in /usr/bin")
    proc = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(tmp_path / "w"),
            ROOT,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0
    sentence = "the Go toolchain (go %d.%d or newer) is needed to build gomp" % load_setup().GO_MIN
    assert sentence in proc.stdout + proc.stderr


def test_editable_install_works(tmp_path):
    """pip install -e . builds the core next to the extension in the source tree."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    proc = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", ROOT],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = subprocess.run(
        [
            py,
            "-c",
            "import gomp, gomp._gomp as g; a, b = gomp.Pipe(); "
            "a.send([1, 2]); print(b.recv(), gomp.__file__, g.core_path)",
        ],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    init, core = out.stdout.split()[-2:]
    assert out.stdout.startswith("[1, 2] ")
    assert init.startswith(os.path.join(ROOT, "python", "gomp"))
    assert core == os.path.join(ROOT, "python", "gomp", "libgompcore.so")
    # The whole-program opt-in (gomp.pth) is installed by an editable install too.
    alias = subprocess.run(
        [py, "-I", "-c", "import multiprocessing as m; print(m.__name__)"],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=60,
        env=dict(os.environ, GOMP_AS_MULTIPROCESSING="1"),
    )
    assert alias.returncode == 0 and alias.stdout.split() == ["gomp"], alias.stderr
