/* The shared helpers of the extension gomp._gomp (pybind/ext/helpers.c):
 * argument parsing, deadlines and interruptible waits, error mapping, and
 * the exception shims across CPython versions. Every C file of the
 * extension gets them through gomp_ext.h. */
#ifndef GOMP_HELPERS_H
#define GOMP_HELPERS_H
#include <Python.h>
#include <poll.h>
#include <stdint.h>

/* Longest wait inside the core before Python signal handlers get to run. */
#define GOMP_SLICE_MS 20

/* Results of gomp_run() that never come from the core. */
#define GOMP_TIMEDOUT (-200001) /* the deadline passed */
#define GOMP_EPYERR (-200002)   /* a Python exception is set (a signal handler raised) */

/* ---- arguments ------------------------------------------------------------------------ */

/* Fills out[0..n) from vectorcall arguments (NULL where not given): at most
 * n positional arguments, keywords among names[0..n), the first `required`
 * ones mandatory. Returns 0, or -1 with TypeError naming fname(). */
int gomp_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                    const char *const *names, int n, int required, PyObject **out);

/* A file descriptor argument (an int in 0..INT_MAX): 0, or -1 with an
 * exception set. */
int gomp_fd_arg(PyObject *o, int *fd);

/* ---- errors --------------------------------------------------------------------------- */

/* Sets the Python exception for a negative result of the core (-errno:
 * OSError; GOMP_EEOF: EOFError; a Go error or panic: RuntimeError with its
 * text); returns NULL. */
PyObject *gomp_set_error(int64_t r);

/* The same for a negative result of gomp_run(): GOMP_EPYERR means the
 * exception is set already. (GOMP_TIMEDOUT is the caller's to map.) */
PyObject *gomp_run_error(int64_t r);

/* The exception being raised, taken (with its traceback) as one object, or
 * NULL if none is; gomp_restore_exception(exc) raises it again (and takes
 * the reference). CPython 3.12 added PyErr_GetRaisedException; before it,
 * the (type, value, traceback) triple. */
PyObject *gomp_take_exception(void);
void gomp_restore_exception(PyObject *exc);

/* ---- deadlines and interruptible waits ------------------------------------------------ */

typedef struct {
    int infinite;
    double end; /* CLOCK_MONOTONIC seconds */
} gomp_deadline;

/* timeout: NULL or None waits forever; a number of seconds (<= 0: poll). */
int gomp_deadline_init(gomp_deadline *d, PyObject *timeout);
/* seconds < 0 waits forever. */
void gomp_deadline_set(gomp_deadline *d, double seconds);
/* The stdlib's (block, timeout) pair: block false (NULL: true) does not
 * wait; otherwise as gomp_deadline_init(timeout). */
int gomp_deadline_block(gomp_deadline *d, PyObject *block, PyObject *timeout);

/* One step of a blocking operation: wait at most slice_ms, return a core
 * result (GOMP_EAGAIN when the slice ended first). */
typedef int64_t (*gomp_step)(void *ctx, int slice_ms);

/* Runs step until it returns something other than GOMP_EAGAIN, releasing the
 * GIL around each slice and running signal handlers in between. Returns the
 * step's result, GOMP_TIMEDOUT, or GOMP_EPYERR (exception set). With
 * try_with_gil, a first attempt that does not wait is made with the GIL held,
 * which saves the GIL round trip when the kernel can complete at once. */
int64_t gomp_run(gomp_step step, void *ctx, gomp_deadline *d, int try_with_gil);

/* gomp_run for a transfer on one file descriptor: the waiting between the
 * core's attempts is a poll(2) for events on fd here, with the GIL released,
 * and the core is called once fd is ready (a wait inside Go costs more per
 * blocking call than a poll here: ARCHITECTURE.md). */
int64_t gomp_run_fd(gomp_step step, void *ctx, int fd, short events, gomp_deadline *d,
                    int try_with_gil);

/* poll(2) of n descriptors until one is ready or the deadline passes, in
 * slices with the GIL released and signal handlers run in between. Returns
 * the number ready (0 on timeout), or -1 with an exception set. */
int gomp_poll_fds(struct pollfd *fds, int n, gomp_deadline *d);

/* Futexes on words in shared memory (no FUTEX_PRIVATE_FLAG): the C side's
 * one layer (the Go side's is gomp/futex). gomp_futex_wait_until sleeps while
 * *addr == val, until woken or the absolute CLOCK_MONOTONIC time end, and
 * returns 0 (woken, or the word had changed: look again), ETIMEDOUT or
 * EINTR. */
struct timespec;
int gomp_futex_wait_until(void *addr, uint32_t val, const struct timespec *end);
void gomp_futex_wake(void *addr, int n);

/* memfd_create(2) through syscall(2): glibc's wrapper came in 2.27, and the
 * wheels are built against glibc 2.17 so that they run on older systems. The
 * kernel call is the same (Linux 3.17 and newer). -1 with errno on failure. */
int gomp_memfd(const char *name, unsigned int flags);
#include <sys/mman.h> /* MFD_CLOEXEC, where the headers have it */
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U /* glibc < 2.27 headers */
#endif

/* This process's pid and owner id (gomp/owner: pid and start-time tag),
 * computed once per process (sync.c; reset in a forked child). */
uint32_t gomp_self_pid(void);
uint32_t gomp_self_owner_id(void);
#endif
