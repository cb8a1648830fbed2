/* Queue functions of gomp._gomp: the types QueueCore and SimpleQueueCore,
 * bases of gomp.queues.Queue (and JoinableQueue) and gomp.queues.SimpleQueue.
 * An instance is one process's handle on a queue ring in shared memory
 * (gomp/queue in the Go core). put, get, put_nowait, get_nowait, qsize,
 * empty and full are methods of the base, so that a call costs no Python
 * frame; the rest of the API is Python (gomp/queues.py).
 *
 * This file parses arguments, pickles and unpickles (in the caller's thread,
 * with the GIL), owns the ring's memfd, and runs the core's steps through
 * gomp_run() so that every wait releases the GIL and stays interruptible.
 * The ring, its locks and wake-ups, and the overflow that an unbounded put
 * never waits for are the core's, except in a process without a Go runtime:
 * there a new SimpleQueue's ring is made in C and its gets and puts of whole
 * items take the C path (ring.c, see c_path below), and only what it does
 * not serve loads the core.
 *
 * Pickling: an object whose bytes cannot depend on the reducers registered
 * with the ForkingPickler (None, bool, and exact int, float, str, bytes, and
 * short tuples and lists of those) is pickled with pickle.dumps, which gives
 * the same bytes faster; small ints, None and booleans are even encoded here
 * (fast_encode). Anything else goes through the `dumps` callable that the
 * Python class supplies (the ForkingPickler). An object that cannot be
 * pickled goes to the _on_queue_feeder_error(e, obj) hook, as the stdlib's
 * feeder thread hands it (a SimpleQueue raises, as the stdlib's does).
 *
 * Fork: the Go handle belongs to the runtime that issued it. A forked child
 * loads a new runtime (a new generation); the first use of the object there
 * attaches the ring again from the memfd and the eventfd, which the child
 * inherited.
 *
 * Every queue has one readiness eventfd, shared by all its processes (see
 * gomp/queue/watch.go): the core's handle owns this process's copy (it
 * closes it with the ring's mapping), the object keeps its number to hand it
 * on (pickling, fork) and owns it only while no handle of the current
 * generation does (inherited over fork, not attached yet). */
#include "gomp_ext.h"
#include "ring.h"

#include <unistd.h>

/* The claim header of a pool task: job and index, little-endian int64s. */
#define TASK_HDR 16
/* Items up to this size are received on the stack, then copied once. */
#define STACK_ITEM 8192
/* Tuples and lists up to this length are checked for the fast pickling. */
#define FAST_SEQ 16

static PyObject *pickle_dumps, *pickle_loads, *exc_empty, *exc_full;
/* pickle.DEFAULT_PROTOCOL when it is 4 or 5 (the encodings below), else 0. */
static int fast_proto;

/* Sets queue.Empty or queue.Full (name) as the error. The queue module is
 * imported on the first timeout, not when this extension loads: every
 * process that uses a connection or a lock loads it. */
static void set_queue_error(const char *name, PyObject **cache)
{
    if (*cache == NULL) {
        PyObject *mod = PyImport_ImportModule("queue");
        if (mod == NULL)
            return;
        *cache = PyObject_GetAttrString(mod, name);
        Py_DECREF(mod);
        if (*cache == NULL)
            return;
    }
    PyErr_SetNone(*cache);
}

typedef struct {
    PyObject_HEAD
    int64_t h; /* the core's handle, valid while gen is the core's generation */
    long gen;
    int fd;          /* the ring's memfd; -1 once closed */
    int simple;      /* SimpleQueue: put waits for room instead of overflowing */
    char put_closed; /* put (Queue: and get) refused: close() was called */
    char get_closed;
    char used;       /* Queue: this process put (the stdlib's feeder thread would be running) */
    int64_t hint;    /* size of the last item received, when it was large */
    PyObject *dumps; /* pickler for the objects without a fast path */
    int efd;         /* the queue's readiness eventfd: the handle's in generation gen,
                        this object's before (inherited), -1 when there is none */
    int cstate;      /* the C path's mapping (cr): 0 not tried, 1 mapped, -1 not served */
    cring cr;
} QCore;

static PyTypeObject QCoreType, SimpleCoreType;
static long exit_armed_gen; /* generation in which the exit flush was armed */

static int q_ready(QCore *q);

/* Whether a SimpleQueue's get and put take the C path (ring.c): in a process
 * that has no Go runtime loaded (a forked child, such as a pool worker), so
 * that it loads none for them. */
static int c_path(QCore *q)
{
    if (gomp_core_ok || !q->simple || q->fd < 0 || q->cstate < 0)
        return 0;
    if (q->cstate == 0)
        q->cstate = cring_map(&q->cr, q->fd, q->efd) == 0 ? 1 : -1;
    return q->cstate > 0;
}

/* Ready for a get or put: the C path's, or the core's. */
static int q_prepare(QCore *q)
{
    return c_path(q) ? 0 : q_ready(q);
}

/* After a C path operation: the core brings the eventfd level when the C
 * path could not (its lock stayed held). The operation happened whatever
 * this finds: a core that cannot be loaded now leaves the eventfd uneven,
 * and the next watcher levels it (gomp/queue: Watch). */
static void c_settle(QCore *q)
{
    if (!q->cr.level_owed)
        return;
    q->cr.level_owed = 0;
    if (q_ready(q) < 0 || gomp_core.queue_stat(q->h, GOMP_QSTAT_LEVEL) < 0)
        PyErr_Clear();
}

static int q_ready(QCore *q)
{
    if (gomp_core_ready() < 0)
        return -1;
    long g = gomp_core_generation();
    if (q->gen == g)
        return 0;
    if (q->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the queue is closed");
        return -1;
    }
    /* The new handle takes the inherited eventfd over. */
    int64_t h = gomp_core.queue_open(q->fd, q->efd);
    if (h < 0) {
        gomp_set_error(h);
        return -1;
    }
    q->h = h;
    q->gen = g;
    return 0;
}

/* ---- type ----------------------------------------------------------------------------- */

