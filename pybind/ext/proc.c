/* Process supervision functions of gomp._gomp, for gomp.popen_fork and
 * gomp.popen_spawn_posix; and the owner watch of a child that must not
 * outlive the process it serves (owner_watch, for gomp._deathwatch).
 *
 * A child is watched through a pidfd, and its parent reaps it itself: a poll
 * of the pidfd with the GIL released, then waitid(P_PIDFD) (proc_reap).
 *
 * The safety net for children nobody reaps is a reaper thread of this file:
 * each child is added to its epoll set at start (proc_supervise), and a
 * child still unreaped a grace period (100 ms) after it exited is reaped by
 * the reaper, which keeps the status until the parent collects it
 * (proc_reap, when its waitid finds the child gone) or drops it
 * (proc_release). So no child stays a zombie, joined or not. Exits are taken
 * in batches: one wakeup of the reaper serves every child that exits within
 * a grace period, so a parent that starts and joins children in a loop
 * wakes it a few times per grace period, not once per child. The reaper
 * lives only while it watches a child: once the last one is reaped it
 * closes its epoll set and ends, and the next child started gets a new
 * reaper. A program whose children are gone keeps no thread or descriptor
 * of ours (and a later os.fork() of it is not a fork of a threaded process).
 *
 * None of this loads the Go core: a Go runtime in the parent makes every
 * fork() of it slower (its mappings, threads and pages are copied and torn
 * down with every child), so a program that only starts processes must not
 * pay for one; an earlier design with the reaper in Go was measurably slower
 * than the stdlib (ARCHITECTURE.md, "What lives in C and what in Go"). */
#include "gomp_ext.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same number on every Linux architecture */
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* pidfd_open(pid) -> fd (close-on-exec, as pidfd_open(2) always makes it). */
static PyObject *m_pidfd_open(PyObject *self, PyObject *arg)
{
    int pid = PyLong_AsLong(arg);
    if (pid == -1 && PyErr_Occurred())
        return NULL;
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

/* Reaps the child of pidfd if it has exited: 1 with *status (the exit code,
 * or -N when signal N ended it), 0 while it runs, -1 with errno (ECHILD: it
 * was reaped already). */
static int reap(int pidfd, int *status)
{
    siginfo_t si;
    for (;;) {
        si.si_pid = 0;
        if (waitid(P_PIDFD, pidfd, &si, WEXITED | WNOHANG) == 0)
            break;
        if (errno != EINTR)
            return -1;
    }
    if (si.si_pid == 0)
        return 0;
    *status = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
    return 1;
}

/* ---- the reaper ------------------------------------------------------------------------ */

/* Everything below belongs to one process image: a forked child starts with
 * none of it (reaper_atfork_child) and starts its own reaper when it starts
 * a child. */
static pthread_mutex_t rp_mu = PTHREAD_MUTEX_INITIALIZER;
static int rp_epfd = -1;   /* the running reaper's epoll set, or -1 (rp_mu) */
static size_t rp_nwatched; /* children in that set (rp_mu) */
static pid_t rp_self;      /* this process image, for the tokens it issues */
static uint32_t rp_last;   /* the last token issued here */
static long rp_grace_ns = 100 * 1000 * 1000;
static int ow_fd = -1; /* the pidfd the owner watcher polls (owner_watch, below) */
/* Following the parent (owner_watch_parent, below). */
static volatile sig_atomic_t owp_on; /* this process follows its parent (reset by fork) */
static pid_t owp_pid;                /* the owner's pid */
static int owp_signum;
static long owp_grace_ms;  /* < 0: no SIGKILL after the signal */
static int owp_timer = -1; /* the kernel's timer id (raw syscalls: no librt) */

typedef struct {
    uint32_t tok;
    int status;
} rp_status;

static rp_status *rp_statuses; /* reaped by the reaper, not yet collected (rp_mu) */
static size_t rp_nstatuses, rp_capstatuses;
static uint32_t *rp_forgotten; /* dropped while running: keep nothing when reaped (rp_mu) */
static size_t rp_nforgotten, rp_capforgotten;

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Removes tok from the forgotten list; 1 if it was there (rp_mu held). */
static int take_forgotten(uint32_t tok)
{
    for (size_t i = 0; i < rp_nforgotten; i++)
        if (rp_forgotten[i] == tok) {
            rp_forgotten[i] = rp_forgotten[--rp_nforgotten];
            return 1;
        }
    return 0;
}

/* Removes tok's status; 1 with *status if it was there (rp_mu held). */
static int take_status(uint32_t tok, int *status)
{
    for (size_t i = 0; i < rp_nstatuses; i++)
        if (rp_statuses[i].tok == tok) {
            *status = rp_statuses[i].status;
            rp_statuses[i] = rp_statuses[--rp_nstatuses];
            return 1;
        }
    return 0;
}

static uint64_t event_data(uint32_t tok, int fd)
{
    return ((uint64_t)tok << 32) | (uint32_t)fd;
}

/* Reaps the children of a batch of exits whose parents did not reap them.
 * Returns 1 when the set is left empty: the reaper then ends, closing it,
 * and the next child started gets a new one (proc_supervise). So a program
 * whose children have all exited keeps no thread and no descriptor. */
static int reap_batch(int epfd, const struct epoll_event *evs, size_t n)
{
    pthread_mutex_lock(&rp_mu);
    for (size_t i = 0; i < n; i++) {
        uint32_t tok = (uint32_t)(evs[i].data.u64 >> 32);
        int fd = (int)(uint32_t)evs[i].data.u64, status;
        int r = reap(fd, &status);
        if (r == 0) { /* not exited after all: watch it again */
            struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT};
            ev.data.u64 = evs[i].data.u64;
            if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
                continue;
        }
        if (take_forgotten(tok) || r != 1) {
            /* nobody will ask; or its parent (or other code) reaped it */
        } else if (grow((void **)&rp_statuses, &rp_capstatuses, rp_nstatuses,
                        sizeof *rp_statuses) == 0) {
            rp_statuses[rp_nstatuses++] = (rp_status){tok, status};
        } /* else out of memory: a later join reports the status lost */
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        rp_nwatched--;
    }
    int done = rp_nwatched == 0;
    if (done)
        rp_epfd = -1;
    pthread_mutex_unlock(&rp_mu);
    return done;
}

