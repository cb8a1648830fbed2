/* Process supervision functions of gomp._gomp: pidfds and the Go reaper
 * (gomp/proc), for gomp.popen_fork and gomp.popen_spawn_posix. */
#include "gomp_ext.h"

#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same number on every Linux architecture */
#endif

/* pidfd_open(pid) -> fd (close-on-exec, as pidfd_open(2) always makes it).
 * A plain system call: no core call, so no Go runtime in the way right after
 * a fork (whose first touches of the parent's Go memory are copy-on-write
 * faults). */
static PyObject *m_pidfd_open(PyObject *self, PyObject *arg)
{
    int pid = PyLong_AsLong(arg);
    if (pid == -1 && PyErr_Occurred())
        return NULL;
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

static PyObject *m_proc_watch(PyObject *self, PyObject *args)
{
    int pid, pidfd;
    if (!PyArg_ParseTuple(args, "ii:proc_watch", &pid, &pidfd))
        return NULL;
    if (gomp_core_ready() < 0)
        return NULL;
    int64_t r = gomp_core.proc_watch(pid, pidfd);
    return r < 0 ? gomp_set_error(r) : PyLong_FromLongLong(r);
}

typedef struct {
    int64_t tok, status;
} wait_ctx;

/* Collects the exit status once the pidfd is readable: the core reaps the
 * child itself if its reaper goroutine has not yet, so it never waits. */
static int64_t wait_step(void *c, int ms)
{
    wait_ctx *w = c;
    (void)ms;
    return gomp_core.proc_wait(w->tok, &w->status, 0);
}

/* proc_wait(token, pidfd, timeout=None) -> exit code (-N: killed by signal N;
 * STATUS_LOST: reaped by other code), or None if still running at the timeout.
 * The wait is a poll of the child's pidfd in C with the GIL released (a wait
 * inside the core would add a hand-off through its reaper goroutine). */
static PyObject *m_proc_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    gomp_deadline d;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "proc_wait(token, pidfd, timeout=None)");
        return NULL;
    }
    long long tok = PyLong_AsLongLong(args[0]);
    if (tok == -1 && PyErr_Occurred())
        return NULL;
    int pidfd = PyLong_AsLong(args[1]);
    if (pidfd == -1 && PyErr_Occurred())
        return NULL;
    if (pidfd < 0) {
        PyErr_SetString(PyExc_ValueError, "proc_wait: invalid pidfd");
        return NULL;
    }
    if (gomp_deadline_init(&d, nargs > 2 ? args[2] : NULL) < 0 || gomp_core_ready() < 0)
        return NULL;
    wait_ctx w = {tok, 0};
    int64_t r = gomp_run_fd(wait_step, &w, pidfd, POLLIN, &d, 1);
    if (r == GOMP_TIMEDOUT)
        Py_RETURN_NONE;
    if (r == GOMP_EPYERR)
        return NULL;
    if (r < 0)
        return gomp_set_error(r);
    return PyLong_FromLongLong(w.status);
}

static PyObject *m_proc_forget(PyObject *self, PyObject *arg)
{
    long long tok = PyLong_AsLongLong(arg);
    if (tok == -1 && PyErr_Occurred())
        return NULL;
    if (gomp_core_ready() < 0)
        return NULL;
    gomp_core.proc_forget(tok);
    Py_RETURN_NONE;
}

static PyMethodDef proc_methods[] = {
    {"pidfd_open", m_pidfd_open, METH_O, "pidfd_open(pid) -> fd"},
    {"proc_watch", m_proc_watch, METH_VARARGS,
     "proc_watch(pid, pidfd) -> token: reap the child when it exits."},
    {"proc_wait", (PyCFunction)(void (*)(void))m_proc_wait, METH_FASTCALL,
     "proc_wait(token, pidfd, timeout=None) -> exit code, or None while running."},
    {"proc_forget", m_proc_forget, METH_O, "proc_forget(token): drop a reaped child's record."},
    {NULL, NULL, 0, NULL},
};

int gomp_proc_init(PyObject *m)
{
    if (PyModule_AddIntConstant(m, "STATUS_LOST", GOMP_STATUS_LOST) < 0)
        return -1;
    return PyModule_AddFunctions(m, proc_methods);
}
