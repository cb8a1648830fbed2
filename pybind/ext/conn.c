/* Connection functions of gomp._gomp: frames in CPython's format on a file
 * descriptor (pipe or socket) that the Python class gomp.connection.Connection
 * owns. The bytes move here in C with non-blocking system calls (see "the C
 * path" below); the Go core (gomp/fdio) takes over for descriptors that this
 * path cannot serve. Every wait releases the GIL and stays interruptible. */
#include "gomp_ext.h"

#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>

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

/* ---- the C path -------------------------------------------------------------------------
 *
 * Most messages are moved here, without the Go core: a frame that the kernel
 * can take (or hand over) at once costs one system call per direction and
 * piece (one pwritev2 for header and payload together; one preadv2 for the
 * header and one for the payload), made with the GIL held because a call
 * with RWF_NOWAIT never blocks. Only when the descriptor is not ready does
 * the caller wait: poll(2) in slices with the GIL released and signal
 * handlers run in between, so Ctrl-C interrupts it. Entering the Go runtime
 * costs more than such a message (its idle threads are woken: NOTES.md, "The
 * per-message path"), so the core is called only for what this path cannot
 * do: descriptors without RWF_NOWAIT (ttys, regular files) and the rare
 * reader that loses the bytes it was woken for to another process. It then
 * continues from the progress made here. */

/* Returned by the C path: continue in the core from the progress made. */
#define HANDOVER (-300001)

/* Waits until fd is ready for events: poll(2) in slices of GOMP_SLICE_MS
 * with the GIL released, signal handlers run between slices. 0, GOMP_EPYERR
 * (a handler raised) or -errno. */
static int64_t wait_ready(int fd, short events)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int rc, err;
        Py_BEGIN_ALLOW_THREADS
        rc = poll(&p, 1, GOMP_SLICE_MS);
        err = errno;
        Py_END_ALLOW_THREADS
        if (rc > 0)
            return (p.revents & POLLNVAL) ? -EBADF : 0;
        if (rc < 0 && err != EINTR)
            return -err;
        if (PyErr_CheckSignals() < 0)
            return GOMP_EPYERR;
    }
}

/* One attempt at moving the bytes of iov. Without block: preadv2/pwritev2
 * with RWF_NOWAIT and the GIL held (it never waits). With block: a plain
 * readv/writev with the GIL released, which waits in the kernel as the
 * stdlib's transfers do; a signal ends it with EINTR (CPython installs its
 * handlers without SA_RESTART), and the handlers run here. Returns the
 * count, GOMP_EPYERR (a handler raised) or -errno. */
static int64_t io_once(int fd, int is_write, struct iovec *iov, int cnt, int block)
{
    ssize_t r;
    int err;
    if (!block) {
        do {
            r = is_write ? pwritev2(fd, iov, cnt, -1, RWF_NOWAIT)
                         : preadv2(fd, iov, cnt, -1, RWF_NOWAIT);
        } while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : r;
    }
    Py_BEGIN_ALLOW_THREADS
    r = is_write ? writev(fd, iov, cnt) : readv(fd, iov, cnt);
    err = errno;
    Py_END_ALLOW_THREADS
    if (r >= 0)
        return r;
    if (err == EINTR && PyErr_CheckSignals() < 0)
        return GOMP_EPYERR;
    return -err;
}

/* ---- waiting briefly: a spin before sleeping ----------------------------------------
 *
 * On a machine with a core to spare, the bytes a busy peer is about to send
 * (or the room a busy reader is about to make) arrive within microseconds:
 * sooner than a sleeping process is woken, which on an idle vCPU of this VM
 * costs tens of microseconds, more than a whole small exchange. So before a
 * transfer sleeps it first yields the CPU for up to SPIN_NS (with the GIL
 * released: the peer may be waiting for this very CPU, another thread for the
 * GIL) and tries again without waiting. It spins:
 *  - for the rest of a message the peer is in the middle of, and for room
 *    for the rest of one being sent: the peer is at work on it;
 *  - for the next message, only when this thread sent or received one within
 *    the last SPIN_NS: an answer to a request just sent, or the next message
 *    of a stream. A receiver that has been idle (a worker waiting for work)
 *    sleeps at once.
 * A spin costs at most SPIN_NS of CPU per wait, and the window opens again
 * only after bytes have moved. */
