#!/usr/bin/env python3
"""Does python/gomp repeat CPython's Lib/multiprocessing? The project's own check.

    provenance_check.py [--package DIR] [--max-statements N] [--max-run-lines N] [--show]

gomp's Python layer is written here; CPython's multiprocessing is read for
behaviour, never copied. This script finds code that both trees contain, so
that `make test` fails the day a copy creeps back in.

How it decides
--------------
Every file is reduced to its significant tokens: comments, blank lines,
indentation and docstrings are dropped, so rewording a comment or re-wrapping
a line changes nothing. Three kinds of evidence mark package lines as shared:

* lines: 6 or more consecutive logical lines that are identical, token for
  token, to consecutive logical lines of a CPython module;
* tokens: a window of 40 consecutive tokens that also occurs in CPython;
* shape: a window of 40 consecutive tokens that occurs in CPython once every
  name, string and number is replaced by a placeholder, and in which at least
  60% of the names are nevertheless the same (a renamed copy, not merely
  code of the same common shape such as a run of assignments).

Windows are found with a rolling hash over token ids (one pass per file, no
quadratic comparison), and every hash hit is confirmed on the tokens.

A shared logical line is an *implementation statement* unless it is an
import, a ``def``/``class`` header or decorator, a bare keyword line
(``else:``, ``try:``, ``pass``, ``return``, ...), or a module-level
assignment of a constant: those are facts a compatible module must repeat.
The check fails when more than --max-statements implementation statements
are shared, or when one shared run spans more than --max-run-lines logical
lines of the package.

Which CPython trees
-------------------
Lib/multiprocessing of every interpreter that can be found: pyenv's versions,
/usr/lib/python3.*, /usr/local/lib/python3.*, the running interpreter's own
standard library, and the Debian-unstable chroot with 3.14/3.15 when present
($GOMP_SID_ROOT, default /opt/gomp-sid). Identical files are read once.
"""

import argparse
import glob
import hashlib
import io
import keyword
import os
import sys
import sysconfig
import tokenize

WINDOW = 40  # tokens in a token or shape window
LINE_RUN = 6  # identical logical lines that count as a run
SAME_NAMES = 0.6  # share of identical names a shape match needs
_KEEP = frozenset(keyword.kwlist) | {'self', 'cls'}
_SKIP_TYPES = frozenset(
    (
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
        tokenize.INDENT,
        tokenize.DEDENT,
    )
)
_BARE = frozenset(('else', 'try', 'finally', 'pass', 'return', 'break', 'continue', 'except'))

_MOD = (1 << 61) - 1
_BASE = 1_000_003


class Source:
    """One file as significant tokens grouped into logical lines.

    tokens[i] = (exact, masked, is_name, line_index); lines[k] = (text,
    first_physical_line, last_physical_line, kind) where kind is 'fact' or
    'impl'."""

    def __init__(self, path):
        self.path = path
        with open(path, encoding='utf-8') as f:
            text = f.read()
        self.tokens = []
        self.lines = []
        self._read(text)

    def _read(self, text):
        current = []  # tokens of the logical line being read
        depth_at_start = 0  # indentation depth where it starts
        depth = 0
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.INDENT:
                depth += 1
            elif tok.type == tokenize.DEDENT:
                depth -= 1
            if tok.type in _SKIP_TYPES:
                continue
            if tok.type == tokenize.NEWLINE:
                if current:
                    self._close_line(current, depth_at_start)
                current = []
                continue
            if not current:
                depth_at_start = depth
            current.append(tok)
        if current:
            self._close_line(current, depth_at_start)

    def _close_line(self, toks, depth):
        if toks[0].type == tokenize.STRING and all(t.type == tokenize.STRING for t in toks):
            return  # a docstring or a bare string statement: documentation
        index = len(self.lines)
        for t in toks:
            if t.type == tokenize.NAME and t.string not in _KEEP:
                masked, is_name = '<n>', True
            elif t.type == tokenize.STRING:
                masked, is_name = '<s>', False
            elif t.type == tokenize.NUMBER:
                masked, is_name = '<0>', False
            else:
                masked, is_name = t.string, False
            self.tokens.append((t.string, masked, is_name, index))
        text = ' '.join(t.string for t in toks)
        self.lines.append((text, toks[0].start[0], toks[-1].end[0], _kind(toks, depth)))


