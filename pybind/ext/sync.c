/* Semaphores and locks of gomp._gomp: the type SemLock, which stands in for
 * _multiprocessing.SemLock (gomp._multiprocessing exports it), and
 * sem_unlink().
 *
 * The state of a semaphore is a small region of shared memory (struct
 * semshm below): an anonymous MAP_SHARED mapping when the SemLock is unlinked
 * at once (the fork start method: children inherit the mapping), otherwise a
 * file with an unguessable name in /dev/shm that spawn and forkserver
 * children open again by name (see "named semaphores" below).
 *
 * Fast path in C, on purpose: an uncontended acquire+release must not cost
 * more than the stdlib's, and one call from C into Go costs more than that
 * (ARCHITECTURE.md, "What lives in C and what in Go"). So the uncontended
 * acquire and release are done here, each one atomic operation on the shared
 * word. Sleeping and waking are here too (futex(2) in gomp_run slices: GIL
 * released, Ctrl-C checked between slices), because going through the Go
 * runtime made each hand-off between processes slower (see "sleeping and
 * waking" below). The Go core (gomp/owner) decides whether the owner of a
 * lock is dead; it is loaded only by a process that has waited for a lock
 * longer than one slice. The word protocols and the layout of the shared
 * region are specified in ARCHITECTURE.md ("Semaphore region").
 *
 * The two word protocols:
 *
 *   counting semaphore (PROTO_SEM): a 64-bit word, the value in the low 32
 *     bits, the number of registered sleepers in the high 32 bits. Acquire
 *     is a CAS that decrements a positive value; release a CAS that
 *     increments it (below maxvalue) and wakes one sleeper if the count it
 *     replaced was not zero. A sleeper killed while registered leaves the
 *     count raised: later releases then make a needless wake call (glibc's
 *     semaphores share that trait); the state stays correct.
 *   owner-tracked mutex (PROTO_MUTEX, Lock and RLock): a 64-bit word whose
 *     low half is 0 = free, else the owner's id (pid + start-time tag,
 *     gomp/owner), and whose high half counts registered sleepers.
 *     Acquire is a CAS of the owner 0 -> id; release swaps in 0 and wakes
 *     one sleeper if any is registered.
 *
 * What else is here rather than in Go, and why: making and mapping the
 * shared region (an anonymous mapping, or a named file: a few system calls,
 * kept out of Go so that a process that only makes, attaches to, removes or
 * uses locks never loads the Go runtime; see "named semaphores" below for the
 * numbers); this process's owner id (read once from /proc/self/stat, needed
 * by the fast path); and the layout of the shared region, written and
 * checked here.
 *
 * The per-process bookkeeping (count, last_tid) is the stdlib's: count is
 * acquires minus releases through this object in this process, last_tid the
 * thread that acquired last; _is_mine() is count > 0 && last_tid == current
 * thread. A forked child starts with count 0 (the fork generation below),
 * also when it was forked by os.fork() rather than by gomp. */
#define _GNU_SOURCE 1 /* 1: see gomp_ext.h */
#include "gomp_ext.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { RECURSIVE_MUTEX = 0, SEMAPHORE = 1 };
enum { PROTO_SEM = 0, PROTO_MUTEX = 1 };

#define GOMP_SEM_VALUE_MAX INT_MAX

#define SEMSHM_MAGIC 0x53504d47u /* "GMPS" */
#define SEMSHM_VERSION 4
#define SEMSHM_SIZE 128 /* the header and the default user region */
#define USER_SIZE 64    /* the default user region */
#define HEADER_SIZE (SEMSHM_SIZE - USER_SIZE)

/* Owner ids (gomp/owner; ARCHITECTURE.md, "Owner ids"): pid in bits 0..21,
 * start-time tag in bits 22..30. */
#define PID_BITS 22
#define PID_MASK ((1u << PID_BITS) - 1)
#define TAG_MASK 0x1ffu
#define NO_OWNER (TAG_MASK << PID_BITS)
#define OWNER_MASK 0x7fffffffu

/* semshm.flags: a waiter that finds the owner of this lock dead takes it
 * over (robust=True). Without it the lock stays held, as the stdlib's does. */
#define SHM_ROBUST 1u

#define SEM_VALUE(w) ((uint32_t)(w))
#define SEM_WAITERS(w) ((uint32_t)((w) >> 32))
#define MUTEX_OWNER(w) (OWNER_MASK & (uint32_t)(w))
#define LOW_HALF ((uint64_t)0xffffffffu)

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "shared-memory atomics must be lock-free");

/* The shared region. The layout is part of the format shared by every
 * process that maps the semaphore: change SEMSHM_VERSION with it. */
typedef struct {
    uint32_t magic; /* written last, when the rest is ready */
    uint8_t version;
    uint8_t proto;
    uint8_t kind;
    uint8_t flags; /* SHM_ROBUST */
    int32_t maxvalue;
    uint32_t size;          /* of the whole region: the header and the user region */
    uint64_t pidns;         /* pid namespace (inode) of the creator: owner ids are its pids */
    _Atomic uint64_t sem;   /* PROTO_SEM word */
    _Atomic uint64_t mutex; /* PROTO_MUTEX word */
    uint32_t pad2[6];
    /* For the Python layer (a Barrier's state, a Condition's table of
     * waiters), through the buffer protocol: USER_SIZE bytes, or more when
     * the SemLock was made with a larger user_size (up to size). */
    unsigned char user[USER_SIZE];
} semshm;

_Static_assert(sizeof(semshm) == SEMSHM_SIZE, "semshm layout");
_Static_assert(offsetof(semshm, sem) % 8 == 0 && offsetof(semshm, mutex) % 8 == 0, "alignment");

typedef struct {
    PyObject_HEAD
    semshm *shm;
    unsigned long last_tid;
    int count;
    int kind;
    int maxvalue;
    int proto;
    int foreign;            /* made in another pid namespace: our owner id is NO_OWNER */
    int robust;             /* SHM_ROBUST: take a dead owner's lock over */
    uint32_t dead_seen;     /* the dead owner this process already warned about */
    unsigned long fork_gen; /* fork_generation when count was last valid */
    PyObject *name;         /* str, or None once unlinked at creation */
    size_t size;            /* of the mapping */
} SemLockObject;

static PyTypeObject SemLockType;
static PyObject *OwnerDiedWarning;

/* ---- process identity ----------------------------------------------------------------- */

/* Bumped in a forked child (pthread_atfork): objects then reset their count. */
static unsigned long fork_generation;
/* This process's owner id, 0 until computed (again after a fork). */
static uint32_t self_id;
static uint32_t self_pid;
static uint64_t self_pidns;

static void sync_atfork_child(void)
{
    fork_generation++;
    self_id = 0;
    self_pid = 0;
}

static uint64_t read_pidns(void)
{
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) < 0)
        return 0;
    return (uint64_t)st.st_ino;
}

