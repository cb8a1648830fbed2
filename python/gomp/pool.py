"""Process and thread pools: Pool and ThreadPool, with the API and the
semantics of the standard library's multiprocessing.pool.

How a pool is built here
------------------------
- Tasks travel to the workers through one gomp SimpleQueue (a ring in shared
  memory with futex wake-ups) and results come back through another. A
  ThreadPool uses queue.SimpleQueue for both, without pickling.
- Three threads in the process that owns the pool:
    * the feeder turns submitted iterables (map, imap, starmap, ...) into
      tasks and puts them into the task queue;
    * the router takes results from the result queue and hands each one to
      its AsyncResult / MapResult / IMapIterator (found by job id in _cache);
    * the supervisor waits on the workers' sentinels (pidfds) and replaces
      every worker that exits (maxtasksperchild, or a crash).
- apply_async() puts its task into the task queue itself (no hop through the
  feeder thread), unless it is called from one of the pool's own threads (a
  callback), where waiting for room in the ring could deadlock.

A worker that dies does not hang the pool
-----------------------------------------
With the standard library, a worker killed while it runs a task (SIGKILL,
a segfault, os._exit() in the task, the OOM killer) makes that task's result
wait forever: the pool replaces the worker but nobody knows which task was
lost (CPython gh-66587). gomp's workers write the (job, index) of the task
they run into a small shared array (one int64 pair per worker, written before
the task starts and cleared once its result is in the result queue). When a
worker exits, the supervisor reads the worker's pair; if a task was under
way, its result is failed with WorkerLostError (a ProcessError carrying the
worker's pid and exit code), the worker is replaced and the other tasks go on.
For map()/map_async() the whole map fails with that error; for imap() the
items of the lost chunk raise it when they are reached.

A task is known to a worker only once it wrote the pair, a few instructions
after it took the task out of the queue: a worker killed in exactly that
window still loses its task silently, as with the standard library.

Other departures from the standard library, both in the direction of not
hanging: an exception raised by a callback or error_callback is printed to
stderr and the result still becomes ready (the standard library's result
handler thread dies and the pool hangs); and a result that cannot be pickled
becomes a MaybeEncodingError, as in the standard library.
"""

import os
import queue
import signal
import sys
import threading
import traceback
import warnings
from collections import deque
from itertools import chain, count, islice
from types import GenericAlias

from . import TimeoutError, _deathwatch, get_context, util
from .connection import wait
from .context import ProcessError

__all__ = ['Pool', 'ThreadPool']

# The states of a pool (and of its threads).
INIT = 'INIT'
RUN = 'RUN'
CLOSE = 'CLOSE'
TERMINATE = 'TERMINATE'

# Job ids, unique within a process.
job_counter = count()

# Value of a worker's slot when it runs no task.
_IDLE = -1


# ---- errors --------------------------------------------------------------------------------


class MaybeEncodingError(Exception):
    """A task's result (or its exception) could not be pickled to travel back
    from the worker; the pickling error and the value are kept as their
    reprs, which always pickle."""

    def __init__(self, exc, value):
        # Kept as attributes too: they survive pickling (the result queue)
        # exactly, where the arguments would be repr'd a second time.
        self.exc, self.value = repr(exc), repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self):
        return "Error sending result: '%s'. Reason: '%s'" % (self.value, self.exc)

    def __repr__(self):
        return f'<{type(self).__name__}: {self}>'


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text; it becomes
    the __cause__ of that exception in the pool's process, so that printing
    the exception shows where the worker raised it."""

    def __init__(self, tb):
        self.tb = tb

    def __str__(self):
        return self.tb


class WorkerLostError(ProcessError):
    """The worker process running a task exited before sending its result
    (it was killed, crashed, or called os._exit()). Raised by the result of
    that task; the pool replaced the worker and goes on."""

    def __init__(self, message, pid=None, exitcode=None):
        super().__init__(message, pid, exitcode)
        self.pid = pid
        self.exitcode = exitcode

    def __str__(self):
        return self.args[0]


def _describe_exit(exitcode):
    if exitcode is None:
        return 'an unknown exit status'
    if exitcode < 0:
        try:
            return 'signal %s' % signal.Signals(-exitcode).name
        except ValueError:
            return 'signal %d' % -exitcode
    return 'exit code %d' % exitcode


# ---- what travels from a worker ------------------------------------------------------------


def rebuild_exc(exc, tb):
    """Unpickling side of ExceptionWithTraceback (the name and arguments are
    the standard library's, so either side can read the other's results):
    the exception, with the worker's traceback text as its __cause__."""
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class ExceptionWithTraceback:
    """An exception raised by a task, with its traceback formatted in the
    worker (traceback objects do not pickle). It unpickles as the exception
    itself; see rebuild_exc."""

    __slots__ = ('exc', 'tb')

    def __init__(self, exc, tb):
        text = ''.join(traceback.format_exception(type(exc), exc, tb))
        # The triple quotes set the worker's traceback apart when the
        # exception is printed with its cause.
        self.tb = '\n"""\n' + text + '"""'
        self.exc = exc

    def __reduce__(self):
        return rebuild_exc, (self.exc, self.tb)