static void *reaper_main(void *arg)
{
    int epfd = (int)(intptr_t)arg;
    struct epoll_event *batch = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        /* Wait for exits, then take every exit reported. */
        int timeout = -1;
        for (;;) {
            while (cap < n + 64 && grow((void **)&batch, &cap, cap, sizeof *batch) == 0)
                ;
            if (cap < n + 64) { /* out of memory */
                if (n > 0)
                    break;
                sleep(1);
                continue;
            }
            int k = epoll_wait(epfd, batch + n, 64, timeout);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 && n == 0)
                sleep(1); /* cannot happen (the set is never closed here) */
            if (k <= 0)
                break;
            n += k;
            timeout = 0;
        }
        if (n == 0)
            continue;
        /* Leave them to their parents for the grace period: exits meanwhile
         * gather for the next round. */
        long grace = __atomic_load_n(&rp_grace_ns, __ATOMIC_RELAXED);
        struct timespec ts = {grace / 1000000000, grace % 1000000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        if (reap_batch(epfd, batch, n))
            break;
        n = 0;
    }
    close(epfd);
    free(batch);
    return NULL;
}

/* Starts a detached thread running fn(arg) with a small stack and every
 * signal blocked (signals are for Python's main thread), as the reaper and
 * the owner watcher are. Returns 0 or an errno value. */
static int start_quiet_thread(void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t t;
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&t, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return e;
}

/* Starts the reaper of this process image (rp_mu held). */
static int reaper_start(void)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -1;
    int e = start_quiet_thread(reaper_main, (void *)(intptr_t)epfd);
    if (e != 0) {
        close(epfd);
        errno = e;
        return -1;
    }
    rp_epfd = epfd;
    return 0;
}

/* In a forked child: the reaper thread is not there, the children are not
 * this process's, and rp_mu may have been held by the reaper at the fork. */
