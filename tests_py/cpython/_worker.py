"""Worker of the CPython suite runner: imports one suite (the driver module of
a start method, or test_multiprocessing_main_handling), and runs its tests
in order from a given index, reporting every phase to the supervisor
(run_suite.py) as JSON lines on a pipe.

The supervisor owns the watchdog: when a phase (a test, or a class or module
fixture) takes too long it sends SIGUSR2 (faulthandler dumps every thread's
stack into this worker's log), kills the worker's process group, records the
phase as failed and starts a new worker from the next test.

This file is also the __main__ of the worker, which spawn children and the
fork server re-import as __mp_main__: everything below the imports runs only
under `if __name__ == '__main__'`."""

import faulthandler
import json
import os
import signal
import sys
import time
import traceback
import unittest

TB_LINES = 30
TB_CHARS = 4000


class Channel:
    """JSON lines to the supervisor. A fork child of the worker inherits the
    fd but never writes: messages are sent only by the worker's pid."""

    def __init__(self, fd):
        self.fd = fd
        self.pid = os.getpid()

    def send(self, **msg):
        if os.getpid() != self.pid:
            return
        data = (json.dumps(msg, default=repr) + '\n').encode('utf-8', 'replace')
        while data:
            n = os.write(self.fd, data)
            data = data[n:]


def short_tb(text):
    lines = text.rstrip('\n').splitlines()
    if len(lines) > TB_LINES:
        lines = lines[:3] + ['    ...'] + lines[-(TB_LINES - 4) :]
    text = '\n'.join(lines)
    if len(text) > TB_CHARS:
        text = text[:600] + '\n    ...\n' + text[-(TB_CHARS - 610) :]
    return text


def format_error(err):
    """The traceback of an exc_info triple, without unittest's frames."""
    exctype, value, tb = err
    while tb is not None and '__unittest' in tb.tb_frame.f_globals:
        tb = tb.tb_next
    return ''.join(traceback.format_exception(exctype, value, tb))


def test_key(test):
    return '%s.%s' % (type(test).__name__, test._testMethodName)


