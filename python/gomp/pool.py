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

import collections
import itertools
import os
import queue
import signal
import sys
import threading
import traceback
import types
import warnings

from . import util
from . import get_context, TimeoutError
from .connection import wait
from .context import ProcessError

__all__ = ['Pool', 'ThreadPool']

# The states of a pool (and of its threads).
INIT = 'INIT'
RUN = 'RUN'
CLOSE = 'CLOSE'
TERMINATE = 'TERMINATE'

# Job ids, unique within a process.
job_counter = itertools.count()

# Value of a worker's slot when it runs no task.
_IDLE = -1


class MaybeEncodingError(Exception):
    """Wraps an exception that could not be pickled to send back a result."""

    def __init__(self, exc, value):
        self.exc = repr(exc)
        self.value = repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self):
        return "Error sending result: '%s'. Reason: '%s'" % (self.value, self.exc)

    def __repr__(self):
        return "<%s: %s>" % (self.__class__.__name__, self)


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker."""

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

def _with_remote_traceback(exc, text):
    """Rebuilds, in the pool's process, an exception raised in a worker, with
    the worker's traceback as its __cause__."""
    exc.__cause__ = RemoteTraceback(text)
    return exc


class _RaisedInWorker(object):
    """An exception raised by a task, with its traceback formatted in the
    worker (tracebacks do not pickle); unpickles as the exception itself."""

    __slots__ = ('exc', 'text')

    def __init__(self, exc):
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        self.exc = exc
        self.text = '\n"""\n%s"""' % ''.join(lines)

    def __reduce__(self):
        return _with_remote_traceback, (self.exc, self.text)


def _run_chunk(func, items):
    return [func(x) for x in items]


def _run_star_chunk(func, items):
    return [func(*x) for x in items]


def worker(inqueue, outqueue, initializer=None, initargs=(), maxtasks=None,
           wrap_exception=False, slots=None, slot=-1):
    """The loop of a pool worker: take a task, run it, send its result; stop
    at None, or after maxtasks tasks."""
    if maxtasks is not None and not (isinstance(maxtasks, int) and maxtasks >= 1):
        raise AssertionError('maxtasks {!r} is not valid'.format(maxtasks))
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
            util.debug('pool worker: the task queue is gone')
            break
        if task is None:
            util.debug('pool worker: told to stop')
            break
        job, i, func, args, kwds = task
        if mark is not None:
            mark[at + 1] = i
            mark[at] = job
        try:
            outcome = (True, func(*args, **kwds) if kwds else func(*args))
        except Exception as e:
            outcome = (False, _RaisedInWorker(e) if wrap_exception else e)
        try:
            send((job, i, outcome))
        except Exception as e:
            failed = outcome[1].exc if type(outcome[1]) is _RaisedInWorker else outcome[1]
            util.debug('pool worker: cannot send the result of task %d of job %d: %r', i, job, e)
            send((job, i, (False, MaybeEncodingError(e, failed))))
            failed = None
        if mark is not None:
            mark[at] = _IDLE
        task = func = args = kwds = outcome = None
        done += 1
    util.debug('pool worker exits after %d tasks', done)


def _thread_worker(wake, *args):
    """worker() in a ThreadPool thread: tells the supervisor when it ends."""
    try:
        worker(*args)
    finally:
        wake.poke()


# ---- waking the supervisor -----------------------------------------------------------------

class _Wake(object):
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


class _Failure(object):
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
            chunk = tuple(itertools.islice(items, size))
            if not chunk:
                return
            i += 1
            yield (job, i, runner, (func, chunk), None)
    except Exception as e:
        yield _Failure(job, i + 1, e)


# ---- the machinery behind a pool -----------------------------------------------------------

