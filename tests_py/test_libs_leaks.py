"""A program that started fork children leaves nothing open behind it: no
ResourceWarning at exit under -X dev with warnings as errors (issue 15)."""

import subprocess
import sys

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
