/* The queue ring's common path in C, for a process that has no Go runtime.
 *
 * A forked pool worker would otherwise load its own Go runtime at its first
 * get (2 ms of CPU per worker, the whole gap between gomp's Pool start and
 * the stdlib's: tests_py/bench/NOTES.md, "Pool start time"). Here is the
 * part of gomp/queue that such a process needs on a SimpleQueue's ring:
 * making the ring (a pool's own process, until something loads the runtime),
 * taking a whole record (with its claim, for a pool task), putting one, and
 * taking a claim back. Everything else is handed to the core (RING_USE_CORE)
 * before anything happened: items streamed in fragments, records too large,
 * bounded and joinable rings, a ring in a state only a dead process leaves.
 *
 * The protocol is gomp/queue's, step for step; the Go files name each step:
 * the locks and their owner tags (lock.go), the journals around head and
 * tail (slots.go: publish, consume), the claim written in the step that moves
 * head (claim.go: consumeClaim), the sleepers' counts and pid slots (ops.go),
 * the readiness eventfd (watch.go: notify, settle, level). What judges a
 * dead process stays in Go: a lock that stays with one holder for a whole
 * owner check period, or a producer lock held while the ring stays empty
 * for a second, sends the caller to the core, which takes a dead holder's
 * lock over and repairs what it left. So this side never waits forever for
 * a dead process, and never needs to read /proc.
 *
 * Two things the Go side does and this one leaves to it: repairing a waiter
 * count that a killed sleeper left behind (a wake-up then costs a futex
 * call that wakes nobody), and bringing the eventfd level when its lock
 * stays held (the caller asks the core: level_owed).
 *
 * Every shared word is accessed with sequentially consistent atomics, as Go's
 * sync/atomic does, and the journal's plain words too: a few stores per item,
 * against microseconds of pickling. */
#include "gomp_ext.h"
#include "ring.h"

#include <errno.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_WAITERS (1u << 31)
#define LOCK_PID_MASK (LOCK_WAITERS - 1)
#define SPIN_TRIES 64
/* How long a lock may stay with one holder before the core judges it. */
#define OWNER_CHECK_NS 10000000LL
/* How long the producer lock may stay held while the ring stays empty
 * before the core looks for a producer killed between its two stores. */
#define STUCK_PRODUCER_NS 1000000000LL
#define RING_FLAGS_SERVED 0u /* bounded (1) and joinable (2) rings go to the core */

#define U32(r, off) ((uint32_t *)((r)->mem + (off)))
#define U64(r, off) ((uint64_t *)((r)->mem + (off)))