/* The owner id of process pid given the contents of its /proc/PID/stat, as
 * gomp/owner.FromStat computes it (the format and the parser are specified
 * in ARCHITECTURE.md, "Owner ids"; the test vector
 * gomp/owner/testdata/stat_vectors.txt checks that both agree): the pid and
 * the low 9 bits of field 22 (the start time). The fields are counted from
 * the last ')' (the command name may contain any character); field 3 must
 * be one character and field 22 a decimal number. NO_OWNER when the
 * contents do not parse. */
static uint32_t owner_id_from_stat(long pid, const char *buf)
{
    if (pid <= 0 || pid > (long)PID_MASK)
        return NO_OWNER;
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return NO_OWNER;
    p++;
    const char *f = p;
    for (int field = 3; field <= 22; field++) {
        while (*p != 0 && isspace((unsigned char)*p))
            p++;
        if (*p == 0)
            return NO_OWNER;
        f = p;
        while (*p != 0 && !isspace((unsigned char)*p))
            p++;
        if (field == 3 && p - f != 1)
            return NO_OWNER;
    }
    unsigned long long start = 0;
    for (const char *q = f; q < p; q++) {
        if (*q < '0' || *q > '9')
            return NO_OWNER;
        unsigned d = (unsigned)(*q - '0');
        if (start > (ULLONG_MAX - d) / 10)
            return NO_OWNER;
        start = start * 10 + d;
    }
    return (uint32_t)pid | (uint32_t)(start & TAG_MASK) << PID_BITS;
}

/* The owner id of this process; NO_OWNER if /proc cannot tell (then this
 * process is never declared dead). */
static uint32_t compute_self_id(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NO_OWNER;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return NO_OWNER;
    buf[n] = 0;
    return owner_id_from_stat((long)getpid(), buf);
}

uint32_t gomp_self_owner_id(void)
{
    if (self_id == 0)
        self_id = compute_self_id();
    return self_id;
}

uint32_t gomp_self_pid(void)
{
    if (self_pid == 0)
        self_pid = (uint32_t)getpid();
    return self_pid;
}

/* The calling thread's identity for last_tid: what PyThread_get_thread_ident()
 * returns on Linux, without its extra call level. */
static inline unsigned long thread_id(void)
{
    return (unsigned long)pthread_self();
}

static inline uint32_t owner_id(SemLockObject *s)
{
    if (s->foreign)
        return NO_OWNER;
    if (self_id == 0)
        self_id = compute_self_id();
    return self_id;
}

static inline void check_fork(SemLockObject *s)
{
    if (s->fork_gen != fork_generation) {
        s->fork_gen = fork_generation;
        s->count = 0;
    }
}

/* ---- the shared region ---------------------------------------------------------------- */

static void shm_init(semshm *m, size_t size, int proto, int kind, int value, int maxvalue,
                     int robust)
{
    m->version = SEMSHM_VERSION;
    m->size = (uint32_t)size;
    m->proto = (uint8_t)proto;
    m->flags = robust ? SHM_ROBUST : 0;
    m->kind = (uint8_t)kind;
    m->maxvalue = maxvalue;
    m->pidns = self_pidns;
    if (proto == PROTO_MUTEX)
        atomic_store(&m->mutex, (uint64_t)(value ? 0 : NO_OWNER));
    else
        atomic_store(&m->sem, (uint64_t)(uint32_t)value);
    atomic_store_explicit((_Atomic uint32_t *)&m->magic, SEMSHM_MAGIC, memory_order_release);
}

static semshm *shm_map(int fd, size_t size)
{
    int flags = fd < 0 ? MAP_SHARED | MAP_ANONYMOUS : MAP_SHARED;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
    return p == MAP_FAILED ? NULL : (semshm *)p;
}

/* ---- named semaphores: files with unguessable names in /dev/shm ------------------------- */

/* A named semaphore is a file directly in /dev/shm (or in $GOMP_SHM_DIR),
 * called "gomp-sem." followed by the SemLock's name without its leading
 * slashes. SemLock names carry 48 random bits (synchronize.SemLock._make_name),
 * so another local user cannot guess a name to take it first; and should a
 * file of that name exist anyway, creation fails with FileExistsError
 * (O_CREAT|O_EXCL: an existing file is never adopted) and SemLock._create
 * draws another name. There is no shared directory of ours to squat: an
 * earlier design kept the files in /dev/shm/gomp-sem-UID/, a name any local
 * user could create first, which made every named semaphore of that uid fail
 * (a local denial of service).
 *
 * /dev/shm is sticky (mode 1777): nobody but the owner of a file may remove
 * or rename it, so once created the file stays ours. A directory that others
 * may write to without the sticky bit is refused (another user could replace
 * our files there). The file is made with mode 0600 and O_NOFOLLOW; opening
 * an existing one (a spawned child attaching by name) checks with fstat that
 * it is a regular file owned by our effective uid with no access for others,
 * so a file planted by another user under a name we use is refused rather
 * than used. sem_unlink removes only a file we own.
 *
 * The names share /dev/shm with POSIX shared memory (shm_open("/NAME") is
 * /dev/shm/NAME) and POSIX semaphores (/dev/shm/sem.NAME). No POSIX semaphore
 * can be one of our files (theirs start with "sem."); a shm_open name could
 * only coincide if some program of the same user chose "gomp-sem.*" on
 * purpose, and then O_EXCL makes us pick another name and the magic number
 * in the region makes _rebuild refuse a foreign file.
 *
 * These few system calls are made here, not in the Go core, on purpose:
 * loading the Go runtime costs milliseconds and megabytes in a process that
 * would otherwise not need it (ARCHITECTURE.md), and a spawned child that only
 * unpickles a lock, the resource tracker that removes a leaked name, or a fork
 * server whose preloaded __main__ makes a lock (the server must never start Go)
 * would pay it just to open, create or remove a file. */

#define SEM_FILE_PREFIX "gomp-sem."
#define SEM_NAME_MAX (255 - (int)(sizeof SEM_FILE_PREFIX - 1))
/* The largest shared region a SemLock may have (user_size + the header). */
#define SEMSHM_MAX_SIZE (1 << 20)

/* Checks and converts a SemLock name to its file name (SEM_FILE_PREFIX and
 * the name without its leading slashes). Returns 0, or -1 with OSError
 * (EINVAL, ENAMETOOLONG) set. */
static int sem_file_name(PyObject *name, char out[256])
{
    Py_ssize_t len;
    const char *p = PyUnicode_AsUTF8AndSize(name, &len);
    if (p == NULL)
        return -1;
    const char *end = p + len;
    while (p < end && *p == '/')
        p++;
    size_t n = (size_t)(end - p);
    int err = 0;
    if (n == 0 || memchr(p, '/', n) || memchr(p, 0, n))
        err = EINVAL;
    else if (n > (size_t)SEM_NAME_MAX)
        err = ENAMETOOLONG;
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
        return -1;
    }
    memcpy(out, SEM_FILE_PREFIX, sizeof SEM_FILE_PREFIX - 1);
    memcpy(out + sizeof SEM_FILE_PREFIX - 1, p, n);
    out[sizeof SEM_FILE_PREFIX - 1 + n] = 0;
    return 0;
}