def _run_chunk(func, items):
    return [func(x) for x in items]


def _run_star_chunk(func, items):
    return [func(*x) for x in items]


def worker(
    inqueue,
    outqueue,
    initializer=None,
    initargs=(),
    maxtasks=None,
    wrap_exception=False,
    slots=None,
    slot=-1,
):
    """The loop of a pool worker: take a task, run it, send its result; stop
    at None, or after maxtasks tasks."""
    if maxtasks is not None and not (isinstance(maxtasks, int) and maxtasks >= 1):
        raise AssertionError(f'maxtasks {maxtasks!r} is not valid')
    take = inqueue.get
    send = outqueue.put
    mark = None
    if slots is not None:
        mark = memoryview(slots).cast('B').cast('q')
        at = 2 * slot
    if initializer is not None:
        initializer(*initargs)

    done = 0
    while maxtasks is None or done < maxtasks:
        try:
            task = take()
        except (EOFError, OSError):
            task = None  # the pool's end of the queue is gone: nothing more to do
        if task is None:
            break
        job, i, func, args, kwds = task
        if mark is not None:
            mark[at + 1] = i
            mark[at] = job
        try:
            outcome = (True, func(*args, **kwds) if kwds else func(*args))
        except Exception as e:
            outcome = (False, ExceptionWithTraceback(e, e.__traceback__) if wrap_exception else e)
        try:
            send((job, i, outcome))
        except Exception as e:
            failed = outcome[1].exc if type(outcome[1]) is ExceptionWithTraceback else outcome[1]
            util.debug('pool worker: cannot send the result of task %d of job %d: %r', i, job, e)
            send((job, i, (False, MaybeEncodingError(e, failed))))
            failed = None
        if mark is not None:
            mark[at] = _IDLE
        task = func = args = kwds = outcome = None
        done += 1
    util.debug('pool worker exits after %d tasks', done)


def _owned_worker(owner, *args):
    """worker() in a pool's worker process: the process also ends when the
    pool's owner dies, however it dies (see gomp/_deathwatch.py)."""
    if not _deathwatch.follow(owner, signal.SIGTERM):
        util.debug('pool worker: the pool\'s owner is gone; not starting')
        return
    worker(*args)


def _thread_worker(wake, *args):
    """worker() in a ThreadPool thread: tells the supervisor when it ends."""
    try:
        worker(*args)
    finally:
        wake.poke()


# ---- waking the supervisor -----------------------------------------------------------------


class _Wake:
    """A pipe that wakes the supervisor thread; safe to poke after close."""

    def __init__(self):
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()
        self._closed = False

    def fileno(self):
        return self._r

    def poke(self):
        with self._lock:
            if not self._closed:
                try:
                    os.write(self._w, b'!')
                except BlockingIOError:
                    pass  # already full of pokes

    def clear(self):
        with self._lock:
            if not self._closed:
                try:
                    while os.read(self._r, 4096):
                        pass
                except BlockingIOError:
                    pass

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._r)
                os.close(self._w)


class _JobTable(dict):
    """The pool's _cache: job id -> pending result. Emptying it while the
    pool is closing wakes the supervisor, which then shuts the pool down."""

    def __init__(self, engine):
        dict.__init__(self)
        self._engine = engine

    def __delitem__(self, job):
        dict.__delitem__(self, job)
        if not self:
            engine = self._engine
            if engine.state != RUN:
                engine.wake.poke()


class _Failure:
    """Stands in a task stream for the exception its iterable raised at
    position i: that position of the job fails with exc in the pool's own
    process (no worker involved, so no remote traceback)."""

    __slots__ = ('job', 'i', 'exc')

    def __init__(self, job, i, exc):
        self.job = job
        self.i = i
        self.exc = exc


def _task_stream(job, func, iterable):
    i = -1
    try:
        for i, x in enumerate(iterable):
            yield (job, i, func, (x,), None)
    except Exception as e:
        yield _Failure(job, i + 1, e)


