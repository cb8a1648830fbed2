"""The wheels of `make wheels` as users get them (`make test-wheels`).

For each CPython version named in GOMP_TEST_WHEELS (e.g. "3.10 3.14"), the
wheel for it in dist/ is installed into a fresh venv of that Python, with no
Go and no C compiler on PATH, and the demo and gomp's own tests run from the
installed wheel (tools/wheel_check.py does that, with the wheel's Python:
pyenv's on the host, Debian's inside the chroot of .ci/sid-pythons.sh for
3.14 and 3.15). `auditwheel show` must report a manylinux tag of glibc 2.17.

Without GOMP_TEST_WHEELS the tests are skipped: building the wheels is a
separate step (make wheels), too slow for every run of the suite."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

VERSIONS = os.environ.get("GOMP_TEST_WHEELS", "").split()
# Test files to run from each wheel (default: all but tools/wheel_check.py's
# EXCLUDED).
TESTS = os.environ.get("GOMP_WHEEL_TESTS", "").split()
DIST = os.environ.get("GOMP_WHEELS_DIR", os.path.join(ROOT, "dist"))
WORK = os.path.join(ROOT, "build", "wheel-check")
TOOLS_BIN = os.path.join(ROOT, ".venv-wheels-tools", "bin")
SID = os.path.join(ROOT, ".ci", "sid-pythons.sh")
CHROOT_VERSIONS = {"3.14", "3.15"}
TAG = "manylinux_2_17_x86_64"

pytestmark = pytest.mark.skipif(not VERSIONS, reason="set GOMP_TEST_WHEELS (make test-wheels)")


def wheel_for(version):
    tag = "cp" + version.replace(".", "")
    found = glob.glob(os.path.join(DIST, "gomp_mp-*-%s-%s-*.whl" % (tag, tag)))
    assert len(found) == 1, "one wheel for CPython %s in %s (make wheels), found %s" % (
        version,
        DIST,
        found,
    )
    return found[0]


def host_python(version):
    found = sorted(glob.glob("/root/.pyenv/versions/%s.*/bin/python3" % version))
    return found[-1] if found else "python" + version


@pytest.mark.parametrize("version", VERSIONS)
def test_auditwheel_shows_manylinux_2_17(version):
    wheel = wheel_for(version)
    assert TAG in os.path.basename(wheel) and "manylinux2014_x86_64" in wheel
    proc = subprocess.run(
        [os.path.join(TOOLS_BIN, "auditwheel"), "show", wheel],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PATH=TOOLS_BIN + ":" + os.environ["PATH"]),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    print(proc.stdout)
    assert 'is consistent with the following platform tag: "%s"' % TAG in text
    # Both ELF files are in the wheel: the extension and the Go core.
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", wheel], capture_output=True, text=True, check=True
    ).stdout
    assert "gomp/libgompcore.so" in names and re.search(r"gomp/_gomp\.cpython-3\d+-", names)


@pytest.mark.parametrize("version", VERSIONS)
def test_installed_wheel_runs_without_go_or_compiler(version):
    wheel = wheel_for(version)
    work = os.path.join(WORK, version)
    check = os.path.join(ROOT, "tools", "wheel_check.py")
    if version in CHROOT_VERSIONS:
        if os.getuid() != 0:
            pytest.skip("CPython %s runs in a chroot, which needs root" % version)
        cmd = [
            SID,
            "run",
            "/usr/bin/python%s '%s' '%s' '%s'" % (version, check, wheel, work)
            + "".join(" '%s'" % t for t in ["--tests"] * bool(TESTS) + TESTS),
        ]
    else:
        cmd = [host_python(version), check, wheel, work] + (["--tests"] + TESTS if TESTS else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("WHEEL-CHECK ")]
    assert lines, "no result from wheel_check:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-4000:])
    result = json.loads(lines[-1][len("WHEEL-CHECK ") :])
    print("\n" + json.dumps(result))
    assert result["ok"] and proc.returncode == 0, "%s\n%s\n%s" % (
        result,
        proc.stdout[-6000:],
        proc.stderr[-3000:],
    )
    assert result["python"].startswith(version + ".")
    assert result["tools_on_path"] == []
    assert re.search(r"\d+ passed", result["tests"])
    assert not re.search(r"\d+ failed", result["tests"]), result["tests"]  # (xfailed is fine)
