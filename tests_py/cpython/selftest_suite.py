"""A small unittest module that the runner's own tests (tests_py/
test_suite_runner.py) run as a suite: every kind of outcome the runner must
record, a hang and a crash for the watchdog, failing and hanging class
fixtures, and interpreters that escape the alias in each way the alias check
must detect. Not a test of gomp; never collected by pytest."""

import os
import subprocess
import sys
import time
import unittest


def run_child(code, *flags, **kwargs):
    return subprocess.run(
        [sys.executable, *flags, '-c', code], capture_output=True, text=True, timeout=60, **kwargs
    )


def real_home_env():
    """Our environment with PYTHONHOME set to the real installation behind the
    run's interpreter (its stdlib directory is a symlink to the real one):
    a -S interpreter started with it has no shim on its path."""
    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    return dict(os.environ, PYTHONHOME=os.path.dirname(os.path.dirname(stdlib)))


def _report_name(conn):
    import multiprocessing

    conn.send(multiprocessing.__name__)


class A_Outcomes(unittest.TestCase):
    def test_1_pass(self):
        import multiprocessing

        self.assertEqual(multiprocessing.__name__, 'gomp')

    def test_2_fail(self):
        self.assertEqual(1, 2)

    def test_3_error(self):
        raise RuntimeError('boom')

    def test_4_skip(self):
        self.skipTest('not here')

    def test_5_subtest(self):
        for i in range(2):
            with self.subTest(i=i):
                self.assertEqual(i, 0)

    def test_6_hang(self):
        time.sleep(3600)

    def test_7_crash(self):
        os.abort()

    def test_8_after(self):
        pass


class B_SetUpClassFails(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise RuntimeError('class setup failed')

    def test_one(self):
        pass

    def test_two(self):
        pass


class C_SetUpClassHangs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        time.sleep(3600)

    def test_one(self):
        pass


class D_TearDownClassFails(unittest.TestCase):
    @classmethod
    def tearDownClass(cls):
        raise RuntimeError('teardown failed')

    def test_one(self):
        pass


class E_Alias(unittest.TestCase):
    def test_spawn_child_gets_gomp(self):
        import multiprocessing

        ctx = multiprocessing.get_context('spawn')
        a, b = ctx.Pipe()
        p = ctx.Process(target=_report_name, args=(b,))
        p.start()
        self.assertEqual(a.recv(), 'gomp')
        p.join()

    def test_dash_S_in_the_shim_directory_gets_gomp(self):
        out = run_child('import multiprocessing; print(multiprocessing.__name__)', '-E', '-S')
        self.assertEqual(out.stdout.split(), ['gomp'], out.stderr)

    def test_dash_I_gets_gomp(self):
        out = run_child('import multiprocessing; print(multiprocessing.__name__)', '-I')
        self.assertEqual(out.stdout.split(), ['gomp'], out.stderr)

    def test_dash_S_elsewhere_gets_gomp(self):
        # Through the shims in the zip of the run's interpreter's home.
        out = run_child('import multiprocessing; print(multiprocessing.__name__)', '-S', cwd='/')
        self.assertEqual(out.stdout.split(), ['gomp'], out.stderr)

    def test_escape_dash_S_other_home(self):
        run_child('import multiprocessing', '-S', cwd='/', env=real_home_env())

    def test_escape_clean_environment(self):
        run_child('import multiprocessing', env={})

    def test_escape_alias_removed(self):
        run_child(
            "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if type(f).__module__ != 'gomp._alias']; import multiprocessing"
        )

    def test_escape_shell_command(self):
        os.system('%s -S -c "import multiprocessing"' % sys.executable)

    def test_harmless_unreached_launch(self):
        run_child('pass', '-S', cwd='/', env=real_home_env())


class F_Env(unittest.TestCase):
    """Leaves the environment altered as the suite's own checks report it:
    test.support.environment_altered, set by a test and by a class teardown
    (where _test_multiprocessing looks for dangling processes and threads)."""

    @classmethod
    def tearDownClass(cls):
        from test import support

        support.environment_altered = True

    def test_alters_environment(self):
        from test import support

        support.environment_altered = True
