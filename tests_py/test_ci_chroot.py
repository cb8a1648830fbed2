"""The chroot of .ci/sid-pythons.sh (CPython 3.14/3.15 for make test) across
re-clones of the project.

A CI machine keeps the chroot from one run to the next and clones the project
again at the same path each time. The script bind-mounts the project into
the chroot and leaves the mount in place; the next clone must still be what
commands inside see, not the deleted directory of the clone before (which
made every command inside fail in getcwd and stopped CI once)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, '.ci', 'sid-pythons.sh')


def _chroot_ready():
    if os.geteuid() != 0:
        return 'the chroot needs root (chroot, mount)'
    root = subprocess.run(['bash', SCRIPT, 'path'], capture_output=True, text=True).stdout.strip()
    if not os.path.isfile(os.path.join(root, 'bin', 'bash')):
        return 'no chroot at %s (make test-newer builds it)' % root
    return None


def _make_project(path):
    """A minimal project at path: the script alone, as a fresh clone has it."""
    os.makedirs(os.path.join(path, '.ci'))
    shutil.copy(SCRIPT, os.path.join(path, '.ci', 'sid-pythons.sh'))


def _run_inside(path, command):
    return subprocess.run(
        ['bash', os.path.join(path, '.ci', 'sid-pythons.sh'), 'run', command],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(_chroot_ready() is not None, reason=str(_chroot_ready()))
def test_project_cloned_again_at_same_path_is_what_the_chroot_sees(tmp_path):
    project = str(tmp_path / 'clone')
    root = subprocess.run(['bash', SCRIPT, 'path'], capture_output=True, text=True).stdout.strip()
    inside = root + project
    try:
        _make_project(project)
        first = _run_inside(project, '/bin/pwd -P')
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == project

        # The CI machine's next run: the clone is deleted and made again.
        shutil.rmtree(project)
        _make_project(project)
        with open(os.path.join(project, 'marker'), 'w') as f:
            f.write('second clone\n')
        second = _run_inside(project, '/bin/pwd -P && cat marker')
        assert second.returncode == 0, second.stderr
        assert second.stdout.split() == [project, 'second', 'clone']
    finally:
        subprocess.run(['umount', '-l', inside], capture_output=True)
        try:
            os.rmdir(inside)
        except OSError:
            pass
