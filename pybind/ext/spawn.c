/* Starting a program in a new process with exactly the descriptors it is
 * meant to inherit: gomp._gomp.spawnv_passfds, for the spawn start method,
 * the fork server and the resource tracker (gomp.util.spawnv_passfds).
 *
 * Why here and not _posixsubprocess: that private module's fork_exec has
 * changed its argument list in 3.11 and again in 3.14 (and 3.14's subprocess
 * dropped the _USE_VFORK flag gomp passed it), so every new CPython broke the
 * spawn path. What the start methods need is small enough to own:
 *
 *   - vfork() and execv(): the child borrows the parent's memory until it
 *     execs, so starting a program costs the same whatever the parent's size
 *     (fork() would copy its page tables first);
 *   - in the child, every descriptor above 2 closed except the ones passed,
 *     and those made inheritable (Python makes descriptors close-on-exec);
 *   - all signals blocked around vfork(), and in the child every caught
 *     signal reset to its default before the mask is restored: a signal that
 *     arrives between the two must not run the parent's handler on the
 *     borrowed stack (ignored signals stay ignored; the mask is inherited, as
 *     the stdlib's spawn does);
 *   - a failed exec is reported to the caller as OSError (the child writes
 *     errno into the memory it shares with the parent and exits 127), where
 *     the stdlib returns the pid of a child that has already died.
 *
 * Nothing in the child allocates, takes a lock or touches Python: between
 * vfork() and execv() only system calls run. */
#include "gomp_ext.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436 /* the same number on every Linux architecture */
#endif

/* Closes [lo, hi] in the child. close_range(2) is Linux 5.9+; before it, one
 * close per descriptor up to the process's limit (read in the parent). */
static void close_span(int lo, int hi, int limit)
{
    if (lo > hi)
        return;
    if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0)
        return;
    if (hi > limit)
        hi = limit;
    for (int fd = lo; fd <= hi; fd++)
        close(fd);
}

/* Runs in the vfork child: returns only on failure, with errno set. */
static void child_exec(const char *path, char *const argv[], const int *keep, int nkeep,
                       int fd_limit, const sigset_t *old_mask)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction cur;
        if (sigaction(sig, NULL, &cur) == 0 && cur.sa_handler != SIG_IGN &&
            cur.sa_handler != SIG_DFL)
            sigaction(sig, &dfl, NULL);
    }
    int next = 3; /* keep[] is sorted, every entry > 2 */
    for (int i = 0; i < nkeep; i++) {
        close_span(next, keep[i] - 1, fd_limit);
        int flags = fcntl(keep[i], F_GETFD);
        if (flags < 0 || (flags & FD_CLOEXEC && fcntl(keep[i], F_SETFD, flags & ~FD_CLOEXEC) < 0))
            return;
        next = keep[i] + 1;
    }
    close_span(next, INT_MAX, fd_limit);
    sigprocmask(SIG_SETMASK, old_mask, NULL);
    execv(path, argv);
}

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The passed descriptors as a sorted array of distinct ints > 2 (0-2 are
 * always inherited). Returns the count, or -1 with an exception set.
 *
 * Kept out of line: inlined into m_spawnv_passfds, its locals would live in
 * the frame that vfork() returns into twice, and gcc's -Wclobbered flags
 * them (a false alarm, the parent reads none of them after vfork(), but
 * -Werror builds must stay quiet). */
static __attribute__((noinline)) int read_keep(PyObject *seq, int **out)
{
    PyObject *fast = PySequence_Fast(seq, "passfds must be a sequence of file descriptors");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int *keep = PyMem_Malloc((n ? n : 1) * sizeof *keep);
    if (keep == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    int count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd = PyObject_AsFileDescriptor(PySequence_Fast_GET_ITEM(fast, i));
        if (fd < 0) {
            PyMem_Free(keep);
            Py_DECREF(fast);
            return -1;
        }
        if (fd > 2 && fcntl(fd, F_GETFD) < 0) {
            int e = errno;
            char msg[96];
            snprintf(msg, sizeof msg, "cannot pass descriptor %d to the new process: %s", fd,
                     strerror(e));
            PyObject *v = Py_BuildValue("(is)", e, msg);
            if (v != NULL) {
                PyErr_SetObject(PyExc_OSError, v);
                Py_DECREF(v);
            }
            PyMem_Free(keep);
            Py_DECREF(fast);
            return -1;
        }
        if (fd > 2)
            keep[count++] = fd;
    }
    Py_DECREF(fast);
    qsort(keep, count, sizeof *keep, compare_ints);
    int distinct = 0;
    for (int i = 0; i < count; i++)
        if (distinct == 0 || keep[distinct - 1] != keep[i])
            keep[distinct++] = keep[i];
    *out = keep;
    return distinct;
}

