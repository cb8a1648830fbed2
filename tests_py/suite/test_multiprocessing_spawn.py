# Driver of CPython's multiprocessing suite against gomp, start method spawn
# (CPython ships such 3-line drivers; 3.11.7 here lacks them). Spawned and
# forkserver children import this module again by name.
import os

import gomp
gomp.install()

if os.environ.get('GOMP_SUITE_SHIMS', '') not in ('', '0'):
    import _suite_shims
    _suite_shims.install()

import test._test_multiprocessing

test._test_multiprocessing.install_tests_in_module_dict(globals(), 'spawn')
