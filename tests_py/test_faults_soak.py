"""The soak (tests_py/soak.py, `make soak`) for about 20 s: a kill storm over
every object type and start method must end with no hang, loss, corruption
or leak (exit status 0). SOAK_SECONDS overrides the length; the seed is in
the output shown on failure."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_soak_short():
    seconds = os.environ.get("GOMP_SOAK_SECONDS", "20")
    env = dict(os.environ, SOAK_SECONDS=seconds)
    env.pop("SOAK_ONLY", None)
    # The timeout only guards against a hang of the soak itself: a round
    # that hangs reports it after its own guards (30 s each).
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "soak.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=float(seconds) + 900,
    )
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "soak: ok" in proc.stdout
