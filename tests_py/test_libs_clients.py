"""Real clients of multiprocessing, run the way their users run them: joblib's
and pebble's own test suites, once with the standard library and once with
GOMP_AS_MULTIPROCESSING=1, nothing else changed. gomp must not fail a test
that the standard library passes.

They need a venv with the pinned versions from PyPI and gomp installed:
`make test-clients` builds it (.venv-clients) and runs this file with
GOMP_CLIENTS_VENV pointing at it. Without it (offline, or plain `pytest
tests_py`) these tests skip; `-m "not clients"` deselects them.

joblib: test_parallel and test_memmapping, the files that drive both its
loky backend (which subclasses multiprocessing.queues.Queue and overrides its
feeder, see gomp._pipe_queues) and its multiprocessing backend (Pool).
GOMP_CLIENTS_JOBLIB_K narrows them (a pytest -k expression); by default the
parametrisations over every backend are narrowed to loky and multiprocessing,
the two that use multiprocessing (threading and sequential do not).
pebble: its whole suite (process pools under fork, spawn and forkserver).

A test that fails under gomp but passed with the standard library is run once
more on its own before it counts as a regression: both suites have tests
that time out on a loaded machine."""

import os
import re
import subprocess
import time

import pytest

pytestmark = pytest.mark.clients

VENV = os.environ.get("GOMP_CLIENTS_VENV", "")
PEBBLE_TESTS = os.environ.get("GOMP_CLIENTS_PEBBLE_TESTS", "")
ALIAS = "GOMP_AS_MULTIPROCESSING"
JOBLIB_TEST_TIMEOUT = 180

# Parametrisations over backends that do not use multiprocessing at all:
# the same code either way, so they are left out to save time.
JOBLIB_K = os.environ.get("GOMP_CLIENTS_JOBLIB_K", "not threading and not sequential and not dask")


def client_python():
    python = os.path.join(VENV, "bin", "python")
    if not VENV or not os.path.exists(python):
        pytest.skip("no clients venv: run `make test-clients` (needs PyPI once)")
    return python


# One line of pytest's -rA summary: the outcome, then the test id, which may
# hold spaces inside its parameter brackets ("test_x[multiprocessing, 0]"),
# then for a failure " - " and the message. SKIPPED lines name a file and
# line ("SKIPPED [1] test_x.py:12: why"), not an id, and do not match.
_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) ([^\s\[]+(?:\[[^\]]*\])?)")


def run_suite(args, alias, cwd, test_timeout, timeout=1800):
    """Run pytest in the clients venv; return ({test id: outcome}, summary
    line, seconds)."""
    env = dict(os.environ)
    env.pop(ALIAS, None)
    env.pop("PYTHONPATH", None)
    if alias:
        env[ALIAS] = "1"
    cmd = [
        client_python(),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--tb=short",
        "-rA",
        "-o",
        "console_output_style=classic",
    ]
    if test_timeout:
        cmd.append("--timeout=%d" % test_timeout)
    cmd += list(args)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - t0
    outcomes = {}
    for line in proc.stdout.splitlines():
        m = _OUTCOME.match(line)
        if m:
            outcomes[m.group(2)] = m.group(1)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
    if not outcomes:
        pytest.fail(
            "the suite did not run (%s):\n%s\n%s"
            % (" ".join(cmd), proc.stdout[-3000:], proc.stderr[-3000:])
        )
    return outcomes, summary, took


def bad(outcome):
    return outcome in ("FAILED", "ERROR")


def compare(args, cwd, test_timeout=None):
    std, std_summary, std_t = run_suite(args, False, cwd, test_timeout)
    gomp, gomp_summary, gomp_t = run_suite(args, True, cwd, test_timeout)
    print("stdlib: %s (%.0f s)\ngomp:   %s (%.0f s)" % (std_summary, std_t, gomp_summary, gomp_t))
    worse = sorted(t for t, o in gomp.items() if bad(o) and not bad(std.get(t, "FAILED")))
    missing = sorted(set(std) - set(gomp))
    if worse:
        # Once more, alone: a timeout under load is not a regression.
        again, summary, _ = run_suite(worse, True, cwd, test_timeout)
        print("rerun of %d: %s" % (len(worse), summary))
        worse = [t for t in worse if bad(again.get(t, "FAILED"))]
    assert not worse, "fail under gomp, pass with the stdlib: %s" % worse
    assert not missing, "not run under gomp: %s" % missing[:20]


def test_joblib_parallel_and_memmapping():
    python = client_python()
    probe = subprocess.run(
        [python, "-c", "import gomp.synchronize as s; print(hasattr(s.SemLock, '_rand'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    if probe.stdout.strip() != "True":
        # loky names its semaphores with multiprocessing.synchronize.SemLock._rand.
        pytest.xfail("needs synchronize.py change: SemLock._rand (issue 15)")
    proc = subprocess.run(
        [python, "-c", "import joblib, os; print(os.path.dirname(joblib.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    )
    # Run from joblib's test directory, so that test ids are relative to it
    # and a rerun finds them.
    files = ["test_parallel.py", "test_memmapping.py"]
    args = ["-k", JOBLIB_K] + files if JOBLIB_K else files
    # A test that hangs (joblib's test_error_capture[multiprocessing] did
    # once, with the stdlib's Pool, on a loaded machine) fails after
    # JOBLIB_TEST_TIMEOUT seconds instead of stopping the run (pytest-timeout;
    # not for pebble, whose suite has its own timeouts and signals).
    compare(args, cwd=os.path.join(proc.stdout.strip(), "test"), test_timeout=JOBLIB_TEST_TIMEOUT)


def test_pebble_suite():
    client_python()
    if not PEBBLE_TESTS or not os.path.isdir(PEBBLE_TESTS):
        pytest.skip("pebble's tests are not unpacked (make test-clients does it)")
    compare([os.path.basename(PEBBLE_TESTS)], cwd=os.path.dirname(PEBBLE_TESTS))
