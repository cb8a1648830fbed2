"""A program that started fork children leaves nothing open behind it: no
ResourceWarning at exit under -X dev with warnings as errors (issue 15)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import HANG_GUARD

SCRIPT = """
import gomp
def noop():
    pass
if __name__ == "__main__":
    ctx = gomp.get_context("fork")
    for _ in range(2):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    assert p.exitcode == 0
    print("done")
"""


def test_fork_children_leave_no_unclosed_file(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr


# Children of each start method started and joined; then the program waits
# (a hang guard, not a speed check) until no thread but its main one and no
# epoll descriptor of the reaper are left.
SCRIPT_NOTHING_LEFT = """
import json, os, sys, time
import gomp

def noop():
    pass

def leftovers():
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        if target.startswith("anon_inode:") or target == "/dev/null":
            fds.append(target)
    return len(os.listdir("/proc/self/task")), sorted(fds)

if __name__ == "__main__":
    before = leftovers()
    for method in sys.argv[1:]:
        ctx = gomp.get_context(method)
        for _ in range(3):
            p = ctx.Process(target=noop)
            p.start()
            p.join()
            assert p.exitcode == 0, p.exitcode
            del p  # its pidfd is the Process object's until then
    deadline = time.monotonic() + float(os.environ["HANG_GUARD"])
    while leftovers() != before and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps([before, leftovers()]))
"""


@pytest.mark.parametrize("methods", [("fork",), ("spawn",), ("forkserver",)])
def test_children_gone_leave_no_thread_or_descriptor(tmp_path, methods):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT_NOTHING_LEFT)
    env = dict(os.environ, HANG_GUARD=str(HANG_GUARD))
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script), *methods],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD * 2,
        cwd=str(tmp_path),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr
    before, after = json.loads(proc.stdout)
    assert after == before, "(threads, descriptors) before the children and after them"