#define SPIN_NS 50000

/* When this thread last finished sending or receiving a message. */
static _Thread_local int64_t last_message_ns = INT64_MIN / 2;
/* Whether that last message was one this thread sent. */
static _Thread_local int last_was_send;

/* Waits for a next message that opened a spin window, and those of them
 * whose bytes came during it (changed with the GIL held; read by
 * _gomp.spin_stats()). */
static uint64_t spin_windows, spin_hits;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* A spin only pays when the peer runs on another CPU, or when the yield
 * hands this CPU to it. On one CPU the scheduler need not do the latter
 * (EEVDF keeps running a yielding task while a woken peer is not yet
 * eligible), and two processes streaming through a pipe were seen to spin
 * out every window: 50 us lost twice per 64 KiB message, 0.3 GB/s instead
 * of 2.7. On a loaded machine a yield may hand the CPU to another busy
 * process for a whole time slice (a millisecond or more), where a sleeper
 * would have been woken at once. So each thread keeps a penalty: a window
 * that runs out, or whose bytes come only after its end, doubles it (1, 2,
 * 4 ... 4096) and a window that sees bytes move in time halves it; while it
 * is n, only one wait in n+1 may spin, the others sleep at once. Spinning
 * goes on where most windows pay and fades where most do not; the cap keeps
 * a loaded machine's rare windows below a microsecond per wait on average. */
#define SPIN_MAX_PENALTY 4096
static _Thread_local unsigned spin_penalty; /* 0, 1, 2, 4 ... 4096 */
static _Thread_local unsigned spin_skip;    /* waits left that sleep at once */

/* Gives the CPU to whoever waits for it, with the GIL released: the peer may
 * be waiting for this CPU, another thread for the GIL. */
static void yield_cpu(void)
{
    Py_BEGIN_ALLOW_THREADS
    sched_yield();
    Py_END_ALLOW_THREADS
}

/* A window ran out, or its bytes came only after its end (a yield that
 * handed the CPU to another busy process for a whole time slice: on a
 * loaded machine, sleeping would have been woken sooner). */
static void spin_missed(void)
{
    spin_penalty = spin_penalty == 0 ? 1 : spin_penalty * 2;
    if (spin_penalty > SPIN_MAX_PENALTY)
        spin_penalty = SPIN_MAX_PENALTY;
    spin_skip = spin_penalty;
}

/* Whether a transfer that found fd not ready should yield and try again
 * rather than sleep. *until is 0 until the wait's first miss opens the
 * window (when may_open and the penalty lets it; otherwise it stays shut,
 * -1), and -1 again once the window has run out. */
static int spin_again(int64_t *until, int may_open)
{
    if (*until == 0) {
        if (may_open && spin_skip > 0) {
            spin_skip--;
            may_open = 0;
        }
        *until = may_open ? now_ns() + SPIN_NS : -1;
    } else if (*until > 0 && now_ns() >= *until) {
        *until = -1;
        spin_missed();
    }
    if (*until < 0)
        return 0;
    yield_cpu();
    return 1;
}

/* Right after a send: let the peer run before the first look for its
 * answer (on one CPU it is waiting for this one), unless the penalty is
 * running. A yield that kept this thread off the CPU for longer than a
 * window gave it to another busy process for a time slice, which waking up
 * would not have cost: it counts as a window that ran out. */
static void yield_first(void)
{
    int64_t now = now_ns();
    if (now - last_message_ns >= SPIN_NS || spin_skip > 0)
        return;
    yield_cpu();
    if (now_ns() - now > SPIN_NS)
        spin_missed();
}

/* Bytes moved while the window until was open: whether they came in time
 * (spinning paid). */
static int spin_ended(int64_t until)
{
    if (now_ns() > until) {
        spin_missed();
        return 0;
    }
    spin_penalty /= 2;
    spin_skip = spin_penalty;
    return 1;
}