/* Opens the directory of named semaphores (/dev/shm or $GOMP_SHM_DIR).
 * Returns a descriptor, or -1 with OSError set. A directory that other users
 * may write to must be sticky (as /dev/shm and /tmp are). */
static int sem_dir_open(void)
{
    const char *base = getenv("GOMP_SHM_DIR");
    if (base == NULL || base[0] == 0)
        base = "/dev/shm";
    int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, base);
        return -1;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
        close(fd);
        PyErr_Format(PyExc_PermissionError,
                     "gomp: refusing %s for semaphores: other users may write to it and it is "
                     "not sticky (chmod +t it, or set GOMP_SHM_DIR to another directory)",
                     base);
        return -1;
    }
    return fd;
}

/* Whether st is a file this process may trust as its own semaphore: a regular
 * file owned by our effective uid that no other user may read or write.
 * Sets OSError naming the SemLock (EACCES, with what is wrong) if not. */
static int sem_file_trusted(const struct stat *st, PyObject *name)
{
    uid_t uid = geteuid();
    if (S_ISREG(st->st_mode) && st->st_uid == uid && (st->st_mode & 077) == 0)
        return 1;
    char why[160];
    if (!S_ISREG(st->st_mode))
        snprintf(why, sizeof why, "it is not a regular file");
    else
        snprintf(why, sizeof why,
                 "it must be owned by uid %u with no access for others, found owner %u and "
                 "mode 0%03o",
                 (unsigned)uid, (unsigned)st->st_uid, (unsigned)(st->st_mode & 0777));
    PyErr_Format(PyExc_PermissionError, "gomp: refusing the semaphore file of %R: %s", name, why);
    return 0;
}

/* Creates (create) or opens the file of a named semaphore and maps it.
 * size is the size of the region to create; opening maps the file's size.
 * Returns the mapping (its size in *mapped), or NULL with an exception set. */
static semshm *sem_file_map(PyObject *name, int create, size_t size, size_t *mapped)
{
    char fname[256];
    if (sem_file_name(name, fname) < 0)
        return NULL;
    int dfd = sem_dir_open();
    if (dfd < 0)
        return NULL;
    int flags = O_RDWR | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = openat(dfd, fname, flags, 0600);
    semshm *m = NULL;
    struct stat st;
    if (fd < 0)
        goto fail;
    if (create) {
        /* The umask cannot have added bits to 0600; fchmod only makes sure. */
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0)
            goto fail;
    } else {
        if (fstat(fd, &st) < 0)
            goto fail;
        if (!sem_file_trusted(&st, name)) {
            close(fd);
            close(dfd);
            return NULL;
        }
        if (st.st_size < SEMSHM_SIZE || st.st_size > SEMSHM_MAX_SIZE) {
            errno = EINVAL;
            goto fail;
        }
        size = (size_t)st.st_size;
    }
    if ((m = shm_map(fd, size)) == NULL)
        goto fail;
    close(fd);
    close(dfd);
    *mapped = size;
    return m;
fail:;
    int e = errno;
    if (fd >= 0) {
        close(fd);
        if (create)
            unlinkat(dfd, fname, 0);
    }
    close(dfd);
    errno = e;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
    return NULL;
}

/* Removes the file of a named semaphore; 0, or -1 with an exception set. A
 * file that is not ours (another user's, under a name we once used) is left
 * alone: PermissionError. */
static int sem_file_unlink(PyObject *name)
{
    char fname[256];
    if (sem_file_name(name, fname) < 0)
        return -1;
    int dfd = sem_dir_open();
    if (dfd < 0)
        return -1;
    struct stat st;
    int r = fstatat(dfd, fname, &st, AT_SYMLINK_NOFOLLOW);
    if (r == 0 && !sem_file_trusted(&st, name)) {
        close(dfd);
        return -1;
    }
    if (r == 0)
        r = unlinkat(dfd, fname, 0);
    int e = errno;
    close(dfd);
    if (r < 0) {
        errno = e;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
        return -1;
    }
    return 0;
}

static PyObject *new_semlock(PyTypeObject *type, semshm *m, size_t size, PyObject *name)
{
    SemLockObject *s = (SemLockObject *)type->tp_alloc(type, 0);
    if (s == NULL) {
        munmap(m, size);
        return NULL;
    }
    s->shm = m;
    s->size = size;
    s->kind = m->kind;
    s->maxvalue = m->maxvalue;
    s->proto = m->proto;
    s->foreign = m->pidns != self_pidns;
    s->robust = (m->flags & SHM_ROBUST) != 0;
    s->dead_seen = 0;
    s->fork_gen = fork_generation;
    s->count = 0;
    s->last_tid = 0;
    s->name = Py_NewRef(name);
    return (PyObject *)s;
}