/* QueueCore.__init__(capacity, maxsize=0, flags=0, dumps=None, fd=-1,
 * efd=-1): a new ring, or (fd >= 0) the ring in fd with the queue's eventfd
 * efd, which the object (and its handle) then own. */
static int q_init(QCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "maxsize", "flags", "dumps", "fd", "efd", NULL};
    long long capacity, maxsize = 0, flags = 0;
    int fd = -1, efd = -1;
    PyObject *dumps = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L|LLOii:QueueCore", kwlist, &capacity, &maxsize,
                                     &flags, &dumps, &fd, &efd))
        return -1;
    if (self->gen != 0) {
        PyErr_SetString(PyExc_RuntimeError, "QueueCore is already initialized");
        return -1;
    }
    if (dumps != Py_None && !PyCallable_Check(dumps)) {
        PyErr_SetString(PyExc_TypeError, "dumps must be callable");
        return -1;
    }
    if (fd >= 0 && efd < 0) {
        PyErr_SetString(PyExc_ValueError, "a queue's ring comes with its eventfd");
        return -1;
    }
    self->simple = PyObject_TypeCheck(self, &SimpleCoreType);
    self->put_closed = self->get_closed = 0;
    Py_XSETREF(self->dumps, Py_NewRef(dumps));
    if (fd >= 0 && self->simple && !gomp_core_ok && cring_map(&self->cr, fd, efd) == 0) {
        /* A SimpleQueue received by a process without a Go runtime (a
         * spawned pool worker): the C path serves it, and the core opens the
         * ring only if an operation needs it (q_ready). */
        self->cstate = 1;
        self->fd = fd; /* owned from now on */
        self->efd = efd;
        self->gen = -1; /* initialized, attached to no core yet */
        return 0;
    }
    if (fd < 0 && self->simple && !gomp_core_ok && maxsize <= 0 && flags == 0) {
        /* A new SimpleQueue in a process without a Go runtime (a program
         * that only uses pools): made here, as the core would make it, and
         * served by the C path, so that the runtime is not loaded for it. */
        int nfd, nefd;
        if (cring_create(&self->cr, capacity < 0 ? 0 : (uint64_t)capacity, &nfd, &nefd) == 0) {
            self->cstate = 1;
            self->fd = nfd;
            self->efd = nefd;
            self->gen = -1;
            return 0;
        }
        /* Refused here: the core tries, and reports what it finds. */
    }
    if (gomp_core_ready() < 0)
        return -1;
    int64_t h;
    if (fd >= 0) {
        h = gomp_core.queue_open(fd, efd);
        if (h < 0) {
            gomp_set_error(h);
            return -1;
        }
        self->fd = fd; /* owned from now on */
        self->efd = efd;
    } else {
        int64_t nfd = -1, nefd = -1;
        h = gomp_core.queue_new(capacity, maxsize, flags, &nfd, &nefd);
        if (h < 0) {
            gomp_set_error(h);
            return -1;
        }
        self->fd = (int)nfd;
        self->efd = (int)nefd;
    }
    self->h = h;
    self->gen = gomp_core_generation();
    return 0;
}

static PyObject *q_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    QCore *self = (QCore *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = -1;
        self->efd = -1;
        self->dumps = Py_NewRef(Py_None);
    }
    return (PyObject *)self;
}

static void q_dealloc(QCore *self)
{
    int live = self->gen != 0 && gomp_core_ok && self->gen == gomp_core_generation();
    if (live)
        gomp_core.queue_release(self->h); /* closes the eventfd with the mapping */
    else if (self->efd >= 0)
        close(self->efd); /* inherited, never attached (see q_ready) */
    if (self->fd >= 0)
        close(self->fd);
    cring_unmap(&self->cr);
    Py_CLEAR(self->dumps);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- pickling ------------------------------------------------------------------------- */

static inline int atomic_obj(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    return o == Py_None || t == &PyLong_Type || t == &PyUnicode_Type || t == &PyFloat_Type ||
           t == &PyBytes_Type || t == &PyBool_Type;
}

static int fast_picklable(PyObject *o)
{
    if (atomic_obj(o))
        return 1;
    PyTypeObject *t = Py_TYPE(o);
    Py_ssize_t n;
    PyObject **items;
    if (t == &PyTuple_Type) {
        n = PyTuple_GET_SIZE(o);
        items = &PyTuple_GET_ITEM(o, 0);
    } else if (t == &PyList_Type) {
        n = PyList_GET_SIZE(o);
        items = PySequence_Fast_ITEMS(o);
    } else {
        return 0;
    }
    if (n > FAST_SEQ)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!atomic_obj(items[i]))
            return 0;
    return 1;
}

/* The commonest items, small ints, None and booleans, are encoded and
 * decoded here, byte for byte as pickle.dumps(obj) writes them with protocol
 * 4 or 5: PROTO, then for the ints that take 3 bytes or more a FRAME with the
 * length, the opcode (BININT1 'K', BININT2 'M', BININT 'J', NONE 'N',
 * NEWTRUE, NEWFALSE) and STOP. That saves creating a Pickler and an
 * Unpickler per item. test_queues checks the bytes against pickle.dumps. */
#define FAST_MAX 17

static Py_ssize_t fast_encode(PyObject *o, unsigned char *b)
{
    if (!fast_proto)
        return 0;
    b[0] = 0x80;
    b[1] = (unsigned char)fast_proto;
    if (o == Py_None || o == Py_True || o == Py_False) {
        b[2] = o == Py_None ? 'N' : o == Py_True ? 0x88 : 0x89;
        b[3] = '.';
        return 4;
    }
    if (Py_TYPE(o) != &PyLong_Type)
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || v < -2147483648LL || v > 2147483647LL)
        return 0;
    if (v >= 0 && v < 256) {
        b[2] = 'K';
        b[3] = (unsigned char)v;
        b[4] = '.';
        return 5;
    }
    int wide = !(v >= 0 && v < 65536);
    b[2] = 0x95; /* FRAME, 8-byte little-endian length */
    b[3] = wide ? 6 : 4;
    memset(b + 4, 0, 7);
    b[11] = wide ? 'J' : 'M';
    uint32_t u = (uint32_t)(int32_t)v;
    b[12] = u & 0xff;
    b[13] = (u >> 8) & 0xff;
    if (!wide) {
        b[14] = '.';
        return 15;
    }
    b[14] = (u >> 16) & 0xff;
    b[15] = (u >> 24) & 0xff;
    b[16] = '.';
    return 17;
}

