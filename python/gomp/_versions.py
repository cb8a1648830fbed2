"""What differs between the CPython versions gomp serves, in one place.

gomp follows the behaviour of the interpreter it runs in, for CPython 3.10
through 3.15. Every behaviour that depends on the version is named here once,
as a flag computed from the running interpreter, and the rest of the package
asks the flag (``from ._versions import V`` ... ``if V.fork_warns_threaded``)
rather than comparing ``sys.version_info`` itself. To learn what changes from
one version to the next, read this file; to change when a behaviour starts,
change its line here.

Each entry says what the behaviour is and where it shows (the suite test or
the docs' "Changed in version" note that pins it down).
"""

import sys

__all__ = ['V']

_HOST = sys.version_info[:2]


def _since(major, minor):
    return _HOST >= (major, minor)


class _Facts:
    __slots__ = ()

    # -- processes and start methods ------------------------------------
    # os.fork() warns (DeprecationWarning) when the process has other threads.
    fork_warns_threaded = _since(3, 12)
    # A forked child (fork, forkserver) runs, when it finishes, the atexit
    # handlers it registered itself (never its parent's); before, none.
    forked_child_runs_own_atexit = _since(3, 13)
    # The default start method on Linux is forkserver (fork before).
    default_forkserver = _since(3, 14)
    # Starting a process leaves an unchosen start method unchosen:
    # get_start_method(allow_none=True) stays None after a child of an
    # explicit context starts (spawn's preparation data asks with
    # allow_none=True; the child takes its Process's own method). Before, the
    # preparation data chose the default (TestStartMethod.test_spawn_dont_set_context).
    start_keeps_method_unchosen = _since(3, 14)

    # The stdlib's set_forkserver_preload() raises TypeError for names that
    # are not all strings. Before, it checked the list of the previous call
    # instead of the new one, so set_forkserver_preload(5) passed (and the
    # fork server failed on it later). gomp checks the new names on every
    # version (a deliberate difference, README); its tests read this fact.
    stdlib_preload_checks_names = _since(3, 11)

    # runpy.run_path gives the module it runs a __cached__ (None for a
    # source file); 3.15 no longer does, and neither does spawn's re-run of
    # the parent's main script.
    run_path_sets_cached = not _since(3, 15)

    # -- connections ----------------------------------------------------
    # Listener/Client negotiate the HMAC digest ({sha256}-prefixed
    # challenges); before, a bare HMAC-MD5 challenge of fixed length.
    digest_negotiation = _since(3, 12)

    # -- concurrent.futures (gomp's queues as its call and result queues) --
    # When a worker dies, ProcessPoolExecutor closes its call queue's reader
    # before it waits for the queue, and gomp's Queue then drops the items
    # still waiting in this process (as the stdlib's feeder thread gives up
    # on EPIPE). 3.10's does not close it, and its executor hangs there when
    # big tasks still wait to enter the call queue, over the stdlib's queue
    # as over gomp's: nothing gomp can tell apart from a live reader. Read
    # by gomp's tests.
    cf_broken_pool_closes_reader = _since(3, 11)

    # -- logging ----------------------------------------------------------
    # util's log records name the caller's file and line (stacklevel=2).
    log_names_caller = _since(3, 13)

    # -- memory -----------------------------------------------------------
    # mmap.mmap accepts trackfd=False (no duplicate descriptor per map).
    mmap_trackfd = _since(3, 13)
    # SharedMemory(..., track=True) exists.
    shm_track_param = _since(3, 13)
    # The resource tracker knows a 'dummy' resource type (the suite uses it to
    # check the tracker's exit code).
    tracker_dummy_type = _since(3, 13)
    # The tracker's warning about leaked resources at shutdown ends with the
    # set of their names (": {'/psm_...'}").
    tracker_lists_leaks = _since(3, 13)

    # -- managers ---------------------------------------------------------
    # The managers' lock proxies (Lock, RLock, Semaphore...) offer locked();
    # the 3.14 suite calls it on a manager's Lock and RLock.
    lock_proxy_locked = _since(3, 14)


V = _Facts()
