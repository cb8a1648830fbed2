"""python/gomp is written here: it must not repeat CPython's Lib/multiprocessing.

The check itself is tests_py/tools/provenance_check.py (its docstring says how
it decides). The first test runs it on the package against every CPython found
on the machine; the others prove on a small made-up tree that it catches a
copy, a re-commented and re-wrapped copy, and a copy with a few names
changed, and that it leaves independent code alone."""

import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'tools'))
import provenance_check as pc  # noqa: E402

PACKAGE = os.path.join(os.path.dirname(__file__), '..', 'python', 'gomp')
MAX_STATEMENTS = 25
MAX_RUN_LINES = 8


def test_package_shares_no_cpython_source():
    trees = pc.cpython_trees()
    if not trees:
        pytest.skip('no CPython Lib/multiprocessing on this machine to compare with')
    report = pc.check(PACKAGE, trees)
    total = sum(r[1] for r in report)
    offenders = [
        '%s: %d of %d statements, spans %s'
        % (rel, shared, impl, ['%d-%d' % (src.lines[a][1], src.lines[b][2]) for a, b, _ in spans])
        for rel, shared, impl, spans, src in report
        if shared or spans
    ]
    longest = max((b - a + 1 for r in report for a, b, _ in r[3]), default=0)
    assert total <= MAX_STATEMENTS and longest <= MAX_RUN_LINES, '\n'.join(offenders)


ORIGINAL = '''
    import os

    class Ledger:
        """Upstream's ledger."""

        def __init__(self, owner, limit=10):
            self._owner = owner
            self._limit = limit
            self._entries = []
            self._closed = False

        def add(self, amount, note=None):
            if self._closed:
                raise ValueError('ledger is closed')
            if len(self._entries) >= self._limit:
                raise OverflowError('too many entries for %r' % self._owner)
            entry = (amount, note or '', os.getpid())
            self._entries.append(entry)
            return len(self._entries) - 1

        def total(self):
            result = 0
            for amount, _, _ in self._entries:
                result += amount
            return result

        def close(self):
            self._closed = True
            self._entries = None
'''

# The same code, comments added, a docstring changed and lines re-wrapped.
RECOMMENTED = '''
    import os

    class Ledger:
        """Ours, honestly."""

        def __init__(self, owner, limit=10):
            # who owns it
            self._owner = owner
            self._limit = limit
            self._entries = []
            self._closed = False

        def add(self, amount,
                note=None):
            if self._closed:
                raise ValueError('ledger is closed')
            if len(self._entries) >= self._limit:
                raise OverflowError(
                    'too many entries for %r' % self._owner)
            entry = (amount, note or '', os.getpid())
            self._entries.append(entry)
            return len(self._entries) - 1
'''

# A copy with two names changed throughout: same shape, most names the same.
RENAMED = '''
    import os

    class Book:
        def add(self, amount, note=None):
            if self._shut:
                raise ValueError('book is closed')
            if len(self._entries) >= self._limit:
                raise OverflowError('too many entries for %r' % self._owner)
            entry = (amount, note or '', os.getpid())
            self._entries.append(entry)
            return len(self._entries) - 1
'''

# The same behaviour, written independently.
INDEPENDENT = '''
    import os

    class Ledger:
        def __init__(self, owner, limit=10):
            self._owner, self._limit = owner, limit
            self._entries, self._closed = [], False

        def add(self, amount, note=None):
            self._refuse_if_full()
            self._entries.append((amount, note or '', os.getpid()))
            return len(self._entries) - 1

        def _refuse_if_full(self):
            problem = ('ledger is closed' if self._closed else
                       None if len(self._entries) < self._limit else
                       'too many entries for %r' % (self._owner,))
            if problem:
                raise (ValueError if self._closed else OverflowError)(problem)

        def total(self):
            return sum(entry[0] for entry in self._entries)

        def close(self):
            self._closed, self._entries = True, None
'''


@pytest.fixture
def upstream(tmp_path):
    tree = tmp_path / 'upstream' / 'multiprocessing'
    tree.mkdir(parents=True)
    (tree / 'ledger.py').write_text(textwrap.dedent(ORIGINAL))
    return str(tree)


def _shared(tmp_path, upstream, text):
    pkg = tmp_path / 'pkg'
    pkg.mkdir(exist_ok=True)
    (pkg / 'mod.py').write_text(textwrap.dedent(text))
    [(rel, shared, impl, spans, src)] = pc.check(str(pkg), [upstream])
    return shared, impl, spans


def test_verbatim_copy_is_flagged(tmp_path, upstream):
    shared, impl, spans = _shared(tmp_path, upstream, ORIGINAL)
    assert shared == impl and impl > 10
    assert any(b - a + 1 > MAX_RUN_LINES for a, b, _ in spans)


def test_recommented_and_rewrapped_copy_is_flagged(tmp_path, upstream):
    shared, impl, spans = _shared(tmp_path, upstream, RECOMMENTED)
    assert shared >= 8, (shared, impl)


def test_copy_with_some_names_changed_is_flagged(tmp_path, upstream):
    shared, impl, spans = _shared(tmp_path, upstream, RENAMED)
    assert shared >= 5, (shared, impl)
    assert any('shape' in why for _, _, why in spans)


def test_independent_code_is_not_flagged(tmp_path, upstream):
    shared, impl, spans = _shared(tmp_path, upstream, INDEPENDENT)
    assert impl > 5 and shared == 0 and not spans