/* The object of a pickle that fast_encode writes, or NULL (no exception
 * set) for any other bytes. */
static PyObject *fast_decode(const unsigned char *b, int64_t n)
{
    if (n < 4 || n > FAST_MAX || b[0] != 0x80 || (b[1] != 4 && b[1] != 5) || b[n - 1] != '.')
        return NULL;
    if (n == 4) {
        switch (b[2]) {
        case 'N':
            Py_RETURN_NONE;
        case 0x88:
            Py_RETURN_TRUE;
        case 0x89:
            Py_RETURN_FALSE;
        }
        return NULL;
    }
    if (n == 5)
        return b[2] == 'K' ? PyLong_FromLong(b[3]) : NULL;
    if ((n != 15 && n != 17) || b[2] != 0x95 || b[3] != n - 11)
        return NULL;
    for (int i = 4; i < 11; i++)
        if (b[i] != 0)
            return NULL;
    if (n == 15)
        return b[11] == 'M' ? PyLong_FromLong(b[12] | (b[13] << 8)) : NULL;
    if (b[11] != 'J')
        return NULL;
    uint32_t u = (uint32_t)b[12] | ((uint32_t)b[13] << 8) | ((uint32_t)b[14] << 16) |
                 ((uint32_t)b[15] << 24);
    return PyLong_FromLong((int32_t)u);
}

/* The pickle of obj (a new reference to a bytes-like object), or NULL. */
static PyObject *q_pickle(QCore *self, PyObject *obj)
{
    if (self->dumps == Py_None || fast_picklable(obj))
        return PyObject_CallOneArg(pickle_dumps, obj);
    return PyObject_CallOneArg(self->dumps, obj);
}

/* ---- put ------------------------------------------------------------------------------ */

typedef struct {
    int64_t h;
    const void *buf;
    int64_t n;
    gomp_qput st;
} put_ctx;

static int64_t put_step(void *c, int ms)
{
    put_ctx *p = c;
    return gomp_core.queue_put(p->h, p->buf, p->n, &p->st, ms);
}

static int64_t write_step(void *c, int ms)
{
    put_ctx *p = c;
    return gomp_core.queue_write(p->h, p->buf, p->n, &p->st, ms);
}

static PyObject *closed_error(QCore *self)
{
    if (self->simple)
        PyErr_SetString(PyExc_OSError, "handle is closed");
    else
        PyErr_Format(PyExc_ValueError, "Queue %R is closed", (PyObject *)self);
    return NULL;
}

typedef struct {
    cring *r;
    const void *buf;
    int64_t n;
} cput_ctx;

static int64_t cwrite_step(void *c, int ms)
{
    cput_ctx *p = c;
    return cring_write(p->r, p->buf, p->n, ms);
}

/* Puts the n bytes at buf: 0 (in the ring), 1 (in the overflow), or -1 with
 * an exception (queue.Full when d passed first). */
static int64_t put_data(QCore *self, const void *buf, Py_ssize_t n, gomp_deadline *d)
{
    if (c_path(self)) {
        cput_ctx c = {&self->cr, buf, n};
        int64_t r = gomp_run(cwrite_step, &c, d, 1);
        if (r != RING_USE_CORE) {
            c_settle(self);
            if (r >= 0)
                return r;
            if (r == GOMP_TIMEDOUT)
                set_queue_error("Full", &exc_full);
            else
                gomp_run_error(r);
            return -1;
        }
    }
    if (q_ready(self) < 0)
        return -1;
    put_ctx p = {self->h, buf, n, {0}};
    int64_t r = gomp_run(self->simple ? write_step : put_step, &p, d, 1);
    if (r == GOMP_TIMEDOUT && !self->simple) {
        /* A bounded put waits for its item to be in the ring; out of time,
         * it keeps the item in this process's overflow if a slot is free:
         * Full means maxsize items, as with the stdlib. */
        p.st.mode = GOMP_QPUT_MAY_BUFFER;
        r = put_step(&p, 0);
        if (r == GOMP_EAGAIN)
            r = GOMP_TIMEDOUT;
    }
    if (r >= 0)
        return r;
    /* Give back the producer lock (a streamed item cut short is dropped by
     * the consumers) and the slot a bounded put may hold. */
    gomp_core.queue_put_abort(self->h, &p.st);
    if (r == GOMP_TIMEDOUT)
        set_queue_error("Full", &exc_full);
    else
        gomp_run_error(r);
    return -1;
}

/* Pickling obj failed (the exception is set): hand it to
 * self._on_queue_feeder_error(e, obj), as the exception being handled (so that
 * the default hook's traceback.print_exc() shows it); the item is dropped. */
static PyObject *feeder_error(QCore *self, PyObject *obj)
{
    PyObject *exc = gomp_take_exception();
    if (exc == NULL)
        return NULL;
    PyObject *et, *ev, *etb;
    PyErr_GetExcInfo(&et, &ev, &etb);
    PyErr_SetExcInfo(Py_NewRef((PyObject *)Py_TYPE(exc)), Py_NewRef(exc),
                     PyException_GetTraceback(exc));
    PyObject *res = PyObject_CallMethod((PyObject *)self, "_on_queue_feeder_error", "OO", exc, obj);
    PyErr_SetExcInfo(et, ev, etb);
    Py_DECREF(exc);
    if (res == NULL)
        return NULL;
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* The body of put: pickle (fast path or dumps), then into the ring. */
static PyObject *put_obj(QCore *self, PyObject *obj, gomp_deadline *d)
{
    if (self->put_closed)
        return closed_error(self);
    if (q_prepare(self) < 0)
        return NULL;
    self->used = 1;
    unsigned char small[FAST_MAX];
    Py_ssize_t sn = fast_encode(obj, small);
    int64_t r;
    if (sn > 0) {
        r = put_data(self, small, sn, d);
    } else {
        PyObject *data = q_pickle(self, obj);
        if (data == NULL) {
            if (self->simple || !PyErr_ExceptionMatches(PyExc_Exception))
                return NULL;
            return feeder_error(self, obj);
        }
        Py_buffer view;
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(data);
            return NULL;
        }
        r = put_data(self, view.buf, view.len, d);
        PyBuffer_Release(&view);
        Py_DECREF(data);
    }
    if (r < 0)
        return NULL;
    if (r == 1 && exit_armed_gen != gomp_core_generation()) {
        /* The first item of this process image to wait in an overflow: have
         * the exit feed the overflows before the process ends. */
        PyObject *res = PyObject_CallMethod((PyObject *)self, "_overflowed", NULL);
        if (res == NULL)
            return NULL;
        Py_DECREF(res);
        exit_armed_gen = gomp_core_generation();
    }
    Py_RETURN_NONE;
}

