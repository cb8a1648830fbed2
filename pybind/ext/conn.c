/* Connection functions of gomp._gomp: frames in CPython's format on a file
 * descriptor (pipe or socket) that the Python class gomp.connection.Connection
 * owns. The bytes move in the Go core (gomp/fdio); this file parses
 * arguments, allocates the result, and runs the core's steps through
 * gomp_run() so that every wait releases the GIL and stays interruptible. */
#include "gomp_ext.h"

/* Sends and receives up to this size try once with the GIL held first. */
#define SMALL_MESSAGE (64 * 1024)
/* A payload above this is received into a buffer that grows as the bytes
 * arrive (realloc of a large block is mremap: no copy), so that a bogus
 * length header cannot make us allocate memory that no data backs. */
#define GROW_START ((Py_ssize_t)64 << 20)

static int ssize_arg(PyObject *o, Py_ssize_t *v, Py_ssize_t if_none)
{
    if (o == Py_None) {
        *v = if_none;
        return 0;
    }
    *v = PyNumber_AsSsize_t(o, PyExc_OverflowError);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* ---- send ---------------------------------------------------------------------------- */

/* The one piece of I/O done in C: while the Go core is not loaded in this
 * process (typically a fork child, whose first call would have to bring up a
 * fresh Go runtime), a small frame is offered to the kernel with one
 * non-blocking writev. If it is taken whole, the child never needed a
 * runtime; otherwise the core is loaded and continues from the bytes already
 * written. Frames up to SMALL_MESSAGE always use the 4-byte header. */
static int64_t write_frame_nowait(int fd, const char *buf, int64_t n)
{
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    struct iovec iov[2] = {{hdr, 4}, {(void *)buf, (size_t)n}};
    ssize_t r;
    do {
        r = pwritev2(fd, iov, n > 0 ? 2 : 1, -1, RWF_NOWAIT);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

typedef struct {
    int fd;
    const char *buf;
    int64_t n, done;
} write_ctx;

static int64_t write_step(void *c, int ms)
{
    write_ctx *w = c;
    return gomp_core.write_frame(w->fd, w->buf, w->n, &w->done, ms);
}

static PyObject *m_send_bytes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_buffer view;
    Py_ssize_t offset = 0, size = -1;
    if (nargs < 2 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "send_bytes(fd, buf, offset=0, size=None)");
        return NULL;
    }
    if (gomp_fd_arg(args[0], &fd) < 0)
        return NULL;
    if (nargs > 2 && ssize_arg(args[2], &offset, 0) < 0)
        return NULL;
    if (nargs > 3 && ssize_arg(args[3], &size, -1) < 0)
        return NULL;
    if (nargs > 3 && args[3] != Py_None && size < 0) {
        PyErr_SetString(PyExc_ValueError, "size is negative");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    if (offset < 0)
        PyErr_SetString(PyExc_ValueError, "offset is negative");
    else if (view.len < offset)
        PyErr_SetString(PyExc_ValueError, "buffer length < offset");
    else if (size >= 0 && offset + size > view.len)
        PyErr_SetString(PyExc_ValueError, "buffer length < offset + size");
    else {
        if (size < 0)
            size = view.len - offset;
        write_ctx w = {fd, (const char *)view.buf + offset, size, 0};
        if (!gomp_core_ok && size <= SMALL_MESSAGE) {
            int64_t r = write_frame_nowait(fd, w.buf, size);
            if (r == size + 4) {
                PyBuffer_Release(&view);
                Py_RETURN_NONE;
            }
            if (r >= 0)
                w.done = r;
            else if (r != -EAGAIN && r != -EOPNOTSUPP && r != -EINVAL) {
                PyBuffer_Release(&view);
                return gomp_set_error(r);
            }
        }
        if (gomp_core_ready() < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        gomp_deadline d;
        gomp_deadline_set(&d, -1);
        int64_t r = gomp_run_fd(write_step, &w, fd, POLLOUT, &d, size <= SMALL_MESSAGE);
        if (r < 0)
            gomp_run_error(r);
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&view);
    return result;
}

/* ---- receive ------------------------------------------------------------------------- */

typedef struct {
    int fd;
    gomp_hdr h;
} header_ctx;

static int64_t header_step(void *c, int ms)
{
    header_ctx *h = c;
    return gomp_core.read_header(h->fd, &h->h, ms);
}

typedef struct {
    int fd;
    char *buf;
    int64_t n, done;
} read_ctx;

static int64_t read_step(void *c, int ms)
{
    read_ctx *r = c;
    return gomp_core.read_full(r->fd, r->buf, r->n, &r->done, ms);
}

static void eof_mid_frame(void)
{
    PyErr_SetString(PyExc_OSError, "got end of file during message");
}

/* Reads a frame header; returns the payload size or -1 with an exception. */
static int64_t recv_header(int fd)
{
    header_ctx h = {fd, {0}};
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    int64_t r = gomp_run_fd(header_step, &h, fd, POLLIN, &d, 1);
    if (r >= 0)
        return r;
    if (r == GOMP_EEOF && h.h.got > 0)
        eof_mid_frame();
    else
        gomp_run_error(r);
    return -1;
}

/* Reads n payload bytes into buf; 0 or -1 with an exception. */
static int recv_into(int fd, char *buf, int64_t n)
{
    read_ctx rc = {fd, buf, n, 0};
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    int64_t r = gomp_run_fd(read_step, &rc, fd, POLLIN, &d, n <= SMALL_MESSAGE);
    if (r >= 0)
        return 0;
    if (r == GOMP_EEOF)
        eof_mid_frame();
    else
        gomp_run_error(r);
    return -1;
}

/* Reads a payload of size bytes into a new bytes object. */
static PyObject *recv_payload(int fd, int64_t size)
{
    if (size > PY_SSIZE_T_MAX - 64)
        return PyErr_NoMemory();
    Py_ssize_t cap = size < GROW_START ? (Py_ssize_t)size : GROW_START;
    PyObject *b = PyBytes_FromStringAndSize(NULL, cap);
    if (b == NULL)
        return NULL;
    read_ctx rc = {fd, PyBytes_AS_STRING(b), cap, 0};
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    for (;;) {
        int64_t r = gomp_run_fd(read_step, &rc, fd, POLLIN, &d, cap <= SMALL_MESSAGE);
        if (r < 0) {
            if (r == GOMP_EEOF)
                eof_mid_frame();
            else
                gomp_run_error(r);
            Py_DECREF(b);
            return NULL;
        }
        if (cap == size)
            return b;
        cap = (size - cap > cap) ? 2 * cap : (Py_ssize_t)size;
        if (_PyBytes_Resize(&b, cap) < 0)
            return NULL;
        rc.buf = PyBytes_AS_STRING(b);
        rc.n = cap;
    }
}

static PyObject *m_recv_bytes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t maxlength = -1;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "recv_bytes(fd, maxlength=None)");
        return NULL;
    }
    if (gomp_fd_arg(args[0], &fd) < 0 || (nargs > 1 && ssize_arg(args[1], &maxlength, -1) < 0))
        return NULL;
    if (nargs > 1 && args[1] != Py_None && maxlength < 0) {
        PyErr_SetString(PyExc_ValueError, "negative maxlength");
        return NULL;
    }
    if (gomp_core_ready() < 0)
        return NULL;
    int64_t size = recv_header(fd);
    if (size < 0)
        return NULL;
    if (maxlength >= 0 && size > maxlength) {
        PyErr_SetString(PyExc_OSError, "bad message length");
        return NULL;
    }
    return recv_payload(fd, size);
}

