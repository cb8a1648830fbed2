"""Build of gomp: the C extension gomp._gomp and, next to it, the Go core
library libgompcore.so that the extension loads at run time.

The Go core is built with `go build -buildmode=c-shared` from pybind/. Both
toolchains are checked first so that a missing one fails with one sentence
saying what to install. The minimum Go is the one go.mod names.

The Go core does not depend on the Python version, so a wheel build for
several Pythons (tools/wheels.py) builds it once and hands it to every build
through the environment variable GOMP_CORE_LIB (a path to a ready
libgompcore.so); setup.py then copies it instead of running Go, and needs no
Go at all. CC (and LDSHARED for the link) choose the C compiler as
setuptools always does; tools/wheels.py points them at zig's, targeting an
old glibc."""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
CORE_NAME = "libgompcore.so"
# The whole-program opt-in: a one-line .pth file at the root of site-packages
# that aliases `multiprocessing` to gomp at interpreter start when the
# environment variable GOMP_AS_MULTIPROCESSING is set (see gomp/_alias.py).
PTH_NAME = "gomp.pth"
PTH_SOURCE = os.path.join("python", PTH_NAME)

# Warnings. The C is compiled with -Wall -Wextra always, less the two checks
# CPython turns off for its own C (CONFIGURE_CFLAGS_NODIST): unused
# parameters (every METH_NOARGS function has one, and so has cgo's own
# runtime/cgo C) and missing field initializers (PyModuleDef, PyMethodDef
# sentinels). Warnings are errors only where we choose the compiler: in CI
# (CI=true, which CI services set) or on request (GOMP_WERROR=1). A user's
# `pip install` must not fail because a newer gcc or clang than ours has
# learnt a new warning; CI is where a new warning gets fixed.
WARNINGS = ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

# GOMP_SANITIZE=1 builds the extension with AddressSanitizer and
# UndefinedBehaviorSanitizer (`make test-asan`; see the Makefile for how the
# interpreter is run with it). Its objects go to build/sanitize so that they
# never mix with those of a normal build (setuptools skips a compile whose
# object is newer than its sources, whatever the flags). -fno-wrapv undoes
# the -fwrapv of CPython's own CFLAGS (which every extension inherits), for
# UBSan to check our C for signed overflow too: gomp's C never relies on it.
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                  "-fno-sanitize-recover=undefined", "-fno-wrapv", "-g"]


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def werror():
    return env_flag("GOMP_WERROR") or env_flag("CI")


def sanitize():
    return env_flag("GOMP_SANITIZE")


class BuildError(SystemExit):
    """Stops the build with one line, without a traceback."""

    def __init__(self, sentence):
        super().__init__("gomp build error: " + sentence)


def go_min_version(go_mod=os.path.join(HERE, "go.mod")):
    """The minimum Go, as (major, minor), from go.mod's `go` line: the one
    place it is written (the README quotes it)."""
    try:
        with open(go_mod) as f:
            m = re.search(r"^go\s+(\d+)\.(\d+)", f.read(), re.MULTILINE)
    except OSError as e:
        raise BuildError("cannot read %s (%s): an incomplete source tree?" % (go_mod, e))
    if not m:
        raise BuildError("%s names no `go` version: an incomplete source tree?" % go_mod)
    return int(m.group(1)), int(m.group(2))


GO_MIN = go_min_version()
# Set to a ready libgompcore.so to copy it instead of building the Go core.
CORE_LIB_ENV = "GOMP_CORE_LIB"