static const char *const put_names[] = {"obj", "block", "timeout"};
static const char *const get_names[] = {"block", "timeout"};

/* Queue.put(obj, block=True, timeout=None): see gomp.queues. */
static PyObject *q_put(QCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3];
    if (gomp_parse_args("put", args, nargs, kwnames, put_names, 3, 1, a) < 0)
        return NULL;
    gomp_deadline d;
    if (gomp_deadline_block(&d, a[1], a[2]) < 0)
        return NULL;
    return put_obj(self, a[0], &d);
}

static PyObject *q_put_nowait(QCore *self, PyObject *obj)
{
    gomp_deadline d;
    gomp_deadline_set(&d, 0);
    return put_obj(self, obj, &d);
}

/* SimpleQueue.put(obj): waits for room in the ring. */
static PyObject *s_put(QCore *self, PyObject *obj)
{
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    return put_obj(self, obj, &d);
}

/* ---- get ------------------------------------------------------------------------------ */

/* One get into buf: through the core's handle h, or the C path's ring r. */
typedef struct {
    int64_t h;
    char *buf;
    int64_t cap;
    gomp_qget st;
    cring *r;
} get_ctx;

static int64_t get_step(void *c, int ms)
{
    get_ctx *g = c;
    return gomp_core.queue_get(g->h, g->buf, g->cap, &g->st, ms);
}

static int64_t cget_step(void *c, int ms)
{
    get_ctx *g = c;
    return cring_get(g->r, g->buf, g->cap, (int)g->st.claim - 1, ms);
}

/* One get into g's buffer: the C path's while it serves (then g's handle is
 * not used), else the core's. */
static int64_t take_step_run(QCore *self, get_ctx *g, gomp_deadline *d)
{
    if (c_path(self)) {
        g->r = &self->cr;
        int64_t r = gomp_run(cget_step, g, d, 1);
        if (r != RING_USE_CORE) {
            c_settle(self);
            return r;
        }
    }
    if (q_ready(self) < 0)
        return GOMP_EPYERR;
    g->h = self->h;
    return gomp_run(get_step, g, d, 1);
}

/* The object pickled after a pool task's 16-byte claim header (see
 * _put_task) in the n bytes at b. */
static PyObject *task_decode(const char *b, int64_t n)
{
    if (n < TASK_HDR) {
        PyErr_SetString(PyExc_ValueError, "not a pool task: too short for its header");
        return NULL;
    }
    PyObject *view = PyMemoryView_FromMemory((char *)b + TASK_HDR, n - TASK_HDR, PyBUF_READ);
    if (view == NULL)
        return NULL;
    PyObject *o = PyObject_CallOneArg(pickle_loads, view);
    Py_DECREF(view);
    return o;
}

/* Takes the next item. With decode, returns the object (fast_decode or
 * pickle.loads); otherwise its pickle as bytes. claim >= 0 takes a pool task
 * (decode is implied): the item's claim header is skipped, and claim > 0
 * (slot + 1) claims it in that slot as it is taken (gomp/queue/claim.go).
 * NULL with queue.Empty on timeout, or another exception. */
static PyObject *q_take(QCore *self, gomp_deadline *d, int decode, int report, int64_t claim)
{
    char stack[STACK_ITEM];
    PyObject *big = NULL;
    get_ctx g = {self->h, stack, sizeof stack, {0}};
    g.st.report = report;
    g.st.claim = claim > 0 ? claim : 0;
    if (self->hint > STACK_ITEM) {
        /* Large items tend to follow each other: receive into a bytes object
         * of the last one's size at once instead of asking for the size. */
        big = PyBytes_FromStringAndSize(NULL, self->hint);
        if (big == NULL)
            return NULL;
        g.buf = PyBytes_AS_STRING(big);
        g.cap = self->hint;
    }
    for (;;) {
        int64_t r = take_step_run(self, &g, d);
        if (r == GOMP_TIMEDOUT && g.st.mid) {
            /* An item is half received: finish it whatever the timeout, as a
             * pipe reader finishes the message it started. */
            gomp_deadline_set(d, -1);
            continue;
        }
        if (r < 0) {
            if (g.st.locked) /* only the core's get holds the lock across calls */
                gomp_core.queue_get_abort(self->h, &g.st);
            Py_XDECREF(big);
            if (r == GOMP_TIMEDOUT)
                set_queue_error("Empty", &exc_empty);
            else if (r == GOMP_QLOST)
                PyErr_SetString(PyExc_OSError, "the item being received was cut short: its "
                                               "producer died while putting it");
            else
                gomp_run_error(r);
            return NULL;
        }
        if (r <= g.cap) {
            self->hint = r > STACK_ITEM ? r : 0;
            if (claim >= 0) {
                PyObject *o = task_decode(big ? PyBytes_AS_STRING(big) : stack, r);
                Py_XDECREF(big);
                return o;
            }
            if (big == NULL) {
                if (decode) {
                    PyObject *o = fast_decode((const unsigned char *)stack, r);
                    if (o != NULL)
                        return o;
                }
                big = PyBytes_FromStringAndSize(stack, r);
                if (big == NULL)
                    return NULL;
            } else if (r < g.cap && _PyBytes_Resize(&big, r) < 0) {
                return NULL;
            }
            if (!decode)
                return big;
            PyObject *o = PyObject_CallOneArg(pickle_loads, big);
            Py_DECREF(big);
            return o;
        }
        /* Larger than the buffer: it stays in the ring until we have room. */
        Py_XDECREF(big);
        if (r > PY_SSIZE_T_MAX - 64)
            return PyErr_NoMemory();
        big = PyBytes_FromStringAndSize(NULL, r);
        if (big == NULL)
            return NULL;
        g.buf = PyBytes_AS_STRING(big);
        g.cap = r;
    }
}

