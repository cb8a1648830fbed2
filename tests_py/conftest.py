"""Shared helpers of gomp's own tests.

The tests import the installed gomp (make install puts it into the venv);
the source tree's python/ directory is not on sys.path."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (for example the >2 GiB message)")


def pytest_configure(config):
    # A shell runs background commands with SIGINT ignored, and a Python that
    # starts with SIGINT ignored installs no KeyboardInterrupt handler; nor do
    # the children it starts (an ignored signal stays ignored across exec).
    # The Ctrl-C tests need the ordinary disposition, whoever launched us.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "slow: needs minutes or many GiB; run with --run-slow "
                                       "or GOMP_RUN_SLOW=1")
    config.addinivalue_line("markers", "clients: third-party suites (joblib, pebble) in their own "
                                       "venv (make test-clients); deselect with -m 'not clients'")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("GOMP_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: run with --run-slow or GOMP_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def run_python(code, *args, timeout=60, env=None, check=True, cwd=None):
    """Run code (dedented) in a fresh interpreter of this venv; return the
    CompletedProcess with text output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or HERE)
    if check and proc.returncode != 0:
        raise AssertionError("child failed (%d):\nstdout:\n%s\nstderr:\n%s"
                             % (proc.returncode, proc.stdout, proc.stderr))
    return proc


@pytest.fixture
def tracker():
    """A resource tracker of the test's own, running, stopped afterwards."""
    from gomp.resource_tracker import ResourceTracker
    t = ResourceTracker()
    t.ensure_running()
    yield t
    t._stop()


@contextlib.contextmanager
def held_by_another_thread(lock):
    """`lock` held by a thread of this process for the duration of the block."""
    held, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            done.wait()
    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    try:
        yield
    finally:
        done.set()
        thread.join()