class _Engine(object):
    """Everything the pool's threads work on. The threads refer to this object,
    never to the Pool, so that an abandoned Pool can be collected (and its
    finalizer can then terminate the engine)."""

    def __init__(self, ctx, make_process, processes, initializer, initargs, maxtasks,
                 wrap_exception, inqueue, outqueue, use_threads):
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
                        self.ctx, target=_thread_worker,
                        args=(self.wake, self.inqueue, self.outqueue, self.initializer,
                              self.initargs, self.maxtasks, self.wrap_exception))
                    slot = -1
                else:
                    used = {getattr(p, '_gomp_pool_slot', -1) for p in self.pool}
                    slot = min(k for k in range(self.processes) if k not in used)
                    w = self.make_process(
                        self.ctx, target=worker,
                        args=(self.inqueue, self.outqueue, self.initializer, self.initargs,
                              self.maxtasks, self.wrap_exception, self.slots, slot))
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
                    % (w.name, w.pid, _describe_exit(w.exitcode), i, job), w.pid, w.exitcode)
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
        put = self.inqueue.put
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
        take = self.outqueue.get
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
            threading.Thread(target=self._finish_terminate, args=(me,), daemon=True,
                             name='gomp-pool-terminate').start()
            return
        self._finish_terminate(me)

    def _finish_terminate(self, me):
        supervisor = feeder = router = None
        if self.threads:
            supervisor, feeder, router = self.threads
        # Signal the workers first, so that they die while the threads wind
        # down; then those the supervisor may have started meanwhile.
        signalled = set()
        with self.pool_lock:
            self._signal_workers(signalled)
        if supervisor is not None and supervisor is not me:
            supervisor.join()
        pool = list(self.pool)
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
        # The feeder may wait for room in the task ring, which no worker reads
        # any more: empty it until the feeder has finished.
        raw = getattr(self.inqueue, '_get_bytes', None)
        while feeder.is_alive():
            if raw is None:
                feeder.join(0.05)
                continue
            try:
                raw(True, 0.02)
            except queue.Empty:
                pass
            except (OSError, EOFError):
                feeder.join(0.05)

    def join(self):
        me = threading.current_thread()
        for t in self.threads:
            if t is not me:
                t.join()
        for w in list(self.pool):
            w.join()
        if not any(t.is_alive() for t in self.threads):
            self.wake.close()


# ---- Pool ----------------------------------------------------------------------------------

