"""Two builds of gomp compared through the same benchmarks, interleaved.

Each benchmark script already runs gomp and the stdlib in alternation and
prints, per case, gomp's ratio to the stdlib. This runs the scripts under two
interpreters, each with its own build of gomp installed (for example a venv
of an older checkout and this tree's .venv), alternating the builds round by
round, and reports per case the median ratio of each build and their
quotient. Comparing ratios rather than times cancels most of the drift of a
shared machine: both builds are measured against the same stdlib, in the
same minutes.

    python tests_py/bench/compare_builds.py --before OLD/.venv/bin/python \\
        --after .venv/bin/python [--rounds 2] [bench_conn.py 'bench_pool.py --quick' ...]

The scripts are this tree's; a case the older build cannot run shows as
missing. after/before above 1 means the newer build does better against the
stdlib than the older one did."""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCRIPTS = [
    'bench_conn.py',
    'bench_queues.py',
    'bench_sync.py',
    'bench_shared.py',
    'bench_process.py',
    'bench_pool.py',
]
# One cell of harness.interleave's output: "gomp 12.3k (best 13.0k) x2.10".
GOMP_CELL = re.compile(r'\bgomp \S+ \(best \S+\) x([0-9.]+)')
# A line of bench_sync/bench_shared: "name  stdlib (best)  gomp (best)  2.10x".
TWO_COLUMNS = re.compile(r'^(.+?)\s+[0-9.]+ \( *[0-9.]+\)\s+[0-9.]+ \( *[0-9.]+\)\s+([0-9.]+)x$')


def run_script(python, script, timeout):
    """{case: gomp/stdlib ratio} from one run of a benchmark script (its
    name, then its arguments if any: 'bench_pool.py --quick')."""
    name, *script_args = script.split()
    try:
        proc = subprocess.run(
            [python, os.path.join(HERE, name), *script_args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd='/tmp',  # not the project root: gomp must come from the venv
        )
    except subprocess.TimeoutExpired:
        print('  %s under %s: timed out' % (script, python), file=sys.stderr)
        return {}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ['?']
        print('  %s under %s failed: %s' % (script, python, tail[0]), file=sys.stderr)
    ratios = {}
    prefix = script[len('bench_') : -len('.py')]
    for line in proc.stdout.splitlines():
        m = GOMP_CELL.search(line)
        if m:
            ratios['%s: %s' % (prefix, line[:34].strip())] = float(m.group(1))
            continue
        m = TWO_COLUMNS.match(line)
        if m:
            ratios['%s: %s' % (prefix, m.group(1).strip())] = float(m.group(2))
    return ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--before', required=True, help='python with the older build installed')
    ap.add_argument('--after', required=True, help='python with the newer build installed')
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--timeout', type=float, default=1800, help='seconds per script run')
    ap.add_argument('scripts', nargs='*', default=DEFAULT_SCRIPTS)
    args = ap.parse_args()

    builds = {'before': args.before, 'after': args.after}
    seen = {}  # case -> {build: [ratios]}, in the order the cases appear
    t0 = time.monotonic()
    for r in range(args.rounds):
        for script in args.scripts:
            order = ['before', 'after'] if r % 2 == 0 else ['after', 'before']
            for build in order:
                print(
                    '[%5.0f s] round %d, %s, %s' % (time.monotonic() - t0, r + 1, script, build),
                    file=sys.stderr,
                    flush=True,
                )
                for case, ratio in run_script(builds[build], script, args.timeout).items():
                    seen.setdefault(case, {'before': [], 'after': []})[build].append(ratio)

    print('gomp/stdlib ratio per case (median of %d rounds; above 1: gomp better)' % args.rounds)
    print('%-48s %8s %8s %12s' % ('case', 'before', 'after', 'after/before'))
    for case, by_build in seen.items():
        cells = []
        med = {}
        for build in ('before', 'after'):
            values = by_build[build]
            med[build] = statistics.median(values) if values else None
            cells.append('%8.2f' % med[build] if values else '%8s' % '-')
        quotient = '%12.2f' % (med['after'] / med['before']) if None not in med.values() else ''
        print('%-48s %s %s' % (case[:48], ' '.join(cells), quotient))


if __name__ == '__main__':
    main()
