"""Shared helpers of gomp's own tests.

The tests import the installed gomp (make install puts it into the venv);
the source tree's python/ directory is not on sys.path."""

import contextlib
import importlib
import os
import signal
import struct
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Seconds a test waits for something that must happen before it calls it a
# hang. Tests assert what happened, never how fast: a generous watchdog only
# turns a hang into a failure (speed is for tests_py/bench/).
HANG_GUARD = 60

ALIAS_VAR = "GOMP_AS_MULTIPROCESSING"


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (for example the >2 GiB message)",
    )


def alias_in_effect():
    """Why `multiprocessing` would mean gomp in this process or in the
    interpreters the tests start with its environment; None if it would not."""
    value = os.environ.get(ALIAS_VAR, "")
    if value not in ("", "0"):  # what gomp.pth reads at interpreter start
        return "%s=%s is set in the environment" % (ALIAS_VAR, value)
    alias = sys.modules.get("gomp._alias")
    if alias is not None and alias.installed():
        return "gomp.install() has aliased multiprocessing in this process"
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.__name__ != "multiprocessing":
        return "sys.modules['multiprocessing'] is %s" % mp.__name__
    return None


def pytest_configure(config):
    # gomp's tests compare it with the standard library in this process and
    # in children that inherit its environment. Under the alias the "stdlib"
    # side would be gomp again and every comparison would pass against
    # itself: refuse to run instead. (Tests that want the alias set it in
    # their own subprocesses.)
    why = alias_in_effect()
    if why:
        raise pytest.UsageError(
            "gomp's tests must run without the multiprocessing alias (%s): the stdlib peers "
            "they compare with would be gomp itself. Run them with the variable removed, e.g. "
            "`env -u %s make test`." % (why, ALIAS_VAR)
        )
    # A shell runs background commands with SIGINT ignored, and a Python that
    # starts with SIGINT ignored installs no KeyboardInterrupt handler; nor do
    # the children it starts (an ignored signal stays ignored across exec).
    # The Ctrl-C tests need the ordinary disposition, whoever launched us.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers", "slow: needs minutes or many GiB; run with --run-slow or GOMP_RUN_SLOW=1"
    )
    config.addinivalue_line(
        "markers",
        "clients: third-party suites (joblib, pebble) in their own "
        "venv (make test-clients); deselect with -m 'not clients'",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("GOMP_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: run with --run-slow or GOMP_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def stdlib_peer(name):
    """The standard library's module `name` (multiprocessing or one of its
    submodules), imported in this process as the other side of an interop
    comparison. Fails if the alias (or anything else) put gomp or some other
    module in its place, so that gomp is never compared with itself."""
    module = importlib.import_module(name)
    where = os.path.realpath(getattr(module, "__file__", None) or "?")
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    parts = where.split(os.sep)
    if (
        module.__name__ != name
        or not where.startswith(stdlib + os.sep)
        or "site-packages" in parts
        or "dist-packages" in parts
    ):
        raise AssertionError(
            "the stdlib peer %s is not the standard library's: it is %s from %s"
            % (name, module.__name__, where)
        )
    return module


def wait_until(predicate, what, timeout=HANG_GUARD, interval=0.01):
    """Poll predicate() until it returns something true and return that; if it
    is still false after `timeout` seconds (a hang guard, not a speed claim),
    fail the test saying what never happened (`what`: a string, or a function
    that makes one then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(
                "hung: %s (still not the case after %s s)"
                % (what() if callable(what) else what, timeout)
            )
        time.sleep(interval)


class Background:
    """Runs fn(*args, **kwargs) in a daemon thread from now on. result()
    returns its value or re-raises its exception, exception() returns the
    exception (None if it returned); both fail the test as hung if fn is
    still running after `hang_guard` seconds."""

    def __init__(self, fn, *args, what=None, hang_guard=HANG_GUARD, **kwargs):
        self.value = self.error = None
        self.what = what or getattr(fn, "__qualname__", fn)
        self.hang_guard = hang_guard

        def run():
            try:
                self.value = fn(*args, **kwargs)
            except BaseException as e:  # handed to the test's thread
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def exception(self):
        self.thread.join(self.hang_guard)
        if self.thread.is_alive():
            pytest.fail("hung: %s still running after %s s" % (self.what, self.hang_guard))
        return self.error

    def result(self):
        if self.exception() is not None:
            raise self.error
        return self.value


def returns(fn, *args, what=None, hang_guard=HANG_GUARD, **kwargs):
    """Call fn(*args, **kwargs) in a daemon thread and return its result (or
    raise its exception). A call still running after `hang_guard` seconds
    fails the test as hung: the way to check that a call returns rather than
    blocks, without asserting how fast it does."""
    return Background(fn, *args, what=what, hang_guard=hang_guard, **kwargs).result()


def run_python(code, *args, timeout=60, env=None, check=True, cwd=None):
    """Run code (dedented) in a fresh interpreter of this venv; return the
    CompletedProcess with text output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or HERE,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            "child failed (%d):\nstdout:\n%s\nstderr:\n%s"
            % (proc.returncode, proc.stdout, proc.stderr)
        )
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


def read_frame(sock):
    """One frame of the connection wire format (a 4-byte big-endian signed
    length, then the payload) read from a raw socket; EOFError at its end."""

    def exactly(n):
        data = b''
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    (n,) = struct.unpack('!i', exactly(4))
    return exactly(n)
