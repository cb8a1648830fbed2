/* The queue ring's common path in C, for a process that has no Go runtime
 * (ring.c). The ring's layout and protocol are gomp/queue's (ring.go is the
 * reference); the offsets below are checked against the Go constants by
 * gomp/queue/layout_test.go. */
#ifndef GOMP_RING_H
#define GOMP_RING_H
#include <stddef.h>
#include <stdint.h>

#define RING_MAGIC 0x716d6f67u /* "gomq" */
#define RING_VERSION 5u
#define RING_HEADER 4096u
#define RING_MIN_CAPACITY 4096u
#define RING_REC_HDR 8u
#define RING_MAX_RECORD 0x40000000u

#define RING_MAX_CAPACITY 0x400000000u

#define RING_OFF_MAGIC 0
#define RING_OFF_VERSION 4
#define RING_OFF_CAPACITY 8
#define RING_OFF_MAXSIZE 16
#define RING_OFF_FLAGS 24
#define RING_OFF_TAIL 64
#define RING_OFF_PLOCK 72
#define RING_OFF_PUT_COUNT 80
#define RING_OFF_PJ_VALID 96
#define RING_OFF_PJ_TAIL 104
#define RING_OFF_PJ_PUT 112
#define RING_OFF_HEAD 128
#define RING_OFF_CLOCK 136
#define RING_OFF_GET_COUNT 144
#define RING_OFF_CJ_VALID 160
#define RING_OFF_CJ_HEAD 168
#define RING_OFF_CJ_GET 176
#define RING_OFF_DATA_WAIT 192
#define RING_OFF_SPACE_WAIT 256
#define RING_OFF_SPACE_NEED 264
#define RING_OFF_CJ_CLAIM 320
#define RING_OFF_CJ_JOB 328
#define RING_OFF_CJ_IDX 336
#define RING_OFF_DATA_SLOTS 448
#define RING_OFF_SPACE_SLOTS 512
#define RING_OFF_READY 576
#define RING_OFF_WATCHERS 580
#define RING_OFF_NLOCK 584
#define RING_OFF_ENTRY_HI 648
#define RING_OFF_ENTRIES 768
#define RING_ENTRY_SHIFT 32
/* The owner id no process has (gomp/owner: NoOwner), entry 0's. */
#define RING_NO_OWNER 0x7fc00000u
#define RING_OFF_CLAIMS 1280
#define RING_CLAIM_SIZE 16
#define RING_NUM_CLAIMS ((RING_HEADER - RING_OFF_CLAIMS) / RING_CLAIM_SIZE)
#define RING_WAIT_SLOTS 16
/* A lock word's owner tag is this many bytes after it. */
#define RING_TAG_AFTER 16

#define RING_KIND_WHOLE 1u
#define RING_READY_SET 0u
#define RING_READY_ARMED 1u

/* The result of a ring operation that the C path leaves to the core: the
 * caller loads the Go runtime and does the operation there. Nothing of the
 * operation has happened (no lock is held, nothing was taken or put). */
#define RING_USE_CORE (-100200)

/* One process's C view of a ring: its own mapping of the memfd. */
typedef struct {
    char *mem;
    size_t len;
    uint64_t capacity, mask;
    int efd;        /* the queue's readiness eventfd (not owned), -1: none */
    int level_owed; /* set when the eventfd's level was left to the core */
} cring;

/* Makes a new unbounded ring of at least capacity data bytes, as the core's
 * queue.Create does, in a new memfd, with the queue's readiness eventfd, and
 * maps it into r: 0 with *fd and *efd (close-on-exec, the caller's), or a
 * negative errno (nothing is left open then). */
int cring_create(cring *r, uint64_t capacity, int *fd, int *efd);
/* Maps the ring in memfd fd: 0, RING_USE_CORE when the ring is not one this
 * path serves (bounded or joinable, another layout: the core judges), or a
 * negative errno. */
int cring_map(cring *r, int fd, int efd);
void cring_unmap(cring *r);

/* Each waits at most slice_ms (0: not at all) and returns GOMP_EAGAIN when it
 * ran out, RING_USE_CORE when the core must do it (an item streamed in
 * fragments, an item too large for a record, a lock held past the owner check
 * period, a ring left inconsistent). */

/* Takes the next item into the cap bytes at buf and returns its size; a size
 * above cap means that the item stays in the ring (call again with that
 * much room). slot >= 0 claims the item in that claim slot as it is taken. */
int64_t cring_get(cring *r, void *buf, int64_t cap, int slot, int slice_ms);
/* Puts the n bytes at buf as one item, waiting for room: 0. */
int64_t cring_write(cring *r, const void *buf, int64_t n, int slice_ms);
/* Whether the ring holds no record (a watched ring's eventfd is reset when
 * it does not). */
int cring_empty(cring *r);
/* Takes the claim of slot: 1 with out[0..1] = (job, index), or 0 if none. */
int64_t cring_take_claim(cring *r, int slot, int64_t out[2], int slice_ms);

#endif