/* argv as a NULL-terminated array of file-system-encoded strings; the bytes
 * objects that own them go into *owners. */
static char **read_argv(PyObject *args, PyObject **owners)
{
    PyObject *fast = PySequence_Fast(args, "args must be a sequence of strings");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject *held = PyList_New(0);
    char **argv = PyMem_Malloc((n + 1) * sizeof *argv);
    if (held == NULL || argv == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = NULL;
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(fast, i), &b))
            goto fail;
        int r = PyList_Append(held, b);
        Py_DECREF(b);
        if (r < 0)
            goto fail;
        argv[i] = PyBytes_AS_STRING(b);
    }
    argv[n] = NULL;
    Py_DECREF(fast);
    *owners = held;
    return argv;
fail:
    if (argv == NULL && !PyErr_Occurred())
        PyErr_NoMemory();
    PyMem_Free(argv);
    Py_XDECREF(held);
    Py_DECREF(fast);
    return NULL;
}

/* spawnv_passfds(path, args, passfds) -> pid */
static PyObject *m_spawnv_passfds(PyObject *self, PyObject *const *a, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "spawnv_passfds(path, args, passfds) takes 3 arguments");
        return NULL;
    }
    PyObject *path_bytes = NULL, *owners = NULL, *result = NULL;
    int *keep = NULL;
    char **argv = NULL;
    if (!PyUnicode_FSConverter(a[0], &path_bytes))
        return NULL;
    int nkeep = read_keep(a[2], &keep);
    if (nkeep < 0)
        goto done;
    argv = read_argv(a[1], &owners);
    if (argv == NULL)
        goto done;

    const char *path = PyBytes_AS_STRING(path_bytes);
    long open_max = sysconf(_SC_OPEN_MAX);
    int fd_limit = open_max > 0 && open_max < INT_MAX ? (int)open_max : 65536;
    volatile int child_errno = 0; /* written by the child, which shares our memory */
    sigset_t all, old;
    sigfillset(&all);
    pid_t pid;
    int saved_errno = 0;

    Py_BEGIN_ALLOW_THREADS
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = vfork();
    if (pid == 0) {
        child_exec(path, argv, keep, nkeep, fd_limit, &old);
        child_errno = errno ? errno : ENOEXEC;
        _exit(127);
    }
    saved_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid > 0 && child_errno != 0) {
        /* The child exec'd nothing and has exited: collect it here so it
         * leaves no zombie, and report why. */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    Py_END_ALLOW_THREADS

    if (pid < 0) {
        errno = saved_errno;
        PyErr_SetFromErrno(PyExc_OSError);
    } else if (child_errno != 0) {
        errno = child_errno;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, a[0]);
    } else {
        result = PyLong_FromLong(pid);
    }
done:
    PyMem_Free(argv);
    PyMem_Free(keep);
    Py_XDECREF(owners);
    Py_DECREF(path_bytes);
    return result;
}

static PyMethodDef spawn_methods[] = {
    {"spawnv_passfds", (PyCFunction)(void (*)(void))m_spawnv_passfds, METH_FASTCALL,
     "spawnv_passfds(path, args, passfds) -> pid: run path with args in a new process that\n"
     "inherits only stdin, stdout, stderr and passfds; OSError if it cannot be executed."},
    {NULL, NULL, 0, NULL},
};

int gomp_spawn_init(PyObject *m)
{
    return PyModule_AddFunctions(m, spawn_methods);
}