/* Fills iov with what is left to move after the first done bytes; returns
 * the number of entries. */
typedef int (*iov_fill)(void *ctx, int64_t done, struct iovec *iov);

/* Moves total bytes through fd, starting after *done (which counts every
 * byte moved). Each attempt is first made without waiting. When fd is not
 * ready, a spin first (see above), then:
 *  - may_block (the rest of a message the peer is in the middle of): one
 *    blocking call with the GIL released, a single system call however long
 *    the peer takes, where polling first would cost two per piece;
 *  - otherwise (waiting for a message that may never come): poll(2) in
 *    slices, so that Ctrl-C is seen within a slice even if its signal
 *    reached the process just before the wait began. This wait spins only
 *    when this thread moved a message within SPIN_NS.
 * A descriptor in O_NONBLOCK mode refuses the blocking call and is polled.
 * Returns 0 when done; GOMP_EEOF (a read got end of file); HANDOVER;
 * GOMP_EPYERR; or -errno. */
static int64_t c_transfer(int fd, int is_write, int64_t total, int64_t *done, int may_block,
                          iov_fill fill, void *ctx)
{
    int block = 0, polled = 0;
    int64_t until = 0; /* the spin window of the current wait */
    while (*done < total) {
        struct iovec iov[2];
        int cnt = fill(ctx, *done, iov);
        int64_t r = io_once(fd, is_write, iov, cnt, block);
        if (r > 0) {
            *done += r;
            if (until > 0 && !polled && spin_ended(until))
                spin_hits += !may_block;
            until = 0; /* bytes moved: the next wait may spin afresh */
            polled = 0;
            continue;
        }
        if (r == 0) /* a write that takes nothing is the core's to judge */
            return is_write ? HANDOVER : GOMP_EEOF;
        if (r == -EINTR) /* the signal handlers ran and did not raise */
            continue;
        if (r != -EAGAIN) {
            /* RWF_NOWAIT not supported (EOPNOTSUPP: ttys and the like;
             * EINVAL: kernels before 4.14): the core has the fallbacks. */
            return (!block && (r == -EOPNOTSUPP || r == -EINVAL)) ? HANDOVER : r;
        }
        if (!polled && !block) {
            int opened = until == 0;
            int may_open = opened && (may_block || now_ns() - last_message_ns < SPIN_NS);
            if (spin_again(&until, may_open)) {
                spin_windows += opened && !may_block;
                continue;
            }
        }
        if (may_block && !block) {
            block = 1;
            continue;
        }
        /* Called ready and still nothing: a regular file (poll always says
         * ready) or another reader was faster. The core sorts it out. */
        if (polled && !block)
            return HANDOVER;
        block = 0;
        int64_t w = wait_ready(fd, is_write ? POLLOUT : POLLIN);
        if (w < 0)
            return w;
        polled = 1;
    }
    return 0;
}

typedef struct {
    char *buf;
    int64_t n;
} read_span;

static int fill_read_span(void *ctx, int64_t done, struct iovec *iov)
{
    read_span *s = ctx;
    iov->iov_base = s->buf + done;
    iov->iov_len = (size_t)(s->n - done);
    return 1;
}

/* Reads buf[*done..n). 0 when full; GOMP_EEOF at end of file; HANDOVER;
 * GOMP_EPYERR; or -errno. *done counts every byte read. may_block: see
 * c_transfer. */
static int64_t c_read_full(int fd, char *buf, int64_t n, int64_t *done, int may_block)
{
    read_span s = {buf, n};
    return c_transfer(fd, 0, n, done, may_block, fill_read_span, &s);
}

typedef struct {
    uint8_t hdr[12];
    int hlen;
    const char *buf;
    int64_t n;
} write_span;

static int fill_write(void *ctx, int64_t done, struct iovec *iov)
{
    write_span *w = ctx;
    if (done < w->hlen) {
        iov[0] = (struct iovec){w->hdr + done, (size_t)(w->hlen - done)};
        if (w->n == 0)
            return 1;
        iov[1] = (struct iovec){(void *)w->buf, (size_t)w->n};
        return 2;
    }
    iov[0] = (struct iovec){(void *)(w->buf + (done - w->hlen)), (size_t)(w->hlen + w->n - done)};
    return 1;
}

