"""The guards of the test suite itself (conftest.py): no run under the
multiprocessing alias, stdlib peers that really are the standard library's,
and hang guards that fail instead of blocking the run."""

import os
import subprocess
import sys
import threading

import pytest

import gomp
from conftest import ALIAS_VAR, HERE, returns, stdlib_peer, wait_until


def run_pytest(*args, **env):
    """This suite's pytest in a fresh interpreter with env changed (None: removed)."""
    full = dict(os.environ)
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
        cwd=HERE,
    )


# ---- no run under the alias -----------------------------------------------------------------


def test_pytest_refuses_to_run_under_the_alias():
    # With the variable on, gomp.pth aliases multiprocessing in the pytest
    # process: not a single test runs, and the message says why.
    proc = run_pytest("--collect-only", "test_timing_guards.py", **{ALIAS_VAR: "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "without the multiprocessing alias" in out and ALIAS_VAR in out, out
    assert "test_pytest_refuses_to_run_under_the_alias" not in proc.stdout


@pytest.mark.parametrize("value", [None, "", "0"])
def test_pytest_runs_with_the_alias_off(value):
    proc = run_pytest("--collect-only", "test_timing_guards.py", **{ALIAS_VAR: value})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_pytest_refuses_to_run_under_the_alias" in proc.stdout


# ---- stdlib peers ---------------------------------------------------------------------------


def test_stdlib_peer_is_the_standard_library():
    for name in ("multiprocessing", "multiprocessing.connection", "multiprocessing.util"):
        module = stdlib_peer(name)
        assert module.__name__ == name and "gomp" not in module.__file__


def test_stdlib_peer_refuses_gomp_in_its_place(monkeypatch):
    # What the alias does to sys.modules, in this process only for the test.
    monkeypatch.setitem(sys.modules, "multiprocessing.util", gomp.util)
    with pytest.raises(AssertionError, match="not the standard library's: it is gomp.util"):
        stdlib_peer("multiprocessing.util")


def test_stdlib_peer_refuses_the_alias_of_a_fresh_interpreter():
    code = (
        "import conftest\n"
        "try:\n"
        "    conftest.stdlib_peer('multiprocessing.connection')\n"
        "except AssertionError as e:\n"
        "    print('refused:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,
        env=dict(os.environ, **{ALIAS_VAR: "1"}),
    )
    assert out.stdout.startswith("refused:") and "gomp.connection" in out.stdout, out


# ---- hang guards ----------------------------------------------------------------------------


def test_returns_gives_the_result_or_the_exception():
    assert returns(sorted, [3, 1, 2]) == [1, 2, 3]
    with pytest.raises(ZeroDivisionError):
        returns(lambda: 1 / 0)


def test_returns_fails_a_call_that_hangs():
    never = threading.Event()
    with pytest.raises(pytest.fail.Exception, match="hung: waiting forever still running"):
        returns(never.wait, what="waiting forever", hang_guard=0.1)
    never.set()


def test_wait_until_returns_the_value_or_fails():
    assert wait_until(lambda: 42, "the answer") == 42
    with pytest.raises(pytest.fail.Exception, match="hung: never true"):
        wait_until(lambda: False, "never true", timeout=0.1)
    with pytest.raises(pytest.fail.Exception, match="hung: said when it failed"):
        wait_until(lambda: False, lambda: "said when it failed", timeout=0.1)
