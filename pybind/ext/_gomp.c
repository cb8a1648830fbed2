/* gomp._gomp: the one CPython extension of gomp and the only code that uses
 * the CPython C API.
 *
 * It binds Python to the Go core library (libgompcore.so, built from pybind/
 * with -buildmode=c-shared) through a table of function pointers:
 *
 *  - The core is not linked: it is dlopen()ed on first use, so importing gomp
 *    does not start a Go runtime.
 *  - A Go runtime does not survive fork() (its threads are gone; the first call
 *    that parks a goroutine, uses a timer or collects garbage hangs). So a
 *    forked child marks the table stale (pthread_atfork) and its first call
 *    loads a fresh copy of the library from a new inode (a memfd), which
 *    brings up a new runtime. See ARCHITECTURE.md, "Fork", for the
 *    measurements and the pitfalls handled in gomp_core_load().
 *  - Calls that may block release the GIL and wait in slices of at most
 *    GOMP_SLICE_MS, running Python signal handlers between slices, so Ctrl-C
 *    interrupts them (helpers.c). The core keeps no state between slices:
 *    progress lives in the caller's variables.
 *
 * Split across files (ARCHITECTURE.md, "The extension's files"): this one
 * holds the loader and the module; helpers.c the shared helpers (arguments,
 * errors, deadlines, the wait loop); conn.c the connection functions;
 * queue.c the queues; sync.c the locks and semaphores; proc.c process
 * supervision; spawn.c process start. */
#define _GNU_SOURCE 1 /* 1: see gomp_ext.h */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gomp_ext.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux >= 6.3 with vm.memfd_noexec; EINVAL before */
#endif

gomp_core_table gomp_core;

/* ---- loading and rebirth of the core --------------------------------------------------- */

static char core_path[PATH_MAX]; /* the library shipped next to this extension */
static int core_src_fd = -1;     /* open on core_path once loaded: copies come from that inode */
static int core_loaded;          /* a runtime was loaded in this process image or an ancestor */
static volatile int core_stale;  /* set in a forked child: the loaded runtime is dead */
volatile int gomp_core_ok;       /* loaded and not stale: the table may be called */
static long core_generation;     /* loads in this process image, ancestors included */
static pid_t core_pid;           /* the process whose runtime the table points into */

/* glibc's dlopen() matches an already-loaded object by its path string before
 * it compares inodes: a "/proc/self/fd/N" string that this image (or an
 * ancestor, by fork) ever loaded would return that dead copy. Every string
 * handed to dlopen is kept here, and a clash moves the fd to a new number. */
#define MAX_LOADS 1024
static char loaded_paths[MAX_LOADS][32];
static int n_loaded_paths;
static int original_loaded; /* core_path itself was loaded in this image */

/* A copy of the library staged by a parent just before fork(), so that its
 * child does not pay for the copy. A child that loads it closes its fd; the
 * parent keeps it for its next children (each child is its own image). */
static int staged_fd = -1;
static dev_t staged_dev;
static ino_t staged_ino;

static int path_was_loaded(const char *p)
{
    for (int i = 0; i < n_loaded_paths; i++)
        if (strcmp(loaded_paths[i], p) == 0)
            return 1;
    return 0;
}

/* A new memfd holding a copy of the core library, or -1 with errno. */
static int core_copy(void)
{
    struct stat st;
    int fd = gomp_memfd("gompcore", MFD_CLOEXEC | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = gomp_memfd("gompcore", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(core_src_fd, &st) < 0)
        goto fail;
    off_t off = 0;
    while (off < st.st_size) {
        ssize_t n = sendfile(fd, core_src_fd, &off, (size_t)(st.st_size - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            goto fail;
        }
    }
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

static void atfork_prepare(void)
{
    struct stat st;
    if (!core_loaded || core_stale || staged_fd >= 0 || core_src_fd < 0)
        return;
    int fd = core_copy();
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return; /* the child makes its own copy */
    }
    staged_fd = fd;
    staged_dev = st.st_dev;
    staged_ino = st.st_ino;
}

static void atfork_child(void)
{
    if (core_loaded)
        core_stale = 1;
    gomp_core_ok = 0;
}

/* Takes the staged copy if it is still the file staged (user code in a child
 * may have closed the descriptor and reused its number). */
static int take_staged(void)
{
    struct stat st;
    int fd = staged_fd;
    staged_fd = -1;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) == 0 && st.st_dev == staged_dev && st.st_ino == staged_ino)
        return fd;
    return -1; /* not ours any more: leave that descriptor alone */
}

static int core_fail(const char *what, const char *detail)
{
    PyErr_Format(PyExc_ImportError, "gomp: cannot load the Go core %s: %s: %s", core_path, what,
                 detail ? detail : "unknown error");
    return -1;
}