class Reporter(unittest.TestResult):
    """Collects each test's outcome and reports it when the test ends."""

    def __init__(self, channel, support):
        super().__init__()
        self.channel = channel
        self.support = support
        self.current = None

    def _env_altered(self):
        return bool(getattr(self.support, 'environment_altered', False))

    def startTest(self, test):
        super().startTest(test)
        key = test_key(test)
        os.environ['GOMP_SUITE_TEST'] = key
        if self.support is not None:
            self.support.environment_altered = False
        self.current = dict(
            id=key,
            problems=[],
            skip=None,
            started=time.monotonic(),
            success=False,
            expected_failure=False,
        )
        self.channel.send(ev='start', id=key, phase='test')

    def _problem(self, kind, err, test=None):
        text = format_error(err) if err is not None else ''
        if (
            test is not None
            and self.current is not None
            and isinstance(test, unittest.TestCase)
            and test_key(test) != self.current['id']
        ):
            kind = '%s in %s' % (kind, test.id())
        self.current['problems'].append(dict(kind=kind, tb=short_tb(text)))

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.case._SubTest):
            return self._problem('error (subtest %s)' % test._subDescription(), err)
        if self.current is None or not isinstance(test, unittest.TestCase):
            # A fixture (setUpClass, tearDownModule...): test is an _ErrorHolder.
            self.channel.send(
                ev='fixture', outcome='failed', desc=str(test), tb=short_tb(format_error(err))
            )
            return
        self._problem('error', err, test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._problem('failure', err, test)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = 'failure' if issubclass(err[0], test.failureException) else 'error'
            self._problem('%s (subtest %s)' % (kind, subtest._subDescription()), err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if not isinstance(test, unittest.TestCase):
            self.channel.send(ev='fixture', outcome='skipped', desc=str(test), reason=reason)
            return
        if self.current is None:
            # Python 3.12+ reports a test skipped by a decorator without
            # startTest/stopTest.
            self.channel.send(
                ev='end',
                id=test_key(test),
                outcome='skipped',
                reason=reason,
                tb=None,
                duration=0.0,
                env_changed=False,
            )
            return
        self.current['skip'] = reason

    def addSuccess(self, test):
        super().addSuccess(test)
        self.current['success'] = True

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.current['success'] = True
        self.current['expected_failure'] = True

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.current['problems'].append(dict(kind='unexpected success', tb=''))

    def stopTest(self, test):
        super().stopTest(test)
        cur = self.current
        self.current = None
        if cur is None:
            return
        if cur['problems']:
            outcome = 'failed'
        elif cur['skip'] is not None:
            outcome = 'skipped'
        elif cur['success']:
            outcome = 'passed'
        else:
            outcome = 'failed'
            cur['problems'].append(dict(kind='no outcome', tb='the test reported no result'))
        tb = '\n'.join('[%s]\n%s' % (p['kind'], p['tb']) for p in cur['problems'])
        self.channel.send(
            ev='end',
            id=cur['id'],
            outcome=outcome,
            reason=cur['skip'],
            tb=short_tb(tb) if tb else None,
            duration=round(time.monotonic() - cur['started'], 3),
            env_changed=self._env_altered(),
        )
        os.environ['GOMP_SUITE_TEST'] = ''


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def wrap_fixture(channel, owner, name, label, classmethod_=True, support=None):
    """Report the start and end of a fixture to the supervisor, so that a
    hang in it is attributed to it. For a class, the wrapper is set on the
    class itself and calls the inherited fixture function with the real
    class (a parent class may be in the plan too, with its own wrapper)."""
    if classmethod_:
        raw = None
        for klass in owner.__mro__:
            if name in klass.__dict__:
                raw = klass.__dict__[name]
                break
        if not isinstance(raw, classmethod):
            return
        function = raw.__func__
        function = getattr(function, '_gomp_original', function)
    else:
        function = getattr(owner, name, None)
        if function is None:
            return

    def wrapper(*args):
        os.environ['GOMP_SUITE_TEST'] = label
        channel.send(ev='start', id=label, phase=name)
        # The suite's class and module teardowns look for dangling processes
        # and threads and set support.environment_altered if they find any.
        if support is not None:
            support.environment_altered = False
        try:
            return function(*args)
        finally:
            altered = bool(support is not None and getattr(support, 'environment_altered', False))
            channel.send(ev='fixture_end', id=label, env_changed=altered)
            os.environ['GOMP_SUITE_TEST'] = ''

    wrapper._gomp_original = function
    setattr(owner, name, classmethod(wrapper) if classmethod_ else wrapper)


def load_suite(args):
    """Import the suite's module (the driver of a start method, or
    test_multiprocessing_main_handling) and return it."""
    import importlib

    if args.module:
        if args.module_path:
            sys.path.insert(0, args.module_path)
        return importlib.import_module(args.module)
    if args.suite == 'main_handling':
        return importlib.import_module('test.test_multiprocessing_main_handling')
    sys.path.insert(0, args.drivers)
    return importlib.import_module('test_multiprocessing_' + args.suite)


def check_alias(expect_gomp):
    import _multiprocessing
    import multiprocessing

    got = [m.__name__ for m in (multiprocessing, _multiprocessing)]
    is_gomp = got == ['gomp', 'gomp._multiprocessing']
    if is_gomp != expect_gomp:
        return 'multiprocessing is %s (%s), expected %s' % (
            got[0],
            getattr(multiprocessing, '__file__', '?'),
            'gomp' if expect_gomp else 'the stdlib',
        )
    return None


def main():
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument('--suite', required=True)
    p.add_argument('--drivers', required=True)
    p.add_argument('--status-fd', type=int, required=True)
    p.add_argument('--resume', type=int, default=0)
    p.add_argument('--only', default='')
    p.add_argument('--stdlib', action='store_true')
    p.add_argument('--module')
    p.add_argument('--module-path')
    args = p.parse_args()

    channel = Channel(args.status_fd)
    os.set_inheritable(args.status_fd, False)
    # The suite sends itself SIGINT and expects KeyboardInterrupt: undo an
    # ignored SIGINT inherited from the shell (background jobs get one), as
    # an interactive interpreter would have it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.enable(all_threads=True)
    faulthandler.register(signal.SIGUSR2, all_threads=True, chain=False)

    problem = check_alias(not args.stdlib)
    if problem:
        channel.send(ev='fatal', what='alias', message=problem)
        return 3
    os.environ['GOMP_SUITE_TEST'] = 'import'
    try:
        module = load_suite(args)
    except unittest.SkipTest as e:
        channel.send(ev='fatal', what='module skipped', message=str(e))
        return 3
    except BaseException as e:
        channel.send(
            ev='fatal',
            what='import',
            message='the suite failed to import: %s: %s' % (type(e).__name__, e),
            tb=short_tb(traceback.format_exc()),
        )
        return 3
    problem = check_alias(not args.stdlib)
    if problem:
        channel.send(ev='fatal', what='alias', message=problem)
        return 3

    support = None
    try:
        from test import support
    except ImportError:
        pass
    if support is not None:
        # Like regrtest: the suite's waits scale with these; keep the defaults.
        support.verbose = 0

    tests = list(flatten(unittest.TestLoader().loadTestsFromModule(module)))
    ids = [test_key(t) for t in tests]
    channel.send(ev='plan', ids=ids, module=module.__name__, file=getattr(module, '__file__', None))
    if args.only:
        wanted = set(args.only.split(','))
        tests = [t for t in tests if test_key(t) in wanted]
    else:
        tests = tests[args.resume :]

    classes = []
    for t in tests:
        if type(t) not in classes:
            classes.append(type(t))
    for cls in classes:
        wrap_fixture(channel, cls, 'setUpClass', cls.__name__ + '.setUpClass')
        wrap_fixture(
            channel, cls, 'tearDownClass', cls.__name__ + '.tearDownClass', support=support
        )
    wrap_fixture(channel, module, 'setUpModule', 'setUpModule', classmethod_=False)
    wrap_fixture(
        channel, module, 'tearDownModule', 'tearDownModule', classmethod_=False, support=support
    )

    result = Reporter(channel, support)
    unittest.TestSuite(tests).run(result)
    channel.send(ev='done')
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