/* recv_bytes_into(fd, buf, offset) -> size, or the message as bytes when it
 * does not fit (the caller raises BufferTooShort with it). */
static PyObject *m_recv_bytes_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t offset = 0;
    Py_buffer view;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "recv_bytes_into(fd, buf, offset=0)");
        return NULL;
    }
    if (gomp_fd_arg(args[0], &fd) < 0 || (nargs > 2 && ssize_arg(args[2], &offset, 0) < 0))
        return NULL;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         "recv_bytes_into() argument must be a writable, contiguous "
                         "bytes-like object, not %.100s",
                         Py_TYPE(args[1])->tp_name);
        }
        return NULL;
    }
    PyObject *result = NULL;
    if (offset < 0)
        PyErr_SetString(PyExc_ValueError, "negative offset");
    else if (offset > view.len)
        PyErr_SetString(PyExc_ValueError, "offset too large");
    else if (gomp_core_ready() == 0) {
        int64_t size = recv_header(fd);
        if (size >= 0) {
            if (size <= view.len - offset) {
                if (recv_into(fd, (char *)view.buf + offset, size) == 0)
                    result = PyLong_FromLongLong(size);
            } else {
                result = recv_payload(fd, size);
            }
        }
    }
    PyBuffer_Release(&view);
    return result;
}

