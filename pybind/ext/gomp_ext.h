/* Internal header of the extension gomp._gomp (the C files in pybind/). */
#ifndef GOMP_EXT_H
#define GOMP_EXT_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pwritev2, RWF_NOWAIT */
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/uio.h>
#include <stdint.h>

#include "gompcore.h"

/* Longest wait inside the core before Python signal handlers get to run. */
#define GOMP_SLICE_MS 20

/* Exit status of a child that other code reaped (its code is lost). */
#define GOMP_STATUS_LOST (-1000000)

/* Results of gomp_run() that never come from the core. */
#define GOMP_TIMEDOUT (-200001) /* the deadline passed */
#define GOMP_EPYERR (-200002)   /* a Python exception is set (a signal handler raised) */

typedef struct {
#define X(ret, name, args) ret(*name) args;
    GOMPCORE_FUNCS(X)
#undef X
} gomp_core_table;

/* The functions of the core loaded in this process. Call gomp_core_ready()
 * (with the GIL held) before using it. */
extern gomp_core_table gomp_core;
extern volatile int gomp_core_ok;
int gomp_core_load(void);

/* 0 when the core can be called; -1 with an exception set otherwise. */
static inline int gomp_core_ready(void)
{
    return gomp_core_ok ? 0 : gomp_core_load();
}

/* The generation of the loaded core: it changes when a forked child loads its
 * own runtime, which invalidates every handle the core issued before. */
long gomp_core_generation(void);
int gomp_core_current(long gen);

/* Sets the Python exception for a negative result of the core; returns NULL. */
PyObject *gomp_set_error(int64_t r);

typedef struct {
    int infinite;
    double end; /* CLOCK_MONOTONIC seconds */
} gomp_deadline;

/* timeout: NULL or None waits forever; a number of seconds (<= 0: poll). */
int gomp_deadline_init(gomp_deadline *d, PyObject *timeout);
/* seconds < 0 waits forever. */
void gomp_deadline_set(gomp_deadline *d, double seconds);

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
 * and the core is called once fd is ready. Measured: a wait inside Go costs
 * about 4 us more per blocking call than a poll here (the Go scheduler's
 * syscall hand-off wakes its monitor thread), which is a fifth of a pipe
 * round trip. */
int64_t gomp_run_fd(gomp_step step, void *ctx, int fd, short events, gomp_deadline *d,
                    int try_with_gil);

/* poll(2) of n descriptors until one is ready or the deadline passes, in
 * slices with the GIL released and signal handlers run in between. Returns
 * the number ready (0 on timeout), or -1 with an exception set. */
int gomp_poll_fds(struct pollfd *fds, int n, gomp_deadline *d);

/* Each file adds its functions to the module. */
int gomp_conn_init(PyObject *m); /* conn.c */
int gomp_proc_init(PyObject *m); /* proc.c */
int gomp_queue_init(PyObject *m); /* queue.c */
int gomp_sync_init(PyObject *m); /* sync.c */
int gomp_spawn_init(PyObject *m); /* spawn.c */
#endif