int gomp_core_load(void)
{
    char fdpath[32];
    const char *path = core_path;
    int fd = -1;

    if (core_path[0] == 0)
        return core_fail("locate", "the extension could not find its own file");
    if (core_src_fd < 0) {
        core_src_fd = open(core_path, O_RDONLY | O_CLOEXEC);
        if (core_src_fd < 0)
            return core_fail("open", strerror(errno));
    }
    if (original_loaded) {
        /* A runtime from this file is (or was, before fork) in this image:
         * load a copy with a new inode and a path string never used here. */
        fd = take_staged();
        if (fd < 0 && (fd = core_copy()) < 0)
            return core_fail("copy to a memfd", strerror(errno));
        for (;;) {
            snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
            if (!path_was_loaded(fdpath))
                break;
            int nfd = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
            int e = errno;
            close(fd);
            if (nfd < 0)
                return core_fail("dup", strerror(e));
            fd = nfd;
        }
        if (n_loaded_paths >= MAX_LOADS) {
            close(fd);
            return core_fail("reload", "too many generations of forked processes");
        }
        path = fdpath;
    }
    /* The runtime records the signal mask of the thread that loads it
     * (during dlopen) and starts every thread of its own with that mask.
     * Loaded with every signal blocked, its threads keep the asynchronous
     * ones (SIGINT, SIGTERM ...) blocked (Go unblocks what it needs itself:
     * faults, its preemption signal, SIGCHLD), so that the
     * kernel hands a signal sent to the process to a Python thread, whose
     * blocking calls it interrupts, and never to a runtime thread. With the
     * caller's empty mask a SIGINT could land on a Go thread: the handler
     * ran there and a main thread in time.sleep() slept on. */
    sigset_t all, callers;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &callers);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    pthread_sigmask(SIG_SETMASK, &callers, NULL);
    if (fd >= 0)
        close(fd); /* the mapping keeps the memfd alive */
    if (h == NULL) {
        const char *err = dlerror();
        if (err != NULL && strstr(err, "static TLS") != NULL)
            return core_fail("dlopen (each forked generation that uses gomp loads its own Go "
                             "runtime, and glibc's static TLS space holds about 200; raise it with "
                             "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=8192)",
                             err);
        return core_fail("dlopen", err);
    }

    gomp_core_table t;
#define X(ret, name, args)                                                                         \
    if ((t.name = (ret(*) args)dlsym(h, "gompcore_" #name)) == NULL)                               \
        return core_fail("find symbol gompcore_" #name, dlerror());
    GOMPCORE_FUNCS(X)
#undef X
    static const char want[] = GOMPCORE_SIGNATURE;
    char have[sizeof want + 1];
    if (t.abi_signature(have, sizeof have) != (int64_t)strlen(want) || strcmp(have, want) != 0)
        return core_fail("check", "the library was built from other sources than this extension; "
                                  "rebuild gomp (pip install .)");
    gomp_core = t;
    if (path == core_path)
        original_loaded = 1;
    else
        strcpy(loaded_paths[n_loaded_paths++], path);
    core_generation++;
    core_pid = getpid();
    core_stale = 0;
    core_loaded = 1;
    gomp_core_ok = 1;
    return 0;
}

long gomp_core_generation(void)
{
    return core_generation;
}

/* Whether objects of generation gen are usable here without a reload (their
 * handles belong to the runtime loaded in this process image). */
int gomp_core_current(long gen)
{
    return core_loaded && !core_stale && gen == core_generation;
}

/* ---- module ---------------------------------------------------------------------------- */

static PyObject *m_core_info(PyObject *self, PyObject *noargs)
{
    return Py_BuildValue("{s:i,s:i,s:l,s:i,s:s,s:i}", "loaded", core_loaded, "stale",
                         (int)core_stale, "generation", core_generation, "pid", (int)core_pid,
                         "path", core_path, "staged_fd", staged_fd);
}

static PyObject *m_core_load(PyObject *self, PyObject *noargs)
{
    if (gomp_core_ready() < 0)
        return NULL;
    return PyLong_FromLong(core_generation);
}

static PyObject *m_selftest(PyObject *self, PyObject *arg)
{
    long what = PyLong_AsLong(arg);
    if (what == -1 && PyErr_Occurred())
        return NULL;
    if (gomp_core_ready() < 0)
        return NULL;
    int64_t r;
    Py_BEGIN_ALLOW_THREADS
    r = gomp_core.selftest(what);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return gomp_set_error(r);
    return PyLong_FromLongLong(r);
}

static PyMethodDef methods[] = {
    {"_core_info", m_core_info, METH_NOARGS,
     "_core_info() -> dict: state of the Go core in this process (for tests and debugging)."},
    {"_core_load", m_core_load, METH_NOARGS,
     "_core_load() -> int: load the Go core now if needed; returns its generation."},
    {"_selftest", m_selftest, METH_O,
     "_selftest(what): exercise the core (1: a Go panic, 2: a Go error, 3: goroutine/GC-heavy "
     "work)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    "gomp._gomp",
    "Binding of gomp's Go core. Private: use the gomp package.",
    -1,
    methods,
};

/* Finds the library next to this extension's file, resolved now: the
 * import may have used a path relative to a working directory that changes. */
static void locate_core(void)
{
    Dl_info info;
    char buf[PATH_MAX];
    if (!dladdr((void *)&locate_core, &info) || info.dli_fname == NULL)
        return;
    if (realpath(info.dli_fname, buf) == NULL)
        return;
    char *slash = strrchr(buf, '/');
    if (slash == NULL)
        return;
    *slash = 0;
    if ((size_t)snprintf(core_path, sizeof core_path, "%s/libgompcore.so", buf) >= sizeof core_path)
        core_path[0] = 0;
}

PyMODINIT_FUNC PyInit__gomp(void)
{
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    locate_core();
    if (pthread_atfork(atfork_prepare, NULL, atfork_child) != 0) {
        Py_DECREF(m);
        PyErr_SetString(PyExc_ImportError, "gomp: pthread_atfork failed");
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "core_path", core_path) < 0 ||
        PyModule_AddIntConstant(m, "SLICE_MS", GOMP_SLICE_MS) < 0 || gomp_conn_init(m) < 0 ||
        gomp_proc_init(m) < 0 || gomp_queue_init(m) < 0 || gomp_sync_init(m) < 0 ||
        gomp_spawn_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
