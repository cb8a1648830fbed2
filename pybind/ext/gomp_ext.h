/* Internal header of the extension gomp._gomp (the C files in pybind/ext/):
 * the table of the Go core's functions and its loader (_gomp.c), and the
 * shared helpers (helpers.h). */
#ifndef GOMP_EXT_H
#define GOMP_EXT_H
/* pwritev2, RWF_NOWAIT. Defined as 1 here and in every C file that defines
 * it: CPython 3.10's pyconfig.h defines _GNU_SOURCE 1 without an #ifndef,
 * and any other value would be a redefinition warning (an error with
 * -Werror, in CI). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/uio.h>
#include <stdint.h>

#include "gompcore.h"
#include "helpers.h" /* arguments, errors, deadlines, waits */

/* Exit status of a child that other code reaped (its code is lost). */
#define GOMP_STATUS_LOST (-1000000)

/* Version facts of the C API's users (the Python side's are in
 * python/gomp/_versions.py). From 3.12 the stdlib's SemLock.acquire takes
 * `block` as a truth value (any object); before, as a C int (TypeError for
 * None or a str). */
#define GOMP_SEMLOCK_BLOCK_IS_TRUTH (PY_VERSION_HEX >= 0x030C0000)

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

/* Each file adds its functions to the module. */
int gomp_conn_init(PyObject *m);  /* conn.c */
int gomp_proc_init(PyObject *m);  /* proc.c */
int gomp_queue_init(PyObject *m); /* queue.c */
int gomp_sync_init(PyObject *m);  /* sync.c */
int gomp_spawn_init(PyObject *m); /* spawn.c */

#endif