static inline uint32_t ld32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
static inline uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
static inline void st32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline void st64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline int cas32(uint32_t *p, uint32_t old, uint32_t v)
{
    return __atomic_compare_exchange_n(p, &old, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline int cas64(uint64_t *p, uint64_t old, uint64_t v)
{
    return __atomic_compare_exchange_n(p, &old, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline uint64_t align8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}
static inline uint64_t record_size(uint64_t n)
{
    return RING_REC_HDR + align8(n);
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static struct timespec ns_to_ts(int64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    return t;
}

/* ---- mapping ---------------------------------------------------------------------------- */

int cring_map(cring *r, int fd, int efd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size < (off_t)(RING_HEADER + RING_MIN_CAPACITY))
        return RING_USE_CORE;
    void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED)
        return -errno;
    r->mem = mem;
    r->len = (size_t)st.st_size;
    uint64_t c = *U64(r, RING_OFF_CAPACITY);
    if (ld32(U32(r, RING_OFF_MAGIC)) != RING_MAGIC || *U32(r, RING_OFF_VERSION) != RING_VERSION ||
        c < RING_MIN_CAPACITY || (c & (c - 1)) != 0 || RING_HEADER + c != r->len ||
        *U32(r, RING_OFF_FLAGS) != RING_FLAGS_SERVED) {
        cring_unmap(r);
        return RING_USE_CORE;
    }
    r->capacity = c;
    r->mask = c - 1;
    r->efd = efd;
    r->level_owed = 0;
    return 0;
}

int cring_create(cring *r, uint64_t capacity, int *fd, int *efd)
{
    uint64_t c = RING_MIN_CAPACITY;
    while (c < capacity && c < RING_MAX_CAPACITY)
        c <<= 1;
    if (c < capacity)
        return -EINVAL;
    int f = gomp_memfd("gomp-queue", MFD_CLOEXEC);
    if (f < 0)
        return -errno;
    size_t len = RING_HEADER + c;
    void *mem = MAP_FAILED;
    int e = -1, err = 0;
    if (ftruncate(f, (off_t)len) < 0 ||
        (mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)) == MAP_FAILED ||
        /* Readable from the start, in the state "set": nobody watches yet
         * (watch.go: the first watcher resets it). */
        (e = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        err = -errno;
        if (mem != MAP_FAILED)
            munmap(mem, len);
        close(f);
        return err;
    }
    r->mem = mem;
    r->len = len;
    r->capacity = c;
    r->mask = c - 1;
    r->efd = e;
    r->level_owed = 0;
    /* The header as queue.Create writes it (the file starts zeroed): an
     * unbounded ring nobody waits for room on, entry 0 NoOwner's
     * (slots.go: initEntries), and the magic last. */
    st32(U32(r, RING_OFF_READY), RING_READY_SET);
    *U64(r, RING_OFF_CAPACITY) = c;
    *U64(r, RING_OFF_MAXSIZE) = 0;
    *U32(r, RING_OFF_FLAGS) = RING_FLAGS_SERVED;
    *U64(r, RING_OFF_SPACE_NEED) = UINT64_MAX;
    st64(U64(r, RING_OFF_ENTRIES), (uint64_t)RING_NO_OWNER << RING_ENTRY_SHIFT);
    st32(U32(r, RING_OFF_ENTRY_HI), 1);
    *U32(r, RING_OFF_VERSION) = RING_VERSION;
    st32(U32(r, RING_OFF_MAGIC), RING_MAGIC);
    *fd = f;
    *efd = e;
    return 0;
}

void cring_unmap(cring *r)
{
    if (r->mem != NULL)
        munmap(r->mem, r->len);
    r->mem = NULL;
    r->len = 0;
}

/* ---- records ---------------------------------------------------------------------------- */

static char *data(const cring *r)
{
    return r->mem + RING_HEADER;
}

static void write_at(const cring *r, uint64_t pos, const void *p, uint64_t n)
{
    uint64_t i = pos & r->mask, first = r->capacity - i;
    if (first >= n) {
        memcpy(data(r) + i, p, n);
    } else {
        memcpy(data(r) + i, p, first);
        memcpy(data(r), (const char *)p + first, n - first);
    }
}

static void read_at(const cring *r, uint64_t pos, void *p, uint64_t n)
{
    uint64_t i = pos & r->mask, first = r->capacity - i;
    if (first >= n) {
        memcpy(p, data(r) + i, n);
    } else {
        memcpy(p, data(r) + i, first);
        memcpy((char *)p + first, data(r), n - first);
    }
}

/* Record headers never wrap: records are 8-byte aligned. */
static void put_header(const cring *r, uint64_t pos, uint32_t n, uint32_t kind)
{
    uint32_t *h = (uint32_t *)(data(r) + (pos & r->mask));
    h[0] = n;
    h[1] = kind;
}

/* ---- locks (lock.go) -------------------------------------------------------------------- */

static uint64_t *tag_of(uint32_t *w)
{
    return (uint64_t *)((char *)w + RING_TAG_AFTER);
}

static void took(uint32_t *w)
{
    st64(tag_of(w), gomp_self_owner_id());
}

/* Takes lock word w, waiting until end_ns (0: not at all). GOMP_EAGAIN when
 * end_ns passed first; RING_USE_CORE when one holder kept it for a whole
 * owner check period (the core tells a dead holder from a slow one). */
static int64_t lock_word(uint32_t *w, int64_t end_ns)
{
    uint32_t me = gomp_self_pid();
    for (int i = 0; i < SPIN_TRIES; i++) {
        if (ld32(w) == 0) {
            if (cas32(w, 0, me)) {
                took(w);
                return 0;
            }
            continue;
        }
        if (i >= 8)
            sched_yield();
    }
    if (end_ns == 0)
        return GOMP_EAGAIN;
    uint32_t holder = ld32(w) & LOCK_PID_MASK;
    int64_t check = mono_ns() + OWNER_CHECK_NS;
    for (;;) {
        uint32_t v = ld32(w);
        if (v == 0) {
            /* Taken after contention: keep the waiters bit, there may be others. */
            if (cas32(w, 0, me | LOCK_WAITERS)) {
                took(w);
                return 0;
            }
            continue;
        }
        int64_t now = mono_ns();
        if (now >= end_ns)
            return GOMP_EAGAIN;
        if ((v & LOCK_PID_MASK) != holder) {
            holder = v & LOCK_PID_MASK;
            check = now + OWNER_CHECK_NS;
        } else if (now >= check) {
            return RING_USE_CORE;
        }
        if (!(v & LOCK_WAITERS)) {
            if (!cas32(w, v, v | LOCK_WAITERS))
                continue;
            v |= LOCK_WAITERS;
        }
        struct timespec until = ns_to_ts(check < end_ns ? check : end_ns);
        gomp_futex_wait_until(w, v, &until);
    }
}

static void unlock_word(uint32_t *w)
{
    st64(tag_of(w), 0);
    if (__atomic_exchange_n(w, 0, __ATOMIC_SEQ_CST) & LOCK_WAITERS)
        gomp_futex_wake(w, 1);
}

/* ---- sleepers (ops.go) ------------------------------------------------------------------ */

static int sleeper_enter(cring *r, size_t count_off, size_t slots_off)
{
    __atomic_add_fetch(U32(r, count_off), 1, __ATOMIC_SEQ_CST);
    uint32_t me = gomp_self_pid();
    for (int i = 0; i < RING_WAIT_SLOTS; i++) {
        uint32_t *s = U32(r, slots_off + 4 * (size_t)i);
        if (ld32(s) == 0 && cas32(s, 0, me))
            return i;
    }
    return -1;
}

/* Uncounts a waiter, never below zero (a repair may have uncounted it). */
static void leave(uint32_t *count)
{
    for (;;) {
        uint32_t v = ld32(count);
        if (v == 0 || cas32(count, v, v - 1))
            return;
    }
}

static void sleeper_exit(cring *r, size_t count_off, size_t slots_off, int slot)
{
    if (slot >= 0)
        cas32(U32(r, slots_off + 4 * (size_t)slot), gomp_self_pid(), 0);
    leave(U32(r, count_off));
}

static void wake_sleepers(cring *r, size_t count_off, size_t word_off, int n)
{
    if (ld32(U32(r, count_off)) != 0)
        gomp_futex_wake(U32(r, word_off), n);
}

/* ---- readiness (watch.go) --------------------------------------------------------------- */

static int ring_empty(cring *r)
{
    return ld64(U64(r, RING_OFF_HEAD)) == ld64(U64(r, RING_OFF_TAIL));
}

/* Brings the eventfd and the readiness state level with the ring, under the
 * readiness lock; when that lock stays with one holder, the core does it
 * (level_owed). */
static void level(cring *r)
{
    uint32_t *nl = U32(r, RING_OFF_NLOCK);
    if (lock_word(nl, mono_ns() + 2 * OWNER_CHECK_NS) != 0) {
        r->level_owed = 1;
        return;
    }
    uint32_t *rw = U32(r, RING_OFF_READY);
    uint64_t v = 1;
    for (;;) {
        if (ring_empty(r)) {
            if (ld32(rw) == RING_READY_SET) {
                ssize_t n = read(r->efd, &v, sizeof v); /* EAGAIN if it was 0 already */
                (void)n;
                st32(rw, RING_READY_ARMED);
            }
            /* A producer that saw "set" before the store above published before it. */
            if (ring_empty(r))
                break;
        }
        if (ld32(rw) == RING_READY_ARMED) {
            v = 1;
            ssize_t n = write(r->efd, &v, sizeof v); /* the counter is 0: cannot fail */
            (void)n;
            st32(rw, RING_READY_SET);
        }
        /* A consumer that emptied the ring meanwhile may have left the reset to us. */
        if (!ring_empty(r))
            break;
    }
    unlock_word(nl);
}

/* A producer after it moved tail. */
static void notify(cring *r)
{
    if (ld32(U32(r, RING_OFF_READY)) == RING_READY_ARMED)
        level(r);
}

/* A consumer after it looked: resets the eventfd of an empty watched ring. */
static void settle(cring *r)
{
    if (ld32(U32(r, RING_OFF_WATCHERS)) == 0 || ld32(U32(r, RING_OFF_READY)) != RING_READY_SET ||
        !ring_empty(r))
        return;
    level(r);
}

int cring_empty(cring *r)
{
    if (!ring_empty(r))
        return 0;
    settle(r);
    return 1;
}

/* ---- consumers (ops.go: read, consume; claim.go: consumeClaim) -------------------------- */

/* Moves head past a whole item, with the consumer journal: getCount grows
 * after head, and (slot >= 0, job != 0) the claim (job, idx) is written in
 * the same journaled step. The caller holds the consumer lock. */
static void consume(cring *r, uint64_t new_head, int slot, uint64_t job, uint64_t idx)
{
    int claim = slot >= 0 && slot < (int)RING_NUM_CLAIMS && job != 0;
    uint64_t g = ld64(U64(r, RING_OFF_GET_COUNT)) + 1;
    st64(U64(r, RING_OFF_CJ_HEAD), new_head);
    st64(U64(r, RING_OFF_CJ_GET), g);
    st64(U64(r, RING_OFF_CJ_CLAIM), claim ? (uint64_t)slot + 1 : 0);
    if (claim) {
        st64(U64(r, RING_OFF_CJ_JOB), job);
        st64(U64(r, RING_OFF_CJ_IDX), idx);
    }
    st32(U32(r, RING_OFF_CJ_VALID), 1);
    st64(U64(r, RING_OFF_HEAD), new_head); /* the step that hands the item over */
    if (claim) {
        size_t off = RING_OFF_CLAIMS + (size_t)slot * RING_CLAIM_SIZE;
        st64(U64(r, off + 8), idx);
        st64(U64(r, off), job);
    }
    st64(U64(r, RING_OFF_GET_COUNT), g);
    st32(U32(r, RING_OFF_CJ_VALID), 0);
    st64(U64(r, RING_OFF_CJ_CLAIM), 0);
    if (ld32(U32(r, RING_OFF_SPACE_WAIT)) != 0) {
        /* Wake the producers once the room the least needy asked for is free. */
        uint64_t *sn = U64(r, RING_OFF_SPACE_NEED);
        uint64_t need = ld64(sn);
        if (need == 0 || r->capacity - (ld64(U64(r, RING_OFF_TAIL)) - new_head) >= need) {
            cas64(sn, need, UINT64_MAX);
            wake_sleepers(r, RING_OFF_SPACE_WAIT, RING_OFF_HEAD, INT32_MAX);
        }
    }
}

static uint64_t le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | b[k];
    return v;
}

/* Whether the producer lock has stayed with one holder while the ring stayed
 * empty for STUCK_PRODUCER_NS (a producer killed between its two stores left
 * an item counted but not visible: the core completes it). */
typedef struct {
    uint32_t holder;
    int64_t since;
} stuck_watch;

static int producer_stuck(cring *r, stuck_watch *s)
{
    uint32_t p = ld32(U32(r, RING_OFF_PLOCK)) & LOCK_PID_MASK;
    if (p == 0 || p != s->holder) {
        s->holder = p;
        s->since = mono_ns();
        return 0;
    }
    return mono_ns() - s->since >= STUCK_PRODUCER_NS;
}

int64_t cring_get(cring *r, void *buf, int64_t cap, int slot, int slice_ms)
{
    int64_t end = slice_ms > 0 ? mono_ns() + (int64_t)slice_ms * 1000000 : 0;
    uint32_t *cl = U32(r, RING_OFF_CLOCK);
    if (slot >= 0 && slot < (int)RING_NUM_CLAIMS) {
        /* Coming for the next item: the last one's result went out. */
        uint64_t *w = U64(r, RING_OFF_CLAIMS + (size_t)slot * RING_CLAIM_SIZE);
        if (ld64(w) != 0)
            st64(w, 0);
    }
    stuck_watch stuck = {0, 0};
    for (;;) {
        int64_t rc = lock_word(cl, end);
        if (rc != 0)
            return rc;
        uint64_t head = ld64(U64(r, RING_OFF_HEAD)), tail = ld64(U64(r, RING_OFF_TAIL));
        if (head == tail) {
            unlock_word(cl);
            settle(r);
            if (producer_stuck(r, &stuck))
                return RING_USE_CORE;
            if (end == 0 || mono_ns() >= end)
                return GOMP_EAGAIN;
            int s = sleeper_enter(r, RING_OFF_DATA_WAIT, RING_OFF_DATA_SLOTS);
            if (ld64(U64(r, RING_OFF_TAIL)) == head) {
                struct timespec until = ns_to_ts(end);
                gomp_futex_wait_until(U32(r, RING_OFF_TAIL), (uint32_t)head, &until);
            }
            sleeper_exit(r, RING_OFF_DATA_WAIT, RING_OFF_DATA_SLOTS, s);
            continue;
        }
        uint64_t used = tail - head;
        const uint32_t *h = (const uint32_t *)(data(r) + (head & r->mask));
        uint32_t n = used >= RING_REC_HDR ? h[0] : 0, kind = used >= RING_REC_HDR ? h[1] : 0;
        if (used < RING_REC_HDR || used > r->capacity || (head & 7) != 0 ||
            kind != RING_KIND_WHOLE || record_size(n) > used) {
            /* Fragments, an ABORT, the rest of a dead consumer's item, or a
             * ring that is not consistent: the core's. */
            unlock_word(cl);
            return RING_USE_CORE;
        }
        if ((int64_t)n > cap) {
            unlock_word(cl);
            return (int64_t)n;
        }
        read_at(r, head + RING_REC_HDR, buf, n);
        uint64_t job = 0, idx = 0;
        if (slot >= 0 && n >= RING_CLAIM_SIZE) {
            job = le64(buf) + 1;
            idx = le64((const unsigned char *)buf + 8);
        }
        consume(r, head + record_size(n), slot, job, idx);
        unlock_word(cl);
        settle(r);
        return (int64_t)n;
    }
}

/* ---- producers (ops.go: write, pushWhole; slots.go: publish) ---------------------------- */

/* Makes the record ending at new_tail visible as one more item, with the
 * producer journal (putCount grows first, then tail), and wakes a consumer.
 * The caller holds the producer lock. */
static void publish(cring *r, uint64_t new_tail)
{
    uint64_t p = ld64(U64(r, RING_OFF_PUT_COUNT)) + 1;
    st64(U64(r, RING_OFF_PJ_TAIL), new_tail);
    st64(U64(r, RING_OFF_PJ_PUT), p);
    st32(U32(r, RING_OFF_PJ_VALID), 1);
    st64(U64(r, RING_OFF_PUT_COUNT), p);
    st64(U64(r, RING_OFF_TAIL), new_tail);
    st32(U32(r, RING_OFF_PJ_VALID), 0);
    wake_sleepers(r, RING_OFF_DATA_WAIT, RING_OFF_TAIL, 1);
    notify(r);
}

int64_t cring_write(cring *r, const void *buf, int64_t n, int slice_ms)
{
    uint64_t need = record_size((uint64_t)n);
    if ((uint64_t)n > RING_MAX_RECORD || need > r->capacity / 2)
        return RING_USE_CORE; /* streamed in fragments */
    int64_t end = slice_ms > 0 ? mono_ns() + (int64_t)slice_ms * 1000000 : 0;
    uint32_t *pl = U32(r, RING_OFF_PLOCK);
    uint64_t *head = U64(r, RING_OFF_HEAD), *tail = U64(r, RING_OFF_TAIL);
    for (;;) {
        int64_t rc = lock_word(pl, end);
        if (rc != 0)
            return rc;
        uint64_t t = ld64(tail);
        if (r->capacity - (t - ld64(head)) >= need) {
            /* Beyond tail, the area is the lock holder's. */
            put_header(r, t, (uint32_t)n, RING_KIND_WHOLE);
            write_at(r, t + RING_REC_HDR, buf, (uint64_t)n);
            publish(r, t + need);
            unlock_word(pl);
            return 0;
        }
        /* Wait for room without the lock, asking to be woken once a good
         * share of the ring is free (ops.go: waitSpace, bytesNeed). */
        unlock_word(pl);
        uint32_t hw = ld32(U32(r, RING_OFF_HEAD));
        if (r->capacity - (ld64(tail) - ld64(head)) >= need)
            continue;
        if (end == 0 || mono_ns() >= end)
            return GOMP_EAGAIN;
        int s = sleeper_enter(r, RING_OFF_SPACE_WAIT, RING_OFF_SPACE_SLOTS);
        uint64_t want = need > r->capacity / 4 ? need : r->capacity / 4;
        uint64_t *sn = U64(r, RING_OFF_SPACE_NEED);
        for (;;) {
            uint64_t v = ld64(sn);
            if (want >= v || cas64(sn, v, want))
                break;
        }
        if (r->capacity - (ld64(tail) - ld64(head)) < need) {
            struct timespec until = ns_to_ts(end);
            gomp_futex_wait_until(U32(r, RING_OFF_HEAD), hw, &until);
        }
        sleeper_exit(r, RING_OFF_SPACE_WAIT, RING_OFF_SPACE_SLOTS, s);
    }
}

/* ---- claims (claim.go: TakeClaim) ------------------------------------------------------- */

int64_t cring_take_claim(cring *r, int slot, int64_t out[2], int slice_ms)
{
    if (slot < 0 || slot >= (int)RING_NUM_CLAIMS)
        return 0;
    int64_t end = slice_ms > 0 ? mono_ns() + (int64_t)slice_ms * 1000000 : 0;
    uint32_t *cl = U32(r, RING_OFF_CLOCK);
    int64_t rc = lock_word(cl, end);
    if (rc != 0)
        return rc;
    size_t off = RING_OFF_CLAIMS + (size_t)slot * RING_CLAIM_SIZE;
    uint64_t job = ld64(U64(r, off)), idx = ld64(U64(r, off + 8));
    st64(U64(r, off), 0);
    unlock_word(cl);
    if (job == 0)
        return 0;
    out[0] = (int64_t)(job - 1);
    out[1] = (int64_t)idx;
    return 1;
}