static PyObject *get_obj(QCore *self, gomp_deadline *d)
{
    if (self->get_closed)
        return closed_error(self);
    if (q_prepare(self) < 0)
        return NULL;
    return q_take(self, d, 1, 0, -1);
}

/* Queue.get(block=True, timeout=None): see gomp.queues. */
static PyObject *q_get(QCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[2];
    if (gomp_parse_args("get", args, nargs, kwnames, get_names, 2, 0, a) < 0)
        return NULL;
    gomp_deadline d;
    if (gomp_deadline_block(&d, a[0], a[1]) < 0)
        return NULL;
    return get_obj(self, &d);
}

static PyObject *q_get_nowait(QCore *self, PyObject *noargs)
{
    gomp_deadline d;
    gomp_deadline_set(&d, 0);
    return get_obj(self, &d);
}

/* SimpleQueue.get(): waits for an item. */
static PyObject *s_get(QCore *self, PyObject *noargs)
{
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    return get_obj(self, &d);
}

/* get_bytes(block=True, timeout=None) -> the next item's pickle as bytes. */
static PyObject *q_get_raw(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    gomp_deadline d;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_bytes(block=True, timeout=None)");
        return NULL;
    }
    if (gomp_deadline_block(&d, nargs > 0 ? args[0] : NULL, nargs > 1 ? args[1] : NULL) < 0)
        return NULL;
    if (q_prepare(self) < 0)
        return NULL;
    return q_take(self, &d, 0, 0, -1);
}

/* ---- pool tasks: claimed as they are taken (gomp/queue/claim.go) ---------------------- */

static void put_le64(unsigned char *b, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(u >> (8 * k));
}

/* _put_task(job, index, obj): puts obj pickled behind the claim header
 * (job, index), waiting for room (a SimpleQueue's put). A job below 0 marks
 * an item no worker claims (the end-of-work None). */
static PyObject *q_put_task(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_put_task(job, index, obj)");
        return NULL;
    }
    long long job = PyLong_AsLongLong(args[0]);
    if (job == -1 && PyErr_Occurred())
        return NULL;
    long long idx = PyLong_AsLongLong(args[1]);
    if (idx == -1 && PyErr_Occurred())
        return NULL;
    if (self->put_closed)
        return closed_error(self);
    if (q_prepare(self) < 0)
        return NULL;
    self->used = 1;
    PyObject *data = q_pickle(self, args[2]);
    if (data == NULL)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    unsigned char small[STACK_ITEM];
    unsigned char *buf = small;
    Py_ssize_t n = view.len + TASK_HDR;
    if (n > (Py_ssize_t)sizeof small && (buf = PyMem_Malloc((size_t)n)) == NULL) {
        PyBuffer_Release(&view);
        Py_DECREF(data);
        return PyErr_NoMemory();
    }
    put_le64(buf, job < 0 ? -1 : job);
    put_le64(buf + 8, idx);
    memcpy(buf + TASK_HDR, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    Py_DECREF(data);
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    int64_t r = put_data(self, buf, n, &d);
    if (buf != small)
        PyMem_Free(buf);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _get_task(slot) -> the next pool task, waiting for it; slot >= 0 claims
 * it in that claim slot in the step that takes it out of the ring. */
static PyObject *q_get_task(QCore *self, PyObject *arg)
{
    long long slot = PyLong_AsLongLong(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (self->get_closed)
        return closed_error(self);
    if (q_prepare(self) < 0)
        return NULL;
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    return q_take(self, &d, 1, 0, slot >= 0 ? slot + 1 : 0);
}

/* The claim slots of a ring (gomp/queue/claim.go: NumClaims). */
#define NUM_CLAIMS 176

static PyObject *q_num_claims(QCore *self, PyObject *noargs)
{
    return PyLong_FromLong(NUM_CLAIMS);
}

typedef struct {
    int64_t h, slot;
    int64_t out[2];
} claim_ctx;

static int64_t claim_step(void *c, int ms)
{
    claim_ctx *k = c;
    return gomp_core.queue_take_claim(k->h, k->slot, k->out, ms);
}

typedef struct {
    cring *r;
    int slot;
    int64_t *out;
} cclaim_ctx;

static int64_t cclaim_step(void *c, int ms)
{
    cclaim_ctx *k = c;
    return cring_take_claim(k->r, k->slot, k->out, ms);
}

/* _take_claim(slot) -> (job, index) of the task claimed in slot, or None;
 * the slot is empty afterwards. For the pool, once the slot's worker is gone
 * (or by the worker itself). */
static PyObject *q_take_claim(QCore *self, PyObject *arg)
{
    long long slot = PyLong_AsLongLong(arg);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    claim_ctx k = {self->h, slot, {0, 0}};
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    int64_t r = RING_USE_CORE;
    if (slot >= 0 && slot < NUM_CLAIMS && c_path(self)) {
        cclaim_ctx c = {&self->cr, (int)slot, k.out};
        r = gomp_run(cclaim_step, &c, &d, 1);
    }
    if (r == RING_USE_CORE) {
        if (q_ready(self) < 0)
            return NULL;
        k.h = self->h;
        r = gomp_run(claim_step, &k, &d, 1);
    }
    if (r < 0)
        return gomp_run_error(r);
    if (r == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(LL)", (long long)k.out[0], (long long)k.out[1]);
}

/* ---- the reader end: readiness descriptor, recv, poll --------------------------------- */

static PyObject *handle_closed(void)
{
    PyErr_SetString(PyExc_OSError, "handle is closed");
    return NULL;
}

/* _recv(decode=True) -> the next item (decode: unpickled, else its pickle),
 * waiting for it: the reader end's recv(). An item cut short by the death of
 * its producer raises OSError (get() drops it and goes on). */
static PyObject *q_recv(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int decode = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "_recv(decode=True)");
        return NULL;
    }
    if (nargs == 1 && (decode = PyObject_IsTrue(args[0])) < 0)
        return NULL;
    if (self->get_closed)
        return handle_closed();
    if (q_prepare(self) < 0)
        return NULL;
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    return q_take(self, &d, decode, 1, -1);
}

typedef struct {
    int64_t h;
} poll_ctx;

static int64_t poll_step(void *c, int ms)
{
    return gomp_core.queue_poll(((poll_ctx *)c)->h, ms);
}

/* _poll(timeout=0.0) -> bool: whether the queue holds an item, waiting at
 * most timeout seconds (None: no limit). */
static PyObject *q_poll(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "_poll(timeout=0.0)");
        return NULL;
    }
    if (self->get_closed)
        return handle_closed();
    gomp_deadline d;
    if (nargs == 0)
        gomp_deadline_set(&d, 0);
    else if (gomp_deadline_init(&d, args[0]) < 0)
        return NULL;
    if (q_ready(self) < 0)
        return NULL;
    poll_ctx p = {self->h};
    int64_t r = gomp_run(poll_step, &p, &d, 1);
    if (r == GOMP_TIMEDOUT)
        Py_RETURN_FALSE;
    if (r < 0)
        return gomp_run_error(r);
    Py_RETURN_TRUE;
}

