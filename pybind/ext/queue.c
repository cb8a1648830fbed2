/* Queue functions of gomp._gomp: the type QueueCore, one process's handle on
 * a queue ring in shared memory (gomp/queue in the Go core), for
 * gomp.queues.Queue, JoinableQueue and SimpleQueue.
 *
 * This file parses arguments, pickles and unpickles (in the caller's thread,
 * with the GIL), owns the ring's memfd, and runs the core's steps through
 * gomp_run() so that every wait releases the GIL and stays interruptible.
 * The ring, its locks and wake-ups, and the overflow that an unbounded put
 * never waits for are the core's.
 *
 * Pickling: an object whose bytes cannot depend on the reducers registered
 * with the ForkingPickler (None, bool, and exact int, float, str, bytes, and
 * short tuples and lists of those) is pickled with pickle.dumps, which gives
 * the same bytes faster; anything else goes through the `dumps` callable
 * that the Python class supplies (the ForkingPickler).
 *
 * Fork: the Go handle belongs to the runtime that issued it. A forked child
 * loads a new runtime (a new generation); the first use of the object there
 * attaches the ring again from the memfd, which the child inherited. */
#include "gomp_ext.h"

#include <unistd.h>

/* Items up to this size are received on the stack, then copied once. */
#define STACK_ITEM 8192
/* Tuples and lists up to this length are checked for the fast pickling. */
#define FAST_SEQ 16

static PyObject *pickle_dumps, *pickle_loads, *exc_empty, *exc_full;

typedef struct {
    PyObject_HEAD
    int64_t h;       /* the core's handle, valid while gen is the core's generation */
    long gen;
    int fd;          /* the ring's memfd; -1 once closed */
    int simple;      /* SimpleQueue: put waits for room instead of overflowing */
    PyObject *dumps; /* pickler for the objects without a fast path */
} QCore;

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
    int64_t h = gomp_core.queue_open(q->fd);
    if (h < 0) {
        gomp_set_error(h);
        return -1;
    }
    q->h = h;
    q->gen = g;
    return 0;
}

/* The exception being raised, taken (with its traceback) as an object. */
static PyObject *take_exception(void)
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

static PyObject *run_error(int64_t r)
{
    if (r == GOMP_EPYERR)
        return NULL;
    return gomp_set_error(r);
}

/* ---- type ----------------------------------------------------------------------------- */

/* QueueCore(capacity, maxsize=0, flags=0, simple=False, dumps=None, fd=-1) */
static int q_init(QCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "maxsize", "flags", "simple", "dumps", "fd", NULL};
    long long capacity, maxsize = 0, flags = 0;
    int simple = 0, fd = -1;
    PyObject *dumps = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L|LLpOi:QueueCore", kwlist, &capacity, &maxsize,
                                     &flags, &simple, &dumps, &fd))
        return -1;
    if (self->gen != 0) {
        PyErr_SetString(PyExc_RuntimeError, "QueueCore is already initialized");
        return -1;
    }
    if (dumps != Py_None && !PyCallable_Check(dumps)) {
        PyErr_SetString(PyExc_TypeError, "dumps must be callable");
        return -1;
    }
    if (gomp_core_ready() < 0)
        return -1;
    int64_t h;
    if (fd >= 0) {
        h = gomp_core.queue_open(fd);
        if (h < 0) {
            gomp_set_error(h);
            return -1;
        }
        self->fd = fd; /* owned from now on */
    } else {
        int64_t nfd = -1;
        h = gomp_core.queue_new(capacity, maxsize, flags, &nfd);
        if (h < 0) {
            gomp_set_error(h);
            return -1;
        }
        self->fd = (int)nfd;
    }
    self->h = h;
    self->gen = gomp_core_generation();
    self->simple = simple;
    Py_XSETREF(self->dumps, Py_NewRef(dumps));
    return 0;
}

static PyObject *q_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    QCore *self = (QCore *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = -1;
        self->dumps = Py_NewRef(Py_None);
    }
    return (PyObject *)self;
}