static void reaper_atfork_child(void)
{
    pthread_mutex_init(&rp_mu, NULL);
    if (rp_epfd >= 0)
        close(rp_epfd); /* the parent's set (the parent keeps it) */
    rp_epfd = -1;
    rp_nwatched = 0;
    rp_self = getpid();
    rp_nstatuses = rp_nforgotten = 0;
    /* The owner watcher is a thread of the parent: a forked child follows
     * nobody until it asks to (owner_watch). */
    if (ow_fd >= 0)
        close(ow_fd);
    ow_fd = -1;
    /* The kernel clears the parent-death signal and timers in a child. */
    owp_on = 0;
    owp_timer = -1;
}

/* proc_supervise(pidfd) -> token: put the child under the reaper. */
static PyObject *m_proc_supervise(PyObject *self, PyObject *arg)
{
    int pidfd = PyLong_AsLong(arg);
    if (pidfd == -1 && PyErr_Occurred())
        return NULL;
    int fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3); /* the reaper's own, closed by it */
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    /* Under rp_mu: a reaper whose set has just emptied ends (reap_batch), so
     * the set is either still its own, counted, or gone and started anew. */
    pthread_mutex_lock(&rp_mu);
    if (rp_epfd < 0 && reaper_start() < 0) {
        int e = errno;
        pthread_mutex_unlock(&rp_mu);
        close(fd);
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (++rp_last == 0)
        ++rp_last;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT};
    ev.data.u64 = event_data(rp_last, fd);
    if (epoll_ctl(rp_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        pthread_mutex_unlock(&rp_mu);
        close(fd);
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    rp_nwatched++;
    uint32_t tok = rp_last;
    pthread_mutex_unlock(&rp_mu);
    return PyLong_FromLongLong(((long long)rp_self << 32) | tok);
}

/* The attribute names of a child record, interned once: made from C strings
 * on every call, they were allocations in pages a fork had just shared. */
static PyObject *s_pidfd, *s_status, *s_token;

/* Reads child.<name> as an int; -2 if it is None. */
static int int_attr(PyObject *child, PyObject *name, long long *v)
{
    PyObject *o = PyObject_GetAttr(child, name);
    if (o == NULL)
        return -1;
    if (o == Py_None) {
        Py_DECREF(o);
        return -2;
    }
    *v = PyLong_AsLongLong(o);
    Py_DECREF(o);
    return *v == -1 && PyErr_Occurred() ? -1 : 0;
}

/* child.token as (tok, mine). A token is the pid of the process image that
 * issued it (high bits) and the reaper's token (low 32 bits); mine: this
 * image issued it (a child inherits its parent's Popen objects over fork). */
static int child_token(PyObject *child, uint32_t *tok, int *mine)
{
    PyObject *o = PyObject_GetAttr(child, s_token);
    if (o == NULL)
        return -1;
    long long t = PyLong_AsLongLong(o);
    Py_DECREF(o);
    if (t == -1 && PyErr_Occurred())
        return -1;
    *tok = (uint32_t)t;
    *mine = (pid_t)(t >> 32) == rp_self;
    return 0;
}

/* proc_reap(child, timeout=None) -> exit status, or None if the child is still
 * running at the timeout (or child.pidfd is None: closed).
 *
 * child has the attributes pidfd, token and status (None until reaped). The
 * status is stored there with the GIL held from waitid on, so threads that
 * join one child together all see it: one reaps, the others find it stored.
 * STATUS_LOST: other code reaped the child (a waitpid(-1) elsewhere). */
static PyObject *m_proc_reap(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    gomp_deadline d;
    long long fd, st;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "proc_reap(child, timeout=None)");
        return NULL;
    }
    PyObject *child = args[0];
    int r = int_attr(child, s_pidfd, &fd);
    if (r == -2)
        Py_RETURN_NONE;
    if (r < 0 || gomp_deadline_init(&d, nargs > 1 ? args[1] : NULL) < 0)
        return NULL;
    struct pollfd p = {.fd = (int)fd, .events = POLLIN};
    int n = gomp_poll_fds(&p, 1, &d);
    if (n <= 0)
        return n < 0 ? NULL : Py_NewRef(Py_None);

    /* Exited. From here on the GIL is held. */
    if ((r = int_attr(child, s_status, &st)) != -2)
        return r < 0 ? NULL : PyLong_FromLongLong(st); /* another thread reaped it */
    if ((r = int_attr(child, s_pidfd, &fd)) < 0)
        return r == -2 ? Py_NewRef(Py_None) : NULL; /* closed meanwhile */
    uint32_t tok;
    int mine, status;
    if (child_token(child, &tok, &mine) < 0)
        return NULL;
    r = reap((int)fd, &status);
    if (r == 0)
        Py_RETURN_NONE; /* readable yet running: cannot happen with a pidfd */
    if (r < 0) {
        if (errno != ECHILD)
            return PyErr_SetFromErrno(PyExc_OSError);
        /* Gone: the reaper reaped it (the grace period ended before this
         * join), or other code did. */
        status = GOMP_STATUS_LOST;
        if (mine) {
            pthread_mutex_lock(&rp_mu);
            take_status(tok, &status);
            pthread_mutex_unlock(&rp_mu);
        }
    }
    PyObject *res = PyLong_FromLong(status);
    if (res == NULL || PyObject_SetAttr(child, s_status, res) < 0) {
        Py_XDECREF(res);
        return NULL;
    }
    return res;
}