def go_toolchain():
    go = os.environ.get("GO") or shutil.which("go")
    if not go:
        raise BuildError(
            "the Go toolchain (go %d.%d or newer) is needed to build gomp; install it from "
            "https://go.dev/dl/ and put `go` on PATH (or set GO=/path/to/go)." % GO_MIN)
    try:
        out = subprocess.run([go, "env", "GOVERSION"], check=True, capture_output=True,
                             text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError("`%s env GOVERSION` failed (%s); install Go %d.%d or newer from "
                         "https://go.dev/dl/." % ((go, e) + GO_MIN))
    m = re.match(r"go(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < GO_MIN:
        raise BuildError("Go %d.%d or newer is needed to build gomp, found %r at %s; install a "
                         "newer one from https://go.dev/dl/." % (GO_MIN + (out, go)))
    return go


def core_build_command(go, out, flags=()):
    """The `go build` line of the Go core library, run in the source root."""
    return [go, "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false",
            "-ldflags=-s -w"] + list(flags) + ["-o", out, "./pybind"]


def build_core_library(go, cc, out, announce=print):
    """Build libgompcore.so at out with cgo's C compiler cc (a command line:
    `zig cc -target ...` works as well as `gcc`)."""
    # GOTOOLCHAIN=local: an older go must not go and download the one go.mod
    # names (go_toolchain() has already said which is needed).
    env = dict(os.environ, CGO_ENABLED="1", CC=cc, GOTOOLCHAIN="local")
    flags = []
    if werror():  # the cgo C: runtime/cgo's and the export wrappers of pybind/
        cflags = os.environ.get("CGO_CFLAGS", "-O2 -g").split()
        env["CGO_CFLAGS"] = " ".join(cflags + WARNINGS + ["-Werror"])
    if sanitize():
        # Go's -asan: the Go code's reads and writes of C memory (the
        # buffers the extension hands the core) are checked too.
        flags.append("-asan")
    cmd = core_build_command(go, out, flags)
    announce("building the Go core: " + " ".join(cmd))
    try:
        subprocess.run(cmd, cwd=HERE, env=env, check=True)
    except subprocess.CalledProcessError as e:
        raise BuildError("`go build` of the Go core failed (exit %d); see its output above."
                         % e.returncode)
    header = os.path.splitext(out)[0] + ".h"
    if os.path.exists(header):
        os.remove(header)


def prebuilt_core():
    """The ready core library named by GOMP_CORE_LIB, or None."""
    path = os.environ.get(CORE_LIB_ENV)
    if not path:
        return None
    if not os.path.isfile(path):
        raise BuildError("%s=%s names no file; unset it to build the Go core here."
                         % (CORE_LIB_ENV, path))
    return os.path.abspath(path)


def c_compiler(compiler):
    cc = (getattr(compiler, "compiler_so", None) or ["cc"])[0]
    if not shutil.which(cc):
        raise BuildError("a C compiler (%s) is needed to build gomp's extension and the Go core; "
                         "install gcc (Debian/Ubuntu: apt-get install gcc)." % cc)
    return cc


class BuildGomp(build_ext):
    def run(self):
        self._prebuilt = prebuilt_core()
        self._go = None if self._prebuilt else go_toolchain()
        super().run()

    def build_extension(self, ext):
        self._cc = c_compiler(self.compiler)
        super().build_extension(ext)
        if ext.name == "gomp._gomp":
            self.build_core(os.path.dirname(self.get_ext_fullpath(ext.name)))

    def build_core(self, outdir):
        out = os.path.join(outdir, CORE_NAME)
        if self._prebuilt:
            self.copy_file(self._prebuilt, out, preserve_mode=0)
            return
        build_core_library(self._go, os.environ.get("CC", self._cc), out,
                           announce=lambda msg: self.announce(msg, level=2))

    # Editable installs (pip install -e .) build in build_lib and copy the
    # extension back into the source tree; the core library goes with it.
    def _core_files(self):
        package_dir = self.get_finalized_command("build_py").get_package_dir("gomp")
        return (os.path.join(package_dir, CORE_NAME),
                os.path.join(self.build_lib, "gomp", CORE_NAME))

    def copy_extensions_to_source(self):
        super().copy_extensions_to_source()
        inplace, regular = self._core_files()
        self.copy_file(regular, inplace, level=self.verbose)

    def _get_output_mapping(self):
        yield from super()._get_output_mapping()
        if self.inplace:
            inplace, regular = self._core_files()
            yield (regular, inplace)


class BuildPyWithPth(build_py):
    """build_py that also puts gomp.pth at the root of what gets installed.

    A regular build (`pip install .`) copies it to the root of build_lib, so
    the wheel installs it at the root of site-packages. An editable build
    (`pip install -e .`) installs nothing from build_lib: setuptools then
    writes the wheel's files straight from the install command's install_lib
    (the unpacked editable wheel), so the file goes there instead."""

    def run(self):
        super().run()
        self.copy_file(PTH_SOURCE, os.path.join(self._pth_dir(), PTH_NAME), preserve_mode=0)

    def _pth_dir(self):
        if getattr(self, "editable_mode", False):
            return self.get_finalized_command("install").install_lib
        return self.build_lib

    def get_outputs(self, *args, **kwargs):
        outputs = super().get_outputs(*args, **kwargs)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, PTH_NAME))
        return outputs

    def get_source_files(self):
        return super().get_source_files() + [PTH_SOURCE]


def extension_flags():
    """The extra compile and link arguments of gomp._gomp."""
    compile_args = ["-O2", "-std=gnu11"] + WARNINGS
    link_args = []
    if werror():
        compile_args.append("-Werror")
    if sanitize():
        compile_args += SANITIZE_FLAGS
        link_args += SANITIZE_FLAGS
    return compile_args, link_args


def main():
    compile_args, link_args = extension_flags()
    setup(
        packages=find_packages("python"),
        package_dir={"": "python"},
        ext_modules=[
            Extension(
                "gomp._gomp",
                sources=sorted(glob.glob("pybind/ext/*.c")),
                depends=sorted(glob.glob("pybind/*.h") + glob.glob("pybind/ext/*.h")),
                include_dirs=["pybind"],
                libraries=["dl"],
                extra_compile_args=compile_args,
                extra_link_args=link_args,
            )
        ],
        cmdclass={"build_ext": BuildGomp, "build_py": BuildPyWithPth},
        options={"build": {"build_base": os.path.join("build", "sanitize")}} if sanitize() else {},
        zip_safe=False,
    )


if __name__ == "__main__":  # tests import this file for its checks without building
    main()
