"""A unittest module that imports with the stdlib's multiprocessing but not
with gomp, as CPython's suite did while gomp's synchronize was a placeholder:
the runner's tests check that this is a failure of every test, never 0
tests. Not a test of gomp; never collected by pytest."""

import multiprocessing
import unittest

if multiprocessing.__name__ == 'gomp':
    raise NotImplementedError('gomp: this part is not implemented yet')


class Broken(unittest.TestCase):
    def test_a(self):
        pass

    def test_b(self):
        pass
