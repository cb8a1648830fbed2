/* The C ABI between the extension gomp._gomp (the C files in pybind/ext/) and
 * the Go core library (the Go files of pybind/, built with -buildmode=c-shared);
 * see ARCHITECTURE.md, "The core's C ABI".
 *
 * The extension never links the core: it dlopen()s it on first use and, in a
 * forked child, loads a fresh copy (see gomp_core_load in pybind/ext/_gomp.c). Every function
 * of the core is listed once in GOMPCORE_FUNCS; the extension resolves the
 * symbol "gompcore_<name>" for each entry into its function table.
 *
 * Conventions: results are int64_t; a value >= 0 is success; a negative value
 * is -errno (1..4095) or one of the GOMP_E* codes below. Functions that may
 * wait take slice_ms: they wait at most that long (0: not at all) and return
 * GOMP_EAGAIN when the slice ends first, with their progress saved in the
 * caller's state so that the next call resumes. */
#ifndef GOMPCORE_H
#define GOMPCORE_H
#include <stdint.h>

#define GOMP_EAGAIN (-100001)  /* slice ended or a signal arrived: check signals, call again */
#define GOMP_EEOF (-100002)    /* the peer closed its end */
#define GOMP_EBADLEN (-100003) /* a frame header no CPython peer can produce */

/* Any other Go error, or a recovered Go panic: a result r <= GOMP_ETEXT. Its
 * text belongs to that result alone: error_text(r, buf, cap) copies it once
 * (two threads failing at once never see each other's text). */
#define GOMP_ETEXT (-((int64_t)1 << 32))
#define GOMP_ETEXT_PANIC(r) ((((GOMP_ETEXT) - (r)) & 1) != 0)

/* The functions of the core, one list per subsystem (each in its own header,
 * so that subsystems grow without touching each other's lines). */
/* clang-format off */
#define GOMPCORE_BASE_FUNCS(X)                                                   \
    X(int64_t, abi_signature, (char *buf, int64_t cap))                          \
    X(int64_t, error_text, (int64_t r, char *buf, int64_t cap))                  \
    X(int64_t, selftest, (int64_t what))
/* clang-format on */

/* clang-format off */
#define GOMPCORE_CONN_FUNCS(X)                                                   \
    X(int64_t, write_frame, (int fd, const void *buf, int64_t n, int64_t *done,  \
                             int slice_ms))                                      \
    X(int64_t, read_full, (int fd, void *buf, int64_t n, int64_t *done,          \
                           int slice_ms))
/* clang-format on */

#include "core_sync.h"  /* GOMPCORE_SYNC_FUNCS */
#include "core_queue.h" /* GOMPCORE_QUEUE_FUNCS */

/* clang-format off */
#define GOMPCORE_FUNCS(X)                                                        \
    GOMPCORE_BASE_FUNCS(X)                                                       \
    GOMPCORE_CONN_FUNCS(X)                                                       \
    GOMPCORE_SYNC_FUNCS(X)                                                       \
    GOMPCORE_QUEUE_FUNCS(X)
/* clang-format on */

/* The ABI: the text of the whole function list. The extension checks that
 * the library it loads was built from the same list (a stale library after a
 * partial rebuild is refused with a clear error instead of crashing). */
#define GOMPCORE_SIG_ENTRY(ret, name, args) #ret " " #name #args ";"
#define GOMPCORE_SIGNATURE GOMPCORE_FUNCS(GOMPCORE_SIG_ENTRY)

#endif