class Pool(object):
    """A pool of worker processes running the tasks submitted to it."""

    _wrap_exception = True

    @staticmethod
    def Process(ctx, *args, **kwds):
        return ctx.Process(*args, **kwds)

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None):
        self._pool = []
        self._state = INIT
        self._engine = None
        self._ctx = context or get_context()
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        self._processes = processes
        self._maxtasksperchild = maxtasksperchild
        self._initializer = initializer
        self._initargs = initargs
        self._setup_queues()

        engine = _Engine(self._ctx, self.Process, processes, initializer, initargs,
                         maxtasksperchild, self._wrap_exception, self._inqueue,
                         self._outqueue, self._uses_threads())
        self._engine = engine
        self._pool = engine.pool
        self._cache = engine.cache
        self._taskqueue = engine.taskqueue
        self._change_notifier = engine.wake
        try:
            engine.repopulate()
        except Exception:
            for w in self._pool:
                if w.exitcode is None:
                    w.terminate()
            for w in self._pool:
                w.join()
            raise
        engine.start_threads()
        self._terminate = util.Finalize(self, engine.terminate, exitpriority=15)
        self._state = RUN

    def _uses_threads(self):
        return False

    def _setup_queues(self):
        self._inqueue = self._ctx.SimpleQueue()
        self._outqueue = self._ctx.SimpleQueue()

    def _repopulate_pool(self):
        return self._engine.repopulate()

    def _join_exited_workers(self):
        return self._engine.reap()

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if self._state == RUN:
            _warn("unclosed running multiprocessing pool %r" % (self,), ResourceWarning,
                  source=self)
            engine = getattr(self, '_engine', None)
            if engine is not None:
                engine.wake.poke()

    def __repr__(self):
        cls = self.__class__
        return '<%s.%s state=%s pool_size=%d>' % (cls.__module__, cls.__qualname__,
                                                 self._state, len(self._pool))

    def __reduce__(self):
        raise NotImplementedError(
            'pool objects cannot be passed between processes or pickled')

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    # -- submitting work --

    def apply(self, func, args=(), kwds={}):
        """func(*args, **kwds) in a worker; waits for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """func(*args, **kwds) in a worker; returns an AsyncResult."""
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        task = (result._job, 0, func, args, kwds)
        engine = self._engine
        if threading.get_ident() in engine.thread_idents:
            # A callback: the router must not wait for room in the task ring.
            engine.taskqueue.put(((task,), None))
        else:
            try:
                engine.inqueue.put(task)
            except Exception as e:
                engine.deliver(result._job, 0, (False, e))
        return result

    def map(self, func, iterable, chunksize=None):
        """list(map(func, iterable)), computed by the workers in chunks."""
        return self._map_async(func, iterable, _run_chunk, chunksize).get()

    def starmap(self, func, iterable, chunksize=None):
        """Like map(), with each item of iterable unpacked as func's arguments."""
        return self._map_async(func, iterable, _run_star_chunk, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """map() that returns a MapResult at once."""
        return self._map_async(func, iterable, _run_chunk, chunksize, callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        """starmap() that returns a MapResult at once."""
        return self._map_async(func, iterable, _run_star_chunk, chunksize, callback,
                               error_callback)

    def _map_async(self, func, iterable, runner, chunksize=None, callback=None,
                   error_callback=None):
        self._check_running()
        if not hasattr(iterable, '__len__'):
            iterable = list(iterable)
        n = len(iterable)
        if chunksize is None:
            chunksize, extra = divmod(n, len(self._pool) * 4)
            if extra:
                chunksize += 1
        if n == 0:
            chunksize = 0
        result = MapResult(self, chunksize, n, callback, error_callback)
        if chunksize > 0:
            stream = _chunk_stream(result._job, runner, func, iterable, chunksize)
            self._taskqueue.put((stream, None))
        return result

    def imap(self, func, iterable, chunksize=1):
        """An iterator over func(x) for x in iterable, in order."""
        return self._imap(IMapIterator, func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        """An iterator over func(x) for x in iterable, in completion order."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize)

    def _imap(self, kind, func, iterable, chunksize):
        self._check_running()
        if chunksize == 1:
            result = kind(self)
            self._taskqueue.put((_task_stream(result._job, func, iterable), result._set_length))
            return result
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        result = kind(self)
        stream = _chunk_stream(result._job, _run_chunk, func, iterable, chunksize)
        self._taskqueue.put((stream, result._set_length))
        return (item for chunk in result for item in chunk)

    # -- lifetime --

    def close(self):
        """No more submissions; the workers exit once the pending work is done."""
        util.debug('closing pool')
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def terminate(self):
        """Stop the workers now, without finishing the pending work."""
        util.debug('terminating pool')
        self._state = TERMINATE
        self._terminate()

    def join(self):
        """Wait for the workers to exit (after close() or terminate())."""
        util.debug('joining pool')
        if self._state == RUN:
            raise ValueError("Pool is still running")
        elif self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._engine.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


# ---- results -------------------------------------------------------------------------------

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


class ApplyResult(object):
    """The result of apply_async()."""

    def __init__(self, pool, callback, error_callback):
        self._pool = pool
        self._event = threading.Event()
        self._job = next(job_counter)
        self._cache = pool._cache
        self._callback = callback
        self._error_callback = error_callback
        self._cache[self._job] = self

    def ready(self):
        """Whether the result is in."""
        return self._event.is_set()

    def successful(self):
        """Whether the call returned without raising (ValueError before it is in)."""
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return self._success

    def wait(self, timeout=None):
        """Wait until the result is in, at most timeout seconds."""
        self._event.wait(timeout)

    def get(self, timeout=None):
        """The return value; re-raises the exception of a call that raised;
        TimeoutError if it is not in after timeout seconds."""
        self.wait(timeout)
        if not self._event.is_set():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, i, outcome):
        self._success, self._value = outcome
        if self._success:
            if self._callback is not None:
                _call_back(self._callback, self._value)
        elif self._error_callback is not None:
            _call_back(self._error_callback, self._value)
        self._event.set()
        del self._cache[self._job]
        self._pool = None

    __class_getitem__ = classmethod(types.GenericAlias)


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of map_async() / starmap_async(): ready once every chunk is in."""

    def __init__(self, pool, chunksize, length, callback, error_callback):
        ApplyResult.__init__(self, pool, callback, error_callback=error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        if chunksize <= 0:
            self._number_left = 0
            self._seen = None
            self._event.set()
            del self._cache[self._job]
            self._pool = None
        else:
            self._number_left = length // chunksize + bool(length % chunksize)
            self._seen = bytearray(self._number_left)

    def _set(self, i, outcome):
        seen = self._seen
        if i >= len(seen) or seen[i]:
            return  # a lost task reported after its result arrived after all
        seen[i] = 1
        self._number_left -= 1
        ok, value = outcome
        if ok:
            if self._success:
                size = self._chunksize
                self._value[i * size:(i + 1) * size] = value
        elif self._success:
            self._success = False
            self._value = value  # the first error wins
        if self._number_left == 0:
            if self._success:
                if self._callback is not None:
                    _call_back(self._callback, self._value)
            elif self._error_callback is not None:
                _call_back(self._error_callback, self._value)
            del self._cache[self._job]
            self._event.set()
            self._pool = None


class IMapIterator(object):
    """The iterator returned by imap(): results in the order of the input."""

    def __init__(self, pool):
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._job = next(job_counter)
        self._cache = pool._cache
        self._items = collections.deque()
        self._index = 0
        self._length = None
        self._unsorted = {}
        self._cache[self._job] = self

    def __iter__(self):
        return self

    def _pop(self):
        """The next (ok, value) in, or None; StopIteration once all are out
        (self._cond held)."""
        if self._items:
            return self._items.popleft()
        if self._index == self._length:
            self._pool = None
            raise StopIteration
        return None

    def next(self, timeout=None):
        """The next result; TimeoutError if it is not in after timeout seconds."""
        with self._cond:
            item = self._pop()
            if item is None:
                self._cond.wait(timeout)
                item = self._pop()
                if item is None:
                    raise TimeoutError
        ok, value = item
        if ok:
            return value
        raise value

    __next__ = next

    def _finished(self):
        # Called with the pool's set_lock held (router or feeder).
        if self._job in self._cache:
            del self._cache[self._job]
        self._pool = None

    def _set(self, i, outcome):
        with self._cond:
            if i == self._index:
                self._items.append(outcome)
                self._index += 1
                while self._index in self._unsorted:
                    self._items.append(self._unsorted.pop(self._index))
                    self._index += 1
                self._cond.notify()
            elif i > self._index and i not in self._unsorted:
                self._unsorted[i] = outcome
            if self._index == self._length:
                self._finished()

    def _set_length(self, length):
        with self._cond:
            self._length = length
            if self._index == self._length:
                self._cond.notify()
                self._finished()


class IMapUnorderedIterator(IMapIterator):
    """The iterator returned by imap_unordered(): results as they come in."""

    def __init__(self, pool):
        IMapIterator.__init__(self, pool)
        self._got = set()

    def _set(self, i, outcome):
        with self._cond:
            if i in self._got:
                return
            self._got.add(i)
            self._items.append(outcome)
            self._index += 1
            self._cond.notify()
            if self._index == self._length:
                self._finished()


# ---- ThreadPool ----------------------------------------------------------------------------

class ThreadPool(Pool):
    """A Pool whose workers are threads of this process (no pickling)."""

    _wrap_exception = False

    @staticmethod
    def Process(ctx, *args, **kwds):
        from .dummy import Process
        return Process(*args, **kwds)

    def __init__(self, processes=None, initializer=None, initargs=()):
        Pool.__init__(self, processes, initializer, initargs)

    def _uses_threads(self):
        return True

    def _setup_queues(self):
        self._inqueue = queue.SimpleQueue()
        self._outqueue = queue.SimpleQueue()