/* proc_release(child): the child's record is dropped unreaped (its Popen was
 * closed or collected). Reaps it now if it has exited; otherwise the reaper
 * reaps it when it exits and is told to keep nothing. A child of another
 * process image (inherited over fork) is left alone. */
static PyObject *m_proc_release(PyObject *self, PyObject *child)
{
    long long fd, st;
    int r = int_attr(child, s_status, &st);
    if (r != -2)
        return r < 0 ? NULL : Py_NewRef(Py_None); /* reaped */
    if ((r = int_attr(child, s_pidfd, &fd)) < 0)
        return r == -2 ? Py_NewRef(Py_None) : NULL;
    uint32_t tok;
    int mine, status;
    if (child_token(child, &tok, &mine) < 0)
        return NULL;
    if (!mine)
        Py_RETURN_NONE;
    r = reap((int)fd, &status);
    if (r < 0 && errno != ECHILD)
        return PyErr_SetFromErrno(PyExc_OSError);
    pthread_mutex_lock(&rp_mu);
    if (r == 0) { /* running: the reaper will reap it */
        if (grow((void **)&rp_forgotten, &rp_capforgotten, rp_nforgotten, sizeof *rp_forgotten) ==
            0)
            rp_forgotten[rp_nforgotten++] = tok;
    } else if (r < 0) { /* gone: the reaper may hold its status */
        take_status(tok, &status);
    }
    pthread_mutex_unlock(&rp_mu);
    Py_RETURN_NONE;
}

/* proc_reaper_state() -> (statuses held, forgotten tokens): both drain to
 * zero once every child is reaped and collected (for tests). */
static PyObject *m_proc_reaper_state(PyObject *self, PyObject *unused)
{
    pthread_mutex_lock(&rp_mu);
    size_t a = rp_nstatuses, b = rp_nforgotten;
    pthread_mutex_unlock(&rp_mu);
    return Py_BuildValue("nn", (Py_ssize_t)a, (Py_ssize_t)b);
}

/* proc_reaper_grace(seconds) -> previous: the grace period (tests shorten it
 * to make the reaper race the parent). */
static PyObject *m_proc_reaper_grace(PyObject *self, PyObject *arg)
{
    double s = PyFloat_AsDouble(arg);
    if (s == -1.0 && PyErr_Occurred())
        return NULL;
    if (s < 0 || s > 3600) {
        PyErr_SetString(PyExc_ValueError, "grace period out of range");
        return NULL;
    }
    double prev = __atomic_load_n(&rp_grace_ns, __ATOMIC_RELAXED) / 1e9;
    __atomic_store_n(&rp_grace_ns, (long)(s * 1e9), __ATOMIC_RELAXED);
    return PyFloat_FromDouble(prev);
}

/* ---- following an owner ------------------------------------------------------------------ */

