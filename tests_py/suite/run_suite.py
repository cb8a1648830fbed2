"""Run classes of CPython's multiprocessing test suite against gomp, one
interpreter per start method, and print a summary per class.

    python tests_py/suite/run_suite.py [--methods fork,spawn,forkserver]
        [--classes WithProcessesTestLock,...] [--shims] [-v]

By default it runs the synchronization classes (issue 5). --shims installs
the test-only stand-ins of _suite_shims.py for parts of gomp that are still
placeholders (heap.BufferWrapper, sharedctypes.Value, queues.Queue); the
summary says which were used. Exit status 1 if anything failed."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

# The driver module of one start method, as CPython's 3-line
# test_multiprocessing_<method>.py files (3.11.7 here lacks them). The suite
# pickles its test classes by reference to this module, so spawned and
# forkserver children import it again by name: it is written into a
# directory on sys.path (not into the source tree, where pytest would collect
# it).
DRIVER = """\
import os
import gomp
gomp.install()
if os.environ.get('GOMP_SUITE_SHIMS', '') not in ('', '0'):
    import _suite_shims
    _suite_shims.install()
import test._test_multiprocessing
test._test_multiprocessing.install_tests_in_module_dict(globals(), %r)
"""

SYNC_CLASSES = [
    'WithProcessesTestLock', 'WithThreadsTestLock',
    'WithProcessesTestSemaphore', 'WithThreadsTestSemaphore',
    'WithProcessesTestCondition', 'WithThreadsTestCondition',
    'WithProcessesTestEvent', 'WithThreadsTestEvent',
    'WithProcessesTestBarrier', 'WithThreadsTestBarrier',
    'SemLockTests',
]


class _Result(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.outcomes = []  # (test id, outcome, detail)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes.append((test.id(), 'passed', ''))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes.append((test.id(), 'failed', self._exc_info_to_string(err, test)))

    def addError(self, test, err):
        super().addError(test, err)
        self.outcomes.append((getattr(test, 'id', lambda: str(test))(), 'error',
                              self._exc_info_to_string(err, test)))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self.outcomes.append((test.id(), 'subtest ' + ('failed' if failed else 'error'),
                                  '%s: %s' % (subtest, self._exc_info_to_string(err, test))))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcomes.append((test.id(), 'skipped', reason))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.outcomes.append((test.id(), 'xfail', ''))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.outcomes.append((test.id(), 'failed', 'unexpected success'))


def child(method, classes, verbosity, out, driver_dir):
    sys.path[:0] = [driver_dir, HERE]
    mod = __import__('test_multiprocessing_' + method)
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for name in classes:
        suite.addTests(loader.loadTestsFromTestCase(getattr(mod, name)))
    runner = unittest.TextTestRunner(verbosity=verbosity, resultclass=_Result)
    result = runner.run(suite)
    shims = []
    if '_suite_shims' in sys.modules:
        shims = sys.modules['_suite_shims'].installed()
    with open(out, 'w') as f:
        json.dump({'outcomes': result.outcomes, 'shims': shims}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--methods', default='fork,spawn,forkserver')
    ap.add_argument('--classes', default=','.join(SYNC_CLASSES))
    ap.add_argument('--shims', action='store_true')
    ap.add_argument('--timeout', type=float, default=900)
    ap.add_argument('-v', action='count', default=0)
    ap.add_argument('--child', help=argparse.SUPPRESS)
    ap.add_argument('--out', help=argparse.SUPPRESS)
    ap.add_argument('--driver-dir', help=argparse.SUPPRESS)
    args = ap.parse_args()
    classes = [c for c in args.classes.split(',') if c]
    if args.child:
        return child(args.child, classes, 1 + args.v, args.out, args.driver_dir)

    env = dict(os.environ)
    if args.shims:
        env['GOMP_SUITE_SHIMS'] = '1'
    failed = False
    tmp = tempfile.TemporaryDirectory(prefix='gomp-suite-')
    for method in args.methods.split(','):
        with open(os.path.join(tmp.name, 'test_multiprocessing_%s.py' % method), 'w') as f:
            f.write(DRIVER % method)
        out = os.path.join(tmp.name, 'result-%s.json' % method)
        t0 = time.monotonic()
        cmd = [sys.executable, os.path.abspath(__file__), '--child', method,
               '--classes', ','.join(classes), '--out', out, '--driver-dir', tmp.name]
        cmd += ['-v'] * args.v
        try:
            rc = subprocess.run(cmd, env=env, cwd=tmp.name, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            print('== %s: TIMED OUT after %.0f s' % (method, args.timeout))
            failed = True
            continue
        dt = time.monotonic() - t0
        try:
            with open(out) as f:
                data = json.load(f)
            os.unlink(out)
        except OSError:
            print('== %s: runner died (exit %s) without results' % (method, rc))
            failed = True
            continue
        per_class = {}
        for tid, outcome, detail in data['outcomes']:
            cls = tid.split('.')[-2] if tid.count('.') >= 2 else tid
            per_class.setdefault(cls, {}).setdefault(outcome, []).append((tid, detail))
        total = {}
        print('== %s (%.1f s)%s' % (method, dt, ('  shims: ' + ', '.join(data['shims']))
                                    if data['shims'] else ''))
        for cls in sorted(per_class):
            counts = {k: len(v) for k, v in per_class[cls].items()}
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
            print('   %-32s %s' % (cls, ' '.join('%s=%d' % kv for kv in sorted(counts.items()))))
            for outcome in ('failed', 'error', 'subtest failed', 'subtest error'):
                for tid, _ in per_class[cls].get(outcome, ()):
                    print('      %s: %s' % (outcome.upper(), tid.split('.')[-1]))
        print('   total: %s' % ' '.join('%s=%d' % kv for kv in sorted(total.items())))
        if any(total.get(k) for k in ('failed', 'error', 'subtest failed', 'subtest error')) \
                or rc not in (0, 1):
            failed = True
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