static void q_dealloc(QCore *self)
{
    if (self->gen != 0 && gomp_core_ok && self->gen == gomp_core_generation())
        gomp_core.queue_release(self->h);
    if (self->fd >= 0)
        close(self->fd);
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

static int deadline_args(gomp_deadline *d, PyObject *block, PyObject *timeout)
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

/* put(obj, block=True, timeout=None) -> 0 when the item is in the ring, 1
 * when it waits in this process's overflow; or the exception raised by
 * pickling obj, returned (not raised) so that the Queue can hand it to its
 * _on_queue_feeder_error hook. A SimpleQueue's put raises it, and waits for
 * room in the ring. Raises queue.Full when a bounded queue stays full. */
static PyObject *q_put(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "put(obj, block=True, timeout=None)");
        return NULL;
    }
    gomp_deadline d;
    if (self->simple)
        gomp_deadline_set(&d, -1);
    else if (deadline_args(&d, nargs > 1 ? args[1] : NULL, nargs > 2 ? args[2] : NULL) < 0)
        return NULL;
    if (q_ready(self) < 0)
        return NULL;
    PyObject *data = q_pickle(self, args[0]);
    if (data == NULL) {
        if (self->simple || !PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        return take_exception();
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    put_ctx p = {self->h, view.buf, view.len, {0}};
    PyObject *result = NULL;
    int64_t r = gomp_run(self->simple ? write_step : put_step, &p, &d, 1);
    if (r >= 0)
        result = PyLong_FromLongLong(r);
    else if (r == GOMP_TIMEDOUT)
        PyErr_SetNone(exc_full);
    else {
        if (self->simple)
            gomp_core.queue_put_abort(self->h, &p.st);
        run_error(r);
    }
    PyBuffer_Release(&view);
    Py_DECREF(data);
    return result;
}

/* ---- get ------------------------------------------------------------------------------ */

typedef struct {
    int64_t h;
    char *buf;
    int64_t cap;
    gomp_qget st;
} get_ctx;

static int64_t get_step(void *c, int ms)
{
    get_ctx *g = c;
    return gomp_core.queue_get(g->h, g->buf, g->cap, &g->st, ms);
}

/* The next item's pickle as bytes, or NULL (queue.Empty on timeout). */
static PyObject *q_get_bytes(QCore *self, gomp_deadline *d)
{
    char stack[STACK_ITEM];
    PyObject *big = NULL;
    get_ctx g = {self->h, stack, sizeof stack, {0}};
    for (;;) {
        int64_t r = gomp_run(get_step, &g, d, 1);
        if (r == GOMP_TIMEDOUT && g.st.mid) {
            /* An item is half received: finish it whatever the timeout, as a
             * pipe reader finishes the message it started. */
            gomp_deadline_set(d, -1);
            continue;
        }
        if (r < 0) {
            if (g.st.locked)
                gomp_core.queue_get_abort(self->h, &g.st);
            Py_XDECREF(big);
            if (r == GOMP_TIMEDOUT)
                PyErr_SetNone(exc_empty);
            else
                run_error(r);
            return NULL;
        }
        if (r <= g.cap) {
            if (big == NULL)
                return PyBytes_FromStringAndSize(stack, r);
            if (r < g.cap && _PyBytes_Resize(&big, r) < 0)
                return NULL;
            return big;
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

/* get(block=True, timeout=None) -> the next object; queue.Empty when none
 * came in time. */
static PyObject *q_get(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(block=True, timeout=None)");
        return NULL;
    }
    gomp_deadline d;
    if (deadline_args(&d, nargs > 0 ? args[0] : NULL, nargs > 1 ? args[1] : NULL) < 0)
        return NULL;
    if (q_ready(self) < 0)
        return NULL;
    PyObject *b = q_get_bytes(self, &d);
    if (b == NULL)
        return NULL;
    PyObject *obj = PyObject_CallOneArg(pickle_loads, b);
    Py_DECREF(b);
    return obj;
}

/* get_bytes(block=True, timeout=None) -> the next item's pickle as bytes. */
static PyObject *q_get_raw(QCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    gomp_deadline d;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_bytes(block=True, timeout=None)");
        return NULL;
    }
    if (deadline_args(&d, nargs > 0 ? args[0] : NULL, nargs > 1 ? args[1] : NULL) < 0)
        return NULL;
    if (q_ready(self) < 0)
        return NULL;
    return q_get_bytes(self, &d);
}

/* put_bytes(buf) -> 0/1: puts an already pickled item (as put does). */
static PyObject *q_put_raw(QCore *self, PyObject *arg)
{
    gomp_deadline d;
    gomp_deadline_set(&d, -1);
    if (q_ready(self) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    put_ctx p = {self->h, view.buf, view.len, {0}};
    int64_t r = gomp_run(self->simple ? write_step : put_step, &p, &d, 1);
    PyBuffer_Release(&view);
    if (r < 0) {
        if (self->simple)
            gomp_core.queue_put_abort(self->h, &p.st);
        return run_error(r);
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
        return run_error(r);
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
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *q_fileno(QCore *self, PyObject *noargs)
{
    if (self->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the queue is closed");
        return NULL;
    }
    return PyLong_FromLong(self->fd);
}

static PyObject *q_get_closed(QCore *self, void *closure)
{
    return PyBool_FromLong(self->fd < 0);
}

static PyMethodDef q_methods[] = {
    {"put", (PyCFunction)(void (*)(void))q_put, METH_FASTCALL,
     "put(obj, block=True, timeout=None) -> 0 (in the ring), 1 (in the overflow), or the "
     "exception that pickling raised."},
    {"get", (PyCFunction)(void (*)(void))q_get, METH_FASTCALL,
     "get(block=True, timeout=None) -> the next object (queue.Empty on timeout)."},
    {"get_bytes", (PyCFunction)(void (*)(void))q_get_raw, METH_FASTCALL,
     "get_bytes(block=True, timeout=None) -> the next item's pickle."},
    {"put_bytes", (PyCFunction)q_put_raw, METH_O, "put_bytes(data): put an item already pickled."},
    {"qsize", (PyCFunction)q_qsize, METH_NOARGS, "Items put and not yet got."},
    {"empty", (PyCFunction)q_empty, METH_NOARGS, "Whether the ring holds nothing."},
    {"full", (PyCFunction)q_full, METH_NOARGS, "Whether a bounded queue is full."},
    {"stat", (PyCFunction)q_stat, METH_O, "stat(what) -> one of the core's figures."},
    {"flush", (PyCFunction)(void (*)(void))q_flush, METH_FASTCALL,
     "flush(timeout=None) -> bool: wait until this process's overflow is in the ring."},
    {"join", (PyCFunction)(void (*)(void))q_join, METH_FASTCALL,
     "join(timeout=None) -> bool: wait until every task is done."},
    {"task_done", (PyCFunction)q_task_done, METH_NOARGS, "Mark one task done."},
    {"cancel_join", (PyCFunction)q_cancel_join, METH_NOARGS,
     "Do not wait for this queue's overflow at exit."},
    {"close", (PyCFunction)q_close, METH_NOARGS, "Close the ring's file descriptor."},
    {"fileno", (PyCFunction)q_fileno, METH_NOARGS, "The ring's file descriptor."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef q_getset[] = {
    {"closed", (getter)q_get_closed, NULL, "Whether close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject QCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gomp._gomp.QueueCore",
    .tp_basicsize = sizeof(QCore),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One process's handle on a queue ring in shared memory (private: use gomp.queues).",
    .tp_new = q_new,
    .tp_init = (initproc)q_init,
    .tp_dealloc = (destructor)q_dealloc,
    .tp_methods = q_methods,
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
    PyObject *mod = PyImport_ImportModule("pickle");
    if (mod == NULL)
        return -1;
    pickle_dumps = PyObject_GetAttrString(mod, "dumps");
    pickle_loads = PyObject_GetAttrString(mod, "loads");
    Py_DECREF(mod);
    if (pickle_dumps == NULL || pickle_loads == NULL)
        return -1;
    mod = PyImport_ImportModule("queue");
    if (mod == NULL)
        return -1;
    exc_empty = PyObject_GetAttrString(mod, "Empty");
    exc_full = PyObject_GetAttrString(mod, "Full");
    Py_DECREF(mod);
    if (exc_empty == NULL || exc_full == NULL)
        return -1;
    if (PyType_Ready(&QCoreType) < 0)
        return -1;
    if (PyModule_AddObjectRef(m, "QueueCore", (PyObject *)&QCoreType) < 0)
        return -1;
#define ADD(name) PyModule_AddIntConstant(m, #name, name)
    if (ADD(GOMP_QSTAT_QSIZE) < 0 || ADD(GOMP_QSTAT_EMPTY) < 0 || ADD(GOMP_QSTAT_FULL) < 0 ||
        ADD(GOMP_QSTAT_PENDING) < 0 || ADD(GOMP_QSTAT_UNFINISHED) < 0 ||
        ADD(GOMP_QSTAT_CAPACITY) < 0 || ADD(GOMP_QSTAT_MAXSIZE) < 0 || ADD(GOMP_QSTAT_FLAGS) < 0)
        return -1;
#undef ADD
    return PyModule_AddFunctions(m, queue_functions);
}