def _kind(toks, depth):
    first = toks[0].string
    if first in ('import', 'from', 'def', 'class', 'async', '@'):
        return 'fact'
    if first in _BARE and len(toks) <= 2:
        return 'fact'  # `else:`, `pass`, `return`, `except:`
    if depth == 0 and first == '__all__':
        return 'fact'
    if (
        depth == 0
        and len(toks) >= 3
        and toks[1].string == '='
        and all(
            t.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING, tokenize.OP)
            and t.string not in ('(', 'lambda')
            for t in toks[2:]
        )
    ):
        return 'fact'  # NAME = constant expression at module level
    return 'impl'


class Ids:
    """Small integers for token strings, shared by every file."""

    def __init__(self):
        self._ids = {}

    def __call__(self, s):
        return self._ids.setdefault(s, len(self._ids) + 1)


def window_hashes(values, width):
    """Rolling polynomial hash of every window of `width` values: {hash: [start, ...]}"""
    out = {}
    if len(values) < width:
        return out
    top = pow(_BASE, width - 1, _MOD)
    h = 0
    for v in values[:width]:
        h = (h * _BASE + v) % _MOD
    out.setdefault(h, []).append(0)
    for i in range(width, len(values)):
        h = ((h - values[i - width] * top) * _BASE + values[i]) % _MOD
        out.setdefault(h, []).append(i - width + 1)
    return out


class Corpus:
    """Every CPython multiprocessing file, indexed by window and line hashes."""

    def __init__(self, files, ids):
        self.sources = [Source(p) for p in files]
        self.ids = ids
        self.exact = {}  # window hash -> [(source, start)]
        self.shape = {}
        self.line_seqs = {}  # hash of LINE_RUN consecutive line texts -> [(source, first line)]
        for n, src in enumerate(self.sources):
            for h, starts in window_hashes([ids(t[0]) for t in src.tokens], WINDOW).items():
                self.exact.setdefault(h, []).extend((n, s) for s in starts)
            for h, starts in window_hashes([ids(t[1]) for t in src.tokens], WINDOW).items():
                self.shape.setdefault(h, []).extend((n, s) for s in starts)
            texts = [ln[0] for ln in src.lines]
            for k in range(len(texts) - LINE_RUN + 1):
                self.line_seqs.setdefault(hash(tuple(texts[k : k + LINE_RUN])), []).append((n, k))


def shared_lines(src, corpus):
    """Indices of the logical lines of `src` that some evidence marks shared,
    and the runs that did it: [(first_line_index, last_line_index, why)]."""
    ids = corpus.ids
    runs = []
    exact_vals = [ids(t[0]) for t in src.tokens]
    for h, starts in window_hashes(exact_vals, WINDOW).items():
        for where in corpus.exact.get(h, ()):
            other = corpus.sources[where[0]].tokens
            for s in starts:
                if [t[0] for t in src.tokens[s : s + WINDOW]] == [
                    t[0] for t in other[where[1] : where[1] + WINDOW]
                ]:
                    runs.append((src.tokens[s][3], src.tokens[s + WINDOW - 1][3], 'tokens'))
    shape_vals = [ids(t[1]) for t in src.tokens]
    for h, starts in window_hashes(shape_vals, WINDOW).items():
        for where in corpus.shape.get(h, ()):
            other = corpus.sources[where[0]].tokens[where[1] : where[1] + WINDOW]
            for s in starts:
                mine = src.tokens[s : s + WINDOW]
                if [t[1] for t in mine] != [t[1] for t in other]:
                    continue
                names = [(a[0], b[0]) for a, b in zip(mine, other) if a[2]]
                if (
                    names
                    and sum(a == b for a, b in names) >= SAME_NAMES * len(names)
                    and _one_to_one(names)
                ):
                    runs.append((mine[0][3], mine[-1][3], 'shape'))
    texts = [ln[0] for ln in src.lines]
    for k in range(len(texts) - LINE_RUN + 1):
        for n, j in corpus.line_seqs.get(hash(tuple(texts[k : k + LINE_RUN])), ()):
            other = [ln[0] for ln in corpus.sources[n].lines[j : j + LINE_RUN]]
            if other == texts[k : k + LINE_RUN]:
                runs.append((k, k + LINE_RUN - 1, 'lines'))
    covered = set()
    for a, b, _ in runs:
        covered.update(range(a, b + 1))
    return covered, _merge(runs)