static PyObject *semlock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kind",    "value",  "maxvalue",  "name", "unlink",
                             "tracked", "robust", "user_size", NULL};
    int kind, value, maxvalue, unlink, tracked = 0, robust = 0;
    Py_ssize_t user_size = USER_SIZE;
    PyObject *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiiUp|$ppn:SemLock", kwlist, &kind, &value,
                                     &maxvalue, &name, &unlink, &tracked, &robust, &user_size))
        return NULL;
    if (kind != RECURSIVE_MUTEX && kind != SEMAPHORE) {
        PyErr_SetString(PyExc_ValueError, "unrecognized kind");
        return NULL;
    }
    if (value < 0) {
        /* The stdlib's type (sem_open fails with EINVAL), a clearer message. */
        PyObject *exc = Py_BuildValue(
            "(iN)", EINVAL,
            PyUnicode_FromFormat("semaphore initial value must be >= 0, not %d", value));
        if (exc != NULL) {
            PyErr_SetObject(PyExc_OSError, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    if (user_size < USER_SIZE || user_size > SEMSHM_MAX_SIZE - HEADER_SIZE) {
        PyErr_Format(PyExc_ValueError, "user_size must be in %d..%d", USER_SIZE,
                     SEMSHM_MAX_SIZE - HEADER_SIZE);
        return NULL;
    }
    size_t size = (size_t)user_size + HEADER_SIZE;
    int proto = (kind == RECURSIVE_MUTEX || tracked || robust) ? PROTO_MUTEX : PROTO_SEM;
    if (proto == PROTO_MUTEX && (maxvalue != 1 || value > 1)) {
        PyErr_SetString(PyExc_ValueError,
                        "a lock (recursive, tracked or robust SemLock) needs value 0 or 1 "
                        "and maxvalue 1");
        return NULL;
    }
    if (self_pidns == 0)
        self_pidns = read_pidns();

    semshm *m;
    if (unlink) {
        /* Shared only by inheritance (fork): an anonymous shared mapping, no
         * name to create and remove, and no need for the Go core. */
        if ((m = shm_map(-1, size)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        shm_init(m, size, proto, kind, value, maxvalue, robust);
        return new_semlock(type, m, size, Py_None);
    }
    if ((m = sem_file_map(name, 1, size, &size)) == NULL)
        return NULL;
    shm_init(m, size, proto, kind, value, maxvalue, robust);
    return new_semlock(type, m, size, name);
}

static void semlock_dealloc(SemLockObject *s)
{
    if (s->shm != NULL)
        munmap(s->shm, s->size);
    Py_XDECREF(s->name);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* _rebuild(handle, kind, maxvalue, name): attach to the named semaphore (in a
 * spawned or forkserver child that unpickled it). */
static PyObject *semlock_rebuild(PyObject *cls, PyObject *args)
{
    PyObject *handle, *name;
    int kind, maxvalue;
    if (!PyArg_ParseTuple(args, "OiiO:_rebuild", &handle, &kind, &maxvalue, &name))
        return NULL;
    if (name == Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "cannot rebuild an unnamed SemLock: it was made for the fork start "
                        "method and is shared by inheritance only");
        return NULL;
    }
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "SemLock name must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    if (self_pidns == 0)
        self_pidns = read_pidns();
    size_t size;
    semshm *m = sem_file_map(name, 0, 0, &size);
    if (m == NULL)
        return NULL;
    uint32_t magic = atomic_load_explicit((_Atomic uint32_t *)&m->magic, memory_order_acquire);
    const char *bad = NULL;
    if (magic != SEMSHM_MAGIC || m->version != SEMSHM_VERSION ||
        (m->proto != PROTO_SEM && m->proto != PROTO_MUTEX) || m->size != size)
        bad = "is not a gomp semaphore of this version";
    else if (m->kind != kind || m->maxvalue != maxvalue)
        bad = "has another kind or maxvalue than the pickled SemLock";
    if (bad != NULL) {
        munmap(m, size);
        PyErr_Format(PyExc_ValueError, "the semaphore %R %s", name, bad);
        return NULL;
    }
    return new_semlock((PyTypeObject *)cls, m, size, name);
}

/* ---- acquire ----------------------------------------------------------------------------- */

static inline int try_acquire(SemLockObject *s, uint32_t id)
{
    semshm *m = s->shm;
    if (s->proto == PROTO_MUTEX) {
        /* Retried while the lock is free: sleepers change the high half of
         * the word as they register and leave, and a CAS that fails for that
         * must not send this caller to sleep for a free lock. */
        uint64_t w = atomic_load_explicit(&m->mutex, memory_order_relaxed);
        while (MUTEX_OWNER(w) == 0) {
            if (atomic_compare_exchange_weak_explicit(&m->mutex, &w, (w & ~LOW_HALF) | id,
                                                      memory_order_acquire, memory_order_relaxed))
                return 1;
        }
        return 0;
    }
    uint64_t w = atomic_load_explicit(&m->sem, memory_order_relaxed);
    while (SEM_VALUE(w) != 0) {
        if (atomic_compare_exchange_weak_explicit(&m->sem, &w, w - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return 1;
    }
    return 0;
}

/* ---- sleeping and waking -------------------------------------------------------------------
 *
 * Waits sleep on the shared word with futex(2) (shared futexes: no
 * FUTEX_PRIVATE_FLAG, so waiters in other processes that map the page are
 * woken), in slices run by gomp_run() with the GIL released, through the C
 * side's one futex layer (helpers.c; the Go side's is gomp/futex). The choices, each
 * measured (tests_py/bench/NOTES.md, "Locks: sleeping and waking"):
 *
 *  - Sleep and wake here, not in the Go core: every entry into an idle Go
 *    runtime wakes its sysmon thread, which then takes CPU from the other
 *    process at each hand-off.
 *  - Sleepers are counted in the high half of the word, for the mutex too
 *    (rather than a "waiters" bit, which costs a needless wake per contended
 *    episode). The price: a sleeper killed while registered leaves the
 *    count raised, and each later release makes one needless wake call
 *    (glibc's semaphores behave the same); correctness is not affected.
 *  - No "a woken waiter is pending" bit: it spared wake calls but no time.
 *  - No spinning before sleeping: on a loaded machine a spinner takes the
 *    CPU that the holder needs.
 *
 * What does need judgement, whether the owner of a lock is dead (reading
 * /proc), stays in Go (gomp/owner) and is asked at most once per slice,
 * after the first one: a wait shorter than a slice never loads the Go
 * runtime at all. */

/* The waiting step asks the caller to load the Go core (with the GIL held)
 * and to call again: it needs the core to check an owner. */
#define SYNC_NEED_CORE (-300001)
/* The waiting step found the owner of a lock that is not robust dead (in
 * wait_ctx.dead): the caller warns, with the GIL, and waits on. */
#define SYNC_OWNER_DEAD (-300002)

typedef struct {
    semshm *shm;
    uint32_t id;
    int check_owner;
    int calls;
    const gomp_deadline *d;
    int robust;         /* take a dead owner's lock over */
    uint32_t dead_seen; /* a dead owner already reported: not checked again */
    uint32_t dead;      /* out: the dead owner found (SYNC_OWNER_DEAD) */
} wait_ctx;

/* The end of this slice as an absolute CLOCK_MONOTONIC time: gomp_run's
 * slice (ms, rounded up), cut to the deadline, so that a timeout is honoured
 * to the microsecond rather than to the next millisecond. */
static struct timespec slice_end(const gomp_deadline *d, int ms)
{
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double t = (double)now.tv_sec + now.tv_nsec * 1e-9 + ms * 1e-3;
    if (!d->infinite && d->end < t)
        t = d->end;
    end.tv_sec = (time_t)t;
    end.tv_nsec = (long)((t - (double)end.tv_sec) * 1e9);
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    } else if (end.tv_nsec < 0)
        end.tv_nsec = 0;
    return end;
}

/* The low half of a 64-bit word (a semaphore's value, a mutex's owner): the
 * futex word. Little-endian machines (x86-64, arm64) put it first. */
static inline void *low_half(_Atomic uint64_t *w)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (void *)w;
#else
    return (char *)w + 4;
#endif
}

#define SEM_WAITER ((uint64_t)1 << 32)

/* One slice of waiting for a token of a counting semaphore: registered as a
 * sleeper (high half of the word) while it may sleep, so that a releaser
 * knows to wake it; the token is taken and the registration dropped in one
 * CAS. Returns 0 with the token, or GOMP_EAGAIN when the slice ended. */
static int64_t sem_step(void *c, int ms)
{
    wait_ctx *w = c;
    _Atomic uint64_t *word = &w->shm->sem;
    struct timespec end = slice_end(w->d, ms);
    atomic_fetch_add(word, SEM_WAITER);
    for (;;) {
        uint64_t v = atomic_load(word);
        if (SEM_VALUE(v) != 0) {
            if (atomic_compare_exchange_weak(word, &v, v - 1 - SEM_WAITER))
                return 0;
            continue;
        }
        if (gomp_futex_wait_until(low_half(word), 0, &end) != 0)
            break;
    }
    atomic_fetch_sub(word, SEM_WAITER);
    return GOMP_EAGAIN;
}

/* One slice of waiting for an owner-tracked mutex: registered as a sleeper
 * (high half of the word) while it may sleep, as for a semaphore; the lock is
 * taken and the registration dropped in one CAS. From the second slice on,
 * the owner is checked (by the Go core). A dead owner of a robust lock is
 * replaced by this process: the result is then the dead owner's id (> 0).
 * A dead owner of any other lock keeps it, as with the stdlib: the result is
 * SYNC_OWNER_DEAD once, so that the caller can say so, and that owner is not
 * checked again. Returns 0 when taken, GOMP_EAGAIN when the slice ended,
 * SYNC_NEED_CORE to have the core loaded. */
static int64_t mutex_step(void *c, int ms)
{
    wait_ctx *w = c;
    _Atomic uint64_t *word = &w->shm->mutex;
    int check = w->check_owner && w->calls++ > 0;
    if (check && !gomp_core_ok) {
        w->calls--;
        return SYNC_NEED_CORE;
    }
    struct timespec end = slice_end(w->d, ms);
    atomic_fetch_add(word, SEM_WAITER);
    for (;;) {
        uint64_t v = atomic_load(word);
        uint32_t owner = MUTEX_OWNER(v);
        if (owner == 0) {
            if (atomic_compare_exchange_weak(word, &v, ((v & ~LOW_HALF) | w->id) - SEM_WAITER))
                return 0;
            continue;
        }
        if (check) {
            check = 0;
            if (owner != w->dead_seen && gomp_core.owner_alive(owner) == 0) {
                if (!w->robust) {
                    atomic_fetch_sub(word, SEM_WAITER);
                    w->dead = owner;
                    return SYNC_OWNER_DEAD;
                }
                if (atomic_compare_exchange_strong(word, &v,
                                                   ((v & ~LOW_HALF) | w->id) - SEM_WAITER))
                    return owner;
                continue;
            }
        }
        if (gomp_futex_wait_until(low_half(word), (uint32_t)v, &end) != 0)
            break;
    }
    atomic_fetch_sub(word, SEM_WAITER);
    return GOMP_EAGAIN;
}

/* Releases the word (count bookkeeping is the caller's). Returns 0, or -1
 * with ValueError if it was not held. */
static int release_word(SemLockObject *s);

static const char *const acquire_names[] = {"block", "timeout"};

/* acquire(block=True, timeout=None): *blocking and *timeout (NULL if not
 * given). */
static int parse_acquire(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int *blocking,
                         PyObject **timeout)
{
    PyObject *a[2];
    if (gomp_parse_args("acquire", args, nargs, kwnames, acquire_names, 2, 0, a) < 0)
        return -1;
    *timeout = a[1];
#if GOMP_SEMLOCK_BLOCK_IS_TRUTH
    if (a[0] != NULL) {
        int b = PyObject_IsTrue(a[0]);
        if (b < 0)
            return -1;
        *blocking = b;
    }
#else
    if (a[0] != NULL) {
        /* An integer (bool is one), as the stdlib's C signature takes it
         * before 3.12: block=None or 'x' is a TypeError, not a truth value. */
        int overflow;
        long b = PyLong_AsLongAndOverflow(a[0], &overflow);
        if (b == -1 && PyErr_Occurred())
            return -1;
        if (overflow || b > INT_MAX || b < INT_MIN) {
            PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
            return -1;
        }
        *blocking = b != 0;
    }
#endif
    return 0;
}

/* The timeout of acquire() in seconds, NO_TIMEOUT for None. It is converted
 * before any attempt, also when block is false or the lock is free: a
 * timeout of a wrong type is a TypeError every time, as with the stdlib, not
 * only when it would have been used. (NaN is refused only when acquire()
 * would wait: acquire_slow.) Returns 0, or -1 with the exception set. */
#define NO_TIMEOUT (-INFINITY)
static int convert_timeout(PyObject *timeout, double *out)
{
    *out = NO_TIMEOUT;
    if (timeout == NULL || timeout == Py_None)
        return 0;
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    *out = t == NO_TIMEOUT ? 0 : t; /* -inf: do not wait */
    return 0;
}

static PyObject *acquired_after_owner_died(SemLockObject *s, int64_t dead);
static int warn_owner_died_holding(SemLockObject *s, uint32_t dead);

/* The part of acquire() that may wait, out of line so that the fast path
 * stays small. */
static PyObject *__attribute__((noinline))
acquire_slow(SemLockObject *s, uint32_t id, int blocking, double t)
{
    if (!blocking)
        Py_RETURN_FALSE;
    gomp_deadline d;
    /* OSError(EINVAL), the stdlib's type (sem_timedwait refuses such a
     * deadline), with a message that says what is wrong; as with the stdlib,
     * only when the lock is taken and acquire() would wait. Too large: more
     * seconds than a timespec's long holds (inf too); the stdlib refuses
     * those and waits for any smaller timeout. */
    const char *bad = isnan(t)                         ? "timeout must not be NaN"
                      : t != NO_TIMEOUT && t >= 0x1p63 ? "timeout is too large"
                                                       : NULL;
    if (bad != NULL) {
        PyObject *exc = Py_BuildValue("(is)", EINVAL, bad);
        if (exc != NULL) {
            PyErr_SetObject(PyExc_OSError, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    if (t != NO_TIMEOUT) {
        if (t <= 0)
            Py_RETURN_FALSE; /* tried once already, as sem_timedwait with a past deadline does */
        gomp_deadline_set(&d, t);
    } else
        gomp_deadline_set(&d, -1);
    wait_ctx w = {s->shm, id, !s->foreign && id != NO_OWNER, 0, &d, s->robust, s->dead_seen, 0};
    int64_t r;
    for (;;) {
        r = gomp_run(s->proto == PROTO_MUTEX ? mutex_step : sem_step, &w, &d, 0);
        if (r == SYNC_NEED_CORE) {
            if (gomp_core_ready() < 0)
                return NULL;
        } else if (r == SYNC_OWNER_DEAD) {
            s->dead_seen = w.dead_seen = w.dead;
            if (warn_owner_died_holding(s, w.dead) < 0)
                return NULL;
        } else
            break;
    }
    if (r == GOMP_TIMEDOUT)
        Py_RETURN_FALSE;
    if (r == GOMP_EPYERR)
        return NULL;
    if (r < 0)
        return gomp_set_error(r);
    if (r > 0)
        return acquired_after_owner_died(s, r);
    s->count++;
    s->last_tid = thread_id();
    Py_RETURN_TRUE;
}

static PyObject *semlock_acquire(SemLockObject *s, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    int blocking = 1;
    PyObject *timeout_arg = NULL;
    double timeout;
    if (nargs == 1 && kwnames == NULL && PyBool_Check(args[0]))
        blocking = args[0] == Py_True; /* acquire(False): Condition and Event do it a lot */
    else if ((nargs || kwnames) && parse_acquire(args, nargs, kwnames, &blocking, &timeout_arg) < 0)
        return NULL;
    check_fork(s);
    unsigned long tid = thread_id();
    if (s->kind == RECURSIVE_MUTEX && s->count > 0 && s->last_tid == tid) {
        if (s->count == INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "recursive lock acquired too many times");
            return NULL;
        }
        s->count++;
        Py_RETURN_TRUE; /* the timeout is not looked at, as with the stdlib */
    }
    if (convert_timeout(timeout_arg, &timeout) < 0)
        return NULL;
    uint32_t id = s->proto == PROTO_MUTEX ? owner_id(s) : 0;
    if (__builtin_expect(!try_acquire(s, id), 0))
        return acquire_slow(s, id, blocking, timeout);
    s->count++;
    s->last_tid = tid;
    Py_RETURN_TRUE;
}

/* A waiter found the owner of a lock that is not robust dead: the lock stays
 * held, as the stdlib's does (a dead process never releases it), and this
 * process says so once per lock and dead owner. -1 if warnings are errors. */
static int warn_owner_died_holding(SemLockObject *s, uint32_t dead)
{
    return PyErr_WarnFormat(OwnerDiedWarning, 1,
                            "the process %d that held this %s died without releasing it; "
                            "it stays held (waiters block or time out, as with the standard "
                            "library); a lock made with robust=True is taken over instead",
                            (int)(dead & PID_MASK), s->kind == RECURSIVE_MUTEX ? "RLock" : "Lock");
}

/* A waiter found the owner of a robust lock dead and took the lock over:
 * the call succeeds and warns (OwnerDiedWarning). If warnings are errors,
 * the lock is released again before the exception propagates, so that it
 * is not left held by a caller that never got True. */
static PyObject *acquired_after_owner_died(SemLockObject *s, int64_t dead)
{
    s->count++;
    s->last_tid = thread_id();
    if (PyErr_WarnFormat(OwnerDiedWarning, 1,
                         "the process %d that held this %s died without releasing it; "
                         "the lock was taken over and the data it protects may be inconsistent",
                         (int)(dead & PID_MASK),
                         s->kind == RECURSIVE_MUTEX ? "RLock" : "Lock") < 0) {
        s->count--;
        PyObject *exc = gomp_take_exception();
        release_word(s);
        PyErr_Clear();
        gomp_restore_exception(exc);
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* ---- release ----------------------------------------------------------------------------- */

static void wake_one(SemLockObject *s)
{
    gomp_futex_wake(low_half(s->proto == PROTO_MUTEX ? &s->shm->mutex : &s->shm->sem), 1);
}

static int release_word(SemLockObject *s)
{
    semshm *m = s->shm;
    if (s->proto == PROTO_MUTEX) {
        uint64_t w = atomic_load_explicit(&m->mutex, memory_order_relaxed);
        do {
            if (MUTEX_OWNER(w) == 0) {
                PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
                return -1;
            }
        } while (!atomic_compare_exchange_weak_explicit(
            &m->mutex, &w, w & ~LOW_HALF, memory_order_release, memory_order_relaxed));
        if (SEM_WAITERS(w) != 0)
            wake_one(s);
        return 0;
    }
    uint64_t w = atomic_load_explicit(&m->sem, memory_order_relaxed);
    for (;;) {
        if ((int64_t)SEM_VALUE(w) >= (int64_t)s->maxvalue) {
            PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
            return -1;
        }
        if (atomic_compare_exchange_weak_explicit(&m->sem, &w, w + 1, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    if (SEM_WAITERS(w) != 0)
        wake_one(s);
    return 0;
}

static PyObject *semlock_release(SemLockObject *s, PyObject *unused)
{
    check_fork(s);
    if (s->kind == RECURSIVE_MUTEX) {
        if (!(s->count > 0 && s->last_tid == thread_id())) {
            PyErr_SetString(PyExc_AssertionError,
                            "attempt to release recursive lock not owned by thread");
            return NULL;
        }
        if (s->count > 1) {
            s->count--;
            Py_RETURN_NONE;
        }
    }
    if (release_word(s) < 0)
        return NULL;
    s->count--;
    Py_RETURN_NONE;
}

static PyObject *semlock_enter(SemLockObject *s, PyObject *unused)
{
    return semlock_acquire(s, NULL, 0, NULL);
}

static PyObject *semlock_exit(SemLockObject *s, PyObject *const *args, Py_ssize_t nargs)
{
    return semlock_release(s, NULL);
}

/* ---- introspection ----------------------------------------------------------------------- */

static PyObject *semlock_count(SemLockObject *s, PyObject *unused)
{
    check_fork(s);
    return PyLong_FromLong(s->count);
}

static PyObject *semlock_is_mine(SemLockObject *s, PyObject *unused)
{
    check_fork(s);
    return PyBool_FromLong(s->count > 0 && s->last_tid == thread_id());
}

static long get_value(SemLockObject *s)
{
    if (s->proto == PROTO_MUTEX)
        return MUTEX_OWNER(atomic_load(&s->shm->mutex)) == 0;
    return (long)SEM_VALUE(atomic_load(&s->shm->sem));
}

static PyObject *semlock_get_value(SemLockObject *s, PyObject *unused)
{
    return PyLong_FromLong(get_value(s));
}

static PyObject *semlock_is_zero(SemLockObject *s, PyObject *unused)
{
    return PyBool_FromLong(get_value(s) == 0);
}

static PyObject *semlock_after_fork(SemLockObject *s, PyObject *unused)
{
    s->count = 0;
    s->fork_gen = fork_generation;
    Py_RETURN_NONE;
}

/* _owner() -> pid of the process holding the lock, 0 if it is free, -1 if
 * the owner is unknown (locked from another pid namespace, or made locked);
 * None for a counting semaphore, which has no owner. */
static PyObject *semlock_owner(SemLockObject *s, PyObject *unused)
{
    if (s->proto != PROTO_MUTEX)
        Py_RETURN_NONE;
    uint32_t w = MUTEX_OWNER(atomic_load(&s->shm->mutex));
    if (w == 0)
        return PyLong_FromLong(0);
    if ((w & PID_MASK) == 0)
        return PyLong_FromLong(-1);
    return PyLong_FromLong((long)(w & PID_MASK));
}

/* ---- words of the user region as futexes (Condition) ----------------------------------- *
 *
 * gomp.synchronize.Condition keeps a table of its waiters in the user region
 * of one of its SemLocks (made with a larger user_size): each waiter sleeps on
 * the state word of its own slot until a notifier changes it, and records
 * its owner id there, so that a notifier can tell a waiter that was killed
 * from one that sleeps (see synchronize.py). These methods are the waiting,
 * the waking and the owner ids that table needs; the table itself is
 * Python. */

typedef struct {
    _Atomic uint32_t *word;
    uint32_t val;
    const gomp_deadline *d;
} word_wait_ctx;

/* One slice of waiting while *word == val: 0 when it differs. */
static int64_t word_step(void *c, int ms)
{
    word_wait_ctx *w = c;
    if (ms == 0)
        /* Only a look (the attempt with the GIL held): a futex wait with a
         * deadline that has passed still sleeps for the timer slack, about
         * 50 us, which made a wait(0) cost that much. */
        return atomic_load(w->word) == w->val ? GOMP_EAGAIN : 0;
    struct timespec end = slice_end(w->d, ms);
    while (atomic_load(w->word) == w->val)
        if (gomp_futex_wait_until((void *)w->word, w->val, &end) != 0)
            return GOMP_EAGAIN;
    return 0;
}

/* The address of the 32-bit word at index of the user region; NULL with
 * IndexError if out of range. */
static _Atomic uint32_t *user_word(SemLockObject *s, Py_ssize_t index)
{
    if (index < 0 || (size_t)index >= (s->size - HEADER_SIZE) / 4) {
        PyErr_SetString(PyExc_IndexError, "word index out of range");
        return NULL;
    }
    return (_Atomic uint32_t *)(s->shm->user + 4 * index);
}

static const char *const wait_word_names[] = {"index", "value", "timeout"};

/* _wait_word(index, value, timeout=None) -> bool: sleeps while the 32-bit
 * word at index of the user region equals value (unsigned), GIL released and
 * interruptible; True once it differs, False when timeout seconds passed. */
static PyObject *semlock_wait_word(SemLockObject *s, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *a[3];
    if (gomp_parse_args("_wait_word", args, nargs, kwnames, wait_word_names, 3, 2, a) < 0)
        return NULL;
    Py_ssize_t index = PyLong_AsSsize_t(a[0]);
    if (index == -1 && PyErr_Occurred())
        return NULL;
    unsigned long val = PyLong_AsUnsignedLong(a[1]);
    if (val == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    _Atomic uint32_t *word = user_word(s, index);
    if (word == NULL)
        return NULL;
    gomp_deadline d;
    if (gomp_deadline_init(&d, a[2]) < 0)
        return NULL;
    word_wait_ctx w = {word, (uint32_t)val, &d};
    int64_t r = gomp_run(word_step, &w, &d, 1);
    if (r == GOMP_TIMEDOUT)
        Py_RETURN_FALSE;
    if (r < 0)
        return gomp_run_error(r);
    Py_RETURN_TRUE;
}

/* _wake_word(index, n) -> None: wakes up to n sleepers of _wait_word(index). */
static PyObject *semlock_wake_word(SemLockObject *s, PyObject *args)
{
    Py_ssize_t index;
    int n;
    if (!PyArg_ParseTuple(args, "ni:_wake_word", &index, &n))
        return NULL;
    _Atomic uint32_t *word = user_word(s, index);
    if (word == NULL)
        return NULL;
    gomp_futex_wake((void *)word, n);
    Py_RETURN_NONE;
}

/* _owner_token() -> int: this process's owner id as this SemLock's processes
 * know it (the id a lock records; NO_OWNER in another pid namespace). */
static PyObject *semlock_owner_token(SemLockObject *s, PyObject *unused)
{
    return PyLong_FromUnsignedLong(owner_id(s));
}

/* _owner_alive(token) -> bool: False only when the process of an owner id
 * from _owner_token() is sure to be gone (the Go core judges, as for a
 * lock's owner; it is loaded on first use). True for an id that cannot be
 * checked (NO_OWNER, or this process is in another pid namespace than the
 * SemLock's creator). */
static PyObject *semlock_owner_alive(SemLockObject *s, PyObject *arg)
{
    unsigned long id = PyLong_AsUnsignedLong(arg);
    if (id == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (s->foreign || (id & PID_MASK) == 0 || id > OWNER_MASK)
        Py_RETURN_TRUE;
    if (gomp_core_ready() < 0)
        return NULL;
    return PyBool_FromLong(gomp_core.owner_alive((uint32_t)id) != 0);
}

static PyObject *semlock_get_handle(SemLockObject *s, void *closure)
{
    return PyLong_FromVoidPtr(s->shm);
}

static PyObject *semlock_get_name(SemLockObject *s, void *closure)
{
    return Py_NewRef(s->name);
}

static PyObject *semlock_get_kind(SemLockObject *s, void *closure)
{
    return PyLong_FromLong(s->kind);
}

static PyObject *semlock_get_maxvalue(SemLockObject *s, void *closure)
{
    return PyLong_FromLong(s->maxvalue);
}

static PyObject *semlock_get_user_size(SemLockObject *s, void *closure)
{
    return PyLong_FromSize_t(s->size - HEADER_SIZE);
}

static PyObject *semlock_get_robust(SemLockObject *s, void *closure)
{
    return PyBool_FromLong(s->robust);
}

/* The buffer protocol exposes the user region of the shared region (zeros
 * at creation; USER_SIZE bytes unless made with a larger user_size):
 * gomp.synchronize.Barrier and Event keep their state there, Condition its
 * table of waiters. A memoryview holds a reference to the SemLock, so the
 * mapping outlives it. */
static int semlock_getbuffer(SemLockObject *s, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)s, s->shm->user, (Py_ssize_t)(s->size - HEADER_SIZE),
                             0, flags);
}

static PyBufferProcs semlock_as_buffer = {(getbufferproc)semlock_getbuffer, NULL};

static PyMethodDef semlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))semlock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool: acquire the semaphore/lock."},
    {"release", (PyCFunction)semlock_release, METH_NOARGS,
     "release(): release the semaphore/lock."},
    {"__enter__", (PyCFunction)semlock_enter, METH_NOARGS, "acquire the semaphore/lock."},
    {"__exit__", (PyCFunction)(void (*)(void))semlock_exit, METH_FASTCALL,
     "release the semaphore/lock."},
    {"_count", (PyCFunction)semlock_count, METH_NOARGS,
     "number of acquire()s minus release()s through this object in this process."},
    {"_is_mine", (PyCFunction)semlock_is_mine, METH_NOARGS,
     "whether this thread acquired it last and it is held."},
    {"_get_value", (PyCFunction)semlock_get_value, METH_NOARGS, "the value of the semaphore."},
    {"_is_zero", (PyCFunction)semlock_is_zero, METH_NOARGS, "whether the value is zero."},
    {"_after_fork", (PyCFunction)semlock_after_fork, METH_NOARGS,
     "reset the acquisition count (done automatically in a forked child)."},
    {"_owner", (PyCFunction)semlock_owner, METH_NOARGS,
     "pid of the process holding a Lock/RLock (0: free, -1: unknown); None for a semaphore."},
    {"_wait_word", (PyCFunction)(void (*)(void))semlock_wait_word, METH_FASTCALL | METH_KEYWORDS,
     "_wait_word(index, value, timeout=None) -> bool: sleep while the u32 word at index of "
     "the user region equals value; False on timeout."},
    {"_wake_word", (PyCFunction)semlock_wake_word, METH_VARARGS,
     "_wake_word(index, n): wake up to n sleepers of _wait_word(index)."},
    {"_owner_token", (PyCFunction)semlock_owner_token, METH_NOARGS,
     "_owner_token() -> int: this process's owner id for this SemLock."},
    {"_owner_alive", (PyCFunction)semlock_owner_alive, METH_O,
     "_owner_alive(token) -> bool: False only if that process is sure to be gone."},
    {"_rebuild", (PyCFunction)semlock_rebuild, METH_VARARGS | METH_CLASS,
     "_rebuild(handle, kind, maxvalue, name): attach to a named semaphore."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef semlock_getset[] = {
    {"handle", (getter)semlock_get_handle, NULL, "address of the shared region in this process",
     NULL},
    {"kind", (getter)semlock_get_kind, NULL, "RECURSIVE_MUTEX (0) or SEMAPHORE (1)", NULL},
    {"maxvalue", (getter)semlock_get_maxvalue, NULL, "the largest value release() allows", NULL},
    {"name", (getter)semlock_get_name, NULL, "the name, or None if unlinked at creation", NULL},
    {"user_size", (getter)semlock_get_user_size, NULL,
     "the size of the user region (the buffer interface)", NULL},
    {"robust", (getter)semlock_get_robust, NULL,
     "whether a waiter takes the lock over when its holder died (robust=True)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SemLockType = {
    /* The macro ends with a comma of its own. */
    /* clang-format off */
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gomp._multiprocessing.SemLock",
    /* clang-format on */
    .tp_basicsize = sizeof(SemLockObject),
    .tp_dealloc = (destructor)semlock_dealloc,
    .tp_as_buffer = &semlock_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "SemLock(kind, value, maxvalue, name, unlink, *, tracked=False, robust=False,\n"
              "        user_size=64)\n\n"
              "A semaphore (kind SEMAPHORE) or recursive lock (kind RECURSIVE_MUTEX) in shared\n"
              "memory, as _multiprocessing.SemLock. With unlink=True it has no name and is\n"
              "shared by fork only; otherwise spawned children re-attach to it by name.\n"
              "tracked=True makes a SEMAPHORE with maxvalue 1 an owner-tracked lock (as RLock\n"
              "always is): if its holder dies, the lock stays held, as in the stdlib, and the\n"
              "first waiter to find the holder dead warns (OwnerDiedWarning) with its pid.\n"
              "robust=True (implies tracked for a SEMAPHORE) makes it a robust mutex: a waiter\n"
              "takes the lock of a dead holder over and is warned (OwnerDiedWarning), so that\n"
              "it can repair what the lock protects.\n"
              "user_size is the size of the spare shared bytes the buffer interface exposes.",
    .tp_methods = semlock_methods,
    .tp_getset = semlock_getset,
    .tp_new = semlock_new,
};

/* ---- module functions -------------------------------------------------------------------- */

static PyObject *m_sem_unlink(PyObject *self, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "sem_unlink() argument must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    if (sem_file_unlink(name) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *m_sem_owner_alive(PyObject *self, PyObject *arg)
{
    unsigned long id = PyLong_AsUnsignedLong(arg);
    if (id == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (gomp_core_ready() < 0)
        return NULL;
    return PyBool_FromLong(gomp_core.owner_alive((uint32_t)id) > 0);
}

static PyObject *m_sem_self_id(PyObject *self, PyObject *noargs)
{
    if (self_id == 0)
        self_id = compute_self_id();
    return PyLong_FromUnsignedLong(self_id);
}

/* _owner_id_from_stat(pid, data) -> int: owner_id_from_stat (tests: the
 * shared test vector). */
static PyObject *m_owner_id_from_stat(PyObject *self, PyObject *args)
{
    long pid;
    const char *data;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "ly#:_owner_id_from_stat", &pid, &data, &n))
        return NULL;
    char *buf = PyMem_Malloc((size_t)n + 1);
    if (buf == NULL)
        return PyErr_NoMemory();
    memcpy(buf, data, (size_t)n);
    buf[n] = 0;
    uint32_t id = owner_id_from_stat(pid, buf);
    PyMem_Free(buf);
    return PyLong_FromUnsignedLong(id);
}

static PyMethodDef sync_methods[] = {
    {"sem_unlink", m_sem_unlink, METH_O, "sem_unlink(name): remove the name of a named SemLock."},
    {"_sem_owner_alive", m_sem_owner_alive, METH_O,
     "_sem_owner_alive(id) -> bool: whether a lock owner id may still be running (tests)."},
    {"_sem_self_id", m_sem_self_id, METH_NOARGS,
     "_sem_self_id() -> int: this process's lock owner id (tests)."},
    {"_owner_id_from_stat", m_owner_id_from_stat, METH_VARARGS,
     "_owner_id_from_stat(pid, data) -> int: the owner id that /proc/PID/stat contents give "
     "(tests)."},
    {NULL, NULL, 0, NULL},
};

int gomp_sync_init(PyObject *m)
{
    if (PyType_Ready(&SemLockType) < 0)
        return -1;
    PyObject *v = PyLong_FromLong(GOMP_SEM_VALUE_MAX);
    if (v == NULL || PyDict_SetItemString(SemLockType.tp_dict, "SEM_VALUE_MAX", v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);
    PyType_Modified(&SemLockType);
    OwnerDiedWarning = PyErr_NewExceptionWithDoc(
        "gomp.synchronize.OwnerDiedWarning",
        "A process died while holding a gomp Lock or RLock. A robust lock (robust=True)\n"
        "was taken over by the waiter warned, and the data it protects may be inconsistent;\n"
        "any other lock stays held, as with the standard library.",
        PyExc_RuntimeWarning, NULL);
    if (OwnerDiedWarning == NULL)
        return -1;
    if (pthread_atfork(NULL, NULL, sync_atfork_child) != 0) {
        PyErr_SetString(PyExc_ImportError, "gomp: pthread_atfork failed");
        return -1;
    }
    if (PyModule_AddObjectRef(m, "SemLock", (PyObject *)&SemLockType) < 0 ||
        PyModule_AddObjectRef(m, "OwnerDiedWarning", OwnerDiedWarning) < 0 ||
        PyModule_AddIntConstant(m, "SEM_VALUE_MAX", GOMP_SEM_VALUE_MAX) < 0)
        return -1;
    return PyModule_AddFunctions(m, sync_methods);
}