/* _watch() -> int: the queue's eventfd, readable while the queue holds an
 * item; the handle counts as a watcher from now on, so that consumers keep
 * it level (see gomp/queue/watch.go). */
static PyObject *q_watch(QCore *self, PyObject *noargs)
{
    if (self->get_closed)
        return handle_closed();
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_watch(self->h);
    if (r < 0)
        return gomp_set_error(r);
    return PyLong_FromLongLong(r);
}

/* _unwatch(): the handle no longer counts as a watcher (the eventfd stays
 * open: it is the queue's). */
static PyObject *q_unwatch(QCore *self, PyObject *noargs)
{
    if (self->gen != 0 && gomp_core_ok && self->gen == gomp_core_generation()) {
        int64_t r = gomp_core.queue_unwatch(self->h);
        if (r < 0)
            return gomp_set_error(r);
    }
    Py_RETURN_NONE;
}

/* _discard(): this process gives the queue up: its overflow is dropped. */
static PyObject *q_discard(QCore *self, PyObject *noargs)
{
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_discard(self->h);
    if (r < 0)
        return gomp_set_error(r);
    Py_RETURN_NONE;
}

/* put_bytes(buf) -> 0/1: puts an already pickled item (as put does). */
static PyObject *q_put_raw(QCore *self, PyObject *arg)
{
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    if (q_ready(self) < 0)
        return NULL;
    self->used = 1;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    put_ctx p = {self->h, view.buf, view.len, {0}};
    int64_t r = gomp_run(self->simple ? write_step : put_step, &p, &d, 1);
    PyBuffer_Release(&view);
    if (r < 0) {
        gomp_core.queue_put_abort(self->h, &p.st);
        return gomp_run_error(r);
    }
    return PyLong_FromLongLong(r);
}

/* ---- counts, flush, join -------------------------------------------------------------- */

static PyObject *q_stat(QCore *self, PyObject *arg)
{
    long what = PyLong_AsLong(arg);
    if (what == -1 && PyErr_Occurred())
        return NULL;
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_stat(self->h, what);
    return r < 0 ? gomp_set_error(r) : PyLong_FromLongLong(r);
}

static PyObject *q_qsize(QCore *self, PyObject *noargs)
{
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_stat(self->h, GOMP_QSTAT_QSIZE);
    return r < 0 ? gomp_set_error(r) : PyLong_FromLongLong(r);
}

static PyObject *q_empty(QCore *self, PyObject *noargs)
{
    /* The stdlib polls its reader here: closed by SimpleQueue.close(), by
     * _reader.close(), or (Queue) by the feeder thread that the first put in
     * this process started, once close() is called. */
    if (self->get_closed && (self->simple || self->used || !self->put_closed)) {
        PyErr_SetString(PyExc_OSError, "handle is closed");
        return NULL;
    }
    if (c_path(self)) {
        int empty = cring_empty(&self->cr);
        c_settle(self);
        return PyBool_FromLong(empty);
    }
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_stat(self->h, GOMP_QSTAT_EMPTY);
    return r < 0 ? gomp_set_error(r) : PyBool_FromLong(r != 0);
}

static PyObject *q_full(QCore *self, PyObject *noargs)
{
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_stat(self->h, GOMP_QSTAT_FULL);
    return r < 0 ? gomp_set_error(r) : PyBool_FromLong(r != 0);
}

typedef struct {
    int64_t h;
    int join; /* 1: queue_join, 0: queue_flush, -1: queue_flush_all */
} wait_ctx;

static int64_t wait_step(void *c, int ms)
{
    wait_ctx *w = c;
    if (w->join > 0)
        return gomp_core.queue_join(w->h, ms);
    if (w->join == 0)
        return gomp_core.queue_flush(w->h, ms);
    return gomp_core.queue_flush_all(ms);
}

static PyObject *run_wait(wait_ctx *w, PyObject *timeout)
{
    gomp_deadline d;
    if (gomp_deadline_init(&d, timeout) < 0)
        return NULL;
    int64_t r = gomp_run(wait_step, w, &d, 1);
    if (r == GOMP_TIMEDOUT)
        Py_RETURN_FALSE;
    if (r < 0)
        return gomp_run_error(r);
    Py_RETURN_TRUE;
}

/* flush(timeout=None) -> bool: waits until this process's overflow of the
 * queue is in the ring; False on timeout. */
