"""The C side of the owner-identity scheme (pybind/ext/sync.c) against the
test vector it shares with the Go side (gomp/owner/testdata), so that the
two parsers of /proc/PID/stat cannot drift apart."""

import os

import pytest

from conftest import ROOT
from gomp import _gomp

VECTORS = os.path.join(ROOT, "gomp", "owner", "testdata", "stat_vectors.txt")


def load_vectors():
    with open(VECTORS) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            pid, want, what, stat = line.split("\t", 3)
            yield pytest.param(int(pid), int(want, 16), stat, id=what)


@pytest.mark.parametrize("pid, want, stat", list(load_vectors()))
def test_stat_vector(pid, want, stat):
    for data in (stat, stat + "\n"):
        assert _gomp._owner_id_from_stat(pid, data.encode()) == want


def test_self_id_is_this_process():
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    assert _gomp._sem_self_id() == _gomp._owner_id_from_stat(os.getpid(), stat)
    assert _gomp._sem_self_id() & 0x3FFFFF == os.getpid()
    assert _gomp._sem_owner_alive(_gomp._sem_self_id())