def _chunk_stream(job, runner, func, iterable, size):
    items = iter(iterable)
    i = -1
    try:
        while True:
            chunk = tuple(islice(items, size))
            if not chunk:
                return
            i += 1
            yield (job, i, runner, (func, chunk), None)
    except Exception as e:
        yield _Failure(job, i + 1, e)


# ---- the machinery behind a pool -----------------------------------------------------------


class _Engine:
    """Everything the pool's threads work on. The threads refer to this object,
    never to the Pool, so that an abandoned Pool can be collected (and its
    finalizer can then terminate the engine)."""

    def __init__(
        self,
        ctx,
        make_process,
        processes,
        initializer,
        initargs,
        maxtasks,
        wrap_exception,
        inqueue,
        outqueue,
        use_threads,
        quick_put=None,
        quick_get=None,
    ):
        self.ctx = ctx
        self.make_process = make_process
        self.processes = processes
        self.initializer = initializer
        self.initargs = initargs
        self.maxtasks = maxtasks
        self.wrap_exception = wrap_exception
        self.inqueue = inqueue
        self.outqueue = outqueue
        self.use_threads = use_threads
        # How the feeder puts a task and the router takes a result: the
        # queues' put and get, unless a subclass's _setup_queues installed
        # _quick_put/_quick_get (the stdlib's pool moves tasks and results
        # through those two).
        self.put_task = quick_put or inqueue.put
        self.get_result = quick_get or outqueue.get
        self.taskqueue = queue.SimpleQueue()
        self.state = INIT
        self.wake = _Wake()
        self.cache = _JobTable(self)
        self.pool = []
        self.pool_lock = threading.RLock()
        self.set_lock = threading.Lock()
        self.threads = ()
        self.thread_idents = frozenset()
        self.slots = self.mark = None
        if not use_threads:
            from .sharedctypes import RawArray

            self.slots = RawArray('q', 2 * processes)
            self.mark = memoryview(self.slots).cast('B').cast('q')
            for k in range(0, 2 * processes, 2):
                self.mark[k] = _IDLE

    # -- workers --

    def repopulate(self):
        """Start workers until there are `processes` of them."""
        with self.pool_lock:
            for _ in range(self.processes - len(self.pool)):
                if self.use_threads:
                    w = self.make_process(
                        self.ctx,
                        target=_thread_worker,
                        args=(
                            self.wake,
                            self.inqueue,
                            self.outqueue,
                            self.initializer,
                            self.initargs,
                            self.maxtasks,
                            self.wrap_exception,
                        ),
                    )
                    slot = -1
                else:
                    used = {getattr(p, '_gomp_pool_slot', -1) for p in self.pool}
                    slot = min(k for k in range(self.processes) if k not in used)
                    w = self.make_process(
                        self.ctx,
                        target=_owned_worker,
                        args=(
                            _deathwatch.identity(),
                            self.inqueue,
                            self.outqueue,
                            self.initializer,
                            self.initargs,
                            self.maxtasks,
                            self.wrap_exception,
                            self.slots,
                            slot,
                        ),
                    )
                w._gomp_pool_slot = slot
                w.name = w.name.replace('Process', 'PoolWorker')
                w.daemon = True
                w.start()
                self.pool.append(w)
                util.debug('added pool worker %s', w.name)

    def reap(self):
        """Join the workers that exited; fail the task each one held. Returns
        whether any worker exited."""
        reaped = False
        with self.pool_lock:
            for w in list(self.pool):
                if w.exitcode is None:
                    continue
                reaped = True
                w.join()
                self.pool.remove(w)
                util.debug('pool worker %s exited with %r', w.name, w.exitcode)
                slot = getattr(w, '_gomp_pool_slot', -1)
                if self.mark is None or slot < 0:
                    continue
                job, i = self.mark[2 * slot], self.mark[2 * slot + 1]
                self.mark[2 * slot] = _IDLE
                if job == _IDLE:
                    continue
                err = WorkerLostError(
                    'pool worker %s (pid %s) exited with %s while running task %d of job %d'
                    % (w.name, w.pid, _describe_exit(w.exitcode), i, job),
                    w.pid,
                    w.exitcode,
                )
                # Through the result queue: a result the worker sent before
                # dying is ahead of this one, and wins.
                try:
                    self.outqueue.put((job, i, (False, err)))
                except Exception:
                    self.deliver(job, i, (False, err))
        return reaped

    # -- results --

    def deliver(self, job, i, outcome):
        with self.set_lock:
            result = self.cache.get(job)
            if result is not None:
                result._set(i, outcome)

    # -- feeding tasks --

    def feed(self, tasks, set_length):
        """Put the tasks of one submission into the task queue. Returns False
        if the pool was terminated meanwhile."""
        put = self.put_task
        last = -1
        task = None
        try:
            for task in tasks:
                if self.state == TERMINATE:
                    return False
                if type(task) is _Failure:
                    last = task.i
                    self.deliver(task.job, task.i, (False, task.exc))
                    break
                try:
                    put(task)
                except Exception as e:
                    self.deliver(task[0], task[1], (False, e))
                last = task[1]
            if set_length is not None:
                with self.set_lock:
                    set_length(last + 1)
        finally:
            task = tasks = None
        return True

    # -- threads --

    def start_threads(self):
        self.state = RUN
        names = ('supervisor', 'feeder', 'router')
        bodies = (self._supervise, self._feed_loop, self._route_loop)
        threads = []
        for name, body in zip(names, bodies):
            t = threading.Thread(target=body, name='gomp-pool-' + name, daemon=True)
            t._state = RUN
            t.start()
            threads.append(t)
        self.threads = tuple(threads)
        self.thread_idents = frozenset(t.ident for t in threads)

    def _supervise(self):
        while True:
            state = self.state
            if state == TERMINATE or (state != RUN and not self.cache):
                break
            if self.reap() and (self.state == RUN or (self.cache and self.state != TERMINATE)):
                try:
                    self.repopulate()
                except Exception:
                    util.debug('could not replace a pool worker:\n%s', traceback.format_exc())
            sentinels = []
            for w in self.pool:
                s = getattr(w, 'sentinel', None)
                if s is not None:
                    sentinels.append(s)
            try:
                wait(sentinels + [self.wake], None)
            except OSError:
                break  # the pool is being torn down
            self.wake.clear()
        util.debug('pool supervisor: done')
        self.taskqueue.put(None)

    def _feed_loop(self):
        take = self.taskqueue.get
        while True:
            item = take()
            if item is None:
                break
            tasks, set_length = item
            item = None
            if not self.feed(tasks, set_length):
                break
            tasks = set_length = None
        # No more tasks: tell the router, then every worker.
        try:
            self.outqueue.put(None)
            for _ in range(len(self.pool)):
                self.inqueue.put(None)
        except (OSError, ValueError):
            pass
        util.debug('pool feeder: done')

    def _route_loop(self):
        take = self.get_result
        deliver = self.deliver
        while True:
            try:
                item = take()
            except (OSError, EOFError):
                break
            if item is None:
                break
            job, i, outcome = item
            deliver(job, i, outcome)
            item = outcome = None
        if not self.use_threads and self.state != TERMINATE:
            self._drain_results()
        util.debug('pool router: done')

    def _drain_results(self):
        # Workers may still be sending results nobody waits for (a map whose
        # job failed): keep the result ring moving until they have all exited,
        # so that none of them blocks on a full ring.
        raw = getattr(self.outqueue, '_get_bytes', None)
        if raw is None:
            return
        running = [w.sentinel for w in self.pool if hasattr(w, 'sentinel')]
        while running:
            try:
                while True:
                    raw(False)
            except queue.Empty:
                pass
            except (OSError, EOFError):
                return
            exited = wait(running, 0.01)
            running = [s for s in running if s not in exited]

    # -- shutdown --

    def close(self):
        self.state = CLOSE
        self.wake.poke()

    def terminate(self):
        util.debug('terminating the pool')
        self.state = TERMINATE
        self.wake.poke()
        me = threading.current_thread()
        if me in self.threads:
            # An abandoned pool collected in one of its own threads (its last
            # reference was a result the router just completed, with the
            # router holding set_lock): finish from a thread of its own
            # rather than wait here for threads that may wait for this one.
            threading.Thread(
                target=self._finish_terminate, args=(me,), daemon=True, name='gomp-pool-terminate'
            ).start()
            return
        self._finish_terminate(me)

    def _finish_terminate(self, me):
        supervisor = feeder = router = None
        if self.threads:
            supervisor, feeder, router = self.threads
        # With gomp's queues, signal the workers first, so that they die
        # while the threads wind down; then those the supervisor may have
        # started meanwhile. Queues of the stdlib's shape (a Pool subclass's
        # _setup_queues) have locks a worker holds while it reads a task or
        # writes a result, and a worker killed holding one would block the
        # feeder or the router for good: there the threads wind down first,
        # with the workers alive, and the workers are signalled last.
        foreign = not self.use_threads and not hasattr(self.inqueue, '_get_bytes')
        signalled = set()
        if not foreign:
            with self.pool_lock:
                self._signal_workers(signalled)
        if supervisor is not None and supervisor is not me:
            supervisor.join()
        pool = list(self.pool)
        if not foreign:
            self._signal_workers(signalled)
        if self.use_threads:
            self._unblock_threads()
        if feeder is not None and feeder is not me:
            self._drain_tasks_while(feeder)
            feeder.join()
        if router is not None:
            try:
                self.outqueue.put(None)
            except Exception:
                pass
            if router is not me:
                router.join()
        if foreign:
            self._signal_workers(signalled)
        if pool and hasattr(pool[0], 'terminate'):
            for w in pool:
                w.join()
        self.wake.close()

    def _signal_workers(self, signalled):
        # SIGTERM to each worker process still running and not signalled yet
        # (thread workers cannot be signalled: see _unblock_threads).
        for w in list(self.pool):
            if w in signalled or not hasattr(w, 'terminate'):
                continue
            signalled.add(w)
            if w.exitcode is None:
                w.terminate()

    def _unblock_threads(self):
        # Thread workers cannot be killed: drop the tasks not started yet and
        # let each thread end after its current task.
        try:
            while True:
                self.inqueue.get_nowait()
        except queue.Empty:
            pass
        for _ in range(len(self.pool)):
            self.inqueue.put(None)

    def _drain_tasks_while(self, feeder):
        # The feeder may wait for room in the task queue, which no worker
        # reads any more: empty it until the feeder has finished. gomp's
        # queues have _get_bytes; a queue of the stdlib's shape that a Pool
        # subclass installed in _setup_queues (joblib's MemmappingPool: a pipe
        # with a reader lock) is drained through its pipe instead.
        raw = getattr(self.inqueue, '_get_bytes', None)
        reader = getattr(self.inqueue, '_reader', None)
        while feeder.is_alive():
            if raw is not None:
                try:
                    raw(True, 0.02)
                except queue.Empty:
                    pass
                except (OSError, EOFError):
                    feeder.join(0.05)
            elif reader is not None:
                self._drain_pipe(reader, getattr(self.inqueue, '_rlock', None))
                feeder.join(0.02)
            else:
                feeder.join(0.05)

    def _drain_pipe(self, reader, rlock):
        # Every task still in the pipe is dropped, so its bytes are thrown
        # away whole, without regard to message boundaries. A worker that is
        # still alive reads under rlock, so the bytes are taken under it too,
        # unless nobody can be reading: the lock's holder is one of the
        # workers, all signalled by now (an idle worker blocks in get() with
        # the lock held, and a dead holder never releases it), or every
        # worker has exited.
        locked = False
        if rlock is not None and not self._held_by_a_worker(rlock):
            locked = rlock.acquire(timeout=0.05)
            if not locked and any(w.exitcode is None for w in self.pool):
                return
        try:
            fd = reader.fileno()
            while reader.poll(0):
                if not os.read(fd, 1 << 16):
                    break
        except (OSError, EOFError, ValueError):
            pass
        finally:
            if locked:
                rlock.release()

    def _held_by_a_worker(self, lock):
        # gomp's Lock knows the pid of its holder; another lock cannot tell.
        owner = getattr(getattr(lock, '_semlock', None), '_owner', None)
        pid = owner() if owner is not None else None
        return bool(pid and pid > 0 and any(w.pid == pid for w in self.pool))

    def join(self):
        me = threading.current_thread()
        for t in self.threads:
            if t is not me:
                t.join()
        for w in list(self.pool):
            w.join()
        if not any(t.is_alive() for t in self.threads):
            self.wake.close()