static PyObject *q_flush(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (q_ready(self) < 0)
        return NULL;
    wait_ctx w = {self->h, 0};
    return run_wait(&w, nargs > 0 ? args[0] : NULL);
}

/* join(timeout=None) -> bool: waits until every task is done. */
static PyObject *q_join(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (q_ready(self) < 0)
        return NULL;
    wait_ctx w = {self->h, 1};
    return run_wait(&w, nargs > 0 ? args[0] : NULL);
}

static PyObject *q_task_done(QCore *self, PyObject *noargs)
{
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_task_done(self->h);
    if (r < 0)
        return gomp_set_error(r);
    if (r == 1) {
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *q_cancel_join(QCore *self, PyObject *noargs)
{
    if (q_ready(self) < 0)
        return NULL;
    int64_t r = gomp_core.queue_cancel_join(self->h);
    if (r < 0)
        return gomp_set_error(r);
    Py_RETURN_NONE;
}

/* close(): closes the memfd. The ring stays usable in this process (and
 * its overflow keeps being fed) until the object goes. */
static PyObject *q_close(QCore *self, PyObject *noargs)
{
    /* A process that has not mapped the ring (a forked child that did not use
     * the queue before Queue.close()) keeps the descriptor, as it may still
     * need it: qsize(), empty() and full() work after close(), as with the
     * stdlib. It is closed with the object. */
    if (self->fd >= 0 && !self->simple && !gomp_core_current(self->gen))
        Py_RETURN_NONE;
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *q_ring_closed(QCore *self, PyObject *noargs)
{
    return PyBool_FromLong(self->fd < 0);
}

static PyObject *q_fileno(QCore *self, PyObject *noargs)
{
    if (self->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the queue is closed");
        return NULL;
    }
    return PyLong_FromLong(self->fd);
}

/* _eventfd() -> int: the queue's eventfd (to hand on with the memfd). */
static PyObject *q_eventfd(QCore *self, PyObject *noargs)
{
    if (self->fd < 0 || self->efd < 0) {
        PyErr_SetString(PyExc_ValueError, "the queue is closed");
        return NULL;
    }
    return PyLong_FromLong(self->efd);
}

static PyObject *flag_get(QCore *self, void *which)
{
    char *f = which == NULL ? &self->put_closed : &self->get_closed;
    if (which == (void *)3)
        return PyBool_FromLong(self->used);
    if (which == (void *)2)
        return PyBool_FromLong(self->put_closed || self->get_closed);
    return PyBool_FromLong(*f);
}

static int flag_set(QCore *self, PyObject *v, void *which)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a closed flag");
        return -1;
    }
    int b = PyObject_IsTrue(v);
    if (b < 0)
        return -1;
    if (which == (void *)3)
        self->used = (char)b;
    else if (which == (void *)2)
        self->put_closed = self->get_closed = (char)b;
    else if (which == NULL)
        self->put_closed = (char)b;
    else
        self->get_closed = (char)b;
    return 0;
}

/* A list of initializers, one a line. */
/* clang-format off */
#define PRIVATE_METHODS                                                                            \
    {"_get_bytes", (PyCFunction)(void (*)(void))q_get_raw, METH_FASTCALL,                          \
     "_get_bytes(block=True, timeout=None) -> the next item's pickle."},                           \
    {"_put_bytes", (PyCFunction)q_put_raw, METH_O, "_put_bytes(data): put an item pickled."},      \
    {"_stat", (PyCFunction)q_stat, METH_O, "_stat(what) -> one of the core's figures."},           \
    {"_flush", (PyCFunction)(void (*)(void))q_flush, METH_FASTCALL,                                \
     "_flush(timeout=None) -> bool: wait until this process's overflow is in the ring."},          \
    {"_join_tasks", (PyCFunction)(void (*)(void))q_join, METH_FASTCALL,                            \
     "_join_tasks(timeout=None) -> bool: wait until every task is done."},                         \
    {"_task_done", (PyCFunction)q_task_done, METH_NOARGS, "Mark one task done."},                  \
    {"_cancel_join", (PyCFunction)q_cancel_join, METH_NOARGS,                                      \
     "Do not wait for this queue's overflow at exit."},                                            \
    {"_close_ring", (PyCFunction)q_close, METH_NOARGS, "Close the ring's memfd."},                 \
    {"_fileno", (PyCFunction)q_fileno, METH_NOARGS, "The ring's memfd."},                          \
    {"_eventfd", (PyCFunction)q_eventfd, METH_NOARGS, "The queue's readiness eventfd."},           \
    {"_ring_closed", (PyCFunction)q_ring_closed, METH_NOARGS, "Whether the memfd is closed."},     \
    {"_recv", (PyCFunction)(void (*)(void))q_recv, METH_FASTCALL,                                  \
     "_recv(decode=True) -> the next item, waiting for it (the reader end's recv)."},              \
    {"_poll", (PyCFunction)(void (*)(void))q_poll, METH_FASTCALL,                                  \
     "_poll(timeout=0.0) -> bool: whether an item is there, waiting at most timeout."},            \
    {"_watch", (PyCFunction)q_watch, METH_NOARGS,                                                  \
     "_watch() -> fd readable while the queue holds an item (the queue's eventfd)."},              \
    {"_unwatch", (PyCFunction)q_unwatch, METH_NOARGS, "Stop counting as a watcher."},              \
    {"_discard", (PyCFunction)q_discard, METH_NOARGS,                                              \
     "Give the queue up: drop this process's overflow, do not wait for it at exit."},              \
    {"_put_task", (PyCFunction)(void (*)(void))q_put_task, METH_FASTCALL,                          \
     "_put_task(job, index, obj): put a pool task, claimable by the worker taking it."},           \
    {"_get_task", (PyCFunction)q_get_task, METH_O,                                                 \
     "_get_task(slot) -> the next pool task, claimed in slot (>= 0) as it is taken."},             \
    {"_take_claim", (PyCFunction)q_take_claim, METH_O,                                             \
     "_take_claim(slot) -> (job, index) claimed in slot, or None; empties the slot."},             \
    {"_num_claims", (PyCFunction)q_num_claims, METH_NOARGS, "The number of claim slots."}
/* clang-format on */

static PyMethodDef q_methods[] = {
    {"put", (PyCFunction)(void (*)(void))q_put, METH_FASTCALL | METH_KEYWORDS,
     "put(obj, block=True, timeout=None)\n--\n\nPut obj into the queue."},
    {"get", (PyCFunction)(void (*)(void))q_get, METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None)\n--\n\nRemove and return the next item."},
    {"put_nowait", (PyCFunction)q_put_nowait, METH_O, "put_nowait(obj): put(obj, False)."},
    {"get_nowait", (PyCFunction)q_get_nowait, METH_NOARGS, "get_nowait(): get(False)."},
    {"qsize", (PyCFunction)q_qsize, METH_NOARGS, "The number of items put and not yet got."},
    {"empty", (PyCFunction)q_empty, METH_NOARGS, "Whether the queue holds no item now."},
    {"full", (PyCFunction)q_full, METH_NOARGS, "Whether a bounded queue is full."},
    PRIVATE_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef s_methods[] = {
    {"put", (PyCFunction)s_put, METH_O, "put(obj)\n--\n\nPut obj into the queue."},
    {"get", (PyCFunction)s_get, METH_NOARGS, "get()\n--\n\nRemove and return the next item."},
    {"empty", (PyCFunction)q_empty, METH_NOARGS, "Whether the queue holds no item now."},
    PRIVATE_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef q_getset[] = {
    {"_closed", (getter)flag_get, (setter)flag_set, "close() was called.", (void *)2},
    {"_put_closed", (getter)flag_get, (setter)flag_set, "put is refused.", NULL},
    {"_get_closed", (getter)flag_get, (setter)flag_set, "get is refused.", (void *)1},
    {"_used", (getter)flag_get, (setter)flag_set, "this process put an item.", (void *)3},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject QCoreType = {
    /* The macro ends with a comma of its own. */
    /* clang-format off */
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gomp._gomp.QueueCore",
    /* clang-format on */
    .tp_basicsize = sizeof(QCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Base of gomp.queues.Queue: a queue ring in shared memory (private).",
    .tp_new = q_new,
    .tp_init = (initproc)q_init,
    .tp_dealloc = (destructor)q_dealloc,
    .tp_methods = q_methods,
    .tp_getset = q_getset,
};

static PyTypeObject SimpleCoreType = {
    /* The macro ends with a comma of its own. */
    /* clang-format off */
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gomp._gomp.SimpleQueueCore",
    /* clang-format on */
    .tp_basicsize = sizeof(QCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Base of gomp.queues.SimpleQueue: a queue ring in shared memory (private).",
    .tp_new = q_new,
    .tp_init = (initproc)q_init,
    .tp_dealloc = (destructor)q_dealloc,
    .tp_methods = s_methods,
    .tp_getset = q_getset,
};

/* queue_flush_all(timeout=None) -> bool: waits until every queue of this
 * process (but those whose join was cancelled) has its overflow in its ring. */
static PyObject *m_queue_flush_all(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (!gomp_core_ok)
        Py_RETURN_TRUE; /* no runtime in this process image: nothing buffered */
    if (gomp_core_ready() < 0)
        return NULL;
    wait_ctx w = {0, -1};
    return run_wait(&w, nargs > 0 ? args[0] : NULL);
}

static PyMethodDef queue_functions[] = {
    {"queue_flush_all", (PyCFunction)(void (*)(void))m_queue_flush_all, METH_FASTCALL,
     "queue_flush_all(timeout=None) -> bool: wait until every queue's overflow is fed."},
    {NULL, NULL, 0, NULL},
};

int gomp_queue_init(PyObject *m)
{
    /* The C pickler's functions (what pickle.dumps and pickle.loads are):
     * the pickle module would import re and enum into every process that
     * loads this extension. */
    PyObject *mod = PyImport_ImportModule("_pickle");
    if (mod == NULL) {
        PyErr_Clear();
        mod = PyImport_ImportModule("pickle");
    }
    if (mod == NULL)
        return -1;
    pickle_dumps = PyObject_GetAttrString(mod, "dumps");
    pickle_loads = PyObject_GetAttrString(mod, "loads");
    Py_DECREF(mod);
    if (pickle_dumps == NULL || pickle_loads == NULL)
        return -1;
    /* The default protocol is the one dumps() writes in its PROTO opcode. */
    PyObject *none_pickle = PyObject_CallOneArg(pickle_dumps, Py_None);
    if (none_pickle == NULL)
        return -1;
    const unsigned char *np = (const unsigned char *)PyBytes_AS_STRING(none_pickle);
    long pv = PyBytes_GET_SIZE(none_pickle) > 1 && np[0] == 0x80 ? np[1] : 0;
    Py_DECREF(none_pickle);
    fast_proto = (pv == 4 || pv == 5) ? (int)pv : 0;
    if (PyType_Ready(&QCoreType) < 0 || PyType_Ready(&SimpleCoreType) < 0)
        return -1;
    if (PyModule_AddObjectRef(m, "QueueCore", (PyObject *)&QCoreType) < 0 ||
        PyModule_AddObjectRef(m, "SimpleQueueCore", (PyObject *)&SimpleCoreType) < 0)
        return -1;
#define ADD(name) PyModule_AddIntConstant(m, #name, name)
    if (ADD(GOMP_QSTAT_QSIZE) < 0 || ADD(GOMP_QSTAT_EMPTY) < 0 || ADD(GOMP_QSTAT_FULL) < 0 ||
        ADD(GOMP_QSTAT_PENDING) < 0 || ADD(GOMP_QSTAT_UNFINISHED) < 0 ||
        ADD(GOMP_QSTAT_CAPACITY) < 0 || ADD(GOMP_QSTAT_MAXSIZE) < 0 || ADD(GOMP_QSTAT_FLAGS) < 0)
        return -1;
#undef ADD
    return PyModule_AddFunctions(m, queue_functions);
}
