"""Targets for test_process.py: importable by spawn and forkserver children.

It imports only what a bare interpreter has loaded anyway, so that a child's
loaded modules are its start method's (see loaded_modules)."""

import os
import sys
import time


def noop():
    pass


def exit_with(code):
    sys.exit(code)


def raise_value_error():
    raise ValueError("boom from the child")


def recv_then_exit(conn):
    conn.recv()


def sleep(seconds):
    time.sleep(seconds)


def wait_for_interrupt(conn):
    conn.send("ready")
    # Short sleeps, not one long one: a signal that arrives after "ready"
    # but before a sleep's system call has begun runs its handler then, and
    # that sleep is not cut short (CPython checks for signals between
    # bytecodes, and when a system call is interrupted). Seen once under
    # ASan, whose slower start of the sleep widens that window: the child
    # slept its whole 30 s. The next short sleep's bytecode raises instead.
    for _ in range(300):
        time.sleep(0.1)


def report(conn, *args, **kwargs):
    import gomp

    conn.send(
        (
            os.getpid(),
            os.getppid(),
            gomp.current_process().name,
            gomp.parent_process().pid,
            gomp.get_start_method(),
            args,
            kwargs,
        )
    )


def core_state(conn):
    from gomp import _gomp

    before = _gomp._core_info()
    _gomp._core_load()
    conn.send((before, _gomp._core_info()))


def grandchild_report(conn):
    import gomp

    p = gomp.Process(target=report, args=(conn, "grandchild"))
    p.start()
    p.join()


def loaded_modules(path, conn=None):
    """Send "sent" on conn if given; then write the names of the modules
    loaded in this process to path."""
    if conn is not None:
        conn.send("sent")
    with open(path, "w") as f:
        f.write("\n".join(sorted(sys.modules)))


def stdin_report(conn, method, close_then_start_child):
    """Send what this process's stdin reads and names; then, if asked, close
    it and start a child (same start method) that does the same."""
    import gomp

    conn.send((sys.stdin.read(), os.readlink("/proc/self/fd/%d" % sys.stdin.fileno())))
    if close_then_start_child:
        sys.stdin.close()
        p = gomp.get_context(method).Process(target=stdin_report, args=(conn, method, False))
        p.start()
        p.join()


def parent_liveness(conn):
    """Report whether the parent lives, wait for it to end (60 s: a hang
    guard), then report again: ("parent gone", False) only if it did."""
    import gomp

    parent = gomp.parent_process()
    conn.send(parent.is_alive())
    parent.join(60)
    conn.send(("parent gone", parent.is_alive(), parent.exitcode))


def liveness_child_then_exit(conn, go, method):
    """Start a parent_liveness child (reporting on conn), wait for the word
    on go, then end at once, without joining it: the child sees its parent
    go."""
    import gomp

    child = gomp.get_context(method).Process(target=parent_liveness, args=(conn,))
    child.start()
    go.recv()
    os._exit(0)


def send_handle_back(conn, fd):
    conn.send(os.read(fd, 100))


def kill_self():
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def recv_handle_and_read(conn):
    from gomp import reduction

    fd = reduction.recv_handle(conn)
    conn.send(os.read(fd, 100))
    os.close(fd)