def _one_to_one(pairs):
    forward, backward = {}, {}
    for a, b in pairs:
        if forward.setdefault(a, b) != b or backward.setdefault(b, a) != a:
            return False
    return True


def _merge(runs):
    """Overlapping or touching runs as maximal spans of logical lines."""
    spans = []
    for a, b, why in sorted(runs):
        if spans and a <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(b, spans[-1][1]), spans[-1][2] | {why})
        else:
            spans.append((a, b, {why}))
    return spans


def cpython_trees():
    """Lib/multiprocessing directories of the CPythons on this machine."""
    sid = os.environ.get('GOMP_SID_ROOT', '/opt/gomp-sid')
    patterns = [
        os.path.expanduser('~/.pyenv/versions/*/lib/python3.*/multiprocessing'),
        '/usr/lib/python3.*/multiprocessing',
        '/usr/local/lib/python3.*/multiprocessing',
        sid + '/usr/lib/python3.*/multiprocessing',
        os.path.join(sysconfig.get_paths()['stdlib'], 'multiprocessing'),
    ]
    found = {}
    for pattern in patterns:
        for d in glob.glob(pattern):
            if os.path.isfile(os.path.join(d, 'process.py')):
                found.setdefault(os.path.realpath(d), d)
    return sorted(found.values())


def cpython_files(trees):
    """Each distinct .py file of the trees once (by content)."""
    seen, files = set(), []
    for tree in trees:
        for root, _, names in os.walk(tree):
            for name in sorted(names):
                if name.endswith('.py'):
                    path = os.path.join(root, name)
                    with open(path, 'rb') as f:
                        digest = hashlib.sha256(f.read()).digest()
                    if digest not in seen:
                        seen.add(digest)
                        files.append(path)
    return files


def package_files(package):
    out = []
    for root, _, names in os.walk(package):
        out.extend(os.path.join(root, n) for n in sorted(names) if n.endswith('.py'))
    return sorted(out)


def check(package, trees=None):
    """-> list of (relative path, shared impl statements, impl statements, spans, source)"""
    trees = cpython_trees() if trees is None else trees
    ids = Ids()
    corpus = Corpus(cpython_files(trees), ids)
    report = []
    for path in package_files(package):
        src = Source(path)
        covered, spans = shared_lines(src, corpus)
        impl = [k for k, ln in enumerate(src.lines) if ln[3] == 'impl']
        shared = [k for k in impl if k in covered]
        report.append((os.path.relpath(path, package), len(shared), len(impl), spans, src))
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument(
        '--package', default=os.path.join(os.path.dirname(__file__), '..', '..', 'python', 'gomp')
    )
    p.add_argument('--max-statements', type=int, default=25)
    p.add_argument('--max-run-lines', type=int, default=8)
    p.add_argument('--show', action='store_true', help='print every shared span')
    args = p.parse_args(argv)
    trees = cpython_trees()
    if not trees:
        print('provenance: no CPython Lib/multiprocessing found on this machine')
        return 2
    report = check(args.package, trees)
    total = sum(r[1] for r in report)
    longest = 0
    print('compared with %d trees: %s' % (len(trees), ', '.join(trees)))
    print('%-24s %8s %8s %8s' % ('file', 'shared', 'of', 'longest'))
    for rel, shared, impl, spans, src in report:
        run = max((b - a + 1 for a, b, _ in spans), default=0)
        longest = max(longest, run)
        if shared or run:
            print('%-24s %8d %8d %8d' % (rel, shared, impl, run))
        if args.show:
            for a, b, why in spans:
                print(
                    '    %s:%d-%d (%d logical lines; %s)'
                    % (rel, src.lines[a][1], src.lines[b][2], b - a + 1, '+'.join(sorted(why)))
                )
    print(
        'TOTAL shared implementation statements: %d (allowed %d); longest shared run: %d '
        'logical lines (allowed %d)' % (total, args.max_statements, longest, args.max_run_lines)
    )
    return 0 if total <= args.max_statements and longest <= args.max_run_lines else 1


if __name__ == '__main__':
    sys.exit(main())
