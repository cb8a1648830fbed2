"""Run the ProcessPoolExecutor max_tasks_per_child=1 stress script of
test_queue_readers (CF_STRESS_SCRIPT) many times and count the failures
(BrokenProcessPool, hangs).

  python tests_py/tools/cf_stress.py [--runs N] [--tasks N] [--methods spawn,forkserver]

Use the interpreter of the venv to test (.venv/bin/python, .venv-3.13/bin/python)."""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from test_queue_readers import CF_STRESS_SCRIPT  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--methods", default="fork,spawn,forkserver")
    a = ap.parse_args()
    for method in a.methods.split(","):
        ok = fail = skip = 0
        t0 = time.monotonic()
        for i in range(a.runs):
            p = subprocess.run(
                [sys.executable, "-c", CF_STRESS_SCRIPT, method, str(a.tasks)],
                capture_output=True,
                text=True,
                cwd=HERE,
                timeout=300,
            )
            if p.stdout.startswith("SKIP"):
                skip += 1
                break
            if "ALL OK" in p.stdout:
                ok += 1
            else:
                fail += 1
                print("run %d failed:\n%s%s" % (i, p.stdout, p.stderr[-3000:]), flush=True)
        print(
            "%s %s: %d ok, %d failed%s (%.0f s)"
            % (
                sys.version.split()[0],
                method,
                ok,
                fail,
                " (skipped: fork refused)" if skip else "",
                time.monotonic() - t0,
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