# ---- results -------------------------------------------------------------------------------
#
# Every result object is registered in the pool's _cache under a job id; the
# engine's router calls its _set(i, outcome) for each task of the job as the
# outcomes come in (with the engine's set_lock held), and the feeder tells an
# imap iterator its length once the whole iterable was read. An outcome is
# (True, value) or (False, exception).


def _call_back(callback, value):
    """Run a user callback in the router thread; an exception it raises is
    reported on stderr instead of killing the router."""
    try:
        callback(value)
    except Exception:
        try:
            sys.stderr.write('Exception in pool callback %r:\n' % (callback,))
            traceback.print_exc()
        except Exception:
            pass


class _Job:
    """What all results share: a job id, the registration in the pool's
    _cache, and letting go of the pool once every part of the job is in."""

    def __init__(self, pool):
        self._pool = pool
        self._cache = pool._cache
        self._job = next(job_counter)
        self._cache[self._job] = self

    def _retire(self):
        # `del`, not pop(): the pool's _cache notices when it becomes empty.
        if self._job in self._cache:
            del self._cache[self._job]
        self._pool = None

    __class_getitem__ = classmethod(GenericAlias)


class ApplyResult(_Job):
    """The result of apply_async(), and the base of MapResult: a job of
    _parts tasks whose value is ready once all of them reported. The first
    failure decides the outcome; later parts are still awaited, so that the
    job's tasks are all finished when get() raises."""

    _parts = 1

    def __init__(self, pool, callback, error_callback):
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = True
        self._value = None
        self._reported = bytearray(self._parts)  # per part: 1 once it reported
        self._left = self._parts
        _Job.__init__(self, pool)

    def get(self, timeout=None):
        """The return value; re-raises the exception of a call that raised;
        TimeoutError if it is not in after timeout seconds."""
        if not self._event.wait(timeout):
            raise TimeoutError
        if not self._success:
            raise self._value
        return self._value

    def wait(self, timeout=None):
        """Wait until the result is in, at most timeout seconds."""
        self._event.wait(timeout)

    def ready(self):
        """Whether the result is in."""
        return self._event.is_set()

    def successful(self):
        """Whether the call returned without raising (ValueError before it is in)."""
        if self.ready():
            return self._success
        raise ValueError(f'{self!r} not ready')

    def _keep(self, i, value):
        """Store the value task i returned (one task: it is the value)."""
        self._value = value

    def _set(self, i, outcome):
        # A task whose worker died may be reported lost after its real
        # result came in after all: only the first report counts.
        reported = self._reported
        if i >= len(reported) or reported[i]:
            return
        reported[i] = 1
        self._left -= 1
        ok, value = outcome
        if self._success:
            if ok:
                self._keep(i, value)
            else:
                self._success, self._value = False, value
        if not self._left:
            self._finish(notify=True)

    def _finish(self, notify):
        if notify:
            hook = self._callback if self._success else self._error_callback
            if hook is not None:
                _call_back(hook, self._value)
        self._event.set()
        self._retire()


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of map_async() / starmap_async(): one part per chunk, each
    filling its slice of the list. No chunks (no items, or a chunksize below
    1, as in the standard library): ready at once, with no callback."""

    def __init__(self, pool, chunksize, length, callback, error_callback):
        self._chunksize = chunksize
        self._parts = -(-length // chunksize) if chunksize > 0 else 0
        ApplyResult.__init__(self, pool, callback, error_callback)
        self._value = [None] * length
        if not self._parts:
            self._finish(notify=False)

    def _keep(self, i, values):
        at = i * self._chunksize
        self._value[at : at + len(values)] = values


class IMapIterator(_Job):
    """The iterator returned by imap(): results in the order of the input,
    each as soon as it and every result before it are in."""

    def __init__(self, pool):
        self._cond = threading.Condition(threading.Lock())
        self._out = deque()  # outcomes next() may hand out, in order
        self._released = 0  # how many outcomes went into _out so far
        self._length = None  # the number of tasks, once the feeder knows
        self._early = {}  # index -> outcome that came before its turn
        _Job.__init__(self, pool)

    def __iter__(self):
        return self

    def _release(self, i, outcome):
        """Move what outcome i makes available into _out."""
        if i != self._released:
            # Ahead of its turn: kept until then. (Behind it: reported twice,
            # for a lost task, and the first report stands.)
            if i > self._released:
                self._early.setdefault(i, outcome)
            return
        self._out.append(outcome)
        self._released = n = i + 1
        early = self._early
        while early and n in early:
            self._out.append(early.pop(n))
            self._released = n = n + 1

    def _can_go_on(self):
        return bool(self._out) or self._released == self._length

    def next(self, timeout=None):
        """The next result; TimeoutError if it is not in after timeout seconds."""
        with self._cond:
            if not self._out and not self._cond.wait_for(self._can_go_on, timeout):
                raise TimeoutError
            if not self._out:
                self._pool = None
                raise StopIteration
            ok, value = self._out.popleft()
        if not ok:
            raise value
        return value

    __next__ = next

    def _set(self, i, outcome):
        with self._cond:
            self._release(i, outcome)
            if self._out:
                self._cond.notify()
            if self._released == self._length:
                self._retire()

    def _set_length(self, length):
        with self._cond:
            self._length = length
            if self._released == length:
                self._cond.notify()
                self._retire()


class IMapUnorderedIterator(IMapIterator):
    """The iterator returned by imap_unordered(): results as they come in."""

    def __init__(self, pool):
        IMapIterator.__init__(self, pool)
        self._seen = set()

    def _release(self, i, outcome):
        if i not in self._seen:
            self._seen.add(i)
            self._out.append(outcome)
            self._released += 1


# ---- Pool ----------------------------------------------------------------------------------


def _checked_size(processes, initializer, maxtasksperchild):
    """The number of workers a Pool gets; ValueError / TypeError for
    arguments the pool cannot work with."""
    if initializer is not None and not callable(initializer):
        raise TypeError('initializer must be a callable')
    if maxtasksperchild is not None and (
        not isinstance(maxtasksperchild, int) or maxtasksperchild < 1
    ):
        raise ValueError("maxtasksperchild must be a positive int or None")
    if processes is None:
        processes = os.cpu_count() or 1
    if processes < 1:
        raise ValueError("Number of processes must be at least 1")
    return processes


def _default_chunksize(n_items, n_workers):
    # About four chunks per worker: few enough messages, and still work to
    # share out among the workers while the last chunks are under way.
    return -(-n_items // (4 * n_workers))


def _map_method(name, runner, blocking, doc):
    """Pool.map / starmap / map_async / starmap_async: one submission path,
    differing only in how a chunk calls func and whether to wait."""
    if blocking:

        def method(self, func, iterable, chunksize=None):
            return self._submit_chunks(runner, func, iterable, chunksize, None, None).get()
    else:

        def method(self, func, iterable, chunksize=None, callback=None, error_callback=None):
            return self._submit_chunks(runner, func, iterable, chunksize, callback, error_callback)

    method.__name__ = name
    method.__qualname__ = 'Pool.' + name
    method.__doc__ = doc
    return method


def _imap_method(name, iterator_class, doc):
    """Pool.imap / imap_unordered, which differ in their iterator only."""

    def method(self, func, iterable, chunksize=1):
        return self._submit_lazily(iterator_class, func, iterable, chunksize)

    method.__name__ = name
    method.__qualname__ = 'Pool.' + name
    method.__doc__ = doc
    return method


class Pool:
    """A pool of worker processes running the tasks submitted to it.

    The work itself is done by an _Engine (see the module documentation);
    the Pool checks and packages submissions, keeps the state the API
    promises (RUN, CLOSE, TERMINATE) and hands out result objects."""

    # Until __init__ has got that far; __del__ and repr rely on them.
    _state = INIT
    _engine = None
    _pool = ()

    _wrap_exception = True  # send exceptions back with their traceback text
    _threads = False  # ThreadPool: workers are threads

    def __init__(
        self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None
    ):
        self._processes = _checked_size(processes, initializer, maxtasksperchild)
        self._ctx = context or get_context()
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasksperchild = maxtasksperchild
        self._setup_queues()
        engine = _Engine(
            self._ctx,
            self.Process,
            self._processes,
            initializer,
            initargs,
            maxtasksperchild,
            self._wrap_exception,
            self._inqueue,
            self._outqueue,
            self._threads,
            getattr(self, '_quick_put', None),
            getattr(self, '_quick_get', None),
        )
        # The engine's containers under the names the standard library's
        # pool has (tests and debugging tools look at them).
        self._engine = engine
        self._pool = engine.pool
        self._cache = engine.cache
        self._taskqueue = engine.taskqueue
        self._change_notifier = engine.wake
        try:
            # Through the method, which a subclass may override (the stdlib
            # calls it here too; its later replacements of exited workers
            # do not go through it, nor do ours).
            self._repopulate_pool()
        except BaseException:
            self._stop_started_workers()
            raise
        engine.start_threads()
        self._terminate = util.Finalize(self, engine.terminate, exitpriority=15)
        self._state = RUN

    @staticmethod
    def Process(ctx, *args, **kwds):
        """A new worker (a process of the pool's context)."""
        return ctx.Process(*args, **kwds)

    def _setup_queues(self):
        if self._threads:
            self._inqueue, self._outqueue = queue.SimpleQueue(), queue.SimpleQueue()
        else:
            self._inqueue, self._outqueue = self._ctx.SimpleQueue(), self._ctx.SimpleQueue()

    def _stop_started_workers(self):
        # __init__ failed part way through starting the workers.
        started = list(self._pool)
        for w in started:
            if w.exitcode is None:
                w.terminate()
        for w in started:
            w.join()

    def _repopulate_pool(self):
        return self._engine.repopulate()

    def _join_exited_workers(self):
        return self._engine.reap()

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if self._state != RUN:
            return
        _warn("unclosed running multiprocessing pool %r" % (self,), ResourceWarning, source=self)
        if self._engine is not None:
            self._engine.wake.poke()

    def __repr__(self):
        return '<{0.__module__}.{0.__qualname__} state={1} pool_size={2}>'.format(
            type(self), self._state, len(self._pool)
        )

    # -- submitting work --

    map = _map_method(
        'map',
        _run_chunk,
        True,
        """\
        list(map(func, iterable)), computed by the workers in chunks of
        chunksize items (by default about four chunks per worker).""",
    )
    starmap = _map_method(
        'starmap',
        _run_star_chunk,
        True,
        """\
        Like map(), with each item of iterable unpacked as func's arguments.""",
    )
    map_async = _map_method(
        'map_async',
        _run_chunk,
        False,
        """\
        map() that returns a MapResult at once; callback gets the list,
        error_callback the first exception.""",
    )
    starmap_async = _map_method(
        'starmap_async',
        _run_star_chunk,
        False,
        """\
        starmap() that returns a MapResult at once.""",
    )

    def _submit_chunks(self, runner, func, iterable, chunksize, callback, error_callback):
        self._check_running()
        items = iterable if hasattr(iterable, '__len__') else list(iterable)
        if chunksize is None:
            chunksize = _default_chunksize(len(items), len(self._pool))
        result = MapResult(self, chunksize, len(items), callback, error_callback)
        if result._parts:
            tasks = _chunk_stream(result._job, runner, func, items, chunksize)
            self._taskqueue.put((tasks, None))
        return result

    imap = _imap_method(
        'imap',
        IMapIterator,
        """\
        An iterator over func(x) for x in iterable, in order; with a
        chunksize above 1 the workers get chunksize items per task.""",
    )
    imap_unordered = _imap_method(
        'imap_unordered',
        IMapUnorderedIterator,
        """\
        Like imap(), with the results in the order they are ready.""",
    )

    def _submit_lazily(self, iterator_class, func, iterable, chunksize):
        # The feeder thread walks the iterable, so it may be endless and
        # results come back while it is still being read.
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        results = iterator_class(self)
        if chunksize == 1:
            tasks = _task_stream(results._job, func, iterable)
        else:
            tasks = _chunk_stream(results._job, _run_chunk, func, iterable, chunksize)
        self._taskqueue.put((tasks, results._set_length))
        return results if chunksize == 1 else chain.from_iterable(results)

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """func(*args, **kwds) in a worker; returns an AsyncResult."""
        self._check_running()
        engine = self._engine
        result = ApplyResult(self, callback, error_callback)
        task = (result._job, 0, func, args, kwds)
        if threading.get_ident() in engine.thread_idents:
            # Called from a callback, in the router thread: putting the task
            # into the ring could wait for room that only the router makes.
            engine.taskqueue.put(((task,), None))
            return result
        try:
            engine.inqueue.put(task)
        except Exception as e:
            engine.deliver(result._job, 0, (False, e))
        return result

    def apply(self, func, args=(), kwds={}):
        """func(*args, **kwds) in a worker; waits for the result."""
        return self.apply_async(func, args, kwds).get()

    # -- lifetime --

    def close(self):
        """No more submissions; the workers exit once the pending work is done."""
        util.debug('closing pool')
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def join(self):
        """Wait for the workers to exit (after close() or terminate())."""
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("Pool is still running" if self._state == RUN else "In unknown state")
        util.debug('joining pool')
        self._engine.join()

    def terminate(self):
        """Stop the workers now, without finishing the pending work."""
        self._state = TERMINATE
        self._terminate()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc_info):
        self.terminate()

    def __reduce__(self):
        raise NotImplementedError('pool objects cannot be passed between processes or pickled')


# ---- ThreadPool ----------------------------------------------------------------------------


def _worker_thread(ctx, *args, **kwds):
    from .dummy import Process

    return Process(*args, **kwds)


class ThreadPool(Pool):
    """A Pool whose workers are threads of this process: tasks and results
    go through plain in-process queues, nothing is pickled, and a task's
    exception is raised as it is (no remote traceback)."""

    _wrap_exception = False
    _threads = True
    Process = staticmethod(_worker_thread)

    def __init__(self, processes=None, initializer=None, initargs=()):
        super().__init__(processes, initializer, initargs)
