"""gomp.pool: creating, using, closing and joining Pool(2) over and over
leaves nothing behind: no thread, no descriptor, no mapping of a queue ring,
no child process, and no memory growth above noise.

The cycles run in a fresh interpreter per start method: 30 by default, 1,000
with GOMP_SLOW=1 (GOMP_LEAK_CYCLES=N sets the count).

Measured (tests_py/bench/NOTES.md has the figures): the memory a process gains
over its first few thousand pools is the Go core's heap growing to its first
collection target (about 4 MB, reached after ~10,000 queues, flat afterwards)
and the OS threads of the Go runtime (bounded by GOMAXPROCS); neither grows
with the number of pools, and the bounds below allow for them."""

import os
import subprocess
import sys

import pytest

METHODS = ['fork', 'spawn', 'forkserver']

if os.environ.get('GOMP_LEAK_CYCLES'):
    CYCLES = int(os.environ['GOMP_LEAK_CYCLES'])
elif os.environ.get('GOMP_SLOW'):
    CYCLES = 1000
else:
    CYCLES = 30

SCRIPT = r'''
import gc, os, sys, threading, time
import gomp

def fds():
    out = set()
    for fd in os.listdir('/proc/self/fd'):
        try:
            out.add((int(fd), os.readlink('/proc/self/fd/' + fd)))
        except OSError:
            pass
    return out

def ring_maps():
    with open('/proc/self/maps') as f:
        return sum(1 for line in f if 'gomp-queue' in line)

def rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1])

def children():
    n = 0
    for t in os.listdir('/proc/self/task'):
        with open('/proc/self/task/%s/children' % t) as f:
            n += len(f.read().split())
    return n

def cycle(ctx):
    p = ctx.Pool(2)
    assert p.map(abs, range(-5, 5)) == [abs(x) for x in range(-5, 5)]
    assert p.apply_async(abs, (-1,)).get(60) == 1
    p.close()
    p.join()

def settle(before_fds, before_children):
    # Descriptors of exited workers are released a moment after their
    # join (the reaper thread's copies): wait for that, at most 30 s.
    end = time.monotonic() + 30
    while time.monotonic() < end:
        gc.collect()
        if fds() <= before_fds and children() <= before_children:
            return
        time.sleep(0.05)

if __name__ == '__main__':
    method, n = sys.argv[1], int(sys.argv[2])
    ctx = gomp.get_context(method)
    for _ in range(5):
        cycle(ctx)
    gc.collect()
    time.sleep(0.2)
    gc.collect()
    before = (threading.active_count(), len(os.listdir('/proc/self/task')), fds(),
              ring_maps(), rss_kb(), sys.getallocatedblocks())
    # The resource tracker and the fork server, started by the first pools,
    # stay: only children beyond them count.
    kids = children()
    for _ in range(n):
        cycle(ctx)
    settle(before[2], kids)
    after = (threading.active_count(), len(os.listdir('/proc/self/task')), fds(),
             ring_maps(), rss_kb(), sys.getallocatedblocks())
    print(repr({
        'threads': (before[0], after[0]),
        'tasks': (before[1], after[1]),
        'new_fds': sorted(after[2] - before[2]),
        'ring_maps': (before[3], after[3]),
        'rss_kb': (before[4], after[4]),
        'blocks': (before[5], after[5]),
        'children': children() - kids,
        'names': [t.name for t in threading.enumerate()],
    }))
'''


@pytest.mark.parametrize('method', METHODS)
def test_pool_cycles_leave_nothing(method, tmp_path):
    script = tmp_path / 'cycles.py'
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), method, str(CYCLES)],
        capture_output=True,
        text=True,
        timeout=max(600, CYCLES),  # hang guard
    )
    assert out.returncode == 0, out.stderr
    r = eval(out.stdout.strip().splitlines()[-1])
    print(method, CYCLES, r)
    assert r['threads'][1] == r['threads'][0], r['names']
    assert r['new_fds'] == []
    assert r['ring_maps'][1] <= r['ring_maps'][0]
    assert r['children'] == 0
    # The Go runtime may start an OS thread or two more (bounded).
    assert r['tasks'][1] <= r['tasks'][0] + 4
    # Noise: a few allocator blocks per cycle (caches, interned names); a
    # leaked pool (its engine, queues, threads, results) is hundreds.
    assert r['blocks'][1] - r['blocks'][0] <= 200 + 10 * CYCLES
    # The Go heap's first collection target (~4 MB) and allocator slack.
    assert r['rss_kb'][1] - r['rss_kb'][0] <= 12 * 1024 + 4 * CYCLES
