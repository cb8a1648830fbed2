/* Functions of the core for the queues (gomp/queue). */
#ifndef GOMPCORE_QUEUE_H
#define GOMPCORE_QUEUE_H
#include <stdint.h>

/* Progress of one put across slices (see queue.PutState). */
typedef struct {
    int64_t phase, done, locked, frag;
    int64_t mode; /* in: GOMP_QPUT_MAY_BUFFER */
    int64_t head, since;
} gomp_qput;

/* gomp_qput.mode: a bounded put that cannot complete in the ring now keeps
 * the item in the process's overflow when a slot is free (its timeout ran
 * out, or put_nowait) instead of failing with Full. */
#define GOMP_QPUT_MAY_BUFFER 1

/* Progress of one get across slices (see queue.GetState). */
typedef struct {
    int64_t locked, mid, total, got;
    int64_t report; /* in: an item cut short ends the get with GOMP_QLOST */
    int64_t claim;  /* in: claim slot + 1 (0: none): see gomp/queue/claim.go */
} gomp_qget;

/* queue_get with report set: the item being received was cut short (its
 * producer died in the middle of putting it). */
#define GOMP_QLOST (-100101)

/* queue_stat what: */
#define GOMP_QSTAT_QSIZE 0
#define GOMP_QSTAT_EMPTY 1
#define GOMP_QSTAT_FULL 2
#define GOMP_QSTAT_PENDING 3
#define GOMP_QSTAT_UNFINISHED 4
#define GOMP_QSTAT_CAPACITY 5
#define GOMP_QSTAT_MAXSIZE 6
#define GOMP_QSTAT_FLAGS 7
/* Not a figure: brings the readiness eventfd level with the ring (taking
 * a dead holder's lock over), for the C path (pybind/ext/ring.c); 0. */
#define GOMP_QSTAT_LEVEL 8

/* clang-format off */
#define GOMPCORE_QUEUE_FUNCS(X)                                                   \
    X(int64_t, queue_new, (int64_t capacity, int64_t maxsize, int64_t flags,      \
                           int64_t *fd, int64_t *efd))                            \
    X(int64_t, queue_open, (int fd, int efd))                                     \
    X(int64_t, queue_release, (int64_t h))                                        \
    X(int64_t, queue_put, (int64_t h, const void *buf, int64_t n, gomp_qput *st,  \
                           int slice_ms))                                         \
    X(int64_t, queue_write, (int64_t h, const void *buf, int64_t n,               \
                             gomp_qput *st, int slice_ms))                        \
    X(int64_t, queue_put_abort, (int64_t h, gomp_qput *st))                       \
    X(int64_t, queue_get, (int64_t h, void *buf, int64_t cap, gomp_qget *st,      \
                           int slice_ms))                                         \
    X(int64_t, queue_get_abort, (int64_t h, gomp_qget *st))                       \
    X(int64_t, queue_stat, (int64_t h, int64_t what))                             \
    X(int64_t, queue_flush, (int64_t h, int slice_ms))                            \
    X(int64_t, queue_flush_all, (int slice_ms))                                   \
    X(int64_t, queue_cancel_join, (int64_t h))                                    \
    X(int64_t, queue_task_done, (int64_t h))                                      \
    X(int64_t, queue_join, (int64_t h, int slice_ms))                             \
    X(int64_t, queue_watch, (int64_t h))                                          \
    X(int64_t, queue_unwatch, (int64_t h))                                        \
    X(int64_t, queue_poll, (int64_t h, int slice_ms))                             \
    X(int64_t, queue_discard, (int64_t h))                                        \
    X(int64_t, queue_take_claim, (int64_t h, int64_t slot, int64_t *out,          \
                                  int slice_ms))
/* clang-format on */
#endif