/* Writes the frame of the n bytes at buf (CPython's header, then the
 * payload, in one writev while the kernel takes them) from byte *done of
 * the two together. 0 when written; HANDOVER; GOMP_EPYERR; or -errno. */
static int64_t c_write_frame(int fd, const char *buf, int64_t n, int64_t *done)
{
    write_span w = {{0}, 4, buf, n};
    uint64_t len = (uint64_t)n;
    if (n > 0x7fffffff) { /* -1, then the length in 8 bytes */
        memset(w.hdr, 0xff, 4);
        w.hlen = 12;
    }
    for (int i = 0; i < w.hlen && i < 8; i++)
        w.hdr[w.hlen - 1 - i] = (uint8_t)(len >> (8 * i));
    /* Blocking once the kernel refuses the rest: a sender waits for its
     * reader as long as it takes, like the stdlib's. */
    return c_transfer(fd, 1, w.hlen + n, done, 1, fill_write, &w);
}

/* ---- transfers: the C path, then the core ----------------------------------------------- */

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

/* Writes one frame: the C path, and the core for what it hands over. 0,
 * GOMP_EPYERR (exception set) or another negative core result. */
static int64_t write_frame(int fd, const char *buf, int64_t n)
{
    write_ctx w = {fd, buf, n, 0};
    int64_t r = c_write_frame(fd, buf, n, &w.done);
    if (r == HANDOVER) {
        if (gomp_core_ready() < 0)
            return GOMP_EPYERR;
        gomp_deadline d;
        gomp_deadline_set(&d, -1);
        r = gomp_run_fd(write_step, &w, fd, POLLOUT, &d, 0);
    }
    if (r == 0) {
        last_message_ns = now_ns();
        last_was_send = 1;
    }
    return r;
}

/* Fills buf[*done..n): the C path, and the core for what it hands over. 0,
 * GOMP_EEOF, GOMP_EPYERR (exception set) or another negative core result.
 * may_block: see c_transfer. */
static int64_t read_full(int fd, char *buf, int64_t n, int64_t *done, int may_block)
{
    int64_t r = c_read_full(fd, buf, n, done, may_block);
    if (r == 0) {
        last_message_ns = now_ns();
        last_was_send = 0;
    }
    if (r != HANDOVER)
        return r;
    if (gomp_core_ready() < 0)
        return GOMP_EPYERR;
    read_ctx rc = {fd, buf, n, *done};
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    r = gomp_run_fd(read_step, &rc, fd, POLLIN, &d, 0);
    *done = rc.done;
    return r;
}

/* ---- send ---------------------------------------------------------------------------- */

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
        int64_t r = write_frame(fd, (const char *)view.buf + offset, size);
        if (r < 0)
            gomp_run_error(r);
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&view);
    return result;
}

/* ---- receive ------------------------------------------------------------------------- */

static void eof_mid_frame(void)
{
    PyErr_SetString(PyExc_OSError, "got end of file during message");
}

/* Reads a frame header (CPython's: a 4-byte big-endian length, or -1 and an
 * 8-byte length); returns the payload size or -1 with an exception. */