/* ---- readiness ----------------------------------------------------------------------- */

/* poll(fd, timeout=None) -> bool: whether fd is readable (or hung up). */
static PyObject *m_poll(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    gomp_deadline d;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "poll(fd, timeout=None)");
        return NULL;
    }
    if (gomp_fd_arg(args[0], &fd) < 0 || gomp_deadline_init(&d, nargs > 1 ? args[1] : NULL) < 0)
        return NULL;
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = gomp_poll_fds(&pfd, 1, &d);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r > 0 && pfd.revents != 0);
}

/* wait_readable(fds, timeout=None) -> list of the fds that are readable (or
 * hung up, or invalid), in the order given; empty on timeout. */
static PyObject *m_wait_readable(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    gomp_deadline d;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "wait_readable(fds, timeout=None)");
        return NULL;
    }
    if (gomp_deadline_init(&d, nargs > 1 ? args[1] : NULL) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(args[0], "fds must be a sequence of ints");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = NULL;
    struct pollfd *fds = NULL;
    if (n > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many descriptors");
        goto done;
    }
    fds = PyMem_Calloc(n + 1, sizeof(struct pollfd));
    if (fds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd;
        if (gomp_fd_arg(PySequence_Fast_GET_ITEM(seq, i), &fd) < 0)
            goto done;
        fds[i].fd = fd;
        fds[i].events = POLLIN;
    }
    int r = gomp_poll_fds(fds, (int)n, &d);
    if (r < 0)
        goto done;
    result = PyList_New(0);
    for (Py_ssize_t i = 0; r > 0 && result != NULL && i < n; i++) {
        if (fds[i].revents != 0 && PyList_Append(result, PySequence_Fast_GET_ITEM(seq, i)) < 0)
            Py_CLEAR(result);
    }
done:
    PyMem_Free(fds);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef conn_methods[] = {
    {"send_bytes", (PyCFunction)(void (*)(void))m_send_bytes, METH_FASTCALL,
     "send_bytes(fd, buf, offset=0, size=None): write buf[offset:offset+size] as one frame."},
    {"recv_bytes", (PyCFunction)(void (*)(void))m_recv_bytes, METH_FASTCALL,
     "recv_bytes(fd, maxlength=None) -> bytes: read one frame."},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))m_recv_bytes_into, METH_FASTCALL,
     "recv_bytes_into(fd, buf, offset=0) -> int, or bytes when the frame does not fit."},
    {"poll", (PyCFunction)(void (*)(void))m_poll, METH_FASTCALL,
     "poll(fd, timeout=None) -> bool: wait until fd is readable."},
    {"wait_readable", (PyCFunction)(void (*)(void))m_wait_readable, METH_FASTCALL,
     "wait_readable(fds, timeout=None) -> list: the readable ones among fds."},
    {NULL, NULL, 0, NULL},
};

int gomp_conn_init(PyObject *m)
{
    return PyModule_AddFunctions(m, conn_methods);
}
