/* The shared helpers of gomp._gomp (declared in helpers.h): argument
 * parsing, error mapping, exception shims, deadlines and the interruptible
 * wait loop that every blocking call of the extension runs in. */
#include "gomp_ext.h"

#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- arguments ------------------------------------------------------------------------ */

int gomp_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                    const char *const *names, int n, int required, PyObject **out)
{
    for (int i = 0; i < n; i++)
        out[i] = NULL;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, n,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        const char *key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
        if (key == NULL)
            return -1;
        int j = 0;
        while (j < n && strcmp(key, names[j]) != 0)
            j++;
        if (j == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'", fname,
                         key);
            return -1;
        }
        if (out[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, key);
            return -1;
        }
        out[j] = args[nargs + k];
    }
    for (int i = 0; i < required; i++)
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    return 0;
}

int gomp_fd_arg(PyObject *o, int *fd)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "invalid handle");
        return -1;
    }
    *fd = (int)v;
    return 0;
}

/* ---- errors --------------------------------------------------------------------------- */

PyObject *gomp_set_error(int64_t r)
{
    char text[4096];
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (r <= GOMP_ETEXT) {
        if (!gomp_core_ok || gomp_core.error_text(r, text, sizeof text) < 0)
            strcpy(text, "(no text)");
        PyErr_Format(PyExc_RuntimeError, "gomp core %s: %s",
                     GOMP_ETEXT_PANIC(r) ? "panic" : "error", text);
        return NULL;
    }
    switch (r) {
    case GOMP_EEOF:
        PyErr_SetNone(PyExc_EOFError);
        return NULL;
    case GOMP_EBADLEN:
        PyErr_SetString(PyExc_OSError, "bad message length");
        return NULL;
    }
    PyErr_Format(PyExc_SystemError, "gomp core: unexpected result %lld", (long long)r);
    return NULL;
}

PyObject *gomp_run_error(int64_t r)
{
    if (r == GOMP_EPYERR)
        return NULL;
    return gomp_set_error(r);
}

PyObject *gomp_take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

void gomp_restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc == NULL)
        return;
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* ---- deadlines and interruptible waits ------------------------------------------------ */

static double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int gomp_deadline_init(gomp_deadline *d, PyObject *timeout)
{
    d->infinite = 1;
    d->end = 0;
    if (timeout == NULL || timeout == Py_None)
        return 0;
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    d->infinite = 0;
    d->end = now_monotonic() + (t > 0 ? t : 0);
    return 0;
}

void gomp_deadline_set(gomp_deadline *d, double seconds)
{
    d->infinite = seconds < 0;
    d->end = now_monotonic() + (seconds > 0 ? seconds : 0);
}

int gomp_deadline_block(gomp_deadline *d, PyObject *block, PyObject *timeout)
{
    int b = block == NULL ? 1 : PyObject_IsTrue(block);
    if (b < 0)
        return -1;
    if (!b) {
        gomp_deadline_set(d, 0);
        return 0;
    }
    return gomp_deadline_init(d, timeout);
}

/* The length of the next slice in ms (1..GOMP_SLICE_MS), or 0 once the
 * deadline passed. */
static int slice_ms(const gomp_deadline *d)
{
    if (d->infinite)
        return GOMP_SLICE_MS;
    double rem = d->end - now_monotonic();
    if (rem <= 0)
        return 0;
    double ms = rem * 1000.0;
    if (ms >= GOMP_SLICE_MS)
        return GOMP_SLICE_MS;
    return ms < 1 ? 1 : (int)(ms + 0.999);
}

int64_t gomp_run(gomp_step step, void *ctx, gomp_deadline *d, int try_with_gil)
{
    return gomp_run_fd(step, ctx, -1, 0, d, try_with_gil);
}

/* With fd < 0 (gomp_run), each slice is one call of step, which waits in
 * the core. */
int64_t gomp_run_fd(gomp_step step, void *ctx, int fd, short events, gomp_deadline *d,
                    int try_with_gil)
{
    int64_t r = GOMP_EAGAIN;
    int tried = 0;
    if (try_with_gil) {
        /* What the kernel can do at once, without a round trip through the GIL. */
        r = step(ctx, 0);
        if (r != GOMP_EAGAIN)
            return r;
        tried = 1;
    }
    for (;;) {
        int ms = slice_ms(d);
        if (ms == 0 && tried)
            return GOMP_TIMEDOUT;
        struct pollfd pfd = {fd, events, 0};
        int rc, err = 0;
        Py_BEGIN_ALLOW_THREADS
        rc = (tried && fd >= 0) ? poll(&pfd, 1, ms) : 1;
        err = errno;
        if (rc > 0)
            r = step(ctx, ms); /* ready: the transfer rarely needs to wait in the core */
        Py_END_ALLOW_THREADS
        tried = 1;
        if (rc < 0 && err != EINTR)
            return -err;
        if (rc > 0 && r != GOMP_EAGAIN)
            return r;
        if (PyErr_CheckSignals() < 0)
            return GOMP_EPYERR;
    }
}

int gomp_poll_fds(struct pollfd *fds, int n, gomp_deadline *d)
{
    int tried = 0;
    for (;;) {
        int ms = slice_ms(d);
        if (ms == 0 && tried)
            return 0;
        int rc, err;
        if (!tried) {
            rc = poll(fds, n, 0); /* a poll that cannot block: no GIL round trip */
        } else {
            Py_BEGIN_ALLOW_THREADS
            rc = poll(fds, n, ms);
            Py_END_ALLOW_THREADS
        }
        err = errno;
        tried = 1;
        if (rc > 0)
            return rc;
        if (rc < 0 && err != EINTR) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

/* ---- futexes ---------------------------------------------------------------------------- */

int gomp_futex_wait_until(void *addr, uint32_t val, const struct timespec *end)
{
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, end, NULL, FUTEX_BITSET_MATCH_ANY);
    if (r == 0 || errno == EAGAIN)
        return 0;
    return errno == ETIMEDOUT ? ETIMEDOUT : EINTR;
}

void gomp_futex_wake(void *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

int gomp_memfd(const char *name, unsigned int flags)
{
    return (int)syscall(SYS_memfd_create, name, flags);
}