static int64_t recv_header(int fd)
{
    uint8_t h[12];
    int64_t got = 0;
    /* Right after a send the answer is seldom there yet: let the peer run
     * first (on one CPU it is waiting for this one) rather than try a read
     * that would find nothing. Measured against reading first, alternating
     * runs: 0.5-0.6 us less per round trip on one CPU, 0.1-0.8 us on two. */
    if (last_was_send)
        yield_first();
    int64_t r = read_full(fd, (char *)h, 4, &got, 0);
    int32_t short_len = 0;
    if (r == 0) {
        short_len = (int32_t)(((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) |
                              ((uint32_t)h[2] << 8) | (uint32_t)h[3]);
        if (short_len >= 0)
            return short_len;
        if (short_len != -1) {
            gomp_set_error(GOMP_EBADLEN);
            return -1;
        }
        r = read_full(fd, (char *)h, 12, &got, 1);
    }
    if (r == 0) {
        uint64_t long_len = 0;
        for (int i = 4; i < 12; i++)
            long_len = (long_len << 8) | h[i];
        if (long_len <= INT64_MAX)
            return (int64_t)long_len;
        r = GOMP_EBADLEN;
    }
    if (r == GOMP_EEOF && got > 0)
        eof_mid_frame();
    else
        gomp_run_error(r);
    return -1;
}

/* Reads n payload bytes into buf; 0 or -1 with an exception. */
static int recv_into(int fd, char *buf, int64_t n)
{
    int64_t done = 0;
    int64_t r = n > 0 ? read_full(fd, buf, n, &done, 1) : 0;
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
    int64_t done = 0;
    for (;;) {
        if (recv_into(fd, PyBytes_AS_STRING(b) + done, cap - done) < 0) {
            Py_DECREF(b);
            return NULL;
        }
        if (cap == size)
            return b;
        done = cap;
        cap = (size - cap > cap) ? 2 * cap : (Py_ssize_t)size;
        if (_PyBytes_Resize(&b, cap) < 0)
            return NULL;
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
    else {
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

/* ---- one request, one reply ------------------------------------------------------------ */

/* The answer a socket already holds in full, taken with one read. Peeking
 * first (nothing is consumed) tells how long the frame is and whether all of
 * it has arrived; then exactly that frame is read, so a peer that sent more
 * loses nothing. Returns the payload as bytes; NULL without an exception
 * when the answer is not all there yet (*err: -EAGAIN) or this path cannot
 * serve it (*err: another -errno, 0 for end of file, 1 for a frame longer
 * than the peek); NULL with an exception on failure. */
#define PEEK_MAX 4096
static PyObject *take_whole_frame(int fd, int *err)
{
    uint8_t peek[PEEK_MAX];
    ssize_t n;
    do {
        n = recv(fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 4) {
        *err = n < 0 ? -errno : (n == 0 ? 0 : -EAGAIN);
        return NULL;
    }
    int32_t size = (int32_t)(((uint32_t)peek[0] << 24) | ((uint32_t)peek[1] << 16) |
                             ((uint32_t)peek[2] << 8) | (uint32_t)peek[3]);
    if (size < 0 || (int64_t)size + 4 > PEEK_MAX) {
        *err = 1; /* a long or bad header, or a large frame: the general path */
        return NULL;
    }
    if ((int64_t)size + 4 > n) {
        *err = -EAGAIN;
        return NULL;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, size);
    if (b == NULL)
        return NULL;
    uint8_t hdr[4];
    struct iovec iov[2] = {{hdr, 4}, {PyBytes_AS_STRING(b), (size_t)size}};
    do {
        n = readv(fd, iov, size > 0 ? 2 : 1);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)size + 4)
        return b;
    /* Only another reader of the same socket can have taken the bytes. */
    Py_DECREF(b);
    if (n < 0)
        PyErr_SetFromErrno(PyExc_OSError);
    else
        PyErr_SetString(PyExc_OSError, "a message was taken by another reader");
    return NULL;
}

/* Receives the answer to a request just sent. On a quiet machine with a
 * core to spare the answer often lands within microseconds, sooner than a
 * sleeping process is woken (on another CPU that costs more than the whole
 * call), so when spin is set it is looked for in a spin window (see
 * "waiting briefly") before sleeping in wait_ready. On a socket each look is
 * a peek that, once the frame is all there, is followed by the one read
 * that takes it; anything else (a pipe, a large frame, a frame still
 * arriving after the spin) goes the general way once fd is readable. */
static PyObject *recv_answer(int fd, int spin)
{
    int err = -EAGAIN;
    int64_t until = 0; /* the spin window */
    /* The peer has only just been sent the request: let it run first
     * rather than look at once (the answer is never there yet). */
    if (spin)
        yield_first();
    for (;;) {
        int opened = until == 0;
        PyObject *b = take_whole_frame(fd, &err);
        if (b != NULL && until > 0 && spin_ended(until))
            spin_hits++;
        if (b != NULL || PyErr_Occurred())
            return b;
        if (err != -EAGAIN)
            break;
        if (spin_again(&until, spin)) {
            spin_windows += opened;
            continue;
        }
        /* Asleep until something arrives; then the general way, which
         * also waits out a frame that arrives in pieces. */
        int64_t w = wait_ready(fd, POLLIN);
        if (w < 0) {
            gomp_run_error(w);
            return NULL;
        }
        break;
    }
    int64_t size = recv_header(fd);
    if (size < 0)
        return NULL;
    return recv_payload(fd, size);
}

/* exchange(fd, buf, spin=False) -> bytes: send buf as one frame, then receive
 * the peer's answer, one frame (see recv_answer). For request/reply
 * protocols: a manager's proxies and its server. */
static PyObject *m_exchange(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_buffer view;
    int spin = 0;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "exchange(fd, buf, spin=False)");
        return NULL;
    }
    if (gomp_fd_arg(args[0], &fd) < 0)
        return NULL;
    if (nargs > 2 && (spin = PyObject_IsTrue(args[2])) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int64_t r = write_frame(fd, view.buf, view.len);
    PyBuffer_Release(&view);
    if (r < 0) {
        gomp_run_error(r);
        return NULL;
    }
    return recv_answer(fd, spin);
}

/* Whether pickling o with any pickler gives the same bytes as with the
 * stdlib's default one: o is made only of the types that a pickler writes
 * itself before it consults any dispatch table or reducer (None, bool, int,
 * float, str, bytes, and tuples, lists and dicts of them). Bounded: deep or
 * large values answer no (and take the general path). */
static int is_plain(PyObject *o, int depth, Py_ssize_t *budget)
{
    PyTypeObject *t = Py_TYPE(o);
    if (--*budget < 0)
        return 0;
    if (o == Py_None || t == &PyBool_Type || t == &PyLong_Type || t == &PyFloat_Type ||
        t == &PyUnicode_Type || t == &PyBytes_Type)
        return 1;
    if (depth <= 0)
        return 0;
    if (t == &PyTuple_Type || t == &PyList_Type) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        if (n > *budget)
            return 0;
        for (Py_ssize_t i = 0; i < n; i++)
            if (!is_plain(PySequence_Fast_GET_ITEM(o, i), depth - 1, budget))
                return 0;
        return 1;
    }
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        if (PyDict_GET_SIZE(o) > *budget)
            return 0;
        while (PyDict_Next(o, &pos, &k, &v))
            if (!is_plain(k, depth - 1, budget) || !is_plain(v, depth - 1, budget))
                return 0;
        return 1;
    }
    return 0;
}

/* plain(obj) -> bool: see is_plain. */
static PyObject *m_plain(PyObject *self, PyObject *o)
{
    Py_ssize_t budget = 64;
    return PyBool_FromLong(is_plain(o, 4, &budget));
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

static PyObject *m_spin_stats(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("(KK)", (unsigned long long)spin_windows, (unsigned long long)spin_hits);
}

static PyMethodDef conn_methods[] = {
    {"send_bytes", (PyCFunction)(void (*)(void))m_send_bytes, METH_FASTCALL,
     "send_bytes(fd, buf, offset=0, size=None): write buf[offset:offset+size] as one frame."},
    {"recv_bytes", (PyCFunction)(void (*)(void))m_recv_bytes, METH_FASTCALL,
     "recv_bytes(fd, maxlength=None) -> bytes: read one frame."},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))m_recv_bytes_into, METH_FASTCALL,
     "recv_bytes_into(fd, buf, offset=0) -> int, or bytes when the frame does not fit."},
    {"exchange", (PyCFunction)(void (*)(void))m_exchange, METH_FASTCALL,
     "exchange(fd, buf, spin=False) -> bytes: send buf as one frame, receive the answer."},
    {"plain", m_plain, METH_O,
     "plain(obj) -> bool: obj pickles the same with any pickler (plain data only)."},
    {"spin_stats", m_spin_stats, METH_NOARGS,
     "spin_stats() -> (windows, hits): receives that spun after a send, and those it served."},
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
