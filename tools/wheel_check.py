"""Check one gomp wheel the way a user gets it: installed into a fresh venv,
with no Go and no C compiler in reach, away from the source tree.

    python3.X tools/wheel_check.py WHEEL WORKDIR [--tests FILE...]

Run with the wheel's own Python (on the host, or inside the 3.14/3.15 chroot
of .ci/sid-pythons.sh; standard library only). In WORKDIR (made anew):

1. a venv of this Python; pytest from PyPI into it, then the wheel alone,
   from the file (--no-index), timed;
2. a PATH that holds every program of this system except compilers and Go
   (symlinks in WORKDIR/bin), checked: `go`, `cc`, `gcc`... are not found;
3. with that PATH and the work directory as the current one:
   `python -m gomp --check`, the demo (examples/demo.py, copied), and gomp's
   tests (tests_py, copied) run from the installed wheel; the run checks that
   gomp comes from the venv's site-packages.

The last line of output is `WHEEL-CHECK {json}` with what was measured; the
exit status is 0 only if everything passed."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Programs left out of the PATH: C/C++ compilers, assemblers, linkers, Go, zig.
_HIDDEN = re.compile(r"^(?:.*-)?(?:cc|c89|c99|c\+\+|cpp|gcc|g\+\+|clang|clang\+\+|tcc|zig"
                     r"|go|gofmt|ld|ld\.\w+|as)(?:-\d[\w.]*)?$")
_PROBES = ["go", "gofmt", "cc", "gcc", "c++", "g++", "clang", "zig", "tcc", "ld", "as",
           "x86_64-linux-gnu-gcc"]

# gomp's tests that are not about an installed gomp, left out here:
#   test_build.py      builds from the source tree with Go and a compiler
#   test_provenance.py compares the source tree's python/gomp with CPython's
#   test_libs_clients.py  third-party suites in their own venvs from PyPI
#   test_suite_runner.py  the CPython-suite runner's own machinery
#   test_wheels.py     this check's driver
EXCLUDED = {"test_build.py", "test_provenance.py", "test_libs_clients.py",
            "test_suite_runner.py", "test_wheels.py"}


def toolless_bin(dest):
    """Fill dest with symlinks to every program on the usual directories
    except the hidden ones; return the PATH string."""
    os.makedirs(dest, exist_ok=True)
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            target = os.path.join(d, name)
            link = os.path.join(dest, name)
            if _HIDDEN.match(name) or os.path.lexists(link) or not os.access(target, os.X_OK):
                continue
            os.symlink(os.path.realpath(target), link)
    return dest


def run(cmd, **kw):
    print("wheel-check: $ " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, **kw)
    return proc, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wheel")
    ap.add_argument("workdir")
    ap.add_argument("--tests", nargs="*", help="test files (default: all but EXCLUDED)")
    args = ap.parse_args()
    wheel = os.path.abspath(args.wheel)
    work = os.path.abspath(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    result = {"wheel": os.path.basename(wheel), "python": sys.version.split()[0], "ok": False}

    venv = os.path.join(work, "venv")
    py = os.path.join(venv, "bin", "python")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["pytest"], check=True)
    proc, result["install_s"] = run(pip + ["--no-index", "--no-deps", wheel])
    if proc.returncode:
        return finish(result, "pip install of the wheel failed")

    path = os.path.join(venv, "bin") + ":" + toolless_bin(os.path.join(work, "bin"))
    found = {p: shutil.which(p, path=path) for p in _PROBES}
    result["tools_on_path"] = sorted(p for p, where in found.items() if where)
    if result["tools_on_path"]:
        return finish(result, "compilers or Go still on PATH: %s" % result["tools_on_path"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GO", "CC"))}
    env.update(PATH=path, PYTHONDONTWRITEBYTECODE="1")
    env.pop("GOMP_AS_MULTIPROCESSING", None)
    kw = dict(cwd=work, env=env)

    where = subprocess.run([py, "-c", "import gomp, gomp._gomp as g; print(gomp.__file__); "
                            "print(g.__file__)"], capture_output=True, text=True, **kw)
    site = os.path.join(venv, "lib")
    files = where.stdout.split()
    if where.returncode or len(files) != 2 or not all(f.startswith(site) for f in files):
        return finish(result, "gomp not imported from the venv: %s %s" % (where.stdout,
                                                                         where.stderr))

    proc, result["check_s"] = run([py, "-m", "gomp", "--check"], **kw)
    if proc.returncode:
        return finish(result, "python -m gomp --check failed")

    shutil.copy(os.path.join(ROOT, "examples", "demo.py"), os.path.join(work, "demo.py"))
    proc, result["demo_s"] = run([py, "demo.py"], **kw)
    if proc.returncode:
        return finish(result, "the demo failed")

    tests = os.path.join(work, "tests_py")
    shutil.copytree(os.path.join(ROOT, "tests_py"), tests,
                    ignore=shutil.ignore_patterns("__pycache__", "results"))
    # Test data of the Go packages some tests read, at the same place relative
    # to tests_py as in the source tree (data only: no Python next to it).
    vectors = os.path.join("gomp", "owner", "testdata", "stat_vectors.txt")
    os.makedirs(os.path.dirname(os.path.join(work, vectors)))
    shutil.copy(os.path.join(ROOT, vectors), os.path.join(work, vectors))
    names = args.tests or sorted(n for n in os.listdir(tests)
                                 if n.startswith("test_") and n.endswith(".py")
                                 and n not in EXCLUDED)
    result["test_files"] = len(names)
    # The venv's pytest script, not `python -m pytest`: -m would put the
    # current directory first on sys.path. --rootdir: without it pytest would
    # climb to a setup.py above (the source tree's, when WORKDIR is in it),
    # and name the tests from there.
    proc, result["tests_s"] = run([os.path.join(venv, "bin", "pytest"), "-q", "-p",
                                   "no:cacheprovider", "--rootdir", tests, "-m", "not clients"]
                                  + names,
                                  cwd=tests, env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-3000:])
    sys.stderr.write(proc.stderr[-2000:])
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    result["tests"] = summary[-1].strip("= ") if summary else None
    if proc.returncode:
        return finish(result, "gomp's tests failed")
    result["ok"] = True
    return finish(result, None)


def finish(result, error):
    if error:
        result["error"] = error
    print("WHEEL-CHECK " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
