"""The resource tracker's exit status, and which atexit handlers a forked
child runs (the host version's rules)."""

import os
import sys
import tempfile

import pytest

import gomp
from gomp import resource_tracker, util


def _tracker_status(register, unregister):
    tracker = resource_tracker.ResourceTracker()
    tracker.ensure_running()
    assert tracker._exitcode is None
    for name, rtype in register:
        tracker.register(name, rtype)
    for name, rtype in unregister:
        tracker.unregister(name, rtype)
    tracker._stop()
    return tracker._exitcode


def test_tracker_exits_0_when_nothing_is_left():
    assert _tracker_status([('/gomp-t1', 'semaphore')], [('/gomp-t1', 'semaphore')]) == 0


def test_tracker_exits_2_when_a_leaked_resource_cannot_be_removed(capfd):
    # No such semaphore: removing it fails, the tracker says so and exits 2.
    assert _tracker_status([('/gomp-no-such-sem-%d' % os.getpid(), 'semaphore')], []) == 2
    assert 'leaked semaphore objects' in capfd.readouterr().err


@pytest.mark.skipif(
    sys.version_info < (3, 13),
    reason="the 'dummy' type and exit code 1 for a removed leak are what 3.13's suite checks",
)
def test_tracker_exits_1_when_it_removed_a_leak(capfd):
    assert _tracker_status([('x', 'dummy')], []) == 1
    assert 'leaked' not in capfd.readouterr().err  # dummy leaks are not reported


def _register_writer(path):
    import atexit

    def write():
        with open(path, 'w') as f:
            f.write('ran')

    atexit.register(write)


def _parent_handler_marker(path):
    with open(path, 'a') as f:
        f.write('parent handler ran in %d\n' % os.getpid())


@pytest.mark.parametrize('method', ['fork', 'forkserver'])
def test_forked_child_atexit_handlers(method):
    import atexit

    ctx = gomp.get_context(method)
    with tempfile.TemporaryDirectory() as d:
        mine, parents = os.path.join(d, 'child'), os.path.join(d, 'parent')
        atexit.register(_parent_handler_marker, parents)
        try:
            p = ctx.Process(target=_register_writer, args=(mine,))
            p.start()
            p.join()
        finally:
            atexit.unregister(_parent_handler_marker)
        assert p.exitcode == 0
        # A forked child never runs its parent's handlers ...
        assert not os.path.exists(parents)
        # ... and runs its own on 3.13+, as the stdlib there does.
        assert os.path.exists(mine) == util._FORKED_CHILD_ATEXIT
        assert util._FORKED_CHILD_ATEXIT == (sys.version_info >= (3, 13))


def test_log_records_name_the_callers_file_on_313():
    import logging

    logger = util.get_logger()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    old = logger.level
    logger.setLevel(util.DEBUG)
    logger.addHandler(handler)
    try:
        util.info('x')
        util.debug('y')
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    want = 'test_tracker_atexit.py' if sys.version_info >= (3, 13) else 'util.py'
    assert [r.filename for r in records] == [want, want]