/* A process gomp starts to serve another one (a pool worker) must not
 * outlive it, however it dies: SIGKILL runs no exit handler there. The
 * child follows its owner through a pidfd, which becomes readable the moment
 * the owner has exited (zombie or reaped), and a thread of this file waits
 * on it: one poll(2) for the child's whole life, nothing per task, no Go
 * runtime. When the owner is gone the thread sends the process a signal
 * (SIGTERM, as Pool.terminate() does, so that a handler the user installed
 * still runs), and SIGKILL after a grace period if it is still alive.
 *
 * This serves an owner that is not the parent (the fork server's children:
 * their parent is the server); a child of its owner takes the thread-free
 * way below (owner_watch_parent). The pidfd names the owner whoever forked
 * the child (gomp/_deathwatch.py checks that it is the owner's, not a
 * recycled pid's). */

typedef struct {
    int pidfd;
    int signum;
    long grace_ms; /* < 0: no SIGKILL after the signal */
} ow_args;

static void *owner_watch_main(void *arg)
{
    ow_args a = *(ow_args *)arg;
    free(arg);
    struct pollfd p = {.fd = a.pidfd, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    /* Every signal is blocked in this thread, so the kernel gives this one
     * to a thread that can take it: the default action ends the process, a
     * Python handler runs in the main thread. */
    kill(getpid(), a.signum);
    if (a.grace_ms >= 0) {
        struct timespec ts = {a.grace_ms / 1000, (a.grace_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        kill(getpid(), SIGKILL);
    }
    return NULL;
}

/* owner_watch(pidfd, signum, grace) -> bool: from now on, send signum to
 * this process when the process of pidfd exits, and SIGKILL grace seconds
 * later (grace < 0: never). pidfd stays the caller's (the watcher keeps a
 * duplicate). False if this process image follows an owner already. */
static PyObject *m_owner_watch(PyObject *self, PyObject *args)
{
    int pidfd, signum;
    double grace;
    if (!PyArg_ParseTuple(args, "iid:owner_watch", &pidfd, &signum, &grace))
        return NULL;
    if (signum <= 0 || signum >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal number out of range: %d", signum);
        return NULL;
    }
    if (ow_fd >= 0 || owp_on)
        Py_RETURN_FALSE;
    ow_args *a = malloc(sizeof *a);
    if (a == NULL)
        return PyErr_NoMemory();
    a->pidfd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
    if (a->pidfd < 0) {
        free(a);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    a->signum = signum;
    a->grace_ms = grace < 0 ? -1 : (long)(grace * 1000);
    int fd = a->pidfd;
    int e = start_quiet_thread(owner_watch_main, a);
    if (e != 0) {
        close(fd);
        free(a);
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    ow_fd = fd;
    Py_RETURN_TRUE;
}

/* ---- following an owner that is the parent ------------------------------------------------ */

/* The common case, a pool worker forked (or spawned) by its owner, is served
 * without a thread: a watcher thread costs its creation and, at every exit,
 * the wake-up of a second thread that exit_group(2) must end (measured: 0.15
 * to 0.25 ms more per fork + exit + wait of a child, on the critical path of
 * a pool's start and join). Instead the kernel's parent-death signal:
 * prctl(PR_SET_PDEATHSIG) has the kernel send OWNER_SIG to this process
 * whenever the thread recorded as its parent ends. That thread is the one
 * that forked the child, not the process (the reason owner_watch does not
 * use it), but the kernel first hands the child to a sibling thread of the
 * same process when there is one, and sends the signal again when that one
 * ends, so the signal comes at every such hand-over and at the owner's death
 * (when the child goes to init or a subreaper). The handler tells them apart
 * with getppid(): it is still the owner's pid after a hand-over inside the
 * owner, and another one once the owner is gone. Then it does what the
 * watcher thread does: signum to this process, and SIGKILL grace later from
 * a POSIX timer armed in the handler (timer_settime is async-signal-safe).
 *
 * OWNER_SIG is a real-time signal that gomp takes for itself; a program that
 * installs its own handler for it, or blocks it in every thread, loses the
 * watch. The parent-death setting survives exec, the handler does not: a
 * worker that replaces itself with another program (os.exec*) leaves that
 * program to OWNER_SIG's default action, which ends it at the next
 * hand-over or at the owner's death (the watcher thread, which exec ends,
 * left such a program alone). */

#define OWNER_SIG (SIGRTMAX - 3)

static void owner_parent_gone(int sig)
{
    (void)sig;
    int saved = errno;
    if (owp_on && getppid() != owp_pid) {
        owp_on = 0; /* once: later hand-overs (to init's threads) change nothing */
        kill(getpid(), owp_signum);
        if (owp_timer >= 0) {
            struct itimerspec it = {{0, 0},
                                    {owp_grace_ms / 1000, (owp_grace_ms % 1000) * 1000000L}};
            syscall(SYS_timer_settime, owp_timer, 0, &it, NULL);
        }
    }
    errno = saved;
}

/* owner_watch_parent(pid, signum, grace) -> bool: from now on, send signum to
 * this process when its parent, the process pid, exits, and SIGKILL grace
 * seconds later (grace < 0: never). False when pid is not the parent any more
 * (the owner has exited: nothing is sent then). OSError where the kernel
 * refuses. */
static PyObject *m_owner_watch_parent(PyObject *self, PyObject *args)
{
    int pid, signum;
    double grace;
    if (!PyArg_ParseTuple(args, "iid:owner_watch_parent", &pid, &signum, &grace))
        return NULL;
    if (signum <= 0 || signum >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal number out of range: %d", signum);
        return NULL;
    }
    if (owp_on || ow_fd >= 0)
        Py_RETURN_TRUE; /* followed already */
    owp_pid = pid;
    owp_signum = signum;
    owp_grace_ms = grace < 0 ? -1 : (long)(grace * 1000);
    if (owp_grace_ms >= 0 && owp_timer < 0) {
        struct sigevent ev = {0};
        ev.sigev_notify = SIGEV_SIGNAL;
        ev.sigev_signo = SIGKILL;
        int id;
        if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &id) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        owp_timer = id;
    }
    struct sigaction sa = {0};
    sa.sa_handler = owner_parent_gone;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(OWNER_SIG, &sa, NULL) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    owp_on = 1;
    if (prctl(PR_SET_PDEATHSIG, OWNER_SIG) < 0) {
        owp_on = 0;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* The owner may have died before prctl: then no signal comes. */
    if (getppid() != pid) {
        owp_on = 0;
        prctl(PR_SET_PDEATHSIG, 0);
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyMethodDef proc_methods[] = {
    {"pidfd_open", m_pidfd_open, METH_O, "pidfd_open(pid) -> fd"},
    {"proc_supervise", m_proc_supervise, METH_O,
     "proc_supervise(pidfd) -> token: the reaper reaps the child if nobody does."},
    {"proc_reap", (PyCFunction)(void (*)(void))m_proc_reap, METH_FASTCALL,
     "proc_reap(child, timeout=None) -> exit status, or None while running."},
    {"proc_release", m_proc_release, METH_O,
     "proc_release(child): drop a child's record, reaped or not."},
    {"proc_reaper_state", m_proc_reaper_state, METH_NOARGS,
     "proc_reaper_state() -> (statuses held, forgotten tokens)"},
    {"proc_reaper_grace", m_proc_reaper_grace, METH_O,
     "proc_reaper_grace(seconds) -> previous grace period"},
    {"owner_watch", m_owner_watch, METH_VARARGS,
     "owner_watch(pidfd, signum, grace) -> bool: signal this process when pidfd's process "
     "exits."},
    {"owner_watch_parent", m_owner_watch_parent, METH_VARARGS,
     "owner_watch_parent(pid, signum, grace) -> bool: signal this process when its parent, "
     "pid, exits; False if pid is not its parent any more."},
    {NULL, NULL, 0, NULL},
};

int gomp_proc_init(PyObject *m)
{
    rp_self = getpid();
    s_pidfd = PyUnicode_InternFromString("pidfd");
    s_status = PyUnicode_InternFromString("status");
    s_token = PyUnicode_InternFromString("token");
    if (s_pidfd == NULL || s_status == NULL || s_token == NULL)
        return -1;
    if (pthread_atfork(NULL, NULL, reaper_atfork_child) != 0) {
        PyErr_SetString(PyExc_ImportError, "gomp: pthread_atfork failed");
        return -1;
    }
    if (PyModule_AddIntConstant(m, "STATUS_LOST", GOMP_STATUS_LOST) < 0 ||
        PyModule_AddIntConstant(m, "OWNER_SIGNAL", OWNER_SIG) < 0)
        return -1;
    return PyModule_AddFunctions(m, proc_methods);
}
